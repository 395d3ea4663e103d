"""The soak tool itself (bench/soak.py, `make soak`): a short run against a child daemon at the
simulator's maximum rate measures every figure and passes; a leak or a broken bound fails its
target. No speed is asserted; the 100,000-frame figures are in docs/reliability.md."""
from __future__ import annotations

import argparse
import copy
import json

from firmware_py.bench import soak
from tests.timing import TIME_SCALE


def test_a_short_soak_measures_every_figure_and_prints_one_verdict_per_target(tmp_path, capsys):
    out = tmp_path / "soak.json"
    # a tiny journal bound so that even 2,000 frames cross it and rotate
    rc = soak.main(["--frames", "2000", "--warmup", "300", "--journal-max-mb", "0.25", "--json", str(out),
                    # the last frames are counted later on an emulated board (tflite-runtime, no XNNPACK)
                    "--settle-timeout", f"{15 * TIME_SCALE:g}"])
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert rc == 0, printed[-2000:]
    # the simulator (a process of its own) sent the warm-up and the measured frames, all accounted for
    assert res["sent"] == 2300 == res["processed"] + res["dropped"] + res["corrupt"]
    assert res["accounting_exact"] and res["corrupt"] == 0 and res["processed"] > 0
    for end in ("start", "end"):
        assert res[end]["rss_bytes"] > 0 and res[end]["fds"] > 0 and res[end]["threads"] > 0
    assert res["journal"]["rotations"] >= 1 and res["journal"]["rotated_file"]
    assert res["journal"]["committed"] == res["results_file_lines"]  # the JSON-lines sink was on too
    verdicts = [ln for ln in printed.splitlines() if ln.startswith(("PASS ", "FAIL "))]
    assert [v.split()[1].rstrip(":") for v in verdicts] == list(res["targets"])
    assert all(v.startswith("PASS ") for v in verdicts)


def test_a_leak_or_a_journal_over_its_bound_fails_its_target():
    res = {"rss_growth_mb": 0.2, "start": {"fds": 24, "threads": 6}, "end": {"fds": 24, "threads": 6},
           "journal": {"bound_mb": 1.0, "live_max_mb": 0.9, "rotations": 2, "rotated_file": True,
                       "committed": 100, "undurable": 0},
           "accounting_exact": True, "corrupt": 0, "sent": 100, "processed": 60, "dropped": 40,
           "frames_requested": 100, "dropped_by_cause": {"unattributed": 0}}
    args = argparse.Namespace(rss_limit_mb=5.0, expect_rotation=True)
    assert all(ok for ok, _ in soak.targets(res, args, 2 ** 20).values())
    for edit, target in ((lambda r: r.update(rss_growth_mb=5.5), "rss"),
                         (lambda r: r["end"].update(fds=25), "fds"),
                         (lambda r: r["end"].update(threads=7), "threads"),
                         (lambda r: r["journal"].update(live_max_mb=1.6), "journal_bound"),
                         (lambda r: r["journal"].update(rotations=0), "journal_rotated"),
                         (lambda r: r["journal"].update(undurable=1), "results_durable"),
                         (lambda r: r.update(sent=99), "accounting")):
        bad = copy.deepcopy(res)
        edit(bad)
        failed = [k for k, (ok, _) in soak.targets(bad, args, 2 ** 20).items() if not ok]
        assert failed == [target], (target, failed)
