"""Daemon lifecycle: wire link -> slot -> preprocessing -> engine -> results, run, report.

Start order: engine first (a bad or unsigned model set fails before the probe is touched),
then result sinks, then the probe source (simulator child on a pty, or the configured port),
then the acquisition and processing threads. Stop order is the reverse, and the frame still in
the slot is processed before the sinks close.
"""
from __future__ import annotations

import logging
import signal
import threading
import time

from firmware_py.daemon.pipeline import LatencyWindow, LatestFrameSlot, ProcessingThread
from firmware_py.daemon.simulator_process import SimulatorProcess
from firmware_py.daemon.status import Snapshot, StatusLine, format_status, format_summary
from firmware_py.errors import FirmwareError
from firmware_py.kernels import Preprocessor, largest_component, mask_area_mm2
from firmware_py.power import PolicyInputs, TierPolicy, make_battery, make_thermal
from firmware_py.results import JsonLinesSink, ResultJournal, ResultRecord

log = logging.getLogger(__name__)

POLICY_PERIOD_S = 1.0


class Daemon:
    def __init__(self, cfg, *, stop_event: threading.Event | None = None, status_stream=None,
                 sim_extra_args: list[str] | None = None):
        self.cfg = cfg
        self.stop_event = stop_event or threading.Event()
        self._status = StatusLine(status_stream) if status_stream is not None else StatusLine()
        self._sim_extra = sim_extra_args
        self.latency = LatencyWindow()
        self.slot = LatestFrameSlot()
        self._preprocessors: dict[str, object] = {}
        self._tiers_used: list[str] = []
        self._last = "-"
        self._battery_pct: float | None = None
        self._temp_c: float | None = None
        self.summary: str | None = None
        self.sim: SimulatorProcess | None = None
        self.journal: ResultJournal | None = None
        self._sinks: list = []
        self._reload = threading.Event()
        self._requested: str | None = None
        self.console = None
        self._started = time.monotonic()
        # A tier named in the configuration is pinned (rigs benchmark one tier); `auto` lets the
        # power policy choose. The console can change this at run time.
        self.policy_enabled = cfg.models.start_tier == "auto"
        self._last_tier: str | None = None

    # -- frame path (processing thread) ---------------------------------------------------
    def _preprocessor_for(self, tier):
        pp = self._preprocessors.get(tier.name)
        if pp is None:
            spec, q = tier.preprocess, tier.input.quantization
            pp = Preprocessor(spec.grid[0], spec.grid[1], scale=q.scale, zero_point=q.zero_point,
                              dynamic_range_db=spec.dynamic_range_db, mean=spec.mean, std=spec.std,
                              fill=spec.fill, speckle_filter=self.cfg.preprocess.speckle_filter,
                              threads=self.cfg.preprocess.threads)
            self._preprocessors[tier.name] = pp
        return pp

    def process_frame(self, frame) -> None:
        t0 = time.perf_counter()
        engine = self.engine
        view = engine.input_view()  # a pending tier swap happens here, between two frames
        tier = engine.active_tier
        self._preprocessor_for(tier).run(frame.samples, frame.geometry, view)
        del view  # TFLite refuses to invoke while a view into its input tensor is alive
        t1 = time.perf_counter()
        out = engine.invoke()
        t2 = time.perf_counter()
        area = None
        if out.mask is not None:  # the nodule: largest connected component, as models evaluate measures it
            area = float(mask_area_mm2(largest_component(out.mask), frame.geometry))
        received_ns = getattr(frame, "received_ns", 0)
        total_ms = (time.monotonic_ns() - received_ns) / 1e6 if received_ns else (t2 - t0) * 1000.0
        if out.tier != self._last_tier:  # a new tier: latency history of the old one no longer applies
            self.latency.clear()
            self._last_tier = out.tier
        self.latency.add((t2 - t0) * 1000.0)
        record = ResultRecord(
            seq=frame.seq, probe_time_us=frame.timestamp_us, tier=out.tier, backend=out.backend,
            label=out.label, probabilities=out.probabilities or None,
            latency_ms={"preprocess": round((t1 - t0) * 1e3, 3), "inference": round((t2 - t1) * 1e3, 3),
                        "total": round(total_ms, 3)},
            wall_time=time.time(), area_mm2=area,
            extra={"fallback": out.fallback} if out.fallback else {},
        )
        for sink in self._sinks:
            sink.write(record)
        if out.tier not in self._tiers_used:
            self._tiers_used.append(out.tier)
        if out.label is not None:
            p = out.probabilities.get(out.label, 0.0)
            self._last = f"#{frame.seq} {out.label} {p:.2f}"
        else:
            self._last = f"#{frame.seq} area {area:.0f}mm2" if area is not None else f"#{frame.seq}"

    # -- lifecycle -------------------------------------------------------------------------
    def _open_engine(self):
        from firmware_py.inference import Engine

        self.engine = Engine.from_config(self.cfg, on_event=self._on_engine_event)
        self.ladder = self.engine.ladder  # tiers of the configured task, smallest first

    def _open_sinks(self) -> None:
        out = self.cfg.output
        self._sinks = [JsonLinesSink(out.results)]
        if out.results != "-" and out.print_results:
            self._sinks.append(JsonLinesSink("-"))
        self.journal = ResultJournal(out.journal) if out.journal else None
        if self.journal:
            self._sinks.append(self.journal)

    def _open_probe(self) -> str | None:
        c = self.cfg
        self.sim = None
        if c.probe.port:
            return c.probe.port
        if c.simulator.enabled:
            self.sim = SimulatorProcess(c.simulator, extra_args=self._sim_extra)
            return self.sim.start()
        if not c.probe.vid_pid:
            raise FirmwareError("no probe source: set probe.port, probe.vid_pid, or simulator.enabled: true")
        return None

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

    def _on_link_event(self, event) -> None:
        log.info("probe event: %s", event)
        if self.journal:
            self.journal.event("probe", str(event))

    def _on_engine_event(self, event) -> None:
        log.info("engine event: %s", event)  # the engine already logs security events at ERROR
        if self.journal:
            self.journal.event("security" if event.get("security") else "engine", str(event))

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop_event.set())
        # SIGHUP: re-verify and reload the model set (after an update); a refused set keeps the old one.
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def snapshot(self, elapsed: float) -> Snapshot:
        stats = self.link.stats() if self.link else {}
        p50, p99 = self.latency.percentiles(50, 99)
        tier = self.engine.active_tier
        return Snapshot(
            elapsed_s=elapsed, received=stats.get("frames_received", 0), processed=self.proc.processed,
            dropped_stale=self.slot.dropped_stale,
            corrupt=stats.get("frames_rejected", 0) + stats.get("frames_no_buffer", 0),
            lost_gap=stats.get("frames_lost_gap", 0), rejected=self.proc.rejected,
            in_flight=stats.get("frames_in_progress", 0),
            connected=bool(stats.get("connected", False)), tier=tier.name, backend=self.engine.backend_name,
            battery_percent=self._battery_pct, temperature_c=self._temp_c, p50_ms=p50, p99_ms=p99,
            last=self._last)

    def status_text(self) -> str:
        return format_status(self.snapshot(time.monotonic() - self._started))

    def counters(self) -> dict:
        """Every frame counter in one place: link (bytes, frames), slot and processing."""
        link = self.link.stats() if self.link else {}
        keep = ("bytes_in", "bytes_accepted", "bytes_discarded", "header_errors", "frames_received",
                "frames_delivered", "frames_rejected", "frames_rejected_by_reason", "frames_no_buffer",
                "frames_in_progress", "frames_lost_gap", "connected", "reconnects", "version")
        out = {k: link[k] for k in keep if k in link}
        out.update(frames_processed=self.proc.processed, frames_dropped_stale=self.slot.dropped_stale,
                   frames_rejected_processing=self.proc.rejected, tier=self.engine.active_tier.name,
                   backend=self.engine.backend_name)
        return out

    def _policy_step(self, *, wait: bool = False) -> None:
        """Read the sensors and ask the engine for the tier the policy wants.

        wait=True (at start, before the probe is opened) loads the chosen tier synchronously so
        the first frame already runs on it; afterwards loads happen in the background and the
        engine swaps between two frames.
        """
        try:
            self._battery_pct = self.battery.read()
        except OSError as exc:
            log.warning("battery gauge unreadable (%s); keeping the current tier", exc)
            self._battery_pct = None
        try:
            self._temp_c = self.thermal.read()
        except OSError:
            self._temp_c = None
        if not self.policy_enabled:
            return
        (p90,) = self.latency.percentiles(90)
        self.ladder = self.engine.ladder
        active = self.engine.active_tier.name
        if active not in self.ladder:  # a reloaded set whose swap is still pending: decide next period
            return
        current = self.ladder.index(active)
        target = self.policy.decide(current, PolicyInputs(self._battery_pct, self._temp_c, p90))
        name = self.ladder[target]
        if target == current or (name == self._requested and not wait):
            return
        self._requested = name
        log.info("tier %s -> %s (%s)", active, name, self.policy.reason)
        try:
            self.engine.request_tier(name, wait=wait)
        except FirmwareError as exc:  # a refused tier: keep running the current one
            log.warning("tier %s refused (%s); staying on %s", name, exc, active)

    def run(self) -> int:
        c = self.cfg
        self.link = None
        self._open_engine()
        pw = c.power
        self.battery = make_battery(pw.battery, percent=pw.mock_battery_percent,
                                    drain_percent_per_min=pw.mock_drain_percent_per_min)
        self.thermal = make_thermal(pw.thermal, celsius=pw.mock_temperature_c)
        self.policy = TierPolicy(len(self.ladder), low_battery=pw.low_battery_percent,
                                 critical_battery=pw.critical_battery_percent, hot_c=pw.hot_c,
                                 hysteresis=pw.hysteresis, latency_budget_ms=pw.latency_budget_ms)
        # Start on the tier the policy picks for the current battery and temperature (a tier
        # named in the configuration is pinned instead: see __init__).
        self._policy_step(wait=True)
        self._open_sinks()
        self.proc = ProcessingThread(self.slot, self.process_frame, max_frames=c.run.max_frames,
                                     on_limit=self.stop_event.set)
        self._install_signals()
        started = self._started = time.monotonic()
        try:
            url = self._open_probe()
            self.link = self._open_link(url)
            self.proc.start()
            if c.console.port:
                from firmware_py.console import ServiceConsole

                self.console = ServiceConsole(c.console.port, self, pin_sha256=c.console.pin_sha256,
                                              baudrate=c.console.baudrate, lockout_s=c.console.lockout_s)
                self.console.start()
            next_status = started + (c.output.status_interval_s or float("inf"))
            next_policy = started
            while not self.stop_event.wait(0.05):
                now = time.monotonic()
                if c.run.duration_s and now - started >= c.run.duration_s:
                    break
                if self.proc.fatal is not None:
                    break
                if self._reload.is_set():
                    self._reload.clear()
                    ok = self.engine.reload()
                    log.warning("model set reload %s", "done" if ok else "refused; the previous set stays active")
                    self.ladder = self.engine.ladder
                if now >= next_policy:
                    self._policy_step()
                    next_policy = now + POLICY_PERIOD_S
                if now >= next_status:
                    self._status.show(format_status(self.snapshot(now - started)))
                    next_status = now + c.output.status_interval_s
        finally:
            self._shutdown()
        snap = self.snapshot(time.monotonic() - started)
        self._status.finish()
        self.summary = format_summary(snap, self._tiers_used)
        if self.proc.fatal is not None:
            raise FirmwareError(f"processing failed: {self.proc.fatal!r}; see the log above")
        return 0

    def _shutdown(self) -> None:
        if self.console is not None:
            self.console.stop()
        if self.link is not None:
            self.link.stop()
        self.proc.stop()
        if self.proc.is_alive():
            self.proc.join(10)
        if self.sim is not None:
            self.sim.stop()
        for sink in self._sinks:
            sink.close()
        self.engine.close()
