"""smbus2-compatible fake I2C buses holding chips that behave like their datasheets, failures included.

``FakeBus`` has the SMBus calls the drivers use (``read_word_data``, ``write_word_data``,
``read_i2c_block_data``, ``write_i2c_block_data``, ``close``) and routes them to the chips at
their addresses. Registers are 16 bits, sent most significant byte first on the wire; an SMBus
word transfer puts the first byte in the low half, so ``read_word_data`` returns the register
byte-swapped, as on a real bus. An address with no chip, or a read the test marks, NACKs with
``OSError(121)``, what the kernel's i2c-dev returns.

Chips: MAX17048 (fuel gauge), INA219 (shunt monitor with a calibration register) and INA260
(integrated shunt). Their physical inputs (charge, bus voltage, current) are plain attributes.
"""
from __future__ import annotations

import math
import random


def swap16(value: int) -> int:
    return (value & 0xFF) << 8 | value >> 8


def signed16(value: float) -> int:
    """A value as a 16-bit two's-complement register, saturated like the chips' ADCs."""
    return int(max(-32768, min(32767, value))) & 0xFFFF


class Chip:
    """Registers by address; subclasses compute the measurement registers from their inputs."""

    def read(self, register: int) -> int:
        raise NotImplementedError

    def write(self, register: int, value: int) -> None:
        raise OSError(121, "Remote I/O error")  # a read-only register NACKs its data byte


class FakeBus:
    """smbus2.SMBus over fake chips. Faults: ``nack_reads`` (transaction numbers, from 1, that NACK),
    ``ones_reads`` (transactions that read 0xFF bytes: the bus held high), ``stuck`` (every read
    returns what that register returned last: a wedged bus or mux replaying stale bytes)."""

    def __init__(self, chips: dict[int, Chip] | None = None):
        self.chips = dict(chips or {})
        self.nack_reads: set[int] = set()
        self.ones_reads: set[int] = set()
        self.stuck = False
        self.transactions = 0
        self.writes: list[tuple[int, int, int]] = []  # (address, register, value) the driver wrote
        self._last: dict[tuple[int, int], int] = {}
        self.closed = False

    def _chip(self, address: int) -> Chip:
        self.transactions += 1
        chip = self.chips.get(address)
        if chip is None or self.transactions in self.nack_reads:
            raise OSError(121, "Remote I/O error")
        return chip

    def _read(self, address: int, register: int) -> int:
        chip = self._chip(address)
        if self.transactions in self.ones_reads:
            return 0xFFFF
        if self.stuck and (address, register) in self._last:
            return self._last[(address, register)]
        value = chip.read(register) & 0xFFFF
        self._last[(address, register)] = value
        return value

    # -- the smbus2.SMBus calls --------------------------------------------------------------
    def read_word_data(self, i2c_addr, register, force=None):
        return swap16(self._read(i2c_addr, register))

    def write_word_data(self, i2c_addr, register, value, force=None):
        chip = self._chip(i2c_addr)
        value = swap16(value)  # the low byte goes first on the wire: the chip's MSB
        self.writes.append((i2c_addr, register, value))
        chip.write(register, value)

    def read_i2c_block_data(self, i2c_addr, register, length, force=None):
        value = self._read(i2c_addr, register)
        return [value >> 8, value & 0xFF][:length]

    def write_i2c_block_data(self, i2c_addr, register, data, force=None):
        chip = self._chip(i2c_addr)
        value = data[0] << 8 | data[1]
        self.writes.append((i2c_addr, register, value))
        chip.write(register, value)

    def close(self):
        self.closed = True


class FakeMax17048(Chip):
    """MAX17048 (19-6171): VCELL 0x02 78.125 uV/LSB, SOC 0x04 1/256 %, VERSION 0x08, CRATE 0x16 0.208 %/h."""

    def __init__(self, soc_percent=80.0, cell_v=3.9, crate_pct_h=-5.0, version=0x0012):
        self.soc, self.cell_v, self.crate, self.version = soc_percent, cell_v, crate_pct_h, version

    def read(self, register):
        crate = round(self.crate / 0.208) & 0xFFFF
        return {0x02: round(self.cell_v / 78.125e-6), 0x04: round(self.soc * 256), 0x08: self.version,
                0x0C: 0x971C, 0x16: crate, 0x18: 0x9600, 0x1A: 0x0100}.get(register, 0)


class FakeIna219(Chip):
    """INA219 (SBOS448): config 0x00 (reset 0x399F), shunt 0x01 (10 uV/LSB, signed), bus 0x02 (bits 15-3
    at 4 mV/LSB, bit 1 CNVR, bit 0 OVF), power 0x03, current 0x04, calibration 0x05 (0 at power-on).

    Current = shunt x calibration / 4096 and power = current x bus / 5000 are computed at the end of
    each conversion, so with calibration 0 (after power-on or a brown-out) both read 0. Reading the
    power register clears CNVR; a conversion sets it again unless the chip is powered down (MODE 0)
    or ``halted`` (its ADC stopped). ``settle_reads``: reads after a configuration write that still
    see no finished conversion (the first takes up to 68 ms at 128-sample averaging)."""

    RESET_CONFIG = 0x399F
    PGA_LIMIT_V = (0.04, 0.08, 0.16, 0.32)  # shunt range by the PG bits

    def __init__(self, shunt_ohms=0.1, bus_v=5.1, current_a=0.8, noise_lsb=1, seed=0):
        self.shunt_ohms, self.bus_v, self.current_a = shunt_ohms, bus_v, current_a
        self.noise_lsb, self._rng = noise_lsb, random.Random(seed)  # an ADC's last bits always move
        self.halted = False
        self.settle_reads = 0
        self._settle = 0
        self.brown_out()

    def brown_out(self):
        """Power dropped below the POR threshold: every register back to its reset value."""
        self.config, self.calibration = self.RESET_CONFIG, 0
        self.cnvr, self.ovf = False, False
        self._latched = (0, 0, 0, 0)  # shunt, bus, current, power of the last conversion

    def _convert(self):
        if self.halted or self.config & 0x7 == 0 or self._settle > 0:
            self._settle = max(0, self._settle - 1)
            return
        pga = self.PGA_LIMIT_V[self.config >> 11 & 0x3]
        brng = 32.0 if self.config >> 13 & 1 else 16.0
        vshunt = self.current_a * self.shunt_ohms
        shunt = round(max(-pga, min(pga, vshunt)) / 10e-6) + self._rng.randint(-self.noise_lsb, self.noise_lsb)
        bus = round(max(0.0, min(brng, self.bus_v)) / 0.004)
        current = math.trunc(shunt * self.calibration / 4096)
        power = math.trunc(abs(current) * bus / 5000)
        self.ovf = abs(vshunt) > pga or not -32768 <= current <= 32767 or power > 0xFFFF
        self._latched = (shunt, bus, current, power)
        self.cnvr = True

    def read(self, register):
        if register in (0x01, 0x02):  # a conversion has finished since the host's last look
            self._convert()
        shunt, bus, current, power = self._latched
        if register == 0x00:
            return self.config
        if register == 0x01:
            return signed16(shunt)
        if register == 0x02:
            return (bus & 0x1FFF) << 3 | self.cnvr << 1 | self.ovf
        if register == 0x03:
            self.cnvr = False
            return min(power, 0xFFFF)
        if register == 0x04:
            return signed16(current)
        if register == 0x05:
            return self.calibration
        raise OSError(121, "Remote I/O error")  # no such register

    def write(self, register, value):
        if register == 0x00:
            if value & 0x8000:  # RST
                self.brown_out()
                return
            self.config, self.cnvr, self._settle = value, False, self.settle_reads
        elif register == 0x05:
            self.calibration = value & 0xFFFE  # bit 0 is not implemented, reads 0
        else:
            super().write(register, value)


class FakeIna260(Chip):
    """INA260 (SBOSA69): config 0x00 (reset 0x6127), current 0x01 (1.25 mA/LSB, signed), bus 0x02
    (1.25 mV/LSB), power 0x03 (10 mW/LSB), mask/enable 0x06 (bit 3 CVRF, cleared by reading it;
    bit 2 OVF), manufacturer ID 0xFE = 0x5449, die ID 0xFF = 0x2270. The shunt is inside: +-15 A."""

    RESET_CONFIG = 0x6127

    def __init__(self, bus_v=5.1, current_a=0.8, die_id=0x2270, noise_lsb=1, seed=0):
        self.bus_v, self.current_a, self.die_id = bus_v, current_a, die_id
        self.noise_lsb, self._rng = noise_lsb, random.Random(seed)
        self.halted = False
        self.brown_out()

    def brown_out(self):
        self.config, self.cvrf, self.ovf = self.RESET_CONFIG, False, False
        self._latched = (0, 0, 0)

    def _convert(self):
        if self.halted or self.config & 0x7 == 0:
            return
        current = round(self.current_a / 1.25e-3) + self._rng.randint(-self.noise_lsb, self.noise_lsb)
        bus = round(max(0.0, min(36.0, self.bus_v)) / 1.25e-3)
        power = round(abs(self.current_a) * self.bus_v / 10e-3)
        self.ovf = not -32768 <= current <= 32767 or power > 0xFFFF
        self._latched = (current, bus, min(power, 0xFFFF))
        self.cvrf = True

    def read(self, register):
        if register == 0x06:
            self._convert()  # a conversion has finished since the host's last look
            flags = self.cvrf << 3 | self.ovf << 2
            self.cvrf = False
            return flags
        current, bus, power = self._latched
        values = {0x00: self.config, 0x01: signed16(current), 0x02: bus, 0x03: power, 0x07: 0,
                  0xFE: 0x5449, 0xFF: self.die_id}
        if register not in values:
            raise OSError(121, "Remote I/O error")
        return values[register]

    def write(self, register, value):
        if register == 0x00:
            if value & 0x8000:
                self.brown_out()
                return
            self.config, self.cvrf = value, False
        elif register in (0x06, 0x07):
            pass  # alert configuration: not used by the driver
        else:
            super().write(register, value)
