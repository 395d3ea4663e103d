"""Tier policy: battery bands with hysteresis, heat and latency step-downs; mock sensors."""
from __future__ import annotations

import pytest

from dataclasses import replace

from firmware_py.config import load_config
from firmware_py.power import PolicyInputs, TierPolicy, make_battery
from firmware_py.power.battery_mock import MockBattery
from firmware_py.power.battery_sysfs import SysfsBattery
from firmware_py.power.thermal_sysfs import SysfsThermal


def policy(n=4):
    return TierPolicy(n, low_battery=30, critical_battery=10, hot_c=75, hysteresis=5, latency_budget_ms=100)


def step(p, current, batt=80.0, temp=40.0, lat=None):
    return p.decide(current, PolicyInputs(batt, temp, lat))


def test_full_battery_runs_the_largest_tier():
    assert step(policy(), 0) == 3


def test_battery_bands_step_down_at_once_and_up_only_past_hysteresis():
    p = policy()
    assert step(p, 3, batt=29) == 2  # low: one below the top
    assert step(p, 2, batt=31) == 2  # back above 30 but not 35: stays down (no flapping)
    assert step(p, 2, batt=34.9) == 2
    assert step(p, 2, batt=35) == 3
    assert step(p, 3, batt=9) == 0  # critical: smallest
    assert step(p, 0, batt=12) == 0  # not yet critical + 5
    assert step(p, 0, batt=15) == 2  # clears critical + 5: back to the low band (top - 1)
    assert step(p, 2, batt=40) == 3


def test_unreadable_battery_keeps_the_last_band():
    p = policy()
    assert step(p, 3, batt=20) == 2
    assert step(p, 2, batt=None) == 2


def test_heat_steps_down_one_tier_and_recovers_with_hysteresis():
    p = policy()
    assert step(p, 3, temp=80) == 2
    assert step(p, 2, temp=80) == 1  # still hot: keep stepping down, one per period
    assert step(p, 1, temp=72) == 0  # 72 is within the hysteresis band: still hot
    p2 = policy()
    step(p2, 3, temp=80)
    assert step(p2, 2, temp=72) == 1  # 72 > 75-5: still considered hot
    assert step(p2, 1, temp=69) == 3  # cooled past the margin


def test_latency_over_budget_steps_down_and_headroom_steps_back_up():
    p = policy()
    assert step(p, 3, lat=150) == 2
    assert step(p, 2, lat=80) == 2  # under budget but not much headroom: stay
    assert step(p, 2, lat=20) == 3  # lots of headroom: one step up


def test_single_tier_ladder_always_runs_it():
    p = policy(1)
    assert step(p, 0, batt=1, temp=99, lat=1e6) == 0


def test_mock_battery_drains_with_time_and_fails_like_a_gauge():
    t = [0.0]
    b = MockBattery(50.0, drain_percent_per_min=6.0, clock=lambda: t[0], fail_after_reads=3)
    assert b.read() == 50.0
    t[0] = 60.0
    assert b.read() == pytest.approx(44.0)
    t[0] = 120.0
    assert b.read() == pytest.approx(38.0)
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
    assert SysfsBattery(root=str(tmp_path)).read() == 67.0
    power = load_config(None).power
    with pytest.raises(ValueError):
        make_battery(replace(power, battery=replace(power.battery, kind="solar")))
