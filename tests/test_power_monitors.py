"""INA219 and INA260 power monitors against the chips of tests/fake_i2c.py (datasheet register maps,
byte-swapped SMBus words), with their failures: calibration lost in a brown-out, overflow, NACK,
an ADC that stops, a bus replaying stale bytes, the wrong chip at the address."""
from __future__ import annotations

import pytest

from firmware_py.config import load_config
from firmware_py.errors import ConfigError
from firmware_py.power import make_monitor
from firmware_py.power.monitor_ina219 import Ina219Monitor, settings
from firmware_py.power.monitor_ina260 import Ina260Monitor
from tests.fake_i2c import FakeBus, FakeIna219, FakeIna260, FakeMax17048


def test_ina219_calibration_and_gain_follow_the_datasheet_example():
    # SBOS448 8.5.1: 0.1 ohm, 3.2 A: Current_LSB 97.66 uA (rounded up to 100 uA there), Cal = 4096 at 100 uA.
    config, cal, lsb = settings(0.1, 3.2, 1)
    assert cal == 4194 and lsb == pytest.approx(0.04096 / (4194 * 0.1))
    assert config == 0x399F  # 32 V, PGA /8, 12-bit, continuous: the reset value, for this range
    assert settings(0.1, 0.4, 128)[0] >> 11 & 0x3 == 0  # 40 mV full scale: PGA /1
    with pytest.raises(ConfigError, match="over the INA219's 320 mV"):
        settings(0.1, 5.0, 1)


def test_ina219_reads_bus_voltage_current_and_power_through_byte_swapped_words():
    chip = FakeIna219(shunt_ohms=0.1, bus_v=5.08, current_a=0.750)
    bus = FakeBus({0x40: chip})
    mon = Ina219Monitor(bus, 0x40, shunt_ohms=0.1, max_current_a=3.2, averages=128)
    assert (0x40, 0x00, 0x8000) in bus.writes and chip.calibration == 4194  # reset, then programmed
    got = mon.read()
    assert got.voltage_v == pytest.approx(5.08, abs=0.004)
    assert got.current_a == pytest.approx(0.750, abs=0.0005) and got.power_w == pytest.approx(3.81, rel=0.01)


def test_ina219_brown_out_loses_the_calibration_and_the_reading_comes_from_the_shunt_register():
    chip = FakeIna219(bus_v=5.0, current_a=1.2)
    mon = Ina219Monitor(FakeBus({0x40: chip}), 0x40, averages=1)
    chip.brown_out()  # calibration 0: CURRENT and POWER now read 0
    got = mon.read()
    assert got.current_a == pytest.approx(1.2, abs=0.001) and got.power_w == pytest.approx(6.0, rel=0.01)
    assert mon.reprogrammed == 1 and chip.calibration == 4194
    assert mon.read().power_w == pytest.approx(6.0, rel=0.01)  # from the chip's own registers again


def test_ina219_overflow_a_halted_adc_and_a_lost_configuration_are_errors_that_recover():
    chip = FakeIna219(current_a=0.5)
    mon = Ina219Monitor(FakeBus({0x40: chip}), 0x40, max_current_a=3.2, averages=1)
    mon.read()
    chip.current_a = 4.0  # 400 mV across the shunt, over the 320 mV range
    with pytest.raises(OSError, match="OVF.*max_current_a"):
        mon.read()
    chip.current_a = 0.5
    mon.read()
    chip.halted = True  # the last power read cleared CNVR and no conversion sets it again
    with pytest.raises(OSError, match="no conversion"):
        mon.read()
    chip.halted = False
    chip.config, chip.settle_reads = 0x3998, 1  # a glitch wrote power-down mode (MODE 000)
    with pytest.raises(OSError, match="lost its configuration; programmed again"):
        mon.read()
    assert chip.config == 0x399F
    with pytest.raises(OSError, match="no conversion"):  # the first conversion after programming is not done
        mon.read()
    assert mon.read().current_a == pytest.approx(0.5, abs=0.001)


def test_ina219_nack_stuck_bus_and_the_wrong_chip():
    bus = FakeBus({0x40: FakeIna219()})
    mon = Ina219Monitor(bus, 0x40)
    bus.nack_reads = {bus.transactions + 1}
    with pytest.raises(OSError) as err:
        mon.read()
    assert err.value.errno == 121
    mon.read()
    bus.stuck = True  # every register replays its last bytes: CNVR stays set, the values never move
    for _ in range(28):
        mon.read()
    with pytest.raises(OSError, match="same raw values 30 reads in a row"):
        mon.read()
    bus.stuck = False
    bus.chips[0x40].current_a = 0.9  # the load moves, and the readings with it
    mon.read()
    bus.ones_reads = {bus.transactions + 1}  # SDA held high: 0xFFFF
    with pytest.raises(OSError, match="reserved bit set"):
        mon.read()
    with pytest.raises(OSError, match=r"no INA219 answers at I2C address 0x41 \(Remote I/O error\); check "
                                      "power.monitor.ina219.address"):
        Ina219Monitor(FakeBus({}), 0x41)
    with pytest.raises(OSError, match="no INA219 answers at I2C address 0x40"):
        Ina219Monitor(FakeBus({0x40: FakeMax17048()}), 0x40)  # another chip NACKs the write to its register 0
    ina260 = FakeBus({0x40: FakeIna260()})  # an INA260 takes the reset, and reads back its own reset value
    with pytest.raises(OSError, match=r"no INA219 at I2C address 0x40 \(configuration 0x6127 after a reset"):
        Ina219Monitor(ina260, 0x40)


def test_ina260_reads_its_fixed_scale_registers_and_identifies_itself():
    chip = FakeIna260(bus_v=5.12, current_a=1.5)
    bus = FakeBus({0x44: chip})
    mon = Ina260Monitor(bus, 0x44, averages=64)
    assert chip.config == 0x6727  # AVG 64 (011), 1.1 ms conversions, continuous
    got = mon.read()
    assert got.voltage_v == pytest.approx(5.12, abs=1.25e-3)
    assert got.current_a == pytest.approx(1.5, abs=1.25e-3) and got.power_w == pytest.approx(7.68, abs=0.01)
    with pytest.raises(OSError, match=r"no INA260 at I2C address 0x44 \(manufacturer 0x5449, die 0x2280\)"):
        Ina260Monitor(FakeBus({0x44: FakeIna260(die_id=0x2280)}), 0x44)  # a TI part, another die


def test_ina260_brown_out_keeps_measuring_and_is_set_up_again():
    chip = FakeIna260(current_a=0.9)
    mon = Ina260Monitor(FakeBus({0x40: chip}), 0x40)
    chip.brown_out()
    assert mon.read().current_a == pytest.approx(0.9, abs=2.5e-3) and mon.reprogrammed == 1
    assert chip.config == 0x6727
    chip.halted = True  # CVRF was cleared by the last read of mask/enable
    with pytest.raises(OSError, match="no conversion"):
        mon.read()
    chip.halted = False
    chip.current_a, chip.bus_v = 15.0, 36.0  # 540 W: within the power register's 655 W
    assert mon.read().power_w == pytest.approx(540.0, abs=0.1)
    chip.current_a = 20.0  # 720 W: the power calculation overflows
    with pytest.raises(OSError, match="OVF"):
        mon.read()


def test_ina260_garbage_reads():
    bus = FakeBus({0x40: FakeIna260()})
    mon = Ina260Monitor(bus, 0x40)
    bus.ones_reads = {bus.transactions + 1}
    with pytest.raises(OSError, match="reserved bits set"):
        mon.read()
    bus.ones_reads = {bus.transactions + 4}  # the bus voltage word: 81.9 V
    with pytest.raises(OSError, match="over its 36 V range"):
        mon.read()
    assert mon.read().voltage_v == pytest.approx(5.1, abs=1.25e-3)


def test_monitor_kinds_through_the_configuration():
    assert make_monitor(load_config(None).power) is None  # kind none: the default
    cfg = load_config(None).replace(power={"monitor": {"kind": "ina260", "ina260": {"bus": 250}}})
    with pytest.raises(OSError, match="cannot open I2C bus 250 .*power.monitor.kind"):
        make_monitor(cfg.power)
    with pytest.raises(ConfigError, match="power.monitor.ina219.averages"):
        load_config(None).replace(power={"monitor": {"ina219": {"averages": 3}}})
    with pytest.raises(ConfigError, match="power.monitor.ina260.address"):
        load_config(None).replace(power={"monitor": {"ina260": {"address": 0x36}}})
