"""Generate models/manifest.yaml from the tier records the trainers write (models/report/tiers/*.json).

    python -m firmware_py.models.build.manifest [--models-dir models] [--sign-key KEY]

TensorFlow-free: file digests, sizes and the int8 tensor parameters are read from the .tflite files
themselves with the daemon's interpreter, so the manifest always describes the bytes that ship. The manifest
must be re-signed after every regeneration (firmware_py.inference.cli sign).
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys

import yaml

from firmware_py.models.build.interp import interpreter_class
from firmware_py.models.build.perturb import DEVICE_FILL

MODELS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_VERSION = 1
TASK_ORDER = {"classify": 0, "segment": 1}


def tflite_io(path: str) -> dict:
    """Input shape and the int8 quantization of the first input and output tensor."""
    it = interpreter_class()(model_path=path)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    for d, what in ((i, "input"), (o, "output")):
        if d["dtype"].__name__ != "int8":
            raise ValueError(f"{path}: {what} tensor is {d['dtype'].__name__}, the manifest needs int8 "
                             "tiers: convert with full-integer quantization")
    return {"shape": [int(v) for v in i["shape"]],
            "in_q": (float(i["quantization"][0]), int(i["quantization"][1])),
            "out_q": (float(o["quantization"][0]), int(o["quantization"][1])),
            "out_shape": [int(v) for v in o["shape"]]}


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()


def _round(v):
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


def tier_yaml(rec: dict, models_dir: str) -> str:
    path = os.path.join(models_dir, rec["file"])
    io = tflite_io(path)
    size = os.path.getsize(path)
    h, w = rec["grid"]
    if io["shape"][1:3] != [h, w]:
        raise ValueError(f"{path}: input is {io['shape']} but the tier record says grid {rec['grid']}")
    pre = {"grid": [h, w], "dynamic_range_db": rec.get("dynamic_range_db", 60),
           "normalise": {"mean": 0.0, "std": 1.0}, "fill": DEVICE_FILL}
    out = [f"  - name: {rec['name']}",
           f"    task: {rec['task']}",
           f"    rank: {rec['rank']}",
           "    files:",
           f"      cpu: {_flow({'path': rec['file'], 'sha256': sha256(path), 'bytes': size})}",
           f"    input: {_flow({'shape': io['shape'], 'dtype': 'int8', 'quantization': {'scale': io['in_q'][0], 'zero_point': io['in_q'][1]}})}",
           f"    preprocess: {_flow(pre)}",
           "    output:",
           "      dtype: int8",
           f"      quantization: {_flow({'scale': io['out_q'][0], 'zero_point': io['out_q'][1]})}",
           f"      decode: {rec['decode']}",
           # The loader's flag for "the model already ends in the decode activation"; ours end in
           # logits (int8 keeps more resolution there), so the engine applies softmax/sigmoid.
           f"      applied_in_model: {'true' if rec.get('applied_in_model', False) else 'false'}",
           f"      labels: {_flow(rec['labels'])}"]
    if rec.get("threshold"):
        out.append(f"      threshold: {_flow(rec['threshold'])}")
    out += [f"    params: {rec['params']}",
            f"    macs: {rec['macs']}",
            f"    file_bytes: {size}",
            f"    # {rec['metrics_note']}",
            *([f"    # int8 figures measured with {rec['interpreter']['package']} {rec['interpreter']['version']} "
               "(python -m firmware_py.models.build.remeasure)"] if rec.get("interpreter") else []),
            f"    metrics: {_flow(_round(rec['metrics']))}",
            f"    latency_ms: {_flow(_round(rec.get('latency_ms', {})))}",
            f"    energy_mj: {_flow(rec.get('energy_mj', {}))}"]
    # calibration (calibrate.py): the decoder takes softmax(logits / temperature), and
    # output.threshold applies to those calibrated probabilities. abstention: passed through from
    # the record as written (docs/model-manifest.md).
    stale = rec.get("abstention", {}).get("model_sha256") not in (None, sha256(path))
    if stale:  # fitted for the file this record shipped before a retrain: the loader would refuse the set
        print(f"{rec['name']}: abstention block left out (fitted for another {rec['file']}); rerun "
              "firmware-py models abstention --write", file=sys.stderr)
    for key in ("calibration", "abstention"):
        if rec.get(key) and not (key == "abstention" and stale):
            # abstention as measured: its vectors hold 6 significant digits, and 4 decimals would zero
            # the weights of squared features (abstention.py measured exactly these values)
            out.append(f"    {key}: {_flow(rec[key] if key == 'abstention' else _round(rec[key]))}")
    return "\n".join(out)


def cv_summary(models_dir: str, name: str) -> dict:
    """Cross-validation mean/std of a tier's int8 score over the folds run (models/report/cv)."""
    vals = {}
    for p in sorted(glob.glob(os.path.join(models_dir, "report", "cv", "*_fold*.json"))):
        with open(p, encoding="utf-8") as fh:
            t = json.load(fh)["tiers"].get(name)
        for key in ("accuracy", "malignant_auc", "dice", "iou"):
            if t and key in t.get("int8", {}):
                vals.setdefault(key, []).append(t["int8"][key])
    out = {}
    for key, v in vals.items():
        out[f"cv_{key}_mean"] = float(sum(v) / len(v))
        out[f"cv_{key}_std"] = float((sum((x - out[f'cv_{key}_mean']) ** 2 for x in v) / len(v)) ** 0.5)
        out["cv_folds"] = len(v)
    return out


def generate(models_dir: str = MODELS_DIR) -> str:
    recs = []
    for p in sorted(glob.glob(os.path.join(models_dir, "report", "tiers", "*.json"))):
        with open(p, encoding="utf-8") as fh:
            rec = json.load(fh)
        if rec.get("ship", True) and os.path.exists(os.path.join(models_dir, rec["file"])):
            rec["metrics"] = {**rec["metrics"], **cv_summary(models_dir, rec["name"])}
            recs.append(rec)
    if not recs:
        raise FileNotFoundError(f"no tier records with a shipped .tflite under {models_dir}/report/tiers: "
                                "run the build first")
    recs.sort(key=lambda r: (TASK_ORDER.get(r["task"], 9), r["rank"]))
    header = ["# Generated by python -m firmware_py.models.build.manifest; do not edit by hand.",
              "# decode: softmax + applied_in_model: false = the int8 output holds logits: dequantize, then",
              "# apply softmax. decode: sigmoid + applied_in_model: false = mask logits: dequantize, sigmoid.",
              f"schema_version: {SCHEMA_VERSION}", "tiers:"]
    text = "\n".join(header + [tier_yaml(r, models_dir) for r in recs]) + "\n"
    yaml.safe_load(text)  # the generator must never write a file the loader cannot parse
    return text


def sign(models_dir: str, key: str) -> bool:
    """Re-sign with the inference helper's CLI when it exists; False when it does not (yet)."""
    try:
        import firmware_py.inference.cli  # noqa: F401
    except ImportError:
        return False
    subprocess.run([sys.executable, "-m", "firmware_py.inference.cli", "sign", "--key", key,
                    "--manifest", os.path.join(models_dir, "manifest.yaml")], check=True)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description="write models/manifest.yaml from the tier records")
    ap.add_argument("--models-dir", default=MODELS_DIR)
    ap.add_argument("--sign-key", default=None, help="Ed25519 private key (PEM) to re-sign with")
    args = ap.parse_args(argv)
    text = generate(args.models_dir)
    path = os.path.join(args.models_dir, "manifest.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"wrote {path}")
    if args.sign_key:
        print("signed" if sign(args.models_dir, args.sign_key)
              else "NOT signed: firmware_py.inference.cli is not available yet")


if __name__ == "__main__":
    main()
