"""After the probe is unplugged and plugged back (a real pty, a new one per plug, the simulator
restarting at its power-on frame rate), the tier controller asks the fps rung's rate again and the
frame budget follows what the probe really sends; on full-rate rungs the rate is measured again."""
from __future__ import annotations

from firmware_py.power.battery_mock import MockBattery
from tests.conftest_drivers import wait_for
from tests.fault_rig import SETTLE_S, DaemonRig, FaultProbe


def test_an_fps_rung_is_asked_again_after_a_replug_and_the_budget_follows(tmp_path):
    probe = FaultProbe(tmp_path, fps=60.0)
    battery = MockBattery(5.0, 0.0)  # critical: the bottom rung, small 1/2 @15fps
    rig = DaemonRig(tmp_path, probe, battery=battery, power={"ladder": "tiers,every:2,fps:15"},
                    probe_cfg={"reconnect_initial_s": 0.05, "reconnect_max_s": 0.2}).start()
    tiers = rig.daemon.tiers
    try:
        assert wait_for(lambda: probe.sim.fps == 15.0 and tiers.readings.frame_rate_fps == 15.0, SETTLE_S), \
            rig.daemon.status_text()
        assert abs(tiers.readings.budget_ms - 1000.0 * 2 / 15) < 1e-6
        connects = rig.daemon.link.stats()["connects"]
        probe.unplug()
        probe.replug()  # it powers up at 60 fps: the rate it was asked for is gone
        assert probe.sim.fps == 60.0
        assert wait_for(lambda: rig.daemon.link.stats()["connects"] > connects, SETTLE_S)
        assert wait_for(lambda: probe.sim.fps == 15.0, SETTLE_S), "the probe was not asked for 15 fps again"
        assert wait_for(lambda: tiers.readings.frame_rate_fps == 15.0, SETTLE_S)  # the period after the ask
        assert tiers.rung == "small 1/2 @15fps" and abs(tiers.readings.budget_ms - 1000.0 * 2 / 15) < 1e-6
        rig.wait_processed(3)

        # Charged again: back up to the full-rate rungs, at the probe's own rate, measured from frames.
        battery._percent = 90.0
        assert wait_for(lambda: tiers.rung == "large" and abs(probe.sim.fps - 60.0) < 8, SETTLE_S), \
            rig.daemon.status_text()  # its own rate back, as measured
        probe.sim.power_on_fps = 30.0  # the next probe to be plugged in runs slower
        connects = rig.daemon.link.stats()["connects"]
        probe.unplug()
        probe.replug()
        assert wait_for(lambda: rig.daemon.link.stats()["connects"] > connects, SETTLE_S)
        # the budget is re-measured on the new session's frames only (the gap is not counted as a slow rate)
        assert wait_for(lambda: tiers.readings.frame_rate_fps is not None
                        and 20.0 < tiers.readings.frame_rate_fps < 40.0, SETTLE_S), tiers.readings
        assert 25.0 < tiers.readings.budget_ms < 50.0
    finally:
        ledger = rig.finish()
    assert ledger["processed"] > 0
