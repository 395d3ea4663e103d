"""Raw int8 outputs of every shipped tier on fixed inputs, to compare architectures and interpreters.

    python tests/data/tier_outputs.py            # on x86_64: (re)write this interpreter's reference
    python tests/data/tier_outputs.py --compare  # any machine: a Markdown table, this interpreter
                                                 # against every package's x86_64 reference

tests/test_tiers_cross_arch.py runs the same tiers on the same inputs on whatever machine it is on
(x86_64 in CI, aarch64 under tools/arm64-test.sh) and compares with the x86_64 reference written by
the same interpreter package, stored per package in tier_outputs_x86_64.npz. Run this after a tier
is retrained, under each interpreter (make test, then make test-interpreter), and commit the file.
"""
from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).with_name("tier_outputs_x86_64.npz")
N_INPUTS = 3


def shipped_tiers() -> list[tuple[str, Path, str]]:
    """(name, CPU model file, task) of every tier in the shipped manifest, in manifest order."""
    manifest = yaml.safe_load((REPO / "models" / "manifest.yaml").read_text(encoding="utf-8"))
    return [(t["name"], REPO / "models" / t["files"]["cpu"]["path"], t["task"]) for t in manifest["tiers"]]


def inputs(shape) -> np.ndarray:
    """N_INPUTS int8 inputs of the tier's shape: uniform noise, and a smooth radial pattern (an
    image-like input whose activations stay away from saturation)."""
    rng = np.random.default_rng(17)
    h, w = shape[1], shape[2]
    yy, xx = np.mgrid[0:h, 0:w]
    radial = np.hypot(yy - h / 2, xx - w / 3) / max(h, w)
    smooth = np.clip(np.cos(radial * 9.0) * 100 + rng.normal(0, 8, (h, w)), -128, 127)
    out = [rng.integers(-128, 128, shape, dtype=np.int8) for _ in range(N_INPUTS - 1)]
    out.append(smooth.astype(np.int8).reshape(shape))
    return np.stack(out)


def run_tier(interpreter_class, path: Path) -> np.ndarray:
    """The raw int8 output tensor for each of the fixed inputs (one thread: the device's setting)."""
    it = interpreter_class(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for x in inputs(tuple(i["shape"])):
        it.set_tensor(i["index"], x)
        it.invoke()
        outs.append(it.get_tensor(o["index"]).copy())
    return np.stack(outs)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_reference(package: str) -> tuple[dict, dict[str, np.ndarray]]:
    """({'version', 'tiers': {name: sha256}}, {name: outputs}) written by `package`, or ({}, {})."""
    if not REFERENCE.exists():
        return {}, {}
    with np.load(REFERENCE) as z:
        meta = json.loads(str(z["meta"])).get(package, {})
        arrays = {name: z[f"{package}/{name}"] for name in meta.get("tiers", {})}
    return meta, arrays


def compare(be) -> str:
    """Per tier: the largest difference in output steps (LSB) between this machine under this
    interpreter and each package's x86_64 reference, and how many class decisions differ."""
    package = be.name.split(".")[0]
    with np.load(REFERENCE) as z:
        meta = json.loads(str(z["meta"]))
        refs = {(p, name): z[f"{p}/{name}"] for p in sorted(meta) for name in meta[p]["tiers"]}
    packages = sorted(meta)
    head = ["tier"] + [f"vs x86_64 {p} {meta[p]['version']} (LSB, class flips)" for p in packages]
    rows = [f"{platform.machine()}, {package} {be.version}, {N_INPUTS} inputs per tier", "",
            "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, path, task in shipped_tiers():
        got = run_tier(be.Interpreter, path).astype(np.int16)
        cells = [name]
        for p in packages:
            want = refs.get((p, name))
            if want is None or meta[p]["tiers"][name] != sha256(path):
                cells.append("no reference")
                continue
            lsb = int(np.abs(got - want.astype(np.int16)).max())
            flips = int((got.argmax(-1) != want.argmax(-1)).sum()) if task == "classify" else "-"
            cells.append(f"{lsb} ({flips})")
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows)


def main() -> int:
    sys.path.insert(0, str(REPO))
    from firmware_py.inference.backend import interpreter_backend

    if sys.argv[1:] == ["--compare"]:
        print(compare(interpreter_backend()))
        return 0
    if platform.machine() != "x86_64":
        print("the reference is x86_64's: run this on an x86_64 machine", file=sys.stderr)
        return 2
    be = interpreter_backend()
    package = be.name.split(".")[0]
    meta, arrays = {}, {}
    if REFERENCE.exists():
        with np.load(REFERENCE) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta" and not k.startswith(package + "/")}
    meta[package] = {"version": be.version, "tiers": {}}
    for name, path, _ in shipped_tiers():
        arrays[f"{package}/{name}"] = run_tier(be.Interpreter, path)
        meta[package]["tiers"][name] = sha256(path)
    np.savez_compressed(REFERENCE, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    print(f"{REFERENCE.name}: {package} {be.version}, {len(meta[package]['tiers'])} tiers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
