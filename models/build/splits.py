"""Leakage-free splits (TensorFlow-free): cross-validation folds, validation and test by group.

A group is the unit no split may cut: a BUSI near-duplicate group (dedup.py; a singleton image is
its own group), a DDTI patient joined with every patient that shares a near-duplicate image.
Label-conflict groups (one lesion filed under two classes) are left out of training and
evaluation. Every split is a pure function of (groups, labels, seed), so the build, the threshold
tuning and the tests rebuild the same indices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    excluded: np.ndarray   # conflict-group items: in no split

    def signature(self) -> str:
        """Digest of the indices (checkpoints of one split are never resumed under another)."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.train, self.val, self.test, self.excluded):
            h.update(np.asarray(a, np.int64).tobytes() + b"|")
        return h.hexdigest()[:16]


def _group_table(groups, idx, labels):
    """(group keys, member index arrays, class per group) of the items `idx`, in key order."""
    members = {}
    for i in idx:
        members.setdefault(groups[i], []).append(int(i))
    keys = sorted(members)
    cls = [int(labels[members[g][0]]) if labels is not None else 0 for g in keys]
    return keys, [np.asarray(members[g]) for g in keys], np.asarray(cls, np.int64)


def grouped_folds(groups, k: int, seed: int, labels=None, idx=None) -> list:
    """k disjoint folds of item indices (of `idx`, default all) with every group in one fold.

    With `labels`, stratified: a group counts for its first member's class (take conflict groups
    out first), and groups go largest first, in seeded random order among equal sizes, into the
    fold that holds the fewest items of that class (then the fewest items, then the lowest index).
    """
    groups = list(groups)
    idx = np.arange(len(groups)) if idx is None else np.asarray(idx)
    keys, members, cls = _group_table(groups, idx, labels)
    order = np.random.default_rng(seed).permutation(len(keys))
    order = sorted(order, key=lambda g: -len(members[g]))
    per_class = np.zeros((k, int(cls.max(initial=0)) + 1), np.int64)
    folds = [[] for _ in range(k)]
    for g in order:
        c = cls[g]
        f = min(range(k), key=lambda f: (per_class[f, c], per_class[f].sum(), f))
        per_class[f, c] += len(members[g])
        folds[f].extend(members[g])
    return [np.sort(np.asarray(f, np.int64)) for f in folds]


def grouped_holdout(groups, idx, fraction: float, seed: int, labels=None) -> tuple:
    """(rest, held out) of `idx`: whole groups, about `fraction` of each class held out."""
    keys, members, cls = _group_table(list(groups), np.asarray(idx), labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(cls):
        gs = rng.permutation(np.flatnonzero(cls == c))
        target = round(fraction * sum(len(members[g]) for g in gs))
        got = 0
        for g in gs:
            # Take a group while it brings the class's held-out count closer to its target.
            if abs(got + len(members[g]) - target) < abs(got - target):
                held.extend(members[g])
                got += len(members[g])
    held = np.sort(np.asarray(held, np.int64))
    return np.setdiff1d(np.asarray(idx, np.int64), held), held


def fold_split(groups, labels, excluded, k: int, fold: int, seed: int, val_fraction: float) -> Split:
    """Fold `fold` of k: test = that fold, validation carved by group from the other folds with
    seed + fold, train = the rest; `excluded` items are in none of them."""
    n = len(groups)
    excluded = np.asarray(sorted(excluded), np.int64)
    keep = np.setdiff1d(np.arange(n), excluded)
    test = grouped_folds(groups, k, seed, labels, keep)[fold]
    rest = np.setdiff1d(keep, test)
    train, val = grouped_holdout(groups, rest, val_fraction, seed + fold, labels)
    return Split(train, val, test, excluded)


def task_groups(kind: str, items) -> dict:
    """Split groups for a loaded set: {'groups': key per item, 'excluded': conflict items,
    'conflicts': [[names]], 'n_groups': duplicate groups (BUSI) / cross-patient groups (DDTI)}."""
    from . import dedup

    res = dedup.find(kind, items)
    excluded = sorted(i for g in res["conflicts"] for i in g)
    return {"groups": [int(g) for g in res["ids"]], "excluded": excluded,
            "conflicts": [[items.names[i] for i in g] for g in res["conflicts"]],
            "n_groups": len(res["groups"] if kind == "busi" else res["cross_patient"])}


def for_fold(kind: str, items, k: int, fold: int, seed: int, val_fraction: float, groups=None) -> tuple:
    """(Split, groups info) of fold `fold` for a BUSI ('busi') or DDTI ('ddti') set."""
    info = groups or task_groups(kind, items)
    labels = items.labels if kind == "busi" else None
    return fold_split(info["groups"], labels, info["excluded"], k, fold, seed, val_fraction), info
