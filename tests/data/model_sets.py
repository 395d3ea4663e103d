"""Build model-set folders (manifest.yaml + .tflite + signature) from the committed fixtures.

Used by tests/test_inference_*.py and tests/test_signing_*.py; the manifest fields are read from
the real models with the project's interpreter (firmware_py.inference.backend: tflite-runtime or
ai-edge-litert, whichever is installed), as the trainer's build step does.
"""
from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import yaml

from firmware_py.inference.signing import sign_model_set, write_keypair

DATA = os.path.dirname(os.path.abspath(__file__))
LABELS = ["normal", "benign", "malignant"]


def fixture(name: str) -> str:
    return os.path.join(DATA, name)


def _interpreter(path: str):
    from firmware_py.inference.backend import interpreter_backend

    return interpreter_backend().Interpreter(model_path=path)


def _io(path: str):
    it = _interpreter(path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]

    def spec(d):
        s = {"dtype": d["dtype"].__name__}
        scale, zp = d["quantization"]
        if scale:
            s["quantization"] = {"scale": float(scale), "zero_point": int(zp)}
        return s

    return [int(x) for x in inp["shape"]], spec(inp), spec(out)


def file_entry(folder: str, name: str) -> dict:
    with open(os.path.join(folder, name), "rb") as f:
        data = f.read()
    return {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def tier_entry(folder: str, name: str, cpu_file: str, *, task="classify", rank=0, accel: dict | None = None,
               io_from: str | None = None) -> dict:
    """One manifest tier; `accel` maps accelerator key -> file name; `io_from` reads I/O specs from another file."""
    src = os.path.join(folder, io_from or cpu_file)
    shape, inp, out = _io(src if os.path.exists(src) else fixture(io_from or cpu_file))
    files = {"cpu": file_entry(folder, cpu_file)}
    for key, fname in (accel or {}).items():
        files[key] = file_entry(folder, fname)
    output = dict(out)
    if task == "classify":
        output.update(decode="softmax", labels=LABELS, threshold={"label": "malignant", "value": 0.5})
    else:
        output.update(decode="sigmoid", threshold={"value": 0.5})
    return {
        "name": name, "task": task, "rank": rank, "files": files,
        "input": {"shape": shape, **inp},
        "preprocess": {"grid": shape[1:3], "dynamic_range_db": 60, "normalise": {"mean": 0.0, "std": 1.0}, "fill": 0},
        "output": output,
        "params": 100, "macs": 1000, "file_bytes": files["cpu"]["bytes"],
        "metrics": {}, "latency_ms": {}, "energy_mj": {},
    }


def make_model_set(folder: str, tiers: list[dict], *, keys_dir: str | None = None, copy: dict | None = None) -> dict:
    """Copy fixtures into `folder`, write the manifest from `tiers` (specs for tier_entry) and sign it.

    The signature is written without `models sign`'s child-process load check: the tests sign
    deliberately broken sets to see the engine refuse them.

    tiers: [{"name":..., "cpu": fixture file, "task":..., "rank":..., "accel": {key: fixture}, "io_from":...}]
    Returns {"dir", "private", "public"}; keys_dir=None makes a fresh throwaway key pair beside the folder.
    """
    os.makedirs(folder, exist_ok=True)
    for spec in tiers:
        for fname in [spec["cpu"], *(spec.get("accel") or {}).values()]:
            shutil.copyfile(fixture(fname), os.path.join(folder, fname))
    manifest = {
        "schema_version": 1,
        "tiers": [
            tier_entry(folder, s["name"], s["cpu"], task=s.get("task", "classify"), rank=s.get("rank", 0),
                       accel=s.get("accel"), io_from=s.get("io_from"))
            for s in tiers
        ],
    }
    with open(os.path.join(folder, "manifest.yaml"), "w") as f:
        yaml.safe_dump(manifest, f, sort_keys=False)
    keys_dir = keys_dir or os.path.join(os.path.dirname(os.path.abspath(folder)), "keys")
    os.makedirs(keys_dir, exist_ok=True)
    private, public = os.path.join(keys_dir, "test.pem"), os.path.join(keys_dir, "test.pub")
    if not os.path.exists(private):
        write_keypair(private, public)
    sign_model_set(folder, private, load_check=False)
    return {"dir": folder, "private": private, "public": public}


TWO_CLASSIFIERS = [
    {"name": "cls-small", "cpu": "cls_int8.tflite", "rank": 0},
    {"name": "cls-large", "cpu": "cls_int8_b.tflite", "rank": 1},
]


def build_fake_npu(out_dir: str) -> str | None:
    """Compile tests/delegate/fake_npu_delegate.c with gcc; None when gcc is absent."""
    import subprocess

    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    src = os.path.join(os.path.dirname(DATA), "delegate", "fake_npu_delegate.c")
    lib = os.path.join(out_dir, "libfake_npu.so")
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", lib, src], check=True,
                   capture_output=True, text=True)
    return lib


def build_fake_npu_or_skip(out_dir: str) -> str:
    """build_fake_npu(), skipping the calling test (with the reason) when gcc is absent."""
    import pytest

    lib = build_fake_npu(out_dir)
    if lib is None:
        pytest.skip("gcc not installed: cannot build the test delegate")
    return lib


def _fake_npu_counter(lib: str, name: str) -> int:
    import ctypes

    fn = getattr(ctypes.CDLL(lib), name)  # dlopen returns the handle the interpreter loaded
    fn.restype = ctypes.c_long
    return int(fn())


def fake_npu_invocations(lib: str) -> int:
    """How many times the delegate's kernel ran in this process."""
    return _fake_npu_counter(lib, "fake_npu_invocations")


def fake_npu_hanging(lib: str) -> int:
    """How many delegate invokes are hanging on hang_file right now."""
    return _fake_npu_counter(lib, "fake_npu_hanging")


def reference_output(model: str, frame) -> np.ndarray:
    """Raw output tensor of `model` on `frame`, via the plain set_tensor/invoke/get_tensor path."""
    it = _interpreter(fixture(model) if not os.path.isabs(model) else model)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], frame)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()
