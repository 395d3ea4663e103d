"""Power policy with a fake clock: bands, hysteresis, dwell, one rung per decision, heat, charging,
failing gauges, latency; property tests over noisy discharge traces; the rung ladder; mock sensors."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from firmware_py.config import load_config
from firmware_py.errors import ConfigError
from firmware_py.power import PolicyInputs, TierPolicy, make_battery
from firmware_py.power.battery_mock import MockBattery
from firmware_py.power.battery_sysfs import SysfsBattery
from firmware_py.power.ladder import build_rungs
from firmware_py.power.thermal_sysfs import SysfsThermal

DWELL = 10.0


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def policy(n=4, clock=None, **kw):
    args = dict(low_battery=30, critical_battery=10, hot_c=75, hysteresis=5, latency_budget_ms=100,
                min_dwell_s=DWELL, clock=clock or Clock())
    args.update(kw)
    return TierPolicy(n, **args)


def step(p, current, batt=80.0, temp=40.0, lat=None, charging=False, advance=DWELL):
    """One decision ``advance`` seconds after the previous one."""
    p._clock.t += advance
    return p.decide(current, PolicyInputs(batt, temp, lat, charging=charging))


def settle(p, current, n=20, **kw):
    for _ in range(n):
        current = step(p, current, **kw)
    return current


def test_one_rung_per_decision_towards_the_goal():
    p = policy()
    assert step(p, 0) == 1 and p.goal == 3
    assert settle(p, 1) == 3


def test_no_second_move_within_the_dwell():
    p = policy()
    assert step(p, 3, batt=5) == 2
    for _ in range(9):  # one-second decisions: held for the dwell
        assert step(p, 2, batt=5, advance=1.0) == 2
        assert "dwell" in p.reason
    assert step(p, 2, batt=5, advance=1.0) == 1


def test_battery_bands_down_at_once_and_up_only_past_hysteresis():
    p = policy()
    assert settle(p, 3, batt=29) == 2  # low: one below the top
    assert settle(p, 2, batt=34.9) == 2  # back above 30 but not 35: stays (no flapping)
    assert settle(p, 2, batt=35) == 3
    assert settle(p, 3, batt=9) == 0 and p.reason == "battery critical"
    assert settle(p, 0, batt=14) == 0  # not yet critical + 5
    assert settle(p, 0, batt=15) == 2  # clears critical + 5: the low band (top - 1)


def test_configured_bands_add_rungs_below_the_top():
    p = policy(6, bands={"60": 2, "45": 3})
    assert settle(p, 5, batt=70) == 5
    assert settle(p, 5, batt=59) == 3 and p.reason == "battery <60%"
    assert settle(p, 3, batt=44) == 2
    assert settle(p, 2, batt=9) == 0


def test_bad_band_names_the_fix():
    with pytest.raises(ConfigError, match=r'power.bands entry .* write e.g. \{"40": 2\}'):
        policy(bands={"low": 2})


def test_heat_steps_down_once_and_holds_instead_of_falling_to_the_bottom():
    p = policy()
    assert step(p, 3, temp=80) == 2
    current = 2
    for _ in range(120):  # two minutes of one-second decisions, still hot: the old policy hit rung 0
        current = step(p, current, temp=80, advance=1.0)
    assert current == 2 and p.reason.startswith("too hot")
    assert settle(p, 2, temp=72) == 2  # within the hysteresis band: still hot
    assert settle(p, 2, temp=69) == 3  # cooled past the margin: back up


def test_heat_takes_one_more_rung_only_when_it_keeps_getting_hotter():
    p = policy()
    assert step(p, 3, temp=78) == 2
    assert settle(p, 2, temp=82) == 2  # hotter, but less than hysteresis above the first step's 78
    assert step(p, 2, temp=83) == 1  # 5 degrees hotter a dwell later: one more
    assert settle(p, 1, temp=83) == 1


def test_charging_allows_the_top_rung_at_any_charge():
    p = policy()
    assert settle(p, 0, batt=5, charging=True) == 3 and p.reason == "charging"
    assert settle(p, 3, batt=5, charging=True, temp=90) == 2  # heat still applies


def test_a_glitch_keeps_the_band_and_a_dead_gauge_falls_back_to_the_safe_rung():
    p = policy(safe_rung=2, sensor_timeout_s=30)
    assert settle(p, 3, batt=80) == 3
    assert step(p, 3, batt=None, advance=5) == 3  # a dropout: the last reading still counts
    assert step(p, 3, batt=None, advance=30) == 2 and p.reason == "battery unreadable: safe rung"
    assert settle(p, 2, batt=None) == 1
    q = policy(safe_rung=1)  # never a reading (no gauge at all): the safe rung at once
    assert settle(q, 0, batt=None) == 2


def test_latency_over_budget_steps_down_and_headroom_steps_back_up():
    p = policy()
    assert step(p, 3, lat=150) == 2 and "over the 100 ms budget" in p.reason
    assert settle(p, 2, lat=80) == 2  # under budget but not much headroom: stay
    assert step(p, 2, lat=20) == 3  # lots of headroom: one step up
    p.decide(3, PolicyInputs(80.0, 40.0, 150.0, budget_ms=200.0))  # the frame budget given wins
    assert p.goal == 3


def test_single_rung_ladder_always_runs_it():
    p = policy(1)
    assert step(p, 0, batt=1, temp=99, lat=1e6) == 0


# Sensor readings are physical: no subnormals (tflite-runtime's aarch64 wheel sets flush-to-zero, and
# hypothesis then refuses to draw them).
readings = st.one_of(st.none(), st.floats(0, 100, allow_subnormal=False))


@settings(max_examples=200, deadline=None)
@given(trace=st.lists(st.tuples(readings, st.one_of(st.none(), st.floats(20, 100)),
                                st.one_of(st.none(), st.floats(0, 400, allow_subnormal=False)), st.booleans(),
                                st.floats(0.05, 30)), min_size=1, max_size=120),
       n=st.integers(1, 7), start=st.integers(0, 6))
def test_no_trace_makes_it_switch_more_than_once_per_dwell_or_jump_a_rung(trace, n, start):
    """Noise, jumps, missing readings, charging flips, irregular periods: still at most one move per
    dwell, one rung at a time, always on the ladder."""
    clock = Clock()
    p = policy(n, clock=clock, bands={"60": 1, "45": 2})
    current, last_move = min(start, n - 1), None
    for batt, temp, lat, charging, dt in trace:
        clock.t += dt
        target = p.decide(current, PolicyInputs(batt, temp, lat, charging=charging))
        assert 0 <= target < n and abs(target - current) <= 1
        if target != current:
            assert last_move is None or clock.t - last_move >= DWELL
            last_move, current = clock.t, target


@settings(max_examples=100, deadline=None)
# Readings spread over level +- noise: "under the hysteresis" means the whole spread, 2 x noise, is
# below the 5-point margin (with 4.5 a median can leave a band on one side and re-enter it).
@given(level=st.floats(0, 100, allow_subnormal=False), noise=st.floats(0, 2.45, allow_subnormal=False), seed=st.integers(0, 2 ** 16))
def test_a_steady_charge_with_noise_under_the_hysteresis_settles_and_stays(level, noise, seed):
    rng = random.Random(seed)
    p = policy(6, bands={"60": 2, "45": 3})
    current = 5
    for _ in range(40):
        current = step(p, current, batt=min(100.0, max(0.0, level + rng.uniform(-noise, noise))))
    directions = []
    for _ in range(200):  # settled: the noise never crosses a threshold by the margin again
        target = step(p, current, batt=min(100.0, max(0.0, level + rng.uniform(-noise, noise))))
        if target != current:
            directions.append(target > current)
        current = target
    # Noise first dipping under a threshold it had not crossed may still walk the policy down, one
    # rung a decision, to that band's cap; it never turns back up (that would be flapping).
    assert len(set(directions)) <= 1 and len(directions) <= 5


def test_a_four_hour_discharge_with_noise_and_dropouts_walks_down_each_rung_once():
    rng = random.Random(7)
    clock = Clock()
    p = policy(6, clock=clock, bands={"60": 1, "45": 2, "30": 3})
    current, rungs_seen, moves = 5, [], 0
    for second in range(4 * 3600):  # 100 % -> 0 % in four hours, one decision a second
        clock.t += 1.0
        pct = 100.0 * (1 - second / (4 * 3600)) + rng.gauss(0, 1.5)
        if rng.random() < 0.02:
            pct = None  # the gauge misses a read
        elif rng.random() < 0.001:
            pct = rng.uniform(0, 100)  # a glitch: a wild reading
        target = p.decide(current, PolicyInputs(pct, 45.0, None))
        moves += target != current
        current = target
        if not rungs_seen or rungs_seen[-1] != current:
            rungs_seen.append(current)
    assert current == 0
    assert moves == 5 and rungs_seen == [5, 4, 3, 2, 1, 0]  # glitches, noise and dropouts moved nothing


def test_rungs_say_what_they_cost():
    metrics = {"s": {"accuracy": 0.79}, "m": {"accuracy": 0.75}, "l": {"accuracy": 0.83}}
    rungs = build_rungs("tiers, every:2, fps:15", ["s", "m", "l"], metrics)
    assert [g.label for g in rungs] == ["s 1/2 @15fps", "s 1/2", "s", "m", "l"]
    assert rungs[2].cost == "accuracy 0.790 (-4.0 points vs the top tier)"
    assert rungs[0].cost.endswith("analyses 1 frame in 2; probe at 15 fps")
    with pytest.raises(ValueError, match="power.ladder 'every:2' is not a rung list; write `tiers` then"):
        build_rungs("every:2", ["s"], {})


def test_mock_battery_drains_with_time_and_fails_like_a_gauge():
    t = [0.0]
    b = MockBattery(50.0, drain_percent_per_min=6.0, clock=lambda: t[0], fail_after_reads=3)
    assert b.read().percent == 50.0
    t[0] = 60.0
    assert b.read().percent == pytest.approx(44.0)
    t[0] = 120.0
    assert b.read().percent == pytest.approx(38.0)
    with pytest.raises(OSError):
        b.read()


def test_real_sources_explain_what_to_configure_when_absent(tmp_path):
    with pytest.raises(OSError, match="power.battery"):
        SysfsBattery(root=str(tmp_path))
    with pytest.raises(OSError, match="power.thermal"):
        SysfsThermal(zone=str(tmp_path / "zone"))
    (tmp_path / "BAT0").mkdir()
    (tmp_path / "BAT0" / "type").write_text("Battery\n")
    (tmp_path / "BAT0" / "capacity").write_text("67\n")
    assert SysfsBattery(root=str(tmp_path)).read().percent == 67.0
    power = load_config(None).power
    with pytest.raises(ValueError):
        make_battery(replace(power, battery=replace(power.battery, kind="solar")))
