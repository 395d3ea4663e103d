"""Preallocated frame buffers with an explicit lifetime (acquire -> Frame -> release).

The acquisition thread reads frame bytes straight into a pooled buffer; the Frame handed to the
pipeline holds a NumPy view into it, and Frame.release() gives the buffer back. Nothing is
allocated per frame once the pool has buffers of the right size.
"""
from __future__ import annotations

import threading

import numpy as np

from firmware_py.geometry import Geometry


class BufferPool:
    """Thread-safe pool of bytearrays. acquire() from the acquisition thread, release() from anywhere.

    ``count`` buffers of ``size`` bytes are allocated up front. When a bigger frame arrives, or all
    buffers are in use, the pool allocates a new one while it holds fewer than ``max_buffers``;
    beyond that acquire() returns None (the parser then counts the frame as ``frames_no_buffer``).
    """

    def __init__(self, count: int = 4, size: int = 0, max_buffers: int = 8):
        if count < 0 or max_buffers < 1 or count > max_buffers:
            raise ValueError(f"buffer pool needs 0 <= count ({count}) <= max_buffers ({max_buffers}), max >= 1")
        self._lock = threading.Lock()
        self._free: list[bytearray] = [bytearray(size) for _ in range(count)] if size > 0 else []
        self._total = len(self._free)
        self.max_buffers = max_buffers
        self.allocations = self._total
        self.exhausted = 0

    def acquire(self, nbytes: int) -> bytearray | None:
        with self._lock:
            for i, buf in enumerate(self._free):
                if len(buf) >= nbytes:
                    return self._free.pop(i)
            if self._total < self.max_buffers:
                self._total += 1
            elif self._free:
                # all free buffers are too small (geometry grew): replace the smallest one
                self._free.sort(key=len)
                self._free.pop(0)
            else:
                self.exhausted += 1
                return None
            self.allocations += 1
        return bytearray(max(nbytes, 4096))

    def release(self, buf: bytearray) -> None:
        with self._lock:
            self._free.append(buf)

    def release_frame(self, frame: "Frame") -> bool:
        """Take the frame's buffer back exactly once, even if two threads release it at once
        (a buffer in the free list twice would later back two frames)."""
        with self._lock:
            buf, frame._buf = frame._buf, None
            if buf is None:
                return False
            self._free.append(buf)
            return True

    def stats(self) -> dict:
        with self._lock:
            return {"buffers": self._total, "free": len(self._free), "allocations": self.allocations,
                    "exhausted": self.exhausted}


class Frame:
    """One probe frame. ``samples`` is a (n_lines, n_samples) view into a pooled buffer:
    call release() when done with it (after release the view must not be used)."""

    __slots__ = ("seq", "timestamp_us", "geometry", "samples", "received_ns", "_buf", "_pool")

    def __init__(self, seq: int, timestamp_us: int, geometry: Geometry, buf: bytearray, offset: int,
                 pool: BufferPool | None, received_ns: int = 0):
        self.seq = seq
        self.timestamp_us = timestamp_us
        self.geometry = geometry
        dtype = np.uint8 if geometry.bits == 8 else np.dtype("<u2")
        self.samples = np.frombuffer(buf, dtype=dtype, count=geometry.n_lines * geometry.n_samples,
                                     offset=offset).reshape(geometry.n_lines, geometry.n_samples)
        self.received_ns = received_ns
        self._buf = buf
        self._pool = pool

    def release(self) -> None:
        """Return the buffer to the pool. Idempotent and thread-safe."""
        if self._pool is not None:
            self._pool.release_frame(self)
        else:
            self._buf = None
        self.samples = None

    @property
    def released(self) -> bool:
        return self._buf is None

    def __repr__(self) -> str:
        return f"Frame(seq={self.seq}, timestamp_us={self.timestamp_us}, geometry={self.geometry})"
