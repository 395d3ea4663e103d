"""How much the shipped tiers' test figures owe to near-duplicates of training images.

    python -m firmware_py.models.build.leakage --data ../shared/data/busi --json out/leakage.json

The shipped BUSI tiers were built on the ungrouped stratified folds (data.stratified_folds, seed
1234). For fold 0's test images this finds those with a near-duplicate (dedup.py) among that
fold's training images (everything outside the test fold: training and validation), then runs
`models evaluate` (the daemon's preprocessing, bootstrap ci95) on all test images, on the clean
ones and on the leaked ones.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from . import data as D
from . import dedup
from . import evaluate as E


def leaked_test_items(items, test: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Test indices whose near-duplicate group has a member outside the test split."""
    train_groups = set(ids[np.setdiff1d(np.arange(len(ids)), test)].tolist())
    return np.asarray([i for i in test if ids[i] in train_groups], np.int64)


def measure(busi_dir: str, json_path: str, models_dir: str = E.MODELS_DIR, seed: int = 1234, fold: int = 0,
            n_folds: int = 5, bootstrap: int = 1000) -> dict:
    items = D.load_busi(busi_dir)
    test = D.stratified_folds(items.labels, n_folds, seed)[fold]
    res = dedup.find("busi", items)
    leaked = leaked_test_items(items, test, res["ids"])
    conflict = sorted(set(test.tolist()) & {i for g in res["conflicts"] for i in g})
    names = {"all": [items.names[i] for i in test],
             "clean": [items.names[i] for i in np.setdiff1d(test, leaked)],
             "leaked": [items.names[i] for i in leaked]}
    members = sum(len(g) for g in res["groups"])
    out = {"split": f"ungrouped stratified fold {fold} of {n_folds}, seed {seed}",
           "dedup": {"n": len(items.names), "n_groups": len(res["groups"]), "n_in_groups": members,
                     "n_distinct": len(items.names) - members + len(res["groups"]),
                     "conflicts": [[f"{items.names[i]} ({items.classes[items.labels[i]]})" for i in g]
                                   for g in res["conflicts"]]},
           "n_test": int(len(test)), "n_leaked": int(len(leaked)), "n_test_in_conflict_groups": len(conflict),
           "leaked": names["leaked"], "evaluate": {}}
    base = os.path.splitext(json_path)[0]
    for subset, subset_names in names.items():
        out["evaluate"][subset] = E.evaluate(busi_dir, f"{base}_{subset}.json", models_dir, latency_runs=1,
                                             bootstrap=bootstrap, names=subset_names)
    with open(json_path, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the BUSI folder (../shared/data/busi)")
    ap.add_argument("--json", required=True, help="where to write the measurement")
    ap.add_argument("--models-dir", default=E.MODELS_DIR)
    args = ap.parse_args(argv)
    try:
        out = measure(args.data, args.json, args.models_dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"leakage: {exc}", file=sys.stderr)
        return 2
    print(f"{out['n_leaked']} of {out['n_test']} test images have a near-duplicate in training")
    for subset, ev in out["evaluate"].items():
        for name, m in ev["tiers"].items():
            lo, hi = m["ci95"]["accuracy"]
            print(f"{subset:6s} n={ev['n']:3d} {name}: accuracy {100 * m['accuracy']:.1f} "
                  f"[{100 * lo:.1f}, {100 * hi:.1f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
