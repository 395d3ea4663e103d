"""Daemon: composition and lifecycle. The frame path, the tier choice and the commands live elsewhere.

Parts (every one built in ``_compose`` unless the caller injects it, so tests of the logic need
no child process):

    engine        firmware_py.inference.Engine          the model set and the active tier
    battery, thermal, policy                            inputs and rules of the tier choice
    tiers         daemon.tiers.TierController           alone decides pinned / policy
    sinks         results sinks                         where each ResultRecord goes
    frames        daemon.frames.FrameProcessor          one frame: preprocess -> invoke -> record
    probe         a probe source: start() -> url        simulator child on a pty, or the port
    link          drivers.link.ProbeLink                acquisition thread
    proc          daemon.pipeline.ProcessingThread      processing thread
    commands      daemon.commands.CommandQueue          console, signals, later remote channels
    notifier      daemon.systemd.SystemdNotifier        READY / STATUS / WATCHDOG / STOPPING

Threads: the acquisition thread (link) frames bytes into the slot; the processing thread runs
``frames.process`` and feeds the systemd watchdog while the pipeline is healthy; the control thread (the one that called ``run``) applies commands in order,
steps the tier controller every policy period and shows the status line. Only the control thread
changes what the device does.

Start order: engine first (a bad or unsigned model set fails before the probe is touched),
then sinks, then the probe source, then the acquisition and processing threads, then the console.
Stop order is the reverse, and the frame still in the slot is processed before the sinks close.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from typing import Callable

from firmware_py.daemon.commands import CommandQueue
from firmware_py.daemon.frames import FrameProcessor
from firmware_py.daemon.pipeline import LatencyWindow, LatestFrameSlot, ProcessingThread
from firmware_py.daemon.reconfigure import apply_config
from firmware_py.daemon.simulator_process import SimulatorProcess
from firmware_py.daemon.startup import startup_selftest
from firmware_py.daemon.status import Snapshot, StatusLine, format_status, format_summary
from firmware_py.daemon.systemd import SystemdNotifier
from firmware_py.daemon.tiers import TierController
from firmware_py.errors import ConfigError, FirmwareError
from firmware_py.power import TierPolicy, make_battery, make_monitor, make_thermal
from firmware_py.power.energy import EnergyMeter, PowerModel
from firmware_py.results import SINKS, ResultJournal
from firmware_py.results.sinks import ResultFeed

log = logging.getLogger(__name__)

POLICY_PERIOD_S = 1.0
CONTROL_TICK_S = 0.05  # how long the control thread waits for a command before its periodic work
NOTIFY_STATUS_S = 2.0  # STATUS= period for systemd when the status line is off


class ConfiguredPort:
    """The probe source when ``probe.port`` (or ``probe.vid_pid``) names the real probe."""

    def __init__(self, url: str | None):
        self.url = url

    def start(self) -> str | None:
        if self.url:
            _check_port_url(self.url)
        return self.url

    def failure(self) -> Exception | None:
        return None  # an unplugged probe is the link's business: it reconnects and reports

    def stop(self) -> None:
        pass


def _check_port_url(url: str) -> None:
    """A URL pyserial cannot even parse is a configuration mistake, not a probe to wait for."""
    import serial

    try:
        serial.serial_for_url(url, do_not_open=True)
    except ValueError as exc:
        raise ConfigError(f"probe.port {url!r} is not a device path or pyserial URL ({exc}); use e.g. "
                          "/dev/serial/by-id/usb-... or /dev/ttyACM0") from None


class AbsentSensor:
    """A configured sensor whose hardware is not there: every read fails like an unplugged gauge,
    so the selftest warns and the policy treats the reading as unknown."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason

    def read(self):
        raise OSError(19, self.reason)


def _sensor_or_absent(make, power, key: str):
    try:
        return make(power)
    except OSError as exc:
        return AbsentSensor(key, str(exc))


class Daemon:
    def __init__(self, cfg, *, stop_event: threading.Event | None = None, status_stream=None,
                 sim_extra_args: list[str] | None = None, engine=None, battery=None, thermal=None, monitor=None,
                 policy=None, sinks=None, probe=None, notifier: SystemdNotifier | None = None,
                 policy_period_s: float = POLICY_PERIOD_S, config_loader: Callable[[], object] | None = None,
                 config_path: str | None = None):
        self.cfg = cfg
        self.config_path = config_path  # the file cfg came from: the selftest checks who may write it
        self._config_loader = config_loader  # re-reads the configuration on reload (SIGHUP)
        self.stop_event = stop_event or threading.Event()
        self._status = StatusLine(status_stream) if status_stream is not None else StatusLine()
        self._sim_extra = sim_extra_args
        self.policy_period_s = policy_period_s
        # Injected parts (None: _compose builds them from the configuration).
        self.engine, self.battery, self.thermal, self.policy = engine, battery, thermal, policy
        self.monitor = monitor  # the board's power monitor (power.monitor.kind), or None
        self._given_sinks, self.probe = sinks, probe
        self.notifier = notifier or SystemdNotifier()
        self.latency = LatencyWindow()
        self.slot = LatestFrameSlot()
        self.commands = CommandQueue({"tier": self._cmd_tier, "reload": self._cmd_reload,
                                      "probe": self._cmd_probe, "restart": self._cmd_restart,
                                      "record": self._cmd_record, "battery": self._cmd_battery})
        self.result_feed = ResultFeed()  # live results for the console's watch
        self.journal: ResultJournal | None = None
        self.sinks: list = []
        self.link = None
        self.console = None
        self.proc: ProcessingThread | None = None
        self.summary: str | None = None
        self._started = time.monotonic()
        self._previous_handlers: dict = {}
        self.selftest_warnings: list[str] = []
        self._failure: FirmwareError | None = None  # a part asked the daemon to stop with this error
        self.run_id = uuid.uuid4().hex[:12]

    @property
    def policy_enabled(self) -> bool:
        """False while a tier is pinned (by ``models.start_tier`` or a ``tier NAME`` command)."""
        return self.tiers.pinned is None

    # -- composition -------------------------------------------------------------------------
    def _compose(self) -> None:
        c = self.cfg
        self._check_trust()
        if self.engine is None:
            from firmware_py.inference import Engine

            self.engine = Engine.from_config(c, on_event=self._on_engine_event)
        if self.battery is None:
            self.battery = _sensor_or_absent(make_battery, c.power, "power.battery")
        if self.thermal is None:
            self.thermal = _sensor_or_absent(make_thermal, c.power, "power.thermal")
        if self.monitor is None and c.power.monitor.kind != "none":
            self.monitor = _sensor_or_absent(make_monitor, c.power, "power.monitor")
        if self.policy is None:
            self.policy = TierPolicy.from_config(c.power, len(self.engine.ladder))
        # A tier named in the configuration is pinned (rigs benchmark one tier); `auto` lets the
        # power policy choose.
        start = c.models.start_tier
        if start != "auto" and self.engine.active_tier.name != start:
            why = self.engine.status()["refused"].get(start, "see the log above")
            raise FirmwareError(f"models.start_tier {start} cannot be loaded ({why}); fix or re-sign that "
                                "model, pin another tier, or set models.start_tier: auto")
        self.energy = EnergyMeter(PowerModel.from_config(c.power.model))
        if hasattr(self.battery, "attach_load"):  # a simulated pack: drained by what the meter says is drawn
            self.battery.attach_load(lambda: self.energy.current_w)
        self.frames = FrameProcessor(self.engine, self.sinks, self.latency, c.preprocess, run_id=self.run_id,
                                     energy=self.energy)
        self.tiers = TierController(self.engine, self.policy, self.battery, self.thermal, self.latency,
                                    pinned=None if start == "auto" else self.engine.active_tier.name,
                                    analysis=self.frames, probe_command=self._probe_rate_command,
                                    link_stats=lambda: self.link.stats() if self.link else {},
                                    monitor=self.monitor)
        if self.probe is None:
            self.probe = self._probe_source()
        self.proc = ProcessingThread(self.slot, self.frames.process, max_frames=c.run.max_frames,
                                     on_limit=self.stop_event.set, on_tick=self._feed_watchdog)

    def _check_trust(self) -> None:
        """Secure by default: the development key (its private half is in the repository) is trusted
        only on a development unit, which the built-in simulator as the probe implies."""
        c = self.cfg
        simulated = not c.probe.port and not c.probe.vid_pid and c.simulator.enabled
        if self.engine is None and not c.models.public_key and not (c.models.development_device or simulated):
            raise ConfigError("models.public_key is not set, so only the development key, whose private half is "
                              "public, would verify the models; set models.public_key to your production key (or "
                              "models.development_device: true on a bench unit)")

    def _open_sinks(self) -> None:
        if self._given_sinks is not None:
            self.sinks.extend(self._given_sinks + [self.result_feed])
            return
        self.sinks.extend(SINKS.open(self.cfg.output))
        self.journal = next((s for s in self.sinks if isinstance(s, ResultJournal)), None)
        if self.journal is not None:
            # Durable first: the frame processor writes to the journal only, and the journal passes
            # each result on to the other sinks once its batch is committed.
            self.journal.downstream = [s for s in self.sinks if s is not self.journal] + [self.result_feed]
            self.journal.run_id = self.run_id
            self.journal.on_failure = self._journal_failed
            self.sinks[:] = [self.journal]
        else:
            self.sinks.append(self.result_feed)

    def _probe_source(self):
        c = self.cfg
        if c.probe.port:
            return ConfiguredPort(c.probe.port)
        if c.simulator.enabled:
            return SimulatorProcess(c.simulator, extra_args=self._sim_extra)
        if not c.probe.vid_pid:
            raise FirmwareError("no probe source: set probe.port, probe.vid_pid, or simulator.enabled: true")
        return ConfiguredPort(None)  # ProbeLink finds the port by probe.vid_pid

    def _open_link(self, url: str | None):
        from firmware_py.drivers.link import ProbeLink

        p = self.cfg.probe
        link = ProbeLink(url=url, vid_pid=p.vid_pid, baudrate=p.baudrate, handshake_timeout=p.handshake_timeout_s,
                         backoff_initial=p.reconnect_initial_s, backoff_max=p.reconnect_max_s,
                         max_payload=p.max_frame_bytes, record_path=p.record_path,
                         record_max_bytes=p.record_max_bytes, exclusive=p.exclusive,
                         stall_timeout=p.stall_timeout_s, silence_timeout=p.silence_timeout_s,
                         pool_buffers=p.pool_buffers, pool_max_buffers=p.pool_max_buffers)
        link.start(sink=self.slot.put, on_event=self._on_link_event)
        return link

    def _open_console(self) -> None:
        c = self.cfg.console
        if not c.port:
            return
        from firmware_py.console import ServiceConsole

        self.console = ServiceConsole.from_config(c, self)
        self.console.start()

    def _on_link_event(self, event) -> None:
        log.info("probe event: %s", event)
        if self.journal:
            self.journal.event("probe", event)

    def _on_engine_event(self, event) -> None:
        log.info("engine event: %s", event)  # the engine already logs security events at ERROR
        if self.journal:
            self.journal.event("security" if event.get("security") else "engine", event)

    def _journal_failed(self, reason: str) -> None:
        """output.journal_on_error: stop. Results already accepted are emitted, marked undurable."""
        self._failure = FirmwareError(f"{reason}; stopped as output.journal_on_error says; free space or fix "
                                      "output.journal")
        self.stop_event.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        handlers = {signal.SIGINT: lambda *_: self.stop_event.set(),
                    signal.SIGTERM: lambda *_: self.stop_event.set(),
                    # SIGHUP: re-verify and reload the model set (after an update); a refused set keeps
                    # the old one. Posted like any other command, so it cannot race a console reload.
                    signal.SIGHUP: lambda *_: self.commands.post("reload", source="signal")}
        self._previous_handlers = {sig: signal.signal(sig, h) for sig, h in handlers.items()}

    def _restore_signals(self) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers = {}

    # -- commands (applied on the control thread, in order) ------------------------------------
    def _cmd_battery(self, action: str) -> str:
        """plug / unplug the charger of a simulated battery (tests, demos)."""
        if not hasattr(self.battery, action):
            raise FirmwareError(f"the battery ({self.battery.name}) is not simulated, so it cannot be {action}ged "
                                "from here; set power.battery.kind: simulated, or plug the charger itself")
        getattr(self.battery, action)()
        return f"ok: simulated battery {action}ged"

    def _tick_energy(self) -> None:
        """Control thread, before each policy step: account the period that ended, on the rung it ran."""
        r = self.tiers.readings
        # A measured draw (power monitor, a real gauge), never the simulated pack's echo of the meter's own.
        measured = r.power_w if r.power_source and r.power_source != "simulated" else None
        self.energy.tick(fps=r.frame_rate_fps, active_tier=self.engine.active_tier.name, measured_w=measured,
                         rung=self.tiers.rung)

    def energy_status(self) -> dict:
        """Energy per tier, mean and current watts, remaining runtime at the current rung."""
        r = self.tiers.readings
        return {**self.energy.snapshot(r.battery_percent, getattr(self.battery, "capacity_wh", None)),
                "rung": self.tiers.rung or self.engine.active_tier.name}

    def _cmd_tier(self, tier: str) -> str:
        return self.tiers.choose(tier)

    def _cmd_reload(self) -> str:
        """The configuration (when the daemon was started from a file), then the model set."""
        said = []
        if self._config_loader is not None:
            try:
                said.append(apply_config(self, self._config_loader()))
            except ConfigError as exc:  # a broken edit must not take the device down
                log.error("configuration not reloaded: %s; the running one stays", exc)
                said.append(f"configuration kept ({exc})")
        ok = self.engine.reload()
        if not ok:
            raise FirmwareError("; ".join(said + ["the new model set was refused; the previous one stays"]))
        self.tiers.model_set_reloaded()
        return "ok: " + "; ".join(said + [f"model set reloaded; ladder {', '.join(self.engine.ladder)}"])

    def _cmd_probe(self, command: str, value: float) -> str:
        if self.link is None:
            raise FirmwareError("the probe link is not open yet; try again in a moment")
        ack = self.link.send_command(command, value)
        return f"ok: probe acknowledged {command}={ack.value:g}" + (f" ({ack.message})" if ack.message else "")

    def _probe_rate_command(self, command: str, value: float) -> bool:
        """The tier controller's probe rung (control thread): False while the link is down."""
        if self.link is None or not self.link.connected:
            return False
        self._cmd_probe(command, value)
        return True

    def _cmd_record(self, action: str, path: str | None = None) -> str:
        """Start or stop recording the probe's raw stream; the link is reopened to open or close the file."""
        if self.link is None:
            raise FirmwareError("the probe link is not open yet; try again in a moment")
        if action == "start":
            path = path or self.cfg.probe.record_path
            if not path:
                raise FirmwareError("no recording path: give record start PATH or set probe.record_path")
        self.link.record_path = path if action == "start" else None
        self._cmd_restart()
        return f"ok: recording the probe to {path}" if action == "start" else "ok: recording stopped"

    def _cmd_restart(self) -> str:
        """Reopen the probe link (a new session and handshake); counters carry on."""
        if self.link is None:
            raise FirmwareError("the probe link is not open yet; try again in a moment")
        self.link.stop()
        self.link.start(sink=self.slot.put, on_event=self._on_link_event)
        return "ok: probe link restarted"

    # -- health ------------------------------------------------------------------------------
    def _feed_watchdog(self) -> None:
        """Processing thread, after each frame or idle wait: ping systemd while the pipeline is whole.

        An idle link (probe frozen or unplugged) is reported, not fatal: the acquisition thread is
        still alive and reconnecting. A processing thread stuck in a frame stops calling this.
        """
        if self.link is not None and self.link.alive:
            self.notifier.watchdog()

    # -- status ------------------------------------------------------------------------------
    def snapshot(self, elapsed: float) -> Snapshot:
        stats = self.link.stats() if self.link else {}
        p50, p99 = self.latency.percentiles(50, 99)
        r = self.tiers.readings
        energy = self.energy_status()
        skipped = self.frames.skipped_by_rate  # read first: the processing thread counts it before processed
        # Intact frames the link could not hand on (no free buffer, or before the handshake) are
        # dropped frames, not corrupt ones: "corrupt" is only what failed its CRC or decoding.
        early = stats.get("frames_rejected_by_reason", {}).get("no_handshake", 0)
        intact = stats.get("frames_no_buffer", 0) + early
        return Snapshot(
            elapsed_s=elapsed, received=stats.get("frames_received", 0), processed=self.proc.processed - skipped,
            skipped_rate=skipped, rung=self.tiers.rung, reason=self.tiers.reason, sensor_faults=r.faults,
            dropped_stale=self.slot.dropped_stale,
            corrupt=stats.get("frames_rejected", 0) - early, dropped_intact=intact,
            lost_gap=stats.get("frames_lost_gap", 0), rejected=self.proc.rejected,
            in_flight=stats.get("frames_in_progress", 0),
            connected=bool(stats.get("connected", False)), tier=self.engine.active_tier.name,
            backend=self.engine.backend_name, battery_percent=r.battery_percent, temperature_c=r.temperature_c,
            p50_ms=p50, p99_ms=p99, last=self.frames.last, link_error=stats.get("last_error") or "",
            warnings=self.selftest_warnings, indeterminate=dict(self.frames.indeterminate), power_w=r.power_w, draw_w=energy["current_w"],
            remaining_h=energy["remaining_h"])

    def status_text(self) -> str:
        return format_status(self.snapshot(time.monotonic() - self._started))

    def counters(self) -> dict:
        """Every frame counter in one place: link (bytes, frames), slot and processing."""
        link = self.link.stats() if self.link else {}
        keep = ("bytes_in", "bytes_accepted", "bytes_discarded", "header_errors", "frames_received",
                "frames_delivered", "frames_rejected", "frames_rejected_by_reason", "frames_no_buffer",
                "frames_in_progress", "frames_lost_gap", "connected", "reconnects", "version")
        out = {k: link[k] for k in keep if k in link}
        skipped = self.frames.skipped_by_rate
        out.update(frames_processed=self.proc.processed - skipped, frames_skipped_by_rate=skipped,
                   frames_dropped_stale=self.slot.dropped_stale,
                   frames_rejected_processing=self.proc.rejected, tier=self.engine.active_tier.name,
                   backend=self.engine.backend_name, tier_mode=self.tiers.mode,
                   selftest_warnings=self.selftest_warnings,
                   results_indeterminate=sum(self.frames.indeterminate.values()),
                   results_indeterminate_by_reason=dict(self.frames.indeterminate))
        outputs = self.sinks + (self.journal.downstream if self.journal else [])
        for sink in outputs:  # the journal's and the host channel's delivery counters
            if hasattr(sink, "stats"):
                out[type(sink).__name__] = sink.stats()
        return out

    # -- lifecycle -----------------------------------------------------------------------------
    def run(self) -> int:
        c = self.cfg
        self._compose()
        # Start on the tier the policy picks for the current battery and temperature (a pinned
        # tier is loaded by the engine already).
        self.tiers.step(wait=True)
        self._open_sinks()
        self.selftest_warnings = startup_selftest(self)
        self._install_signals()
        started = self._started = time.monotonic()
        try:
            self.link = self._open_link(self.probe.start())
            self.proc.start()
            self._open_console()
            verdict = "; ".join(self.selftest_warnings) or "selftest ok"
            self.notifier.ready(f"running tier {self.engine.active_tier.name} on {self.engine.backend_name}; "
                                f"{verdict}")
            self._control_loop(started)
        finally:
            self.notifier.stopping()
            self._shutdown()
        snap = self.snapshot(time.monotonic() - started)
        self._status.finish()
        self.summary = format_summary(snap, self.frames.tiers_used)
        if self.proc.fatal is not None:
            raise FirmwareError(f"processing failed: {self.proc.fatal!r}; see the log above")
        if self._failure is not None:
            raise self._failure
        if snap.received == 0 and not self.stop_event.is_set():
            # A bounded run (a demo, a rig) that never saw a frame failed, whatever the reason.
            why = snap.link_error or "the probe sent nothing"
            raise FirmwareError(f"no frame received in {snap.elapsed_s:.0f} s ({why}); check probe.port, the "
                                "cable and that the probe is streaming")
        return 0

    def _control_loop(self, started: float) -> None:
        c = self.cfg
        # The status line's period; under systemd STATUS= is refreshed even when the line is off.
        status_period = c.output.status_interval_s or (NOTIFY_STATUS_S if self.notifier.enabled else 0.0)
        next_status = started + status_period if status_period else float("inf")
        next_policy = started
        while not self.stop_event.is_set():
            self.commands.apply_pending(timeout=CONTROL_TICK_S)
            now = time.monotonic()
            if c.run.duration_s and now - started >= c.run.duration_s:
                break
            if self.proc.fatal is not None:
                break
            problem = self.probe.failure()
            if problem is not None:
                raise problem
            if now >= next_policy:
                self._tick_energy()  # the period just ended, on the rung it ran
                self.tiers.step()
                next_policy = now + self.policy_period_s
            if now >= next_status:
                line = format_status(self.snapshot(now - started))
                if c.output.status_interval_s:
                    self._status.show(line)
                self.notifier.status(line)
                next_status = now + status_period

    def _shutdown(self) -> None:
        if self.console is not None:
            self.console.stop()
        self.commands.close("the daemon is stopping")
        if self.link is not None:
            self.link.stop()
        self.proc.stop()
        if self.proc.is_alive():
            self.proc.join(10)
        self.probe.stop()
        for sink in self.sinks:
            sink.close()
        self.engine.close()
        self.notifier.close()
        self._restore_signals()
