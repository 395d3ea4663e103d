"""bench e2e: a short run against a child daemon over ptys accounts for every frame; the
attribution and the before/after comparison on their own. No speed is asserted."""
from __future__ import annotations

import json

from firmware_py.bench import e2e
from firmware_py.bench.e2e_report import compare


def test_a_short_run_over_ptys_accounts_for_every_frame_and_writes_the_keys(tmp_path, capsys):
    out = tmp_path / "e2e.json"
    md = tmp_path / "e2e.md"
    assert e2e.main(["--duration", "1", "--fps", "30", "--lines", "64", "--samples", "256",
                     "--json", str(out), "--markdown", str(md)]) == 0
    res = json.loads(out.read_text())
    for key in ("sent", "processed", "dropped", "corrupt", "latency_ms", "fps_sustained", "model_p99_ms",
                "saturation_fps", "machine", "dropped_by_cause", "corrupt_by_cause"):
        assert key in res, key
    assert set(res["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert res["sent"] >= 30 and res["sent"] == res["processed"] + res["dropped"] + res["corrupt"]
    assert res["accounting_exact"] and res["dropped_by_cause"]["unattributed"] == 0
    assert res["dropped"] == sum(res["dropped_by_cause"].values())
    assert res["corrupt"] == sum(res["corrupt_by_cause"].values())
    assert list(res["saturation_fps"]) == ["busi-cls-fire-r64"]
    m = res["machine"]
    assert m["board"] and m["interpreter"]["package"] in ("ai_edge_litert", "tflite_runtime")
    assert m["accelerator"] == "none" and m["firmware_py"]
    assert "| sent | processed |" in md.read_text()


def test_every_lost_frame_is_attributed_to_the_counter_that_saw_it():
    before = e2e.flat_counters({"frames_processed": 5, "HostChannel": {"delivered": 5, "undelivered": 0}})
    after = e2e.flat_counters({"frames_processed": 15, "frames_dropped_stale": 3, "frames_lost_gap": 1,
                               "frames_rejected_by_reason": {"crc": 2}, "HostChannel": {"delivered": 14,
                                                                                       "undelivered": 1}})
    acc = e2e.account(20, 8, before, after, with_counters=True)
    assert acc["dropped_by_cause"]["stale (slot: a newer frame replaced it)"] == 3
    assert acc["dropped_by_cause"]["undelivered on the host line"] == 1
    assert acc["dropped_by_cause"]["emitted, not read by the bench"] == 1
    assert acc["corrupt_by_cause"]["crc"] == 2 and acc["corrupt_by_cause"]["lost in a sequence gap"] == 1
    # 8 results + 3 stale + 1 undelivered + 1 unread + 2 crc + 1 gap = 16 of 20: 4 no counter saw
    assert acc["dropped_by_cause"]["unattributed"] == 4
    s = e2e.summarise(acc, [1.0], [0.5])
    assert s["sent"] == s["processed"] + s["dropped"] + s["corrupt"] and not s["accounting_exact"]


def test_two_runs_compare_as_a_table_with_the_ratio_of_each_figure(tmp_path):
    run = {"sent": 100, "processed": 100, "dropped": 0, "corrupt": 0, "fps_sustained": 30.0,
           "latency_ms": {"p50": 2.0, "p95": 3.0, "p99": 4.0, "max": 5.0}, "saturation_fps": {"t0": 400.0}}
    (tmp_path / "a.json").write_text(json.dumps(run))
    run["latency_ms"]["p99"] = 6.0
    run["saturation_fps"]["t0"] = 200.0
    (tmp_path / "b.json").write_text(json.dumps(run))
    table = compare(str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert "| latency p99 ms | 4.00 | 6.00 | 1.500 |" in table
    assert "| saturation fps t0 | 400.00 | 200.00 | 0.500 |" in table
    assert "| dropped | 0 | 0 | - |" in table
