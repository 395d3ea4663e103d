"""The battery bench itself (bench/battery.py): a short discharge on the shipped tiers writes every
field, and its figures agree with its own per-rung account and trace. No speed is asserted; the
figures of a full run are in docs/benchmarks.md."""
from __future__ import annotations

import json
import os

import pytest

from firmware_py.bench import battery
from firmware_py.inference.engine import default_manifest


def test_a_short_discharge_writes_figures_consistent_with_its_own_account(tmp_path):
    out, png = tmp_path / "battery.json", tmp_path / "battery.png"
    rc = battery.main(["--json", str(out), "--plot", str(png), "--frames", "5", "--capacity-wh", "0.3",
                       "--sample-s", "5", "--ladder", "fps:20,tiers,every:2", "--bands", '{"70": 1}'])
    assert rc == 0
    res = json.loads(out.read_text())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    leakage = json.load(open(os.path.join(os.path.dirname(default_manifest()), battery.LEAKAGE_FILE)))
    clean = leakage["evaluate"]["clean"]["tiers"]
    assert {n: t["accuracy"] for n, t in res["tiers"].items()} == {n: clean[n]["accuracy"] for n in res["tiers"]}
    assert all(t["cpu_ms_per_inference"] > 0 and t["frames"] == 5 for t in res["tiers"].values())
    labels = [g["label"] for g in res["rungs"]]
    assert labels[-1] == list(res["tiers"])[-1] and res["policy"]["ladder"] == "fps:20,tiers,every:2"
    assert set(res["models"]) >= set(battery.REPORT_MODELS) and res["figures"] == res["models"][res["default_model"]][
        "figures"]
    for name, r in res["models"].items():
        a, f = r["adaptive"], r["figures"]
        assert a["empty"] and r["top_tier"]["empty"]
        assert f["runtime_vs_top_tier"] == pytest.approx(a["runtime_h"] / r["top_tier"]["runtime_h"], abs=1e-3)
        rungs = a["per_rung"]
        assert sum(g["seconds"] for g in rungs.values()) == a["runtime_s"]
        assert sum(g["energy_wh"] for g in rungs.values()) == pytest.approx(0.3, rel=0.02)  # the pack, drained
        top_acc = res["tiers"][res["rungs"][-1]["tier"]]["accuracy"]
        lost = sum(g["seconds"] * (top_acc - g["accuracy"]) for g in rungs.values()) / a["runtime_s"] * 100
        assert f["accuracy_lost_points"] == pytest.approx(lost, abs=0.01)
        assert f["analysed_fps_min"] == min(g["analysed_fps"] for g in rungs.values())
        assert f["targets_met"]["analysed_fps_min"] == (f["analysed_fps_min"] >= battery.TARGETS["analysed_fps_min"])
        assert f["runtime_vs_top_tier"] <= r["runtime_vs_top_tier_bound"] + 1e-3
        tr = a["trace"]
        assert len({len(v) for v in tr.values()}) == 1 and len(tr["t_h"]) > 3
        assert tr["battery_percent"] == sorted(tr["battery_percent"], reverse=True)  # unplugged: only down
        assert set(tr["rung"]) <= set(rungs) <= set(labels)  # sampled: a rung held briefly may fall between
        assert all(acc == pytest.approx(res["tiers"][tier]["accuracy"], abs=1e-4)  # the trace keeps 4 decimals
                   for tier, acc in zip(tr["tier"], tr["expected_accuracy"]))
        assert rungs[labels[-1]]["seconds"] > 0  # it started on the top rung at full charge


def test_bands_that_are_not_a_json_object_are_refused_with_the_fix(capsys):
    assert battery.main(["--json", "-", "--bands", "80:1"]) == 2
    assert "is not a JSON object of percent: rungs below the top" in capsys.readouterr().err
