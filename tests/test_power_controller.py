"""The real sensor sources through the TierController and the policy on a fake clock: a battery that
vanishes from sysfs shows which sensor failed, its error and since when, and the policy falls back
to power.safe_rung after power.sensor_timeout_s; the same for a thermal zone; heat from sysfs and
psutil moves the policy with its hysteresis; a power monitor's watts reach Readings.power_w."""
from __future__ import annotations

import shutil
import time

import pytest

from firmware_py.daemon.pipeline import LatencyWindow
from firmware_py.daemon.status import Snapshot, format_status
from firmware_py.daemon.tiers import TierController
from firmware_py.power.battery_sysfs import SysfsBattery
from firmware_py.power.monitor_ina260 import Ina260Monitor
from firmware_py.power.policy import TierPolicy
from firmware_py.power.thermal_psutil import PsutilThermal
from firmware_py.power.thermal_sysfs import SysfsThermal
from tests.fake_i2c import FakeBus, FakeIna260
from tests.fault_rig import signed_engine
from tests.test_power_policy import Clock
from tests.test_power_sources import FakePsutil, shwtemp, supply

THREE_TIERS = [{"name": "small", "cpu": "cls_int8.tflite", "rank": 0},
               {"name": "medium", "cpu": "cls_int8_b.tflite", "rank": 1},
               {"name": "large", "cpu": "cls_int8_b.tflite", "rank": 2}]


class Rig:
    """A TierController on a real engine (three signed test tiers), its policy on the fake clock."""

    def __init__(self, tmp_path, battery, thermal, *, monitor=None, link_stats=None, **policy):
        self.clock = Clock()
        self.engine, _ = signed_engine(tmp_path / "models", THREE_TIERS)
        args = dict(low_battery=30, critical_battery=10, hot_c=75, hysteresis=5, latency_budget_ms=1000,
                    min_dwell_s=0, safe_rung=1, sensor_timeout_s=30, ladder="tiers")
        args.update(policy)
        self.policy = TierPolicy(len(self.engine.ladder), clock=self.clock, **args)
        self.ctl = TierController(self.engine, self.policy, battery, thermal, LatencyWindow(), monitor=monitor,
                                  link_stats=link_stats, clock=self.clock)
        self.ctl.step(wait=True)

    def step(self, seconds: float = 1.0) -> str:
        """``seconds`` later on the fake clock, one policy period; the tier once its load is done."""
        self.clock.t += seconds
        self.ctl.step()
        loading = self.ctl._loading
        if loading is not None:  # no frames run here: swap as at a frame boundary, once it is loaded
            self.engine.request_tier(loading[0], wait=True)
        return self.engine.active_tier.name

    def close(self):
        self.engine.close()


@pytest.fixture
def rig_factory(tmp_path):
    made = []

    def make(*args, **kw):
        made.append(Rig(tmp_path, *args, **kw))
        return made[-1]

    yield make
    for rig in made:
        rig.close()


def zone(tmp_path, millis: int):
    folder = tmp_path / "thermal_zone0"
    folder.mkdir(exist_ok=True)
    (folder / "temp").write_text(f"{millis}\n")
    return folder


def status_of(ctl) -> str:
    r = ctl.readings
    return format_status(Snapshot(0.0, 0, 0, 0, 0, 0, 0, 0, True, ctl.engine.active_tier.name, "cpu",
                                  r.battery_percent, r.temperature_c, None, None, "", sensor_faults=r.faults,
                                  reason=ctl.reason, power_w=r.power_w))


def test_a_battery_gone_from_sysfs_shows_in_status_and_the_policy_falls_back_to_the_safe_rung(tmp_path,
                                                                                            rig_factory):
    (tmp_path / "ps").mkdir()
    bat = supply(tmp_path / "ps", "BAT0", type="Battery", capacity=80, status="Discharging",
                 voltage_now=3_900_000, current_now=-1_000_000)
    rig = rig_factory(SysfsBattery(str(tmp_path / "ps")), SysfsThermal(str(zone(tmp_path, 45000))))
    assert rig.engine.active_tier.name == "large"
    assert rig.ctl.readings.power_w == pytest.approx(3.9) and rig.ctl.readings.power_source == "sysfs:BAT0"
    shutil.rmtree(bat)  # the gauge's driver unbinds
    wall = time.time()
    assert rig.step() == "large"  # the last good reading still counts for sensor_timeout_s
    fault = rig.ctl.readings.sensor_errors["battery"]
    assert fault["sensor"] == "sysfs:BAT0" and "gone" in fault["error"] and fault["since"] >= wall - 1
    assert rig.step(20.0) == "large"
    assert rig.ctl.readings.sensor_errors["battery"]["for_s"] == 20.0
    assert "SENSOR FAILED battery sysfs:BAT0: [Errno 19] sysfs:BAT0 is gone" in status_of(rig.ctl)
    assert "(for 20 s)" in status_of(rig.ctl) and rig.ctl.readings.power_w is None
    assert rig.step(11.0) == "medium"  # 31 s without a reading: power.safe_rung (1) below the top
    assert rig.ctl.reason == "battery unreadable: safe rung"
    assert rig.step() == "medium" and rig.step(60.0) == "medium"  # and it stays there
    supply(tmp_path / "ps", "BAT0", type="Battery", capacity=80, status="Discharging")
    assert rig.step() == "large" and rig.ctl.readings.faults == []  # the gauge is back: so is the top


def test_the_probes_charge_lowers_the_rung_but_never_stands_in_for_a_failed_board_gauge(tmp_path, rig_factory):
    (tmp_path / "ps").mkdir()
    bat = supply(tmp_path / "ps", "BAT0", type="Battery", capacity=90, status="Discharging")
    probe = {"telemetry_age_s": 0.2, "battery_pct": 99}
    rig = rig_factory(SysfsBattery(str(tmp_path / "ps")), SysfsThermal(str(zone(tmp_path, 45000))),
                      link_stats=lambda: dict(probe))
    assert rig.engine.active_tier.name == "large"
    shutil.rmtree(bat)
    assert rig.step(31.0) == "medium" and rig.ctl.reason == "battery unreadable: safe rung"
    assert rig.ctl.readings.battery_percent == 99  # shown, but the policy does not take it for the board's
    supply(tmp_path / "ps", "BAT0", type="Battery", capacity=90, status="Discharging")
    assert rig.step() == "large"
    probe["battery_pct"] = 7  # the probe runs out first: it sets the cap, once the median of 5 readings says so
    assert [rig.step() for _ in range(4)] == ["large", "large", "medium", "small"]
    assert rig.ctl.reason == "probe battery critical"
    supply(tmp_path / "ps", "BAT0", status="Charging")  # on the charger: no battery cap at all
    assert rig.step() == "medium" and rig.ctl.reason == "charging"


def test_a_thermal_zone_that_fails_caps_the_policy_at_the_safe_rung_after_the_timeout(tmp_path, rig_factory):
    z = zone(tmp_path, 50000)
    (tmp_path / "ps").mkdir()
    supply(tmp_path / "ps", "BAT0", type="Battery", capacity=90)
    rig = rig_factory(SysfsBattery(str(tmp_path / "ps")), SysfsThermal(str(z)), safe_rung=2)
    (z / "temp").write_text("-273000\n")  # the ADC read fails
    assert rig.step(29.0) == "large" and "thermal sysfs:thermal_zone0" in rig.ctl.readings.faults[0]
    assert rig.step(2.0) == "medium"  # one rung per decision towards the safe rung (2 below the top)
    assert rig.step() == "small" and rig.ctl.reason == "temperature unreadable: safe rung"
    (z / "temp").write_text("50000\n")
    assert rig.step() == "medium" and rig.step() == "large"


@pytest.mark.parametrize("source", ["sysfs", "psutil"])
def test_heat_from_the_real_sources_steps_down_one_rung_and_holds_it_through_the_hysteresis(tmp_path, rig_factory,
                                                                                           source):
    (tmp_path / "ps").mkdir()
    supply(tmp_path / "ps", "BAT0", type="Battery", capacity=90)
    if source == "sysfs":
        z = zone(tmp_path, 60000)
        thermal = SysfsThermal(str(z))

        def heat(c):
            (z / "temp").write_text(f"{round(c * 1000)}\n")
    else:
        ps = FakePsutil(temperatures={"cpu_thermal": [shwtemp("", 60.0, None, None)]})
        thermal = PsutilThermal("cpu_thermal", ps)

        def heat(c):
            ps.temperatures = {"cpu_thermal": [shwtemp("", c, None, None)]}
    rig = rig_factory(SysfsBattery(str(tmp_path / "ps")), thermal)
    assert rig.engine.active_tier.name == "large"
    heat(78.0)  # over hot_c (75): one rung below the current one
    assert rig.step() == "medium" and rig.ctl.reason.startswith("too hot")
    heat(79.0)  # hotter, but not by the hysteresis (5 C) since the step: held
    assert rig.step() == "medium"
    heat(72.0)  # cooler, not below hot_c - hysteresis (70): held
    assert rig.step() == "medium" and rig.step() == "medium"
    heat(84.0)  # 6 C hotter than when it stepped: one more
    assert rig.step() == "small"
    heat(69.5)  # below 70: released, one rung per decision
    assert rig.step() == "medium" and rig.step() == "large"
    assert rig.ctl.readings.temperature_c == 69.5


def test_a_power_monitor_feeds_the_board_power_and_its_failure_shows_without_moving_the_policy(tmp_path,
                                                                                             rig_factory):
    (tmp_path / "ps").mkdir()
    supply(tmp_path / "ps", "BAT0", type="Battery", capacity=90, status="Discharging", power_now=4_000_000)
    chip = FakeIna260(bus_v=5.1, current_a=0.9)
    bus = FakeBus({0x40: chip})
    rig = rig_factory(SysfsBattery(str(tmp_path / "ps")), SysfsThermal(str(zone(tmp_path, 45000))),
                      monitor=Ina260Monitor(bus, 0x40))
    r = rig.ctl.readings
    assert r.power_source == "ina260@0x40" and r.power_w == pytest.approx(4.59, abs=0.02)  # not the cell's 4 W
    assert r.voltage_v == pytest.approx(5.1, abs=0.002) and r.current_a == pytest.approx(0.9, abs=0.003)
    bus.nack_reads = set(range(bus.transactions + 1, bus.transactions + 100))  # off the bus
    assert rig.step() == "large" and rig.step(60.0) == "large"  # the policy does not need it
    assert r.sensor_errors["power monitor"]["sensor"] == "ina260@0x40"
    assert "Remote I/O error" in r.sensor_errors["power monitor"]["error"]
    assert r.power_source == "sysfs:BAT0" and r.power_w == pytest.approx(4.0)  # the cell's figure meanwhile
    assert "SENSOR FAILED power monitor ina260@0x40" in status_of(rig.ctl) and "4.00W" in status_of(rig.ctl)


def test_the_daemon_reads_its_power_monitor_warns_at_start_when_it_fails_and_shows_its_watts(tmp_path):
    import threading

    from firmware_py.config import load_config
    from firmware_py.daemon.runner import Daemon
    from tests.conftest_drivers import wait_for
    from tests.test_daemon_control import Cell, Gauge, InProcessProbe

    chip = FakeIna260(bus_v=5.0, current_a=1.1)
    bus = FakeBus({0x40: chip})
    monitor = Ina260Monitor(bus, 0x40)
    bus.nack_reads = set(range(bus.transactions + 1, bus.transactions + 10**6))  # off the bus until it is back
    engine, _ = signed_engine(tmp_path / "models", THREE_TIERS)
    cfg = load_config(None).replace(output={"results": str(tmp_path / "r.jsonl"), "status_interval_s": 0.0},
                                    run={"duration_s": 120.0})
    daemon = Daemon(cfg, engine=engine, battery=Cell(80.0), thermal=Gauge(40.0), monitor=monitor,
                    probe=InProcessProbe(fps=30.0), policy_period_s=0.1)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: daemon.proc is not None and daemon.proc.processed >= 3, 30)
        assert any(w.startswith("power monitor sensor ina260@0x40 unreadable") for w in daemon.selftest_warnings)
        assert wait_for(lambda: "SENSOR FAILED power monitor ina260@0x40" in daemon.status_text(), 10)
        bus.nack_reads = set()
        assert wait_for(lambda: daemon.tiers.readings.power_source == "ina260@0x40", 10)
        assert wait_for(lambda: "5.50W" in daemon.status_text(), 10), daemon.status_text()
        assert "SENSOR FAILED" not in daemon.status_text()
    finally:
        daemon.stop_event.set()
        runner.join(20)
