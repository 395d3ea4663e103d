"""What the I2C sensor kinds share: opening a bus (smbus2) and the chips' 16-bit big-endian registers.

The TI and Maxim chips send a register's most significant byte first; an SMBus word transfer puts
the first byte in the low half, so a word read or written through smbus2 is byte-swapped.
"""
from __future__ import annotations


def open_bus(number: int, kind_key: str):
    """``smbus2.SMBus(number)``, or an OSError naming the fix (``kind_key``: the kind group's key)."""
    from smbus2 import SMBus  # the device's dependency; tests pass a fake bus

    try:
        return SMBus(number)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot open I2C bus {number} ({exc.strerror}); enable I2C "
                                 f"(raspi-config) or set {kind_key}") from None


def read_word(bus, address: int, register: int) -> int:
    value = bus.read_word_data(address, register)
    return (value & 0xFF) << 8 | value >> 8


def write_word(bus, address: int, register: int, value: int) -> None:
    bus.write_word_data(address, register, (value & 0xFF) << 8 | (value >> 8 & 0xFF))


def signed(value: int) -> int:
    return value - 0x10000 if value & 0x8000 else value


class StuckGuard:
    """A chip whose raw values repeat exactly read after read is not measuring (a wedged bus, a mux
    replaying stale bytes): an ADC's last bits always move. After ``limit`` identical reads in a
    row every read fails until the values move again."""

    def __init__(self, name: str, limit: int = 30):
        self.name, self.limit = name, limit
        self._last, self._repeats = None, 0

    def check(self, raw: tuple) -> None:
        self._repeats = self._repeats + 1 if raw == self._last else 0
        self._last = raw
        if self._repeats >= self.limit - 1:
            raise OSError(5, f"{self.name} returned the same raw values {self._repeats + 1} reads in a row "
                             "(stuck bus or chip)")
