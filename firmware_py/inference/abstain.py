"""Abstention: when a result is `indeterminate` instead of a diagnosis, and why.

Everything here runs per frame on the int8 input the model already received and on its decoded
output, so it costs a few passes over at most 128 x 128 codes (no second model, no extra invoke).
Rules, checked in this order; the first that holds is the result's reason:

``saturated``     at least ``saturated_min_share`` of the pixels are at display >= 250
``blank``         the frame is black or uniform: its 95th percentile display level is at most
                  ``blank_max_level``, or the 5th-95th percentile spread is at most ``blank_max_spread``
``frozen``        the probe froze: fewer than ``frozen_max_changed_share`` of the codes differ by more
                  than ``frozen_tolerance`` from the previous analysed frame of this tier (live frames
                  always differ: speckle decorrelates and the receiver adds noise)
``no_tissue``     too little echo texture: over the 8 x 8 blocks inside the imaged region (no fill
                  pixel), the variance of the block means around their depth row's mean (so a TGC
                  ramp is not structure) is under ``no_tissue_max_structure`` of the mean within-block
                  variance (i.i.d. noise gives 1/64; every BUSI and DDTI image is above 0.09)
``atypical``      (manifest) unlike the images the tier was trained on: the mean squared z-score of the
                  image features against the training images exceeds ``typical.max_score``
``other_anatomy`` (manifest) a score linear in the same features and their squares, fitted to tell the
                  tier's anatomy from other ultrasound anatomy (breast vs thyroid), exceeds
                  ``anatomy.max_score``
``low_confidence`` (manifest, classify) the largest calibrated probability is under ``min_confidence``

The first four are device rules (configuration section ``abstention``); the last three are fitted
per tier on its training split, with thresholds chosen on its validation split, and ship in the
signed manifest (``tiers[].abstention``, written by ``firmware-py models abstention``).
"""
from __future__ import annotations

import math

import numpy as np

from firmware_py.registry import Key, Section

# The image features, in order; a manifest's `abstention.features` names this version, and its
# vectors have one entry per name. Changing the list means a new version (old fits stay readable).
FEATURES_V1 = (
    "mean", "std", "q05", "q25", "q50", "q75", "q95",
    "band0", "band1", "band2", "band3",          # mean of four depth bands, top to bottom
    "col0", "col1", "col2", "col3",              # mean of four lateral bands, left to right
    "grad_x", "grad_y",                          # mean |difference| of neighbours, lateral and axial
    "structure",                                 # echo structure (see no_tissue above)
    "dark_share", "bright_share",                # display < 16, display >= 250
    "ac_x1", "ac_y1", "ac_x2", "ac_y2", "ac_x4", "ac_y4",  # normalised autocorrelation at lags 1, 2, 4
    "local_contrast", "local_contrast_median",   # std in 4 x 4 blocks / global std
    "speckle_snr",                               # std / mean in the brighter half of the 4 x 4 blocks
) + tuple(f"thumb{i}" for i in range(16))        # 4 x 4 thumbnail of the frame
FEATURE_SETS = {"v1": FEATURES_V1}
REASONS = ("saturated", "blank", "frozen", "no_tissue", "atypical", "other_anatomy", "low_confidence")

SECTION = Section({
    "enabled": Key("bool", True, "Mark results `indeterminate` (with a reason) instead of reporting a diagnosis "
                   "for blank, saturated, frozen and tissue-free frames, for images unlike the tier's training "
                   "images or of another anatomy, and for low-confidence answers (docs/abstention.md). "
                   "`false`: every frame gets a diagnosis (measurement rigs only)."),
    "blank_max_level": Key("float", 16.0, "`blank` when the 95th percentile display level (0-255) is at most "
                           "this (a black frame).", min=0, max=255),
    "blank_max_spread": Key("float", 6.0, "`blank` when the 5th-95th percentile spread of display levels is at "
                            "most this (a uniform frame at any level).", min=0, max=255),
    "saturated_min_share": Key("float", 0.3, "`saturated` when at least this share of the pixels is at display "
                               "250 or more.", min=0.01, max=1),
    "frozen_tolerance": Key("int", 1, "Codes that differ by at most this from the previous frame count as "
                            "unchanged (rounding of a re-sent frame).", min=0, max=64),
    "frozen_max_changed_share": Key("float", 0.005, "`frozen` when fewer than this share of the codes changed "
                                    "since the previous analysed frame; 0 turns the rule off.", min=0, max=0.5),
    "no_tissue_max_structure": Key("float", 0.06, "`no_tissue` when the variance of the 8 x 8 block means "
                                   "inside the imaged region, around their depth row's mean, is under this share of "
                                   "the within-block variance (noise without echo structure: i.i.d. noise gives "
                                   "1/64).", min=0, max=1),
}, doc="When a result is `indeterminate` instead of a diagnosis (docs/abstention.md). The device rules are "
       "here; the per-tier thresholds (confidence, typical image, anatomy) are in the signed manifest.")


def display_lut(scale: float, zero_point: int, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """Display level (0-255, float32) of every int8 code, indexed by code + 128: the inverse of the
    preprocessing contract's normalise-and-quantize step."""
    codes = np.arange(-128, 128, dtype=np.float64)
    return (((codes - zero_point) * scale * std + mean) * 255.0).astype(np.float32)


def fill_code(fill: float, scale: float, zero_point: int, mean: float = 0.0, std: float = 1.0) -> int:
    """The int8 code the preprocessing writes outside the imaged sector (display value `fill`)."""
    return int(np.clip(round((fill / 255.0 - mean) / std / scale) + zero_point, -128, 127))


def structure(d: np.ndarray, filled: np.ndarray) -> float:
    """Echo structure of a frame cropped to multiples of 8: over the 8 x 8 blocks holding no fill pixel
    (`filled`), the mean squared deviation of block means from their block row's mean, over the mean
    within-block variance."""
    h, w = d.shape
    blocks = d.reshape(h // 8, 8, w // 8, 8)
    valid = ~filled.reshape(h // 8, 8, w // 8, 8).any(axis=(1, 3))
    n_row = valid.sum(axis=1)
    if valid.sum() < 4:
        return 0.0
    bm = blocks.mean(axis=(1, 3))
    bv = blocks.var(axis=(1, 3))
    rows = np.where(n_row > 0, (bm * valid).sum(axis=1) / np.maximum(n_row, 1), 0.0)
    resid = (bm - rows[:, None])[valid]
    return float(np.mean(resid * resid)) / max(float(bv[valid].mean()), 1e-6)


def features(q: np.ndarray, lut: np.ndarray, fill: int = -128) -> np.ndarray:
    """The FEATURES_V1 vector (float64) of one int8 frame (H, W) or (1, H, W, 1); `fill` is the code
    outside the imaged sector (fill_code)."""
    q = q.reshape(q.shape[-3:-1]) if q.ndim == 4 else q
    h8, w8 = q.shape[0] // 8 * 8, q.shape[1] // 8 * 8
    q = q[:h8, :w8]
    idx = q.view(np.uint8) ^ np.uint8(0x80)  # code + 128 without a widening copy
    d = lut[idx]
    filled = q == fill
    if h8 >= 128 and w8 >= 128:  # features of a 128 grid on its 2 x 2 means: a quarter of the work
        h8, w8 = h8 // 2, w8 // 2
        d = d.reshape(h8, 2, w8, 2).mean(axis=(1, 3))
        filled = filled.reshape(h8, 2, w8, 2).any(axis=(1, 3))
        h8, w8 = h8 // 8 * 8, w8 // 8 * 8
        d, filled = d[:h8, :w8], filled[:h8, :w8]
    hist = np.bincount(idx.ravel(), minlength=256)
    cdf = np.cumsum(hist) / idx.size
    qs = [float(lut[min(int(np.searchsorted(cdf, p)), 255)]) for p in (0.05, 0.25, 0.5, 0.75, 0.95)]
    mean = float(d.mean())
    z = d - mean
    var = max(float(np.mean(z * z)), 1e-6)
    sd = math.sqrt(var)
    bands = d.reshape(4, h8 // 4, w8).mean(axis=(1, 2))
    cols = d.reshape(h8, 4, w8 // 4).mean(axis=(0, 2))
    gx = float(np.abs(np.diff(d, axis=1)).mean())
    gy = float(np.abs(np.diff(d, axis=0)).mean())
    struct = structure(d, filled)
    dark = float(hist[:int(np.searchsorted(lut, 16.0))].sum()) / idx.size
    bright = float(hist[int(np.searchsorted(lut, 250.0)):].sum()) / idx.size
    ac = []
    for lag in (1, 2, 4):
        ac.append(float((z[:, lag:] * z[:, :-lag]).mean()) / var)
        ac.append(float((z[lag:] * z[:-lag]).mean()) / var)
    b4 = d.reshape(h8 // 4, 4, w8 // 4, 4)
    m4 = b4.mean(axis=(1, 3))
    s4 = b4.std(axis=(1, 3))
    upper = m4 > np.median(m4)
    snr = float(np.mean(s4[upper] / np.maximum(m4[upper], 1.0))) if upper.any() else 0.0
    thumb = d.reshape(4, h8 // 4, 4, w8 // 4).mean(axis=(1, 3)).ravel()
    return np.concatenate([[mean, sd], qs, bands, cols, [gx, gy, struct, dark, bright], ac,
                           [float(s4.mean()) / sd, float(np.median(s4)) / sd, snr], thumb]).astype(np.float64)


def anatomy_score(f: np.ndarray, weights: np.ndarray, bias: float) -> float:
    """The other-anatomy score: linear in the features and their squares (weights: 2 per feature)."""
    n = len(f)
    return float(f @ weights[:n] + (f * f) @ weights[n:] + bias)


class Abstainer:
    """The abstention rules of one tier: ``check(q, probabilities)`` -> (reason or None, scores).

    Keeps a copy of the previous frame's codes for the frozen rule (one per tier runtime; the
    first frame after a tier swap has no predecessor)."""

    def __init__(self, cfg, spec=None, *, scale: float, zero_point: int, mean: float = 0.0, std: float = 1.0,
                 fill: float = 0.0):
        self.cfg = cfg
        self.spec = spec  # manifest.AbstentionSpec or None
        self.lut = display_lut(scale, zero_point, mean, std)
        self.fill = fill_code(fill, scale, zero_point, mean, std)
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = None

    def check(self, q: np.ndarray, probabilities: dict[str, float] | None = None) -> tuple[str | None, dict]:
        cfg, spec = self.cfg, self.spec
        q = q.reshape(q.shape[-3:-1]) if q.ndim == 4 else q
        f = features(q, self.lut, self.fill)
        scores = {"q95": round(f[6], 2), "spread": round(f[6] - f[2], 2), "bright_share": round(f[19], 4),
                  "structure": round(f[17], 4)}
        prev, self._prev = self._prev, q.copy()
        changed = None
        if prev is not None and prev.shape == q.shape:
            diff = np.abs(q.astype(np.int16) - prev)
            changed = float(np.count_nonzero(diff > cfg.frozen_tolerance)) / q.size
            scores["changed_share"] = round(changed, 5)
        reason = None
        if f[19] >= cfg.saturated_min_share:  # first: a white frame is uniform too, and "saturated" says why
            reason = "saturated"
        elif f[6] <= cfg.blank_max_level or f[6] - f[2] <= cfg.blank_max_spread:
            reason = "blank"
        elif changed is not None and changed < cfg.frozen_max_changed_share:
            reason = "frozen"
        elif f[17] < cfg.no_tissue_max_structure:
            reason = "no_tissue"
        if spec is not None:
            if spec.typical is not None:
                z = (f - spec.typical.mean) / spec.typical.std
                scores["atypical"] = round(float(np.mean(z * z)), 3)
                if reason is None and scores["atypical"] > spec.typical.max_score:
                    reason = "atypical"
            if spec.anatomy is not None:
                scores["other_anatomy"] = round(anatomy_score(f, spec.anatomy.weights, spec.anatomy.bias), 3)
                if reason is None and scores["other_anatomy"] > spec.anatomy.max_score:
                    reason = "other_anatomy"
            if probabilities and spec.min_confidence is not None:
                scores["confidence"] = round(max(probabilities.values()), 4)
                if reason is None and scores["confidence"] < spec.min_confidence:
                    reason = "low_confidence"
        return reason, scores
