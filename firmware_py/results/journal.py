"""Durable journal of results in an SQLite file (WAL mode).

Commits are batched (every ``batch`` results or ``max_delay_s``) so the processing thread
does not wait on fsync for every frame; ``close()`` commits the rest, so a clean stop loses
nothing, and a crash loses at most one batch.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time

from firmware_py.errors import FirmwareError
from firmware_py.results.sinks import SINKS, ResultRecord

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
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    wall_time REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
"""

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
    def __init__(self, path: str, *, batch: int = 32, max_delay_s: float = 0.5):
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            found_tables = _table_columns(self._db)
            for table, columns in _COLUMNS.items():
                found = found_tables[table]
                if found != columns:
                    self._db.close()
                    raise FirmwareError(f"journal {path} has a '{table}' table of another layout "
                                        f"({', '.join(found)}); move the file aside or point output.journal at "
                                        "a new file")
        except sqlite3.Error as exc:
            raise FirmwareError(f"cannot open journal {path} ({exc}); check output.journal points to a "
                                f"writable SQLite file") from None
        self._lock = threading.Lock()
        self._pending = 0
        self._batch, self._max_delay = batch, max_delay_s
        self._oldest = None
        self._db.execute("BEGIN")

    def write(self, r: ResultRecord) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO results (wall_time, seq, probe_time_us, tier, backend, label, probabilities, "
                "area_mm2, latency_total_ms, record) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (r.wall_time, r.seq, r.probe_time_us, r.tier, r.backend, r.label,
                 json.dumps(r.probabilities) if r.probabilities is not None else None, r.area_mm2,
                 r.latency_ms.get("total", 0.0), r.to_json()),
            )
            self._pending += 1
            now = time.monotonic()
            self._oldest = self._oldest or now
            if self._pending >= self._batch or now - self._oldest >= self._max_delay:
                self._commit()

    def event(self, kind: str, message: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO events (wall_time, kind, message) VALUES (?,?,?)",
                             (time.time(), kind, message))
            self._pending += 1

    def _commit(self) -> None:
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")
        self._pending, self._oldest = 0, None

    def close(self) -> None:
        with self._lock:
            self._db.execute("COMMIT")
            self._db.close()


@SINKS.register("journal")
def _journal(output) -> ResultJournal | None:
    return ResultJournal(output.journal) if output.journal else None
