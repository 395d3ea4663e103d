"""psutil's battery reading (laptops and boards whose gauge psutil knows)."""
from __future__ import annotations

from firmware_py.power.sensors import BATTERIES


@BATTERIES.register("psutil", doc="the battery psutil reports (needs the psutil package)")
class PsutilBattery:
    name = "psutil"

    def __init__(self):
        import psutil  # optional dependency: only this kind needs it

        self._psutil = psutil
        if psutil.sensors_battery() is None:
            raise OSError(2, "psutil finds no battery on this machine; set power.battery.kind: mock or sysfs")

    def read(self) -> float:
        info = self._psutil.sensors_battery()
        if info is None:
            raise OSError(5, "battery disappeared")
        return float(info.percent)
