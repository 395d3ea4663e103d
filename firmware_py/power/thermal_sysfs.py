"""Linux thermal class: a thermal zone's ``temp`` file, in millidegrees Celsius."""
from __future__ import annotations

import os

from firmware_py.registry import Key
from firmware_py.power.sensors import THERMALS

# A reading outside this is a failed sensor, not a temperature (drivers report e.g. -273000 or
# 0x7fffffff when the ADC read fails).
PLAUSIBLE_C = (-40.0, 150.0)


def plausible(celsius: float, name: str) -> float:
    if not PLAUSIBLE_C[0] <= celsius <= PLAUSIBLE_C[1]:
        raise OSError(5, f"{name} reported {celsius:g} C (a failed read)")
    return celsius


@THERMALS.register("sysfs", doc="a Linux thermal zone (the SoC's on a Pi)", keys={
    "zone": Key("str", "/sys/class/thermal/thermal_zone0", "Folder of the thermal zone (holds `temp`)."),
})
class SysfsThermal:
    def __init__(self, zone: str):
        self._path = os.path.join(zone, "temp")
        if not os.path.exists(self._path):
            raise OSError(2, f"no thermal zone at {zone}; set power.thermal.kind: mock")
        self.name = f"sysfs:{os.path.basename(zone)}"

    @classmethod
    def from_config(cls, section) -> "SysfsThermal":
        return cls(section.zone)

    def read(self) -> float:
        with open(self._path) as fh:  # a vanished zone (driver unbound) is an OSError here
            text = fh.read().strip()
        try:
            millis = int(text)
        except ValueError:
            raise OSError(5, f"{self.name} temp reads {text[:20]!r}, not a number") from None
        return plausible(millis / 1000.0, self.name)
