"""INA219 current/power monitor over I2C (smbus2): the board's measured supply power on a rig.

Register map from the TI datasheet (SBOS448): 16-bit registers, most significant byte first.
CONFIG 0x00 (reset 0x399F: 32 V range, PGA /8, 12-bit, continuous); SHUNT 0x01 signed, 10 uV/LSB
whatever the PGA; BUS 0x02: bits 15-3 the voltage at 4 mV/LSB, bit 1 CNVR (a conversion finished;
cleared by reading POWER), bit 0 OVF (the current or power calculation overflowed), bit 2 reads 0;
POWER 0x03 at 20 x Current_LSB; CURRENT 0x04 signed; CALIBRATION 0x05 = trunc(0.04096 /
(Current_LSB x R_shunt)), bit 0 not implemented. The chip has no ID register: after a reset its
configuration reads 0x399F. Calibration is 0 after power-on, so a brown-out that resets the chip
makes CURRENT and POWER read 0: the driver notices the calibration is gone, takes this reading from
the shunt register (which needs none) and programs the chip again.
"""
from __future__ import annotations

import logging

from firmware_py.errors import ConfigError
from firmware_py.registry import Key
from firmware_py.power.i2c import StuckGuard, open_bus, read_word, signed, write_word
from firmware_py.power.sensors import MONITORS, PowerReading

log = logging.getLogger(__name__)

CONFIG, SHUNT, BUS, POWER, CURRENT, CALIBRATION = range(6)
RESET_CONFIG = 0x399F
CNVR, OVF, BUS_RESERVED = 0x2, 0x1, 0x4
PGA_LIMIT_V = (0.04, 0.08, 0.16, 0.32)
ADC_CODE = {1: 0b0011, 2: 0b1001, 4: 0b1010, 8: 0b1011, 16: 0b1100, 32: 0b1101, 64: 0b1110, 128: 0b1111}


def _gain(shunt_ohms: float, max_current_a: float) -> int | None:
    vmax = max_current_a * shunt_ohms
    return next((i for i, limit in enumerate(PGA_LIMIT_V) if vmax <= limit * (1 + 1e-9)), None)


def range_problem(shunt_ohms: float, max_current_a: float) -> str | None:
    """Why the shunt and the expected current do not fit the chip (checked when the configuration loads)."""
    if _gain(shunt_ohms, max_current_a) is None:
        return (f"power.monitor.ina219: {max_current_a:g} A through {shunt_ohms:g} ohm is "
                f"{max_current_a * shunt_ohms * 1000:.0f} mV, over the INA219's 320 mV; lower "
                "power.monitor.ina219.max_current_a or fit a smaller shunt")
    return None


def settings(shunt_ohms: float, max_current_a: float, averages: int) -> tuple[int, int, float]:
    """(config, calibration, Current_LSB in A) for the expected current range, per the datasheet's 8.5.1."""
    problem = range_problem(shunt_ohms, max_current_a)
    if problem:
        raise ConfigError(problem)
    pga = _gain(shunt_ohms, max_current_a)
    calibration = min(0xFFFE, int(0.04096 / (max_current_a / 32768 * shunt_ohms))) & 0xFFFE
    current_lsb = 0.04096 / (calibration * shunt_ohms)  # what the rounded calibration really gives
    adc = ADC_CODE[averages]
    return 1 << 13 | pga << 11 | adc << 7 | adc << 3 | 0b111, calibration, current_lsb


@MONITORS.register("ina219", doc="a TI INA219 with an external shunt on I2C (smbus2)", keys={
    "bus": Key("int", 1, "I2C bus number (`/dev/i2c-N`; 1 on a Pi's header).", min=0, max=255),
    "address": Key("int", 0x40, "7-bit I2C address (0x40-0x4F, set by A0/A1).", min=0x40, max=0x4F),
    "shunt_ohms": Key("float", 0.1, "The shunt resistor (0.1 ohm on the common breakout boards).",
                      min=0.0001, max=10),
    "max_current_a": Key("float", 3.2, "Largest current expected; sets the gain and the calibration.",
                         min=0.001, max=100),
    "averages": Key("int", 128, "Samples averaged per conversion (1: one 12-bit sample, 532 us; 128: 68 ms).",
                    extra={"allowed": tuple(ADC_CODE)}),
})
class Ina219Monitor:
    def __init__(self, bus, address: int = 0x40, *, shunt_ohms: float = 0.1, max_current_a: float = 3.2,
                 averages: int = 128):
        self._bus, self._address, self.shunt_ohms = bus, address, shunt_ohms
        self._config, self._calibration, self._current_lsb = settings(shunt_ohms, max_current_a, averages)
        self.name = f"ina219@{address:#04x}"
        fix = "check power.monitor.ina219.address or set power.monitor.kind"
        try:
            write_word(bus, address, CONFIG, 0x8000)  # reset, so the configuration identifies the chip
            found = read_word(bus, address, CONFIG)
        except OSError as exc:
            raise OSError(exc.errno, f"no INA219 answers at I2C address {address:#04x} ({exc.strerror}); {fix}") \
                from None
        if found != RESET_CONFIG:
            raise OSError(19, f"no INA219 at I2C address {address:#04x} (configuration {found:#06x} after a "
                              f"reset, not 0x399f); {fix}")
        self._program()
        self.reprogrammed = 0  # times the chip lost its settings (brown-out) and was set up again
        self._stuck = StuckGuard(self.name)

    @classmethod
    def from_config(cls, section) -> "Ina219Monitor":
        return cls(open_bus(section.bus, "power.monitor.kind"), section.address, shunt_ohms=section.shunt_ohms,
                   max_current_a=section.max_current_a, averages=section.averages)

    def _program(self) -> None:
        write_word(self._bus, self._address, CONFIG, self._config)
        write_word(self._bus, self._address, CALIBRATION, self._calibration)

    def _lost(self, what: str) -> None:
        self.reprogrammed += 1
        log.warning("%s lost its %s (a brown-out resets it); programmed again", self.name, what)
        self._program()

    def read(self) -> PowerReading:
        bus_reg = read_word(self._bus, self._address, BUS)
        if bus_reg & BUS_RESERVED:
            raise OSError(5, f"{self.name} bus voltage register {bus_reg:#06x} has its reserved bit set (a bad read)")
        if not bus_reg & CNVR:
            if read_word(self._bus, self._address, CONFIG) != self._config:
                self._lost("configuration")
                raise OSError(11, f"{self.name} had lost its configuration; programmed again, next reading valid")
            raise OSError(11, f"{self.name} finished no conversion since the last read (ADC stopped?)")
        if bus_reg & OVF:
            raise OSError(34, f"{self.name} current over its range (OVF); raise power.monitor.ina219.max_current_a")
        volts = (bus_reg >> 3) * 0.004
        if read_word(self._bus, self._address, CALIBRATION) != self._calibration:
            shunt = signed(read_word(self._bus, self._address, SHUNT))  # 10 uV/LSB, no calibration needed
            amps = shunt * 10e-6 / self.shunt_ohms
            self._lost("calibration")
            self._stuck.check((bus_reg, shunt))
            return PowerReading(volts, amps, abs(amps) * volts)
        current = signed(read_word(self._bus, self._address, CURRENT))
        power = read_word(self._bus, self._address, POWER)  # last: it clears CNVR
        self._stuck.check((bus_reg, current))
        return PowerReading(volts, current * self._current_lsb, power * 20 * self._current_lsb)
