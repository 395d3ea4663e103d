"""Typed sections and per-kind sub-sections: sensor kinds found through a registry, one file each."""
from __future__ import annotations

import dataclasses

import pytest

from firmware_py.config import docs, load_config
from firmware_py.errors import ConfigError
from firmware_py.power import BATTERIES, TierPolicy, make_battery, make_thermal
from firmware_py.power.sensors import BatteryReading
from firmware_py.registry import Key


def write(tmp_path, text: str):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


class SolarBattery:
    """A battery kind that exists only in this test file."""

    name = "solar"

    def __init__(self, panel_percent: float):
        self.panel_percent = panel_percent

    @classmethod
    def from_config(cls, section) -> "SolarBattery":
        return cls(section.panel_percent)

    def read(self) -> BatteryReading:
        return BatteryReading(self.panel_percent)


@pytest.fixture
def solar():
    BATTERIES.register("solar", doc="a panel-charged cell (test only)", keys={
        "panel_percent": Key("float", 55.0, "Charge the panel holds the cell at.", min=0, max=100),
    })(SolarBattery)
    yield
    BATTERIES.unregister("solar")


def test_a_battery_kind_added_from_a_test_file_is_configured_validated_and_read(solar, tmp_path):
    cfg = load_config(write(tmp_path, "power:\n  battery:\n    kind: solar\n    solar:\n      panel_percent: 64\n"))
    battery = make_battery(cfg.power)
    assert isinstance(battery, SolarBattery) and battery.read().percent == 64.0
    assert load_config(None).power.battery.solar.panel_percent == 55.0  # its default, from its own keys
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "power:\n  battery:\n    kind: solar\n    solar:\n      panel_percent: 140\n"))
    assert "cfg.yaml:5" in str(err.value) and "'power.battery.solar.panel_percent' must be <= 100" in str(err.value)
    assert "`power.battery.solar.panel_percent`" in docs.render_docs()


def test_an_unregistered_kind_is_refused_again(tmp_path):
    with pytest.raises(ConfigError, match="'power.battery.kind' must be one of mock, sysfs, psutil, max17048, simulated; got 'solar'"):
        load_config(write(tmp_path, "power:\n  battery:\n    kind: solar\n"))


def test_sub_sections_merge_key_by_key_and_sections_are_typed_and_frozen(tmp_path):
    cfg = load_config(write(tmp_path, "power:\n  battery:\n    kind: sysfs\n    mock:\n      percent: 20\n"))
    assert cfg.power.battery.kind == "sysfs"
    assert cfg.power.battery.mock.percent == 20 and cfg.power.battery.mock.drain_percent_per_min == 1.0
    assert cfg.power.battery.sysfs.root == "/sys/class/power_supply"
    assert cfg.power.hot_c == 75.0 and cfg.probe.baudrate == 3000000
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.power.hot_c = 90.0
    again = load_config(None).replace(**cfg.as_dict())
    assert again == cfg and again.as_dict() == cfg.as_dict()
    options = load_config(None).replace(accelerator={"external": {"options": {"a": 1}}})
    assert options.replace(accelerator={"external": {"options": {"b": 2}}}).accelerator.external.options == {"b": 2}


def test_factories_build_the_configured_kind_from_its_sub_section(tmp_path):
    (tmp_path / "BAT1").mkdir()
    (tmp_path / "BAT1" / "type").write_text("Battery\n")
    (tmp_path / "BAT1" / "capacity").write_text("42\n")
    (tmp_path / "zone").mkdir()
    (tmp_path / "zone" / "temp").write_text("51500\n")
    cfg = load_config(None).replace(power={"battery": {"kind": "sysfs", "sysfs": {"root": str(tmp_path)}},
                                           "thermal": {"kind": "sysfs", "sysfs": {"zone": str(tmp_path / "zone")}}})
    assert make_battery(cfg.power).read().percent == 42.0
    assert make_thermal(cfg.power).read() == 51.5
    mock = load_config(None).replace(power={"battery": {"mock": {"percent": 33, "drain_percent_per_min": 0}},
                                            "thermal": {"mock": {"temperature_c": 61}}})
    assert make_battery(mock.power).read().percent == 33.0 and make_thermal(mock.power).read() == 61.0


def test_absent_hardware_still_fails_with_oserror_naming_the_key(tmp_path):
    cfg = load_config(None).replace(power={"battery": {"kind": "sysfs", "sysfs": {"root": str(tmp_path)}},
                                           "thermal": {"kind": "sysfs", "sysfs": {"zone": str(tmp_path / "z")}}})
    with pytest.raises(OSError, match="power.battery.kind"):
        make_battery(cfg.power)
    with pytest.raises(OSError, match="power.thermal.kind"):
        make_thermal(cfg.power)


def test_tier_policy_from_config_uses_the_section_thresholds():
    from firmware_py.power import PolicyInputs

    power = load_config(None).replace(power={"low_battery_percent": 60, "critical_battery_percent": 20}).power
    policy = TierPolicy.from_config(power, 4)
    assert policy.decide(3, PolicyInputs(55.0, 40.0, None)) == 2  # low at 55 only because the section says 60
    for _ in range(3):  # the charge is a median of readings; the policy moves a rung per dwell: the goal says it
        policy.decide(2, PolicyInputs(15.0, 40.0, None))
    assert policy.goal == 0
