"""psutil's battery reading (laptops and boards whose gauge psutil knows): charge and mains power."""
from __future__ import annotations

from firmware_py.power.sensors import BATTERIES, BatteryReading


@BATTERIES.register("psutil", doc="the battery psutil reports (charge, and whether mains power is plugged)")
class PsutilBattery:
    name = "psutil"

    def __init__(self, psutil=None):
        if psutil is None:
            import psutil  # a runtime dependency; tests pass a stand-in module

        self._psutil = psutil
        if psutil.sensors_battery() is None:
            raise OSError(2, "psutil finds no battery on this machine; set power.battery.kind: mock or sysfs")

    def read(self) -> BatteryReading:
        info = self._psutil.sensors_battery()
        if info is None:
            raise OSError(5, "psutil: the battery disappeared")
        pct = float(info.percent)
        if not 0.0 <= pct <= 100.0:
            raise OSError(5, f"psutil reported {pct:g} % charge (a bad read)")
        # power_plugged is None when the platform cannot tell: count that as on battery.
        return BatteryReading(pct, charging=bool(info.power_plugged))
