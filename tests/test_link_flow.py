"""Flow control and frame accounting with a consumer slower than the link (the daemon's
LatestFrameSlot) on a line with faults: every frame the probe sent is accounted for."""
import threading
import time

import pytest

from conftest_drivers import SimThread, pty_pair, wait_for
from firmware_py.drivers.faults import FaultConfig, FaultInjector
from firmware_py.drivers.link import ProbeLink
from firmware_py.drivers.phantom import make_geometry
from firmware_py.drivers.probe_sim import ProbeSimulator
from firmware_py.drivers.sources import PhantomSource

slot_mod = pytest.importorskip("firmware_py.daemon.pipeline", reason="the daemon's LatestFrameSlot is not built yet")


def test_newest_frame_wins_and_every_frame_is_accounted_for():
    slot = slot_mod.LatestFrameSlot()
    processed, seen = [0], []
    stop = threading.Event()

    def consumer():  # slower than the link: ~3 ms per frame
        while not stop.is_set():
            f = slot.take(0.05)
            if f is None:
                continue
            seen.append(f.seq)
            time.sleep(0.003)
            processed[0] += 1
            f.release()

    src = PhantomSource(make_geometry("linear", 16, 64, 8), distinct=2)
    sim = ProbeSimulator(src, fps=0, telemetry_hz=0, seed=11)
    faulty = FaultInjector(FaultConfig(bit_flip=0.05, drop_bytes=0.05, truncate=0.05, garbage=0.1), seed=11)
    clean = sim.faults
    worker = threading.Thread(target=consumer, daemon=True)
    worker.start()
    with pty_pair() as (master, _slave, path):
        link = ProbeLink(path)
        link.start(slot.put)
        try:
            # clean frames first and last, so losses at either end show up as sequence gaps
            for faults, n in ((clean, 5), (faulty, 300), (clean, 5)):
                sim.faults = faults
                sim.rearm()
                st = SimThread(sim, master, max_frames=sim.summary.frames_sent + n)
                assert wait_for(lambda: st.summary is not None, timeout=60)
            last = sim.seq - 1
            assert wait_for(lambda: link.parser.last_seq == last and link.stats()["frames_in_progress"] == 0)
        finally:
            link.stop()
    stop.set()
    worker.join(5)
    left = slot.take(0)
    if left is not None:
        left.release()
    s = link.stats()
    sent = sim.summary.frames_sent
    assert sent == 310 and len(faulty.log) > 20
    # the probe's frames: each one arrived with a valid header, or is a sequence gap
    assert sent == s["frames_received"] + s["frames_lost_gap"]
    # each received frame: processed, replaced in the slot by a newer one, or rejected
    assert s["frames_received"] == (processed[0] + slot.dropped_stale + s["frames_rejected"]
                                    + s["frames_no_buffer"] + (left is not None))
    assert slot.dropped_stale > 0 and s["frames_rejected"] > 0  # both paths were exercised
    assert seen == sorted(seen)  # newest wins: never an older frame after a newer one
    assert s["pool"]["allocations"] <= 8  # buffers are reused, not allocated per frame


def test_a_consumer_that_holds_every_frame_exhausts_the_pool_without_stopping_the_link():
    from conftest_drivers import Collector

    held = []
    src = PhantomSource(make_geometry("linear", 8, 16, 8), distinct=2)
    with pty_pair() as (master, _slave, path):
        st = SimThread(ProbeSimulator(src, fps=200, telemetry_hz=0), master)
        link = ProbeLink(path, pool_buffers=2, pool_max_buffers=4)
        sink = Collector()
        link.start(lambda f: held.append(f) if len(held) < 4 else sink(f))
        try:
            assert wait_for(lambda: len(held) == 4)
            # every buffer is held: frames keep arriving, are counted, and framing stays intact
            assert wait_for(lambda: link.stats()["frames_no_buffer"] >= 5)
            assert link.connected and link.stats()["pool"]["exhausted"] >= 5
            for f in held:
                f.release()
            assert wait_for(lambda: len(sink.frames) >= 3)
        finally:
            link.stop()
            st.stop()
    s = link.stats()
    assert s["frames_rejected_by_reason"]["crc"] == 0 and s["pool"]["buffers"] == 4
    assert s["frames_received"] == s["frames_delivered"] + s["frames_no_buffer"] + s["frames_rejected"] \
        + s["frames_in_progress"]
