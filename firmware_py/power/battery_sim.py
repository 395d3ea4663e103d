"""Simulated battery: a Li-ion pack of a given energy, drained by what the device draws, charged when plugged.

The draw is a callable giving watts (the daemon attaches its energy meter's current draw, the
battery bench the power model of the rung it runs), integrated between reads; while plugged the
pack charges at ``charge_w`` less the draw, so a device that draws more than its charger still
discharges, as a real one does. The cell voltage follows a typical open-circuit curve of a Li-ion
cell (NMC/graphite, 25 C: 3.0 V empty, 4.2 V full; the usual shape from manufacturers' discharge
curves, not one datasheet), so a gauge's voltage and current are reported as well.
"""
from __future__ import annotations

import bisect
import threading
import time
from typing import Callable

from firmware_py.registry import Key
from firmware_py.power.sensors import BATTERIES, BatteryReading

# State of charge (%) -> open-circuit voltage (V) of one cell.
OCV_CURVE = ((0, 3.00), (5, 3.45), (10, 3.58), (20, 3.68), (30, 3.74), (40, 3.78), (50, 3.82), (60, 3.87),
             (70, 3.94), (80, 4.01), (90, 4.08), (100, 4.20))


def open_circuit_voltage(percent: float, cells: int = 1) -> float:
    """Linear between the points of ``OCV_CURVE``; ``cells`` in series."""
    p = min(100.0, max(0.0, percent))
    socs = [s for s, _ in OCV_CURVE]
    i = max(1, bisect.bisect_left(socs, p))
    (s0, v0), (s1, v1) = OCV_CURVE[i - 1], OCV_CURVE[i]
    return cells * (v0 + (v1 - v0) * (p - s0) / (s1 - s0))


@BATTERIES.register("simulated", doc="a simulated Li-ion pack drained by the power model's draw and charged when "
                    "plugged", keys={
    "capacity_wh": Key("float", 18.5, "Energy of the full pack (Wh); 18.5: one 3.7 V 5 Ah cell.", min=0.01,
                       max=10000),
    "percent": Key("float", 100.0, "Charge at start.", min=0, max=100),
    "cells": Key("int", 1, "Cells in series (the voltage reported).", min=1, max=16),
    "plugged": Key("bool", False, "On the charger at start (the console's `battery plug` / `battery unplug` change it)."),
    "charge_w": Key("float", 10.0, "Charger power into the pack while plugged (W).", min=0, max=1000),
    "idle_w": Key("float", 0.0, "Draw assumed until the daemon attaches its energy meter (W).", min=0, max=1000),
})
class SimulatedBattery:
    name = "simulated"

    def __init__(self, capacity_wh: float, percent: float = 100.0, *, cells: int = 1, plugged: bool = False,
                 charge_w: float = 10.0, load: Callable[[], float | None] | None = None, idle_w: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        if capacity_wh <= 0:
            raise ValueError("a simulated battery needs capacity_wh > 0")
        self.capacity_wh, self.cells, self.charge_w = float(capacity_wh), cells, float(charge_w)
        self._energy_j = self.capacity_wh * 3600.0 * min(100.0, max(0.0, percent)) / 100.0
        self.plugged = plugged
        self._load, self._idle_w = load, idle_w
        self._clock = clock
        self._last = clock()
        self._draw_w = 0.0  # the last period's draw, for the reading
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, section) -> "SimulatedBattery":
        return cls(section.capacity_wh, section.percent, cells=section.cells, plugged=section.plugged,
                   charge_w=section.charge_w, idle_w=section.idle_w)

    def attach_load(self, load: Callable[[], float | None]) -> None:
        """What drains the pack: watts now (None: not known yet, the configured idle draw counts)."""
        with self._lock:
            self._advance()
            self._load = load

    def plug(self) -> None:
        with self._lock:
            self._advance()
            self.plugged = True

    def unplug(self) -> None:
        with self._lock:
            self._advance()
            self.plugged = False

    @property
    def percent(self) -> float:
        return 100.0 * self._energy_j / (self.capacity_wh * 3600.0)

    @property
    def empty(self) -> bool:
        return self._energy_j <= 0.0

    def _advance(self) -> None:
        now = self._clock()
        dt, self._last = max(0.0, now - self._last), now
        draw = self._load() if self._load is not None else None
        self._draw_w = self._idle_w if draw is None else max(0.0, draw)
        net = (self.charge_w if self.plugged else 0.0) - self._draw_w
        self._energy_j = min(self.capacity_wh * 3600.0, max(0.0, self._energy_j + net * dt))

    def drain(self, joules: float) -> None:
        """Take ``joules`` out at once (the bench integrates its own draw)."""
        with self._lock:
            self._energy_j = max(0.0, self._energy_j - joules)

    def read(self) -> BatteryReading:
        with self._lock:
            self._advance()
            pct = self.percent
            # Plugged and full: the charger carries the draw. Else what flows into (+) or out of (-) the pack.
            full = self.plugged and pct >= 100.0
            net_w = 0.0 if full else (self.charge_w if self.plugged else 0.0) - self._draw_w
            volts = open_circuit_voltage(pct, self.cells)
            return BatteryReading(pct, charging=self.plugged, voltage_v=round(volts, 3),
                                  current_a=round(net_w / volts, 4), power_w=round(net_w, 3))
