"""Choose each shipped tier's operating threshold on its validation split, then re-measure the
test fold at that threshold through the daemon's preprocessing (TensorFlow-free).

    python -m firmware_py.models.build.threshold --data ../shared/data

Classification: the malignant threshold with the highest validation sensitivity at >= 80 %
specificity. Segmentation: the mask probability threshold with the best validation Dice (the
distilled students' soft targets leave boundary logits near 0, so 0.5 over-segments).
The validation and test splits are rebuilt exactly as the build made them: splits.for_fold, or for
DDTI tiers built before the grouped splits heldout.legacy_ddti_split.
"""
from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np

from . import data as D
from . import heldout
from . import metrics as M
from . import splits
from .evaluate import _run_tier
from .interp import frame_geometry

MODELS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _seg_scores(tier, models_dir, items, idx, pp_cls):
    from firmware_py.kernels import reference

    h, w = tier["preprocess"]["grid"]
    out, (s, z), _, _ = _run_tier(tier, models_dir, [items.images[i] for i in idx], pp_cls)
    logits = (out.astype(np.float32) - z) * s
    truth = np.stack([reference.scan_convert(np.ascontiguousarray(items.masks[i].T) * 255.0,
                                             frame_geometry(*items.images[i].shape), h, w) >= 127.5 for i in idx])
    return logits[..., 0], truth


def tune(busi_dir: str | None, ddti_dir: str | None, models_dir: str = MODELS_DIR, seed: int = 1234,
         fold: int = 0, n_folds: int = 5, val_fraction: float = 0.15) -> dict:
    """Tune and re-measure the fold-0 tiers of the tasks whose data folder is given."""
    from firmware_py.kernels import Preprocessor

    changed = {}
    tiers_dir = os.path.join(models_dir, "report", "tiers")
    for name in sorted(os.listdir(tiers_dir)):
        path = os.path.join(tiers_dir, name)
        with open(path) as fh:
            rec = json.load(fh)
        if not rec.get("metrics_note", "").startswith("int8 on the test fold 0 "):
            continue  # only tiers shipped from fold 0 have a rebuildable validation split
        with open(os.path.join(models_dir, "manifest.yaml")) as fh:
            import yaml
            tier = next(t for t in yaml.safe_load(fh)["tiers"] if t["name"] == rec["name"])
        if (busi_dir if rec["task"] == "classify" else ddti_dir) is None:
            continue
        if rec["task"] == "classify":
            items = D.load_busi(busi_dir)
            split, _ = splits.for_fold("busi", items, n_folds, fold, seed, val_fraction)
            test, val = split.test, split.val
            p = items.classes.index("malignant")

            def probs(idx):
                out, (s, z), _, _ = _run_tier(tier, models_dir, [items.images[i] for i in idx], Preprocessor)
                return M.softmax((out.astype(np.float32) - z) * s)

            pv = probs(val)
            sens, spec, thr = M.sensitivity_at_specificity(pv[:, p], items.labels[val] == p, 0.80)
            pt = probs(test)
            m = M.classification_metrics(pt, items.labels[test], items.classes, threshold=thr)
            rec["threshold"] = {"label": "malignant", "value": round(thr, 4)}
            rec["metrics"] = {**{k: v for k, v in m.items() if k != "confusion"},
                              "val_sensitivity": sens, "val_specificity": spec,
                              "malignant_sensitivity_at_spec80": rec["metrics"].get("malignant_sensitivity_at_spec80")}
        else:
            items = D.load_ddti(ddti_dir)
            if rec.get("split") == "grouped":
                split, _ = splits.for_fold("ddti", items, n_folds, fold, seed, val_fraction)
            else:  # built before the grouped splits: that build's own patient fold and validation
                split = heldout.legacy_ddti_split(items, seed, fold, n_folds, val_fraction)
            test, val = split.test, split.val
            lv, tv = _seg_scores(tier, models_dir, items, val, Preprocessor)
            grid = np.round(np.arange(0.30, 0.96, 0.05), 2)
            val_dice = [M.dice_iou(lv >= math.log(t / (1 - t)), tv)[0].mean() for t in grid]
            thr = float(grid[int(np.argmax(val_dice))])
            lt, tt = _seg_scores(tier, models_dir, items, test, Preprocessor)
            dice, iou = M.dice_iou(lt >= math.log(thr / (1 - thr)), tt)
            rec["threshold"] = {"value": thr}
            rec["metrics"] = {"n": int(len(test)), "dice": float(dice.mean()), "iou": float(iou.mean()),
                              "dice_std": float(dice.std()), "val_dice": float(max(val_dice)),
                              # measured, not the record's previous "dice" (the tuned one after a first run)
                              "dice_at_0.5": float(M.dice_iou(lt >= 0.0, tt)[0].mean())}
        rec["metrics_note"] = (rec["metrics_note"].split(";")[0] + "; never trained on; operating threshold "
                               f"chosen on the validation split (n={len(val)}) from the training folds")
        with open(path, "w") as fh:
            json.dump(rec, fh, indent=2)
        changed[rec["name"]] = rec["threshold"]
    return changed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="../shared/data (busi/ and ddti/ inside)")
    ap.add_argument("--models-dir", default=MODELS_DIR)
    args = ap.parse_args(argv)
    d = lambda t: os.path.join(args.data, t) if os.path.isdir(os.path.join(args.data, t)) else None
    for name, thr in tune(d("busi"), d("ddti"), args.models_dir).items():
        print(name, thr)


if __name__ == "__main__":
    main()
