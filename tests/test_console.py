"""Service console on a pseudo-terminal, driven like a technician at a terminal, against a real daemon."""
from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest

from tests.console_rig import PIN, PIN_HASH, Rig, rising
from tests.conftest_drivers import wait_for
from tests.timing import TIME_SCALE


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


@pytest.mark.slow
def test_the_screen_shows_banner_echo_corrected_typos_and_a_prompt_after_every_reply(rig):
    t = rig.tech
    t.pump(0.2)
    assert "firmware-py service console; type help" in t.lines()[0] and t.cursor_line == ">"
    t.type("statsu\x7f\x7fus")  # a typo, corrected with Backspace
    assert t.wait_screen(lambda t: t.cursor_line == "> status"), t.cursor_line
    reply = t.ask("")  # Enter runs what the screen shows
    assert "rx " in reply and "| tier " in reply
    assert t.lines()[-3] == "> status" and t.lines()[-2].startswith("[") and t.cursor_line == ">"
    t.ask("")  # an empty line: a new prompt
    assert t.lines()[-2:] == [">", ">"]
    t.type("reload")
    assert t.wait_screen(lambda t: t.cursor_line == "> reload")
    t.type("\x15")  # Ctrl-U: the line is gone from the screen too
    assert t.wait_screen(lambda t: t.cursor_line == ">")
    t.type("\x1b[A")  # up: the last command comes back, and arrows never move the cursor elsewhere
    assert t.wait_screen(lambda t: t.cursor_line == "> status"), t.cursor_line
    t.type("\x03")
    t.wait_raw(b"^C\r\n> ")
    assert "unknown command 'frobnicate'; type help" in t.ask("frobnicate")
    t.type("\x1b[15~\x1bOPtiers\r")  # function keys are swallowed
    t.wait_raw(b"ladder")


@pytest.mark.slow
def test_reading_commands_help_names_and_json_replies(rig):
    t = rig.tech
    assert wait_for(lambda: json.loads(t.ask("counters"))["frames_processed"] >= 5)
    c = json.loads(t.ask("counters"))
    assert c["frames_received"] >= c["frames_processed"] + c["frames_dropped_stale"]
    for name in ("status", "stats", "watch", "tier", "battery", "models", "verify", "selftest", "log", "config",
                 "record", "probe", "restart", "login", "logout", "version", "exit", "json"):
        assert name in t.ask("help")
        assert t.ask(f"help {name}").startswith("usage: ")
    assert "(login to change)" in t.ask("help tier")
    stats = t.ask("stats")
    for key in ("link.seq_restarts", "link.handshake_failures", "link.last_error", "link.battery_pct",
                "power.battery_percent", "pipeline.frames_processed"):
        assert f"{key}: " in stats
    assert "models.manifest: " in t.ask("config show") and "console.pin_hash: ***" in t.ask("config show")
    assert PIN_HASH not in t.raw.decode("utf-8", "replace")
    assert "is signed by the configured key" in t.ask("verify")
    assert t.ask("selftest").startswith("ok: selftest passed")
    assert "connected: True" in t.ask("probe info")
    assert "firmware_py: " in t.ask("version")
    assert t.ask("tier").startswith(f"tier {rig.daemon.engine.active_tier.name} on cpu (")

    one = json.loads(t.ask("status --json"))
    assert one["ok"] and one["command"] == "status" and "rx " in one["reply"]
    t.type("json on\r")
    t.wait_raw(b'"reply": "json on"}\r\n')
    start = len(t.raw)
    t.type("battery\rfrobnicate\rtiers\r")  # no echo, no prompt: one JSON object per line
    wait_for(lambda: t.raw.count(b"\n", start) >= 3 or t.pump(0.1))
    replies = [json.loads(line) for line in t.raw[start:].decode().splitlines()]
    assert [r["ok"] for r in replies] == [True, False, True]
    assert replies[0]["data"]["battery_percent"] == 77.0 and "unknown command" in replies[1]["error"]
    t.type("json off\r")
    t.wait_raw(b"\r\n> ", start=start)


@pytest.mark.slow
def test_changes_need_the_pin_wrong_pins_lock_out_and_every_change_is_audited(rig):
    t, daemon = rig.tech, rig.daemon
    smallest = daemon.engine.ladder[0]
    assert "log in first" in t.ask(f"tier {smallest}")
    assert "log in first" in t.ask("probe gain 3")
    assert "2 tries left" in t.ask("login 1111")
    assert "1 tries left" in t.ask("login 1112")
    assert "locked for 1 s" in t.ask("login 1113")
    assert "logins locked" in t.ask(f"login {PIN}")  # even the right PIN, while locked
    assert "1111" not in t.raw.decode() and "login ****" in t.raw.decode()  # the PIN never shows
    time.sleep(1.1)
    assert t.ask(f"login {PIN}") == "ok: logged in"

    assert "pinned" in t.ask(f"tier {smallest}")
    assert wait_for(lambda: json.loads(t.ask("counters"))["tier"] == smallest)
    assert daemon.policy_enabled is False
    assert "no tier 'huge'" in t.ask("tier huge")
    assert "policy" in t.ask("tier auto") and daemon.policy_enabled
    assert t.ask("probe gain 3") == "ok: probe acknowledged gain=3"
    assert "unknown probe command" in t.ask("probe warp 9")
    assert "not a number" in t.ask("probe gain loud")
    assert "no recording path" in t.ask("record start")
    rec = rig.daemon.cfg.output.journal + ".rec"
    assert t.ask(f"record start {rec}") == f"ok: recording the probe to {rec}"
    assert rising(rig)
    assert t.ask("record stop") == "ok: recording stopped"
    assert os.path.getsize(rec) > 0
    t.ask("logout")
    assert "log in first" in t.ask("reload")
    start = len(t.raw)
    t.type("exit\r")  # ends the session: a goodbye, no prompt
    t.wait_raw(b"ok: bye\r\n", start=start)
    t.pump(0.3)
    assert not t.raw[start:].endswith(b"> ")

    daemon.journal.flush()
    db = sqlite3.connect(daemon.journal.path)
    rows = db.execute("SELECT session, action, outcome FROM audit ORDER BY id").fetchall()
    actions = [a for _, a, _ in rows]
    assert actions[0] == "session start"
    assert ("login", "ok") in [(a, o) for _, a, o in rows]
    assert any(a == f"tier {smallest}" and "pinned" in o for _, a, o in rows)
    assert any(a == "probe gain 3" and o.startswith("ok: probe acknowledged") for _, a, o in rows)
    assert any(a.startswith("reload") and "log in first" in o for _, a, o in rows)  # refused changes too
    # a refused change keeps its name and reason, not its words (a PIN typed in the wrong place)
    assert any(a == "tier (1 argument(s), not recorded)" and o.startswith("error: no tier '<arg>'; choose one of")
               for _, a, o in rows)
    assert "logout" in actions and "session end" in actions
    assert not any(PIN in a or PIN in o or "1111" in a for _, a, o in rows)


@pytest.mark.slow
def test_watch_streams_live_results_until_n_or_a_key(rig):
    t = rig.tech
    reply = t.ask("watch 3")
    lines = reply.splitlines()
    assert lines[-1] == "ok: 3 result(s) shown" and len(lines) == 4
    assert all(line.startswith("#") and " ms" in line for line in lines[:3])
    start = len(t.raw)
    t.type("watch\r")
    t.wait_raw(b" ms\r\n", start=start)
    t.type("q")  # any key ends it; the key is not taken as a command
    end = t.wait_raw(b"result(s) shown\r\n> ", start=start)
    assert b"unknown command" not in t.raw[start:end]
    assert json.loads(t.ask("watch 1 --json").splitlines()[0])["tier"]


@pytest.mark.slow
def test_log_shows_recent_lines_and_the_session_ends_on_idle_and_on_reconnect(tmp_path):
    # the idle timeout scales under emulation: the test's own steps must fit inside one session
    rig = Rig(tmp_path, idle_timeout_s=1.0 * TIME_SCALE)
    try:
        t = rig.tech
        assert "2 tries left" in t.ask("login 1111")
        assert t.ask(f"login {PIN}") == "ok: logged in"
        assert "WARNING firmware_py.console: console session" in t.ask("log 5").splitlines()[-1]
        t.wait_raw(b"s idle; press a key\r\n", timeout=10 * TIME_SCALE)
        mark = len(t.raw)  # before the key: the banner may arrive before the next line runs
        t.type("\r")  # the first key after idle: a new session, logged out
        t.wait_raw(b"type help\r\n> ", start=mark)
        assert "log in first" in t.ask("restart pipeline")
        assert t.ask(f"login {PIN}") == "ok: logged in"
        t = rig.replug()  # unplug the cable and plug a new one in: the console reopens the port
        t.wait_raw(b"type help\r\n> ")
        assert "log in first" in t.ask("restart pipeline")  # a new connection starts logged out
        assert rising(rig)
        assert rig.daemon.console.reopens == 1
    finally:
        rig.close()


def test_a_console_command_is_one_registered_function_listed_by_help():
    """Where to add a console command: one @command function; help and the login rule follow."""
    from firmware_py.console import ServiceConsole
    from firmware_py.console.commands import COMMANDS, command

    @command("uptime", "uptime", "seconds since start", login=True)
    def _uptime(console, args):
        return f"ok: up {console.daemon.uptime_s:.0f} s"

    @command("boom", "boom", "a command with a bug")
    def _boom(console, args):
        raise RuntimeError("oops")

    class Daemon:
        uptime_s = 42.0
        journal = None

    console = ServiceConsole("loop://", Daemon(), pin_hash=PIN_HASH)
    try:
        assert "uptime" in console.execute("help") and "seconds since start (login)" in console.execute("help")
        assert console.execute("help uptime") == "usage: uptime\n  seconds since start (login)"
        assert console.execute("uptime") == "error: log in first: login PIN"
        assert console.execute(f"login {PIN}") == "ok: logged in"
        assert console.execute("UPTIME") == "ok: up 42 s"
        assert json.loads(console.execute("uptime --json")) == {"command": "uptime", "ok": True, "reply": "up 42 s"}
        assert console.execute("boom") == "error: boom failed (RuntimeError: oops); see the daemon log (log 20)"
    finally:
        del COMMANDS["uptime"], COMMANDS["boom"]
    assert "uptime" not in console.execute("help")
