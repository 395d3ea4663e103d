"""psutil's temperature sensors: the SoC's, picked by name (``cpu_thermal`` on a Pi, ``coretemp`` on Intel)."""
from __future__ import annotations

from firmware_py.registry import Key
from firmware_py.power.sensors import THERMALS
from firmware_py.power.thermal_sysfs import plausible


@THERMALS.register("psutil", doc="a temperature psutil reports (sensors_temperatures), picked by name", keys={
    "label": Key("str", "cpu_thermal", "Which sensor: a psutil group (`cpu_thermal` on a Pi, `coretemp`, "
                 "`k10temp`; its first entry) or an entry's label (`Package id 0`, `Tctl`)."),
})
class PsutilThermal:
    def __init__(self, label: str, psutil=None):
        if psutil is None:
            import psutil  # a runtime dependency; tests pass a stand-in module

        self._psutil, self.label = psutil, label
        self.name = f"psutil:{label}"
        self._pick(self._sensors())  # absent now: say what there is

    @classmethod
    def from_config(cls, section) -> "PsutilThermal":
        return cls(section.label)

    def _sensors(self) -> dict:
        read = getattr(self._psutil, "sensors_temperatures", None)
        if read is None:
            raise OSError(2, "psutil reads no temperatures on this platform; set power.thermal.kind: sysfs or mock")
        return read() or {}

    def _pick(self, groups: dict) -> float:
        if groups.get(self.label):
            return groups[self.label][0].current
        for entries in groups.values():
            for entry in entries:
                if entry.label == self.label:
                    return entry.current
        names = sorted(set(groups) | {e.label for es in groups.values() for e in es if e.label})
        raise OSError(2, f"psutil has no temperature {self.label!r} (it has: {', '.join(names) or 'none'}); "
                         "set power.thermal.psutil.label")

    def read(self) -> float:
        return plausible(float(self._pick(self._sensors())), self.name)
