"""Linux thermal class: a thermal zone's ``temp`` file, in millidegrees Celsius."""
from __future__ import annotations

import os

from firmware_py.registry import Key
from firmware_py.power.sensors import THERMALS


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
        with open(self._path) as fh:
            return int(fh.read().strip()) / 1000.0
