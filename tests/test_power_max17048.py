"""MAX17048 fuel gauge against a fake smbus2 bus holding the datasheet's register map, with the
chip's failures: a NACK (off the bus), an all-ones read (brown-out), a gauge that is not there."""
from __future__ import annotations

import pytest

from firmware_py.config import load_config
from firmware_py.power import make_battery
from firmware_py.power.battery_max17048 import ADDRESS, Max17048Battery


class FakeMax17048Bus:
    """smbus2.SMBus's read_i2c_block_data over a MAX17048: big-endian 16-bit registers at 0x36."""

    def __init__(self, soc_percent=80.0, cell_v=3.9, crate_pct_h=-5.0):
        self.soc, self.cell_v, self.crate = soc_percent, cell_v, crate_pct_h
        self.nack_reads: set[int] = set()  # read numbers (from 1) that NACK
        self.ones_reads: set[int] = set()  # read numbers that return 0xFF bytes
        self.reads = 0

    def _register(self, reg: int) -> int:
        crate = round(self.crate / 0.208) & 0xFFFF
        return {0x02: round(self.cell_v / 78.125e-6), 0x04: round(self.soc * 256), 0x08: 0x0012,
                0x0C: 0x971C, 0x16: crate, 0x18: 0x9600, 0x1A: 0x0100}.get(reg, 0)

    def read_i2c_block_data(self, address, register, length):
        self.reads += 1
        if address != ADDRESS or self.reads in self.nack_reads:
            raise OSError(121, "Remote I/O error")  # what smbus2 raises on a NACK
        if self.reads in self.ones_reads:
            return [0xFF] * length
        value = self._register(register)
        return [value >> 8, value & 0xFF][:length]


def test_reads_charge_voltage_and_charging_from_the_registers():
    bus = FakeMax17048Bus(soc_percent=63.5, cell_v=3.8, crate_pct_h=-4.0)
    gauge = Max17048Battery(bus)
    got = gauge.read()
    assert got.percent == pytest.approx(63.5, abs=1 / 256) and not got.charging
    assert got.voltage_v == pytest.approx(3.8, abs=1e-4) and got.current_a is None and got.power_w is None
    bus.crate, bus.soc = 12.0, 100.4  # plugged in, full: a little over 100 % is the chip, not an error
    got = gauge.read()
    assert got.percent == 100.0 and got.charging


def test_a_nack_and_an_all_ones_read_are_oserrors_and_the_next_read_recovers():
    bus = FakeMax17048Bus(soc_percent=40.0)
    gauge = Max17048Battery(bus)
    bus.nack_reads, bus.ones_reads = {bus.reads + 1}, {bus.reads + 2}  # SOC of the first two reads
    with pytest.raises(OSError, match="Remote I/O"):
        gauge.read()
    with pytest.raises(OSError, match="bad read"):
        gauge.read()
    assert gauge.read().percent == pytest.approx(40.0, abs=1 / 256)


def test_no_gauge_at_the_address_names_the_key_to_fix():
    bus = FakeMax17048Bus()
    bus._register = lambda reg: 0x0000  # another chip answers, with no MAX17048 version
    with pytest.raises(OSError, match="power.battery.max17048.address"):
        Max17048Battery(bus)
    with pytest.raises(OSError):
        Max17048Battery(FakeMax17048Bus(), address=0x37)  # nothing there: NACK


def test_configured_on_a_bus_that_does_not_exist_says_how_to_enable_it():
    power = load_config(None).replace(power={"battery": {"kind": "max17048", "max17048": {"bus": 250}}}).power
    with pytest.raises(OSError, match="cannot open I2C bus 250 .*raspi-config"):
        make_battery(power)
