"""Load-time validation: each bad model gets a one-line reason, and a bad tier never stops the engine."""
import os
import sys

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
from model_sets import build_fake_npu_or_skip, file_entry, make_model_set, tier_entry  # noqa: E402

from firmware_py.inference.accelerators.external import ExternalDelegate  # noqa: E402
from firmware_py.errors import ModelError  # noqa: E402
from firmware_py.inference import Engine  # noqa: E402
from firmware_py.inference.manifest import load_manifest  # noqa: E402
from firmware_py.inference.validate import ModelCheckError, read_verified  # noqa: E402

GOOD = {"name": "good", "cpu": "cls_int8.tflite", "rank": 0}


@pytest.fixture(scope="module")
def npu_lib(tmp_path_factory):
    return build_fake_npu_or_skip(str(tmp_path_factory.mktemp("delegate")))


def one_bad_tier(tmp_path, bad: dict, **kw):
    """A signed set with a good tier (rank 0) and `bad` (rank 1); returns (set, events, engine)."""
    s = make_model_set(str(tmp_path / "models"), [GOOD, {"name": "bad", "rank": 1, **bad}])
    events = []
    return s, events, Engine(s["dir"], public_key=s["public"], on_event=events.append, **kw)


def refusal(tmp_path, bad: dict, **kw) -> str:
    """Ask for the bad tier while frames run; it is refused and the good tier keeps serving."""
    s, events, eng = one_bad_tier(tmp_path, bad, **kw)
    try:
        fut = eng.request_tier("bad")
        with pytest.raises(ModelError) as e:
            fut.result(10)
        eng.input_view()[...] = 0
        out = eng.invoke()
        assert out.tier == "good"
        assert eng.status()["refused"]["bad"] == str(e.value)
        assert events[-1]["kind"] == "tier_refused"
        msg = str(e.value)
        assert "\n" not in msg
        return msg
    finally:
        eng.close()


def test_float_model_where_int8_required(tmp_path):
    msg = refusal(tmp_path, {"cpu": "cls_float.tflite", "io_from": "cls_int8.tflite"})
    assert "float model (float32 input) where int8 is required" in msg and "cls_float.tflite" in msg


def test_input_shape_differs_from_manifest(tmp_path):
    msg = refusal(tmp_path, {"cpu": "cls_int8_48.tflite", "io_from": "cls_int8.tflite"})
    assert "input shape [1, 48, 48, 1] differs from the manifest's [1, 32, 32, 1]" in msg


def test_16x8_quantization_is_unsupported(tmp_path):
    msg = refusal(tmp_path, {"cpu": "cls_int16x8.tflite", "io_from": "cls_int8.tflite"})
    assert "int16" in msg and "unsupported" in msg


def test_a_refused_tier_is_not_rebuilt_until_a_reload_brings_a_new_set(tmp_path):
    """The daemon's policy re-requests its target every period: one refusal, not one a second."""
    from firmware_py.inference.signing import sign_model_set

    s, events, eng = one_bad_tier(tmp_path, {"cpu": "cls_float.tflite", "io_from": "cls_int8.tflite"})
    try:
        for _ in range(3):
            with pytest.raises(ModelError, match="float model"):
                eng.request_tier("bad").result(10)
        assert [e["kind"] for e in events].count("tier_refused") == 1
        # the fixed build arrives as a signed update: the tier gets a fresh chance
        with open(os.path.join(s["dir"], "cls_float.tflite"), "wb") as f:
            f.write(open(os.path.join(s["dir"], "cls_int8.tflite"), "rb").read())
        mpath = os.path.join(s["dir"], "manifest.yaml")
        doc = yaml.safe_load(open(mpath))
        doc["tiers"][1] = tier_entry(s["dir"], "bad", "cls_float.tflite", rank=1)
        yaml.safe_dump(doc, open(mpath, "w"), sort_keys=False)
        sign_model_set(s["dir"], s["private"])
        assert eng.reload() is True and eng.status()["refused"] == {}
        assert eng.request_tier("bad", wait=True).result() == "bad"
        eng.input_view()[...] = 0
        assert eng.invoke().tier == "bad"
    finally:
        eng.close()


def test_quantization_differing_from_manifest_is_refused(tmp_path):
    s = make_model_set(str(tmp_path / "models"), [GOOD, {"name": "bad", "cpu": "cls_int8_b.tflite", "rank": 1}])
    path = os.path.join(s["dir"], "manifest.yaml")
    doc = yaml.safe_load(open(path))
    doc["tiers"][1]["input"]["quantization"]["scale"] = 0.5
    yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
    from firmware_py.inference.signing import sign_model_set

    sign_model_set(s["dir"], s["private"], load_check=False)  # `models sign` would refuse it
    eng = Engine(s["dir"], public_key=s["public"])
    try:
        with pytest.raises(ModelError, match=r"input quantization \(scale 0.0039.*differs from the manifest's"):
            eng.request_tier("bad", wait=True)
    finally:
        eng.close()


def test_edgetpu_model_as_cpu_twin_is_refused(tmp_path):
    msg = refusal(tmp_path, {"cpu": "cls_edgetpu.tflite"})
    assert "compiled for the Edge TPU; no Edge TPU loaded; it cannot be the CPU twin" in msg


def test_edgetpu_build_with_no_edgetpu_runs_the_cpu_twin(tmp_path, npu_lib):
    """A tier whose accelerator build holds edgetpu-custom-op, with a delegate that cannot run it."""
    s = make_model_set(str(tmp_path / "models"), [
        {"name": "t", "cpu": "cls_int8.tflite", "accel": {"external": "cls_edgetpu.tflite"}}])
    loader = ExternalDelegate(library=npu_lib)
    events = []
    eng = Engine(s["dir"], public_key=s["public"], accelerator=loader, on_event=events.append)
    try:
        eng.input_view()[...] = 0
        out = eng.invoke()
        assert out.backend == "cpu"
        assert out.fallback.endswith("compiled for the Edge TPU; no Edge TPU loaded; using CPU twin cls_int8.tflite")
        assert "cls_edgetpu.tflite" in out.fallback
        assert events[0]["kind"] == "accelerator_build_refused"
    finally:
        eng.close()


@pytest.fixture
def listed(tmp_path):
    s = make_model_set(str(tmp_path / "models"), [GOOD])
    m = load_manifest(os.path.join(s["dir"], "manifest.yaml"))
    return m, m.tiers[0].files["cpu"]


def test_read_verified_missing_truncated_checksum(listed):
    m, f = listed
    path = m.abspath(f)
    data = open(path, "rb").read()
    assert read_verified(m, f) == data
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(ModelCheckError, match=rf"truncated \({len(data) // 2} of {len(data)} bytes\)") as e:
        read_verified(m, f)
    assert e.value.kind == "truncated"
    open(path, "wb").write(bytes([data[0] ^ 1]) + data[1:])
    with pytest.raises(ModelCheckError, match="does not match the manifest") as e:
        read_verified(m, f)
    assert e.value.kind == "checksum"
    os.remove(path)
    with pytest.raises(ModelCheckError, match="model file missing") as e:
        read_verified(m, f)
    assert e.value.kind == "missing"


def test_bad_start_tier_falls_back_to_its_neighbour(tmp_path):
    s = make_model_set(str(tmp_path / "models"), [
        GOOD, {"name": "bad", "cpu": "cls_float.tflite", "io_from": "cls_int8.tflite", "rank": 1}])
    events = []
    eng = Engine(s["dir"], public_key=s["public"], start_tier="bad", on_event=events.append)
    try:
        assert eng.active_tier.name == "good"
        assert [e["kind"] for e in events] == ["tier_refused"]
    finally:
        eng.close()


def test_no_loadable_tier_is_one_clear_error(tmp_path):
    s = make_model_set(str(tmp_path / "models"), [{"name": "bad", "cpu": "cls_float.tflite",
                                                   "io_from": "cls_int8.tflite"}])
    with pytest.raises(ModelError, match="no tier of .* could be loaded; first problem: .*float model"):
        Engine(s["dir"], public_key=s["public"])


def test_truncated_file_with_matching_manifest_entry(tmp_path):
    """A manifest written for a truncated file (bytes and digest match) fails in the interpreter, in one line."""
    s = make_model_set(str(tmp_path / "models"), [GOOD, {"name": "bad", "cpu": "cls_int8_b.tflite", "rank": 1}])
    path = os.path.join(s["dir"], "cls_int8_b.tflite")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:300])
    mpath = os.path.join(s["dir"], "manifest.yaml")
    doc = yaml.safe_load(open(mpath))
    doc["tiers"][1]["files"]["cpu"] = file_entry(s["dir"], "cls_int8_b.tflite")
    yaml.safe_dump(doc, open(mpath, "w"), sort_keys=False)
    from firmware_py.inference.signing import sign_model_set

    sign_model_set(s["dir"], s["private"], load_check=False)  # `models sign` would refuse it
    eng = Engine(s["dir"], public_key=s["public"])
    try:
        # tflite_runtime 2.14 would read past the buffer here (SIGSEGV or not, depending on the heap)
        with pytest.raises(ModelError, match="corrupt or truncated TFLite flatbuffer") as e:
            eng.request_tier("bad", wait=True)
        assert "\n" not in str(e.value)
        eng.input_view()[...] = 0
        assert eng.invoke().tier == "good"
    finally:
        eng.close()


@pytest.mark.parametrize("name", ["cls_int8.tflite", "seg_int8.tflite", "cls_edgetpu.tflite"])
def test_every_truncation_point_is_refused_before_the_interpreter(name):
    from model_sets import fixture

    from firmware_py.inference.flatbuffer import check_flatbuffer

    data = open(fixture(name), "rb").read()
    check_flatbuffer(data, name)
    for cut in range(0, len(data)):
        with pytest.raises(ModelError, match="corrupt or truncated TFLite flatbuffer"):
            check_flatbuffer(data[:cut], name)


def test_other_custom_op_without_its_delegate_names_the_op(tmp_path, npu_lib):
    s = make_model_set(str(tmp_path / "models"), [
        {"name": "t", "cpu": "cls_int8.tflite", "accel": {"external": "cls_edgetpu.tflite"}}])
    path = os.path.join(s["dir"], "cls_edgetpu.tflite")
    data = open(path, "rb").read()
    assert data.count(b"edgetpu-custom-op") == 1
    open(path, "wb").write(data.replace(b"edgetpu-custom-op", b"vendor-npu-op-xyz"))  # same length
    mpath = os.path.join(s["dir"], "manifest.yaml")
    doc = yaml.safe_load(open(mpath))
    doc["tiers"][0]["files"]["external"] = file_entry(s["dir"], "cls_edgetpu.tflite")
    yaml.safe_dump(doc, open(mpath, "w"), sort_keys=False)
    from firmware_py.inference.signing import sign_model_set

    sign_model_set(s["dir"], s["private"])
    loader = ExternalDelegate(library=npu_lib)
    eng = Engine(s["dir"], public_key=s["public"], accelerator=loader)
    try:
        eng.input_view()[...] = 0
        out = eng.invoke()
        assert out.backend == "cpu"
        assert out.fallback.endswith(
            "uses custom op 'vendor-npu-op-xyz' that no loaded delegate provides; using CPU twin cls_int8.tflite")
    finally:
        eng.close()
