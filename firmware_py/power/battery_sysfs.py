"""Linux power-supply class: what a Pi with a fuel-gauge HAT or a USB-C PD battery exposes."""
from __future__ import annotations

import glob
import os

from firmware_py.registry import Key
from firmware_py.power.sensors import BATTERIES


@BATTERIES.register("sysfs", doc="the first power supply of type Battery in sysfs (a fuel-gauge HAT, a USB-C PD "
                    "battery)", keys={"root": Key("str", "/sys/class/power_supply", "Folder of the power-supply class.")})
class SysfsBattery:
    def __init__(self, root: str):
        for supply in sorted(glob.glob(os.path.join(root, "*"))):
            try:
                with open(os.path.join(supply, "type")) as fh:
                    if fh.read().strip() == "Battery":
                        self._path = os.path.join(supply, "capacity")
                        self.name = f"sysfs:{os.path.basename(supply)}"
                        return
            except OSError:
                continue
        raise OSError(2, f"no battery under {root}; set power.battery.kind: mock or psutil")

    @classmethod
    def from_config(cls, section) -> "SysfsBattery":
        return cls(section.root)

    def read(self) -> float:
        with open(self._path) as fh:
            return float(fh.read().strip())
