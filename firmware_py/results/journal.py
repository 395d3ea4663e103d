"""Durable journal of results in an SQLite file (WAL mode), and the gate results leave through.

No result leaves the device before it is durable: the daemon hands every record to the journal
only, and the journal passes the records of a batch on to the other sinks (stdout, the JSONL
file, later the console's watch and the host channel) after the batch's COMMIT. A batch is
committed when it holds ``batch`` results or its oldest result is ``max_delay_s`` old (a timer
thread makes sure of the latter when frames stop); ``close()`` commits the rest. SQLite in WAL
mode with ``synchronous=NORMAL`` makes a committed transaction survive the process being
killed (the OS holds it); ``synchronous=FULL`` (``sync="full"``) also survives a power cut, at
an fsync per commit.

When the journal cannot write (a full disk, a read-only file system) it says so once, in one
line, and then either keeps processing with every result marked ``"durable": false`` and passed
on at once (``on_error="continue"``), or asks the daemon to stop (``on_error="stop"``). Either
way no accepted result is dropped. Every few seconds it tries the disk again.

Size is bounded: past ``max_bytes`` the file is rotated to ``PATH.1`` (replacing an older one)
and a new journal starts.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from typing import Callable

from firmware_py.errors import FirmwareError
from firmware_py.results.sinks import SINKS, ResultRecord

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    wall_time REAL NOT NULL,
    seq INTEGER NOT NULL,
    probe_time_us INTEGER NOT NULL,
    tier TEXT NOT NULL,
    backend TEXT NOT NULL,
    label TEXT,
    probabilities TEXT,
    area_mm2 REAL,
    latency_total_ms REAL NOT NULL,
    record TEXT NOT NULL,
    run_id TEXT,
    indeterminate TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    wall_time REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    run_id TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    wall_time REAL NOT NULL,
    source TEXT NOT NULL,
    session INTEGER,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    run_id TEXT
);
"""
RETRY_S = 5.0  # after a write failure, how often the disk is tried again


def _table_columns(db: sqlite3.Connection) -> dict[str, list[str]]:
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: [row[1] for row in db.execute(f"PRAGMA table_info({t})")] for t in tables}


def _expected_columns() -> dict[str, list[str]]:
    """What each table must hold: SCHEMA itself, applied to an empty in-memory database."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SCHEMA)
        return _table_columns(db)
    finally:
        db.close()


_COLUMNS = _expected_columns()


class ResultJournal:
    def __init__(self, path: str, *, batch: int = 32, max_delay_s: float = 0.5, run_id: str = "",
                 max_bytes: int = 0, sync: str = "normal", on_error: str = "continue",
                 downstream: list | None = None, on_failure: Callable[[str], None] | None = None):
        self.path, self.run_id = path, run_id
        self._batch, self._max_delay = batch, max_delay_s
        self._max_bytes, self._sync, self._on_error = max_bytes, sync, on_error
        self.downstream = list(downstream or [])  # sinks that see a result only once it is durable
        self.on_failure = on_failure
        self._db = self._open()
        self._lock = threading.Lock()
        self._batch_records: list[ResultRecord] = []
        self._pending_rows = 0  # results and events in the open transaction
        self._oldest: float | None = None
        self.failure: str | None = None  # why the journal cannot write, while it cannot
        self._retry_at = 0.0
        self.committed = self.undurable = self.rotations = 0
        self._closed = threading.Event()
        self._timer = threading.Thread(target=self._flush_when_due, name="journal", daemon=True)
        self._timer.start()

    # -- file ------------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        path = self.path
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self._sync == 'full' else 'NORMAL'}")
            db.executescript(SCHEMA)
            found_tables = _table_columns(db)
            for table, columns in _COLUMNS.items():
                found = found_tables[table]
                # Columns added since the first release (run_id; results.indeterminate) may be missing.
                if found != columns[:len(found)] or len(found) < len(columns) - (2 if table == "results" else 1):
                    db.close()
                    raise FirmwareError(f"journal {path} has a '{table}' table of another layout "
                                        f"({', '.join(found)}); move the file aside or point output.journal at "
                                        "a new file")
                for missing in columns[len(found):]:  # a journal of an earlier release: add run_id, indeterminate
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {missing} TEXT")
            db.execute("BEGIN")
        except sqlite3.Error as exc:
            raise FirmwareError(f"cannot open journal {path} ({exc}); check output.journal points to a "
                                f"writable SQLite file") from None
        return db

    def _size(self) -> int:
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    def _rotate(self) -> None:
        self._db.execute("COMMIT")
        self._db.close()  # checkpoints the WAL into the file and removes it
        os.replace(self.path, self.path + ".1")
        self.rotations += 1
        log.warning("journal %s reached %d bytes; rotated to %s.1", self.path, self._max_bytes, self.path)
        self._db = self._open()

    # -- writing ---------------------------------------------------------------------------------
    def write(self, r: ResultRecord) -> None:
        with self._lock:
            if self.failure is not None and time.monotonic() < self._retry_at:
                self._pass_on([r], durable=False)
                return
            try:
                self._insert(r)
            except sqlite3.Error as exc:
                self._failed(exc, also=[r])
                return
            self._batch_records.append(r)
            self._pending_rows += 1
            now = time.monotonic()
            self._oldest = self._oldest or now
            if len(self._batch_records) >= self._batch or now - self._oldest >= self._max_delay:
                self._commit()

    def _insert(self, r: ResultRecord) -> None:
        self._db.execute(
            "INSERT INTO results (wall_time, seq, probe_time_us, tier, backend, label, probabilities, "
            "area_mm2, latency_total_ms, record, run_id, indeterminate) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (r.wall_time, r.seq, r.probe_time_us, r.tier, r.backend, r.label,
             json.dumps(r.probabilities) if r.probabilities is not None else None, r.area_mm2,
             r.latency_ms.get("total", 0.0), r.to_json(), r.run_id or self.run_id or None, r.indeterminate),
        )

    def event(self, kind: str, message: str | dict) -> None:
        """A probe, engine or security event; dicts are stored as JSON. Committed with the next batch."""
        text = message if isinstance(message, str) else json.dumps(message, sort_keys=True, default=str)
        self._insert_row("INSERT INTO events (wall_time, kind, message, run_id) VALUES (?,?,?,?)",
                         (time.time(), kind, text, self.run_id or None))

    def audit(self, *, source: str, session: int | None, action: str, outcome: str) -> None:
        """Who did what through a service channel (a console session, a command and its outcome);
        never a PIN. Committed with the next batch, like events."""
        self._insert_row("INSERT INTO audit (wall_time, source, session, action, outcome, run_id) "
                         "VALUES (?,?,?,?,?,?)", (time.time(), source, session, action, outcome, self.run_id or None))

    def _insert_row(self, sql: str, row: tuple) -> None:
        with self._lock:
            if self.failure is not None:
                return  # said once already; the log has the event
            try:
                self._db.execute(sql, row)
                self._pending_rows += 1
                self._oldest = self._oldest or time.monotonic()
            except sqlite3.Error as exc:
                self._failed(exc)

    def _commit(self) -> None:
        """Under the lock: make the open batch durable, then pass its results on."""
        records = self._batch_records
        if not self._pending_rows:
            return
        try:
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
        except sqlite3.Error as exc:
            self._failed(exc)
            return
        self.committed += len(records)
        self._batch_records, self._pending_rows, self._oldest = [], 0, None
        if self.failure is not None:
            log.warning("journal %s writable again; results are durable again", self.path)
            self.failure = None
        self._pass_on(records, durable=True)
        if self._max_bytes and self._size() > self._max_bytes:
            self._rotate()

    def _failed(self, exc: sqlite3.Error, also: list[ResultRecord] = ()) -> None:
        """Under the lock: report once, roll back what is open, and still pass every result on."""
        first = self.failure is None
        self.failure = f"journal {self.path} cannot be written ({exc})"
        self._retry_at = time.monotonic() + RETRY_S
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite may have rolled back already
        try:
            self._db.execute("BEGIN")
        except sqlite3.Error:
            pass
        undurable = self._batch_records + list(also)  # rolled back, or never written
        self._batch_records, self._pending_rows, self._oldest = [], 0, None
        if first:
            action = "stopping" if self._on_error == "stop" else "results go on, marked durable: false"
            log.error("%s; %s; free space or fix output.journal", self.failure, action)
        self._pass_on(undurable, durable=False)
        if first and self._on_error == "stop" and self.on_failure is not None:
            self.on_failure(self.failure)

    def _pass_on(self, records: list[ResultRecord], *, durable: bool) -> None:
        for r in records:
            if not durable:
                r.extra["durable"] = False
                self.undurable += 1
            for sink in self.downstream:
                sink.write(r)

    def _flush_when_due(self) -> None:
        tick = max(0.005, self._max_delay / 2)
        while not self._closed.wait(tick):
            with self._lock:
                if self._oldest is not None and time.monotonic() - self._oldest >= self._max_delay:
                    self._commit()

    def flush(self) -> None:
        """Commit what is open now (the selftest's write check), not at the batch's time."""
        with self._lock:
            self._commit()

    def stats(self) -> dict:
        return {"committed": self.committed, "undurable": self.undurable, "rotations": self.rotations,
                "failure": self.failure}

    def close(self) -> None:
        self._closed.set()
        self._timer.join(5)
        with self._lock:
            self._commit()
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                pass  # no transaction open after a failure
            self._db.close()
        for sink in self.downstream:
            sink.close()


@SINKS.register("journal")
def _journal(output) -> ResultJournal | None:
    if not output.journal:
        return None
    return ResultJournal(output.journal, batch=output.journal_batch, max_delay_s=output.journal_max_delay_ms / 1e3,
                         max_bytes=int(output.journal_max_mb * 2 ** 20), sync=output.journal_sync,
                         on_error=output.journal_on_error)
