"""The power policy through the running daemon: the probe's own battery from its telemetry, the
analysis-rate and probe-frame-rate rungs, honest frame accounting, the reason in the status line."""
from __future__ import annotations

import re
import threading
import time

from firmware_py.config import load_config
from firmware_py.daemon.runner import Daemon
from firmware_py.inference import Engine
from tests.conftest_drivers import wait_for
from tests.data.model_sets import make_model_set
from tests.test_daemon_control import LADDER, Cell, Gauge, InProcessProbe


def test_the_probes_low_battery_walks_the_daemon_down_to_fewer_analysed_frames_at_a_lower_probe_rate(tmp_path):
    s = make_model_set(str(tmp_path / "models"), LADDER)
    cfg = load_config(None).replace(output={"results": str(tmp_path / "r.jsonl"), "status_interval_s": 0.0},
                                    run={"duration_s": 120.0}, power={"min_dwell_s": 0.0})
    probe = InProcessProbe(fps=40.0)
    daemon = Daemon(cfg, engine=Engine(s["dir"], public_key=s["public"]), battery=Cell(90.0),
                    thermal=Gauge(40.0), probe=probe, policy_period_s=0.1)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: daemon.proc is not None and daemon.proc.processed >= 3, 30)
        assert daemon.engine.active_tier.name == "large"  # board at 90 %, probe full
        probe.sim._t0 = time.monotonic() - 92.5 * 36  # the simulated probe battery: 1 % per 36 s -> 7 %
        assert wait_for(lambda: daemon.tiers.readings.probe_battery_percent == 7, 20)
        assert daemon.tiers.readings.battery_percent == 7  # the lower of board (90 %) and probe
        # critical: small at full rate, then one frame in two, then the probe asked for 15 fps
        assert wait_for(lambda: probe.sim.fps == 15.0, 30), daemon.tiers.reason
        assert daemon.engine.active_tier.name == "small" and daemon.frames.analysis_every == 2
        assert wait_for(lambda: daemon.frames.skipped_by_rate >= 3, 20)
        status = daemon.status_text()
        assert re.search(r"skip \d+ .*rung small 1/2 @15fps \[probe battery critical\] \| batt [67]%", status), status
        daemon.commands.call("tier", tier="large")  # the console's pin still wins, at the probe's own rate
        assert daemon.frames.analysis_every == 1 and abs(probe.sim.fps - 40.0) < 8
    finally:
        daemon.stop_event.set()
        runner.join(20)
    assert daemon.proc.fatal is None
    c = daemon.counters()
    accounted = (c["frames_processed"] + c["frames_skipped_by_rate"] + c["frames_dropped_stale"]
                 + c["frames_rejected_processing"])
    assert c["frames_delivered"] == accounted and c["frames_skipped_by_rate"] >= 3
    assert "skipped by the analysis rate" in daemon.summary
