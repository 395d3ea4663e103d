"""Recording the raw stream in bounded space, and replaying it with its timing."""
import os

import numpy as np
import pytest

from conftest_drivers import Collector, SimThread, pty_pair, wait_for
from firmware_py.drivers.link import ProbeLink
from firmware_py.drivers.phantom import make_geometry
from firmware_py.drivers.probe_sim import ProbeSimulator
from firmware_py.drivers.recorder import Recorder, Recording
from firmware_py.drivers.sources import PhantomSource


class FakeClock:
    """Recorder timestamps under test control (the recorder takes any monotonic ns clock)."""

    def __init__(self):
        self.ns = 0

    def __call__(self):
        return self.ns


def test_recorder_stays_within_its_bound_and_keeps_the_newest_data(tmp_path):
    path = str(tmp_path / "rec.bin")
    clock = FakeClock()
    rec = Recorder(path, 64 * 1024, clock=clock)
    chunks = []
    for i in range(400):  # ~400 KB through a 64 KB recorder
        clock.ns = i * 1_000_000
        data = bytes([i % 256]) * (500 + i % 700)
        chunks.append((i * 1000, data))
        rec.write(data)
    rec.close()
    total = os.path.getsize(path) + os.path.getsize(path + ".1")
    assert total <= 64 * 1024
    assert rec.rotations >= 5
    r = Recording(path)
    # what was kept is the newest contiguous run of chunks, in order, with their timestamps
    assert r.chunks == chunks[-len(r.chunks):]
    assert r.total_bytes > 64 * 1024 * 0.4
    assert r.duration_s == pytest.approx((r.chunks[-1][0] - r.chunks[0][0]) / 1e6)


def test_recorder_splits_a_chunk_bigger_than_a_segment(tmp_path):
    path = str(tmp_path / "rec.bin")
    rec = Recorder(path, 16 * 1024)
    rec.write(bytes(range(256)) * 100)  # 25.6 KB into 8 KB segments
    rec.close()
    r = Recording(path)
    data = b"".join(d for _, d in r.chunks)
    assert len(data) <= 16 * 1024 and (bytes(range(256)) * 100).endswith(data)
    assert os.path.getsize(path) + os.path.getsize(path + ".1") <= 16 * 1024


def test_recording_errors_are_clear(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a firmware-py probe recording"):
        Recording(str(bad))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Recording(str(tmp_path / "missing.bin"))
    with pytest.raises(ValueError, match="too small"):
        Recorder(str(tmp_path / "r.bin"), 100)


def test_record_a_live_link_then_replay_it_with_original_timing(tmp_path):
    path = str(tmp_path / "probe.rec")
    src = PhantomSource(make_geometry("phased", 32, 64, 8), distinct=4)
    with pty_pair() as (master, _slave, pty):
        sim = ProbeSimulator(src, fps=40, telemetry_hz=10, version_max=(1, 0))
        st = SimThread(sim, master, max_frames=12)
        first = Collector(keep_samples=True)
        link = ProbeLink(pty, record_path=path, record_max_bytes=8 << 20)
        link.start(first)
        try:
            assert wait_for(lambda: len(first.frames) >= 12)
        finally:
            link.stop()
            st.stop()
    assert link.stats()["recorder"]["bytes_recorded"] == link.stats()["bytes_in"]
    rec = Recording(path)
    assert rec.version == (1, 0)
    assert rec.duration_s > 0.2  # 12 frames at 40 fps: the timing was recorded

    with pty_pair() as (master, _slave, pty):
        replayer = ProbeSimulator(None, replay=rec, version_min=rec.version, version_max=rec.version)
        st = SimThread(replayer, master)
        second = Collector(keep_samples=True)
        link2 = ProbeLink(pty)
        link2.start(second)
        try:
            assert wait_for(lambda: st.summary is not None and st.summary.ended_by == "replay_end")
            assert wait_for(lambda: len(second.frames) >= 12)
        finally:
            link2.stop()
            st.stop()
    assert second.seqs[:12] == first.seqs[:12]
    for (s1, g1, a1), (s2, g2, a2) in zip(first.frames[:12], second.frames[:12]):
        assert g1 == g2
        np.testing.assert_array_equal(a1, a2)
    # every chunk was written at or after its recorded time (relative to the handshake), in order
    log = replayer.replay_log
    assert len(log) == len(rec.chunks)
    assert all(sent >= recorded - 1e-6 for sent, recorded in log)
    assert [r for _, r in log] == sorted(r for _, r in log)
    assert log[-1][0] >= rec.duration_s - 1e-6
