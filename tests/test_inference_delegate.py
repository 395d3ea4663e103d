"""Accelerator delegates for real: a C external delegate built by the test, loaded with load_delegate.

tests/delegate/fake_npu_delegate.c claims the models' RESHAPE node and runs it (a byte copy), and
fails or hangs on demand, like a USB accelerator that is unplugged or wedged.
"""
import os
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
from model_sets import LABELS, build_fake_npu, fake_npu_invocations, make_model_set, reference_output  # noqa: E402

from firmware_py.drivers.accelerator import DelegateLoader  # noqa: E402
from firmware_py.errors import ConfigError  # noqa: E402
from firmware_py.inference import Engine  # noqa: E402
from firmware_py.inference.backend import interpreter_backend  # noqa: E402

RNG = np.random.default_rng(9)
TIERS = [
    {"name": "small", "cpu": "cls_int8.tflite", "rank": 0, "accel": {"npu": "cls_int8.tflite"}},
    {"name": "large", "cpu": "cls_int8_b.tflite", "rank": 1, "accel": {"npu": "cls_int8_b.tflite"}},
]
REF = {"small": "cls_int8.tflite", "large": "cls_int8_b.tflite"}


@pytest.fixture(scope="module")
def npu_lib(tmp_path_factory):
    lib = build_fake_npu(str(tmp_path_factory.mktemp("delegate")))
    if lib is None:
        pytest.skip("gcc not installed: cannot build the test delegate")
    return lib


@pytest.fixture
def models(tmp_path):
    return make_model_set(str(tmp_path / "models"), TIERS)


def loader(lib, **options):
    return DelegateLoader("external", library=lib, options=options, key="npu", interp=interpreter_backend())


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
        st = eng.status()
        assert st["backend"] == "cpu" and st["accelerator"]["loaded"] is False
        assert "libnot_there.so" in st["accelerator"]["error"]
    finally:
        eng.close()


def test_edgetpu_without_libedgetpu_runs_the_cpu_twin(tmp_path):
    s = make_model_set(str(tmp_path / "models"), [
        {"name": "small", "cpu": "cls_int8.tflite", "accel": {"edgetpu": "cls_edgetpu.tflite"}}])
    acc = DelegateLoader("edgetpu", device="usb:0", library=str(tmp_path / "libedgetpu.so.1"),
                         interp=interpreter_backend())
    eng = Engine(s["dir"], public_key=s["public"], accelerator=acc, reattach_backoff_s=(60, 60))
    try:
        out = run_frame(eng)
        assert out.backend == "cpu" and "cannot load edgetpu delegate" in out.fallback
        assert acc.status()["options"] == {"device": "usb:0"}
    finally:
        eng.close()


def test_bad_accelerator_configuration_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="use usb, usb:N or pci:N"):
        DelegateLoader("edgetpu", device="usb0", interp=interpreter_backend())
    with pytest.raises(ConfigError, match="external_library is not set"):
        DelegateLoader("external", interp=interpreter_backend())


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
        # warm-up of the accelerator build also ran through the delegate
        assert fake_npu_invocations(npu_lib) - before == 5
        eng.request_tier("large", wait=True)
        out = run_frame(eng)
        assert out.tier == "large" and out.backend == "npu"
        assert acc.loads == 1  # loaded once, shared by every tier's interpreter
        assert eng.status()["accelerator"]["loaded"] is True
    finally:
        eng.close()


def wait_for_backend(eng, backend, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = run_frame(eng)
        if out.backend == backend:
            return out
        time.sleep(0.02)
    raise AssertionError(f"backend never became {backend}: {eng.status()}")


def test_accelerator_failing_during_operation_continues_on_cpu_and_reattaches(models, npu_lib, tmp_path):
    fail = tmp_path / "unplugged"
    events = []
    acc = loader(npu_lib, fail_file=str(fail))
    eng = Engine(models["dir"], public_key=models["public"], accelerator=acc, reattach_backoff_s=(0.05, 0.2),
                 on_event=events.append)
    try:
        assert run_frame(eng).backend == "npu"
        fail.touch()
        out = run_frame(eng)  # this very frame is rerun on the CPU twin, not lost
        assert out.backend == "cpu" and "failed during operation (fake-npu: device lost" in out.fallback
        assert "accelerator_failed" in [e["kind"] for e in events]
        out = run_frame(eng)
        assert out.backend == "cpu"
        time.sleep(0.3)  # a few re-attach attempts fail while the device is away
        assert "accelerator_reattach_failed" in [e["kind"] for e in events]
        fail.unlink()
        wait_for_backend(eng, "npu")
        assert "accelerator_reattached" in [e["kind"] for e in events]
        assert acc.loads >= 2 and eng.status()["fallback_frames"] >= 2
    finally:
        eng.close()


def test_accelerator_hanging_past_the_deadline_continues_on_cpu(models, npu_lib, tmp_path):
    hang = tmp_path / "wedged"
    acc = loader(npu_lib, hang_file=str(hang), hang_ms=1500)
    eng = Engine(models["dir"], public_key=models["public"], accelerator=acc, invoke_deadline_ms=100,
                 reattach_backoff_s=(0.05, 0.2))
    try:
        assert run_frame(eng).backend == "npu"
        hang.touch()
        t0 = time.monotonic()
        out = run_frame(eng)
        waited = time.monotonic() - t0
        assert out.backend == "cpu" and "did not finish within 100 ms" in out.fallback
        assert waited < 1.5  # returned at the deadline, not when the wedged invoke finished
        hang.unlink()
        wait_for_backend(eng, "npu")
    finally:
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
        "accelerator": {"kind": "external", "edgetpu_device": "usb", "external_library": npu_lib,
                        "external_options": {"hang_ms": 10}, "external_name": "npu", "cpu_threads": 2,
                        "invoke_deadline_ms": 500.0, "reattach_initial_s": 1.0, "reattach_max_s": 5.0},
    }
    eng = Engine.from_config(cfg)
    try:
        out = run_frame(eng)
        assert out.backend == "npu" and out.tier == "small"
        assert eng.threads == 2 and eng.invoke_deadline_ms == 500.0 and eng.reattach_backoff_s == (1.0, 5.0)
        assert eng.status()["accelerator"]["options"] == {"hang_ms": "10"}
    finally:
        eng.close()
