"""Battery and thermal sources: Linux power_supply sysfs in full against a fake sysfs tree (files
vanishing, garbage, the kernel's signs, drivers that report magnitudes), psutil's battery and
temperatures through a stand-in module returning psutil's own record types, sysfs thermal zones."""
from __future__ import annotations

import os

import pytest

from firmware_py.config import load_config
from firmware_py.errors import ConfigError
from firmware_py.power import make_battery, make_thermal
from firmware_py.power.battery_psutil import PsutilBattery
from firmware_py.power.battery_sysfs import SysfsBattery
from firmware_py.power.sensors import BatteryReading
from firmware_py.power.thermal_psutil import PsutilThermal
from firmware_py.power.thermal_sysfs import SysfsThermal

try:  # psutil's record types (psutil 7 moved them)
    from psutil._ntuples import sbattery, shwtemp
except ImportError:  # pragma: no cover - psutil < 7
    from psutil._common import sbattery, shwtemp


def supply(root, name, **attrs):
    """A power_supply folder as a driver exposes it: one file per attribute, value and newline."""
    folder = root / name
    folder.mkdir(exist_ok=True)
    for key, value in attrs.items():
        (folder / key).write_text(f"{value}\n")
    return folder


# -- power_supply sysfs ---------------------------------------------------------------------------
def test_a_fuel_gauge_reports_charge_status_voltage_current_and_power_in_micro_units(tmp_path):
    supply(tmp_path, "AC", type="Mains", online=0)
    supply(tmp_path, "hid-mouse-battery", type="Battery", scope="Device", capacity=12, status="Discharging")
    supply(tmp_path, "bq27441-0", type="Battery", capacity=64, status="Discharging", voltage_now=3_812_000,
           current_now=-812_000)  # the ABI's sign: negative while discharging
    gauge = SysfsBattery(str(tmp_path))
    assert gauge.name == "sysfs:bq27441-0"  # the mouse's battery (scope Device) is not the board's
    got = gauge.read()
    assert (got.percent, got.charging, got.voltage_v, got.current_a) == (64.0, False, 3.812, -0.812)
    assert got.power_w == pytest.approx(-3.812 * 0.812) and got.discharge_w == pytest.approx(3.0954, abs=1e-4)


def test_a_driver_reporting_magnitudes_gets_its_sign_from_the_status(tmp_path):
    bat = supply(tmp_path, "BAT0", type="Battery", capacity=80, status="Discharging", voltage_now=11_400_000,
                 power_now=9_120_000)  # ACPI: power_now positive whatever the direction, no current_now
    got = SysfsBattery(str(tmp_path)).read()
    assert got.power_w == pytest.approx(-9.12) and got.current_a == pytest.approx(-0.8)
    assert got.discharge_w == pytest.approx(9.12)
    supply(tmp_path, "BAT0", status="Charging", power_now=20_000_000)
    got = SysfsBattery(str(tmp_path)).read()
    assert got.charging and got.power_w == pytest.approx(20.0) and got.discharge_w is None
    for status in ("Full", "Not charging"):  # on the charger without charging: external power all the same
        (bat / "status").write_text(status + "\n")
        assert SysfsBattery(str(tmp_path)).read().charging
    (bat / "status").write_text("Unknown\n")
    assert not SysfsBattery(str(tmp_path)).read().charging


def test_without_capacity_the_charge_comes_from_energy_or_charge_counters(tmp_path):
    bat = supply(tmp_path, "BAT1", type="Battery", status="Discharging", energy_now=30_000_000,
                 energy_full=40_000_000)
    assert SysfsBattery(str(tmp_path)).read().percent == 75.0
    for name in ("energy_now", "energy_full"):
        (bat / name).unlink()
    supply(tmp_path, "BAT1", charge_now=1_000_000, charge_full=4_000_000)
    assert SysfsBattery(str(tmp_path)).read().percent == 25.0
    (bat / "charge_now").unlink()
    with pytest.raises(OSError, match="no capacity"):
        SysfsBattery(str(tmp_path)).read()


def test_garbage_and_vanishing_files(tmp_path):
    bat = supply(tmp_path, "BAT0", type="Battery", capacity=50, status="Discharging", voltage_now=3_700_000,
                 current_now=-500_000)
    gauge = SysfsBattery(str(tmp_path))
    (bat / "current_now").write_text("\x00\xff\n")  # garbage in an optional attribute: unknown, not an error
    (bat / "voltage_now").unlink()
    assert gauge.read() == BatteryReading(50.0, False, None, None, None)
    (bat / "capacity").write_text("fifty\n")
    with pytest.raises(OSError, match="capacity reads 'fifty', not a number"):
        gauge.read()
    (bat / "capacity").write_text("255\n")  # what some gauges report on a failed I2C read
    with pytest.raises(OSError, match="255 % charge"):
        gauge.read()
    (bat / "capacity").write_text("49\n")
    (bat / "status").unlink()
    assert gauge.read().percent == 49.0 and not gauge.read().charging
    for f in bat.iterdir():  # the driver unbinds: the whole folder goes
        f.unlink()
    bat.rmdir()
    with pytest.raises(OSError, match="gone"):
        gauge.read()
    supply(tmp_path, "BAT1", type="Battery", capacity=48)  # it re-probes under another name: followed
    assert gauge.read().percent == 48.0 and gauge.name == "sysfs:BAT1"


def test_a_named_supply_and_absent_ones_name_the_key_to_fix(tmp_path):
    supply(tmp_path, "BAT0", type="Battery", capacity=10)
    supply(tmp_path, "BAT1", type="Battery", capacity=90)
    assert SysfsBattery(str(tmp_path), "BAT1").read().percent == 90.0
    with pytest.raises(OSError, match="power.battery.sysfs.supply"):
        SysfsBattery(str(tmp_path), "BAT7")
    with pytest.raises(OSError, match="set power.battery.kind"):
        SysfsBattery(str(tmp_path / "nothing"))
    cfg = load_config(None).replace(power={"battery": {"kind": "sysfs", "sysfs": {"root": str(tmp_path),
                                                                                  "supply": "BAT0"}}})
    assert make_battery(cfg.power).read().percent == 10.0


def test_a_read_error_from_the_driver_is_unknown_for_an_attribute_and_an_oserror_for_the_charge(tmp_path):
    """Drivers fail a read with EIO or ENODATA when the chip does not answer: a folder in place of
    the file makes open() fail the same way (IsADirectoryError is an OSError)."""
    bat = supply(tmp_path, "BAT0", type="Battery", capacity=70, status="Discharging")
    os.mkdir(bat / "current_now")
    assert SysfsBattery(str(tmp_path)).read().current_a is None
    (bat / "capacity").unlink()
    os.mkdir(bat / "capacity")
    with pytest.raises(OSError):
        SysfsBattery(str(tmp_path)).read()


# -- psutil ---------------------------------------------------------------------------------------
class FakePsutil:
    """The two psutil calls the kinds use, returning psutil's own record types."""

    def __init__(self, battery=None, temperatures=None):
        self.battery, self.temperatures = battery, temperatures or {}

    def sensors_battery(self):
        return self.battery

    def sensors_temperatures(self):
        return self.temperatures


def test_psutil_battery_percent_and_mains_power():
    ps = FakePsutil(sbattery(percent=41.5, secsleft=3600, power_plugged=False))
    gauge = PsutilBattery(ps)
    assert gauge.read() == BatteryReading(41.5, False)
    ps.battery = sbattery(percent=42, secsleft=-2, power_plugged=True)  # psutil's POWER_TIME_UNLIMITED
    assert gauge.read().charging
    ps.battery = sbattery(percent=42, secsleft=-1, power_plugged=None)  # the platform cannot tell
    assert not gauge.read().charging
    ps.battery = None
    with pytest.raises(OSError, match="disappeared"):
        gauge.read()
    with pytest.raises(OSError, match="power.battery.kind"):
        PsutilBattery(FakePsutil())


def test_psutil_thermal_picks_the_soc_zone_by_its_name_or_label():
    pi = {"cpu_thermal": [shwtemp("", 58.4, None, None)], "rp1_adc": [shwtemp("", 41.0, None, None)]}
    assert PsutilThermal("cpu_thermal", FakePsutil(temperatures=pi)).read() == 58.4
    intel = {"coretemp": [shwtemp("Package id 0", 71.0, 100.0, 100.0), shwtemp("Core 0", 69.0, 100.0, 100.0)],
             "nvme": [shwtemp("Composite", 40.9, 84.8, 84.8)]}
    assert PsutilThermal("coretemp", FakePsutil(temperatures=intel)).read() == 71.0
    assert PsutilThermal("Core 0", FakePsutil(temperatures=intel)).read() == 69.0
    with pytest.raises(OSError, match=r"no temperature 'cpu_thermal' \(it has: Composite, Core 0, .*coretemp, nvme\)"
                                      r"; set power.thermal.psutil.label"):
        PsutilThermal("cpu_thermal", FakePsutil(temperatures=intel))
    ps = FakePsutil(temperatures=dict(pi))
    sensor = PsutilThermal("cpu_thermal", ps)
    ps.temperatures = {}  # the hwmon driver went away
    with pytest.raises(OSError, match="no temperature"):
        sensor.read()
    ps.temperatures = {"cpu_thermal": [shwtemp("", -273.15, None, None)]}  # a failed ADC read
    with pytest.raises(OSError, match="failed read"):
        sensor.read()


def test_psutil_kinds_through_the_configuration():
    cfg = load_config(None).replace(power={"thermal": {"kind": "psutil", "psutil": {"label": "nope"}}})
    with pytest.raises(OSError, match="no temperature 'nope'"):  # this machine's psutil, whatever it has
        make_thermal(cfg.power)
    with pytest.raises(ConfigError, match="power.thermal.psutil.label"):
        load_config(None).replace(power={"thermal": {"psutil": {"label": 3}}})


# -- sysfs thermal --------------------------------------------------------------------------------
def test_sysfs_thermal_garbage_implausible_and_vanished(tmp_path):
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "temp").write_text("61250\n")
    sensor = SysfsThermal(str(zone))
    assert sensor.read() == 61.25
    (zone / "temp").write_text("-273000\n")
    with pytest.raises(OSError, match="-273 C"):
        sensor.read()
    (zone / "temp").write_text("hot\n")
    with pytest.raises(OSError, match="not a number"):
        sensor.read()
    (zone / "temp").unlink()
    with pytest.raises(OSError):
        sensor.read()
