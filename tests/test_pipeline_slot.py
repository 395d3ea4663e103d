"""Latest-frame slot and processing thread: newest frame wins, every frame accounted for."""
from __future__ import annotations

import threading

from firmware_py.daemon.pipeline import LatencyWindow, LatestFrameSlot, ProcessingThread


class FakeFrame:
    """Stands in for drivers' pooled Frame: only release() matters to the slot."""

    def __init__(self, seq):
        self.seq = seq
        self.released = 0

    def release(self):
        self.released += 1


def test_newest_frame_wins_and_replaced_frames_are_released_and_counted():
    slot = LatestFrameSlot()
    frames = [FakeFrame(i) for i in range(5)]
    for f in frames:
        slot.put(f)
    assert slot.take(0).seq == 4
    assert slot.dropped_stale == 4 and slot.accepted == 5
    assert [f.released for f in frames[:4]] == [1, 1, 1, 1]
    assert slot.take(0) is None


def test_processing_thread_accounts_for_every_frame_including_rejects_and_the_last_one():
    slot = LatestFrameSlot()
    done = []
    gate = threading.Event()

    def process(frame):
        gate.wait(5)
        if frame.seq % 10 == 3:
            raise ValueError("corrupt geometry; send a valid frame")
        done.append(frame.seq)

    t = ProcessingThread(slot, process)
    t.start()
    frames = [FakeFrame(i) for i in range(40)]
    for f in frames:
        slot.put(f)
        if f.seq % 4 == 0:
            gate.set()
    gate.set()
    t.stop()
    t.join(5)
    assert not t.is_alive()
    assert t.processed + t.rejected + slot.dropped_stale == len(frames)
    assert frames[-1].seq in done  # the frame in the slot at shutdown was processed
    assert all(f.released == 1 for f in frames)


def test_max_frames_limit_calls_back():
    slot = LatestFrameSlot()
    hit = threading.Event()
    t = ProcessingThread(slot, lambda f: None, max_frames=3, on_limit=hit.set)
    t.start()
    for i in range(3):
        assert not hit.is_set()
        slot.put(FakeFrame(i))
        for _ in range(5000):  # wait until this frame is processed, so none is dropped stale
            if t.processed > i:
                break
            threading.Event().wait(0.001)
    assert hit.wait(5) and t.processed == 3
    t.stop()
    t.join(5)


def test_latency_window_percentiles():
    w = LatencyWindow(size=100)
    assert w.percentiles(50) == (None,)
    for v in range(1, 201):
        w.add(float(v))
    p50, p99 = w.percentiles(50, 99)
    assert 149 <= p50 <= 151 and p99 > 198  # only the last 100 values are kept
