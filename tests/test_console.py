"""Service console on a pseudo-terminal, talking to a real running daemon."""
from __future__ import annotations

import json
import os
import select
import threading
import time
import tty

import pytest

from firmware_py.config import load_config
from firmware_py.console import pin_digest
from firmware_py.daemon.runner import Daemon

PIN = "2468"


class Terminal:
    """The technician's end of the console cable."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""

    def read_prompt(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\r\n> " not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no prompt; got {self.buf!r}"
            if select.select([self.fd], [], [], left)[0]:
                self.buf += os.read(self.fd, 4096)
        text, _, self.buf = self.buf.partition(b"\r\n> ")
        return text.decode()

    def ask(self, line: str) -> str:
        os.write(self.fd, line.encode() + b"\r")
        return self.read_prompt()


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def console(tmp_path):
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    cfg = load_config(None).replace(
        console={"port": os.ttyname(slave), "pin_sha256": pin_digest(PIN), "lockout_s": 1.0},
        run={"duration_s": 120.0}, simulator={"fps": 20.0},
        output={"results": str(tmp_path / "r.jsonl"), "status_interval_s": 0.0})
    daemon = Daemon(cfg)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    term = Terminal(master)
    assert "service console" in term.read_prompt()
    yield term, daemon
    daemon.stop_event.set()
    runner.join(20)
    assert not runner.is_alive()
    os.close(master)
    os.close(slave)


@pytest.mark.slow
def test_console_reports_status_and_counters_that_add_up(console):
    term, daemon = console
    assert wait_for(lambda: json.loads(term.ask("counters"))["frames_processed"] >= 5)
    c = json.loads(term.ask("counters"))
    assert c["frames_received"] >= c["frames_processed"] + c["frames_dropped_stale"]
    assert "rx " in term.ask("status") and "| tier " in term.ask("status")
    assert "ladder" in term.ask("tiers")
    assert "unknown command 'frobnicate'" in term.ask("frobnicate")
    assert "login PIN" in term.ask("help")


@pytest.mark.slow
def test_state_changes_need_the_pin_and_wrong_pins_lock_the_console(console):
    term, daemon = console
    smallest = daemon.engine.ladder[0]
    assert "log in first" in term.ask(f"tier {smallest}")
    assert "log in first" in term.ask("probe gain 3")
    assert "2 tries left" in term.ask("login 1111")
    assert "1 tries left" in term.ask("login 1112")
    assert "locked" in term.ask("login 1113")
    assert "locked" in term.ask(f"login {PIN}")  # even the right PIN, while locked
    time.sleep(1.1)
    assert term.ask(f"login {PIN}") == "ok: logged in"

    assert "pinned" in term.ask(f"tier {smallest}")
    assert wait_for(lambda: json.loads(term.ask("counters"))["tier"] == smallest)
    assert daemon.policy_enabled is False
    assert "no tier 'huge'" in term.ask("tier huge")
    assert "policy" in term.ask("tier auto") and daemon.policy_enabled

    assert term.ask("probe gain 3").startswith("ok: probe acknowledged gain=3")
    assert "unknown probe command" in term.ask("probe warp 9")
    assert "not a number" in term.ask("probe gain loud")
    term.ask("logout")
    assert "log in first" in term.ask("reload")


def test_a_console_command_is_one_registered_function_listed_by_help():
    """Where to add a console command: one @command function; help and the login rule follow."""
    from firmware_py.console import ServiceConsole
    from firmware_py.console.commands import COMMANDS, command

    @command("uptime", "uptime", "seconds since start", login=True)
    def _uptime(console, args):
        return f"ok: up {console.daemon.uptime_s:.0f} s"

    class Daemon:
        uptime_s = 42.0

    console = ServiceConsole("loop://", Daemon(), pin_sha256=pin_digest(PIN))
    try:
        assert "uptime" in console.execute("help") and "seconds since start (login)" in console.execute("help")
        assert console.execute("uptime") == "error: log in first: login PIN"
        assert console.execute(f"login {PIN}") == "ok: logged in"
        assert console.execute("UPTIME") == "ok: up 42 s"
    finally:
        del COMMANDS["uptime"]
        console.stop()
    assert "uptime" not in console.execute("help")
