"""Engine thread-safety: reload() and request_tier() from other threads while frames run.

The daemon calls them from the main thread (SIGHUP), the console thread and the power policy,
while the processing thread runs input_view()/invoke() in a loop. These tests run that mix.
"""
import os
import sys
import threading
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
from model_sets import TWO_CLASSIFIERS, make_model_set  # noqa: E402

from firmware_py.errors import ModelError  # noqa: E402
from firmware_py.inference import Engine  # noqa: E402
from firmware_py.inference.signing import sign_model_set  # noqa: E402


@pytest.fixture
def models(tmp_path):
    return make_model_set(str(tmp_path / "models"), TWO_CLASSIFIERS)


@pytest.fixture
def engine(models):
    eng = Engine(models["dir"], public_key=models["public"])
    yield eng
    eng.close()


class FrameLoop:
    """The daemon's processing thread: frames back to back; records what ran and what killed it.

    pause() holds it between two frames (no frame open) until step() lets frames through.
    """

    def __init__(self, engine):
        self.engine, self.tiers, self.error = engine, [], None
        self._stop, self._gate = threading.Event(), threading.Semaphore(0)
        self._paused = False
        self._thread = threading.Thread(target=self._run, name="processing", daemon=True)

    def _run(self):
        try:
            while not self._stop.is_set():
                if self._paused:
                    self._gate.acquire()
                    if self._stop.is_set():
                        return
                self.engine.input_view()[...] = 1
                self.tiers.append(self.engine.invoke().tier)
        except BaseException as e:  # what would take the daemon down
            self.error = e

    def start(self, paused=False):
        self._paused = paused
        self._thread.start()
        return self

    def frames(self, n, timeout=30.0):
        """Let exactly n more frames run (paused mode) and wait for them."""
        target = len(self.tiers) + n
        for _ in range(n):
            self._gate.release()
        deadline = time.monotonic() + timeout
        while len(self.tiers) < target and self.error is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert self.error is None, f"processing thread died: {self.error!r}"
        assert len(self.tiers) >= target, "frames did not run"

    def wait_frames(self, n, timeout=30.0):
        """Free-running mode: wait until n more frames ran."""
        target = len(self.tiers) + n
        deadline = time.monotonic() + timeout
        while len(self.tiers) < target and self.error is None and time.monotonic() < deadline:
            time.sleep(0.001)

    def stop(self):
        self._stop.set()
        self._gate.release()
        self._thread.join(30)
        assert not self._thread.is_alive()


def test_a_frame_ending_while_reload_loads_does_not_kill_the_processing_thread(engine, monkeypatch):
    """A loaded tier waits for the frame boundary; a reload replaces the set before that frame ends."""
    loop = FrameLoop(engine).start(paused=True)
    try:
        engine.request_tier("cls-large").result(30)  # loaded, waiting to be swapped in after a frame
        real = engine._build_slot

        def frames_end_during_reload(tier):
            loop.frames(2)  # frames finish while the reload builds the new set's start tier
            return real(tier)

        monkeypatch.setattr(engine, "_build_slot", frames_end_during_reload)
        assert engine.reload() is True
        monkeypatch.setattr(engine, "_build_slot", real)
        loop.frames(3)
        assert loop.tiers[-1] == "cls-small"  # the reload's start tier, from the new set
        assert engine.status()["resident"] == ["cls-small"]
    finally:
        loop.stop()
    assert loop.error is None


def test_tier_requests_and_reloads_from_other_threads_keep_frames_running(engine, models):
    """The issue's reproduction: `tier NAME` then a reload within 0.2 s, repeated."""
    loop = FrameLoop(engine).start()
    rng = np.random.default_rng(3)
    try:
        for i in range(8):
            sign_model_set(models["dir"], models["private"])
            engine.request_tier("cls-large" if i % 2 == 0 else "cls-small")
            time.sleep(float(rng.uniform(0.0, 0.2)))
            assert engine.reload() is True
            loop.wait_frames(2)
            assert loop.error is None, f"processing thread died in round {i}: {loop.error!r}"
        loop.wait_frames(3)
    finally:
        loop.stop()
    assert loop.error is None and engine.status()["resident"] == ["cls-small"]


def test_concurrent_reloads_apply_one_after_the_other(engine, models, monkeypatch):
    loop = FrameLoop(engine).start()
    inside, overlaps = [0], []
    real = engine.models.load

    def observed_load():
        inside[0] += 1
        overlaps.append(inside[0])
        time.sleep(0.05)  # long enough for the other reload to arrive meanwhile
        try:
            return real()
        finally:
            inside[0] -= 1

    monkeypatch.setattr(engine.models, "load", observed_load)
    results = []
    try:
        threads = [threading.Thread(target=lambda: results.append(engine.reload())) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        loop.wait_frames(3)
    finally:
        loop.stop()
    assert results == [True, True, True] and max(overlaps) == 1
    assert loop.error is None and engine.status()["resident"] == ["cls-small"]


def test_request_future_resolves_once_loaded_and_the_tier_runs_from_the_next_frame_boundary(engine):
    loop = FrameLoop(engine).start(paused=True)
    try:
        fut = engine.request_tier("cls-large")
        assert fut.result(30) == "cls-large"  # loaded, validated and warm
        loop.frames(2)  # the frame in flight at the swap finishes on its tier, the next runs the new one
        assert loop.tiers[-1] == "cls-large" and engine.active_tier.name == "cls-large"
    finally:
        loop.stop()


def test_request_future_of_a_refused_tier_raises_the_one_line_reason(tmp_path):
    s = make_model_set(str(tmp_path / "models"), [
        TWO_CLASSIFIERS[0], {"name": "bad", "cpu": "cls_float.tflite", "io_from": "cls_int8.tflite", "rank": 1}])
    eng = Engine(s["dir"], public_key=s["public"])
    try:
        fut = eng.request_tier("bad")
        with pytest.raises(ModelError) as e:
            fut.result(30)
        assert "float model" in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(ModelError, match="float model"):
            eng.request_tier("bad", wait=True)
        assert eng.active_tier.name == "cls-small"
    finally:
        eng.close()
