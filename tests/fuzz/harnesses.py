"""The fuzz harnesses (issue 18): one function per target, ``bytes -> None``, raising on a broken promise.

Run by atheris (``make fuzz SECONDS=N``, tests/fuzz/fuzz.py) and, over the committed seed
corpora, by pytest (tests/test_fuzz_corpus.py), so the corpora stay valid in CI.

``parser``: the fuzz input is what the line carried, then an intact sentinel frame. Read in chunks
whose sizes the input's first bytes choose, through a pool of 2 buffers: after every chunk the byte
counters balance and memory is bounded; at the end (the line quiet, as ProbeLink gives a stalled
body up) the sentinel has arrived unchanged and every frame header counted is delivered, rejected
or in progress.

``console``: the fuzz input is what the technician's terminal sent. Through the line editor, whose
echo is plain text only (no ESC, control or high byte), into a real daemon's console (the console
tests' rig: signed test models, the simulated probe) line by line: every line gets one reply,
never an exception and never the "failed (...)" line of a command's own bug.
"""
from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
for p in (REPO, os.path.join(REPO, "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)

from firmware_py.drivers import protocol as P  # noqa: E402
from firmware_py.drivers.buffers import BufferPool, Frame  # noqa: E402
from firmware_py.drivers.parser import FrameParser  # noqa: E402
from firmware_py.geometry import Geometry, ProbeKind  # noqa: E402

V = P.SUPPORTED_MAX
MAX_PAYLOAD = 1 << 16
SENTINEL_SEQ = 0xFFFFFFF0
SENTINEL_GEOMETRY = Geometry(ProbeKind.LINEAR, 4, 8, 8, 1.0, 30.0, 20.0, 0.0, None)
SENTINEL_SAMPLES = np.arange(32, dtype=np.uint8).reshape(4, 8)
SENTINEL = P.encode_frame(SENTINEL_SEQ, 7, SENTINEL_GEOMETRY, SENTINEL_SAMPLES, V)


def parser(data: bytes) -> None:
    head, body = data[:2], data[2:]
    chunk = 1 + (int.from_bytes(head, "little") % 4096 if head else 4095)
    stream = body + SENTINEL
    pool = BufferPool(count=0, max_buffers=2)
    p = FrameParser(pool, version=V, max_payload=MAX_PAYLOAD, scan_size=8192)
    scan_len, got = len(p._scan), []
    for pos in range(0, len(stream), chunk):
        piece = stream[pos:pos + chunk]
        if len(head) == 2 and head[1] & 1:
            buf = p.get_buffer()
            n = min(len(buf), len(piece))
            buf[:n] = piece[:n]
            items = p.buffer_updated(n)
            if n < len(piece):
                items += p.feed(piece[n:])
        else:
            items = p.feed(piece)
        _collect(items, got)
        assert p.bytes_in == p.bytes_accepted + p.bytes_discarded + p.pending_bytes, "byte counters unbalanced"
        assert len(p._scan) == scan_len and pool.stats()["buffers"] <= 2, "memory grew"
        assert p.pending_bytes <= MAX_PAYLOAD + P.OVERHEAD + scan_len, "pending bytes unbounded"
    while p.frames_in_progress:  # the line goes quiet
        _collect(p.abandon(), got)
    assert got and got[-1] == SENTINEL_SEQ, f"the intact frame after the input was lost (got {got[-3:]})"
    assert p.frames_received == (p.frames_delivered + sum(p.frames_rejected.values()) + p.frames_no_buffer
                                 + p.frames_in_progress), "frame counters unbalanced"
    assert p.frames_no_buffer == 0 and p.frames_delivered == len(got)
    assert p.pending_bytes < P.HEADER_SIZE + P.MAX_CONTROL_PAYLOAD + P.TRAILER_SIZE


def _collect(items, got: list) -> None:
    for item in items:
        if isinstance(item, Frame):
            if item.seq == SENTINEL_SEQ:
                assert item.geometry == SENTINEL_GEOMETRY
                np.testing.assert_array_equal(item.samples, SENTINEL_SAMPLES)
            got.append(item.seq)
            item.release()


# -- console --------------------------------------------------------------------------------------
ALLOWED_ECHO = frozenset(range(0x20, 0x7F)) | {0x0D, 0x0A, 0x08}
SKIP_COMMANDS = {"watch", "selftest", "record"}  # streams until a key / seconds per run / writes files
_rig = None


def console_rig(workdir: str):
    """The daemon whose console the harness drives (started once per process)."""
    global _rig
    if _rig is None:
        from tests.console_rig import Rig

        _rig = Rig(_Path(workdir))
    return _rig


class _Path(str):
    """tests.console_rig takes a pathlib-like folder (``/``)."""

    def __truediv__(self, name: str) -> "_Path":
        return _Path(os.path.join(self, name))


def console(data: bytes, workdir: str | None = None) -> None:
    from firmware_py.console.terminal import LineEditor

    con = console_rig(workdir or tempfile.mkdtemp(prefix="fuzz-console-")).daemon.console
    editor = LineEditor(max_line=con.max_line)
    for item in editor.feed(data):
        if isinstance(item, bytes):
            assert set(item) <= ALLOWED_ECHO, f"raw bytes echoed: {sorted(set(item) - ALLOWED_ECHO)}"
            continue
        assert item.kind in ("line", "error", "cancel", "eof") and "\n" not in item.text
        if item.kind != "line" or not item.text.split() or item.text.split()[0].lower() in SKIP_COMMANDS:
            continue
        assert len(item.text) <= con.max_line
        reply = con.execute(item.text)
        assert isinstance(reply, str) and " failed (" not in reply, f"a command's own bug: {reply!r}"
        assert "\x1b" not in reply, f"an escape sequence in a reply: {reply!r}"
    con.session.json = False  # the next input starts from the same replies
    con.session.logged_in = False


HARNESSES = {"parser": parser, "console": console}


def preload(name: str) -> None:
    """Import what the harness uses (under atheris, inside its instrumentation)."""
    if name == "console":
        import firmware_py.console.commands  # noqa: F401
        import firmware_py.console.terminal  # noqa: F401
        import tests.console_rig  # noqa: F401


def close() -> None:
    global _rig
    if _rig is not None:
        _rig.close()
        _rig = None
