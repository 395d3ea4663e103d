"""Applying a re-read configuration (SIGHUP, console `reload`) to the running daemon.

What can change live changes; what needs the parts rebuilt (the probe link, the sinks, the
engine's model-set paths) is named, so the operator knows a restart is due. A file that does not
load is reported in one line and the running configuration stays.
"""
from __future__ import annotations

import logging
from typing import Any

from firmware_py.power import TierPolicy, make_battery, make_monitor, make_thermal

log = logging.getLogger(__name__)

# Applied without a restart; every other changed key is reported as needing one.
LIVE = ("power.", "log.level", "console.lockout_s", "models.start_tier")


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two configuration mappings."""
    out = []
    for key in new:
        a, b = old.get(key), new[key]
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def _subset(values: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The nested mapping holding only ``keys`` (dotted) of ``values``."""
    out: dict[str, Any] = {}
    for dotted in keys:
        *path, leaf = dotted.split(".")
        src, dst = values, out
        for part in path:
            src, dst = src[part], dst.setdefault(part, {})
        dst[leaf] = src[leaf]
    return out


def apply_config(daemon, new_cfg) -> str:
    """Apply what can change live; a one-line account of what changed and what needs a restart."""
    changed = changed_keys(daemon.cfg.as_dict(), new_cfg.as_dict())
    if not changed:
        return "configuration unchanged"
    live = [k for k in changed if k.startswith(LIVE)]
    later = [k for k in changed if k not in live]
    tiers = daemon.tiers
    if any(k.startswith("power.") for k in live):
        power = new_cfg.power
        try:  # new sensors first: a gauge that is absent keeps the old ones and the old policy
            battery, thermal, monitor = make_battery(power), make_thermal(power), make_monitor(power)
        except OSError as exc:
            later += [k for k in live if k.startswith("power.")]
            live = [k for k in live if not k.startswith("power.")]
            log.warning("new power sensors unavailable (%s); keeping the running ones", exc)
        else:
            tiers.battery, tiers.thermal, tiers.monitor = battery, thermal, monitor
            daemon.monitor = monitor
            tiers.policy = TierPolicy.from_config(power, len(daemon.engine.ladder))
    if "log.level" in live:
        logging.getLogger().setLevel(new_cfg.log.level.upper())
    if "console.lockout_s" in live and daemon.console is not None:
        daemon.console.lockout_s = new_cfg.console.lockout_s
    if "models.start_tier" in live:
        tiers.choose(new_cfg.models.start_tier)
    # The running configuration takes the live keys only: the others stay what the parts run with,
    # and the next reload names them again.
    daemon.cfg = daemon.cfg.replace(**_subset(new_cfg.as_dict(), live))
    text = f"configuration applied: {', '.join(live) or 'nothing live'}"
    if later:
        text += f"; needs a restart to take effect: {', '.join(later)}"
    return text
