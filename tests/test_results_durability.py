"""Nothing leaves the device before it is durable: SIGKILL at random moments, a copy of the files
taken mid-run (what a power cut leaves), and a journal that cannot be written."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from firmware_py.results import JsonLinesSink, ResultJournal, ResultRecord

KILLS = 20


def record(seq: int) -> ResultRecord:
    return ResultRecord(seq=seq, probe_time_us=seq, tier="t0", backend="cpu", label="benign",
                        probabilities={"benign": 1.0}, latency_ms={"total": 1.0}, wall_time=1.0)


def emitted(path) -> set[tuple[str, int]]:
    """(run_id, seq) of every complete line of the JSONL output (a killed writer may cut the last)."""
    out = set()
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        out.add((r["run_id"], r["seq"]))
    return out


def journaled(db_path) -> set[tuple[str, int]]:
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return set(db.execute("SELECT run_id, seq FROM results").fetchall())
    finally:
        db.close()


def start_daemon(tmp_path, results, journal) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "firmware_py", "run", "--status-interval", "0", "--fps", "60",
                             "--results", str(results), "--journal", str(journal)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)


def wait_lines(path, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} results in {path} after {timeout} s")


@pytest.mark.slow
def test_every_result_emitted_before_a_sigkill_is_in_the_journal(tmp_path):
    rng = random.Random(7)
    results, journal = tmp_path / "r.jsonl", tmp_path / "j.sqlite"
    for _ in range(KILLS):
        before = results.read_text().count("\n") if results.exists() else 0
        proc = start_daemon(tmp_path, results, journal)
        wait_lines(results, before + 1)
        time.sleep(rng.uniform(0.0, 0.6))  # a random moment: mid-batch, mid-commit, between frames
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    out = emitted(results)
    assert len({run for run, _ in out}) == KILLS
    missing = out - journaled(journal)
    assert not missing, f"{len(missing)} of {len(out)} emitted results are not in the journal"


@pytest.mark.slow
def test_a_copy_of_the_files_taken_mid_run_opens_and_holds_only_what_was_emitted_by_then(tmp_path):
    """What a power cut leaves: the database and its WAL as they are on disk at one instant."""
    results, journal = tmp_path / "r.jsonl", tmp_path / "j.sqlite"
    proc = start_daemon(tmp_path, results, journal)
    try:
        wait_lines(results, 30)
        copy = tmp_path / "copy"
        copy.mkdir()
        for suffix in ("-wal", ""):  # the WAL first: a commit landing in between is then in neither
            if os.path.exists(f"{journal}{suffix}"):
                shutil.copyfile(f"{journal}{suffix}", copy / f"j.sqlite{suffix}")
        seen_after = emitted(results)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    rows = journaled(copy / "j.sqlite")
    assert len(rows) >= 1
    assert rows <= seen_after | emitted(results)


def test_a_journal_that_fills_up_says_so_once_and_passes_every_result_on_marked_undurable(tmp_path, caplog):
    path = tmp_path / "full.sqlite"
    out = tmp_path / "r.jsonl"
    sink = JsonLinesSink(str(out))
    j = ResultJournal(str(path), batch=4, max_delay_s=60, downstream=[sink])
    for i in range(8):
        j.write(record(i))
    assert j.committed == 8 and j.failure is None
    # The file may not grow any more: exactly what SQLite reports on a full disk (SQLITE_FULL).
    pages = j._db.execute("PRAGMA page_count").fetchone()[0]
    j._db.execute(f"PRAGMA max_page_count = {pages}")
    for i in range(8, 400):
        j.write(record(i))
    assert "database or disk is full" in j.failure
    assert sum("cannot be written" in r.message for r in caplog.records) == 1
    j.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in lines] == list(range(400))  # nothing accepted is lost
    assert all("extra" not in r for r in lines[:8])
    assert all(r["extra"]["durable"] is False for r in lines[-100:])
    assert journaled(path) >= {(None, i) for i in range(8)}


def test_on_error_stop_asks_the_daemon_to_stop_once(tmp_path):
    calls = []
    j = ResultJournal(str(tmp_path / "j.sqlite"), batch=1, on_error="stop", on_failure=calls.append)
    j._db.execute("PRAGMA query_only = 1")  # the file system went read-only under us
    j.write(record(0))
    j.write(record(1))
    assert len(calls) == 1 and "cannot be written" in calls[0] and j.undurable == 2
    j.close()


def test_a_journal_past_its_size_bound_rotates(tmp_path):
    path = tmp_path / "j.sqlite"
    j = ResultJournal(str(path), batch=16, max_bytes=64 * 1024)
    for i in range(2000):
        j.write(record(i))
    j.close()
    assert j.rotations >= 1 and (tmp_path / "j.sqlite.1").exists()
    assert os.path.getsize(path) <= 64 * 1024 + 16 * 4096
    seqs = {s for _, s in journaled(path)} | {s for _, s in journaled(tmp_path / "j.sqlite.1")}
    assert max(seqs) == 1999  # the newest results are kept


def test_a_journal_of_the_previous_layout_gains_run_id(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE results (id INTEGER PRIMARY KEY, wall_time REAL NOT NULL, seq INTEGER NOT NULL,
        probe_time_us INTEGER NOT NULL, tier TEXT NOT NULL, backend TEXT NOT NULL, label TEXT, probabilities TEXT,
        area_mm2 REAL, latency_total_ms REAL NOT NULL, record TEXT NOT NULL);
        CREATE TABLE events (id INTEGER PRIMARY KEY, wall_time REAL NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);
        INSERT INTO results VALUES (1, 1.0, 5, 5, 't', 'cpu', NULL, NULL, NULL, 1.0, '{}');""")
    db.commit()
    db.close()
    j = ResultJournal(str(path), batch=1, run_id="abc")
    j.write(record(6))
    j.close()
    assert journaled(path) == {(None, 5), ("abc", 6)}


def test_sigterm_drains_commits_and_exits_cleanly(tmp_path):
    results, journal = tmp_path / "r.jsonl", tmp_path / "j.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "firmware_py", "run", "--status-interval", "0", "--fps", "60",
                             "--results", str(results), "--journal", str(journal)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    wait_lines(results, 20)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "frames received" in out and "Traceback" not in err
    lines = emitted(results)
    assert lines == journaled(journal)  # every result both emitted and committed, none half-way
    db = sqlite3.connect(journal)
    assert db.execute("SELECT COUNT(*) FROM events WHERE kind = 'selftest'").fetchone() == (1,)
    db.close()


def test_a_results_file_on_a_full_disk_is_reported_once_and_the_journal_keeps_going(tmp_path, caplog):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system (the Linux device whose writes fail with ENOSPC)")
    full = JsonLinesSink("/dev/full")  # every write: No space left on device
    j = ResultJournal(str(tmp_path / "j.sqlite"), batch=1, downstream=[full])
    for i in range(5):
        j.write(record(i))
    j.close()
    assert full.undelivered == 5 and j.committed == 5
    assert sum("cannot write results to /dev/full" in r.message for r in caplog.records) == 1
