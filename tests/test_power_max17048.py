"""MAX17048 fuel gauge against the fake smbus2 bus of tests/fake_i2c.py holding the datasheet's register
map, with the chip's failures: a NACK (off the bus), an all-ones read (brown-out), a gauge that is not there."""
from __future__ import annotations

import pytest

from firmware_py.config import load_config
from firmware_py.power import make_battery
from firmware_py.power.battery_max17048 import ADDRESS, Max17048Battery
from tests.fake_i2c import FakeBus, FakeMax17048


def test_reads_charge_voltage_and_charging_from_the_registers():
    chip = FakeMax17048(soc_percent=63.5, cell_v=3.8, crate_pct_h=-4.0)
    gauge = Max17048Battery(FakeBus({ADDRESS: chip}))
    got = gauge.read()
    assert got.percent == pytest.approx(63.5, abs=1 / 256) and not got.charging
    assert got.voltage_v == pytest.approx(3.8, abs=1e-4) and got.current_a is None and got.power_w is None
    chip.crate, chip.soc = 12.0, 100.4  # plugged in, full: a little over 100 % is the chip, not an error
    got = gauge.read()
    assert got.percent == 100.0 and got.charging


def test_a_nack_and_an_all_ones_read_are_oserrors_and_the_next_read_recovers():
    bus = FakeBus({ADDRESS: FakeMax17048(soc_percent=40.0)})
    gauge = Max17048Battery(bus)
    bus.nack_reads, bus.ones_reads = {bus.transactions + 1}, {bus.transactions + 2}  # SOC of the first two reads
    with pytest.raises(OSError, match="Remote I/O"):
        gauge.read()
    with pytest.raises(OSError, match="bad read"):
        gauge.read()
    assert gauge.read().percent == pytest.approx(40.0, abs=1 / 256)


def test_no_gauge_at_the_address_names_the_key_to_fix():
    with pytest.raises(OSError, match="power.battery.max17048.address"):
        Max17048Battery(FakeBus({ADDRESS: FakeMax17048(version=0x0000)}))  # another chip, no MAX17048 version
    with pytest.raises(OSError):
        Max17048Battery(FakeBus({ADDRESS: FakeMax17048()}), address=0x37)  # nothing there: NACK


def test_configured_on_a_bus_that_does_not_exist_says_how_to_enable_it():
    power = load_config(None).replace(power={"battery": {"kind": "max17048", "max17048": {"bus": 250}}}).power
    with pytest.raises(OSError, match="cannot open I2C bus 250 .*raspi-config"):
        make_battery(power)
