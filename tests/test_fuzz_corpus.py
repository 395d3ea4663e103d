"""The committed fuzz seed corpora, replayed through the atheris harnesses' own functions, so the
harnesses and their seeds stay valid in CI (tests/fuzz/; `make fuzz SECONDS=N` runs the fuzzer)."""
import os
import sys

import pytest

FUZZ = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz")
sys.path.insert(0, FUZZ)
import harnesses  # noqa: E402


def seeds(harness: str) -> list[str]:
    folder = os.path.join(FUZZ, "corpus", harness)
    return sorted(os.path.join(folder, n) for n in os.listdir(folder))


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("path", seeds("parser"), ids=os.path.basename)
def test_parser_seed_holds_every_promise(path):
    harnesses.parser(read(path))


def test_parser_seeds_carry_real_simulator_frames():
    """A seed is the simulator's stream: its clean seeds decode to frames 0, 1, 2, ..."""
    from firmware_py.drivers.parser import FrameParser

    for path in seeds("parser"):
        if path.endswith("-clean"):
            p = FrameParser(version=harnesses.V)
            frames = [f for f in p.feed(read(path)[2:]) if hasattr(f, "seq")]
            assert [f.seq for f in frames] == list(range(len(frames))) and len(frames) >= 3, path
            assert p.bytes_discarded == 0


@pytest.fixture(scope="module")
def console_rig(tmp_path_factory):
    pytest.importorskip("pyte", reason="the console rig needs pyte (pip install -e .[test])")
    yield harnesses.console_rig(str(tmp_path_factory.mktemp("fuzz-console")))
    harnesses.close()


@pytest.mark.parametrize("path", seeds("console"), ids=os.path.basename)
def test_console_seed_holds_every_promise(console_rig, path):
    harnesses.console(read(path))


def test_a_broken_promise_fails_the_harness():
    """The harness is not vacuous: with the rescan after a cut broken (what it should scan again is
    dropped), a lying header before the sentinel frame makes the harness fail."""
    import firmware_py.drivers.parser as parser_mod

    real = parser_mod.FrameParser._cut
    parser_mod.FrameParser._cut = lambda self, reason, text: (real(self, reason, text), self._replay.clear())[0]
    try:
        with pytest.raises(AssertionError):
            harnesses.parser(b"\x00\x00" + harnesses.P.encode_header(harnesses.P.MsgType.FRAME, 3000, harnesses.V))
    finally:
        parser_mod.FrameParser._cut = real
