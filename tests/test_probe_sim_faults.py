"""Fault injection: every injected fault is logged, the link notices it, no intact frame is lost."""
import json
import os

import pytest

from conftest_drivers import Collector, SimThread, pty_pair, wait_for
from firmware_py.drivers.faults import FaultConfig, FaultInjector
from firmware_py.drivers.link import ProbeLink
from firmware_py.drivers.phantom import make_geometry
from firmware_py.drivers.probe_sim import ProbeSimulator
from firmware_py.drivers.sources import PhantomSource

CORRUPTING = {"bit_flip", "drop_bytes", "truncate"}


def test_faults_are_logged_and_accounted_for(tmp_path):
    log_path = str(tmp_path / "faults.jsonl")
    faults = FaultConfig(bit_flip=0.1, drop_bytes=0.1, garbage=0.15, truncate=0.1, stall=0.05,
                         stall_s=0.05)
    src = PhantomSource(make_geometry("linear", 24, 48, 8), distinct=3)
    sim = ProbeSimulator(src, fps=400, telemetry_hz=0, faults=faults, seed=7, fault_log_path=log_path)
    n = 200
    with pty_pair() as (master, _slave, path):
        st = SimThread(sim, master, max_frames=n)
        got = Collector()
        link = ProbeLink(path)
        link.start(got)
        try:
            assert wait_for(lambda: st.summary is not None, timeout=30)
            # wait until the last frame is delivered or given up after the stall timeout
            assert wait_for(lambda: link.stats()["frames_in_progress"] == 0
                            and link.stats()["bytes_pending"] < 16 and link.stats()["bytes_in"] > 0)
            assert wait_for(lambda: link.stats()["frames_delivered"] + link.stats()["frames_rejected"]
                            + link.stats()["frames_lost_gap"] >= n - 1)
        finally:
            link.stop()
            st.stop()
            sim.close()
    log = [json.loads(line) for line in open(log_path)]
    assert log == sim.faults.log
    kinds = {e["fault"] for e in log}
    assert {"bit_flip", "drop_bytes", "garbage", "truncate", "stall"} <= kinds
    corrupted = {e["seq"] for e in log if e["fault"] in CORRUPTING}
    delivered = set(got.seqs)
    sent = {seq for seq, _ in sim.sent}
    assert len(sent) == n
    # CRC-32C detects every error of up to 3 bits and any truncation: nothing corrupted gets through
    assert not (corrupted & delivered)
    # ...and every frame that left the simulator intact arrives, despite garbage and stalls around it
    assert sent - corrupted - {n - 1} <= delivered
    s = link.stats()
    assert s["frames_received"] == (s["frames_delivered"] + s["frames_rejected"] + s["frames_no_buffer"]
                                    + s["frames_in_progress"])
    # each corrupted frame is either rejected (header survived) or missing from the sequence
    missing = (max(delivered) - min(delivered) + 1) - len(delivered)
    assert s["frames_lost_gap"] <= missing <= s["frames_lost_gap"] + s["frames_rejected"]
    assert s["bytes_discarded"] > 0 and s["bytes_in"] == s["bytes_accepted"] + s["bytes_discarded"] + s["bytes_pending"]


def test_injected_disconnect_hangs_up_and_the_link_reconnects(tmp_path):
    """Disconnect fault in the sim's pty mode: the line is re-created behind a by-id symlink."""
    by_id = str(tmp_path / "probe")
    src = PhantomSource(make_geometry("linear", 16, 32, 8), distinct=2)
    sim = ProbeSimulator(src, fps=100, telemetry_hz=0, faults=FaultConfig(disconnect=0.05), seed=3)
    got = Collector()
    link = ProbeLink(by_id, backoff_initial=0.05, backoff_max=0.2)
    lines = 0
    try:
        while lines < 2:  # two hang-ups, like sim_cli --pty --link does
            with pty_pair() as (master, _slave, path):
                if os.path.lexists(by_id):
                    os.remove(by_id)
                os.symlink(path, by_id)
                if lines == 0:
                    link.start(got, got.on_event)
                summary = sim.serve_fd(master, duration=20)
                assert summary.ended_by == "disconnect"
            lines += 1
        assert wait_for(lambda: link.stats()["reconnects"] >= 1)
    finally:
        link.stop()
    assert sim.faults.counts()["disconnect"] == 2
    assert sim.summary.handshakes >= 2
    assert any(e["type"] == "disconnected" for e in got.events)


def test_fault_injector_is_deterministic_and_validates_rates():
    a = FaultInjector(FaultConfig(bit_flip=0.5, truncate=0.5), seed=1)
    b = FaultInjector(FaultConfig(bit_flip=0.5, truncate=0.5), seed=1)
    msg = bytes(range(256)) * 4
    assert [a.apply(i, msg) for i in range(20)] == [b.apply(i, msg) for i in range(20)]
    strip = lambda log: [{k: v for k, v in e.items() if k != "t"} for e in log]  # noqa: E731
    assert strip(a.log) == strip(b.log) and a.log
    assert FaultInjector(FaultConfig(), seed=1).apply(0, msg) == [(msg, 0.0)]
    with pytest.raises(ValueError, match="fault rate bit_flip=1.5 must be a probability"):
        FaultConfig(bit_flip=1.5)
