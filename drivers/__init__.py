"""Probe drivers (installed as firmware_py.drivers): wire protocol, FrameParser, ProbeLink,
buffer pool, recorder, speckle phantoms and the probe simulator. See docs/protocol.md."""
from firmware_py.drivers.buffers import BufferPool, Frame
from firmware_py.drivers.link import CommandRejected, ProbeLink, find_port
from firmware_py.drivers.parser import FrameParser, Message

__all__ = ["BufferPool", "CommandRejected", "Frame", "FrameParser", "Message", "ProbeLink", "find_port"]
