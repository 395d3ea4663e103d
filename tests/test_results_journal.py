"""Results: JSON lines and the SQLite journal keep every accepted result."""
from __future__ import annotations

import json
import sqlite3

import pytest

from firmware_py.errors import FirmwareError
from firmware_py.results import JsonLinesSink, ResultJournal, ResultRecord


def record(seq: int) -> ResultRecord:
    return ResultRecord(seq=seq, probe_time_us=seq * 1000, tier="t0", backend="cpu", label="benign",
                        probabilities={"benign": 0.7, "malignant": 0.2, "normal": 0.1},
                        latency_ms={"total": 3.5}, wall_time=1.0)


def test_journal_keeps_every_result_across_batches(tmp_path):
    path = tmp_path / "j.sqlite"
    j = ResultJournal(str(path), batch=7, max_delay_s=60)
    for i in range(50):
        j.write(record(i))
    j.event("probe", "reconnected")
    # A second connection sees the committed batches while the journal is open (WAL).
    seen = sqlite3.connect(path).execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert seen == 49  # 7 full batches committed; the last one is still pending
    j.close()
    db = sqlite3.connect(path)
    rows = db.execute("SELECT seq, label, probabilities, record FROM results ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == list(range(50))
    assert json.loads(rows[3][2])["benign"] == 0.7
    assert json.loads(rows[3][3])["seq"] == 3
    assert db.execute("SELECT kind, message FROM events").fetchall() == [("probe", "reconnected")]


def test_journal_on_unwritable_path_says_what_to_fix(tmp_path):
    with pytest.raises(FirmwareError, match="output.journal"):
        ResultJournal(str(tmp_path / "missing-dir" / "j.sqlite"))


def test_json_lines_sink_writes_one_object_per_line(tmp_path):
    path = tmp_path / "r.jsonl"
    s = JsonLinesSink(str(path))
    for i in range(3):
        s.write(record(i))
    s.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [0, 1, 2]
