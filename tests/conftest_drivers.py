"""Shared helpers for the drivers tests (imported by the test modules; not a conftest plugin)."""
from __future__ import annotations

import contextlib
import os
import threading
import time
import tty

import numpy as np

from firmware_py.drivers import protocol as P
from firmware_py.drivers.probe_sim import ProbeSimulator
from firmware_py.geometry import Geometry, ProbeKind

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("FIRMWARE_PY_DATA", os.path.join(REPO, "..", "shared", "data"))


def small_geometry(n_lines=4, n_samples=8, bits=8, kind=ProbeKind.LINEAR, tgc=None) -> Geometry:
    width = 20.0 if kind == ProbeKind.LINEAR else 60.0
    radius = 40.0 if kind == ProbeKind.CONVEX else 0.0
    return Geometry(kind, n_lines, n_samples, bits, 1.0, 30.0, width, radius, tgc)


def random_samples(rng: np.random.Generator, g: Geometry) -> np.ndarray:
    hi = 256 if g.bits == 8 else 65536
    dtype = np.uint8 if g.bits == 8 else np.uint16
    return rng.integers(0, hi, (g.n_lines, g.n_samples)).astype(dtype)


def frame_bytes(seq: int, g: Geometry, samples: np.ndarray, version=P.SUPPORTED_MAX) -> bytes:
    return P.encode_frame(seq, 1000 * seq, g, samples, version)


@contextlib.contextmanager
def pty_pair():
    """(master_fd, slave_fd, slave_path) of a raw pseudo-terminal; closed on exit."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield master, slave, os.ttyname(slave)
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class SimThread:
    """A ProbeSimulator serving one fd in a background thread."""

    def __init__(self, sim: ProbeSimulator, fd: int, **serve_kwargs):
        self.sim, self.fd = sim, fd
        self.summary = None
        self.thread = threading.Thread(target=self._run, kwargs=serve_kwargs, daemon=True)
        self.thread.start()

    def _run(self, **kw):
        self.summary = self.sim.serve_fd(self.fd, **kw)

    def stop(self, timeout=5.0):
        self.sim.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "simulator thread did not stop"
        return self.summary


class Collector:
    """Frame sink: keeps (seq, geometry, copy of samples) and releases every frame."""

    def __init__(self, keep_samples=False):
        self.frames: list = []
        self.events: list = []
        self.keep = keep_samples
        self._lock = threading.Lock()

    def __call__(self, frame):
        with self._lock:
            self.frames.append((frame.seq, frame.geometry, frame.samples.copy() if self.keep else None))
        frame.release()

    def on_event(self, event):
        self.events.append(event)

    @property
    def seqs(self):
        with self._lock:
            return [f[0] for f in self.frames]


def wait_for(pred, timeout=10.0, interval=0.01) -> bool:
    """Poll ``pred`` until true (functional waits, not timing assertions)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def read_in_chunks(parser, stream: bytes, chunks: list[int], via_readinto: bool):
    """Give ``stream`` to ``parser`` as a line would, in reads of the sizes ``chunks`` cycles
    through, by ``get_buffer()``/``buffer_updated()`` or by ``feed()``; yields (bytes so far, items)."""
    pos, i = 0, 0
    while pos < len(stream):
        n = min(chunks[i % len(chunks)], len(stream) - pos)
        i += 1
        if via_readinto:
            buf = parser.get_buffer()
            n = min(n, len(buf))
            buf[:n] = stream[pos:pos + n]
            items = parser.buffer_updated(n)
        else:
            items = parser.feed(stream[pos:pos + n])
        pos += n
        yield pos, items
