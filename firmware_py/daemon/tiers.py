"""Which tier runs: pinned by a command, or chosen by the power policy. Nothing else decides.

The controller runs on the daemon's control thread only (policy period and commands), so its
state needs no lock. It compares the policy's choice with what the engine really runs and what
is still loading, never with a name it remembers having asked for: after a pin and ``tier
auto`` the next step requests the policy's tier again.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from firmware_py.errors import FirmwareError, ModelError
from firmware_py.power import PolicyInputs
from firmware_py.power.ladder import Rung, build_rungs

log = logging.getLogger(__name__)

# How long a command waits for a pinned tier to load, validate and warm up.
PIN_TIMEOUT_S = 60.0


@dataclass
class Readings:
    battery_percent: float | None = None  # shown: the lower of the board's and the probe's (the first to run out)
    board_battery_percent: float | None = None
    probe_battery_percent: float | None = None  # from the probe's telemetry, while it is fresh
    charging: bool = False  # the board's gauge says external power is present
    voltage_v: float | None = None  # the board's: the power monitor's bus voltage, else the cell's
    current_a: float | None = None  # the monitor's draw (+), else the cell's (+ charging, - discharging)
    power_w: float | None = None  # measured board power (W): the power monitor's, else what the cell delivers
    power_source: str = ""  # which sensor power_w comes from ("" while unknown)
    temperature_c: float | None = None
    latency_p95_ms: float | None = None
    frame_rate_fps: float | None = None  # asked of the probe, else measured from frames received
    budget_ms: float | None = None
    faults: list[str] = field(default_factory=list)  # sensors that did not answer this period, for the status line
    # the same, by sensor: {"sensor", "error", "since" (wall clock, s), "for_s"}, for the console and the log
    sensor_errors: dict[str, dict] = field(default_factory=dict)


TELEMETRY_FRESH_S = 5.0  # the probe sends telemetry at least once a second


class TierController:
    """Pinned tier, or the policy's rung: model tier, analysis rate (``analysis.analysis_every``) and
    the probe's frame rate (``probe_command("frame_rate", fps)``; returns False while the link is
    down, raises FirmwareError when the probe refuses). ``link_stats()``: the link's ``stats()``."""

    def __init__(self, engine, policy, battery, thermal, latency, *, pinned: str | None = None,
                 analysis=None, probe_command=None, link_stats=None, monitor=None, clock=time.monotonic):
        self.engine, self.policy = engine, policy
        self.battery, self.thermal, self.latency = battery, thermal, latency
        self.monitor = monitor  # a power monitor (INA219/INA260) on the board's supply, or None
        self.analysis, self.probe_command = analysis, probe_command
        self.link_stats = link_stats or dict
        self.pinned = pinned
        self.readings = Readings()
        self.reason = "pinned" if pinned else "start"
        self.rung = ""  # the rung's label, for the status line
        self._clock = clock
        self._loading: tuple[str, Future] | None = None  # a policy request still in flight
        self._refused: dict[str, str] = {}  # tiers the engine refused (until the next reload)
        self._asked_fps: float | None = None  # the rate asked of the probe; None: its own
        self._native_fps: float | None = None  # the probe's own rate, measured before any lowering
        self._fps_refused = ""  # why the probe will not change its rate: the fps rungs are dropped
        self._counted: tuple[float, int] | None = None  # (time, frames received) at the last reading
        self._session: int | None = None  # the link's connect count: a new one is a new probe session
        self._failing: dict[str, tuple[float, float]] = {}  # sensor role -> (clock, wall time) of its first failure

    @property
    def mode(self) -> str:
        return "pinned" if self.pinned else "policy"

    # -- sensors and the policy (every policy period) --------------------------------------
    def _sensor(self, role: str, sensor):
        """``sensor.read()``, or None with the failure recorded: which sensor, the error, since when."""
        try:
            value = sensor.read()
        except OSError as exc:
            now = self._clock()
            if role not in self._failing:
                self._failing[role] = (now, time.time())
                log.warning("%s sensor %s unreadable (%s)", role, sensor.name, exc)
            since, wall = self._failing[role]
            self.readings.faults.append(f"{role} {sensor.name}: {exc} (for {now - since:.0f} s)")
            self.readings.sensor_errors[role] = {"sensor": sensor.name, "error": str(exc), "since": round(wall, 3),
                                                 "for_s": round(now - since, 3)}
            return None
        if self._failing.pop(role, None) is not None:
            log.info("%s sensor %s answers again", role, sensor.name)
        return value

    def read_sensors(self) -> Readings:
        r = self.readings
        r.faults, r.sensor_errors = [], {}
        cell = self._sensor("battery", self.battery)
        r.board_battery_percent = cell.percent if cell else None
        r.charging = cell.charging if cell else False
        r.voltage_v, r.current_a = (cell.voltage_v, cell.current_a) if cell else (None, None)
        r.power_w, r.power_source = (cell.discharge_w, self.battery.name) if cell else (None, "")
        board = self._sensor("power monitor", self.monitor) if self.monitor is not None else None
        if board is not None:
            r.voltage_v, r.current_a, r.power_w = board.voltage_v, board.current_a, board.power_w
            r.power_source = self.monitor.name
        if r.power_w is None:
            r.power_source = ""
        r.temperature_c = self._sensor("thermal", self.thermal)
        stats = self.link_stats()
        self._follow_session(stats)
        age = stats.get("telemetry_age_s")
        fresh = age is not None and age <= TELEMETRY_FRESH_S
        r.probe_battery_percent = stats.get("battery_pct") if fresh else None
        known = [v for v in (r.board_battery_percent, r.probe_battery_percent) if v is not None]
        r.battery_percent = min(known) if known else None  # the first to run out ends the scan
        self._measure_frame_rate(stats)
        r.frame_rate_fps = self._asked_fps or self._native_fps
        every = getattr(self.analysis, "analysis_every", 1)
        r.budget_ms = 1000.0 * every / r.frame_rate_fps if r.frame_rate_fps else None
        (r.latency_p95_ms,) = self.latency.percentiles(95)
        return r

    def _follow_session(self, stats: dict) -> None:
        """A new probe session (reconnect, replug, probe reboot): the probe forgot the frame rate it
        was asked for, and may be another probe. Its own rate is measured again (frames counted
        across the gap are no rate), then an fps rung asks for its rate again."""
        if not stats.get("connected", True):
            self._counted = None
            return
        session = stats.get("connects")
        if session is None or session == self._session:
            return
        if self._session is not None:
            log.info("new probe session: measuring its own frame rate again%s",
                     f", then asking {self._asked_fps:g} fps again" if self._asked_fps else "")
        self._session, self._counted = session, None
        # What the probe runs now is its own rate (maybe another probe's): measured before it is lowered.
        self._asked_fps = self._native_fps = None

    def _measure_frame_rate(self, stats: dict) -> None:
        now, received = self._clock(), stats.get("frames_received")
        if received is None or not stats.get("connected", True):
            return
        if self._counted is not None and now - self._counted[0] >= 0.5 and self._asked_fps is None:
            rate = (received - self._counted[1]) / (now - self._counted[0])
            if rate > 0:
                self._native_fps = rate
        if self._counted is None or now - self._counted[0] >= 0.5:
            self._counted = (now, received)

    def rungs(self) -> list[Rung]:
        """The policy's ladder now: refused tiers left out, and the fps rungs while the probe refuses them."""
        names = [n for n in self.engine.ladder if n not in self._refused]
        if not names:
            return []
        metrics = {n: self.engine.manifest.tier(n).metrics for n in names}
        rungs = build_rungs(self.policy.ladder_spec, names, metrics)
        return [g for g in rungs if not (g.fps and self._fps_refused)]

    def _current(self, rungs: list[Rung]) -> int | None:
        active = self.engine.active_tier.name
        every = getattr(self.analysis, "analysis_every", 1)
        # Exact, else the probe's rate not applied yet (link down), else the tier at full rate (after a pin).
        for key in ((active, every, self._asked_fps), (active, every), (active, 1)):
            for i, g in enumerate(rungs):
                if (g.tier, g.every, g.fps)[:len(key)] == key:
                    return i
        return None

    def step(self, *, wait: bool = False, jump: bool = False) -> None:
        """Read the sensors and, unless pinned, move to the policy's rung.

        The policy moves one rung per decision, after its dwell. ``jump`` (and ``wait``, at start)
        goes to the policy's goal directly: nothing to keep steady yet, or a pin just ended.
        wait=True (before the probe is opened) loads the tier synchronously so the first frame
        already runs on it; afterwards loads run in the background.
        """
        r = self.read_sensors()
        if self.pinned:
            return
        self._collect_loading()
        rungs = self.rungs()
        current = self._current(rungs) if rungs else None
        if current is None:  # a reloaded set whose swap is still pending: decide next period
            return
        self.policy.resize(len(rungs))
        # The board's gauge and the probe's charge separately: the probe's may lower the rung, never
        # stand in for a board gauge that fails (that one falls back to the safe rung).
        target = self.policy.decide(current, PolicyInputs(r.board_battery_percent, r.temperature_c,
                                                          r.latency_p95_ms, charging=r.charging,
                                                          budget_ms=r.budget_ms,
                                                          probe_battery_percent=r.probe_battery_percent))
        if wait or jump:
            target = self.policy.goal
            self.policy.moved()
        self.reason = self.policy.reason
        self.rung = rungs[target].label
        if target != current:
            log.info("rung %s -> %s (%s; costs: %s)", rungs[current].label, rungs[target].label, self.reason,
                     rungs[target].cost)
        self._apply(rungs[target], wait=wait)

    def _apply(self, rung: Rung, *, wait: bool) -> None:
        if self.analysis is not None:
            self.analysis.analysis_every = rung.every
        self._ask_frame_rate(rung.fps)
        active = self.engine.active_tier.name
        if rung.tier == active or (self._loading is not None and self._loading[0] == rung.tier):
            return
        try:
            future = self.engine.request_tier(rung.tier, wait=wait)
        except ModelError as exc:  # refused at once (wait=True, or a tier known to be bad)
            self._refuse(rung.tier, exc)
            return
        self._loading = (rung.tier, future)
        if wait:
            self._collect_loading()

    def _ask_frame_rate(self, fps: float | None) -> None:
        """Ask the probe for ``fps`` (None: its own rate again); a refusal drops the fps rungs."""
        if fps == self._asked_fps or self.probe_command is None or self._fps_refused:
            return
        if self._native_fps is None:
            return  # measure its own rate first (a period at it), so there is a rate to restore later
        value = fps or self._native_fps
        try:
            if self.probe_command("frame_rate", round(value, 1)):
                self._asked_fps = fps
        except FirmwareError as exc:
            self._fps_refused = str(exc)
            log.warning("the probe refused a frame rate change (%s); the fps rungs are off", exc)

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
        self.pinned, self.reason, self.rung = name, "pinned", name
        if self.analysis is not None:  # a pinned tier analyses every frame the probe sends at its own rate
            self.analysis.analysis_every = 1
        self._ask_frame_rate(None)
        return f"ok: {name} pinned; it runs from the next frame (power policy off until 'tier auto')"

    def choose(self, tier: str) -> str:
        """``tier auto`` gives the choice back to the policy; any other name pins that tier."""
        return self.release() if tier == "auto" else self.pin(tier)

    def release(self) -> str:
        """Give the choice back to the policy and apply its decision now, not a period later."""
        self.pinned = None
        self.step(jump=True)
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
