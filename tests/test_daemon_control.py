"""The daemon's control thread: tier pins and `tier auto`, real outcomes, serialised reloads.

The daemon runs in this process with injected parts (a signed test model set, a mock battery,
the probe simulator on a pseudo-terminal in a thread): a real serial line and a real engine,
no child process.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import tty

import pytest

from firmware_py.config import load_config
from firmware_py.daemon.runner import Daemon
from firmware_py.daemon.systemd import SystemdNotifier
from firmware_py.drivers.probe_sim import ProbeSimulator
from firmware_py.drivers.sources import PhantomSource
from firmware_py.errors import FirmwareError
from firmware_py.inference import Engine
from firmware_py.power.sensors import BatteryReading
from tests.conftest_drivers import SimThread, small_geometry, wait_for
from tests.data.model_sets import make_model_set

# rank 0 and 2 load; rank 1 is a float model, which the engine refuses
LADDER = [
    {"name": "small", "cpu": "cls_int8.tflite", "rank": 0},
    {"name": "broken", "cpu": "cls_float.tflite", "io_from": "cls_int8.tflite", "rank": 1},
    {"name": "large", "cpu": "cls_int8_b.tflite", "rank": 2},
]


class InProcessProbe:
    """Probe source: the simulator serving a pty from a thread of this process."""

    def __init__(self, fps: float = 40.0):
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.sim = ProbeSimulator(PhantomSource(small_geometry(32, 64)), fps=fps)
        self.thread: SimThread | None = None

    def start(self) -> str:
        self.thread = SimThread(self.sim, self.master)
        return os.ttyname(self.slave)

    def failure(self):
        return None  # serves until stopped

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
        os.close(self.master)
        os.close(self.slave)


class Gauge:
    """A battery gauge (percent) or thermometer (degC) whose reading the test sets."""

    name = "test"

    def __init__(self, value: float):
        self.value = value

    def read(self) -> float:
        return self.value


class Cell(Gauge):
    """A battery gauge whose charge (``value``) and charging the test sets."""

    charging = False

    def read(self) -> BatteryReading:
        return BatteryReading(self.value, self.charging)


def make_daemon(tmp_path, *, policy_period_s: float, battery_percent: float = 77.0) -> Daemon:
    s = make_model_set(str(tmp_path / "models"), LADDER)
    cfg = load_config(None).replace(output={"results": str(tmp_path / "r.jsonl"), "status_interval_s": 0.0},
                                    run={"duration_s": 120.0})
    engine = Engine(s["dir"], public_key=s["public"])
    return Daemon(cfg, engine=engine, battery=Cell(battery_percent), thermal=Gauge(40.0),
                  probe=InProcessProbe(), policy_period_s=policy_period_s)


@pytest.fixture
def running(tmp_path):
    """A daemon whose policy runs once at start and then not again for the test's lifetime."""
    daemon = make_daemon(tmp_path, policy_period_s=3600.0)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    assert wait_for(lambda: daemon.proc is not None and daemon.proc.processed >= 3, 30)
    yield daemon
    daemon.stop_event.set()
    runner.join(20)
    assert not runner.is_alive()
    assert daemon.proc.fatal is None


def active(daemon) -> str:
    return daemon.engine.active_tier.name


def test_tier_auto_returns_to_the_policys_choice_after_any_pin_without_waiting_a_period(running):
    daemon = running
    assert wait_for(lambda: active(daemon) == "large", 20)  # 77 %: the policy's choice is the top tier
    for pin in ("small", "large", "small"):
        assert "pinned" in daemon.commands.call("tier", tier=pin)
        assert wait_for(lambda: active(daemon) == pin, 20)
        assert not daemon.policy_enabled
        # The policy period is an hour: only `tier auto` itself can bring the policy's tier back.
        reply = daemon.commands.call("tier", tier="auto")
        assert reply.startswith("ok: the power policy chooses the tier (large")
        assert wait_for(lambda: active(daemon) == "large", 20), f"still on {active(daemon)} after tier auto"
        assert daemon.policy_enabled


def test_tier_command_answers_the_engines_real_outcome(running):
    daemon = running
    assert wait_for(lambda: active(daemon) == "large", 20)
    with pytest.raises(FirmwareError, match=r"tier broken refused \(.*float model.*\); still on large, policy"):
        daemon.commands.call("tier", tier="broken")
    assert daemon.policy_enabled  # a refused pin changes nothing
    with pytest.raises(FirmwareError, match="no tier 'huge'; choose one of small, broken, large or auto"):
        daemon.commands.call("tier", tier="huge")
    assert daemon.commands.call("tier", tier="small").startswith("ok: small pinned")
    assert wait_for(lambda: active(daemon) == "small", 20)


def test_policy_step_moves_to_a_lower_tier_when_the_battery_runs_low(tmp_path):
    daemon = make_daemon(tmp_path, policy_period_s=0.1, battery_percent=12.0)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        # 12 %: "low" band -> below the top; the refused "broken" tier is left out of the ladder,
        # so the daemon never asks for it again.
        assert wait_for(lambda: daemon.proc is not None and daemon.proc.processed >= 3, 30)
        daemon.battery.value = 5.0  # critical: the smallest tier
        assert wait_for(lambda: active(daemon) == "small", 20)
    finally:
        daemon.stop_event.set()
        runner.join(20)
    assert daemon.proc.fatal is None


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signal handlers can only be installed from the main thread")
def test_sighup_and_console_reloads_issued_together_apply_one_after_the_other(tmp_path):
    """SIGHUP (main thread) plus commands from a console thread, repeated with tier pins in
    between: every reload runs alone on the control thread and the processing thread survives."""
    daemon = make_daemon(tmp_path, policy_period_s=0.2)
    calls: list[tuple[int, float, float]] = []
    reload = daemon.engine.reload

    def recording_reload():
        t0 = time.monotonic()
        ok = reload()
        calls.append((threading.get_ident(), t0, time.monotonic()))
        return ok

    daemon.engine.reload = recording_reload
    outcomes: list[str] = []
    rounds = 8

    def technician():
        assert wait_for(lambda: daemon.proc is not None and daemon.proc.processed >= 3, 30)
        for i in range(rounds):
            pending = daemon.commands.post("tier", source="console", tier=("small", "large")[i % 2])
            os.kill(os.getpid(), signal.SIGHUP)
            outcomes.append(daemon.commands.call("reload", source="console"))
            pending.result(30)
        daemon.stop_event.set()

    previous = signal.getsignal(signal.SIGHUP)
    helper = threading.Thread(target=technician, daemon=True)
    helper.start()
    daemon.run()  # on the main thread: installs the SIGHUP handler
    helper.join(5)
    assert daemon.proc.fatal is None
    assert outcomes == [outcomes[0]] * rounds and outcomes[0].startswith("ok: model set reloaded")
    # every console reload ran; so did every SIGHUP but perhaps the last, which may land after the
    # stop (its handler runs whenever the main thread gets to it) and is then cancelled
    assert len(calls) >= 2 * rounds - 1
    threads = {ident for ident, _, _ in calls}
    assert threads == {threading.main_thread().ident}  # the control thread applied every reload
    spans = sorted((t0, t1) for _, t0, t1 in calls)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "two reloads overlapped"
    assert signal.getsignal(signal.SIGHUP) is previous  # the daemon put the old handler back


class StallableEngine:
    """The real engine, whose invoke() the test can hold (a wedged accelerator, a stuck frame)."""

    def __init__(self, engine):
        self._engine = engine
        self.running = threading.Event()
        self.running.set()

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def invoke(self):
        self.running.wait()
        return self._engine.invoke()


class NotifySocket:
    """The service manager's end of sd_notify: a Unix datagram socket the test binds."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, socket.timeout):
                return [m for _, m in self.messages]
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            self.messages.append((time.monotonic(), fields))

    def count(self, key: str) -> int:
        return sum(key in m for m in self.drain())


def test_systemd_gets_ready_status_and_watchdog_pings_that_stop_while_processing_is_stuck(tmp_path):
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    daemon = make_daemon(tmp_path, policy_period_s=3600.0)
    stall = daemon.engine = StallableEngine(daemon.engine)
    daemon.notifier = SystemdNotifier({"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "100000"})
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: notify.count("READY") == 1, 30)
        ready = next(m for m in notify.drain() if "READY" in m)
        assert ready["STATUS"].startswith("running tier ")
        assert wait_for(lambda: notify.count("WATCHDOG") >= 5, 10)
        assert wait_for(lambda: any(m.get("STATUS", "").startswith("[") for m in notify.drain()), 10)

        stall.running.clear()  # the next frame sticks inside invoke()
        processed = daemon.proc.processed
        time.sleep(0.5)  # the frame in progress ends; the next one sticks; a ping already due goes out
        assert daemon.proc.processed <= processed + 1
        before = notify.count("WATCHDOG")
        time.sleep(1.0)  # ten watchdog half-periods
        assert notify.count("WATCHDOG") == before, "watchdog pinged while processing was stuck"

        stall.running.set()
        assert wait_for(lambda: notify.count("WATCHDOG") > before + 3, 10)
    finally:
        stall.running.set()
        daemon.stop_event.set()
        runner.join(20)
    assert notify.count("STOPPING") == 1
    assert daemon.proc.fatal is None


def test_notifier_is_a_no_op_outside_systemd_and_keeps_status_on_one_line(tmp_path):
    quiet = SystemdNotifier({})
    assert not quiet.enabled and quiet.ready("x") is False and quiet.watchdog() is False
    notify = NotifySocket(str(tmp_path / "n.sock"))
    n = SystemdNotifier({"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert n.watchdog_interval_s is None  # the watchdog is some other process's
    assert n.status("line one\nREADY=1")
    assert notify.drain() == [{"STATUS": "line one READY=1"}]


def test_a_result_sink_registered_in_one_place_receives_every_result(tmp_path):
    """Where to add a result sink: one factory registered with SINKS; the daemon opens it."""
    from firmware_py.results import SINKS

    class MemorySink:
        def __init__(self):
            self.records, self.closed = [], False

        def write(self, record):
            self.records.append(record)

        def close(self):
            self.closed = True

    opened: list[MemorySink] = []
    SINKS.register("memory")(lambda output: opened.append(MemorySink()) or opened[-1])
    try:
        daemon = make_daemon(tmp_path, policy_period_s=3600.0)
        daemon.cfg = daemon.cfg.replace(run={"max_frames": 5})
        daemon.run()
    finally:
        SINKS.unregister("memory")
    (sink,) = opened
    assert sink.closed and len(sink.records) == daemon.proc.processed >= 5
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert [r.seq for r in sink.records] == [json.loads(line)["seq"] for line in lines]


def test_reload_applies_a_new_configuration_live_and_keeps_the_old_one_when_the_file_is_broken(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("power:\n  low_battery_percent: 30\n")
    daemon = make_daemon(tmp_path, policy_period_s=3600.0)
    base = daemon.cfg

    def configuration():
        return load_config(site).replace(**{k: v for k, v in base.as_dict().items() if k in ("output", "run")})

    daemon._config_loader = configuration
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: daemon.proc is not None and daemon.proc.processed >= 3, 30)
        site.write_text("power:\n  low_battery_percent: 90\n  critical_battery_percent: 85\n"
                        "probe:\n  baudrate: 115200\n")
        reply = daemon.commands.call("reload", source="signal")
        assert reply.startswith("ok: configuration applied: power.low_battery_percent, power.critical_battery_"
                                "percent; needs a restart to take effect: probe.baudrate; model set reloaded")
        assert daemon.cfg.power.low_battery_percent == 90 and daemon.tiers.policy.critical == 85
        assert daemon.cfg.probe.baudrate == base.probe.baudrate  # still what the link runs with
        # 77 % is now critical: the next policy step (tier auto runs one at once) takes the smallest tier
        daemon.commands.call("tier", tier="auto")
        assert wait_for(lambda: active(daemon) == "small", 20)

        site.write_text("power:\n  low_battery_percent: [not a number\n")
        reply = daemon.commands.call("reload", source="signal")
        assert reply.startswith("ok: configuration kept (") and "not valid YAML" in reply
        assert "\n" not in reply and daemon.cfg.power.low_battery_percent == 90
    finally:
        daemon.stop_event.set()
        runner.join(20)
    assert daemon.proc.fatal is None
