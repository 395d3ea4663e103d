"""Temperature scaling of the shipped BUSI tiers' int8 outputs (TensorFlow-free).

    python -m firmware_py.models.build.calibrate --data ../shared/data/busi [--sign-key KEY]

For every classify tier: the int8 outputs of its leakage-free validation split (heldout.py),
through the daemon's Preprocessor and interpreter, are dequantized to logits z and one temperature
T is fitted by minimising the negative log-likelihood of softmax(z / T) (Guo et al. 2017). The
decoder applies it from the manifest (`calibration: {temperature: T, ...}`, docs/model-manifest.md).
The decoder compares the calibrated p(malignant) with the operating threshold, so the threshold is
chosen again on the calibrated validation probabilities (highest sensitivity at >= 80 %
specificity, as threshold.py). Expected calibration error: 15 equal-width bins of the top-label
confidence, sum over bins of (n_bin / n) |accuracy_bin - mean confidence_bin|, on the test split,
before (T = 1) and after, with a bootstrap 95 % interval; the reliability diagram goes to
models/report/reliability_busi_int8.png. The tier records (models/report/tiers) get the
calibration and the new threshold; regenerate and re-sign the manifest afterwards (main does).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from . import data as D
from . import heldout
from . import metrics as M
from .evaluate import MODELS_DIR, _run_tier, load_tiers

BINS = 15
TARGET_ECE = 0.05


def logits(tier, models_dir, images) -> np.ndarray:
    """Dequantized int8 output logits (N, C) through the daemon's Preprocessor."""
    from firmware_py.kernels import Preprocessor

    out, (s, z), _, _ = _run_tier(tier, models_dir, images, Preprocessor)
    return (out.astype(np.float64) - z) * s


def nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    x = z / t
    x = x - x.max(1, keepdims=True)
    return float(np.mean(np.log(np.exp(x).sum(1)) - x[np.arange(len(y)), y]))


def fit_temperature(z: np.ndarray, y: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """argmin_T NLL(softmax(z / T)): a log-spaced grid over [lo, hi], then golden-section search
    between the grid neighbours of the best point (NLL is unimodal in log T for fixed logits)."""
    grid = np.geomspace(lo, hi, 200)
    k = int(np.argmin([nll(z, y, t) for t in grid]))
    a, b = np.log(grid[max(k - 1, 0)]), np.log(grid[min(k + 1, len(grid) - 1)])
    g = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        c, d = b - g * (b - a), a + g * (b - a)
        if nll(z, y, np.exp(c)) < nll(z, y, np.exp(d)):
            b = d
        else:
            a = c
    return float(np.exp((a + b) / 2))


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> dict:
    """ECE and the per-bin (count, accuracy, mean confidence) of the top-label confidence."""
    conf, pred = probs.max(1), probs.argmax(1)
    # Bin b holds confidences in (b/bins, (b+1)/bins]; the top-label confidence is >= 1/C > 0.
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    acc = np.bincount(idx, weights=(pred == y), minlength=bins) / np.maximum(count, 1)
    mean_conf = np.bincount(idx, weights=conf, minlength=bins) / np.maximum(count, 1)
    ece = float(np.sum(count / len(y) * np.abs(acc - mean_conf)))
    return {"ece": ece, "count": count.tolist(), "accuracy": acc.tolist(), "confidence": mean_conf.tolist()}


def ece(probs, y, bins: int = BINS) -> float:
    return reliability(probs, y, bins)["ece"]


def calibrate(busi_dir: str, models_dir: str = MODELS_DIR, png: str | None = None, bootstrap: int = 1000,
              seed: int = 1234) -> dict:
    tiers = [t for t in load_tiers(models_dir) if t["task"] == "classify"]
    if not tiers:
        raise ValueError(f"{models_dir}/manifest.yaml has no classify tier to calibrate")
    items = D.load_busi(busi_dir, tuple(tiers[0]["output"]["labels"]))
    split, where = heldout.busi_split(items, models_dir, [t["name"] for t in tiers], seed=seed)
    kind = heldout.split_kind(models_dir, [t["name"] for t in tiers])
    # The records' own test split (their `metrics`): the shipped tiers' full ungrouped fold 0, or the grouped one.
    record_test = split.test if kind == "grouped" else D.stratified_folds(items.labels, 5, seed)[0]
    yv, yt = items.labels[split.val], items.labels[split.test]
    p = items.classes.index("malignant")
    out = {"split": where, "n_val": int(len(split.val)), "n_test": int(len(split.test)), "bins": BINS,
           "tiers": {}}
    for t in tiers:
        zv = logits(t, models_dir, [items.images[i] for i in split.val])
        zt = logits(t, models_dir, [items.images[i] for i in split.test])
        temp = fit_temperature(zv, yv)
        before, after = M.softmax(zt), M.softmax(zt / temp)
        pv = M.softmax(zv / temp)
        sens, spec, thr = M.sensitivity_at_specificity(pv[:, p], yv == p, 0.80)
        rng = np.random.default_rng(0)
        boot = [(ece(before[i], yt[i]), ece(after[i], yt[i])) for i in
                (rng.integers(0, len(yt), len(yt)) for _ in range(bootstrap))]
        # ECE's own noise at this n: labels drawn from the calibrated probabilities themselves (a
        # perfectly calibrated model) still give an ECE above 0 with 15 bins.
        u = rng.random((200, len(yt), 1))
        floor = [ece(after, (u[k] > np.cumsum(after, 1)).sum(1)) for k in range(200)]
        # "before": the threshold chosen the same way on the uncalibrated (T = 1) validation probabilities,
        # not the manifest's, which after a first calibration is already a calibrated one (re-runs).
        thr_t1 = M.sensitivity_at_specificity(M.softmax(zv)[:, p], yv == p, 0.80)[2]
        m_old = M.classification_metrics(before, yt, items.classes, threshold=thr_t1)
        m_new = M.classification_metrics(after, yt, items.classes, threshold=thr)
        out["tiers"][t["name"]] = {
            "temperature": temp, "ece_before": ece(before, yt), "ece_after": ece(after, yt),
            "ci95": {"ece_before": [float(np.percentile([b[0] for b in boot], q)) for q in (2.5, 97.5)],
                     "ece_after": [float(np.percentile([b[1] for b in boot], q)) for q in (2.5, 97.5)]},
            "ece_if_perfectly_calibrated": {"mean": float(np.mean(floor)),
                                            "p95": float(np.percentile(floor, 95))},
            "val_ece_before": ece(M.softmax(zv), yv), "val_ece_after": ece(pv, yv),
            "nll_test_before": nll(zt, yt, 1.0), "nll_test_after": nll(zt, yt, temp),
            "reliability_before": reliability(before, yt), "reliability_after": reliability(after, yt),
            "threshold_before": m_old["threshold"], "threshold": thr, "val_sensitivity": sens,
            "val_specificity": spec,
            "test_at_threshold_before": {k: m_old[k] for k in ("malignant_sensitivity", "malignant_specificity")},
            "test_at_threshold": {k: m_new[k] for k in ("malignant_sensitivity", "malignant_specificity")}}
        _update_record(models_dir, t, items, record_test, temp, thr, sens, spec, out)
    if png:
        _diagram(out, png)
    return out


def _update_record(models_dir, tier, items, record_test, temp, thr, sens, spec, out):
    """Calibration, the re-chosen threshold and the threshold-dependent metrics (re-measured on the
    record's own test images with the calibrated probabilities) into the tier record."""
    path = os.path.join(models_dir, "report", "tiers", tier["name"] + ".json")
    with open(path, encoding="utf-8") as fh:
        rec = json.load(fh)
    c = out["tiers"][tier["name"]]
    probs = M.softmax(logits(tier, models_dir, [items.images[i] for i in record_test]) / temp)
    m = M.classification_metrics(probs, items.labels[record_test], items.classes, threshold=thr)
    p = items.classes.index("malignant")
    # The test-tuned figure, measured again here rather than kept from the build, so a re-measure
    # with another interpreter (remeasure.py) moves it too; a temperature does not change it.
    at80 = M.sensitivity_at_specificity(probs[:, p], items.labels[record_test] == p, 0.80)[0]
    rec["metrics"].update({k: v for k, v in m.items() if k != "confusion"},
                          val_sensitivity=sens, val_specificity=spec, malignant_sensitivity_at_spec80=at80)
    rec["threshold"] = {"label": "malignant", "value": round(thr, 4)}
    rec["calibration"] = {"temperature": round(temp, 4), "ece_before": round(c["ece_before"], 4),
                          "ece_after": round(c["ece_after"], 4), "bins": BINS, "n_val": out["n_val"],
                          "n_test": out["n_test"]}
    note = rec["metrics_note"].split("; never trained on")[0]
    rec["metrics_note"] = (note + f"; never trained on; temperature and operating threshold (on the calibrated probabilities) "
                           f"fitted on the leakage-free validation split (n={out['n_val']})")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(rec, fh, indent=2)


def _diagram(out: dict, png: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(out["tiers"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    centres = (np.arange(BINS) + 0.5) / BINS
    for ax, name in zip(axes[0], names):
        c = out["tiers"][name]
        for key, colour, label in (("reliability_before", "0.6", "T = 1"),
                                   ("reliability_after", "tab:blue", f"T = {c['temperature']:.2f}")):
            r = c[key]
            has = np.asarray(r["count"]) > 0
            ax.plot(np.asarray(r["confidence"])[has], np.asarray(r["accuracy"])[has], "o-", color=colour,
                    label=label, ms=3)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.bar(centres, np.asarray(c["reliability_after"]["count"]) / out["n_test"], width=1 / BINS,
               color="tab:blue", alpha=0.15)
        ax.set_title(f"{name}\nECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top label)", fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("accuracy", fontsize=8)
    fig.suptitle(f"int8 BUSI tiers, test split n={out['n_test']}, {BINS} bins; bars: share of images per bin "
                 "(calibrated)", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the BUSI folder (../shared/data/busi)")
    ap.add_argument("--models-dir", default=MODELS_DIR)
    ap.add_argument("--json", default=None, help="where to write the fit and the ECE figures")
    ap.add_argument("--png", default=None, help="reliability diagram (default models/report/reliability_busi_int8.png)")
    ap.add_argument("--sign-key", default=None, help="regenerate manifest.yaml and re-sign it with this key")
    args = ap.parse_args(argv)
    png = args.png or os.path.join(args.models_dir, "report", "reliability_busi_int8.png")
    try:
        res = calibrate(args.data, args.models_dir, png)
    except (FileNotFoundError, ValueError) as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=1)
    print(f"fitted on validation n={res['n_val']}, ECE ({BINS} bins) on test n={res['n_test']}: {res['split']}")
    for name, c in res["tiers"].items():
        lo, hi = c["ci95"]["ece_after"]
        print(f"{name}: T={c['temperature']:.3f} ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f} "
              f"[{lo:.3f}, {hi:.3f}] (a perfectly calibrated model: "
              f"{c['ece_if_perfectly_calibrated']['mean']:.3f}) threshold {c['threshold_before']:.4f} -> {c['threshold']:.4f}")
    if args.sign_key:
        from . import manifest

        with open(os.path.join(args.models_dir, "manifest.yaml"), "w", encoding="utf-8") as fh:
            fh.write(manifest.generate(args.models_dir))
        print("manifest regenerated and", "signed" if manifest.sign(args.models_dir, args.sign_key) else "NOT signed")
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
