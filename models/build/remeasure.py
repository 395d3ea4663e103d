"""Re-measure the shipped fold-0 int8 tiers with the interpreter this process runs (TensorFlow-free).

    python -m firmware_py.models.build.remeasure --data ../shared/data [--write] [--sign-key KEY]

Issue 17: when the daemon's interpreter package changes, the manifest's and the report's int8 figures
are measured again with it. Everything runs in a scratch copy of the models folder, through the same
code the build's own steps use: calibrate.py (BUSI: temperature and operating threshold fitted on the
leakage-free validation split, test metrics on the records' fold 0 test split, ECE), threshold.py
(DDTI only: the mask threshold with the best validation Dice on the build's own validation split), the round-robin
latency (pipeline.refresh_latency), and, unless --no-report-jsons, `models evaluate` on fold 0's test
images, leakage.py and robustness.py. Splits, seeds and images are the build's; nothing is retrained.

Every run adds its figures under the interpreter's name and version to
models/report/interpreters_fold0.json (REPORT.md's "tflite-runtime vs ai-edge-litert" table); run
it once per interpreter, e.g. `.venv-tflite-runtime/bin/python -m ...` for tflite-runtime.
--write also puts them into the tier records and models/report/*.json the manifest and the report
are generated from, records the interpreter in each tier record, regenerates manifest.yaml and,
with --sign-key, re-signs it. Without --write nothing but interpreters_fold0.json changes.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import shutil
import sys
import tempfile

from . import data as D
from .evaluate import MODELS_DIR, write_json

COMPARE_JSON = "interpreters_fold0.json"
# What a re-measure replaces in a tier record; every other field (abstention, sparsity, ...) is kept
# as it is in the live record, so a concurrent edit of those is never overwritten.
RECORD_FIELDS = ("metrics", "threshold", "calibration", "latency_ms", "metrics_note")
# models/report files regenerated from the scratch copy by --write (their side files stay there).
REPORT_FILES = ("calibration_busi_fold0.json", "reliability_busi_int8.png", "evaluate_busi_fold0.json",
                "evaluate_ddti_fold0.json", "leakage_busi_fold0.json", "robustness_busi_fold0.json")
PACKAGES = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}


def interpreter_info() -> dict:
    """The package the daemon's backend picks in this process: {'package', 'module', 'version'}."""
    from .interp import interpreter_class

    interpreter_class()  # the same choice every measurement below makes (TensorFlow's only without either package)
    try:
        from firmware_py.inference.backend import interpreter_backend

        b = interpreter_backend()
        return {"package": PACKAGES.get(b.name.split(".")[0], b.name), "module": b.name, "version": b.version}
    except ImportError:
        import tensorflow as tf

        return {"package": "tensorflow", "module": "tensorflow.lite", "version": tf.__version__}


def label(info: dict) -> str:
    return f"{info['package']} {info['version']}"


def _scratch(models_dir: str, dst: str) -> str:
    """The parts of a models folder the measurements read and write, copied under `dst`."""
    os.makedirs(os.path.join(dst, "report"), exist_ok=True)
    for p in glob.glob(os.path.join(models_dir, "*.tflite")) + [os.path.join(models_dir, "manifest.yaml")]:
        shutil.copy2(p, dst)
    for sub in ("tiers", "cv"):
        shutil.copytree(os.path.join(models_dir, "report", sub), os.path.join(dst, "report", sub))
    return dst


def _regenerate_manifest(models_dir: str):
    from . import manifest

    with open(os.path.join(models_dir, "manifest.yaml"), "w", encoding="utf-8") as fh:
        fh.write(manifest.generate(models_dir))


def _fold0_test_names(kind: str, data_dir: str, models_dir: str, seed: int = 1234) -> list:
    """Image names of the records' fold 0 test split (BUSI: the shipped tiers' ungrouped stratified
    fold, as calibrate.py's record_test; DDTI: the split threshold.py rebuilds)."""
    from . import splits

    if kind == "busi":
        items = D.load_busi(data_dir)
        return [items.names[i] for i in D.stratified_folds(items.labels, 5, seed)[0]]
    from . import heldout

    items = D.load_ddti(data_dir)
    with open(glob.glob(os.path.join(models_dir, "report", "tiers", "ddti-*.json"))[0], encoding="utf-8") as fh:
        rec = json.load(fh)
    split = (splits.for_fold("ddti", items, 5, 0, seed, 0.15)[0] if rec.get("split") == "grouped"
             else heldout.legacy_ddti_split(items, seed))
    return [items.names[i] for i in split.test]


def tier_figures(rec: dict) -> dict:
    """The figures of one tier record that the interpreter can move (REPORT.md's comparison table)."""
    m, cal = rec.get("metrics", {}), rec.get("calibration") or {}
    keys = (("accuracy", "balanced_accuracy", "malignant_sensitivity", "malignant_specificity", "malignant_auc",
             "malignant_sensitivity_at_spec80", "val_sensitivity", "val_specificity")
            if rec["task"] == "classify" else ("dice", "iou", "dice_at_0.5", "val_dice"))
    out = {k: m[k] for k in keys if m.get(k) is not None}
    out["n"] = m.get("n")
    out["threshold"] = (rec.get("threshold") or {}).get("value")
    for k in ("temperature", "ece_before", "ece_after"):
        if k in cal:
            out[k] = cal[k]
    out["latency_p50_ms"] = (rec.get("latency_ms") or {}).get("cpu_x86_1thread_p50")
    return out


def latency_by_interpreter(models_dir: str, rounds: int = 5, runs: int = 20) -> dict:
    """{tier: {'PACKAGE VERSION': p50 ms}} for every interpreter package importable here, timed
    round-robin in this one process (every tier with every package in each round, median of the
    rounds), so the packages are compared under the same machine load. {} with only one package."""
    import numpy as np

    from firmware_py.inference.backend import CANDIDATES, NoInterpreterError, find_backend
    from .interp import latency_ms

    backends = []
    for c in CANDIDATES:
        try:
            b = find_backend((c,))
        except NoInterpreterError:
            continue
        backends.append((f"{PACKAGES.get(b.name.split('.')[0], b.name)} {b.version}", b.Interpreter))
    if len(backends) < 2:
        return {}
    recs = []
    for p in sorted(glob.glob(os.path.join(models_dir, "report", "tiers", "*.json"))):
        with open(p, encoding="utf-8") as fh:
            rec = json.load(fh)
        if os.path.exists(os.path.join(models_dir, rec["file"])) and rec.get("ship", True):
            recs.append(rec)
    samples = {(r["name"], k): [] for r in recs for k, _ in backends}
    for _ in range(rounds):
        for r in recs:
            for k, cls in backends:
                samples[(r["name"], k)].append(latency_ms(os.path.join(models_dir, r["file"]), runs, cls=cls)["cpu_p50"])
    return {r["name"]: {k: round(float(np.median(samples[(r["name"], k)])), 3) for k, _ in backends} for r in recs}


def remeasure(data: str, scratch: str, models_dir: str = MODELS_DIR, report_jsons: bool = True,
              latency_rounds: int = 5, latency_runs: int = 20, bootstrap: int = 1000) -> dict:
    """Measure every shipped tier of `models_dir` in a copy under `scratch` (left there for write());
    returns {'interpreter', 'measured_at', 'tiers': {name: figures}}."""
    from . import calibrate, leakage, pipeline, robustness, threshold
    from .evaluate import evaluate

    info = interpreter_info()
    ws = _scratch(models_dir, scratch)
    busi, ddti = D.resolve(data, "busi"), D.resolve(data, "ddti")
    if not busi and not ddti:
        raise FileNotFoundError(f"{data}: neither a busi/ nor a ddti/ folder (labels.csv inside): pass ../shared/data")
    rep = os.path.join(ws, "report")
    if busi:
        try:
            import matplotlib  # noqa: F401  (the train/test extras have it; an interpreter-only venv may not)
            png = os.path.join(rep, "reliability_busi_int8.png")
        except ImportError:
            png = None
        res = calibrate.calibrate(busi, ws, png, bootstrap=bootstrap)
        with open(os.path.join(rep, "calibration_busi_fold0.json"), "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=1)
    if ddti:
        threshold.tune(None, ddti, ws)  # BUSI's threshold is calibrate's (on calibrated probabilities)
    pipeline.refresh_latency(ws, latency_rounds, latency_runs)
    _regenerate_manifest(ws)  # the report JSONs below read thresholds and temperatures from it
    if report_jsons:
        for kind, d in (("busi", busi), ("ddti", ddti)):
            if d:
                evaluate(d, os.path.join(rep, f"evaluate_{kind}_fold0.json"), ws, bootstrap=bootstrap,
                         names=_fold0_test_names(kind, d, ws))
        if busi:
            leakage.measure(busi, os.path.join(rep, "leakage_busi_fold0.json"), ws, bootstrap=bootstrap)
            robustness.robustness(busi, os.path.join(rep, "robustness_busi_fold0.json"), ws, bootstrap=bootstrap)
    tiers = {}
    for p in sorted(glob.glob(os.path.join(rep, "tiers", "*.json"))):
        with open(p, encoding="utf-8") as fh:
            rec = json.load(fh)
        if os.path.exists(os.path.join(ws, rec["file"])) and rec.get("ship", True):
            tiers[rec["name"]] = tier_figures(rec)
    return {"interpreter": info, "measured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "data": os.path.abspath(data), "report_jsons": report_jsons, "tiers": tiers,
            "latency_same_process": latency_by_interpreter(ws, latency_rounds, latency_runs)}


def record_comparison(models_dir: str, result: dict) -> str:
    """Add (or replace) this interpreter's entry in models/report/interpreters_fold0.json."""
    path = os.path.join(models_dir, "report", COMPARE_JSON)
    doc = {"note": "fold 0 int8 figures of the shipped tiers per interpreter package "
                   "(python -m firmware_py.models.build.remeasure)", "interpreters": {}}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    doc["interpreters"][label(result["interpreter"])] = result
    write_json(path, doc)
    return path


def write(models_dir: str, scratch: str, result: dict, sign_key: str | None = None):
    """The re-measured fields into the live tier records, the report JSONs next to them, the
    manifest regenerated (and re-signed with `sign_key`)."""
    for p in sorted(glob.glob(os.path.join(scratch, "report", "tiers", "*.json"))):
        live = os.path.join(models_dir, "report", "tiers", os.path.basename(p))
        with open(p, encoding="utf-8") as fh:
            new = json.load(fh)
        with open(live, encoding="utf-8") as fh:
            rec = json.load(fh)
        if new["name"] not in result["tiers"]:
            continue
        rec.update({k: new[k] for k in RECORD_FIELDS if k in new})
        rec["interpreter"] = {**result["interpreter"], "measured_at": result["measured_at"]}
        with open(live, "w", encoding="utf-8") as fh:
            json.dump(rec, fh, indent=2)
    for name in REPORT_FILES:
        src = os.path.join(scratch, "report", name)
        if os.path.exists(src):
            shutil.copy2(src, os.path.join(models_dir, "report", name))
    from . import manifest

    _regenerate_manifest(models_dir)
    return manifest.sign(models_dir, sign_key) if sign_key else False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware_py.models.build.remeasure",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="../shared/data (busi/ and ddti/ inside)")
    ap.add_argument("--models-dir", default=MODELS_DIR)
    ap.add_argument("--write", action="store_true",
                    help="put the figures into the tier records and models/report, regenerate manifest.yaml")
    ap.add_argument("--sign-key", default=None, help="with --write: re-sign the manifest with this Ed25519 key")
    ap.add_argument("--no-report-jsons", action="store_true",
                    help="skip models evaluate / leakage / robustness (the records' figures only)")
    ap.add_argument("--latency-rounds", type=int, default=5, help="round-robin rounds (pipeline.refresh_latency)")
    ap.add_argument("--latency-runs", type=int, default=20, help="invokes per tier and round")
    ap.add_argument("--bootstrap", type=int, default=1000, help="resamples for the ci95 intervals")
    ap.add_argument("--keep-scratch", default=None, help="measure in this folder and keep it (default: a temporary one)")
    args = ap.parse_args(argv)
    if args.sign_key and not args.write:
        print("remeasure: --sign-key needs --write (without it the manifest is not touched)", file=sys.stderr)
        return 2
    scratch = args.keep_scratch or tempfile.mkdtemp(prefix="remeasure-")
    try:
        res = remeasure(args.data, os.path.join(scratch, "models"), args.models_dir,
                        report_jsons=not args.no_report_jsons, latency_rounds=args.latency_rounds,
                        latency_runs=args.latency_runs, bootstrap=args.bootstrap)
        print(f"interpreter: {label(res['interpreter'])} ({res['interpreter']['module']})")
        for name, f in res["tiers"].items():
            print(name, " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in f.items()))
        print("wrote", record_comparison(args.models_dir, res))
        if args.write:
            signed = write(args.models_dir, os.path.join(scratch, "models"), res, args.sign_key)
            print("tier records, report JSONs and manifest.yaml written" + ("; manifest signed" if signed else ""))
    except (FileNotFoundError, ValueError) as exc:
        print(f"remeasure: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
