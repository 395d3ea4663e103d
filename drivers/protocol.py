"""Probe wire protocol: constants and pure encode/decode of every message (see docs/protocol.md).

Envelope (identical in every protocol version, so that two ends of different versions can
still exchange hello/capabilities and refuse each other cleanly):

    sync(4) | major u8 | minor u8 | type u8 | flags u8 | length u32 | header_crc u32 | payload | crc u32

``header_crc`` is CRC-32C over the 12 bytes before it; the trailing ``crc`` is CRC-32C over
header (16 bytes) + payload. All integers little-endian.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

import crc32c as _crc32c
import numpy as np

from firmware_py.geometry import Geometry, geometry_class, registered_kinds

crc32c = _crc32c.crc32c  # crc32c(data, value=0) -> int; hardware SSE4.2 / ARMv8 CRC when available

SYNC = b"\xa5\x5a\xc3\x3c"
HEADER = struct.Struct("<4sBBBBI")  # sync, major, minor, type, flags, payload length
HEADER_CRC = struct.Struct("<I")
HEADER_SIZE = HEADER.size + HEADER_CRC.size  # 16
TRAILER_SIZE = 4
OVERHEAD = HEADER_SIZE + TRAILER_SIZE

# Hard ceiling of the format; a link lowers it to what the probe announces (max frame size).
MAX_PAYLOAD_LIMIT = 64 * 1024 * 1024
DEFAULT_MAX_PAYLOAD = 4 * 1024 * 1024
MAX_CONTROL_PAYLOAD = 4096  # every message but FRAME must fit in this

Version = tuple[int, int]
# Versions this implementation speaks. 1.0: frames without TGC, commands freeze/depth/gain.
# 1.1: optional TGC curve in the frame sub-header, telemetry button events, frame_rate command.
SUPPORTED_MIN: Version = (1, 0)
SUPPORTED_MAX: Version = (1, 1)


class MsgType(enum.IntEnum):
    HELLO = 0x01  # device -> probe: supported version range
    CAPABILITIES = 0x02  # probe -> device: chosen version, probe info
    FRAME = 0x10  # probe -> device
    TELEMETRY = 0x11  # probe -> device: battery, temperature, button event
    COMMAND = 0x20  # device -> probe
    ACK = 0x21  # probe -> device: command result (ok or error)
    ERROR = 0x7F  # either way: refusal with a one-line reason (e.g. no common version)


class Command(enum.IntEnum):
    FREEZE = 1  # value 1 = freeze, 0 = live
    DEPTH = 2  # end depth in mm
    GAIN = 3  # overall gain in dB
    FRAME_RATE = 4  # frames per second (protocol >= 1.1)


COMMAND_MIN_VERSION: dict[Command, Version] = {
    Command.FREEZE: (1, 0),
    Command.DEPTH: (1, 0),
    Command.GAIN: (1, 0),
    Command.FRAME_RATE: (1, 1),
}


class ButtonEvent(enum.IntEnum):
    NONE = 0
    PRESSED = 1
    RELEASED = 2
    LONG_PRESS = 3


class ProtocolError(ValueError):
    """A message that is well framed (CRC ok) but whose content is not valid."""


def negotiate(dev_min: Version, dev_max: Version, probe_min: Version, probe_max: Version) -> Version:
    """Highest version both ends speak; ProtocolError with a one-line reason when there is none."""
    lo, hi = max(dev_min, probe_min), min(dev_max, probe_max)
    if lo > hi:
        raise ProtocolError(
            f"no common protocol version: device speaks {fmt_version(dev_min)}..{fmt_version(dev_max)}, "
            f"probe speaks {fmt_version(probe_min)}..{fmt_version(probe_max)}; "
            "update the probe firmware or firmware-py"
        )
    return hi


def fmt_version(v: Version) -> str:
    return f"{v[0]}.{v[1]}"


# ---------------------------------------------------------------------------------- envelope


def encode_header(msg_type: int, payload_len: int, version: Version, flags: int = 0) -> bytes:
    head = HEADER.pack(SYNC, version[0], version[1], int(msg_type), flags, payload_len)
    return head + HEADER_CRC.pack(crc32c(head))


def encode_message(msg_type: int, payload: bytes | memoryview, version: Version = SUPPORTED_MAX,
                   flags: int = 0) -> bytes:
    if len(payload) > MAX_PAYLOAD_LIMIT:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the protocol limit {MAX_PAYLOAD_LIMIT}")
    header = encode_header(msg_type, len(payload), version, flags)
    crc = crc32c(payload, crc32c(header))
    return b"".join((header, payload, HEADER_CRC.pack(crc)))


def check_header(buf, offset: int = 0):
    """(major, minor, type, flags, length) if the 16 bytes at offset are a valid header, else None."""
    if crc32c(buf[offset:offset + 12]) != HEADER_CRC.unpack_from(buf, offset + 12)[0]:
        return None
    _, major, minor, mtype, flags, length = HEADER.unpack_from(buf, offset)
    return major, minor, mtype, flags, length


# ---------------------------------------------------------------------------------- hello / caps

HELLO = struct.Struct("<BBBB")  # min major, min minor, max major, max minor


def encode_hello(vmin: Version = SUPPORTED_MIN, vmax: Version = SUPPORTED_MAX) -> bytes:
    # The hello is always sent in the envelope with the device's lowest version so any probe reads it.
    return encode_message(MsgType.HELLO, HELLO.pack(*vmin, *vmax), vmin)


def decode_hello(payload) -> tuple[Version, Version]:
    if len(payload) < HELLO.size:
        raise ProtocolError(f"hello payload of {len(payload)} bytes is shorter than {HELLO.size}")
    a, b, c, d = HELLO.unpack_from(payload)
    return (a, b), (c, d)


@dataclass(frozen=True)
class ProbeInfo:
    version: Version  # negotiated version chosen by the probe
    probe_min: Version
    probe_max: Version
    model: str
    serial_number: str
    firmware_version: str
    geometries: tuple[int, ...]  # kind tokens (ProbeKind members for the table's kinds)
    max_frame_bytes: int

    def as_dict(self) -> dict:
        return {
            "version": fmt_version(self.version),
            "probe_versions": f"{fmt_version(self.probe_min)}..{fmt_version(self.probe_max)}",
            "model": self.model,
            "serial_number": self.serial_number,
            "firmware_version": self.firmware_version,
            "geometries": [geometry_class(k).kind_name for k in self.geometries],
            "max_frame_bytes": self.max_frame_bytes,
        }


CAPS = struct.Struct("<BBBBBBBxI")  # chosen, probe min, probe max (major, minor each), geometry mask, max frame


def _pack_str(s: str) -> bytes:
    b = s.encode("utf-8")[:255]
    return bytes((len(b),)) + b


def _unpack_str(payload, pos: int) -> tuple[str, int]:
    n = payload[pos]
    if pos + 1 + n > len(payload):
        raise ProtocolError("string field runs past the end of the message")
    return bytes(payload[pos + 1:pos + 1 + n]).decode("utf-8", "replace"), pos + 1 + n


def encode_capabilities(info: ProbeInfo) -> bytes:
    mask = 0
    for k in info.geometries:
        mask |= 1 << int(k)
    body = CAPS.pack(*info.version, *info.probe_min, *info.probe_max, mask, info.max_frame_bytes)
    body += _pack_str(info.model) + _pack_str(info.serial_number) + _pack_str(info.firmware_version)
    return encode_message(MsgType.CAPABILITIES, body, info.version)


def decode_capabilities(payload) -> ProbeInfo:
    if len(payload) < CAPS.size + 3:
        raise ProtocolError(f"capabilities payload of {len(payload)} bytes is too short")
    a, b, c, d, e, f, mask, max_frame = CAPS.unpack_from(payload)
    model, pos = _unpack_str(payload, CAPS.size)
    serial, pos = _unpack_str(payload, pos)
    fw, pos = _unpack_str(payload, pos)
    kinds = tuple(k for k in registered_kinds() if mask & (1 << int(k)))
    return ProbeInfo((a, b), (c, d), (e, f), model, serial, fw, kinds, max_frame)


def encode_error(text: str, version: Version = SUPPORTED_MIN) -> bytes:
    return encode_message(MsgType.ERROR, text.encode("utf-8")[:MAX_CONTROL_PAYLOAD], version)


def decode_error(payload) -> str:
    return bytes(payload).decode("utf-8", "replace")


# ---------------------------------------------------------------------------------- frame

# A frame's sub-header: FRAME_STAMP | FRAME_COMMON | the kind's own fields (its geometry class's
# SUBHEADER) | TGC curve (8 n_tgc bytes). Only the stamp changes from frame to frame; the bytes
# after it describe the geometry, so the parser compares them to reuse the last Geometry.
FRAME_STAMP = struct.Struct("<IQ")  # seq, timestamp_us
FRAME_COMMON = struct.Struct("<BBHHxxIdd")  # kind, bits, n_tgc, n_lines, (pad), n_samples, start, end
FRAME_FIXED = FRAME_STAMP.size + FRAME_COMMON.size  # 40: where the kind's own fields start


def _frame_kind(payload):
    """(geometry class, samples offset) of a frame payload at least FRAME_FIXED bytes long: the
    kind's class says how long its part of the sub-header is."""
    kind, _bits, n_tgc = FRAME_COMMON.unpack_from(payload, FRAME_STAMP.size)[:3]
    try:
        cls = geometry_class(kind)
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    return cls, FRAME_FIXED + cls.SUBHEADER.size + 8 * n_tgc


def frame_samples_offset(payload) -> int:
    """Where the samples start in a frame payload at least FRAME_FIXED bytes long."""
    return _frame_kind(payload)[1]


def encode_frame_subheader(seq: int, timestamp_us: int, g: Geometry) -> bytes:
    tgc = g.tgc_db or ()
    sub = (FRAME_STAMP.pack(seq & 0xFFFFFFFF, timestamp_us)
           + FRAME_COMMON.pack(int(g.kind), g.bits, len(tgc), g.n_lines, g.n_samples, g.start_depth_mm,
                               g.end_depth_mm)
           + g.encode_subheader())
    if tgc:
        sub += struct.pack(f"<{len(tgc)}d", *tgc)
    return sub


def encode_frame_parts(seq: int, timestamp_us: int, g: Geometry, samples: np.ndarray,
                       version: Version = SUPPORTED_MAX) -> tuple[bytes, memoryview, bytes]:
    """One FRAME message as (header + sub-header, samples, CRC) without copying the samples,
    for os.writev. samples: (n_lines, n_samples) uint8/uint16 matching g."""
    dtype = np.uint8 if g.bits == 8 else np.dtype("<u2")
    if samples.shape != (g.n_lines, g.n_samples):
        raise ValueError(f"samples shape {samples.shape} does not match geometry ({g.n_lines}, {g.n_samples})")
    if g.tgc_db and version < (1, 1):
        raise ValueError(f"a TGC curve needs protocol 1.1; this link speaks {fmt_version(version)}")
    data = memoryview(np.ascontiguousarray(samples, dtype=dtype)).cast("B")
    sub = encode_frame_subheader(seq, timestamp_us, g)
    head = encode_header(MsgType.FRAME, len(sub) + len(data), version) + sub
    return head, data, HEADER_CRC.pack(crc32c(data, crc32c(head)))


def encode_frame(seq: int, timestamp_us: int, g: Geometry, samples: np.ndarray,
                 version: Version = SUPPORTED_MAX) -> bytes:
    """One FRAME message. samples: (n_lines, n_samples) uint8/uint16 matching g."""
    return b"".join(encode_frame_parts(seq, timestamp_us, g, samples, version))


def decode_frame_subheader(payload, version: Version):
    """(seq, timestamp_us, Geometry, samples_offset); ProtocolError if inconsistent."""
    if len(payload) < FRAME_FIXED:
        raise ProtocolError(f"frame payload of {len(payload)} bytes is shorter than its sub-header")
    seq, ts = FRAME_STAMP.unpack_from(payload)
    kind, bits, n_tgc, n_lines, n_samples, s, e = FRAME_COMMON.unpack_from(payload, FRAME_STAMP.size)
    cls, off = _frame_kind(payload)
    tgc_at = FRAME_FIXED + cls.SUBHEADER.size
    if len(payload) < tgc_at:
        raise ProtocolError(f"frame payload of {len(payload)} bytes is shorter than its sub-header")
    if n_tgc and version < (1, 1):
        raise ProtocolError(f"TGC curve in a protocol {fmt_version(version)} frame (needs 1.1)")
    if len(payload) < off:
        raise ProtocolError("frame payload is shorter than its TGC curve")
    tgc = struct.unpack_from(f"<{n_tgc}d", payload, tgc_at) if n_tgc else None
    try:
        g = Geometry(kind, n_lines, n_samples, bits, s, e, tgc_db=tgc,
                     **cls.decode_subheader(payload, FRAME_FIXED))
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    if len(payload) - off != g.payload_bytes:
        raise ProtocolError(
            f"frame carries {len(payload) - off} sample bytes but its geometry needs {g.payload_bytes}")
    return seq, ts, g, off


# ---------------------------------------------------------------------------------- telemetry

TELEMETRY = struct.Struct("<QBxhBB")  # timestamp_us, battery % (255 unknown), temp centi-degC, button, id


@dataclass(frozen=True)
class Telemetry:
    timestamp_us: int
    battery_pct: int | None
    temperature_c: float | None
    button: ButtonEvent = ButtonEvent.NONE
    button_id: int = 0


def encode_telemetry(t: Telemetry, version: Version = SUPPORTED_MAX) -> bytes:
    bat = 255 if t.battery_pct is None else max(0, min(100, int(t.battery_pct)))
    temp = -32768 if t.temperature_c is None else int(round(t.temperature_c * 100))
    button = int(t.button) if version >= (1, 1) else 0
    return encode_message(MsgType.TELEMETRY, TELEMETRY.pack(t.timestamp_us, bat, temp, button, t.button_id),
                          version)


def decode_telemetry(payload) -> Telemetry:
    if len(payload) < TELEMETRY.size:
        raise ProtocolError(f"telemetry payload of {len(payload)} bytes is too short")
    ts, bat, temp, button, bid = TELEMETRY.unpack_from(payload)
    try:
        ev = ButtonEvent(button)
    except ValueError:
        raise ProtocolError(f"unknown button event {button}") from None
    return Telemetry(ts, None if bat == 255 else bat, None if temp == -32768 else temp / 100.0, ev, bid)


# ---------------------------------------------------------------------------------- commands

COMMAND = struct.Struct("<IBxxxd")  # request id, command, value
ACK = struct.Struct("<IBBxxd")  # request id, command, status (0 ok), applied value; then utf-8 message


@dataclass(frozen=True)
class Ack:
    request_id: int
    command: Command
    ok: bool
    value: float
    message: str = field(default="")


def encode_command(request_id: int, cmd: Command, value: float, version: Version) -> bytes:
    return encode_message(MsgType.COMMAND, COMMAND.pack(request_id & 0xFFFFFFFF, int(cmd), float(value)),
                          version)


def decode_command(payload) -> tuple[int, int, float]:
    if len(payload) < COMMAND.size:
        raise ProtocolError(f"command payload of {len(payload)} bytes is too short")
    return COMMAND.unpack_from(payload)


def encode_ack(ack: Ack, version: Version) -> bytes:
    body = ACK.pack(ack.request_id, int(ack.command), 0 if ack.ok else 1, ack.value)
    return encode_message(MsgType.ACK, body + ack.message.encode("utf-8")[:1024], version)


def decode_ack(payload) -> Ack:
    if len(payload) < ACK.size:
        raise ProtocolError(f"ack payload of {len(payload)} bytes is too short")
    rid, cmd, status, value = ACK.unpack_from(payload)
    try:
        c = Command(cmd)
    except ValueError:
        raise ProtocolError(f"ack for unknown command {cmd}") from None
    return Ack(rid, c, status == 0, value, bytes(payload[ACK.size:]).decode("utf-8", "replace"))
