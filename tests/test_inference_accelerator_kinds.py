"""Accelerator kinds: devices() on a fake sysfs tree, per-format checks, and a non-delegate NPU kind.

FakeNpu below is a whole accelerator kind with its own model format (`.tnpu`: a header and an int8
weight matrix run with NumPy), registered from this file only, as a Hailo / RKNN / Ethos-U
runtime would be from its own file: it loads files of its format, runs them, fails on demand
like an unplugged device, and reports. Nothing else in the project knows about it.
"""
import json
import os
import sys
import time

import numpy as np
import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
from model_sets import LABELS, file_entry, make_model_set  # noqa: E402

from firmware_py.config import load_config  # noqa: E402
from firmware_py.errors import ModelError, SecurityError  # noqa: E402
from firmware_py.inference import Engine  # noqa: E402
from firmware_py.inference.accelerators import ACCELERATORS, AcceleratorKind, AcceleratorUnavailable, devices  # noqa: E402
from firmware_py.inference.formats import FORMATS, ModelFormat, register_format  # noqa: E402
from firmware_py.inference.signing import sign_model_set, verify_model_set  # noqa: E402
from firmware_py.registry import Key  # noqa: E402

MAGIC = b"TNPU1\n"


def check_tnpu(data: bytes, path: str) -> None:
    if not data.startswith(MAGIC) or b"\n" not in data[len(MAGIC):]:
        raise ModelError(f"{path}: not a test-npu model (bad header); rebuild it with the test-npu compiler")


class TnpuModel:
    """A LoadedModel: out = clip((W @ x) >> 10) on int8 codes, in buffers the runtime owns."""

    def __init__(self, data: bytes, device):
        head, _, weights = data[len(MAGIC):].partition(b"\n")
        self.spec = json.loads(head)
        self.device = device
        n_in = int(np.prod(self.spec["input"]["shape"]))
        self.w = np.frombuffer(weights, np.int8).reshape(-1, n_in).astype(np.int32)
        self._in = np.zeros(self.spec["input"]["shape"], np.int8)
        self._out = np.zeros(self.spec["output"]["shape"], np.int8)

    def _details(self, which, index):
        s = self.spec[which]
        return [{"index": index, "shape": np.array(s["shape"]), "dtype": np.int8,
                 "quantization_parameters": {"scales": np.array([s["scale"]]),
                                             "zero_points": np.array([s["zero_point"]])}}]

    def input_details(self):
        return self._details("input", 0)

    def output_details(self):
        return self._details("output", 1)

    def input_view(self):
        return self._in

    def output_view(self):
        return self._out

    def run(self):
        if self.device["unplugged"]:
            raise RuntimeError("test-npu: device lost")
        self.device["runs"] += 1
        self._out.reshape(-1)[:] = np.clip((self.w @ self._in.reshape(-1).astype(np.int32)) >> 10, -128, 127)

    def memory_bytes(self):
        return self.w.nbytes + self._in.nbytes + self._out.nbytes

    def close(self):
        self.w = None


class FakeNpu(AcceleratorKind):
    name = "testnpu"
    model_format = "test-npu"
    fix = "plug the test NPU in"
    attached = {"unplugged": False, "runs": 0}  # the one simulated device

    def __init__(self, node: str):
        super().__init__("tnpu")
        self.node = node

    @classmethod
    def from_config(cls, section):
        return cls(section.node)

    @classmethod
    def devices(cls, root="/"):
        from firmware_py.inference.accelerators import Device

        return [] if cls.attached["unplugged"] else [Device(cls.name, "0", os.path.join(root, cls.name))]

    def _open(self):
        if self.attached["unplugged"]:
            raise AcceleratorUnavailable(f"{self.node}: no such device")
        return self.attached

    def open_model(self, data, path, *, threads, cpu_twin):
        return TnpuModel(data, self.handle())

    def describe(self):
        return f"device {self.node}"


@pytest.fixture
def testnpu():
    register_format(ModelFormat("test-npu", (".tnpu",), check_tnpu))
    ACCELERATORS.register("testnpu", doc="a NumPy NPU (test only)", keys={
        "node": Key("str", "/dev/testnpu0", "Device node of the test NPU."),
    })(FakeNpu)
    FakeNpu.attached.update(unplugged=False, runs=0)
    yield FakeNpu
    ACCELERATORS.unregister("testnpu")
    del FORMATS["test-npu"]


def tnpu_bytes(seed=0) -> bytes:
    """A model with cls_int8.tflite's I/O quantization (the tier's manifest entry describes both)."""
    from model_sets import _io, fixture

    shape, inp, out = _io(fixture("cls_int8.tflite"))
    spec = {"input": {"shape": shape, **inp["quantization"]}, "output": {"shape": [1, 3], **out["quantization"]}}
    w = np.random.default_rng(seed).integers(-128, 128, (3, int(np.prod(shape))), dtype=np.int8)
    return MAGIC + json.dumps(spec).encode() + b"\n" + w.tobytes()


def npu_set(tmp_path, model: bytes):
    s = make_model_set(str(tmp_path / "models"), [{"name": "small", "cpu": "cls_int8.tflite"}])
    with open(os.path.join(s["dir"], "small.tnpu"), "wb") as f:
        f.write(model)
    path = os.path.join(s["dir"], "manifest.yaml")
    doc = yaml.safe_load(open(path))
    doc["tiers"][0]["files"]["tnpu"] = file_entry(s["dir"], "small.tnpu")
    yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
    sign_model_set(s["dir"], s["private"], load_check=False)  # some tests give it a broken .tnpu
    return s


def expected_label(model: bytes, x: np.ndarray) -> str:
    m = TnpuModel(model, {"unplugged": False, "runs": 0})
    m.input_view()[...] = x
    m.run()
    return LABELS[int(np.argmax(m.output_view()))]


def test_a_kind_registered_from_a_test_runs_its_own_model_format(testnpu, tmp_path):
    model = tnpu_bytes()
    s = npu_set(tmp_path, model)
    cfg = load_config(None).replace(
        models={"manifest": s["dir"], "public_key": s["public"]},
        accelerator={"kind": "testnpu", "testnpu": {"node": "/dev/testnpu7"}})
    eng = Engine.from_config(cfg)
    try:
        assert eng.accelerator.kind.node == "/dev/testnpu7"  # its own config sub-section
        x = np.random.default_rng(1).integers(-128, 128, (1, 32, 32, 1), dtype=np.int8)
        eng.input_view()[...] = x
        out = eng.invoke()
        assert out.backend == "tnpu" and out.fallback is None and out.label == expected_label(model, x)
        assert testnpu.attached["runs"] >= 2  # warm-up and the frame ran on the NPU runtime
        st = eng.status()["accelerator"]
        assert st["kind"] == "testnpu" and st["format"] == "test-npu" and st["loaded"] is True
        assert [d.kind for d in devices(str(tmp_path))] == ["testnpu"]
    finally:
        eng.close()


def test_the_npu_kind_falls_over_to_the_cpu_twin_and_reattaches(testnpu, tmp_path):
    s = npu_set(tmp_path, tnpu_bytes())
    eng = Engine(s["dir"], public_key=s["public"], accelerator=FakeNpu("/dev/testnpu0"),
                 reattach_backoff_s=(0.05, 0.2))
    try:
        eng.input_view()[...] = 0
        assert eng.invoke().backend == "tnpu"
        testnpu.attached["unplugged"] = True
        eng.input_view()[...] = 0
        out = eng.invoke()  # this very frame is rerun on the CPU twin
        assert out.backend == "cpu" and "tnpu failed during operation (test-npu: device lost)" in out.fallback
        testnpu.attached["unplugged"] = False
        deadline = time.monotonic() + 30  # re-attach runs on a background thread, with back-off
        while time.monotonic() < deadline:
            eng.input_view()[...] = 0
            if eng.invoke().backend == "tnpu":
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"never re-attached: {eng.status()}")
    finally:
        eng.close()


def test_a_file_failing_its_format_check_runs_the_cpu_twin(testnpu, tmp_path):
    s = npu_set(tmp_path, b"GARBAGE" + tnpu_bytes()[len(MAGIC):])
    eng = Engine(s["dir"], public_key=s["public"], accelerator=FakeNpu("/dev/testnpu0"))
    try:
        eng.input_view()[...] = 0
        out = eng.invoke()
        assert out.backend == "cpu" and out.fallback.endswith("small.tnpu: not a test-npu model (bad header); "
                                                              "rebuild it with the test-npu compiler")
    finally:
        eng.close()


def test_unlisted_files_of_a_registered_format_are_refused(testnpu, tmp_path):
    s = make_model_set(str(tmp_path / "models"), [{"name": "small", "cpu": "cls_int8.tflite"}])
    with open(os.path.join(s["dir"], "smuggled.tnpu"), "wb") as f:
        f.write(tnpu_bytes())
    with pytest.raises(SecurityError, match="smuggled.tnpu: not listed in the signed manifest"):
        verify_model_set(s["dir"], s["public"])


def test_an_edgetpu_build_must_be_compiled_for_the_edge_tpu(tmp_path):
    from firmware_py.inference.formats import model_format

    model_format("edgetpu-tflite").check(open(os.path.join(os.path.dirname(__file__), "data",
                                                           "cls_edgetpu.tflite"), "rb").read(), "ok.tflite")
    plain = open(os.path.join(os.path.dirname(__file__), "data", "cls_int8.tflite"), "rb").read()
    with pytest.raises(ModelError, match="plain.tflite: listed as an Edge TPU build but has no edgetpu-custom-op"):
        model_format("edgetpu-tflite").check(plain, "plain.tflite")


def test_devices_finds_edge_tpus_in_a_fake_sysfs_tree(tmp_path):
    def usb(name, vendor, product):
        d = tmp_path / "sys" / "bus" / "usb" / "devices" / name
        d.mkdir(parents=True)
        (d / "idVendor").write_text(vendor + "\n")
        (d / "idProduct").write_text(product + "\n")

    usb("2-1", "18d1", "9302")  # an Edge TPU running its firmware
    usb("1-1.2", "1a6e", "089a")  # one just plugged in, firmware not loaded yet
    usb("1-1", "1d6b", "0002")  # a hub
    (tmp_path / "sys" / "bus" / "usb" / "devices" / "usb1").mkdir()  # no id files
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "apex_0").touch()
    found = [(d.kind, d.device, os.path.relpath(d.path, tmp_path), d.detail) for d in devices(str(tmp_path))]
    assert found == [("edgetpu", "usb:0", "sys/bus/usb/devices/1-1.2", "1a6e:089a"),
                     ("edgetpu", "usb:1", "sys/bus/usb/devices/2-1", "18d1:9302"),
                     ("edgetpu", "pci:0", "dev/apex_0", "PCIe")]
    assert devices(str(tmp_path / "empty")) == []
