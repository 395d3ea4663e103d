"""The rungs the power policy moves along: model tiers, then a lower analysis rate, then a lower probe rate.

``power.ladder`` lists the rungs from the top, comma-separated: ``tiers`` is every model tier of
the engine's task (largest first); ``every:K`` analyses one frame in K (the last result stays
shown); ``fps:F`` asks the probe for F frames a second, since the probe's front end is often the
largest draw. A rate token after ``tiers`` is a rung of the smallest tier; one before ``tiers``
is a rung of the largest tier (it keeps the best model and gives up frames instead), and the
smaller tiers then run at that rate too. Later rungs keep the earlier ones' settings, so each
rung gives up at least what the one above it does. The top rung is always the largest tier at
the full rate. Rungs are indexed from the bottom, like tiers (0 = the cheapest).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_RATE = r"(every:[1-9][0-9]?|fps:[1-9][0-9]{0,2})"
LADDER_PATTERN = rf"({_RATE}\s*,\s*)*tiers(\s*,\s*{_RATE})*"
LADDER_HINT = ("`tiers` then any of every:K, fps:F (rungs of the smallest tier; before `tiers`: of the largest), "
               "comma-separated, e.g. tiers,every:2,fps:15 or fps:20,tiers,every:2")


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

    def cost(name: str, every: int, fps: float | None) -> str:
        q = _quality(metrics.get(name, {}))
        text = "full analysis" if q is None or top_q is None else \
            f"{q[0]} {q[1]:.3f} ({(q[1] - top_q[1]) * 100:+.1f} points vs the top tier)"
        return text + (f"; analyses 1 frame in {every}" if every > 1 else "") + (f"; probe at {fps:g} fps" if fps else "")

    tokens = [t.strip() for t in spec.split(",")]
    split = tokens.index("tiers")
    every, fps = 1, None
    top = [Rung(tiers[-1], cost=cost(tiers[-1], 1, None))]  # from the top down
    for token in tokens[:split]:
        every, fps = _apply(token, every, fps)
        top.append(Rung(tiers[-1], every, fps, cost(tiers[-1], every, fps)))
    middle = [Rung(n, every, fps, cost(n, every, fps)) for n in reversed(tiers[:-1])]
    bottom = []
    for token in tokens[split + 1:]:
        every, fps = _apply(token, every, fps)
        bottom.append(Rung(tiers[0], every, fps, cost(tiers[0], every, fps)))
    return list(reversed(top + middle + bottom))


def _apply(token: str, every: int, fps: float | None) -> tuple[int, float | None]:
    what, value = token.split(":")
    return (int(value), fps) if what == "every" else (every, float(value))
