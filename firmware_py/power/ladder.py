"""The rungs the power policy moves along: model tiers, then a lower analysis rate, then a lower probe rate.

``power.ladder`` lists the rungs from the top, comma-separated: ``tiers`` is every model tier of
the engine's task at full rate (largest first); ``every:K`` keeps the smallest tier and analyses
one frame in K (the last result stays shown); ``fps:F`` also asks the probe for F frames a
second, since the probe's front end is often the largest draw. Later rungs keep the earlier
ones' settings, so each rung costs at least what the one above it does. Rungs are indexed from
the bottom, like tiers (0 = the cheapest).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

LADDER_PATTERN = r"tiers(\s*,\s*(every:[1-9][0-9]?|fps:[1-9][0-9]{0,2}))*"
LADDER_HINT = "`tiers` then any of every:K, fps:F, comma-separated, e.g. tiers,every:2,fps:15"


@dataclass(frozen=True)
class Rung:
    tier: str
    every: int = 1  # analyse one frame in `every`
    fps: float | None = None  # frame rate asked of the probe; None: the probe's own
    cost: str = ""  # what this rung gives up, for the status line and the log

    @property
    def label(self) -> str:
        extra = (f" 1/{self.every}" if self.every > 1 else "") + (f" @{self.fps:g}fps" if self.fps else "")
        return self.tier + extra


def _quality(metrics: dict) -> tuple[str, float] | None:
    for key in ("accuracy", "dice"):
        if isinstance(metrics.get(key), (int, float)):
            return key, float(metrics[key])
    return None


def build_rungs(spec: str, tiers: list[str], metrics: dict[str, dict]) -> list[Rung]:
    """The rungs, cheapest first, for ``tiers`` (cheapest first) and their manifest ``metrics``."""
    if not re.fullmatch(LADDER_PATTERN, spec.strip()):
        raise ValueError(f"power.ladder {spec!r} is not a rung list; write {LADDER_HINT}")
    if not tiers:
        raise ValueError("the ladder has no tiers")
    top_q = _quality(metrics.get(tiers[-1], {}))
    rungs = []
    for name in tiers:
        q = _quality(metrics.get(name, {}))
        cost = "full analysis" if q is None or top_q is None else \
            f"{q[0]} {q[1]:.3f} ({(q[1] - top_q[1]) * 100:+.1f} points vs the top tier)"
        rungs.append(Rung(name, cost=cost))
    every, fps, base = 1, None, rungs[0].cost
    for token in (t.strip() for t in spec.split(",")[1:]):
        what, value = token.split(":")
        if what == "every":
            every = int(value)
        else:
            fps = float(value)
        cost = f"{base}; analyses 1 frame in {every}" + (f"; probe at {fps:g} fps" if fps else "")
        rungs.insert(0, Rung(tiers[0], every, fps, cost))
    return rungs
