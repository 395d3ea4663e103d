"""Recording of the raw probe stream with its timing, in bounded space, and its replay reader.

File format (little-endian): ``FWPYREC1`` | u32 n | n bytes of JSON metadata (probe info,
negotiated version, wall-clock start) | records ``u64 t_us | u32 length | bytes``, ``t_us``
counted from the start of the recording on the monotonic clock.

Bounded size as a black box: the recording is two segments, ``PATH`` (current) and ``PATH.1``
(previous), each at most half of ``max_bytes``; when the current one is full it becomes
``PATH.1`` and a new one starts, so the newest data is kept and the total never exceeds
``max_bytes``. Replay reads ``PATH.1`` (if it belongs to the same recording) then ``PATH``.
"""
from __future__ import annotations

import json
import os
import struct
import threading
import time
import uuid

from firmware_py.drivers import protocol as P

MAGIC = b"FWPYREC1"
RECORD = struct.Struct("<QI")
_MIN_SEGMENT = 4096
MIN_RECORD_BYTES = 2 * _MIN_SEGMENT  # smallest max_bytes: two segments (the config schema's lower bound)


class Recorder:
    def __init__(self, path: str, max_bytes: int, *, clock=time.monotonic_ns):
        if max_bytes < MIN_RECORD_BYTES:
            raise ValueError(f"record_max_bytes={max_bytes} is too small; give at least {MIN_RECORD_BYTES}")
        self.path, self.max_bytes = path, max_bytes
        self.segment_limit = max_bytes // 2
        self._clock = clock
        self._t0 = clock()
        self.meta = {"recording": uuid.uuid4().hex, "started_unix": time.time(), "version": None, "probe": None}
        self._lock = threading.Lock()
        self.bytes_recorded = self.chunks = self.rotations = 0
        self._f = None
        self._size = 0
        for p in (path, path + ".1"):
            if os.path.exists(p):
                os.remove(p)
        self._open_segment()

    def _open_segment(self) -> None:
        meta = json.dumps(self.meta).encode()
        self._f = open(self.path, "wb", buffering=1 << 20)
        self._f.write(MAGIC + struct.pack("<I", len(meta)) + meta)
        self._size = self._header_size = len(MAGIC) + 4 + len(meta)

    def set_header(self, info: P.ProbeInfo) -> None:
        """Probe info of the current connection; written at the start of each new segment."""
        self.meta["version"] = list(info.version)
        self.meta["probe"] = info.as_dict()

    def write(self, data) -> None:
        """Append one chunk as read from the line (called on the acquisition thread)."""
        mv = memoryview(data)
        with self._lock:
            if self._f is None:
                return
            t_us = (self._clock() - self._t0) // 1000
            while mv:
                if self._size + RECORD.size + len(mv) > self.segment_limit:
                    if self._size > self._header_size:  # segment has data: start the next one
                        self._rotate()
                    room = self.segment_limit - self._size - RECORD.size
                    if len(mv) > room:  # chunk bigger than a whole segment: split it
                        self._append(t_us, mv[:room])
                        mv = mv[room:]
                        continue
                self._append(t_us, mv)
                break

    def _append(self, t_us: int, mv: memoryview) -> None:
        self._f.write(RECORD.pack(t_us, len(mv)))
        self._f.write(mv)
        self._size += RECORD.size + len(mv)
        self.bytes_recorded += len(mv)
        self.chunks += 1

    def _rotate(self) -> None:
        self._f.close()
        os.replace(self.path, self.path + ".1")
        self.rotations += 1
        self._open_segment()

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None

    def stats(self) -> dict:
        return {"path": self.path, "bytes_recorded": self.bytes_recorded, "chunks": self.chunks,
                "rotations": self.rotations, "max_bytes": self.max_bytes}


def _read_segment(path: str):
    with open(path, "rb") as f:
        head = f.read(len(MAGIC) + 4)
        if len(head) < len(MAGIC) + 4 or head[:len(MAGIC)] != MAGIC:
            raise ValueError(f"{path} is not a firmware-py probe recording (bad magic); record one with "
                             "ProbeLink(record_path=...)")
        (mlen,) = struct.unpack("<I", head[len(MAGIC):])
        meta = json.loads(f.read(mlen))
        chunks = []
        while True:
            h = f.read(RECORD.size)
            if len(h) < RECORD.size:
                break  # a recording cut by power loss ends at the last whole record
            t_us, n = RECORD.unpack(h)
            data = f.read(n)
            if len(data) < n:
                break
            chunks.append((t_us, data))
    return meta, chunks


class Recording:
    """A recording loaded for replay: ``meta`` and ``chunks`` [(t_us, bytes)] in time order."""

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise FileNotFoundError(f"recording {path!r} does not exist")
        meta, chunks = _read_segment(path)
        prev = path + ".1"
        if os.path.exists(prev):
            pmeta, pchunks = _read_segment(prev)
            if pmeta.get("recording") == meta.get("recording"):
                chunks = pchunks + chunks
        self.path, self.meta, self.chunks = path, meta, chunks

    @property
    def version(self) -> P.Version | None:
        """Negotiated version: from the metadata, else from the first capabilities in the stream."""
        v = self.meta.get("version")
        if v:
            return tuple(v)
        from firmware_py.drivers.parser import FrameParser

        parser = FrameParser(max_payload=P.MAX_CONTROL_PAYLOAD)
        for _, data in self.chunks:
            for m in parser.feed(data):
                if getattr(m, "type", None) == P.MsgType.CAPABILITIES:
                    return m.value.version
                if hasattr(m, "release"):
                    m.release()
        return None

    @property
    def duration_s(self) -> float:
        return (self.chunks[-1][0] - self.chunks[0][0]) / 1e6 if self.chunks else 0.0

    @property
    def total_bytes(self) -> int:
        return sum(len(d) for _, d in self.chunks)
