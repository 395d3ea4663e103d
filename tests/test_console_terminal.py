"""The console's line editor, PIN digest and login guard, byte in / bytes out: no port."""
from __future__ import annotations

import pytest

from firmware_py.console.auth import LoginGuard, check_pin_hash, hash_pin, verify_pin
from firmware_py.console.terminal import Input, LineEditor

FAST_N = 2 ** 10  # the format's smallest cost: these tests check behaviour, not the cost


def typed(editor: LineEditor, data: bytes) -> tuple[bytes, list[Input]]:
    out = editor.feed(data)
    return b"".join(x for x in out if isinstance(x, bytes)), [x for x in out if isinstance(x, Input)]


def test_printable_characters_are_echoed_and_cr_lf_crlf_each_end_one_line():
    e = LineEditor()
    echo, inputs = typed(e, b"status\rtiers\nhelp\r\nversion\r")
    assert echo == b"status\r\ntiers\r\nhelp\r\nversion\r\n"
    assert inputs == [Input("line", "status"), Input("line", "tiers"), Input("line", "help"),
                      Input("line", "version")]
    assert typed(e, b"\r") == (b"\r\n", [Input("line", "")])  # an empty line still gets a prompt


def test_echo_and_finished_inputs_come_in_the_order_they_were_typed():
    assert LineEditor().feed(b"ab\rc") == [b"ab\r\n", Input("line", "ab"), b"c"]


@pytest.mark.parametrize("erase", [b"\x7f", b"\x08"])  # DEL (picocom, screen) and Ctrl-H (minicom)
def test_backspace_erases_on_screen_and_in_the_line(erase):
    echo, inputs = typed(LineEditor(), b"statsu" + erase * 2 + b"us\r")
    assert inputs == [Input("line", "status")]
    assert echo == b"statsu" + b"\b \b" * 2 + b"us\r\n"
    assert typed(LineEditor(), erase * 3 + b"x\r")[1] == [Input("line", "x")]  # nothing to erase: nothing sent


def test_ctrl_u_kills_the_line_ctrl_c_cancels_it_ctrl_d_ends_the_session():
    e = LineEditor()
    echo, inputs = typed(e, b"rel\x15tiers\r")
    assert inputs == [Input("line", "tiers")] and echo.startswith(b"rel" + b"\b \b" * 3)
    assert typed(e, b"reload\x03") == (b"reload^C\r\n", [Input("cancel")])
    assert typed(e, b"\r")[1] == [Input("line", "")]  # the cancelled text is gone
    assert typed(e, b"ab\x04")[1] == []  # Ctrl-D inside a line does nothing
    assert typed(e, b"\x15\x04")[1] == [Input("eof")]


def test_escape_sequences_are_consumed_never_echoed_and_up_down_recall_history():
    e = LineEditor()
    typed(e, b"status\rtiers\r")
    echo, inputs = typed(e, b"\x1b[A")  # up: the last line
    assert echo == b"tiers" and inputs == []
    echo, _ = typed(e, b"\x1b[A")  # up again: the one before, the shown line erased first
    assert echo == b"\b \b" * 5 + b"status"
    assert typed(e, b"\x1b[B\x1b[B")[0] == b"\b \b" * 6 + b"tiers" + b"\b \b" * 5
    # right/left, F1 (SS3), F5 (CSI ~), Alt-x, a cursor-position report: all swallowed
    echo, inputs = typed(e, b"\x1b[C\x1b[D\x1bOP\x1b[15~\x1bx\x1b[24;80Rhelp\r")
    assert echo == b"help\r\n" and inputs == [Input("line", "help")]


def test_non_printable_bytes_are_not_echoed_and_the_line_is_refused_with_a_reason():
    echo, inputs = typed(LineEditor(), b"sta\x00\x07\xfftus\r")
    assert echo == b"status\r\n"
    assert inputs[0].kind == "error" and "3 non-printable" in inputs[0].text


def test_a_line_over_the_limit_is_refused_naming_the_limit_and_memory_stays_bounded():
    e = LineEditor(max_line=256)
    echo, inputs = typed(e, b"x" * 5000 + b"\r")
    assert len(echo) == 256 + 2
    assert inputs[0].kind == "error" and "limit of 256 characters" in inputs[0].text and "5000" in inputs[0].text
    assert len(e.line) == 0
    typed(e, b"\x1b[" + b"1;" * 10000)  # an escape sequence that never ends is dropped, not kept
    echo, inputs = typed(e, b"\rstatus\r")
    assert inputs[0].kind == "error" and inputs[1] == Input("line", "status")


def test_the_pin_of_login_is_echoed_as_stars_and_kept_out_of_the_history():
    e = LineEditor()
    echo, inputs = typed(e, b"login 2468\r")
    assert echo == b"login ****\r\n" and inputs == [Input("line", "login 2468")]
    assert typed(e, b"\x1b[A")[0] == b""


def test_pin_digest_is_salted_scrypt_and_verifies_only_the_right_pin():
    a, b = hash_pin("2468", FAST_N), hash_pin("2468", FAST_N)
    assert a != b and a.startswith("scrypt$1024$8$1$")  # a salt of its own each time
    assert check_pin_hash(a) is None and verify_pin("2468", a) and not verify_pin("2469", a)
    assert "2468" not in a
    assert "config pin" in check_pin_hash("0" * 64)
    assert "out of range" in check_pin_hash(a.replace("$1024$", "$1000$"))


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_wrong_pins_back_off_exponentially_then_lock_out_and_a_right_pin_clears_the_count():
    clock = Clock()
    g = LoginGuard(max_failures=4, backoff_s=1.0, lockout_s=60.0, clock=clock)
    assert g.refusal() is None and "3 tries left" in g.failed()
    assert "wait 1.0 s" in g.refusal()
    clock.t += 1.0
    assert g.refusal() is None and "2 tries left" in g.failed()
    clock.t += 1.9
    assert "wait" in g.refusal()  # the second wait is 2 s
    clock.t += 0.1
    g.failed()
    clock.t += 4.0
    assert "locked for 60 s" in g.failed()
    clock.t += 59.0
    assert "locked" in g.refusal()
    clock.t += 1.0
    assert g.refusal() is None and "3 tries left" in g.failed()  # the lockout cleared the count
    clock.t += 1.0
    g.succeeded()
    assert g.refusal() is None and g.failures == 0
