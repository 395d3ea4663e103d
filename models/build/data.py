"""Dataset readers for BUSI (classification) and DDTI (segmentation); TensorFlow-free.

Images are returned as uint8 arrays at their stored size; resizing to a model grid happens in
the caller (TensorFlow half-pixel bilinear for training, the daemon's Preprocessor for
evaluation) so that both follow the preprocessing contract in docs/architecture.md.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

BUSI_LABELS = ("normal", "benign", "malignant")


@dataclass
class ClassificationSet:
    images: list          # list of uint8 (H, W) arrays
    labels: np.ndarray    # int64 indices into `classes`
    names: list           # relative file names as in labels.csv
    classes: tuple


@dataclass
class SegmentationSet:
    images: list          # uint8 (H, W)
    masks: list           # uint8 (H, W), 0 or 1
    names: list
    patients: list        # patient id per crop (folds are split by patient)


def _read_gray(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()


def _read_csv(data_dir: str, required: tuple) -> list:
    path = os.path.join(data_dir, "labels.csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: pass --data pointing at a folder laid out like ../shared/data/busi "
            "(labels.csv + class folders) or ../shared/data/ddti (labels.csv, images/, masks/)")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = [c for c in required if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path}: needs columns {', '.join(required)} and at least one row; "
                         f"missing {', '.join(missing) or 'rows'}")
    return rows


def take(items, idx):
    """The same set restricted to the items at `idx` (ClassificationSet or SegmentationSet)."""
    idx = list(idx)
    if isinstance(items, ClassificationSet):
        return ClassificationSet([items.images[i] for i in idx], items.labels[idx], [items.names[i] for i in idx],
                                 items.classes)
    return SegmentationSet([items.images[i] for i in idx], [items.masks[i] for i in idx],
                           [items.names[i] for i in idx], [items.patients[i] for i in idx])


def dataset_kind(data_dir: str) -> str:
    """'busi' (classification) or 'ddti' (segmentation), from the labels.csv columns."""
    rows = _read_csv(data_dir, ("image",))
    if "label" in rows[0]:
        return "busi"
    if "patient" in rows[0]:
        return "ddti"
    raise ValueError(f"{data_dir}/labels.csv: has neither a 'label' column (classification, like "
                     "busi/) nor a 'patient' column (segmentation, like ddti/)")


def resolve(data: str, task: str) -> str | None:
    """The `task` ('busi' or 'ddti') folder: `data` itself when it is one, else `data`/`task`."""
    sub = os.path.join(data, task)
    if os.path.isfile(os.path.join(sub, "labels.csv")):
        return sub
    if os.path.isfile(os.path.join(data, "labels.csv")) and dataset_kind(data) == task:
        return data
    return None


def load_busi(data_dir: str, classes: tuple = BUSI_LABELS, limit_per_class: int | None = None
              ) -> ClassificationSet:
    rows = _read_csv(data_dir, ("image", "label"))
    images, labels, names, seen = [], [], [], {c: 0 for c in classes}
    for row in rows:
        label = row["label"].strip()
        if label not in seen:
            raise ValueError(f"{data_dir}/labels.csv: label {label!r} for {row['image']} is not one of "
                             f"{', '.join(classes)}")
        if limit_per_class is not None and seen[label] >= limit_per_class:
            continue
        seen[label] += 1
        images.append(_read_gray(os.path.join(data_dir, row["image"])))
        labels.append(classes.index(label))
        names.append(row["image"])
    return ClassificationSet(images, np.asarray(labels, dtype=np.int64), names, tuple(classes))


def load_ddti(data_dir: str, limit: int | None = None) -> SegmentationSet:
    rows = _read_csv(data_dir, ("image", "patient"))
    if limit is not None:
        rows = rows[:limit]
    images, masks, names, patients = [], [], [], []
    for row in rows:
        name = row["image"]
        # labels.csv names the crop without extension ("100_1(1)"); the files are PNG.
        if not os.path.splitext(name)[1] and os.path.exists(os.path.join(data_dir, "images", name + ".png")):
            name += ".png"
        images.append(_read_gray(os.path.join(data_dir, "images", name)))
        masks.append((_read_gray(os.path.join(data_dir, "masks", name)) > 127).astype(np.uint8))
        names.append(name)
        patients.append(row["patient"])
    return SegmentationSet(images, masks, names, patients)


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> list:
    """k disjoint stratified folds covering every index once: list of test-index arrays.

    Ungrouped, so near-duplicates straddle folds: the split the shipped tiers were built on
    before issue 16, kept only to measure their leak (leakage.py); the build uses splits.py."""
    rng = np.random.default_rng(seed)
    folds = [[] for _ in range(k)]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        for i, j in enumerate(idx):
            folds[i % k].append(j)
    return [np.sort(np.asarray(f)) for f in folds]
