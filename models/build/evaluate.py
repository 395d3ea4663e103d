"""Evaluate the shipped int8 tiers on a folder laid out like ../shared/data/busi or .../ddti.

    python -m firmware_py.models.build evaluate --data ../shared/data/busi --json out/busi_eval.json

TensorFlow-free: every image is replayed as a linear-probe B-mode frame (lines = image columns,
samples = image rows) through the daemon's own firmware_py.kernels.Preprocessor into the int8
input tensor, exactly the path a probe frame takes, and the int8 output is decoded with the
kernels' postprocessing. The datasets carry no pixel spacing, so areas use a nominal
PIXEL_MM per stored pixel; relative area errors do not depend on it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

from . import data as D
from . import interp
from . import metrics as M

MODELS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIXEL_MM = 0.1
CLS_KEYS = ("accuracy", "balanced_accuracy", "malignant_sensitivity", "malignant_specificity", "malignant_auc")


def load_tiers(models_dir: str) -> list:
    import yaml

    path = os.path.join(models_dir, "manifest.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: build the models first (python -m firmware_py.models.build)")
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)["tiers"]


def preprocessor(tier, pp_cls):
    """The kernels' Preprocessor (`pp_cls`) configured from a manifest tier dict."""
    h, w = tier["preprocess"]["grid"]
    q = tier["input"]["quantization"]
    norm = tier["preprocess"].get("normalise", {})
    return pp_cls(h, w, scale=q["scale"], zero_point=q["zero_point"],
                  dynamic_range_db=tier["preprocess"].get("dynamic_range_db", 60),
                  mean=norm.get("mean", 0.0), std=norm.get("std", 1.0), fill=tier["preprocess"].get("fill", 0))


def temperature(tier) -> float:
    """The decoder's temperature (manifest `calibration`; 1 when the tier has none)."""
    return float((tier.get("calibration") or {}).get("temperature", 1.0))


def _run_tier(tier, models_dir, images, pp_cls):
    """(int8 outputs (N, ...), output quantization, input codes, interpreter) of one tier over
    uint8 images, through the daemon's Preprocessor."""
    it = interp.interpreter(os.path.join(models_dir, tier["files"]["cpu"]["path"]))
    codes = interp.device_codes(images, preprocessor(tier, pp_cls))
    return interp.invoke_all(it, codes), it.get_output_details()[0]["quantization"], codes, it


def calibration_error(probs, labels) -> float:
    from .calibrate import ece

    return ece(probs, labels)


def lsb_stability(it, codes: np.ndarray, pred: np.ndarray, draws: int = 3, seed: int = 0) -> float:
    """Share of class predictions that change when every input code moves by +1 or -1 LSB
    (independently per pixel, saturating), averaged over `draws` noise draws."""
    rng = np.random.default_rng(seed)
    changed = []
    for _ in range(draws):
        noisy = np.clip(codes.astype(np.int16) + rng.choice(np.array([-1, 1], np.int16), codes.shape), -128, 127)
        changed.append(np.mean(interp.invoke_all(it, noisy.astype(np.int8)).argmax(axis=1) != pred))
    return float(np.mean(changed))


def _subset(items, names):
    """`items` restricted to the image names in `names` (None: all), in the loaded order."""
    if names is None:
        return items
    want = set(names)
    missing = want - set(items.names)
    if missing:
        raise ValueError(f"{len(missing)} image name(s) not in labels.csv, e.g. {sorted(missing)[0]!r}: "
                         "list names exactly as labels.csv spells them")
    keep = [i for i, n in enumerate(items.names) if n in want]
    return D.take(items, keep)


def evaluate(data_dir: str, json_path: str, models_dir: str = MODELS_DIR, limit: int | None = None,
             latency_runs: int = 30, bootstrap: int = 1000, names=None) -> dict:
    """Per-tier metrics of the shipped int8 tiers on `data_dir`, with bootstrap 95 % intervals
    (`ci95`, `bootstrap` resamples of the images) and, for classification, the share of
    predictions a +-1 LSB input change flips (`lsb_flip_share`); written to `json_path`.
    `names` (labels.csv image names) restricts the evaluation to those images."""
    from firmware_py.kernels import Preprocessor, largest_component, mask_area_mm2, reference

    kind = D.dataset_kind(data_dir)
    task = "classify" if kind == "busi" else "segment"
    tiers = [t for t in load_tiers(models_dir) if t["task"] == task]
    if not tiers:
        raise ValueError(f"{models_dir}/manifest.yaml has no {task} tier to evaluate on {data_dir}")
    result = {"data": os.path.abspath(data_dir), "kind": kind, "task": task, "tiers": {}}
    if kind == "busi":
        items = _subset(D.load_busi(data_dir, tuple(tiers[0]["output"]["labels"]), limit_per_class=limit), names)
        result["n"] = len(items.images)
        for t in tiers:
            out, (s, z), codes, it = _run_tier(t, models_dir, items.images, Preprocessor)
            probs = M.softmax((out.astype(np.float32) - z) * s / temperature(t))
            thr = t["output"].get("threshold", {}).get("value", 0.5)
            m = M.classification_metrics(probs, items.labels, items.classes, threshold=thr)
            m["ci95"] = M.bootstrap_ci95(
                lambda i: M.classification_metrics(probs[i], items.labels[i], items.classes, threshold=thr),
                len(probs), CLS_KEYS, draws=bootstrap)
            m["ece_15"] = calibration_error(probs, items.labels)
            m["temperature"] = temperature(t)
            m["lsb_flip_share"] = lsb_stability(it, codes, out.argmax(axis=1))
            m["latency_ms"] = interp.latency_ms(os.path.join(models_dir, t["files"]["cpu"]["path"]), latency_runs)
            result["tiers"][t["name"]] = m
    else:
        items = _subset(D.load_ddti(data_dir, limit=limit), names)
        result["n"] = len(items.images)
        for t in tiers:
            h, w = t["preprocess"]["grid"]
            out, (s, z), _, _ = _run_tier(t, models_dir, items.images, Preprocessor)
            p = t["output"].get("threshold", {}).get("value", 0.5)
            logit = math.log(p / (1 - p))  # outputs are logits (applied_in_model: false)
            pred = (out.astype(np.float32) - z) * s >= logit
            truth, area_err = [], []
            for k, (img, mask) in enumerate(zip(items.images, items.masks)):
                g = interp.frame_geometry(*img.shape, PIXEL_MM)
                # Ground truth on the model grid through the kernels' reference scan conversion.
                tm = reference.scan_convert(np.ascontiguousarray(mask.T) * 255.0, g, h, w) >= 127.5
                truth.append(tm)
                a_pred = mask_area_mm2(largest_component(pred[k, ..., 0]), g)
                a_true = float(mask.sum()) * PIXEL_MM * PIXEL_MM
                if a_true > 0:
                    area_err.append(abs(a_pred - a_true) / a_true)
            dice, iou = M.dice_iou(pred[..., 0], np.stack(truth))
            result["tiers"][t["name"]] = {
                "n": len(items.images), "dice": float(dice.mean()), "dice_std": float(dice.std()),
                "iou": float(iou.mean()),
                "ci95": M.bootstrap_ci95(lambda i: {"dice": dice[i].mean(), "iou": iou[i].mean()},
                                         len(dice), ("dice", "iou"), draws=bootstrap), "area_rel_error_median": float(np.median(area_err)) if area_err else None,
                "area_rel_error_mean": float(np.mean(area_err)) if area_err else None,
                "latency_ms": interp.latency_ms(os.path.join(models_dir, t["files"]["cpu"]["path"]), latency_runs)}
    write_json(json_path, result)
    return result


def write_json(path: str, obj, indent: int = 2):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=indent)


def read_names(path: str | None):
    """Image names of an --images file (one labels.csv name a line), or None without one."""
    if not path:
        return None
    with open(path, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="firmware-py models evaluate",
                                 description="evaluate the shipped int8 tiers on a busi- or ddti-style folder")
    ap.add_argument("--data", required=True, help="folder laid out like ../shared/data/busi or ../shared/data/ddti")
    ap.add_argument("--json", required=True, help="where to write the per-tier metrics")
    ap.add_argument("--models-dir", default=MODELS_DIR)
    ap.add_argument("--limit", type=int, default=None, help="busi: images per class; ddti: images")
    ap.add_argument("--images", default=None, help="text file, one labels.csv image name a line: only those")
    ap.add_argument("--bootstrap", type=int, default=1000, help="resamples for the ci95 intervals")
    args = ap.parse_args(argv)
    try:
        names = read_names(args.images)
        res = evaluate(args.data, args.json, args.models_dir, args.limit, bootstrap=args.bootstrap, names=names)
    except (FileNotFoundError, ValueError) as exc:
        print(f"models evaluate: {exc}", file=sys.stderr)
        return 2
    for name, m in res["tiers"].items():
        keys = ("accuracy", "balanced_accuracy", "malignant_sensitivity", "malignant_specificity",
                "malignant_auc") if res["task"] == "classify" else ("dice", "iou", "area_rel_error_median")
        ci = m.get("ci95", {})
        print(name, " ".join(f"{k}={m[k]:.4f}" + (f" [{ci[k][0]:.4f}, {ci[k][1]:.4f}]" if k in ci else "")
                             for k in keys if m.get(k) is not None),
              *([f"lsb_flip_share={m['lsb_flip_share']:.4f}"] if "lsb_flip_share" in m else []),
              f"p50={m['latency_ms']['cpu_p50']:.2f}ms")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
