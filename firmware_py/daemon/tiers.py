"""Which tier runs: pinned by a command, or chosen by the power policy. Nothing else decides.

The controller runs on the daemon's control thread only (policy period and commands), so its
state needs no lock. It compares the policy's choice with what the engine really runs and what
is still loading, never with a name it remembers having asked for: after a pin and ``tier
auto`` the next step requests the policy's tier again.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass

from firmware_py.errors import FirmwareError, ModelError
from firmware_py.power import PolicyInputs

log = logging.getLogger(__name__)

# How long a command waits for a pinned tier to load, validate and warm up.
PIN_TIMEOUT_S = 60.0


@dataclass
class Readings:
    battery_percent: float | None = None
    temperature_c: float | None = None
    latency_p90_ms: float | None = None


class TierController:
    def __init__(self, engine, policy, battery, thermal, latency, *, pinned: str | None = None):
        self.engine, self.policy = engine, policy
        self.battery, self.thermal, self.latency = battery, thermal, latency
        self.pinned = pinned
        self.readings = Readings()
        self.reason = "pinned" if pinned else "start"
        self._loading: tuple[str, Future] | None = None  # a policy request still in flight
        self._refused: dict[str, str] = {}  # tiers the engine refused (until the next reload)

    @property
    def mode(self) -> str:
        return "pinned" if self.pinned else "policy"

    # -- sensors and the policy (every policy period) --------------------------------------
    def read_sensors(self) -> Readings:
        r = self.readings
        try:
            r.battery_percent = self.battery.read()
        except OSError as exc:
            if r.battery_percent is not None:
                log.warning("battery gauge unreadable (%s); keeping the current tier", exc)
            r.battery_percent = None
        try:
            r.temperature_c = self.thermal.read()
        except OSError:
            r.temperature_c = None
        (r.latency_p90_ms,) = self.latency.percentiles(90)
        return r

    def step(self, *, wait: bool = False) -> None:
        """Read the sensors and, unless pinned, ask the engine for the policy's tier.

        wait=True (at start, before the probe is opened) loads the tier synchronously so the
        first frame already runs on it; afterwards loads run in the background.
        """
        r = self.read_sensors()
        if self.pinned:
            return
        self._collect_loading()
        ladder = self.engine.ladder
        active = self.engine.active_tier.name
        if active not in ladder:  # a reloaded set whose swap is still pending: decide next period
            return
        current = ladder.index(active)
        target = ladder[self.policy.decide(current, PolicyInputs(r.battery_percent, r.temperature_c,
                                                                 r.latency_p90_ms))]
        self.reason = self.policy.reason
        if target == active or target in self._refused:
            return
        if self._loading is not None and self._loading[0] == target:
            return  # still loading the tier this step wants
        log.info("tier %s -> %s (%s)", active, target, self.reason)
        try:
            future = self.engine.request_tier(target, wait=wait)
        except ModelError as exc:  # refused at once (wait=True, or a tier known to be bad)
            self._refuse(target, exc)
            return
        self._loading = (target, future)
        if wait:
            self._collect_loading()

    def _collect_loading(self) -> None:
        if self._loading is None or not self._loading[1].done():
            return
        name, future = self._loading
        self._loading = None
        exc = future.exception()
        if exc is not None:
            self._refuse(name, exc)

    def _refuse(self, name: str, exc: BaseException) -> None:
        self._refused[name] = str(exc)
        log.warning("tier %s refused (%s); staying on %s", name, exc, self.engine.active_tier.name)

    # -- commands (applied by the control thread) ------------------------------------------
    def pin(self, name: str) -> str:
        ladder = self.engine.ladder
        if name not in ladder:
            raise FirmwareError(f"no tier '{name}'; choose one of {', '.join(ladder)} or auto")
        self._loading = None  # the pin supersedes whatever the policy was loading
        try:
            self.engine.request_tier(name).result(PIN_TIMEOUT_S)
        except ModelError as exc:
            raise FirmwareError(f"tier {name} refused ({exc}); still on {self.engine.active_tier.name}, "
                                f"{self.mode}") from None
        except TimeoutError:
            raise FirmwareError(f"tier {name} did not load within {PIN_TIMEOUT_S:g} s; still on "
                                f"{self.engine.active_tier.name}, {self.mode}") from None
        self.pinned, self.reason = name, "pinned"
        return f"ok: {name} pinned; it runs from the next frame (power policy off until 'tier auto')"

    def release(self) -> str:
        """Give the choice back to the policy and apply its decision now, not a period later."""
        self.pinned = None
        self.step()
        target = self._loading[0] if self._loading else self.engine.active_tier.name
        return f"ok: the power policy chooses the tier ({target}: {self.reason})"

    def model_set_reloaded(self) -> None:
        """A new model set: earlier refusals no longer apply; a pin to a vanished tier ends."""
        self._refused.clear()
        self._loading = None
        if self.pinned and self.pinned not in self.engine.ladder:
            log.warning("pinned tier %s is not in the reloaded model set; the power policy chooses again",
                        self.pinned)
            self.pinned = None
