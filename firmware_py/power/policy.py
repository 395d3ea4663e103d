"""Which rung to run, from battery charge, charging, temperature and measured latency.

Rungs are indexed from the bottom (0 = the cheapest; see ``ladder.py``). Each input sets a cap,
and the policy's *goal* is the lowest cap:

* battery: the top rung; ``bands`` (percent -> rungs below the top) and the two named bands
  (below ``low``: one below the top; below ``critical``: the bottom) lower it. While charging
  the battery sets no cap. A band is left upwards only once the charge clears its threshold
  by ``hysteresis``. The charge is the median of the last five readings, so one wild reading
  moves nothing. The probe's own charge (its telemetry) goes through the same bands on its own
  and can only lower the cap: it never stands in for the board's gauge. No board reading for
  ``sensor_timeout_s`` (or never one): ``safe_rung`` below the top, the configured safe choice
  for a gauge that is missing or failing. The same holds for the
  temperature: no reading for ``sensor_timeout_s`` (or never one) caps the policy at the safe rung.
* heat: on becoming hot (above ``hot_c``), one rung below the current one, held until the
  temperature falls below ``hot_c - hysteresis``; one more rung only if, a dwell later, it is
  still ``hysteresis`` hotter than when the last step was taken.
* latency: p95 over the frame budget lowers the cap to one below the current rung; p95 under
  half the budget (less ``hysteresis`` percent) raises it by one.

The policy moves one rung per decision and not again before ``min_dwell_s`` has passed since its
last move, so no trace of readings can make it switch more than once per dwell (each swap costs
a load and a warm-up). ``decide`` returns that next rung; ``goal`` is where it is heading, which
the controller takes directly when nothing runs yet (start) or a manual pin ends.
"""
from __future__ import annotations

import collections
import logging
import math
import reprlib
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

from firmware_py.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicyInputs:
    battery_percent: float | None  # None: gauge unreadable
    temperature_c: float | None
    latency_ms: float | None  # p95 over the window; None: not enough frames yet
    charging: bool = False
    budget_ms: float | None = None  # the frame budget; None: power.latency_budget_ms
    # The probe's own charge (telemetry): it can lower the cap like the board's, never stand in for
    # a board gauge that fails (battery_percent None still falls back to the safe rung).
    probe_battery_percent: float | None = None


@dataclass(frozen=True)
class Decision:
    time: float
    current: int
    goal: int
    target: int
    reason: str
    inputs: dict


def bands_problem(bands) -> str | None:
    """What is wrong with a ``power.bands`` mapping (percent -> rungs below the top), or None."""
    if not isinstance(bands, dict):
        return f"must be a mapping of charge percent to rungs below the top, e.g. {{\"40\": 2}}; got {reprlib.repr(bands)}"
    for k, v in bands.items():
        try:
            pct = float(k)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer too big for a float
            pct = math.nan
        if isinstance(k, bool) or not 0 <= pct <= 100:
            return f"entry {reprlib.repr(k)}: {reprlib.repr(v)}: the key must be a charge in percent, 0 to 100; write e.g. {{\"40\": 2}}"
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            return (f"entry {reprlib.repr(k)}: {reprlib.repr(v)}: the value must be a whole number of rungs below the top (0 or more); "
                    "write e.g. {\"40\": 2}")
    return None


def _parse_bands(bands: dict) -> list[tuple[float, float]]:
    problem = bands_problem(bands)
    if problem:
        raise ConfigError(f"power.bands {problem}")
    return [(float(k), int(v)) for k, v in bands.items()]


class TierPolicy:
    def __init__(self, n_rungs: int, *, low_battery: float, critical_battery: float, hot_c: float,
                 hysteresis: float, latency_budget_ms: float, bands: dict[str, int] | None = None,
                 min_dwell_s: float = 0.0, safe_rung: int = 1, sensor_timeout_s: float = 30.0,
                 ladder: str = "tiers", clock: Callable[[], float] = time.monotonic):
        self.low, self.critical, self.hot = low_battery, critical_battery, hot_c
        self.hyst, self.budget = hysteresis, latency_budget_ms
        self.dwell, self.safe_rung, self.sensor_timeout = min_dwell_s, safe_rung, sensor_timeout_s
        self.ladder_spec, self._clock = ladder, clock
        # (threshold percent, rungs below the top), highest threshold first
        named = [(low_battery, 1), (critical_battery, math.inf)]
        bands_ = sorted(_parse_bands(bands or {}) + named, reverse=True)
        # A lower charge never allows more than a higher one: each band's cap is the deepest so far.
        self.bands = [(t, max(d for _, d in bands_[:i + 1])) for i, (t, _) in enumerate(bands_)]
        self._band = -1  # index into self.bands of the lowest band entered; -1: above every threshold
        self._probe_band = -1  # the same for the probe's own charge
        self._probe_recent: collections.deque[float] = collections.deque(maxlen=5)
        self._last_good: float | None = None
        self._last_temp: float | None = None  # when the temperature was last readable
        self._recent: collections.deque[float] = collections.deque(maxlen=5)  # a median rejects one wild read
        self._hot = False
        self._heat_cap: int | None = None
        self._heat_step_c = 0.0
        self._latency_cap: int | None = None
        self._last_move = -math.inf
        self.goal = 0
        self.reason = "start"
        self.history: collections.deque[Decision] = collections.deque(maxlen=256)
        self.resize(n_rungs)

    @classmethod
    def from_config(cls, power, n_rungs: int, *, clock: Callable[[], float] = time.monotonic) -> "TierPolicy":
        """From the typed ``power`` configuration section."""
        return cls(n_rungs, low_battery=power.low_battery_percent, critical_battery=power.critical_battery_percent,
                   hot_c=power.hot_c, hysteresis=power.hysteresis, latency_budget_ms=power.latency_budget_ms,
                   bands=power.bands, min_dwell_s=power.min_dwell_s, safe_rung=power.safe_rung,
                   sensor_timeout_s=power.sensor_timeout_s, ladder=power.ladder, clock=clock)

    def resize(self, n_rungs: int) -> None:
        """The ladder changed (a tier refused, a new model set): caps are clamped to it."""
        if n_rungs < 1:
            raise ValueError("the ladder has no rungs")
        self.top = n_rungs - 1

    def moved(self) -> None:
        """The controller switched rung without ``decide`` (start, end of a pin): the dwell starts now."""
        self._last_move = self._clock()

    # -- caps -------------------------------------------------------------------------------
    def _battery_cap(self, pct: float | None, charging: bool, now: float) -> tuple[int, str]:
        if pct is not None:
            self._last_good = now
            self._recent.append(pct)
            self._band = self._next_band(self._band, statistics.median(self._recent))
        elif self._last_good is None or now - self._last_good > self.sensor_timeout:
            return max(0, self.top - self.safe_rung), "battery unreadable: safe rung"
        if charging:
            return self.top, "charging"
        return self._band_cap(self._band, "battery")

    def _probe_cap(self, pct: float) -> tuple[int, str]:
        self._probe_recent.append(pct)
        self._probe_band = self._next_band(self._probe_band, statistics.median(self._probe_recent))
        return self._band_cap(self._probe_band, "probe battery")

    def _band_cap(self, band: int, what: str) -> tuple[int, str]:
        if band < 0:
            return self.top, f"{what} ok"
        threshold, down = self.bands[band]
        name = "critical" if threshold == self.critical else "low" if threshold == self.low else f"<{threshold:g}%"
        return max(0, self.top - down) if down != math.inf else 0, f"{what} {name}"

    def _next_band(self, band: int, pct: float) -> int:
        measured = max((i for i, (t, _) in enumerate(self.bands) if pct < t), default=-1)
        if measured > band:
            band = measured  # down at once
        while band > measured and pct >= self.bands[band][0] + self.hyst:
            band -= 1  # up only past the threshold plus the margin
        return band

    def _heat(self, temp: float | None, current: int, now: float) -> None:
        if temp is None:
            return
        if temp > self.hot:
            escalate = self._hot and temp >= self._heat_step_c + self.hyst and now - self._last_move >= self.dwell
            if not self._hot or escalate:
                self._heat_cap = max(0, current - 1)
                self._heat_step_c = temp
            self._hot = True
        elif temp < self.hot - self.hyst:
            self._hot, self._heat_cap = False, None

    def _latency(self, lat: float | None, budget: float, current: int) -> str | None:
        if lat is None:
            return None
        if lat > budget:
            self._latency_cap = max(0, min(self.top if self._latency_cap is None else self._latency_cap,
                                           current - 1))
            return f"latency p95 {lat:.1f} ms over the {budget:.0f} ms budget"
        if self._latency_cap is not None and lat < budget * (1 - self.hyst / 100.0) / 2:
            self._latency_cap = self._latency_cap + 1 if self._latency_cap + 1 < self.top else None
        return None

    # -- the decision -----------------------------------------------------------------------
    def decide(self, current: int, inputs: PolicyInputs) -> int:
        """The rung for the next period: at most one from ``current``, and only after the dwell."""
        now = self._clock()
        current = min(current, self.top)
        goal, reason = self._battery_cap(inputs.battery_percent, inputs.charging, now)
        if inputs.probe_battery_percent is not None and not inputs.charging:
            probe_goal, probe_reason = self._probe_cap(inputs.probe_battery_percent)
            if probe_goal < goal:
                goal, reason = probe_goal, probe_reason
        self._heat(inputs.temperature_c, current, now)
        if inputs.temperature_c is not None:
            self._last_temp = now
        elif self._last_temp is None or now - self._last_temp > self.sensor_timeout:
            safe = max(0, self.top - self.safe_rung)
            if safe < goal:
                goal, reason = safe, "temperature unreadable: safe rung"
        if self._heat_cap is not None and self._heat_cap <= goal:
            goal, reason = min(goal, self._heat_cap), f"too hot (over {self.hot:g} C)"
        budget = inputs.budget_ms or self.budget
        slow = self._latency(inputs.latency_ms, budget, current)
        if self._latency_cap is not None and self._latency_cap <= goal:
            goal, reason = min(goal, self._latency_cap), slow or "latency cap (waiting for headroom)"
        self.goal = goal = min(goal, self.top)
        target = current
        if goal != current:
            wait = self.dwell - (now - self._last_move)
            if wait > 0:
                reason += f"; holding rung {current} for the {self.dwell:g} s dwell ({wait:.0f} s left)"
            else:
                target = current + (1 if goal > current else -1)
                self._last_move = now
        self.reason = reason
        decision = Decision(now, current, goal, target, reason, asdict(inputs))
        self.history.append(decision)
        (log.info if target != current else log.debug)("power decision: rung %d -> %d (goal %d): %s; inputs %s",
                                                         current, target, goal, reason, decision.inputs)
        return target
