"""Console line editor and command parser on any input (issue 18, hypothesis; every CI run).

The editor (pure): whatever bytes arrive, split however, it never raises, echoes only printable
text, CR/LF and erase sequences (never ESC, a control byte or a high byte: an escape sequence
cannot reach the technician's terminal raw), keeps every buffer bounded, gives the same result
however the bytes were split, and echoes a PIN typed after ``login`` as stars.
The command parser: any line the editor can produce, run by a real daemon's console (the rig
of the console tests: a signed test model set, the simulated probe), answers one reply, never an
exception and never the "failed (...)" line that means a command's own bug.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_py.console.commands import COMMANDS
from firmware_py.console.terminal import MAX_ESCAPE, Input, LineEditor

KEYS = [b"\x1b", b"[", b"O", b"A", b"B", b"\r", b"\n", b"\r\n", b"\x08", b"\x7f", b"\x03", b"\x04", b"\x15",
        b"\x00", b"\x07", b"\t", b"\x9b", b"\xff", b";", b"1", b"~", b" ", b"login ", b"status", b"\x1b[A",
        b"\x1b[B", b"\x1b[2J", b"\x1b]0;title\x07", b"\x1bP", b"\x1b[" + b"9" * 40 + b"m"]
typed = st.lists(st.one_of(st.sampled_from(KEYS), st.binary(min_size=1, max_size=8)), max_size=60).map(b"".join)
ALLOWED_ECHO = set(range(0x20, 0x7F)) | {0x0D, 0x0A, 0x08}
editor_settings = settings(max_examples=300, deadline=None)


def run_editor(data: bytes, cuts: list[int], max_line: int = 16) -> tuple[bytes, list[Input], LineEditor]:
    ed = LineEditor(max_line=max_line, history=4)
    echo, inputs, pos = bytearray(), [], 0
    for cut in sorted(set(cuts)) + [len(data)]:
        for item in ed.feed(data[pos:cut]):
            if isinstance(item, bytes):
                echo += item
            else:
                inputs.append(item)
        pos = max(pos, cut)
        assert len(ed.line) <= max_line and len(ed.history) <= 4
        assert ed._escape is None or len(ed._escape) <= MAX_ESCAPE
    return bytes(echo), inputs, ed


@editor_settings
@given(typed, st.lists(st.integers(0, 400), max_size=6))
def test_the_editor_never_raises_echoes_only_plain_text_and_ignores_how_bytes_were_split(data, cuts):
    echo, inputs, ed = run_editor(data, [c for c in cuts if c <= len(data)])
    assert set(echo) <= ALLOWED_ECHO, f"raw bytes echoed: {sorted(set(echo) - ALLOWED_ECHO)}"
    for item in inputs:
        assert item.kind in ("line", "error", "cancel", "eof")
        assert "\n" not in item.text and "\r" not in item.text
        if item.kind == "line":
            assert len(item.text) <= 16 and item.text.isascii() and item.text.isprintable()
    assert all(h.isprintable() and len(h) <= 16 and not h.lower().startswith("login ") for h in ed.history)
    whole_echo, whole_inputs, _ = run_editor(data, [])
    assert (whole_echo, whole_inputs) == (echo, inputs)  # byte by byte state machine: chunking is invisible


@editor_settings
@given(st.text(alphabet="0123456789abcXYZ!#", min_size=1, max_size=8), st.sampled_from(["login ", "LOGIN ", "Login "]))
def test_a_pin_typed_after_login_is_echoed_as_stars_and_kept_out_of_history(pin, word):
    echo, inputs, ed = run_editor((word + pin + "\r").encode(), [], max_line=64)
    assert echo == word.encode() + b"*" * len(pin) + b"\r\n"
    assert inputs == [Input("line", word + pin)] and not ed.history


# -- the command parser, on a running daemon ---------------------------------------------------
# watch streams until a key is pressed on the port (this test types nothing there); selftest
# re-runs the start checks (seconds each); record writes files at the paths it is given.
SKIP = {"watch", "selftest", "record"}
NAMES = sorted(set(COMMANDS) - SKIP)
WORDS = ["", "on", "off", "info", "auto", "start", "stop", "show", "pipeline", "freeze", "depth", "gain",
         "frame_rate", "-1", "0", "1", "3", "99999999999999999999", "1e309", "nan", "inf", "--json", "0x10",
         "../../etc/passwd", "%s%n%x", "{0}", "$(reboot)", "`id`", ";", "|", "'", '"', "\\", "tiers", "help"]
arg = st.one_of(st.sampled_from(WORDS), st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                                                min_size=1, max_size=12))
lines = st.tuples(st.sampled_from(NAMES), st.lists(arg, max_size=4), st.booleans()).map(
    lambda t: " ".join([t[0].upper() if t[2] else t[0], *t[1]]))


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    pytest.importorskip("pyte", reason="the console rig needs pyte (pip install -e .[test])")
    from tests.console_rig import Rig

    rig = Rig(tmp_path_factory.mktemp("fuzz-console"))
    yield rig.daemon.console
    rig.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(st.one_of(lines, st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)))
def test_any_command_line_gets_one_reply_and_never_a_commands_bug(console, line):
    reply = console.execute(line)
    assert isinstance(reply, str)
    assert " failed (" not in reply, reply  # the catch-all for a command's own exception
    assert "\x1b" not in reply and "\r" not in reply
    console.session.json = False  # `json on` would change the next example's replies
