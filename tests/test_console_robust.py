"""The console under hostile input and PIN guessing, and the audit table in an old journal."""
from __future__ import annotations

import random
import sqlite3
import time

import pytest

from firmware_py.console import ServiceConsole
from firmware_py.console.auth import hash_pin
from firmware_py.results.journal import ResultJournal
from tests.console_rig import Rig, rising


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("console"))
    yield r
    r.close()


def still_answers(rig: Rig) -> None:
    """The console answers a plain command, and the pipeline keeps counting frames."""
    assert "rx " in rig.tech.ask("status")
    assert rising(rig)


@pytest.mark.slow
def test_a_one_megabyte_line_is_refused_naming_the_limit(rig):
    t = rig.tech
    before = rig.frames()
    reply = t.ask("x" * 1_000_000, timeout=60)
    assert reply == "error: line longer than the console's limit of 256 characters (1000000 typed); nothing was run"
    assert rig.frames() > before  # frames were processed while the megabyte came in
    still_answers(rig)


@pytest.mark.slow
def test_binary_garbage_gets_error_lines_and_nothing_is_echoed_raw(rig):
    t = rig.tech
    garbage = bytes(b for b in random.Random(13).randbytes(65536) if b != 0x04)  # Ctrl-D would say goodbye
    start = len(t.raw)
    t.type(garbage + b"\x03")
    t.wait_raw(b"^C\r\n> ", timeout=30, start=start)
    t.settle()  # garbage holds Ctrl-C bytes of its own: wait for the last reply
    out = t.raw[start:]
    assert b"non-printable byte(s) in the line; nothing was run" in out
    assert b"\x1b" not in out and not set(out) & set(range(0x80, 0x100))  # no escape or high byte sent back
    still_answers(rig)


@pytest.mark.slow
def test_a_command_flood_is_answered_line_by_line(rig):
    t = rig.tech
    before = rig.frames()
    start = len(t.raw)
    t.type(b"tiers\r" * 2000 + b"frobnicate\r")
    t.wait_raw(b"unknown command 'frobnicate'", timeout=60, start=start)
    assert t.raw[start:].count(b"\r\nladder ") == 2000
    assert rig.frames() > before
    still_answers(rig)


@pytest.mark.slow
def test_an_escape_sequence_storm_is_swallowed_and_an_overlong_one_reported(rig):
    t = rig.tech
    rnd = random.Random(7)
    keys = [b"\x1b[A", b"\x1b[B", b"\x1b[C", b"\x1b[D", b"\x1bOP", b"\x1b[15~", b"\x1b[1;5C", b"\x1b[24;80R", b"\x1bx"]
    storm = b"".join(rnd.choice(keys) for _ in range(20000)) + b"\x1b[" + b"9;" * 100 + b"\r"
    start = len(t.raw)
    t.type(storm)
    t.wait_raw(b"non-printable byte(s) in the line", timeout=30, start=start)
    assert b"\x1b" not in t.raw[start:]
    still_answers(rig)


class Clock:
    def __init__(self):
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t


class NoDaemon:
    journal = None


def test_brute_force_at_line_speed_is_held_to_a_few_attempts_a_minute(capsys):
    """An attacker types a new PIN every 50 ms for ten (simulated) minutes with the shipped defaults
    (5 wrong PINs, back-off from 1 s doubling, 60 s lockout): only the attempts the guard lets through
    are checked."""
    clock = Clock()
    stored = hash_pin("7391")  # the shipped cost: a check takes real time, measured here too
    console = ServiceConsole("loop://", NoDaemon(), pin_hash=stored, clock=clock)
    checked, guess, spent = 0, 0, 0.0
    end = clock.t + 600
    while clock.t < end:
        t0 = time.perf_counter()
        reply = console.execute(f"login {guess:04d}")
        if reply.startswith("error: wrong PIN"):
            checked, guess = checked + 1, guess + 1
            spent += time.perf_counter() - t0
        else:
            assert "wait" in reply or "locked" in reply, reply
        clock.t += 0.05
    per_minute = checked / 10
    # five tries per 1 + 2 + 4 + 8 s of back-off and a 60 s lockout: 4 a minute
    assert 3.5 <= per_minute <= 4.5
    assert not console.logged_in
    with capsys.disabled():
        print(f"\nbrute force with lockout on: {per_minute:.1f} PIN attempts per minute at the console "
              f"(every 4-digit PIN: {1e4 / per_minute / 60:.0f} h, 6-digit: {1e6 / per_minute / 60 / 24:.0f} days); "
              f"one scrypt check "
              f"{spent / checked * 1e3:.0f} ms")


def test_the_audit_table_is_added_to_a_journal_of_the_previous_layout(tmp_path):
    path = str(tmp_path / "old.sqlite")
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE results (id INTEGER PRIMARY KEY, wall_time REAL NOT NULL, seq INTEGER NOT NULL,
            probe_time_us INTEGER NOT NULL, tier TEXT NOT NULL, backend TEXT NOT NULL, label TEXT,
            probabilities TEXT, area_mm2 REAL, latency_total_ms REAL NOT NULL, record TEXT NOT NULL, run_id TEXT);
        CREATE TABLE events (id INTEGER PRIMARY KEY, wall_time REAL NOT NULL, kind TEXT NOT NULL,
            message TEXT NOT NULL, run_id TEXT);
        INSERT INTO events (wall_time, kind, message) VALUES (1.0, 'probe', 'old');
    """)
    db.close()
    j = ResultJournal(path, run_id="r1")
    j.audit(source="console", session=3, action="tier small", outcome="ok: small pinned")
    j.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT source, session, action, outcome, run_id FROM audit").fetchall() == [
        ("console", 3, "tier small", "ok: small pinned", "r1")]
    assert db.execute("SELECT message FROM events").fetchall() == [("old",)]
