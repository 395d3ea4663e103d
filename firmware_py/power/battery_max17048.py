"""MAX17048 fuel gauge over I2C (smbus2): state of charge, cell voltage and charge rate.

Register map from the Analog Devices MAX17048/MAX17049 datasheet (19-6171): 16-bit registers sent
most significant byte first, at address 0x36. VCELL (0x02) 78.125 uV per LSB; SOC (0x04) 1/256 %
per LSB; VERSION (0x08) 0x001X; CRATE (0x16) signed, 0.208 %/h per LSB (positive: charging).
A NACK (the gauge is off the bus, or busy) is an ``OSError`` from smbus2, like any I2C error.
"""
from __future__ import annotations

from firmware_py.registry import Key
from firmware_py.power.i2c import open_bus
from firmware_py.power.sensors import BATTERIES, BatteryReading

ADDRESS = 0x36
VCELL, SOC, VERSION, CRATE = 0x02, 0x04, 0x08, 0x16


def read_register(bus, address: int, register: int) -> int:
    """One big-endian 16-bit register (SMBus word reads are little-endian, so read two bytes)."""
    msb, lsb = bus.read_i2c_block_data(address, register, 2)
    return msb << 8 | lsb


@BATTERIES.register("max17048", doc="a MAX17048 fuel gauge on I2C (smbus2)", keys={
    "bus": Key("int", 1, "I2C bus number (`/dev/i2c-N`; 1 on a Pi's header).", min=0, max=255),
    "address": Key("int", ADDRESS, "7-bit I2C address.", min=0x03, max=0x77),
})
class Max17048Battery:
    def __init__(self, bus, address: int = ADDRESS):
        self._bus, self._address = bus, address
        version = read_register(bus, address, VERSION)
        if version & 0xFFF0 != 0x0010:
            raise OSError(19, f"no MAX17048 at I2C address {address:#04x} (version register {version:#06x}); "
                              "check power.battery.max17048.address or set power.battery.kind")
        self.name = f"max17048@{address:#04x}"

    @classmethod
    def from_config(cls, section) -> "Max17048Battery":
        return cls(open_bus(section.bus, "power.battery.kind"), section.address)

    def read(self) -> BatteryReading:
        soc = read_register(self._bus, self._address, SOC) / 256.0
        crate = read_register(self._bus, self._address, CRATE)
        volts = read_register(self._bus, self._address, VCELL) * 78.125e-6
        if soc > 105.0:  # a full cell reads a little over 100 % while the model learns; 0xFFFF is a bad read
            raise OSError(5, f"{self.name} reported {soc:.0f} % charge (a bad read)")
        # The gauge measures no current (CRATE is %/h, and the cell's capacity is not known to it).
        charging = (crate - 0x10000 if crate & 0x8000 else crate) > 0
        return BatteryReading(min(soc, 100.0), charging, volts)
