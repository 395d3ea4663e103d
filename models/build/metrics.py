"""Classification and segmentation metrics in plain NumPy (shared by training and evaluate)."""
from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum (Mann-Whitney) statistic, ties averaged."""
    positive = positive.astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    s = scores[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def classification_metrics(probs: np.ndarray, y_true: np.ndarray, classes: tuple,
                           positive: str = "malignant", threshold: float = 0.5) -> dict:
    """Accuracy, balanced accuracy, confusion matrix, and positive-vs-rest sensitivity,
    specificity (positive called when p(positive) >= threshold) and AUC."""
    y_pred = probs.argmax(axis=1)
    cm = confusion(y_true, y_pred, len(classes))
    recall = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
    p = classes.index(positive)
    is_pos = y_true == p
    called = probs[:, p] >= threshold
    tp, fn = int((called & is_pos).sum()), int((~called & is_pos).sum())
    tn, fp = int((~called & ~is_pos).sum()), int((called & ~is_pos).sum())
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()),
        "balanced_accuracy": float(recall.mean()),
        f"{positive}_sensitivity": tp / max(tp + fn, 1),
        f"{positive}_specificity": tn / max(tn + fp, 1),
        f"{positive}_auc": auc(probs[:, p], is_pos),
        "threshold": threshold,
        "confusion": cm.tolist(),
    }


def sensitivity_at_specificity(probs_pos: np.ndarray, is_pos: np.ndarray, min_spec: float) -> tuple:
    """Highest sensitivity whose specificity is >= min_spec; returns (sens, spec, threshold)."""
    best = (0.0, 1.0, 1.0)
    for t in np.unique(probs_pos):
        called = probs_pos >= t
        spec = float((~called & ~is_pos).sum() / max((~is_pos).sum(), 1))
        sens = float((called & is_pos).sum() / max(is_pos.sum(), 1))
        if spec >= min_spec and sens > best[0]:
            best = (sens, spec, float(t))
    return best


def dice_iou(pred: np.ndarray, truth: np.ndarray) -> tuple:
    """Per-image Dice and IoU of binary masks (N, ...); both 1 when both masks are empty."""
    pred = pred.reshape(len(pred), -1).astype(bool)
    truth = truth.reshape(len(truth), -1).astype(bool)
    inter = (pred & truth).sum(1).astype(np.float64)
    ps, ts = pred.sum(1), truth.sum(1)
    union = ps + ts - inter
    dice = np.where(ps + ts > 0, 2 * inter / np.maximum(ps + ts, 1), 1.0)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return dice, iou


def bootstrap_ci95(metric_fn, n: int, keys: tuple, draws: int = 1000, seed: int = 0) -> dict:
    """Percentile bootstrap 95 % intervals {key: [lo, hi]} of `metric_fn(indices)[key]` over
    `draws` resamples of the n items with replacement (seeded; a resample where a metric is
    undefined, e.g. AUC without a positive, is left out of that metric's percentiles)."""
    rng = np.random.default_rng(seed)
    samples = {k: [] for k in keys}
    for _ in range(draws):
        m = metric_fn(rng.integers(0, n, n))
        for k in keys:
            samples[k].append(m[k])
    return {k: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))] for k, v in samples.items()}
