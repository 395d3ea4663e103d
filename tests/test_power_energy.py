"""Energy model, meter and simulated battery with a fake clock; the policy driven by the simulated
battery in a closed loop (the rung sets the draw, the draw the charge): property tests over noisy,
jumping, gappy gauges, the rung of each band, a four-hour discharge simulated in seconds; the
daemon's energy accounting, its status line and the console's power command."""
from __future__ import annotations

import random
import re
import threading
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from firmware_py.config import load_config
from firmware_py.power import PolicyInputs, TierPolicy, make_battery
from firmware_py.power.battery_sim import OCV_CURVE, SimulatedBattery, open_circuit_voltage
from firmware_py.power.energy import PRESETS, EnergyMeter, PowerModel, remaining_s
from firmware_py.power.ladder import build_rungs


class Clock:
    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


PI4 = PowerModel.preset("pi4-cpu")


# -- the model --------------------------------------------------------------------------------

def test_the_probe_scales_with_frame_rate_and_an_inference_costs_its_cpu_time():
    assert PI4.probe_power(None) == PI4.probe_power(30.0) == pytest.approx(2.0)
    assert PI4.probe_power(15.0) == pytest.approx(0.5 + 1.5 / 2)
    assert PI4.baseline_w(30.0) == pytest.approx(2.7 + 2.0)
    assert PI4.inference_j(0.010) == pytest.approx(0.010 * 0.925)
    # 30 analysed frames a second of 10 ms CPU each: 0.3 of a core busy
    assert PI4.draw_w(30.0, 30.0, 0.010) == pytest.approx(4.7 + 0.3 * 0.925)
    tpu = PowerModel.preset("pi4-edgetpu")
    assert tpu.inference_j(0.001, 0.004) == pytest.approx(0.001 * 0.925 + 0.004 * (2.0 - 0.5))
    assert tpu.baseline_w(30.0) == pytest.approx(PI4.baseline_w(30.0) + 0.5)


def test_the_configured_model_is_the_preset_with_each_figure_given_replacing_its_own():
    power = load_config(None).replace(power={"model": {"preset": "pi5-cpu", "probe_w": 3.5}}).power
    m = PowerModel.from_config(power.model)
    assert (m.board_idle_w, m.board_core_w, m.probe_w) == (PRESETS["pi5-cpu"]["board_idle_w"],
                                                           PRESETS["pi5-cpu"]["board_core_w"], 3.5)
    assert m.name == "pi5-cpu (probe_w 3.5)"
    with pytest.raises(ValueError, match="unknown power model preset 'pi9'; use one of pi4-cpu"):
        PowerModel.preset("pi9")


def test_the_meter_accounts_each_tier_and_predicts_the_runtime_left():
    clock = Clock()
    meter = EnergyMeter(PI4, window_s=10.0, clock=clock)
    for _ in range(30):  # one second of frames on "large", 10 ms CPU each
        meter.add_inference("large", 0.010)
    clock.t = 1.0
    w = meter.tick(fps=30.0, active_tier="large")
    assert w == pytest.approx(4.7 + 30 * 0.010 * 0.925)
    for _ in range(30):
        meter.add_inference("small", 0.002)
    clock.t = 2.0
    meter.tick(fps=30.0, active_tier="small")
    s = meter.snapshot(50.0, capacity_wh=10.0)
    assert s["tiers"]["large"]["mj_per_inference"] == pytest.approx(9.25)
    assert s["tiers"]["small"]["mj_per_inference"] == pytest.approx(1.85)
    assert s["tiers"]["large"]["active_j"] + s["tiers"]["small"]["active_j"] == pytest.approx(s["total_j"], abs=0.01)
    assert s["mean_w"] == pytest.approx(s["total_j"] / 2.0, rel=1e-3)
    assert s["remaining_h"] == pytest.approx(5.0 / s["current_w"], rel=1e-3)  # 5 Wh left at the current draw
    assert s["source"] == "model"
    for _ in range(10):
        meter.add_inference("small", 0.002)
    clock.t = 3.0
    assert meter.tick(fps=30.0, active_tier="small", measured_w=6.0) == pytest.approx(6.0)  # a power monitor wins
    s = meter.snapshot(50.0, capacity_wh=10.0)
    assert s["source"] == "ina"
    # what the monitor measured above the baseline went to the inferences of that period
    assert s["tiers"]["small"]["inference_j"] == pytest.approx(30 * 0.002 * 0.925 + (6.0 - 4.7), abs=1e-3)
    for step in range(3):  # a new rung: the runtime left is the new rung's, not a mix with the old one's
        clock.t += 1.0
        meter.tick(fps=10.0, active_tier="small", rung="small @10fps")
    assert meter.current_w == pytest.approx(PI4.baseline_w(10.0))
    assert remaining_s(None, 10.0, 5.0) is None and remaining_s(50.0, 10.0, None) is None


# -- the simulated battery ---------------------------------------------------------------------------

def test_the_simulated_pack_drains_by_the_draw_charges_when_plugged_and_reports_a_li_ion_voltage():
    clock, draw = Clock(), [10.0]
    b = SimulatedBattery(1.0, 100.0, charge_w=20.0, load=lambda: draw[0], clock=clock)
    clock.t = 36.0  # 10 W for 36 s = 0.1 Wh of 1 Wh
    r = b.read()
    assert r.percent == pytest.approx(90.0) and not r.charging
    assert r.power_w == pytest.approx(-10.0) and r.current_a < 0 and r.discharge_w == pytest.approx(10.0)
    assert r.voltage_v == pytest.approx(open_circuit_voltage(90.0), abs=1e-3)
    b.plug()
    clock.t = 72.0  # 20 W in, 10 W out: +0.1 Wh
    r = b.read()
    assert r.percent == pytest.approx(100.0) and r.charging and r.discharge_w is None
    clock.t = 1000.0
    assert b.read().percent == 100.0 and b.read().power_w == 0.0  # full on the charger: it carries the draw
    b.unplug()
    clock.t = 1000.0 + 360.0
    assert b.read().percent == pytest.approx(0.0) and b.empty
    volts = [open_circuit_voltage(s) for s in range(0, 101)]
    assert volts == sorted(volts) and volts[0] == OCV_CURVE[0][1] and volts[-1] == OCV_CURVE[-1][1]


def test_the_simulated_kind_comes_from_the_configuration():
    cfg = load_config(None).replace(power={"battery": {"kind": "simulated",
                                                       "simulated": {"capacity_wh": 5.0, "percent": 40.0}}})
    b = make_battery(cfg.power)
    assert isinstance(b, SimulatedBattery) and b.capacity_wh == 5.0 and b.read().percent == pytest.approx(40.0)


def test_rate_rungs_before_tiers_keep_the_largest_tier_and_every_rung_gives_up_at_least_the_one_above():
    metrics = {"s": {"accuracy": 0.72}, "m": {"accuracy": 0.69}, "l": {"accuracy": 0.80}}
    rungs = build_rungs("fps:20, fps:15, tiers, every:2", ["s", "m", "l"], metrics)
    assert [g.label for g in rungs] == ["s 1/2 @15fps", "s @15fps", "m @15fps", "l @15fps", "l @20fps", "l"]
    assert rungs[3].cost == "accuracy 0.800 (+0.0 points vs the top tier); probe at 15 fps"
    for below, above in zip(rungs, rungs[1:]):  # rate never higher, analysis interval never shorter, going down
        assert (below.fps or 1e9) <= (above.fps or 1e9) and below.every >= above.every
    assert build_rungs("tiers,every:2,fps:15", ["s", "m", "l"], metrics) == \
        build_rungs("tiers, every:2, fps:15", ["s", "m", "l"], metrics)  # the old form is unchanged


# -- the policy on the simulated battery, closed loop ---------------------------------------------------

DWELL = 10.0
RUNGS = build_rungs("tiers,every:2,fps:15", ["s", "m", "l"], {})  # 5 rungs: s 1/2 @15fps .. l
COST_S = {"s": 0.004, "m": 0.012, "l": 0.030}  # CPU seconds per analysed frame


def rung_draw(model: PowerModel, i: int) -> float:
    g = RUNGS[i]
    fps = g.fps or 30.0
    return model.draw_w(fps, fps / g.every, COST_S[g.tier])


def discharge(*, noise=0.0, glitch=0.0, missing=0.0, hours=4.0, seed=0, adapt=True, period=1.0, bands=None,
              meters: list | None = None, jump: tuple[float, float] = (0.0, 0.0)):
    """Full to empty with one decision per ``period``; the pack sized so the top rung lasts ``hours``.
    ``jump``: (at this charge, percent points lost at once), a gauge recalibrating or a cell sagging.
    Yields (time, rung, true charge, whether the gauge has answered yet) after each decision."""
    rng = random.Random(seed)
    clock = Clock()
    draw = [rung_draw(PI4, len(RUNGS) - 1)]
    b = SimulatedBattery(draw[0] * hours, 100.0, load=lambda: draw[0], clock=clock)
    p = TierPolicy(len(RUNGS), low_battery=30, critical_battery=10, hot_c=75, hysteresis=5, latency_budget_ms=100,
                   bands=bands if bands is not None else {"60": 1}, min_dwell_s=DWELL, clock=clock)
    current, answered = len(RUNGS) - 1, False
    meter = None
    if meters is not None:  # the daemon's energy meter on the same clock, fed what the rung analyses
        meter = EnergyMeter(PI4, clock=clock)
        meters.append(meter)
    while not b.empty:
        g = RUNGS[current]
        draw[0] = rung_draw(PI4, current)
        if meter is not None:
            for _ in range(int((g.fps or 30.0) / g.every * period)):
                meter.add_inference(g.tier, COST_S[g.tier])
        clock.t += period
        true = b.read().percent
        if jump[1] and true <= jump[0]:
            b.drain(b.capacity_wh * 3600 * jump[1] / 100)
            true, jump = b.read().percent, (0.0, 0.0)
        if meter is not None:
            meter.tick(fps=g.fps or 30.0, active_tier=g.tier)
        if adapt:
            pct = true + rng.gauss(0, noise) if noise else true
            if rng.random() < glitch:
                pct = rng.uniform(0, 100)  # a wild reading
            if rng.random() < missing:
                pct = None
            pct = None if pct is None else min(100.0, max(0.0, pct))
            current = p.decide(current, PolicyInputs(pct, 40.0, None))
            answered = answered or pct is not None
        yield clock.t, current, true, answered


@settings(max_examples=40, deadline=None)
@given(noise=st.floats(0, 1.5, allow_subnormal=False), glitch=st.floats(0, 0.01, allow_subnormal=False),
       missing=st.floats(0, 0.3, allow_subnormal=False), seed=st.integers(0, 2 ** 16),
       period=st.sampled_from([0.5, 1.0, 2.0]), jump=st.tuples(st.floats(5, 100), st.floats(0, 60, allow_subnormal=False)))
def test_a_noisy_gappy_discharge_in_a_closed_loop_moves_at_most_once_a_dwell_always_down_and_ends_at_the_bottom(
        noise, glitch, missing, seed, period, jump):
    last_move, previous, rung, blind, critical_s = None, len(RUNGS) - 1, None, False, 0.0
    for t, rung, true, answered in discharge(noise=noise, glitch=glitch, missing=missing, seed=seed, hours=0.5,
                                              period=period, jump=jump):
        if rung != previous:
            assert abs(rung - previous) == 1
            # A discharge never sends it back up (that would be flapping), except once out of the safe rung
            # taken while the gauge had not answered at all yet.
            assert rung < previous or blind
            blind = not answered  # this move was taken before any reading
            assert last_move is None or t - last_move >= DWELL
            last_move, previous = t, rung
        critical_s += period if true < 10.0 else 0.0
    if critical_s > (len(RUNGS) + 1) * DWELL:  # time to walk down (a jump may empty the pack at once)
        assert rung == 0  # empty: the critical band's bottom rung


def test_each_band_settles_on_its_rung_and_a_four_hour_discharge_takes_seconds():
    meters = []
    trace = list(discharge(hours=4.0, meters=meters))
    meter = meters[0]
    held = {}  # charge band -> the rung held once the dwell let the policy reach the band's cap
    for t, rung, true, _ in trace:
        band = "ok" if true >= 60 else "<60" if true >= 30 else "low" if true >= 10 else "critical"
        held.setdefault(band, set()).add(rung)
    top = len(RUNGS) - 1
    assert top in held["ok"] and held["ok"] <= {top}
    assert held["<60"] <= {top, top - 1} and top - 1 in held["<60"]
    assert held["low"] <= {top - 1} and top - 1 in held["low"]  # low: one below the top (as <60 here)
    assert 0 in held["critical"]  # critical: walked down one rung a dwell to the bottom
    runtime = trace[-1][0]
    top_only = list(discharge(hours=4.0, adapt=False))[-1][0]
    assert top_only == pytest.approx(4 * 3600, abs=2)
    assert runtime > top_only  # adaptation lasts longer than the top rung alone
    # the meter's account matches what left the pack
    capacity_j = rung_draw(PI4, top) * 4.0 * 3600
    assert meter.total_j == pytest.approx(capacity_j, rel=0.002)


def test_hysteresis_a_charge_recovering_on_the_charger_goes_back_up_only_past_the_margin():
    clock = Clock()
    draw = [rung_draw(PI4, 4)]
    b = SimulatedBattery(1.0, 32.0, charge_w=0.0, load=lambda: draw[0], clock=clock)
    p = TierPolicy(len(RUNGS), low_battery=30, critical_battery=10, hot_c=75, hysteresis=5, latency_budget_ms=100,
                   min_dwell_s=DWELL, clock=clock)
    current = 4
    while b.read().percent >= 29.0:  # down into the low band
        clock.t += 1.0
        current = p.decide(current, PolicyInputs(b.read().percent, 40.0, None))
    for _ in range(20):
        clock.t += 1.0
        current = p.decide(current, PolicyInputs(b.read().percent, 40.0, None))
    assert current == 3
    b.charge_w = draw[0] + 3.6  # +0.1 % a second into 1 Wh
    b.plug()  # charging is not passed to the policy: the recovering charge alone must clear the margin
    seen = []
    while b.read().percent < 37.0:
        clock.t += 1.0
        r = b.read()
        current = p.decide(current, PolicyInputs(r.percent, 40.0, None))
        seen.append((r.percent, current))
    assert all(rung == 3 for pct, rung in seen if pct < 35.0)  # 30..35 %: inside the margin, it stays
    assert seen[-1][1] == 4 and min(pct for pct, rung in seen if rung == 4) >= 35.0


# -- the daemon ------------------------------------------------------------------------------------

def test_the_daemon_drains_a_simulated_battery_by_its_metered_draw_and_shows_energy_and_runtime_left(tmp_path):
    from firmware_py.console.commands import COMMANDS
    from firmware_py.daemon.runner import Daemon
    from firmware_py.inference import Engine
    from tests.conftest_drivers import wait_for
    from tests.data.model_sets import make_model_set
    from tests.test_daemon_control import LADDER, Gauge, InProcessProbe

    s = make_model_set(str(tmp_path / "models"), LADDER)
    cfg = load_config(None).replace(output={"results": str(tmp_path / "r.jsonl"), "status_interval_s": 0.0},
                                    run={"duration_s": 60.0})
    battery = SimulatedBattery(0.5, 80.0)
    daemon = Daemon(cfg, engine=Engine(s["dir"], public_key=s["public"]), battery=battery, thermal=Gauge(40.0),
                    probe=InProcessProbe(fps=40.0), policy_period_s=0.1)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: daemon.proc is not None and daemon.proc.processed >= 20, 30)
        assert wait_for(lambda: daemon.energy_status()["remaining_h"] is not None, 10)
        e = daemon.energy_status()
        tier = daemon.engine.active_tier.name
        assert e["tiers"][tier]["inferences"] > 0 and e["tiers"][tier]["mj_per_inference"] > 0
        assert e["current_w"] > PI4.board_idle_w and e["battery_wh"] == 0.5 and e["source"] == "model"
        assert wait_for(lambda: battery.percent < 80.0, 10)  # drained by the meter's draw
        assert re.search(r"batt \d+% 40C \d+\.\d\dW \d+\.\dh left", daemon.status_text()), daemon.status_text()
        shown = COMMANDS["power"].run(SimpleNamespace(daemon=daemon), [])  # the console's power command
        assert shown["model"] == "pi4-cpu" and tier in shown["tiers"] and shown["remaining_h"] > 0
        assert daemon.commands.call("battery", action="plug") == "ok: simulated battery plugged"
        assert wait_for(lambda: daemon.tiers.readings.charging, 10)
    finally:
        daemon.stop_event.set()
        runner.join(20)
    assert daemon.proc.fatal is None


def test_plugging_a_battery_that_is_not_simulated_is_refused_with_the_fix():
    from firmware_py.daemon.runner import Daemon
    from firmware_py.errors import FirmwareError
    from tests.test_daemon_control import Gauge

    daemon = Daemon(load_config(None), battery=Gauge(50.0))
    with pytest.raises(FirmwareError, match=r"the battery \(test\) is not simulated, so it cannot be plugged from "
                                            "here; set power.battery.kind: simulated"):
        daemon._cmd_battery("plug")
