"""Where the battery's energy goes: a power model of board, accelerator and probe, and the daemon's meter.

The model (``power.model``) is whole-device power as a sum of parts:

    W = board_idle_w + accel_idle_w + probe(fps)                      always, while scanning
      + board_core_w x busy cores  (CPU seconds per second)           the work of each frame
      + (accel_active_w - accel_idle_w) x accelerator busy share
    probe(fps) = probe_static_w + (probe_w - probe_static_w) x fps / probe_fps

so the energy of one inference is its measured CPU seconds x ``board_core_w`` plus its
accelerator seconds x the accelerator's active power above idle. With an INA219/INA260 on the rig
(``Readings.power_w``) the measured watts replace the model's total, and the part above the
model's baseline is shared among the period's inferences by their CPU time.

Preset figures and where they come from (stated again in docs/benchmarks.md):

* Raspberry Pi 4 B: 2.7 W idle (540 mA at 5 V) and 6.4 W with all four cores under stress
  (1280 mA), RasPi.TV's published Pi 4 power measurements (Alex Eames, 2019); per busy core
  (6.4 - 2.7) / 4 = 0.925 W. Chipwired's 36 Pi 4 measurements (2.3-3.0 W idle, 5.1-6.3 W high
  load) agree.
* Raspberry Pi 5: about 3 W idle (u-labs.de's Pi 5 measurements); 1.3 W per busy core is an
  ESTIMATE from published stress-ng reviews (roughly 8 W with four cores busy), not a datasheet
  figure.
* Coral USB Accelerator: 2 W at its 4 TOPS peak ("4 TOPS using 2 watts", Coral USB Accelerator
  datasheet v1.4 and coral.ai/technology). Its idle draw (0.5 W here) is an ESTIMATE: the
  datasheet gives none.
* Probe front end: 2.0 W at 30 frames a second, 0.5 W of it not scaling with frame rate, is an
  ESTIMATE built from TI's AFE5818 datasheet (16-channel ultrasound receive AFE, 91.5 mW per
  channel at 40 MSPS): 32 receive channels are 2.9 W while acquiring; 128 lines at about 10 cm
  (130 us round trip each) fill half of each frame period at 30 fps, so about 1.5 W at 30 fps
  with the AFE powered down between frames, plus 0.5 W for pulsers, clock, FPGA and USB.
  No published whole-probe figure was at hand; replace it with the probe's own measurement.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

from firmware_py.registry import Key, Section

# name -> figures (W, and the frame rate probe_w is stated at); sources in the module docstring.
_BOARDS = {"pi4": {"board_idle_w": 2.7, "board_core_w": 0.925}, "pi5": {"board_idle_w": 3.0, "board_core_w": 1.3}}
_NO_ACCEL = {"accel_idle_w": 0.0, "accel_active_w": 0.0}
_CORAL_USB = {"accel_idle_w": 0.5, "accel_active_w": 2.0}
_PROBE = {"probe_w": 2.0, "probe_static_w": 0.5, "probe_fps": 30.0}
PRESETS: dict[str, dict[str, float]] = {
    "pi4-cpu": {**_BOARDS["pi4"], **_NO_ACCEL, **_PROBE},
    "pi4-edgetpu": {**_BOARDS["pi4"], **_CORAL_USB, **_PROBE},
    "pi5-cpu": {**_BOARDS["pi5"], **_NO_ACCEL, **_PROBE},
    "pi5-edgetpu": {**_BOARDS["pi5"], **_CORAL_USB, **_PROBE},
}
FIGURES = tuple(PRESETS["pi4-cpu"])


def _figure(doc: str, **kw) -> Key:
    return Key("float", None, doc + " `null`: the preset's figure.", nullable=True, min=0, max=1000, **kw)


SECTION = Section({
    "preset": Key("str", "pi4-cpu", "Named figures (sources in docs/benchmarks.md): `pi4-cpu` Raspberry Pi 4 B, "
                  "`pi4-edgetpu` plus a Coral USB Accelerator, `pi5-cpu`, `pi5-edgetpu`; each figure below "
                  "overrides the preset's.", choices=tuple(PRESETS)),
    "board_idle_w": _figure("Whole board, idle (W)."),
    "board_core_w": _figure("Added per busy CPU core (W): an inference costs its CPU seconds times this."),
    "accel_idle_w": _figure("Accelerator attached and idle (W)."),
    "accel_active_w": _figure("Accelerator while it runs an inference (W)."),
    "probe_w": _figure("Probe front end at `probe_fps` (W)."),
    "probe_static_w": _figure("The part of `probe_w` that does not scale with the frame rate (W)."),
    "probe_fps": _figure("Frame rate `probe_w` is stated at; the rest scales linearly with the frame rate."),
    "battery_wh": Key("float", 18.5, "Pack capacity (Wh) for the remaining-runtime estimate when the gauge "
                      "reports only percent (a `simulated` battery uses its own). 18.5: one 3.7 V 5 Ah cell.",
                      min=0.01, max=10000),
}, doc="The power model behind energy per inference, mean watts and the remaining runtime (see "
       "firmware_py/power/energy.py).")


@dataclass(frozen=True)
class PowerModel:
    name: str
    board_idle_w: float
    board_core_w: float
    accel_idle_w: float
    accel_active_w: float
    probe_w: float
    probe_static_w: float
    probe_fps: float
    battery_wh: float = 18.5

    @classmethod
    def preset(cls, name: str, **overrides) -> "PowerModel":
        if name not in PRESETS:
            raise ValueError(f"unknown power model preset {name!r}; use one of {', '.join(PRESETS)}")
        return cls(name, **{**PRESETS[name], **overrides})

    @classmethod
    def from_config(cls, section) -> "PowerModel":
        """From the typed ``power.model`` section: the preset, with any figure set there replacing its own."""
        given = {k: getattr(section, k) for k in FIGURES if getattr(section, k) is not None}
        name = section.preset + (" (" + ", ".join(f"{k} {v:g}" for k, v in given.items()) + ")" if given else "")
        return replace(cls.preset(section.preset, battery_wh=section.battery_wh, **given), name=name)

    def probe_power(self, fps: float | None) -> float:
        """The front end at ``fps`` frames a second (None: at the rate its figure is stated at)."""
        share = 1.0 if fps is None or not self.probe_fps else fps / self.probe_fps
        return self.probe_static_w + (self.probe_w - self.probe_static_w) * share

    def baseline_w(self, fps: float | None) -> float:
        """Drawn whatever the model does: board and accelerator idle, the probe scanning at ``fps``."""
        return self.board_idle_w + self.accel_idle_w + self.probe_power(fps)

    def inference_j(self, cpu_s: float, accel_s: float = 0.0) -> float:
        """The energy one inference adds above the baseline."""
        return cpu_s * self.board_core_w + accel_s * max(0.0, self.accel_active_w - self.accel_idle_w)

    def draw_w(self, fps: float | None, analysed_fps: float, cpu_s: float, accel_s: float = 0.0) -> float:
        """Mean power while the probe runs at ``fps`` and ``analysed_fps`` frames a second are analysed,
        each taking ``cpu_s`` CPU and ``accel_s`` accelerator seconds."""
        return self.baseline_w(fps) + analysed_fps * self.inference_j(cpu_s, accel_s)

    def describe(self) -> dict:
        return {"name": self.name, **{k: getattr(self, k) for k in FIGURES}, "battery_wh": self.battery_wh}


def remaining_s(battery_percent: float | None, capacity_wh: float, draw_w: float | None) -> float | None:
    """Seconds the charge left lasts at ``draw_w``; None when either is unknown."""
    if battery_percent is None or not draw_w or draw_w <= 0:
        return None
    return capacity_wh * 3600.0 * max(0.0, battery_percent) / 100.0 / draw_w


@dataclass
class _TierEnergy:
    inferences: int = 0
    cpu_s: float = 0.0
    accel_s: float = 0.0
    joules: float = 0.0  # energy of its inferences above the baseline
    active_j: float = 0.0  # everything drawn while it was the active tier (baseline included)


class EnergyMeter:
    """Cumulative energy per tier, mean and current watts, for the status and the console.

    ``add_inference`` runs on the processing thread (after each analysed frame); ``tick`` on the
    control thread every policy period. ``current_w`` is the mean over the last ``window_s`` on the
    current rung (a new rung starts the window again, so the runtime left is the current rung's).
    """

    def __init__(self, model: PowerModel, *, window_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.model, self.window_s, self._clock = model, window_s, clock
        self._lock = threading.Lock()
        self._tiers: dict[str, _TierEnergy] = {}
        self._pending: dict[str, list[float]] = {}  # tier -> [cpu_s, accel_s] since the last tick
        self._started = self._last = clock()
        self.total_j = 0.0
        self._recent: collections.deque[tuple[float, float, float]] = collections.deque()  # (t, dt, J)
        self.source = "model"
        self._rung: str | None = None

    def add_inference(self, tier: str, cpu_s: float, accel_s: float = 0.0) -> None:
        with self._lock:
            pending = self._pending.setdefault(tier, [0.0, 0.0])
            pending[0] += cpu_s
            pending[1] += accel_s
            t = self._tiers.setdefault(tier, _TierEnergy())
            t.inferences += 1

    def tick(self, *, fps: float | None, active_tier: str | None, measured_w: float | None = None,
             rung: str | None = None) -> float:
        """Account the time since the last tick (spent on ``rung``); returns the period's mean watts."""
        now = self._clock()
        dt = max(0.0, now - self._last)
        self._last = now
        with self._lock:
            pending, self._pending = self._pending, {}
            m = self.model
            work = {name: m.inference_j(c, a) for name, (c, a) in pending.items()}
            base = m.baseline_w(fps) * dt
            if measured_w is not None:  # the INA's total; the part above the baseline goes to the work
                total = measured_w * dt
                above, cpu = max(0.0, total - base), sum(c for c, _ in pending.values())
                work = {name: above * (c / cpu if cpu else 1.0 / len(pending)) for name, (c, _) in pending.items()}
                self.source = "ina"
            else:
                total = base + sum(work.values())
                self.source = "model"
            for name, (c, a) in pending.items():
                t = self._tiers.setdefault(name, _TierEnergy())
                t.cpu_s, t.accel_s, t.joules = t.cpu_s + c, t.accel_s + a, t.joules + work[name]
            if active_tier is not None:
                self._tiers.setdefault(active_tier, _TierEnergy()).active_j += total
            self.total_j += total
            if rung != self._rung:
                self._recent.clear()
                self._rung = rung
            self._recent.append((now, dt, total))
            while self._recent and now - self._recent[0][0] > self.window_s:
                self._recent.popleft()
        return total / dt if dt else 0.0

    @property
    def current_w(self) -> float | None:
        """Mean watts over the last ``window_s`` (None before the first period)."""
        with self._lock:
            dt = sum(d for _, d, _ in self._recent)
            return sum(j for _, _, j in self._recent) / dt if dt else None

    @property
    def mean_w(self) -> float | None:
        elapsed = self._last - self._started
        return self.total_j / elapsed if elapsed > 0 else None

    def snapshot(self, battery_percent: float | None, capacity_wh: float | None = None) -> dict:
        """Everything the status line and the ``power`` console command show."""
        current = self.current_w
        cap = capacity_wh or self.model.battery_wh
        left = remaining_s(battery_percent, cap, current)
        with self._lock:
            tiers = {name: {"inferences": t.inferences, "cpu_ms_per_inference":
                            round(1e3 * t.cpu_s / t.inferences, 3) if t.inferences else None,
                            "mj_per_inference": round(1e3 * t.joules / t.inferences, 3) if t.inferences else None,
                            "inference_j": round(t.joules, 3), "active_j": round(t.active_j, 3)}
                     for name, t in self._tiers.items()}
        mean = self.mean_w
        return {"model": self.model.name, "source": self.source, "total_j": round(self.total_j, 2),
                "mean_w": None if mean is None else round(mean, 3),
                "current_w": None if current is None else round(current, 3),
                "battery_wh": cap, "remaining_h": None if left is None else round(left / 3600.0, 3),
                "tiers": tiers}
