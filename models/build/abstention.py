"""Fit and measure abstention (issue 16 point 7): when a shipped tier answers `indeterminate`.

    firmware-py models abstention --data ../shared/data --json out/abstention.json [--write]

TensorFlow-free. Every input goes through the daemon's own Preprocessor into the tier's int8 input
and through the daemon's own rules (firmware_py.inference.abstain.Abstainer), so the figures are
what the device does. Splits (splits.for_fold, fold 0, the build's seed and validation share):

* fitting (typical-image statistics, the anatomy score) uses the training split only;
* every threshold (min_confidence, typical.max_score, anatomy.max_score, min_area_px) is a
  quantile of the validation split;
* the in-distribution flag rate is measured on the test split, restricted to images the shipped
  tier never trained on (heldout.py): for a tier built before the grouped splits, the legacy
  split without the images that have a near-duplicate (BUSI) or a duplicate group (DDTI) outside it.

Out-of-distribution sets, all through the Preprocessor with a real probe geometry: the other
anatomy (DDTI thyroid images to the BUSI tiers, BUSI breast images to the DDTI tiers; images of the
other set's validation and test splits, never used to fit the anatomy score), blank frames,
saturated frames (test images at +20..+40 dB gain, and white frames), frozen sequences (a test
image or a phantom frame sent three times: the repeats count), noise-only frames (no tissue), and
phantoms (drivers/phantom.py speckle phantoms of every probe kind, and the physics-simulated
pymust frames of ../shared/data/pymust, 8-bit B-mode and 16-bit envelope).

`--write` stores each tier's fitted block in its record models/report/tiers/<tier>.json (with the
model file's sha256: the manifest loader refuses a block fitted for another file), which manifest.py
puts into the manifest, and the figures in models/report/abstention.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from . import data as D
from . import evaluate as E
from . import heldout
from . import interp
from . import splits

MODELS_DIR = E.MODELS_DIR
SEED, N_FOLDS, VAL_FRACTION = 1234, 5, 0.15
# Per-reason false-alarm budgets on in-distribution images: atypical 1 % + other_anatomy 2 % +
# low_confidence 1 % = 4 %, leaving 1 % of the 5 % target to the device rules.
GATE_QUANTILE = 0.99
ANATOMY_QUANTILE = 0.98  # the anatomy score gets 2 %: the OOD kind it guards is the hardest to tell apart
CONFIDENCE_QUANTILE = 0.01
AREA_QUANTILE = 0.01  # min_area_px is at most half the 1st percentile of validation nodules' components
NODULE_MISS_BUDGET = 0.05  # the no-nodule rule may hide at most this share of the validation nodules
OOD_KINDS = ("other_anatomy", "blank", "saturated", "frozen", "no_tissue", "phantom")


# -- which images a shipped tier never trained on -------------------------------------------------
def held_out(kind: str, items, models_dir: str, tiers: list) -> dict:
    """{'train', 'val', 'test', 'legacy'}: test = images the shipped tiers never trained on.

    BUSI: heldout.busi_split (the grouped split, or the legacy build's own split without leaked
    images). DDTI: the grouped split, or for a legacy build its patient fold 0 restricted to images
    whose duplicate group lies wholly inside it, validation and training from outside that fold."""
    names = [t["name"] for t in tiers]
    legacy = heldout.split_kind(models_dir, names) != "grouped"
    if kind == "busi":
        split, _ = heldout.busi_split(items, models_dir, names, SEED, 0, N_FOLDS, VAL_FRACTION)
        return {"train": split.train, "val": split.val, "test": split.test, "legacy": legacy}
    split, info = splits.for_fold(kind, items, N_FOLDS, 0, SEED, VAL_FRACTION)
    if not legacy:
        return {"train": split.train, "val": split.val, "test": split.test, "legacy": False}
    old = heldout.legacy_patient_folds(items.patients, N_FOLDS, SEED)[0]
    groups = np.asarray(info["groups"])
    inside = set(old.tolist())
    outside_groups = {groups[i] for i in range(len(groups)) if i not in inside}
    fresh = np.asarray([i for i in old if groups[i] not in outside_groups and i not in set(split.excluded)],
                       np.int64)
    return {"train": np.setdiff1d(split.train, old), "val": np.setdiff1d(split.val, old), "test": fresh,
            "legacy": True}


# -- synthetic and phantom frames (samples, geometry) -----------------------------------------------
def _geometries(rng, bits: int, n: int):
    from firmware_py.drivers.phantom import make_geometry

    kinds = ("linear", "convex", "phased")
    return [make_geometry(kinds[k % 3], 128, 384, bits) for k in range(n)]


def _image_frame(img: np.ndarray):
    return np.ascontiguousarray(img.T), interp.frame_geometry(*img.shape)


def ood_frames(rng, test_images: list, pymust_dir: str | None, n: int = 30) -> dict:
    """OOD kind -> list of frame sequences; each sequence is [(samples, geometry), ...] fed in order
    to a fresh Abstainer, and its frames from `count_from` on are the ones counted."""
    from firmware_py.drivers.phantom import Lesion, SpecklePhantom

    sets: dict[str, list] = {k: [] for k in OOD_KINDS if k != "other_anatomy"}
    for k, g in enumerate(_geometries(rng, 8, n) + _geometries(rng, 16, n // 2)):
        shape = (g.n_lines, g.n_samples)
        if g.bits == 8:
            level = [0, 0, int(rng.integers(1, 12)), int(rng.integers(20, 240))][k % 4]
            frame = np.full(shape, level, np.uint8)
            if k % 4 == 2:  # near-black with receiver noise
                frame = np.clip(rng.normal(level, 2.0, shape), 0, 255).astype(np.uint8)
        else:  # a 16-bit envelope below the dynamic range: black after log compression
            frame = np.clip(rng.rayleigh(float(rng.uniform(5, 40)), shape), 0, 65535).astype(np.uint16)
        sets["blank"].append([(np.ascontiguousarray(frame), g)])
    for k in range(n):
        img = test_images[k % len(test_images)].astype(np.float64)
        gain = 10 ** (float(rng.uniform(20, 40)) / 20)
        sat = np.clip(img * gain, 0, 255).astype(np.uint8) if k % 5 else np.full(img.shape, 255, np.uint8)
        sets["saturated"].append([_image_frame(sat)])
        sets["frozen"].append([_image_frame(test_images[(k + 7) % len(test_images)])] * 3)
    for k, g in enumerate(_geometries(rng, 8, n) + _geometries(rng, 16, n // 2)):
        shape = (g.n_lines, g.n_samples)
        if g.bits == 8:  # speckle-like noise of a random level and spread, no echo structure
            frame = np.clip(rng.normal(rng.uniform(30, 200), rng.uniform(5, 60), shape), 0, 255).astype(np.uint8)
        else:  # probe in air: Rayleigh receiver noise inside the dynamic range, flat or with a TGC ramp
            ramp = np.linspace(0, float(rng.uniform(0, 20)), shape[1])[None, :]
            sigma = 65535 * 10 ** ((float(rng.uniform(-45, -15)) + ramp) / 20)
            frame = np.clip(rng.rayleigh(1.0, shape) * sigma, 0, 65535).astype(np.uint16)
        sets["no_tissue"].append([(np.ascontiguousarray(frame), g)])
    for k, g in enumerate(_geometries(rng, 8, n) + _geometries(rng, 16, n // 2)):
        x0, x1, z0, z1 = g.bounding_box_mm()
        lesions = tuple(Lesion(float(rng.uniform(x0, x1) * 0.5), float(rng.uniform(z0 + 0.2 * (z1 - z0), z1 * 0.9)),
                               float(rng.uniform(0.04, 0.12) * (z1 - z0)), float(rng.choice([-40, -12, -6, 6, 12])))
                        for _ in range(int(rng.integers(0, 4))))
        ph = SpecklePhantom(g, lesions, attenuation_db_cm_mhz=float(rng.uniform(0.3, 0.7)))
        frame, _ = ph.frame(rng)
        sets["phantom"].append([(frame, g)])
        if k < n // 3:  # a phantom frame sent three times is frozen too
            sets["frozen"].append([(frame, g)] * 3)
    sets["phantom"] += [[f] for f in pymust_frames(pymust_dir)]
    return sets


def pymust_frames(pymust_dir: str | None) -> list:
    """The pymust physics simulations as probe frames: 8-bit B-mode and 16-bit envelope (|IQ|), each at
    a few gains, linear (L11-5v) and convex (C5-2v) geometry."""
    from firmware_py.geometry import Geometry, ProbeKind

    if not pymust_dir or not os.path.isdir(pymust_dir):
        return []
    frames = []
    lin = np.load(os.path.join(pymust_dir, "linear_cyst.npz"))
    zi, xi = lin["zi"], lin["xi"]
    g8 = Geometry(ProbeKind.LINEAR, n_lines=lin["bmode"].shape[1], n_samples=lin["bmode"].shape[0], bits=8,
                  start_depth_mm=float(zi.min() * 1e3), end_depth_mm=float(zi.max() * 1e3),
                  width=float((xi.max() - xi.min()) * 1e3))
    cvx = np.load(os.path.join(pymust_dir, "convex_cyst.npz"))
    xg, zg = cvx["xg"], cvx["zg"]
    radius = 49.6
    span = float(np.degrees(np.arctan2(xg[0].max(), zg[0, -1] + radius / 1e3)) * 2)
    c8 = Geometry(ProbeKind.CONVEX, n_lines=cvx["bmode_polar"].shape[1], n_samples=cvx["bmode_polar"].shape[0],
                  bits=8, start_depth_mm=0.0, end_depth_mm=float(np.hypot(xg, zg + radius / 1e3).max() * 1e3 - radius),
                  width=span, radius_mm=radius)
    for bmode, iq, g in ((lin["bmode"], lin["IQ"], g8), (cvx["bmode_polar"], cvx["IQb"], c8)):
        for offset in (-20, 0, 20):
            frames.append((np.ascontiguousarray(np.clip(bmode.T.astype(np.int16) + offset, 0, 255).astype(np.uint8)), g))
        env = np.abs(iq).T.astype(np.float64)
        for gain_db in (-10, 0, 10):
            a = env / env.max() * 65535 * 10 ** (gain_db / 20)
            frames.append((np.ascontiguousarray(np.clip(a, 0, 65535).astype(np.uint16)),
                           Geometry(g.kind, g.n_lines, g.n_samples, 16, g.start_depth_mm, g.end_depth_mm, g.width,
                                    g.radius_mm)))
    return frames


# -- per tier ---------------------------------------------------------------------------------------
def _abstain_cfg():
    from firmware_py.config import load_config

    return load_config(None).abstention


def _features_of(case, codes: np.ndarray) -> np.ndarray:
    from firmware_py.inference.abstain import features

    return np.stack([features(c, case.lut, case.fill_code) for c in codes])


def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 2000) -> tuple:
    """Weights and bias (in raw feature units) of an L2-regularised logistic regression, by gradient
    descent on standardised features; a few hundred images and 45 features need nothing more."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    w, b = np.zeros(z.shape[1]), 0.0
    pos = y.mean()
    sw = np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos))  # balance the two sets
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        g = sw * (p - y)
        w -= 0.5 * (z.T @ g / len(y) + l2 * w)
        b -= 0.5 * float(g.mean())
    return w / sd, float(b - np.sum(w * mu / sd))


def _tier_runner(tier: dict, models_dir: str):
    from firmware_py.kernels import Preprocessor

    pp = E.preprocessor(tier, Preprocessor)
    it = interp.interpreter(os.path.join(models_dir, tier["files"]["cpu"]["path"]))
    s, z = it.get_output_details()[0]["quantization"]
    return pp, it, float(s), int(z)


def _codes(pp, frames) -> np.ndarray:
    codes = np.empty((len(frames), pp.out_h, pp.out_w), np.int8)
    for k, (samples, g) in enumerate(frames):
        pp.run(samples, g, codes[k])
    return codes


def _probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    x = logits / temperature
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class TierCase:
    """One tier: its preprocessing, interpreter and decode, on frames and images."""

    def __init__(self, tier: dict, models_dir: str):
        from firmware_py.inference.abstain import display_lut, fill_code

        self.tier = tier
        self.task = tier["task"]
        self.pp, self.it, self.s, self.z = _tier_runner(tier, models_dir)
        q = tier["input"]["quantization"]
        self.lut = display_lut(q["scale"], q["zero_point"])
        self.fill = tier["preprocess"].get("fill", 0)
        self.fill_code = fill_code(self.fill, q["scale"], q["zero_point"])
        self.temperature = float(tier.get("calibration", {}).get("temperature", 1.0))
        self.labels = tuple(tier["output"].get("labels", ()))

    def outputs(self, codes: np.ndarray) -> np.ndarray:
        return (interp.invoke_all(self.it, codes).astype(np.float64) - self.z) * self.s

    def probabilities(self, codes: np.ndarray) -> list:
        if self.task != "classify":
            return [None] * len(codes)
        p = _probs(self.outputs(codes).reshape(len(codes), -1), self.temperature)
        return [dict(zip(self.labels, row.tolist())) for row in p]


def _spec(block: dict):
    """The manifest's AbstentionSpec for a fitted block (the loader's own parser)."""
    from firmware_py.inference.manifest import _abstention, _Reader

    return _abstention(_Reader("fit"), {"abstention": block}, "tier", block.pop("_task"))


def fit_tier(case: TierCase, codes: np.ndarray, idx: dict, other_train_codes: np.ndarray) -> dict:
    f = _features_of(case, codes)
    ftr, fval = f[idx["train"]], f[idx["val"]]
    mean, std = ftr.mean(0), ftr.std(0) + 1e-6
    typ_val = np.mean(((fval - mean) / std) ** 2, axis=1)
    fo = _features_of(case, other_train_codes)
    quad = lambda x: np.c_[x, x * x]  # noqa: E731  (abstain.anatomy_score: features and their squares)
    w, b = _logistic(quad(np.r_[ftr, fo]), np.r_[np.zeros(len(ftr)), np.ones(len(fo))])
    an_val = quad(fval) @ w + b
    block = {"features": "v1",
             "typical": {"mean": _r(mean), "std": _r(std), "max_score": round(float(np.quantile(typ_val, GATE_QUANTILE)), 4)},
             "anatomy": {"weights": _r(w), "bias": round(b, 6),
                         "max_score": round(float(np.quantile(an_val, ANATOMY_QUANTILE)), 4)}}
    if case.task == "classify":
        conf = np.array([max(p.values()) for p in case.probabilities(codes[idx["val"]])])
        block["min_confidence"] = confidence_threshold(conf, len(case.labels), CONFIDENCE_QUANTILE)
    return block


def confidence_threshold(conf: np.ndarray, n_classes: int, q: float) -> float:
    """min_confidence: the q-quantile of a normal fitted to logit((c - 1/K) / (1 - c)) of the validation
    confidences c. Every validation image sets the mean and spread; the empirical 1 % quantile of ~50
    images is set by the one or two least confident and moved from 0.50 to 0.39 by a single image
    (top BUSI tier). The transform maps the range 1/K..1 of a K-class top probability onto the line."""
    lo, eps = 1.0 / n_classes, 1e-6
    u = np.log((np.clip(conf, lo + eps, 1 - eps) - lo) / (1 - np.clip(conf, lo + eps, 1 - eps)))
    from statistics import NormalDist

    t = float(u.mean() + NormalDist().inv_cdf(q) * u.std(ddof=1))
    return round(float((lo + math.exp(t)) / (1 + math.exp(t))), 4)


def _r(a) -> list:
    return [float(f"{v:.6g}") for v in np.asarray(a).tolist()]


def flags(case: TierCase, spec, sequences: list, count_from: int = 0) -> list:
    """Reasons (None = a diagnosis) of the counted frames of each sequence, each fed to a fresh Abstainer
    in order, as the daemon's tier slot would see them."""
    from firmware_py.inference.abstain import Abstainer

    q = case.tier["input"]["quantization"]
    ab = Abstainer(_abstain_cfg(), spec, scale=q["scale"], zero_point=q["zero_point"], fill=case.fill)
    out = []
    for seq in sequences:
        ab.reset()
        codes = seq if isinstance(seq, np.ndarray) else _codes(case.pp, seq)
        probs = case.probabilities(codes)
        for k, (c, p) in enumerate(zip(codes, probs)):
            reason, _ = ab.check(c, p)
            if k >= count_from:
                out.append(reason)
    return out


def _rate(reasons: list) -> dict:
    n = len(reasons)
    by = {}
    for r in reasons:
        if r is not None:
            by[r] = by.get(r, 0) + 1
    return {"n": n, "flagged": sum(by.values()), "rate": round(sum(by.values()) / n, 4) if n else None,
            "by_reason": dict(sorted(by.items()))}


def _ci95(flagged: list, draws: int = 1000, seed: int = 0) -> list:
    a = np.asarray([r is not None for r in flagged], np.float64)
    if not len(a):
        return [None, None]
    rng = np.random.default_rng(seed)
    m = [a[rng.integers(0, len(a), len(a))].mean() for _ in range(draws)]
    return [round(float(np.quantile(m, 0.025)), 4), round(float(np.quantile(m, 0.975)), 4)]


def _seg_components(case: TierCase, codes: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels of the largest predicted component per frame (the daemon's postprocessing)."""
    from firmware_py.kernels import largest_component

    logit = math.log(threshold / (1 - threshold))
    out = case.outputs(codes)
    return np.array([int(largest_component((o[..., 0] >= logit).astype(np.uint8)).sum()) for o in out])


def _seg_peaks(case: TierCase, codes: np.ndarray) -> np.ndarray:
    """Probability of the most confident pixel per frame, as the daemon's decoder computes it."""
    top = case.outputs(codes).reshape(len(codes), -1).max(axis=1)
    return 1.0 / (1.0 + np.exp(-top))


def no_nodule(peaks: np.ndarray, comps: np.ndarray, rule: dict) -> np.ndarray:
    """The decoder's no-nodule rule (decode.Decoder.nodule) on per-frame peaks and largest components."""
    peak = rule.get("min_peak_probability")
    return (comps == 0) | (comps < rule["min_area_px"]) | ((peaks < peak) if peak is not None else False)


def choose_no_nodule_rule(case: TierCase, items, idx: dict, codes: np.ndarray, threshold: float) -> dict:
    """{min_peak_probability, min_area_px} on validation: the pair that rejects the most nodule-free
    validation images (crops of the validation images without a mask pixel, and any validation image with
    an empty mask) while keeping at least 1 - NODULE_MISS_BUDGET of the validation nodules. min_area_px
    is capped at half the validation nodules' 1st-percentile component, so it never hides a nodule the
    size of the smallest real ones on a device whose field of view is wider than DDTI's crops."""
    val_nod = [i for i in idx["val"] if items.masks[i].any()]
    neg = nodule_free_crops(items, idx["val"], None) + [items.images[i] for i in idx["val"] if not items.masks[i].any()]
    nodule_codes, neg_codes = codes[val_nod], interp.device_codes(neg, case.pp)
    pn, cn = _seg_peaks(case, nodule_codes), _seg_components(case, nodule_codes, threshold)
    pc, cc = _seg_peaks(case, neg_codes), _seg_components(case, neg_codes, threshold)
    cap = int(np.quantile(cn, AREA_QUANTILE)) // 2 if len(cn) else 0
    best = None
    for peak in np.unique(np.r_[0.0, pn]):
        for area in np.unique(np.r_[0, cn[cn <= cap]]):
            rule = {"min_peak_probability": float(peak), "min_area_px": int(area)}
            if no_nodule(pn, cn, rule).mean() > NODULE_MISS_BUDGET + 1e-9:
                continue
            key = (float(no_nodule(pc, cc, rule).mean()), -peak, -area)  # ties: the milder rule
            if best is None or key > best[0]:
                best = (key, rule)
    rule = best[1]
    # just under the lowest kept peak: the manifest's 6 digits must not round a kept nodule away
    rule["min_peak_probability"] = math.floor(rule["min_peak_probability"] * 1e6) / 1e6
    rule["fitted"] = {"val_nodules": len(cn), "val_nodule_free": len(cc),
                      "val_nodules_missed": round(float(no_nodule(pn, cn, rule).mean()), 4),
                      "val_nodule_free_rejected": round(float(no_nodule(pc, cc, rule).mean()), 4)}
    return rule


def nodule_free_crops(items, idx, rng, side: float = 0.35) -> list:
    """Real thyroid tissue without a nodule: a square window of `side` of the image that holds no mask
    pixel and some echo (mean display >= 30), from each image that has one (the first found, scanning
    rows from the top)."""
    crops = []
    for i in idx:
        img, m = items.images[i], items.masks[i]
        h, w = img.shape
        s = int(min(h, w) * side)
        best = None
        for y in range(0, h - s + 1, max(s // 8, 1)):
            for x in range(0, w - s + 1, max(s // 8, 1)):
                if not m[y:y + s, x:x + s].any() and img[y:y + s, x:x + s].mean() >= 30:
                    best = (y, x)
                    break
            if best:
                break
        if best:
            crops.append(np.ascontiguousarray(img[best[0]:best[0] + s, best[1]:best[1] + s]))
    return crops


def measure_task(kind: str, items, other, other_idx: dict, models_dir: str, pymust_dir: str | None,
                 tiers: list, n_synthetic: int) -> dict:
    idx = held_out(kind, items, models_dir, tiers)
    rng = np.random.default_rng(SEED)
    test_images = [items.images[i] for i in idx["test"]]
    synthetic = ood_frames(rng, test_images, pymust_dir, n_synthetic)
    other_eval = np.r_[other_idx["val"], other_idx["test"]]
    res = {"split": {k: int(len(v)) for k, v in idx.items() if k != "legacy"}, "legacy_build": idx["legacy"],
           "ood_n": {}, "tiers": {}}
    for t in tiers:
        case = TierCase(t, models_dir)
        codes = interp.device_codes(items.images, case.pp)
        other_codes = interp.device_codes(other.images, case.pp)
        block = fit_tier(case, codes, idx, other_codes[other_idx["train"]])
        if kind == "ddti":
            rule = choose_no_nodule_rule(case, items, idx, codes,
                                         float(t["output"].get("threshold", {}).get("value", 0.5)))
            block["no_nodule_fit"] = rule.pop("fitted")
            block.update(rule)
        spec = _spec({**json.loads(json.dumps(block)), "_task": case.task})
        test_codes = codes[idx["test"]]
        in_dist = flags(case, spec, [test_codes])  # one stream in name order: the frozen rule sees the previous image
        row = {"abstention": block, "in_distribution": {**_rate(in_dist), "ci95": _ci95(in_dist)}, "ood": {}}
        row["ood"]["other_anatomy"] = _rate(flags(case, spec, [other_codes[[i]] for i in other_eval]))
        for name, seqs in synthetic.items():
            row["ood"][name] = _rate(flags(case, spec, seqs, count_from=1 if name == "frozen" else 0))
        pooled_n = sum(v["n"] for v in row["ood"].values())
        pooled_f = sum(v["flagged"] for v in row["ood"].values())
        row["ood_pooled"] = {"n": pooled_n, "flagged": pooled_f, "rate": round(pooled_f / pooled_n, 4)}
        row["targets"] = {"ood_min_rate_per_kind": min(v["rate"] for v in row["ood"].values()),
                          "in_distribution_rate": row["in_distribution"]["rate"],
                          "met": bool(min(v["rate"] for v in row["ood"].values()) >= 0.90
                                      and row["in_distribution"]["rate"] <= 0.05)}
        if kind == "busi":
            probs = case.probabilities(test_codes)
            y = items.labels[idx["test"]]
            pred = np.array([case.labels.index(max(p, key=p.get)) for p in probs])
            kept = np.array([r is None for r in in_dist])
            row["accuracy_all"] = round(float(np.mean(pred == y)), 4)
            row["accuracy_kept"] = round(float(np.mean(pred[kept] == y[kept])), 4) if kept.any() else None
            row["accuracy_flagged"] = round(float(np.mean(pred[~kept] == y[~kept])), 4) if (~kept).any() else None
        else:
            row["empty_masks"] = empty_mask_specificity(case, spec, items, idx, block,
                                                        float(t["output"].get("threshold", {}).get("value", 0.5)))
        row["cost"] = check_cost(case, spec, test_codes)
        res["tiers"][t["name"]] = row
    res["ood_n"] = {"other_anatomy": int(len(other_eval)),
                    **{k: sum(max(len(s) - (1 if k == "frozen" else 0), 0) for s in v) for k, v in synthetic.items()}}
    return res


def empty_mask_specificity(case: TierCase, spec, items, idx, rule: dict, threshold: float) -> dict:
    """Images with no nodule: the share that yields no area under the no-nodule rule (no_nodule), with
    no rule, and with the rule or abstention. Real empty masks of the whole set (none is in a validation
    split: the rule never saw them), and nodule-free crops of the test images. And the rule's cost on the
    test nodule images: the share it hides and the Dice (a hidden nodule scores 0) with and without it."""
    from firmware_py.kernels import reference

    from . import metrics as M

    rng = np.random.default_rng(SEED)
    real = [i for i in range(len(items.images)) if not items.masks[i].any()]
    out = {}
    for name, images in (("real_empty_masks", [items.images[i] for i in real]),
                         ("nodule_free_crops_test", nodule_free_crops(items, idx["test"], rng))):
        if not images:
            out[name] = {"n": 0}
            continue
        codes = interp.device_codes(images, case.pp)
        comp, peaks = _seg_components(case, codes, threshold), _seg_peaks(case, codes)
        reasons = flags(case, spec, [codes[[k]] for k in range(len(codes))])
        no_area = no_nodule(peaks, comp, rule)
        out[name] = {"n": len(images), "specificity_rule": round(float(no_area.mean()), 4),
                     "specificity_no_rule": round(float((comp == 0).mean()), 4),
                     "no_area_or_indeterminate": round(float(np.mean(no_area | np.array([r is not None for r in reasons]))), 4),
                     "indeterminate": _rate(reasons)}
    nod = [i for i in idx["test"] if items.masks[i].any()]
    h, w = case.tier["preprocess"]["grid"]
    codes = interp.device_codes([items.images[i] for i in nod], case.pp)
    pred = case.outputs(codes)[..., 0] >= math.log(threshold / (1 - threshold))
    truth = np.stack([reference.scan_convert(np.ascontiguousarray(items.masks[i].T) * 255.0,
                                             interp.frame_geometry(*items.images[i].shape, E.PIXEL_MM), h, w) >= 127.5
                      for i in nod])
    dice, _ = M.dice_iou(pred, truth)
    hidden = no_nodule(_seg_peaks(case, codes), _seg_components(case, codes, threshold), rule)
    out["nodules_test"] = {"n": len(nod), "missed": round(float(hidden.mean()), 4),
                           "dice_no_rule": round(float(dice.mean()), 4),
                           "dice_rule": round(float(np.where(hidden, 0.0, dice).mean()), 4)}
    return out


def check_cost(case: TierCase, spec, codes: np.ndarray, runs: int = 50) -> dict:
    """Per-frame time of the abstention check against one invoke of the tier, measured in this process
    (a ratio: this machine is shared)."""
    from firmware_py.inference.abstain import Abstainer

    q = case.tier["input"]["quantization"]
    ab = Abstainer(_abstain_cfg(), spec, scale=q["scale"], zero_point=q["zero_point"], fill=case.fill)
    p = case.probabilities(codes[:1])[0]
    frames = [codes[k % len(codes)] for k in range(runs)]
    t0 = time.perf_counter()
    for c in frames:
        ab.check(c, p)
    check = (time.perf_counter() - t0) / runs
    inp = case.it.get_input_details()[0]
    t0 = time.perf_counter()
    for c in frames:
        case.it.set_tensor(inp["index"], c.reshape(inp["shape"]))
        case.it.invoke()
    invoke = (time.perf_counter() - t0) / runs
    return {"check_ms": round(check * 1e3, 3), "invoke_ms": round(invoke * 1e3, 3),
            "check_over_invoke": round(check / invoke, 3)}


def measure(data: str, json_path: str, models_dir: str = MODELS_DIR, n_synthetic: int = 30,
            write: bool = False) -> dict:
    busi_dir, ddti_dir = D.resolve(data, "busi"), D.resolve(data, "ddti")
    if not busi_dir or not ddti_dir:
        raise FileNotFoundError(f"{data}: needs busi/ and ddti/ (like ../shared/data): each task's other-anatomy "
                                "set is the other dataset")
    pymust = os.path.join(data, "pymust")
    busi, ddti = D.load_busi(busi_dir), D.load_ddti(ddti_dir)
    tiers = E.load_tiers(models_dir)
    busi_tiers = [t for t in tiers if t["task"] == "classify"]
    ddti_tiers = [t for t in tiers if t["task"] == "segment"]
    busi_idx, ddti_idx = held_out("busi", busi, models_dir, busi_tiers), held_out("ddti", ddti, models_dir, ddti_tiers)
    out = {"data": os.path.abspath(data), "seed": SEED, "gate_quantile": GATE_QUANTILE,
           "anatomy_quantile": ANATOMY_QUANTILE,
           "confidence_quantile": CONFIDENCE_QUANTILE, "tasks": {}}
    out["tasks"]["busi"] = measure_task("busi", busi, ddti, ddti_idx, models_dir, pymust, busi_tiers, n_synthetic)
    out["tasks"]["ddti"] = measure_task("ddti", ddti, busi, busi_idx, models_dir, pymust, ddti_tiers, n_synthetic)
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1)
    if write:
        write_records(out, tiers, models_dir)
    return out


def write_records(out: dict, tiers: list, models_dir: str) -> None:
    """Each tier's fitted block into its record models/report/tiers/<tier>.json (`abstention`, which
    manifest.py writes into the manifest, with the model file's sha256 so a block never outlives its
    model), and the figures into models/report/abstention.md."""
    from .manifest import sha256

    by_name = {t["name"]: t for t in tiers}
    for task in out["tasks"].values():
        for name, row in task["tiers"].items():
            path = os.path.join(models_dir, "report", "tiers", f"{name}.json")
            with open(path, encoding="utf-8") as fh:
                rec = json.load(fh)
            block = dict(row["abstention"])
            block["model_sha256"] = sha256(os.path.join(models_dir, by_name[name]["files"]["cpu"]["path"]))
            block["fitted_on"] = (f"fold 0 training split (n={task['split']['train']}), thresholds on the "
                                  f"validation split (n={task['split']['val']}): gate quantiles, confidence by a "
                                  "logit-normal fit, the no-nodule rule on validation nodules and nodule-free crops; "
                                  "models/report/abstention.md")
            rec["abstention"] = block
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(rec, fh, indent=2)
    with open(os.path.join(models_dir, "report", "abstention.md"), "w", encoding="utf-8") as fh:
        fh.write(report_markdown(out))
    with open(os.path.join(models_dir, "report", "abstention_fold0.json"), "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1)  # the REPORT.md section's source (report.py)


def report_markdown(out: dict) -> str:
    lines = ["# Abstention: when a tier answers `indeterminate`", "",
             "Generated by `firmware-py models abstention --data ../shared/data --json out/abstention.json --write` "
             "(models/build/abstention.py). Rules and their cost: docs/abstention.md. Every input went through "
             "the daemon's Preprocessor and its own abstention rules (firmware_py.inference.abstain). Fitting: "
             "training split; thresholds on the validation split, one false-alarm budget per reason (typical-image "
             f"gate at its {out['gate_quantile']:.0%} quantile, anatomy at {out['anatomy_quantile']:.0%}, confidence "
             f"at the {out['confidence_quantile']:.0%} quantile of a logit-normal fit to the validation confidences: "
             "the empirical 1 % point of ~50 images is their minimum and moves with one image); "
             "flag rates: test split (images the shipped tier never trained on) and the OOD sets.", "",
             "Targets per tier: >= 90 % of every OOD kind flagged, <= 5 % of in-distribution test images flagged.", ""]
    for kind, task in out["tasks"].items():
        legacy = (" The shipped tiers predate the grouped splits, so the test images are fold 0's ungrouped test "
                  "images whose near-duplicate / patient group lies wholly inside it." if task["legacy_build"] else "")
        lines += [f"## {kind.upper()} tiers", "",
                  f"Splits: train {task['split']['train']}, validation {task['split']['val']}, test "
                  f"{task['split']['test']}.{legacy} OOD set sizes: "
                  + ", ".join(f"{k} {v}" for k, v in task["ood_n"].items()) + ".", ""]
        head = ["tier", "in-dist flagged % [ci95]"] + [f"{k} %" for k in OOD_KINDS] + ["all OOD %", "met"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, row in task["tiers"].items():
            ind = row["in_distribution"]
            lo, hi = ind["ci95"]
            cells = [name, f"{100 * ind['rate']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] ({ind['flagged']}/{ind['n']})"]
            cells += [f"{100 * row['ood'][k]['rate']:.1f}" for k in OOD_KINDS]
            cells += [f"{100 * row['ood_pooled']['rate']:.1f}", "yes" if row["targets"]["met"] else "**no**"]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Reasons given (in-distribution test; each OOD kind):", ""]
        for name, row in task["tiers"].items():
            parts = [f"in-dist {row['in_distribution']['by_reason'] or '{}'}"]
            parts += [f"{k} {row['ood'][k]['by_reason']}" for k in OOD_KINDS]
            lines.append(f"- {name}: " + "; ".join(parts))
        lines.append("")
        if kind == "busi":
            lines += ["| tier | min_confidence | accuracy all test | accuracy of the kept | accuracy of the flagged | "
                      "check ms / invoke ms |", "|---|---|---|---|---|---|"]
            for name, row in task["tiers"].items():
                f = row["accuracy_flagged"]
                lines.append(f"| {name} | {row['abstention']['min_confidence']} | {100 * row['accuracy_all']:.1f} | "
                             f"{100 * row['accuracy_kept']:.1f} | {'-' if f is None else f'{100 * f:.1f}'} | "
                             f"{row['cost']['check_ms']} / {row['cost']['invoke_ms']} |")
        else:
            lines += ["No nodule, no area: the daemon's decoder reports no nodule (area 0, `extra.no_nodule` with "
                      "the reason) when the most confident mask pixel is under `min_peak_probability` or the "
                      "largest component is under `min_area_px` (model-grid pixels). The pair is chosen on "
                      "validation: the one that rejects the most nodule-free validation images (crops of the "
                      "validation images without a mask pixel, a window of 35 % of the side) while hiding at most "
                      f"{NODULE_MISS_BUDGET:.0%} of the validation nodules; min_area_px at most half the validation "
                      "nodules' 1st-percentile component. Specificity = share of no-nodule images that yield no "
                      "area. The 5 real empty masks lie in the shipped tiers' training split (no validation "
                      "image has one); the crops are of test images.", "",
                      "| tier | min_peak_probability | min_area_px | validation: nodule-free rejected / nodules hidden "
                      "| real empty masks: no area (rule / no rule / rule or indeterminate) | nodule-free test crops: "
                      "same | test nodules hidden | test Dice no rule -> rule | check ms / invoke ms |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for name, row in task["tiers"].items():
                cells = []
                for key in ("real_empty_masks", "nodule_free_crops_test"):
                    e = row["empty_masks"][key]
                    cells.append("n=0" if not e["n"] else
                                 f"{100 * e['specificity_rule']:.0f} / {100 * e['specificity_no_rule']:.0f} / "
                                 f"{100 * e['no_area_or_indeterminate']:.0f} % (n={e['n']})")
                a, fit, nt = row["abstention"], row["abstention"]["no_nodule_fit"], row["empty_masks"]["nodules_test"]
                lines.append(f"| {name} | {a['min_peak_probability']} | {a['min_area_px']} | "
                             f"{100 * fit['val_nodule_free_rejected']:.0f} % (n={fit['val_nodule_free']}) / "
                             f"{100 * fit['val_nodules_missed']:.1f} % (n={fit['val_nodules']}) | {cells[0]} | "
                             f"{cells[1]} | {100 * nt['missed']:.1f} % (n={nt['n']}) | {nt['dice_no_rule']:.3f} -> "
                             f"{nt['dice_rule']:.3f} | {row['cost']['check_ms']} / {row['cost']['invoke_ms']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="firmware-py models abstention", description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with busi/, ddti/ and pymust/ (../shared/data)")
    ap.add_argument("--json", required=True, help="where to write the figures")
    ap.add_argument("--models-dir", default=MODELS_DIR)
    ap.add_argument("--synthetic", type=int, default=30, help="frames per synthetic OOD kind and bit depth")
    ap.add_argument("--write", action="store_true", help="store the fitted blocks in the tier records for the "
                    "manifest (models/report/tiers/) and the report section (models/report/abstention.md)")
    args = ap.parse_args(argv)
    try:
        out = measure(args.data, args.json, args.models_dir, args.synthetic, args.write)
    except (FileNotFoundError, ValueError) as exc:
        print(f"models abstention: {exc}", file=sys.stderr)
        return 2
    for kind, task in out["tasks"].items():
        for name, row in task["tiers"].items():
            print(f"{name}: in-distribution flagged {100 * row['in_distribution']['rate']:.1f} % "
                  f"(n={row['in_distribution']['n']}); OOD " +
                  ", ".join(f"{k} {100 * v['rate']:.0f} %" for k, v in row["ood"].items()) +
                  f"; targets {'met' if row['targets']['met'] else 'NOT met'}")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
