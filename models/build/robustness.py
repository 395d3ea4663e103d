"""`firmware-py models robustness`: the shipped BUSI tiers under what a probe does to an image.

    firmware-py models robustness --data ../shared/data/busi --json out/robustness.json

TensorFlow-free. The suite (perturb.suite: gain x0.7 and x1.4, speckle, Gaussian blur sigma 1.5,
rotation +-10 degrees with fill corners, a convex sector mask with fill) is applied to the stored
images of the tiers' leakage-free test split (heldout.py), with the daemon's fill value from each
tier's manifest entry; every image then takes the device path of `models evaluate` (the daemon's
Preprocessor, the project's interpreter backend, the tier's operating threshold). Reported per
tier and perturbation: accuracy and malignant sensitivity, their drop from the unperturbed images
(positive = worse) and paired bootstrap 95 % intervals of the drops (the same resampled images
with and without the perturbation).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from . import data as D
from . import heldout
from . import metrics as M
from . import perturb
from .evaluate import MODELS_DIR, _run_tier, _subset, load_tiers, read_names, temperature, write_json

TARGET = {"accuracy_drop": 0.03, "malignant_sensitivity_drop": 0.05}  # issue 16, the top tier


def _per_image(tier, models_dir, images, labels, classes, pp_cls):
    """(correct, malignant called) per image at the tier's operating threshold, and the probabilities."""
    out, (s, z), _, _ = _run_tier(tier, models_dir, images, pp_cls)
    probs = M.softmax((out.astype(np.float32) - z) * s / temperature(tier))
    thr = tier["output"].get("threshold", {}).get("value", 0.5)
    return probs.argmax(1) == labels, probs[:, classes.index("malignant")] >= thr, probs


def _rates(correct, called, pos, idx):
    return {"accuracy": float(correct[idx].mean()),
            "malignant_sensitivity": float((called[idx] & pos[idx]).sum() / max(pos[idx].sum(), 1))}


def robustness(data_dir: str, json_path: str, models_dir: str = MODELS_DIR, names=None, bootstrap: int = 1000,
               seed: int = 0) -> dict:
    from firmware_py.kernels import Preprocessor

    if D.dataset_kind(data_dir) != "busi":
        raise ValueError(f"{data_dir}: robustness runs on a BUSI-style folder (labels.csv with a label column)")
    tiers = [t for t in load_tiers(models_dir) if t["task"] == "classify"]
    if not tiers:
        raise ValueError(f"{models_dir}/manifest.yaml has no classify tier")
    items = D.load_busi(data_dir, tuple(tiers[0]["output"]["labels"]))
    if names is None:
        split, where = heldout.busi_split(items, models_dir, [t["name"] for t in tiers])
        items = D.take(items, split.test)
    else:
        items, where = _subset(items, names), f"the {len(names)} images listed"
    pos = items.labels == items.classes.index("malignant")
    n = len(items.images)
    draws = np.random.default_rng(seed).integers(0, n, (bootstrap, n))
    result = {"data": os.path.abspath(data_dir), "n": n, "n_malignant": int(pos.sum()), "split": where,
              "fill": {t["name"]: t["preprocess"].get("fill", 0) for t in tiers},
              "perturbations": {"speckle": f"x * (1 + {perturb.SPECKLE_SIGMA} N(0, 1)) per pixel, seeded",
                                "blur": f"Gaussian sigma {perturb.BLUR_SIGMA} px of the stored image",
                                "rotate": "bilinear about the centre, uncovered corners = the tier's fill",
                                "convex_sector_fill": f"outside the daemon's convex sector {perturb.CONVEX} = fill"},
              "bootstrap": bootstrap, "tiers": {}}
    cache = {}
    for t in tiers:
        fill = t["preprocess"].get("fill", 0)
        correct0, called0, _ = _per_image(t, models_dir, items.images, items.labels, items.classes, Preprocessor)
        base = _rates(correct0, called0, pos, np.arange(n))
        base["ci95"] = {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in zip(
            ("accuracy", "malignant_sensitivity"),
            np.array([list(_rates(correct0, called0, pos, i).values()) for i in draws]).T)}
        rec = {"rank": t["rank"], "clean": base, "perturbed": {}}
        for name, fn in perturb.suite(fill).items():
            if (name, fill) not in cache:
                rng = np.random.default_rng([seed, len(cache)])
                cache[(name, fill)] = [fn(im, rng) for im in items.images]
            correct, called, _ = _per_image(t, models_dir, cache[(name, fill)], items.labels, items.classes,
                                            Preprocessor)
            m = _rates(correct, called, pos, np.arange(n))
            m["accuracy_drop"] = base["accuracy"] - m["accuracy"]
            m["malignant_sensitivity_drop"] = base["malignant_sensitivity"] - m["malignant_sensitivity"]
            d = np.array([[a0 - a1 for a0, a1 in zip(_rates(correct0, called0, pos, i).values(),
                                                     _rates(correct, called, pos, i).values())] for i in draws])
            m["ci95_drop"] = {k: [float(np.percentile(d[:, j], 2.5)), float(np.percentile(d[:, j], 97.5))]
                              for j, k in enumerate(("accuracy_drop", "malignant_sensitivity_drop"))}
            m["flipped"] = int((correct != correct0).sum())
            rec["perturbed"][name] = m
        rec["worst"] = {k: max(rec["perturbed"].items(), key=lambda kv: kv[1][k])[0] for k in TARGET}
        result["tiers"][t["name"]] = rec
    top = max(tiers, key=lambda t: t["rank"])["name"]
    worst = {k: max(p[k] for p in result["tiers"][top]["perturbed"].values()) for k in TARGET}
    result["target"] = {"tier": top, "limits": TARGET, "worst": worst,
                        "met": all(worst[k] <= v + 1e-9 for k, v in TARGET.items())}
    write_json(json_path, result, indent=1)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="firmware-py models robustness",
                                 description="accuracy and malignant sensitivity drop of the shipped BUSI tiers "
                                             "under the probe perturbation suite")
    ap.add_argument("--data", required=True, help="folder laid out like ../shared/data/busi")
    ap.add_argument("--json", required=True, help="where to write the per-tier, per-perturbation figures")
    ap.add_argument("--models-dir", default=MODELS_DIR)
    ap.add_argument("--images", default=None,
                    help="text file, one labels.csv image name a line: only those (default: the tiers' "
                         "leakage-free fold-0 test split)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="resamples for the ci95 intervals")
    args = ap.parse_args(argv)
    try:
        res = robustness(args.data, args.json, args.models_dir, read_names(args.images), args.bootstrap)
    except (FileNotFoundError, ValueError) as exc:
        print(f"models robustness: {exc}", file=sys.stderr)
        return 2
    print(f"n={res['n']} ({res['n_malignant']} malignant), {res['split']}")
    for name, rec in res["tiers"].items():
        c = rec["clean"]
        print(f"{name}: clean accuracy {100 * c['accuracy']:.1f} malignant sensitivity "
              f"{100 * c['malignant_sensitivity']:.1f}")
        for p, m in rec["perturbed"].items():
            ci = m["ci95_drop"]
            print(f"  {p:22s} accuracy drop {100 * m['accuracy_drop']:+5.1f} "
                  f"[{100 * ci['accuracy_drop'][0]:+.1f}, {100 * ci['accuracy_drop'][1]:+.1f}]  "
                  f"sensitivity drop {100 * m['malignant_sensitivity_drop']:+5.1f} "
                  f"[{100 * ci['malignant_sensitivity_drop'][0]:+.1f}, {100 * ci['malignant_sensitivity_drop'][1]:+.1f}]")
    t = res["target"]
    print(f"target (top tier {t['tier']}: accuracy drop <= 3, sensitivity drop <= 5 points): "
          f"{'met' if t['met'] else 'missed'}; worst {100 * t['worst']['accuracy_drop']:.1f} / "
          f"{100 * t['worst']['malignant_sensitivity_drop']:.1f}")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
