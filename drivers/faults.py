"""Fault injection for the probe simulator: what a bad cable, EMI or a crashing probe does.

Rates are probabilities per frame. Every injection is logged (seq, fault, detail) in memory and,
when a path is given, as JSON lines, so a test can check that the link noticed each one.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields

import numpy as np

FAULT_NAMES = ("bit_flip", "drop_bytes", "garbage", "truncate", "stall", "disconnect", "lying_length")


@dataclass(frozen=True)
class FaultConfig:
    bit_flip: float = 0.0  # flip 1..max_bits random bits anywhere in the frame message
    drop_bytes: float = 0.0  # remove 1..max_drop random bytes from the frame message
    garbage: float = 0.0  # write 1..max_garbage random bytes before the frame
    truncate: float = 0.0  # send only a random prefix of the frame message
    stall: float = 0.0  # pause stall_s seconds before the frame
    disconnect: float = 0.0  # hang up the line after the frame (pty mode re-creates it)
    # write, before the frame, a lone frame header with a valid header CRC announcing
    # lying_length_bytes of body that never come (a probe firmware bug, or a corrupted length
    # that happens to pass the header CRC)
    lying_length: float = 0.0
    stall_s: float = 0.5
    max_bits: int = 3
    max_drop: int = 16
    max_garbage: int = 256
    lying_length_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        for f in FAULT_NAMES:
            r = getattr(self, f)
            if not 0.0 <= r <= 1.0:
                raise ValueError(f"fault rate {f}={r} must be a probability in 0..1")
        if self.stall_s < 0:
            raise ValueError(f"stall_s={self.stall_s} must be >= 0")
        if not 0 <= self.lying_length_bytes < 2 ** 32:
            raise ValueError(f"lying_length_bytes={self.lying_length_bytes} must fit the header's 32-bit length")

    @property
    def any(self) -> bool:
        return any(getattr(self, f) > 0 for f in FAULT_NAMES)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class FaultInjector:
    def __init__(self, config: FaultConfig, seed: int = 0, log_path: str | None = None):
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.log: list[dict] = []
        self._file = open(log_path, "a", encoding="utf-8") if log_path else None
        self.disconnect_pending = False
        self._t0 = time.monotonic()

    def _record(self, seq: int, fault: str, **detail) -> None:
        entry = {"t": round(time.monotonic() - self._t0, 6), "seq": seq, "fault": fault, **detail}
        self.log.append(entry)
        if self._file:
            self._file.write(json.dumps(entry) + "\n")
            self._file.flush()

    def counts(self) -> dict:
        out = {f: 0 for f in FAULT_NAMES}
        for e in self.log:
            out[e["fault"]] += 1
        return out

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None

    def apply(self, seq: int, msg: bytes) -> list[tuple[bytes, float]]:
        """The writes (bytes, stall seconds before them) that carry frame ``seq`` given faults."""
        c, rng = self.config, self.rng
        if not c.any:
            return [(msg, 0.0)]
        out: list[tuple[bytes, float]] = []
        if c.stall and rng.random() < c.stall:
            self._record(seq, "stall", seconds=c.stall_s)
            out.append((b"", c.stall_s))
        if c.garbage and rng.random() < c.garbage:
            n = int(rng.integers(1, c.max_garbage + 1))
            self._record(seq, "garbage", bytes=n)
            out.append((rng.integers(0, 256, n, dtype=np.uint8).tobytes(), 0.0))
        if c.lying_length and rng.random() < c.lying_length:
            from firmware_py.drivers import protocol as P

            self._record(seq, "lying_length", bytes=c.lying_length_bytes)
            out.append((P.encode_header(P.MsgType.FRAME, c.lying_length_bytes, (msg[4], msg[5])), 0.0))
        data = msg
        if c.bit_flip and rng.random() < c.bit_flip:
            buf = bytearray(data)
            nbits = int(rng.integers(1, c.max_bits + 1))
            where = sorted(int(p) for p in rng.integers(0, len(buf) * 8, nbits))
            for p in where:
                buf[p // 8] ^= 1 << (p % 8)
            self._record(seq, "bit_flip", bits=where)
            data = bytes(buf)
        if c.drop_bytes and rng.random() < c.drop_bytes:
            n = min(int(rng.integers(1, c.max_drop + 1)), len(data) - 1)
            idx = np.sort(rng.choice(len(data), n, replace=False))
            keep = np.ones(len(data), bool)
            keep[idx] = False
            data = np.frombuffer(data, np.uint8)[keep].tobytes()
            self._record(seq, "drop_bytes", bytes=n, first_offset=int(idx[0]))
        if c.truncate and rng.random() < c.truncate:
            n = int(rng.integers(1, len(data)))
            self._record(seq, "truncate", kept=n, of=len(data))
            data = data[:n]
        out.append((data, 0.0))
        if c.disconnect and rng.random() < c.disconnect:
            self._record(seq, "disconnect")
            self.disconnect_pending = True
        return out
