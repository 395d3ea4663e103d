"""Battery gauges, temperature sensors and power monitors behind one small interface, chosen by kind.

Each kind is one file (``battery_*.py``, ``thermal_*.py``, ``monitor_*.py``) registering its class
and its configuration keys with ``BATTERIES``, ``THERMALS`` or ``MONITORS``; its keys form the
sub-section ``power.battery.<kind>`` / ``power.thermal.<kind>`` / ``power.monitor.<kind>``. A
sensor whose hardware is absent raises ``OSError`` when it is made, and ``read()`` raises
``OSError`` when the sensor stops answering (an unplugged I2C gauge does the same).

Signs follow the kernel's power_supply ABI: a battery's current and power are positive while it
charges and negative while it discharges. A power monitor's are what the board draws (positive).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from firmware_py.registry import KindRegistry

BATTERIES = KindRegistry("battery gauge")
THERMALS = KindRegistry("temperature sensor")
MONITORS = KindRegistry("power monitor")


@dataclass(frozen=True)
class BatteryReading:
    """What a gauge tells; None for what this source cannot."""

    percent: float  # state of charge, 0..100
    charging: bool = False  # on external power (the policy allows the top rung)
    voltage_v: float | None = None
    current_a: float | None = None  # + into the cell (charging), - out of it (discharging)
    power_w: float | None = None  # same sign as current_a

    @property
    def discharge_w(self) -> float | None:
        """Power the cell delivers to the board (W); None while on external power or when unknown."""
        if self.charging:
            return None
        if self.power_w is not None:
            return max(0.0, -self.power_w)
        if self.voltage_v is not None and self.current_a is not None:
            return max(0.0, -self.voltage_v * self.current_a)
        return None


@dataclass(frozen=True)
class PowerReading:
    """A power monitor's measurement of what the board draws (shunt on the supply rail)."""

    voltage_v: float  # bus (supply) voltage
    current_a: float | None
    power_w: float


class Battery(Protocol):
    name: str

    def read(self) -> BatteryReading:
        """The gauge's reading; raises OSError when the gauge cannot be read."""


class Thermal(Protocol):
    name: str

    def read(self) -> float:
        """SoC temperature in degrees Celsius; raises OSError when the sensor cannot be read."""


class Monitor(Protocol):
    name: str

    def read(self) -> PowerReading:
        """The board's supply voltage, current and power; raises OSError when the chip cannot be read."""


def make_battery(power) -> Battery:
    """The battery gauge the typed ``power`` section chooses (``power.battery.kind``)."""
    return BATTERIES.create(power.battery)


def make_thermal(power) -> Thermal:
    """The temperature sensor the typed ``power`` section chooses (``power.thermal.kind``)."""
    return THERMALS.create(power.thermal)


@MONITORS.register("none", doc="no power monitor: the board's power comes from the battery gauge, if it tells")
class NoMonitor:
    name = "none"


def make_monitor(power) -> Monitor | None:
    """The power monitor the typed ``power`` section chooses (``power.monitor.kind``); None for ``none``."""
    return None if power.monitor.kind == "none" else MONITORS.create(power.monitor)
