"""Battery gauges and temperature sensors behind one small interface.

Real sources: Linux power-supply and thermal sysfs nodes (what a Pi with a fuel-gauge HAT or a
USB-C PD battery exposes), or psutil. The mocks behave like the hardware: the battery drains
with time and faster under load, and a gauge can stop answering (``fail_after_reads``), in which
case ``read()`` raises ``OSError`` exactly like an unplugged I2C gauge does.
"""
from __future__ import annotations

import glob
import os
import threading
import time
from typing import Callable, Protocol


class Battery(Protocol):
    name: str

    def read(self) -> float:
        """State of charge in percent; raises OSError when the gauge cannot be read."""


class Thermal(Protocol):
    name: str

    def read(self) -> float:
        """SoC temperature in degrees Celsius; raises OSError when the sensor cannot be read."""


class MockBattery:
    """A discharging cell: linear drain, scaled by a load factor the daemon can raise."""

    name = "mock"

    def __init__(self, percent: float = 80.0, drain_percent_per_min: float = 1.0, *,
                 clock: Callable[[], float] = time.monotonic, fail_after_reads: int | None = None):
        self._percent = float(percent)
        self._drain_per_s = drain_percent_per_min / 60.0
        self._clock = clock
        self._last = clock()
        self._reads = 0
        self._fail_after = fail_after_reads
        self._lock = threading.Lock()
        self.load = 1.0  # 1.0 = nominal; a bigger model draws more

    def read(self) -> float:
        with self._lock:
            self._reads += 1
            if self._fail_after is not None and self._reads > self._fail_after:
                raise OSError(5, "battery gauge not responding (mock)")
            now = self._clock()
            self._percent = max(0.0, self._percent - (now - self._last) * self._drain_per_s * self.load)
            self._last = now
            return self._percent


class SysfsBattery:
    """First power supply of type Battery under /sys/class/power_supply."""

    def __init__(self, root: str = "/sys/class/power_supply"):
        for supply in sorted(glob.glob(os.path.join(root, "*"))):
            try:
                with open(os.path.join(supply, "type")) as fh:
                    if fh.read().strip() == "Battery":
                        self._path = os.path.join(supply, "capacity")
                        self.name = f"sysfs:{os.path.basename(supply)}"
                        return
            except OSError:
                continue
        raise OSError(2, f"no battery under {root}; set power.battery: mock or psutil")

    def read(self) -> float:
        with open(self._path) as fh:
            return float(fh.read().strip())


class PsutilBattery:
    name = "psutil"

    def __init__(self):
        import psutil

        self._psutil = psutil
        if psutil.sensors_battery() is None:
            raise OSError(2, "psutil finds no battery on this machine; set power.battery: mock or sysfs")

    def read(self) -> float:
        info = self._psutil.sensors_battery()
        if info is None:
            raise OSError(5, "battery disappeared")
        return float(info.percent)


class MockThermal:
    name = "mock"

    def __init__(self, celsius: float = 45.0):
        self.celsius = float(celsius)

    def read(self) -> float:
        return self.celsius


class SysfsThermal:
    def __init__(self, zone: str = "/sys/class/thermal/thermal_zone0"):
        self._path = os.path.join(zone, "temp")
        if not os.path.exists(self._path):
            raise OSError(2, f"no thermal zone at {zone}; set power.thermal: mock")
        self.name = f"sysfs:{os.path.basename(zone)}"

    def read(self) -> float:
        with open(self._path) as fh:
            return int(fh.read().strip()) / 1000.0


def make_battery(kind: str, *, percent: float = 80.0, drain_percent_per_min: float = 1.0) -> Battery:
    if kind == "mock":
        return MockBattery(percent, drain_percent_per_min)
    if kind == "sysfs":
        return SysfsBattery()
    if kind == "psutil":
        return PsutilBattery()
    raise ValueError(f"unknown battery source {kind!r}; use mock, sysfs or psutil")


def make_thermal(kind: str, *, celsius: float = 45.0) -> Thermal:
    if kind == "mock":
        return MockThermal(celsius)
    if kind == "sysfs":
        return SysfsThermal()
    raise ValueError(f"unknown thermal source {kind!r}; use mock or sysfs")
