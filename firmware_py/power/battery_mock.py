"""Mock battery: a cell discharging linearly with time, which can stop answering like a gauge."""
from __future__ import annotations

import threading
import time
from typing import Callable

from firmware_py.registry import Key
from firmware_py.power.sensors import BATTERIES, BatteryReading


@BATTERIES.register("mock", doc="a simulated cell discharging at a constant rate", keys={
    "percent": Key("float", 80.0, "Starting charge.", min=0, max=100),
    "drain_percent_per_min": Key("float", 1.0, "Discharge rate.", min=0, max=100),
})
class MockBattery:
    name = "mock"

    def __init__(self, percent: float, drain_percent_per_min: float, *,
                 clock: Callable[[], float] = time.monotonic, fail_after_reads: int | None = None):
        self._percent = float(percent)
        self._drain_per_s = drain_percent_per_min / 60.0
        self._clock = clock
        self._last = clock()
        self._reads = 0
        self._fail_after = fail_after_reads  # tests: the gauge goes silent after this many reads
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, section) -> "MockBattery":
        return cls(section.percent, section.drain_percent_per_min)

    def read(self) -> BatteryReading:
        with self._lock:
            self._reads += 1
            if self._fail_after is not None and self._reads > self._fail_after:
                raise OSError(5, "battery gauge not responding (mock)")
            now = self._clock()
            self._percent = max(0.0, self._percent - (now - self._last) * self._drain_per_s)
            self._last = now
            return BatteryReading(self._percent)  # a mock cell tells its charge only
