"""Which tier to run, from battery charge, temperature and measured latency.

Tiers are indexed by rank on one task's ladder (0 = smallest). The battery sets a ceiling (the
top tier, one below it when low, the smallest when critical). While too hot, every decision
caps one tier below the current one, so the tier keeps falling one step per period down to the
smallest; once cool again the cap lifts at once. While latency is over budget, every decision
also lowers a latency cap to one below the current tier; ample headroom raises it one tier per
decision. Every threshold has hysteresis: a reading must recover by ``hysteresis`` past the
threshold before the policy steps back up, so a reading hovering at a threshold does not make
the daemon flap between two models (each swap costs a load and a warm-up).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyInputs:
    battery_percent: float | None  # None: gauge unreadable
    temperature_c: float | None
    latency_p90_ms: float | None  # None: not enough frames yet


class TierPolicy:
    def __init__(self, n_tiers: int, *, low_battery: float, critical_battery: float, hot_c: float,
                 hysteresis: float, latency_budget_ms: float):
        if n_tiers < 1:
            raise ValueError("the ladder has no tiers")
        self.top = n_tiers - 1
        self.low, self.critical, self.hot = low_battery, critical_battery, hot_c
        self.hyst, self.budget = hysteresis, latency_budget_ms
        self._battery_band = 2  # 2 normal, 1 low, 0 critical (sticky across the hysteresis margin)
        self._hot = False
        self._latency_cap = self.top
        self.reason = "start"

    @classmethod
    def from_config(cls, power, n_tiers: int) -> "TierPolicy":
        """From the typed ``power`` configuration section."""
        return cls(n_tiers, low_battery=power.low_battery_percent, critical_battery=power.critical_battery_percent,
                   hot_c=power.hot_c, hysteresis=power.hysteresis, latency_budget_ms=power.latency_budget_ms)

    def _update_battery_band(self, pct: float | None) -> None:
        if pct is None:  # unknown charge: keep the last band rather than guessing
            return
        measured = 0 if pct < self.critical else 1 if pct < self.low else 2
        if measured < self._battery_band:
            self._battery_band = measured  # step down at once
            return
        # Step up only once the charge clears the threshold above the current band by the margin.
        thresholds = {0: self.critical, 1: self.low}
        while self._battery_band < measured and pct >= thresholds[self._battery_band] + self.hyst:
            self._battery_band += 1

    def decide(self, current: int, inputs: PolicyInputs) -> int:
        """Target tier index for the next period."""
        self._update_battery_band(inputs.battery_percent)
        ceiling = {2: self.top, 1: max(0, self.top - 1), 0: 0}[self._battery_band]
        reasons = {2: "battery ok", 1: "battery low", 0: "battery critical"}
        reason = reasons[self._battery_band]

        if inputs.temperature_c is not None:
            if inputs.temperature_c > self.hot:
                self._hot = True
            elif inputs.temperature_c < self.hot - self.hyst:
                self._hot = False
        if self._hot:
            ceiling = min(ceiling, max(0, current - 1) if current > 0 else 0)
            reason = "too hot"

        if inputs.latency_p90_ms is not None:
            if inputs.latency_p90_ms > self.budget:
                self._latency_cap = max(0, min(self._latency_cap, current - 1))
                reason = "latency over budget"
            elif inputs.latency_p90_ms < self.budget * (1 - self.hyst / 100.0) / 2:
                # Plenty of headroom on the current tier: allow one step back up.
                self._latency_cap = min(self.top, max(self._latency_cap, current + 1))
        target = min(ceiling, self._latency_cap)
        self.reason = reason
        return target
