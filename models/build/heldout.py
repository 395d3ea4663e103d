"""Which images a shipped tier never saw, near-duplicates included (TensorFlow-free).

Tiers built by the grouped build (tier record `"split": "grouped"`) use splits.for_fold: their
validation and test splits hold no near-duplicate of a training image by construction. The tiers
shipped before it (no `split` in the record) were built on the ungrouped stratified folds
("legacy"); for them the validation and test images with a near-duplicate in that build's
training images are dropped ("clean"), as leakage.py measures. Label-conflict groups are left
out of both, as in the grouped build.
"""
from __future__ import annotations

import json
import os

import numpy as np

from . import data as D
from . import splits


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple:
    """(rest, held out): the legacy build's validation carving (round(n_c * fraction) per class)."""
    rng = np.random.default_rng(seed)
    rest, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(len(idx) * fraction))
        held.extend(idx[:k])
        rest.extend(idx[k:])
    return np.sort(np.asarray(rest, np.int64)), np.sort(np.asarray(held, np.int64))


def legacy_clean_split(items, info: dict, seed: int = 1234, fold: int = 0, n_folds: int = 5,
                       val_fraction: float = 0.15) -> splits.Split:
    """The shipped (ungrouped) tiers' split with every leaked validation/test image removed: a
    test image is dropped when its group has a member outside the test fold (what the model
    trained or was validated on), a validation image when its group has a member in training."""
    groups = np.asarray(info["groups"])
    test = D.stratified_folds(items.labels, n_folds, seed)[fold]
    rest = np.setdiff1d(np.arange(len(groups)), test)
    sub_tr, sub_val = _stratified_split(items.labels[rest], val_fraction, seed + fold)
    train, val = rest[sub_tr], rest[sub_val]
    excluded = np.asarray(info["excluded"], np.int64)
    seen_rest, seen_train = set(groups[rest].tolist()), set(groups[train].tolist())
    test = np.asarray([i for i in test if groups[i] not in seen_rest], np.int64)
    val = np.asarray([i for i in val if groups[i] not in seen_train], np.int64)
    return splits.Split(train, np.setdiff1d(val, excluded), np.setdiff1d(test, excluded), excluded)


def legacy_patient_folds(patients, k: int, seed: int) -> list:
    """The patient folds the DDTI tiers were built on before the grouped splits (that build's
    data.group_folds): patients shuffled with `seed`, largest first into the fold with fewest images."""
    rng = np.random.default_rng(seed)
    uniq = sorted(set(patients))
    rng.shuffle(uniq)
    counts = {g: 0 for g in uniq}
    for g in patients:
        counts[g] += 1
    fold_of, sizes = {}, [0] * k
    for g in sorted(uniq, key=lambda g: -counts[g]):
        f = int(np.argmin(sizes))
        fold_of[g] = f
        sizes[f] += counts[g]
    return [np.asarray([i for i, g in enumerate(patients) if fold_of[g] == f], np.int64) for f in range(k)]


def legacy_ddti_split(items, seed: int = 1234, fold: int = 0, n_folds: int = 5,
                      val_fraction: float = 0.15) -> splits.Split:
    """The split the DDTI tiers built before the grouped splits used, exactly: test = their patient
    fold; validation = int(n * val_fraction) of the other folds' images drawn at random with
    seed + fold (images, not patients: that build's validation shares patients with its training)."""
    test = legacy_patient_folds(items.patients, n_folds, seed)[fold]
    rest = np.setdiff1d(np.arange(len(items.patients)), test)
    perm = np.random.default_rng(seed + fold).permutation(len(rest))
    k = max(1, int(len(perm) * val_fraction))
    return splits.Split(rest[np.sort(perm[k:])], rest[np.sort(perm[:k])], test, np.zeros(0, np.int64))


def split_kind(models_dir: str, names) -> str:
    """'grouped' or 'legacy' for the tiers `names` (their records in models_dir/report/tiers)."""
    kinds = set()
    for n in names:
        path = os.path.join(models_dir, "report", "tiers", n + ".json")
        rec = {}
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                rec = json.load(fh)
        kinds.add(rec.get("split", "legacy"))
    if len(kinds) != 1:
        raise ValueError(f"{models_dir}: the tiers mix grouped and legacy splits ({sorted(kinds)}): "
                         "evaluate them separately with --images, or rebuild fold 0")
    return kinds.pop()


def busi_split(items, models_dir: str, names, seed: int = 1234, fold: int = 0, n_folds: int = 5,
               val_fraction: float = 0.15) -> tuple:
    """(Split, description) of the BUSI images the tiers `names` never trained on."""
    info = splits.task_groups("busi", items)
    if split_kind(models_dir, names) == "grouped":
        split, _ = splits.for_fold("busi", items, n_folds, fold, seed, val_fraction, info)
        return split, f"grouped fold {fold} of {n_folds}, seed {seed} (near-duplicate groups, conflicts out)"
    return (legacy_clean_split(items, info, seed, fold, n_folds, val_fraction),
            f"ungrouped stratified fold {fold} of {n_folds}, seed {seed}, the shipped tiers' split, "
            "without the images that have a near-duplicate in their training set and without conflict groups")
