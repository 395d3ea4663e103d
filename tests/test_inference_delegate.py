"""Accelerator delegates for real: a C external delegate built by the test, loaded with load_delegate.

tests/delegate/fake_npu_delegate.c claims the models' RESHAPE node and runs it (a byte copy), and
fails or hangs on demand, like a USB accelerator that is unplugged or wedged.
"""
import os
import sys
import threading
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
from model_sets import (LABELS, build_fake_npu_or_skip, fake_npu_hanging, fake_npu_invocations,  # noqa: E402
                        make_model_set, reference_output)

from firmware_py.inference.accelerators.edgetpu import EdgeTpu  # noqa: E402
from firmware_py.inference.accelerators.external import ExternalDelegate  # noqa: E402
from firmware_py.errors import ConfigError  # noqa: E402
from firmware_py.inference import Engine  # noqa: E402

RNG = np.random.default_rng(9)
TIERS = [
    {"name": "small", "cpu": "cls_int8.tflite", "rank": 0, "accel": {"npu": "cls_int8.tflite"}},
    {"name": "large", "cpu": "cls_int8_b.tflite", "rank": 1, "accel": {"npu": "cls_int8_b.tflite"}},
]
REF = {"small": "cls_int8.tflite", "large": "cls_int8_b.tflite"}


@pytest.fixture(scope="module")
def npu_lib(tmp_path_factory):
    return build_fake_npu_or_skip(str(tmp_path_factory.mktemp("delegate")))


@pytest.fixture
def models(tmp_path):
    return make_model_set(str(tmp_path / "models"), TIERS)


def loader(lib, **options):
    return ExternalDelegate(library=lib, options=options, key="npu")


def run_frame(eng, tier_ref=None):
    x = RNG.integers(-128, 128, (1, 32, 32, 1), dtype=np.int8)
    eng.input_view()[...] = x
    out = eng.invoke()
    ref = reference_output(REF[tier_ref or out.tier], x)
    assert out.label == LABELS[int(np.argmax(ref))]  # same answer on whichever backend ran it
    return out


def test_missing_delegate_library_runs_the_cpu_twin(models, tmp_path):
    acc = loader(str(tmp_path / "libnot_there.so"))
    eng = Engine(models["dir"], public_key=models["public"], accelerator=acc, reattach_backoff_s=(60, 60))
    try:
        out = run_frame(eng)
        assert out.backend == "cpu"
        assert "cannot load external delegate" in out.fallback and "using CPU twin cls_int8.tflite" in out.fallback
        assert "check accelerator.external.library" in out.fallback and "\n" not in out.fallback
        st = eng.status()
        assert st["backend"] == "cpu" and st["accelerator"]["loaded"] is False
        assert "libnot_there.so" in st["accelerator"]["error"]
    finally:
        eng.close()


def test_edgetpu_without_libedgetpu_runs_the_cpu_twin(tmp_path):
    s = make_model_set(str(tmp_path / "models"), [
        {"name": "small", "cpu": "cls_int8.tflite", "accel": {"edgetpu": "cls_edgetpu.tflite"}}])
    acc = EdgeTpu(device="usb:0", library=str(tmp_path / "libedgetpu.so.1"))
    eng = Engine(s["dir"], public_key=s["public"], accelerator=acc, reattach_backoff_s=(60, 60))
    try:
        out = run_frame(eng)
        assert out.backend == "cpu" and "cannot load edgetpu delegate" in out.fallback
        assert "install the Edge TPU runtime (libedgetpu1-std)" in out.fallback
        assert acc.status()["options"] == {"device": "usb:0"}
    finally:
        eng.close()


def test_bad_accelerator_configuration_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="use usb, usb:N or pci:N"):
        EdgeTpu(device="usb0")
    with pytest.raises(ConfigError, match="external.library is not set"):
        ExternalDelegate(library=None)


def test_delegate_that_refuses_to_start_runs_the_cpu_twin(models, npu_lib):
    acc = loader(npu_lib, fail_create=1)
    eng = Engine(models["dir"], public_key=models["public"], accelerator=acc, reattach_backoff_s=(60, 60))
    try:
        out = run_frame(eng)
        assert out.backend == "cpu" and "fake-npu: no device found" in out.fallback
    finally:
        eng.close()


def test_real_load_delegate_path_runs_frames_on_the_accelerator(models, npu_lib):
    acc = loader(npu_lib)
    eng = Engine(models["dir"], public_key=models["public"], accelerator=acc)
    try:
        before = fake_npu_invocations(npu_lib)
        for _ in range(5):
            out = run_frame(eng)
            assert out.backend == "npu" and out.fallback is None
        assert fake_npu_invocations(npu_lib) - before == 5  # every frame ran through the delegate
        eng.request_tier("large", wait=True)
        out = run_frame(eng)
        assert out.tier == "large" and out.backend == "npu"
        assert acc.loads == 1  # loaded once, shared by every tier's interpreter
        assert eng.status()["accelerator"]["loaded"] is True
    finally:
        eng.close()


def wait_for_backend(eng, backend, timeout=30.0):
    """Run frames until one runs on `backend` (re-attach happens on a background thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = run_frame(eng)
        if out.backend == backend:
            return out
        time.sleep(0.02)
    raise AssertionError(f"backend never became {backend}: {eng.status()}")


class EventWatch:
    """An on_event sink that lets the test wait for a kind of event instead of sleeping."""

    def __init__(self):
        self.events, self._cond = [], threading.Condition()

    def __call__(self, event):
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def kinds(self):
        with self._cond:
            return [e["kind"] for e in self.events]

    def wait_for(self, kind, timeout=30.0):
        with self._cond:
            if not self._cond.wait_for(lambda: any(e["kind"] == kind for e in self.events), timeout):
                raise AssertionError(f"no {kind} event; got {[e['kind'] for e in self.events]}")


def test_accelerator_failing_during_operation_continues_on_cpu_and_reattaches(models, npu_lib, tmp_path):
    fail = tmp_path / "unplugged"
    events = EventWatch()
    acc = loader(npu_lib, fail_file=str(fail))
    eng = Engine(models["dir"], public_key=models["public"], accelerator=acc, reattach_backoff_s=(0.05, 0.2),
                 on_event=events)
    try:
        assert run_frame(eng).backend == "npu"
        fail.touch()
        out = run_frame(eng)  # this very frame is rerun on the CPU twin, not lost
        assert out.backend == "cpu" and "failed during operation (fake-npu: device lost" in out.fallback
        assert "accelerator_failed" in events.kinds()
        out = run_frame(eng)
        assert out.backend == "cpu"
        events.wait_for("accelerator_reattach_failed")  # re-attach is tried, and fails while the device is away
        assert "accelerator_reattached" not in events.kinds()
        fail.unlink()
        wait_for_backend(eng, "npu")
        assert "accelerator_reattached" in events.kinds()
        assert acc.loads >= 2 and eng.status()["fallback_frames"] >= 2
    finally:
        eng.close()


def test_a_failure_just_as_reattach_finishes_gets_another_reattach(models, npu_lib, tmp_path):
    """The device drops again at the moment the re-attach thread is about to exit."""
    fail = tmp_path / "unplugged"
    events, eng = EventWatch(), None

    def on_event(event):
        events(event)
        if event["kind"] == "accelerator_reattached" and events.kinds().count("accelerator_reattached") == 1:
            # what the frame thread does when an invoke fails, here inside the re-attach round
            eng.accelerator.fail_over(eng._active, RuntimeError("fake-npu: device lost again"))

    eng = Engine(models["dir"], public_key=models["public"], accelerator=loader(npu_lib, fail_file=str(fail)),
                 reattach_backoff_s=(0.05, 0.2), on_event=on_event)
    try:
        assert run_frame(eng).backend == "npu"
        fail.touch()
        assert run_frame(eng).backend == "cpu"
        fail.unlink()
        wait_for_backend(eng, "npu")  # needs a second round: the first one's attachment was lost
        assert events.kinds().count("accelerator_reattached") >= 2
    finally:
        eng.close()


def test_accelerator_hanging_past_the_deadline_continues_on_cpu(models, npu_lib, tmp_path):
    hang = tmp_path / "wedged"
    # The device stays wedged until the file is removed (60 s cap, so a broken engine fails the
    # test instead of hanging it); the deadline is long enough not to fire on a busy machine.
    acc = loader(npu_lib, hang_file=str(hang), hang_ms=60000)
    eng = Engine(models["dir"], public_key=models["public"], accelerator=acc, invoke_deadline_ms=500,
                 reattach_backoff_s=(0.05, 0.2))
    try:
        assert run_frame(eng).backend == "npu"
        assert fake_npu_hanging(npu_lib) == 0
        hang.touch()
        out = run_frame(eng)
        assert out.backend == "cpu" and "did not finish within 500 ms" in out.fallback
        # the frame came back (on the CPU twin) while the wedged invoke is still inside the device
        assert fake_npu_hanging(npu_lib) >= 1
        assert run_frame(eng).backend == "cpu"  # later frames do not wait for the wedged device either
        hang.unlink()
        wait_for_backend(eng, "npu")
    finally:
        if hang.exists():
            hang.unlink()  # release hung worker threads
        eng.close()


def test_tier_without_a_build_for_the_loaded_accelerator_runs_its_cpu_twin(tmp_path, npu_lib):
    s = make_model_set(str(tmp_path / "models"), [
        {"name": "small", "cpu": "cls_int8.tflite", "rank": 0, "accel": {"npu": "cls_int8.tflite"}},
        {"name": "large", "cpu": "cls_int8_b.tflite", "rank": 1}])
    eng = Engine(s["dir"], public_key=s["public"], accelerator=loader(npu_lib))
    try:
        assert run_frame(eng).backend == "npu"
        eng.request_tier("large", wait=True)
        out = run_frame(eng)
        assert out.backend == "cpu" and out.fallback == "tier large has no npu build; using CPU twin cls_int8_b.tflite"
        assert eng.status()["accelerator_note"] == out.fallback
    finally:
        eng.close()


def test_from_config_builds_the_external_delegate(models, npu_lib):
    cfg = {
        "models": {"manifest": os.path.join(models["dir"], "manifest.yaml"), "public_key": models["public"],
                   "task": "classify", "start_tier": "auto", "memory_budget_mb": 16.0},
        "accelerator": {"kind": "external", "external": {"library": npu_lib, "options": {"hang_ms": 10},
                                                         "name": "npu"}, "cpu_threads": 2,
                        "invoke_deadline_ms": 500.0, "reattach_initial_s": 1.0, "reattach_max_s": 5.0},
    }
    eng = Engine.from_config(cfg)
    try:
        out = run_frame(eng)
        assert out.backend == "npu" and out.tier == "small"
        acc = eng.accelerator
        assert eng.threads == 2 and acc.invoke_deadline_ms == 500.0 and acc.reattach_backoff_s == (1.0, 5.0)
        assert eng.status()["accelerator"]["options"] == {"hang_ms": "10"}
    finally:
        eng.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_threads_made_while_a_tier_loads_in_the_background_keep_the_frame_path_priority(models, npu_lib,
                                                                                       monkeypatch):
    """The loader runs at low priority, but the swapped-in tier's invoke thread must not inherit it."""
    from firmware_py.inference.priority import can_restore_priority

    eng = Engine(models["dir"], public_key=models["public"], accelerator=loader(npu_lib), threads=2)
    try:
        base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        loader_nice = []
        real = eng._build_slot

        def observed(tier):
            loader_nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return real(tier)

        monkeypatch.setattr(eng, "_build_slot", observed)
        eng.request_tier("large", wait=True)
        assert run_frame(eng).backend == "npu"
        # lowered only where the process may restore what the load created (root or CAP_SYS_NICE)
        assert loader_nice == [min(base + 10, 19) if can_restore_priority() else base]  # nice tops out at 19
        invoke_thread = eng._active.invoker._thread  # made on the loader thread, runs every frame
        assert invoke_thread.is_alive() and invoke_thread.native_id != threading.get_native_id()
        assert os.getpriority(os.PRIO_PROCESS, invoke_thread.native_id) == base
    finally:
        eng.close()
