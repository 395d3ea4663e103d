"""Linux power-supply class: what a Pi with a fuel-gauge HAT, a USB-C PD battery or a laptop exposes.

Attributes (Documentation/ABI/testing/sysfs-class-power): ``capacity`` (percent; without it
``energy_now/energy_full`` or ``charge_now/charge_full``), ``status`` (Charging, Discharging,
Full, Not charging, Unknown), ``voltage_now`` (uV), ``current_now`` (uA) and ``power_now`` (uW).
The ABI says current is negative while discharging, but many drivers (ACPI among them) report
its magnitude only, so the sign is taken from ``status`` when it says which way charge flows.
A driver that cannot read its chip fails the read (EIO, ENODATA) or leaves the file out; an
attribute other than the charge that cannot be read is unknown (None), not an error.
"""
from __future__ import annotations

import os

from firmware_py.registry import Key
from firmware_py.power.sensors import BATTERIES, BatteryReading

# Statuses that mean external power is present: the policy's "charging" (top rung allowed).
ON_EXTERNAL_POWER = {"Charging", "Full", "Not charging"}


def _text(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:  # vanished, or the driver failed this read (EIO, ENODATA, EINVAL)
        return None


def _micro(path: str) -> float | None:
    text = _text(path)
    try:
        return int(text) / 1e6 if text is not None else None
    except ValueError:  # garbage: unknown, as when the file is missing
        return None


def find_battery(root: str, supply: str = "") -> str:
    """The folder of supply ``supply``, or the first system battery (``type`` Battery, not a
    peripheral's ``scope`` Device such as a wireless mouse) under ``root``."""
    if supply:
        path = os.path.join(root, supply)
        if _text(os.path.join(path, "type")) != "Battery":
            raise OSError(2, f"no battery {supply!r} under {root}; fix power.battery.sysfs.supply (ls {root})")
        return path
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, name)
        if _text(os.path.join(path, "type")) == "Battery" and _text(os.path.join(path, "scope")) != "Device":
            return path
    raise OSError(2, f"no battery under {root}; set power.battery.kind: mock or psutil")


@BATTERIES.register("sysfs", doc="a Linux power supply of type Battery in sysfs (a fuel-gauge HAT, a USB-C PD "
                    "battery)", keys={
    "root": Key("str", "/sys/class/power_supply", "Folder of the power-supply class."),
    "supply": Key("str", "", "The supply's folder name (e.g. `BAT0`); empty: the first of type Battery that "
                  "is not a peripheral's."),
})
class SysfsBattery:
    def __init__(self, root: str, supply: str = ""):
        self._root, self._supply = root, supply
        self._path = find_battery(root, supply)
        self.name = f"sysfs:{os.path.basename(self._path)}"

    @classmethod
    def from_config(cls, section) -> "SysfsBattery":
        return cls(section.root, section.supply)

    def _percent(self) -> float:
        text = _text(os.path.join(self._path, "capacity"))
        if text is None:
            for now, full in (("energy_now", "energy_full"), ("charge_now", "charge_full")):
                a, b = _micro(os.path.join(self._path, now)), _micro(os.path.join(self._path, full))
                if a is not None and b:
                    return min(100.0, max(0.0, 100.0 * a / b))
            if not os.path.isdir(self._path):
                raise OSError(19, f"{self.name} is gone (driver unbound or battery removed)")
            raise OSError(5, f"{self.name} gives no capacity (nor energy_now/charge_now)")
        try:
            pct = float(text)
        except ValueError:
            raise OSError(5, f"{self.name} capacity reads {text[:20]!r}, not a number") from None
        if not 0.0 <= pct <= 100.0:
            raise OSError(5, f"{self.name} reported {pct:g} % charge (a bad read)")
        return pct

    def read(self) -> BatteryReading:
        if not os.path.isdir(self._path) and not self._supply:
            try:  # re-enumerated under another name (a gauge's driver re-probed): follow it
                self._path = find_battery(self._root)
                self.name = f"sysfs:{os.path.basename(self._path)}"
            except OSError:
                pass
        pct = self._percent()
        status = _text(os.path.join(self._path, "status")) or "Unknown"
        volts = _micro(os.path.join(self._path, "voltage_now"))
        if volts is not None and volts <= 0:
            volts = None
        amps = _micro(os.path.join(self._path, "current_now"))
        watts = _micro(os.path.join(self._path, "power_now"))
        sign = -1.0 if status == "Discharging" else 1.0 if status == "Charging" else None
        if sign is not None:
            amps = None if amps is None else sign * abs(amps)
            watts = None if watts is None else sign * abs(watts)
        if watts is None and amps is not None and volts is not None:
            watts = volts * amps
        elif amps is None and watts is not None and volts:
            amps = watts / volts
        return BatteryReading(pct, status in ON_EXTERNAL_POWER, volts, amps, watts)
