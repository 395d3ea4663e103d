"""INA260 current/power monitor with its 2 mOhm shunt inside, over I2C (smbus2).

Register map from the TI datasheet (SBOSA69): 16-bit registers, most significant byte first.
CONFIG 0x00 (reset 0x6127: continuous, 1.1 ms conversions, no averaging); CURRENT 0x01 signed,
1.25 mA/LSB; BUS 0x02 1.25 mV/LSB; POWER 0x03 10 mW/LSB; MASK/ENABLE 0x06: bit 3 CVRF (a
conversion finished; reading this register clears it), bit 2 OVF (the power calculation
overflowed), bits 9-5 read 0; MANUFACTURER ID 0xFE = 0x5449 ("TI"); DIE ID 0xFF = 0x2270 (device
0x227, revision 0). A brown-out puts CONFIG back to its reset value, so averaging is lost but the
readings stay valid; the driver checks it on every read and programs it again.
"""
from __future__ import annotations

import logging

from firmware_py.registry import Key
from firmware_py.power.i2c import StuckGuard, open_bus, read_word, signed, write_word
from firmware_py.power.sensors import MONITORS, PowerReading

log = logging.getLogger(__name__)

CONFIG, CURRENT, BUS, POWER, MASK_ENABLE, MANUFACTURER_ID, DIE_ID = 0x00, 0x01, 0x02, 0x03, 0x06, 0xFE, 0xFF
TI, DEVICE = 0x5449, 0x227
CVRF, OVF, MASK_RESERVED = 0x8, 0x4, 0x03E0
AVG_CODE = {1: 0, 4: 1, 16: 2, 64: 3, 128: 4, 256: 5, 512: 6, 1024: 7}
MAX_BUS_V = 36.0  # the datasheet's common-mode range: a higher reading is a bad read


@MONITORS.register("ina260", doc="a TI INA260 (shunt inside, +-15 A) on I2C (smbus2)", keys={
    "bus": Key("int", 1, "I2C bus number (`/dev/i2c-N`; 1 on a Pi's header).", min=0, max=255),
    "address": Key("int", 0x40, "7-bit I2C address (0x40-0x4F, set by A0/A1).", min=0x40, max=0x4F),
    "averages": Key("int", 64, "Samples averaged per conversion (each 1.1 ms for current and voltage).",
                    extra={"allowed": tuple(AVG_CODE)}),
})
class Ina260Monitor:
    def __init__(self, bus, address: int = 0x40, *, averages: int = 64):
        self._bus, self._address = bus, address
        self.name = f"ina260@{address:#04x}"
        fix = "check power.monitor.ina260.address or set power.monitor.kind"
        try:
            maker, die = read_word(bus, address, MANUFACTURER_ID), read_word(bus, address, DIE_ID)
        except OSError as exc:
            raise OSError(exc.errno, f"no INA260 answers at I2C address {address:#04x} ({exc.strerror}); {fix}") \
                from None
        if maker != TI or die >> 4 != DEVICE:
            raise OSError(19, f"no INA260 at I2C address {address:#04x} (manufacturer {maker:#06x}, die "
                              f"{die:#06x}); {fix}")
        self._config = 0x6000 | AVG_CODE[averages] << 9 | 0b100 << 6 | 0b100 << 3 | 0b111
        write_word(bus, address, CONFIG, self._config)
        self.reprogrammed = 0
        self._stuck = StuckGuard(self.name)

    @classmethod
    def from_config(cls, section) -> "Ina260Monitor":
        return cls(open_bus(section.bus, "power.monitor.kind"), section.address, averages=section.averages)

    def read(self) -> PowerReading:
        flags = read_word(self._bus, self._address, MASK_ENABLE)
        if flags & MASK_RESERVED:
            raise OSError(5, f"{self.name} mask/enable register {flags:#06x} has reserved bits set (a bad read)")
        if read_word(self._bus, self._address, CONFIG) != self._config:
            self.reprogrammed += 1
            log.warning("%s lost its configuration (a brown-out resets it); programmed again", self.name)
            write_word(self._bus, self._address, CONFIG, self._config)
        if not flags & CVRF:
            raise OSError(11, f"{self.name} finished no conversion since the last read (ADC stopped?)")
        if flags & OVF:
            raise OSError(34, f"{self.name} power calculation overflowed (OVF)")
        current = signed(read_word(self._bus, self._address, CURRENT))
        bus_reg = read_word(self._bus, self._address, BUS)
        volts = bus_reg * 1.25e-3
        if volts > MAX_BUS_V:
            raise OSError(5, f"{self.name} reported {volts:.1f} V on the bus, over its 36 V range (a bad read)")
        self._stuck.check((current, bus_reg))
        return PowerReading(volts, current * 1.25e-3, read_word(self._bus, self._address, POWER) * 10e-3)
