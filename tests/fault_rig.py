"""The rig of tests/test_fault_injection.py: the real Daemon (real engine on a signed test model
set, journal and JSON-lines sinks on real files) fed by the probe simulator over a real
pseudo-terminal, with hooks to break each part while frames flow and the ledger to check after.

The probe serves its pty from a thread and sits behind a symlink (like /dev/serial/by-id), so an
unplug closes the pty for good and a replug is a new pty: no pty number closed here is reopened.
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import sqlite3
import threading
import time
import tty

from firmware_py.config import load_config
from firmware_py.daemon.runner import Daemon
from firmware_py.drivers.faults import FaultConfig
from firmware_py.drivers.probe_sim import ProbeSimulator
from firmware_py.drivers.sources import PhantomSource
from firmware_py.inference import Engine
from tests.conftest_drivers import SimThread, small_geometry, wait_for
from tests.data.model_sets import make_model_set

# Faults after which the frame that carried them cannot be intact (the simulator logs each).
DAMAGING = {"bit_flip", "drop_bytes", "truncate"}
TWO_TIERS = [{"name": "small", "cpu": "cls_int8.tflite", "rank": 0},
             {"name": "large", "cpu": "cls_int8_b.tflite", "rank": 1}]
# How long the rig waits for work it started to be done (a functional wait, not a claim).
SETTLE_S = 30.0


class Thermometer:
    name = "test"

    def read(self) -> float:
        return 40.0


class EngineEvents:
    """``on_event`` for an engine built before its daemon: forwards to the daemon once it exists,
    as ``Engine.from_config(cfg, on_event=daemon._on_engine_event)`` wires it in production (the
    daemon journals engine and security events)."""

    def __init__(self):
        self.target = None

    def __call__(self, event: dict) -> None:
        if self.target is not None:
            self.target(event)


def signed_engine(folder, tiers=None, **options):
    """A real engine on a signed test model set in ``folder``; its events reach the daemon."""
    s = make_model_set(str(folder), tiers or TWO_TIERS)
    events = EngineEvents()
    return Engine(s["dir"], public_key=s["public"], on_event=events, **options), events


class FaultProbe:
    """Probe source for ``Daemon(probe=...)``: ``start()`` plugs it in and returns the symlink."""

    def __init__(self, folder, *, geometry=None, fps: float = 60.0, faults: FaultConfig | None = None,
                 seed: int = 1, **sim_options):
        self.path = os.path.join(str(folder), "probe")
        self.sim = ProbeSimulator(PhantomSource(geometry or small_geometry(32, 64)), fps=fps, faults=faults,
                                  seed=seed, **sim_options)
        self.sim.on_frame = self._after_frame
        self._halt = threading.Event()
        self._fds: tuple[int, int] | None = None
        self._thread: SimThread | None = None
        self.plugs = 0

    # -- the probe source interface ------------------------------------------------------------
    def start(self) -> str:
        self._plug()
        return self.path

    def failure(self):
        return None

    def stop(self) -> None:
        self.unplug()

    # -- faults --------------------------------------------------------------------------------
    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        tmp = self.path + ".tmp"
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)  # re-pointed before the old pty is gone: the link never opens a dead one
        self._fds = (master, slave)
        self.plugs += 1
        self._thread = SimThread(self.sim, master)

    def _after_frame(self, *_):
        if self._halt.is_set():
            self.sim.stop()  # between two frames: the loop ends before the next one starts

    def silence(self, *, between_frames: bool = True) -> None:
        """The probe stops sending anything (hung firmware); the line stays. between_frames: after
        the frame being written (else a frame may be cut where the line was full)."""
        if self._thread is None:
            return
        if between_frames:
            self._halt.set()
            wait_for(lambda: not self._thread.thread.is_alive(), 2.0)  # a frame period, or a stall
            self._halt.clear()
        self._thread.stop()
        self._thread = None

    def speak(self, *, reboot: bool = False) -> None:
        """Sending again on the same line; reboot=True: it restarted and waits for a hello."""
        self.sim.rearm(reboot=reboot)
        self._thread = SimThread(self.sim, self._fds[0])

    def unplug(self) -> None:
        self.silence(between_frames=False)  # the cable goes whatever is on it
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)  # like /dev/serial/by-id: the name goes with the device
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None

    def replug(self) -> None:
        self.sim.rearm(reboot=True)  # a probe powers up with the cable: a new session
        self._plug()

    def write_raw(self, data: bytes) -> None:
        """Bytes on the line from the probe's end while it is silent (a frame it sent early)."""
        os.write(self._fds[0], data)

    def hello_waiting(self) -> bool:
        """The device's bytes (a hello) wait on the silent probe's end, unread."""
        return bool(select.select([self._fds[0]], [], [], 0)[0])

    def set_faults(self, faults: FaultConfig) -> None:
        self.sim.faults.config = faults  # read per frame by the simulator thread

    # -- what the probe knows ------------------------------------------------------------------
    @property
    def sent(self) -> int:
        """Frames the probe put on the wire (at least in part): the sequence numbers it used."""
        return self.sim.seq

    def faults_logged(self, kinds) -> list[dict]:
        return [e for e in list(self.sim.faults.log) if e["fault"] in kinds]

    def damaged(self) -> set[int]:
        return {e["seq"] for e in self.faults_logged(DAMAGING)}


class DaemonRig:
    """A running Daemon on a FaultProbe; ``finish()`` stops it and returns the ledger.

    ``DaemonRig.abandon_all()`` (a fixture's teardown) stops the ones a failed test left running."""

    _running: list["DaemonRig"] = []

    def __init__(self, tmp_path, probe: FaultProbe, *, engine=None, battery=None, output=None, probe_cfg=None,
                 power=None, policy_period_s: float = 0.2):
        """``engine``: (Engine, EngineEvents) from signed_engine(); None: the two-tier test set."""
        self.tmp = tmp_path
        self.results = tmp_path / "results.jsonl"
        self.journal = tmp_path / "journal.sqlite"
        out = {"results": str(self.results), "journal": str(self.journal), "status_interval_s": 0.0}
        out.update(output or {})
        self.journal = out["journal"]
        cfg = load_config(None).replace(output=out, run={"duration_s": 0.0}, probe=probe_cfg or {},
                                        power={"min_dwell_s": 0.0, **(power or {})})
        engine, events = engine or signed_engine(tmp_path / "models")
        if battery is None:
            from firmware_py.power.battery_mock import MockBattery

            battery = MockBattery(90.0, 0.0)
        self.probe = probe
        self.daemon = Daemon(cfg, engine=engine, battery=battery, thermal=Thermometer(), probe=probe,
                             policy_period_s=policy_period_s)
        events.target = self.daemon._on_engine_event
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="daemon-under-test", daemon=True)

    def _run(self) -> None:
        try:
            self.daemon.run()
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def start(self, frames: int = 3) -> "DaemonRig":
        DaemonRig._running.append(self)
        self._thread.start()
        assert wait_for(lambda: self.daemon.proc is not None and self.daemon.proc.processed >= frames, SETTLE_S), \
            f"the daemon did not process {frames} frames: {self.error!r}"
        return self

    @property
    def processed(self) -> int:
        return self.daemon.proc.processed

    def wait_processed(self, more: int, timeout: float = SETTLE_S) -> float:
        """Wait for ``more`` frames processed after now; the seconds it took."""
        t0, target = time.monotonic(), self.processed + more
        assert wait_for(lambda: self.processed >= target, timeout), \
            f"no {more} frames processed within {timeout} s: {self.daemon.status_text()}"
        return time.monotonic() - t0

    def ledger(self) -> dict:
        """The frame ledger as the daemon shows it: corrupt is what failed its CRC or decoding,
        dropped is every intact frame not processed (stale, skipped by the rate, lost in a gap, no
        buffer, before the handshake). ``shown_bad`` is the status line's "bad" count."""
        c = self.daemon.counters()
        early = c["frames_rejected_by_reason"].get("no_handshake", 0)
        snap = self.daemon.snapshot(0.0)
        return {"sent": self.probe.sent, "processed": c["frames_processed"],
                "dropped": c["frames_dropped_stale"] + c["frames_skipped_by_rate"] + c["frames_lost_gap"]
                + c["frames_no_buffer"] + early,
                "corrupt": c["frames_rejected"] - early + c["frames_rejected_processing"],
                "shown_bad": snap.corrupt + snap.rejected,
                "no_buffer": c["frames_no_buffer"], "lost_gap": c["frames_lost_gap"],
                "in_progress": c["frames_in_progress"], "rejected_by_reason": c["frames_rejected_by_reason"]}

    def settle(self, *, extra_on_wire: int = 0) -> dict:
        """Silence the probe and wait until every frame it sent is accounted for; the ledger.

        ``extra_on_wire``: frame headers the faults put on the wire that the probe did not number
        (lying headers)."""
        self.probe.silence()

        def balanced() -> bool:
            g = self.ledger()
            return g["in_progress"] == 0 and g["processed"] + g["dropped"] + g["corrupt"] == g["sent"] + extra_on_wire

        settled = wait_for(balanced, SETTLE_S)
        ledger = self.ledger()
        assert settled, f"sent != processed + dropped + corrupt within {SETTLE_S} s: {ledger}"
        assert ledger["shown_bad"] == ledger["corrupt"], f"the status line shows another corrupt count: {ledger}"
        return ledger

    def finish(self, *, extra_on_wire: int = 0) -> dict:
        """settle(), stop the daemon, and check the ledger did not move while it stopped."""
        ledger = self.settle(extra_on_wire=extra_on_wire)
        self._stop()
        self._check_stopped(ledger)
        return ledger

    def _check_stopped(self, ledger: dict) -> None:
        if self.error is not None:
            raise AssertionError(f"the daemon failed: {self.error!r}")
        after = self.ledger()
        assert after == ledger, f"the ledger moved while the daemon stopped: {ledger} then {after}"

    def run_on_main_thread(self, scenario, *, frames: int = 3) -> dict:
        """Run the daemon on this (the main) thread, so it installs its signal handlers, and
        ``scenario()`` on a helper thread; then settle and stop as finish() does."""
        done: dict = {}

        def helper():
            try:
                assert wait_for(lambda: self.daemon.proc is not None and self.daemon.proc.processed >= frames,
                                SETTLE_S), "the daemon did not start processing"
                scenario()
                done["ledger"] = self.settle()
            except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
                done["error"] = exc
            finally:
                self.daemon.stop_event.set()

        worker = threading.Thread(target=helper, name="scenario", daemon=True)
        worker.start()
        self._run()
        worker.join(SETTLE_S)
        if "error" in done:
            raise done["error"]
        self._check_stopped(done["ledger"])
        return done["ledger"]

    def _stop(self) -> None:
        self.daemon.stop_event.set()
        self._thread.join(SETTLE_S)
        with contextlib.suppress(ValueError):
            DaemonRig._running.remove(self)
        assert not self._thread.is_alive(), "the daemon did not stop"

    @classmethod
    def abandon_all(cls) -> None:
        for rig in list(cls._running):
            rig._stop()

    # -- what left the device ------------------------------------------------------------------
    def emitted(self) -> list[dict]:
        return [json.loads(line) for line in self.results.read_text().splitlines()]

    def journaled(self) -> list[tuple]:
        """(run_id, seq, wall_time) of this run's rows, after PRAGMA integrity_check passed."""
        db = sqlite3.connect(self.journal)
        try:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            return db.execute("SELECT run_id, seq, wall_time FROM results WHERE run_id = ?",
                              (self.daemon.run_id,)).fetchall()
        finally:
            db.close()

    def check_outputs(self, ledger: dict) -> list[dict]:
        """Every result a sink got is in the journal (or marked undurable) and one per processed frame."""
        out = self.emitted()
        assert len(out) == ledger["processed"], (len(out), ledger)
        rows = {(run, seq) for run, seq, _ in self.journaled()}
        durable = {(r["run_id"], r["seq"]) for r in out if r.get("extra", {}).get("durable", True)}
        assert durable <= rows, f"{len(durable - rows)} emitted results are not in the journal"
        return out


def gaps_after(results: list[dict], since: float) -> float:
    """Seconds from ``since`` (time.time()) to the first result after it."""
    later = [r["wall_time"] for r in results if r["wall_time"] > since]
    assert later, "no result after the fault"
    return min(later) - since


def longest_gap(results: list[dict], start: float, end: float) -> float:
    """Longest stretch without a result between ``start`` and ``end`` (time.time())."""
    times = [start] + sorted(r["wall_time"] for r in results if start < r["wall_time"] < end) + [end]
    return max(b - a for a, b in zip(times, times[1:]))


def report(case: str, **figures) -> None:
    """One line per case for the reliability table (pytest -s shows them)."""
    print("FAULT-REPORT " + json.dumps({"case": case, **figures}, sort_keys=True, default=str))
