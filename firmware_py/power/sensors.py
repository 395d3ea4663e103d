"""Battery gauges and temperature sensors behind one small interface, chosen by kind.

Each kind is one file (``battery_*.py``, ``thermal_*.py``) registering its class and its
configuration keys with ``BATTERIES`` or ``THERMALS``; its keys form the sub-section
``power.battery.<kind>`` / ``power.thermal.<kind>``. A sensor whose hardware is absent raises
``OSError`` when it is made, and ``read()`` raises ``OSError`` when the gauge stops answering
(an unplugged I2C gauge does the same).
"""
from __future__ import annotations

from typing import Protocol

from firmware_py.registry import KindRegistry

BATTERIES = KindRegistry("battery gauge")
THERMALS = KindRegistry("temperature sensor")


class Battery(Protocol):
    name: str

    def read(self) -> float:
        """State of charge in percent; raises OSError when the gauge cannot be read."""


class Thermal(Protocol):
    name: str

    def read(self) -> float:
        """SoC temperature in degrees Celsius; raises OSError when the sensor cannot be read."""


def make_battery(power) -> Battery:
    """The battery gauge the typed ``power`` section chooses (``power.battery.kind``)."""
    return BATTERIES.create(power.battery)


def make_thermal(power) -> Thermal:
    """The temperature sensor the typed ``power`` section chooses (``power.thermal.kind``)."""
    return THERMALS.create(power.thermal)
