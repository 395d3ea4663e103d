"""Mock temperature sensor: reports a fixed temperature (tests change ``celsius``)."""
from __future__ import annotations

from firmware_py.registry import Key
from firmware_py.power.sensors import THERMALS


@THERMALS.register("mock", doc="a sensor reporting a fixed temperature", keys={
    "temperature_c": Key("float", 45.0, "Temperature reported.", min=-40, max=150),
})
class MockThermal:
    name = "mock"

    def __init__(self, celsius: float):
        self.celsius = float(celsius)

    @classmethod
    def from_config(cls, section) -> "MockThermal":
        return cls(section.temperature_c)

    def read(self) -> float:
        return self.celsius
