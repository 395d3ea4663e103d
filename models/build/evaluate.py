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


def _geometry(h: int, w: int):
    from firmware_py.geometry import Geometry, ProbeKind

    return Geometry(ProbeKind.LINEAR, n_lines=w, n_samples=h, bits=8, start_depth_mm=0.0,
                    end_depth_mm=h * PIXEL_MM, width=w * PIXEL_MM)


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


def _run_tier(tier, models_dir, images, pp_cls):
    """int8 outputs (N, ...) of one tier over uint8 images, through the daemon's Preprocessor."""
    it = interp.interpreter(os.path.join(models_dir, tier["files"]["cpu"]["path"]))
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    pp = preprocessor(tier, pp_cls)
    buf = np.empty(tuple(i["shape"]), np.int8)
    outs = []
    for img in images:
        pp.run(np.ascontiguousarray(img.T), _geometry(*img.shape), buf)
        it.set_tensor(i["index"], buf)
        it.invoke()
        outs.append(it.get_tensor(o["index"])[0].copy())
    return np.stack(outs), o["quantization"]


def evaluate(data_dir: str, json_path: str, models_dir: str = MODELS_DIR, limit: int | None = None,
             latency_runs: int = 30) -> dict:
    """Per-tier metrics of the shipped int8 tiers on `data_dir`; written to `json_path` and returned."""
    from firmware_py.kernels import Preprocessor, largest_component, mask_area_mm2, reference

    kind = D.dataset_kind(data_dir)
    task = "classify" if kind == "busi" else "segment"
    tiers = [t for t in load_tiers(models_dir) if t["task"] == task]
    if not tiers:
        raise ValueError(f"{models_dir}/manifest.yaml has no {task} tier to evaluate on {data_dir}")
    result = {"data": os.path.abspath(data_dir), "kind": kind, "task": task, "tiers": {}}
    if kind == "busi":
        items = D.load_busi(data_dir, tuple(tiers[0]["output"]["labels"]), limit_per_class=limit)
        result["n"] = len(items.images)
        for t in tiers:
            out, (s, z) = _run_tier(t, models_dir, items.images, Preprocessor)
            probs = M.softmax((out.astype(np.float32) - z) * s)
            m = M.classification_metrics(probs, items.labels, items.classes,
                                         threshold=t["output"].get("threshold", {}).get("value", 0.5))
            m["latency_ms"] = interp.latency_ms(os.path.join(models_dir, t["files"]["cpu"]["path"]), latency_runs)
            result["tiers"][t["name"]] = m
    else:
        items = D.load_ddti(data_dir, limit=limit)
        result["n"] = len(items.images)
        for t in tiers:
            h, w = t["preprocess"]["grid"]
            out, (s, z) = _run_tier(t, models_dir, items.images, Preprocessor)
            p = t["output"].get("threshold", {}).get("value", 0.5)
            logit = math.log(p / (1 - p))  # outputs are logits (applied_in_model: false)
            pred = (out.astype(np.float32) - z) * s >= logit
            truth, area_err = [], []
            for k, (img, mask) in enumerate(zip(items.images, items.masks)):
                g = _geometry(*img.shape)
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
                "iou": float(iou.mean()), "area_rel_error_median": float(np.median(area_err)) if area_err else None,
                "area_rel_error_mean": float(np.mean(area_err)) if area_err else None,
                "latency_ms": interp.latency_ms(os.path.join(models_dir, t["files"]["cpu"]["path"]), latency_runs)}
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="firmware-py models evaluate",
                                 description="evaluate the shipped int8 tiers on a busi- or ddti-style folder")
    ap.add_argument("--data", required=True, help="folder laid out like ../shared/data/busi or ../shared/data/ddti")
    ap.add_argument("--json", required=True, help="where to write the per-tier metrics")
    ap.add_argument("--models-dir", default=MODELS_DIR)
    ap.add_argument("--limit", type=int, default=None, help="busi: images per class; ddti: images")
    args = ap.parse_args(argv)
    try:
        res = evaluate(args.data, args.json, args.models_dir, args.limit)
    except (FileNotFoundError, ValueError) as exc:
        print(f"models evaluate: {exc}", file=sys.stderr)
        return 2
    for name, m in res["tiers"].items():
        keys = ("accuracy", "balanced_accuracy", "malignant_sensitivity", "malignant_specificity",
                "malignant_auc") if res["task"] == "classify" else ("dice", "iou", "area_rel_error_median")
        print(name, " ".join(f"{k}={m[k]:.4f}" for k in keys if m.get(k) is not None),
              f"p50={m['latency_ms']['cpu_p50']:.2f}ms")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
