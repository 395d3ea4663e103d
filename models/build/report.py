"""models/REPORT.md and models/report/*.png from the per-fold results (models/report/cv/*.json).

    python -m firmware_py.models.build.report      (needs matplotlib: the train extra)
"""
from __future__ import annotations

import glob
import json
import os

import numpy as np

MODELS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLS_KEYS = ("accuracy", "balanced_accuracy", "malignant_sensitivity", "malignant_specificity", "malignant_auc")
SEG_KEYS = ("dice", "iou")


def _load(models_dir, work="cv"):
    """{task: [fold results, by fold]} from models/report/<work>/*_fold*.json."""
    folds = {}
    for p in sorted(glob.glob(os.path.join(models_dir, "report", work, "*_fold*.json"))):
        task = os.path.basename(p).split("_fold")[0]
        with open(p) as fh:
            folds.setdefault(task, []).append(json.load(fh))
    for v in folds.values():
        v.sort(key=lambda r: r["fold"])
    return folds


def _pct(v):
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.1f}"


def _ms(d):
    return f"{d['cpu_p50']:.2f}" if d else "n/a"


def _fold0_table(res, task):
    keys = CLS_KEYS if task == "busi" else SEG_KEYS
    head = ["tier", "model", *keys] + (["sens@spec>=80%"] if task == "busi" else []) + \
        ["params", "MACs (M)", "file KB", "CPU p50 ms"]
    rows = []
    for name, t in sorted(res["tiers"].items(), key=lambda kv: kv[1]["rank"]):
        variants = [("float teacher", t["float"], None)] if t["rank"] < 0 else \
            [("float student", t["float"], None), ("int8 student", t["int8"], t)]
        for label, m, full in variants:
            row = [name, label] + [_pct(m.get(k)) for k in keys]
            if task == "busi":
                row.append(_pct(m.get("malignant_sensitivity_at_spec80")))
            row += [f"{t['params']:,}", f"{t['macs'] / 1e6:.1f}",
                    f"{full['file_bytes'] / 1024:.0f}" if full else "-",
                    _ms(full["latency_ms"]) if full else "-"]
            rows.append(row)
    return _md(head, rows)


def _md(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _cv_table(runs, task):
    keys = ("accuracy", "balanced_accuracy", "malignant_auc") if task == "busi" else SEG_KEYS
    names = sorted(runs[0]["tiers"], key=lambda n: runs[0]["tiers"][n]["rank"])
    head = ["tier", "model", *[f"{k} mean +- std" for k in keys], "folds"]
    rows = []
    for n in names:
        for variant in (("float",) if runs[0]["tiers"][n]["rank"] < 0 else ("float", "int8")):
            vals = {k: [r["tiers"][n][variant][k] for r in runs if n in r["tiers"]] for k in keys}
            cells = [f"{100 * np.mean(v):.1f} +- {100 * np.std(v):.1f}" for v in vals.values()]
            rows.append([n, variant, *cells, ",".join(str(r["fold"]) for r in runs)])
    return _md(head, rows)


def _compression_table(res):
    head = ["tier", "sparsity (pruned kernels / all params)", "int8 score dense -> pruned",
            "file KB dense -> pruned", "gzip KB dense -> pruned", "CPU p50 ms dense -> pruned",
            "PTQ loss on val (pts)", "quantization"]
    rows = []
    score = "accuracy" if "accuracy" in next(iter(res["tiers"].values()))["float"] else "dice"
    for n, t in sorted(res["tiers"].items(), key=lambda kv: kv[1]["rank"]):
        if t["rank"] < 0:
            continue
        d = t["dense"]
        rows.append([n, f"{_pct(t['sparsity']['pruned_kernels'])} % / {_pct(t['sparsity']['all_params'])} %",
                     f"{_pct(d['int8'][score])} -> {_pct(t['int8'][score])}",
                     f"{d['file_bytes'] / 1024:.0f} -> {t['file_bytes'] / 1024:.0f}",
                     f"{d['gzip_bytes'] / 1024:.0f} -> {t['gzip_bytes'] / 1024:.0f}",
                     f"{_ms(d['latency_ms'])} -> {_ms(t['latency_ms'])}",
                     f"{100 * t['ptq_val_drop']:.1f}", t["quantization"] + (f" ({t['qat_error']})" if "qat_error" in t else "")])
    return _md(head, rows)


def _plots(folds, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    fig, axes = plt.subplots(1, len(folds), figsize=(6.5 * len(folds), 5.0), squeeze=False)
    for ax, (task, runs) in zip(axes[0], sorted(folds.items())):
        r0 = runs[0]
        key = "accuracy" if task == "busi" else "dice"
        def ms(n, t):  # the round-robin timing of the shipped file when there is one
            rec = _record(os.path.dirname(out_dir), n)
            return rec["latency_ms"]["cpu_x86_1thread_p50"] if rec and rec.get("latency_ms") else t["latency_ms"]["cpu_p50"]

        pts = [(ms(n, t), t["int8"][key], n) for n, t in r0["tiers"].items() if t["rank"] >= 0]
        pts.sort()
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], "o", label="int8 students (fold 0 test)")
        # The frontier joins the tiers no faster tier beats on accuracy; the others are dominated here.
        front = [p for i, p in enumerate(pts) if all(q[1] < p[1] for q in pts[:i])]
        ax.plot([p[0] for p in front], [100 * p[1] for p in front], "-", c="C0", alpha=0.6,
                label="accuracy-latency frontier")
        for x, y, n in pts:
            ax.annotate(n, (x, 100 * y), fontsize=7, xytext=(4, -10), textcoords="offset points")
        for n, t in r0["tiers"].items():
            if t["rank"] < 0:
                ax.axhline(100 * t["float"][key], ls="--", c="gray", label=f"float teacher {n}")
        ax.set_xscale("log")
        ax.set_xlabel("CPU latency p50, ms (x86, 1 thread, log scale)")
        ax.set_ylabel(f"{key} %")
        ax.set_title(f"{task}: {key} vs latency")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(out_dir, "frontier.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    made.append(path)

    if "busi" in folds:
        r0 = folds["busi"][0]
        tiers = [(n, t) for n, t in sorted(r0["tiers"].items(), key=lambda kv: kv[1]["rank"]) if t["rank"] >= 0]
        fig, axes = plt.subplots(1, len(tiers), figsize=(3.6 * len(tiers), 3.4), squeeze=False)
        labels = ["normal", "benign", "malignant"]
        for ax, (n, t) in zip(axes[0], tiers):
            cm = np.asarray(t["confusion_int8"])
            ax.imshow(cm, cmap="Blues")
            for i in range(cm.shape[0]):
                for j in range(cm.shape[1]):
                    ax.text(j, i, cm[i, j], ha="center", va="center", color="black")
            ax.set_xticks(range(3), labels, fontsize=7)
            ax.set_yticks(range(3), labels, fontsize=7)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(n, fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, "confusion_busi_int8.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def _record(models_dir, name):
    p = os.path.join(models_dir, "report", "tiers", name + ".json")
    if not os.path.exists(p):
        return None
    with open(p) as fh:
        return json.load(fh)


def _target_rows(folds, models_dir):
    """The issue's targets against fold 0's held-out measurements: [(target, measured, met)]."""
    rows = []
    if folds.get("busi") and folds["busi"][0]["fold"] == 0:
        st = sorted((dict(t, name=n) for n, t in folds["busi"][0]["tiers"].items() if t["rank"] >= 0),
                    key=lambda t: t["rank"])
        big, small = st[-1]["int8"], st[0]["int8"]
        rows.append(("largest BUSI int8 tier accuracy >= 85 %", _pct(big["accuracy"]), big["accuracy"] >= 0.85))
        ok = big["malignant_sensitivity"] >= 0.85 and big["malignant_specificity"] >= 0.80
        rows.append(("malignant sensitivity >= 85 % at specificity >= 80 % (fixed threshold 0.5, not the shipped one)",
                     f"{_pct(big['malignant_sensitivity'])} at {_pct(big['malignant_specificity'])}", ok))
        rows.append(("same, best threshold on the test fold (optimistic)",
                     _pct(big["malignant_sensitivity_at_spec80"]), big["malignant_sensitivity_at_spec80"] >= 0.85))
        rec = _record(models_dir, st[-1]["name"])
        if rec and "val_sensitivity" in rec["metrics"]:
            m = rec["metrics"]
            rows.append((f"same, at the shipped operating threshold, chosen on validation ({rec['threshold']['value']:.3f})",
                         f"{_pct(m['malignant_sensitivity'])} at {_pct(m['malignant_specificity'])}",
                         m["malignant_sensitivity"] >= 0.85 and m["malignant_specificity"] >= 0.80))
        gap = big["accuracy"] - small["accuracy"]
        rows.append(("smallest BUSI tier within 5 points of the largest", f"{100 * gap:.1f} points", gap <= 0.05))
    for task, key in (("busi", "accuracy"), ("ddti", "dice")):
        if folds.get(task) and folds[task][0]["fold"] == 0:
            for n, t in folds[task][0]["tiers"].items():
                if t["rank"] >= 0:
                    d = t["float"][key] - t["int8"][key]
                    qat = " [QAT: the int8 model had extra fine-tuning]" if t["quantization"] == "qat" else ""
                    rows.append((f"{n}: int8 within 1 point of float ({key})", f"{100 * d:+.1f} points lost{qat}",
                                 d <= 0.01))
    if folds.get("ddti") and folds["ddti"][0]["fold"] == 0:
        big = max((dict(t, name=n) for n, t in folds["ddti"][0]["tiers"].items() if t["rank"] >= 0),
                  key=lambda t: t["rank"])
        rows.append(("largest DDTI tier Dice >= 0.80 (threshold 0.5)", f"{big['int8']['dice']:.3f}",
                     big["int8"]["dice"] >= 0.80))
        rec = _record(models_dir, big["name"])
        if rec and "val_dice" in rec["metrics"]:
            rows.append((f"same, at the threshold chosen on validation ({rec['threshold']['value']})",
                         f"{rec['metrics']['dice']:.3f}", rec["metrics"]["dice"] >= 0.80))
    return rows


def _issue16_target_rows(models_dir):
    """Robustness and calibration targets of issue 16, from their JSON in models/report."""
    rows = []
    lk = _json(models_dir, "report", "leakage_busi_fold0.json")
    if lk:
        clean = lk["evaluate"]["clean"]
        ts = list(clean["tiers"].items())  # manifest order: rank 0 first
        (big_n, big), (_, small) = ts[-1], ts[0]
        n = clean["n"]
        rows.append((f"largest BUSI int8 tier accuracy >= 85 %, leakage-free test (n={n})", _ci(big, "accuracy"),
                     big["accuracy"] >= 0.85))
        rows.append((f"malignant AUC >= 0.93, leakage-free (n={n})", _ci(big, "malignant_auc"), big["malignant_auc"] >= 0.93))
        rows.append((f"malignant sensitivity >= 85 % at specificity >= 80 %, shipped calibrated threshold "
                     f"({big['threshold']:.3f}), leakage-free (n={n})",
                     f"{_ci(big, 'malignant_sensitivity')} at {_ci(big, 'malignant_specificity')}",
                     big["malignant_sensitivity"] >= 0.85 and big["malignant_specificity"] >= 0.80))
        gap = big["accuracy"] - small["accuracy"]
        rows.append((f"smallest BUSI tier within 5 points of the largest, leakage-free (n={n})",
                     f"{100 * gap:.1f} points", gap <= 0.05))
        flips = {name: t["lsb_flip_share"] for name, t in ts if t.get("lsb_flip_share") is not None}
        if flips:
            rows.append((f"+-1 LSB input noise changes <= 2 % of predictions, every BUSI tier, leakage-free (n={n})",
                         ", ".join(f"{name.removeprefix('busi-cls-')} {100 * v:.1f} %" for name, v in flips.items()),
                         max(flips.values()) <= 0.02))
    rb = _json(models_dir, "report", "robustness_busi_fold0.json")
    if rb:
        t = rb["target"]
        rows.append((f"{t['tier']}: <= 3 points accuracy and <= 5 points malignant sensitivity lost under every "
                     f"perturbation (leakage-free test, n={rb['n']})",
                     f"worst {100 * t['worst']['accuracy_drop']:.1f} / {100 * t['worst']['malignant_sensitivity_drop']:.1f} points",
                     t["met"]))
    ab = _json(models_dir, "report", "abstention_fold0.json")
    if ab:
        tiers = [(name, t) for task in ab["tasks"].values() for name, t in task["tiers"].items()]
        worst_in = max(tiers, key=lambda nt: nt[1]["in_distribution"]["rate"])
        least = min(((name, kind, o["rate"]) for name, t in tiers for kind, o in t["ood"].items()), key=lambda x: x[2])
        rows.append(("abstention: >= 90 % of each out-of-distribution kind and <= 5 % of in-distribution test images "
                     "flagged, every tier",
                     f"{sum(t['targets']['met'] for _, t in tiers)} of {len(tiers)} tiers; most in-distribution "
                     f"flagged {100 * worst_in[1]['in_distribution']['rate']:.1f} % ({worst_in[0]}), least-flagged "
                     f"OOD kind {100 * least[2]:.1f} % ({least[1]}, {least[0]})",
                     all(t["targets"]["met"] for _, t in tiers)))
    cb = _json(models_dir, "report", "calibration_busi_fold0.json")
    if cb:
        name, c = list(cb["tiers"].items())[-1]
        rows.append((f"{name}: ECE ({cb['bins']} bins) <= 0.05 after temperature scaling (leakage-free test, "
                     f"n={cb['n_test']})", f"{c['ece_after']:.3f} (before {c['ece_before']:.3f})", c["ece_after"] <= 0.05))
    return rows


def _targets(rows):
    return _md(["target", "measured (fold 0 test, int8)", "met"], [(a, b, "yes" if c else "**no**") for a, b, c in rows])


def _augment_text(task):
    """The augmentation actually applied to `task`, from tiers.AUGMENT over UltrasoundAugment's defaults."""
    import inspect

    from .augment import UltrasoundAugment
    from .tiers import AUGMENT

    p = {k: v.default for k, v in inspect.signature(UltrasoundAugment.__init__).parameters.items()
         if k not in ("self", "tf", "seed")}
    p.update(AUGMENT[task])
    return _augment_words(p)


def _augment_words(p):
    return (f"horizontal flip, rotation +-{p['rotate_deg']:g} deg, crop-zoom up to {100 * p['zoom']:g} %, gain "
            f"+-{100 * p['gain']:g} %, gamma exp(+-{p['gamma']:g}), multiplicative speckle noise (sigma up to "
            f"{p['speckle']:g})")


def _device_augment_text():
    from .tiers import augment_kwargs

    p = augment_kwargs("classify", "device")
    return (_augment_words(p).replace(f"rotation +-{p['rotate_deg']:g} deg", f"rotation +-{p['rotate_deg']:g} deg with "
                                      f"the uncovered corners at the daemon's fill value ({p['fill']:g})")
            + f", convex/phased sector fill regions from the daemon's scan geometry on {100 * p['sector_p']:g} % of "
            f"the images, TGC ramps +-{p['tgc']:g} of the display range, displayed dynamic range x "
            f"exp(+-{p['dynamic_range']:g}), Gaussian blur sigma 0.3-{p['blur']:g} px on {100 * p['blur_p']:g} %; "
            "fill regions applied after the photometric changes, so they stay exactly the fill")


def _shortfalls(rows, folds):
    out = [f"- Target missed: {t}; measured {m}." for t, m, ok in rows if not ok]
    budgets = {(r["settings"]["teacher_epochs"], r["settings"]["student_epochs"], r["settings"]["prune_epochs"])
               for runs in folds.values() for r in runs}
    if len(budgets) > 1:
        out.append("- Cross-validation folds did not all run with fold 0's epoch budget (CPU time on the build "
                   "machine); the budgets are listed per fold, and a shorter budget scores lower.")
    if any(len(runs) < 5 for runs in folds.values()):
        out.append("- Not every fold was run; mean +- std is over the folds listed.")
    for runs in folds.values():
        if runs[0]["fold"] != 0:
            continue
        for n, t in sorted(runs[0]["tiers"].items()):
            if t["rank"] < 0 or "dense" not in t:
                continue
            key = "accuracy" if "accuracy" in t["int8"] else "dice"
            cost = t["dense"]["int8"][key] - t["int8"][key]
            if cost > 0.015:
                out.append(f"- Pruning cost {n} {100 * cost:.1f} points on the fold 0 test ({key}, int8 dense "
                           f"{_pct(t['dense']['int8'][key])} -> pruned {_pct(t['int8'][key])})"
                           + (f"; the validation gate shipped the {t['prune_gate']['shipped']} model."
                              if "prune_gate" in t else
                              ". These tiers predate the validation gate (TrainSettings.prune_gate: a pruned model "
                              "more than 1 point worse than its dense self on validation is not shipped, the dense "
                              "one is), which the next build applies."))
    return out


def _latency_section(models_dir):
    """Shipped tiers timed together (pipeline.refresh_latency): the comparable latency figures."""
    recs = []
    for p in sorted(glob.glob(os.path.join(models_dir, "report", "tiers", "*.json"))):
        with open(p) as fh:
            recs.append(json.load(fh))
    rows = []
    for task in ("classify", "segment"):
        rs = sorted((r for r in recs if r["task"] == task and r.get("latency_ms")), key=lambda r: r["rank"])
        if not rs:
            continue
        base = rs[0]["latency_ms"]["cpu_x86_1thread_p50"]
        for r in rs:
            ms = r["latency_ms"]["cpu_x86_1thread_p50"]
            rows.append([r["name"], r["rank"], f"{r['macs'] / 1e6:.1f}", f"{ms:.2f}", f"{ms / base:.1f}x"])
    if not rows:
        return []
    return ["## Shipped tiers: CPU latency measured together", "",
            "One process, tiers timed round-robin (5 rounds x 20 invokes, median of the per-round medians), "
            f"1 interpreter thread of {_records_interpreter(models_dir) or 'tflite-runtime 2.14'}, this shared x86 "
            "machine (other jobs running: absolute times are noisy); ratio against the task's rank-0 tier. These are "
            "the figures in the manifest; the per-fold tables above were timed during training and are noisier.",
            "", _md(["tier", "rank", "MACs (M)", "CPU p50 ms", "vs rank 0"], rows), ""]


def _evaluate_section(models_dir):
    """Results of `firmware-py models evaluate` saved as models/report/evaluate_*.json."""
    out = []
    for p in sorted(glob.glob(os.path.join(models_dir, "report", "evaluate_*.json"))):
        with open(p) as fh:
            ev = json.load(fh)
        keys = ("accuracy", "balanced_accuracy", "malignant_sensitivity", "malignant_specificity",
                "malignant_auc") if ev["task"] == "classify" else ("dice", "iou", "area_rel_error_median")
        rows = [[n] + [_pct(m.get(k)) for k in keys] for n, m in ev["tiers"].items()]
        out += [f"## `firmware-py models evaluate` on {os.path.basename(p)[9:-5]} (n={ev['n']})", "",
                "The shipped int8 files run on the stored images replayed as linear-probe frames through the "
                "daemon's `firmware_py.kernels.Preprocessor` (not TensorFlow's resize). The folder held fold 0's "
                "test images, so the figures should match the fold 0 int8 rows above up to 1-LSB rounding "
                "differences between the two resize implementations, except that "
                + ("sensitivity and specificity here are at each tier's operating threshold from the manifest "
                   "(chosen on validation), the fold 0 table's at 0.5."
                   if ev["task"] == "classify" else
                   "masks here are cut at each tier's operating threshold from the manifest (chosen on "
                   "validation), the fold 0 table's at 0.5. Area error: |area(largest component of the predicted "
                   "mask, kernels' mask_area_mm2) - true area| / true area."),
                "", _md(["tier", *keys], rows), ""]
    return out


def _leakage_section(models_dir):
    """Issue 16's measurement of the shipped tiers' leak (leakage.py -> models/report/leakage_busi_fold0.json)."""
    p = os.path.join(models_dir, "report", "leakage_busi_fold0.json")
    if not os.path.exists(p):
        return []
    with open(p) as fh:
        lk = json.load(fh)
    ev, dd = lk["evaluate"], lk["dedup"]
    ci = lambda m, k: f"{_pct(m[k])} [{_pct(m['ci95'][k][0])}, {_pct(m['ci95'][k][1])}]"
    rows = [[n, ci(m, "accuracy"), ci(ev["clean"]["tiers"][n], "accuracy"), _pct(ev["leaked"]["tiers"][n]["accuracy"]),
             ci(m, "malignant_auc"), ci(ev["clean"]["tiers"][n], "malignant_auc"),
             f"{100 * m['lsb_flip_share']:.1f}"] for n, m in ev["all"]["tiers"].items()]
    conflicts = "; ".join(" / ".join(g) for g in dd["conflicts"])
    return ["## Leakage of the shipped tiers' test split (issue 16; measured, models not rebuilt yet)", "",
            f"`firmware-py models dedup` (models/build/dedup.py) finds {dd['n_in_groups']} of {dd['n']} BUSI images "
            f"in {dd['n_groups']} near-duplicate groups ({dd['n_distinct']} distinct); {len(dd['conflicts'])} groups mix "
            f"labels: {conflicts}. The shipped tiers were built on the {lk['split']}: "
            f"{lk['n_leaked']} of its {lk['n_test']} test images have a near-duplicate among that fold's training "
            "images. Below, `models evaluate` (the daemon's preprocessing; operating thresholds from the manifest; "
            "bootstrap 95 % intervals over images in brackets) on all test images, on the clean ones and on the "
            "leaked ones; +-1 LSB: share of the test predictions that change when every int8 input code moves by "
            "one step (3 noise draws). The build now splits by group and leaves the conflict groups out "
            "(models/build/splits.py); the figures in the tables above are still the leaky ones until the "
            "next rebuild. Reproduce: `python -m firmware_py.models.build.leakage --data ../shared/data/busi "
            "--json out/leakage.json`.", "",
            _md(["tier", f"accuracy, all (n={ev['all']['n']})", f"accuracy, clean (n={ev['clean']['n']})",
                 f"accuracy, leaked (n={ev['leaked']['n']})", "malignant AUC, all", "malignant AUC, clean",
                 "+-1 LSB flips %"], rows), ""]


def _json(models_dir, *parts):
    p = os.path.join(models_dir, *parts)
    if not os.path.exists(p):
        return None
    with open(p, encoding="utf-8") as fh:
        return json.load(fh)


def _ci(m, k, ci_key="ci95"):
    lo, hi = m[ci_key][k]
    return f"{_pct(m[k])} [{_pct(lo)}, {_pct(hi)}]"


def _changed_section(models_dir):
    """Leaky (the report's fold 0 test, n=126) against leakage-free (its clean images) for the shipped tiers."""
    lk = _json(models_dir, "report", "leakage_busi_fold0.json")
    if not lk:
        return []
    ev = lk["evaluate"]
    rows = []
    for n, a in ev["all"]["tiers"].items():
        c = ev["clean"]["tiers"][n]
        for k in ("accuracy", "malignant_sensitivity", "malignant_specificity", "malignant_auc"):
            rows.append([n, k, _ci(a, k), _ci(c, k), f"{100 * (c[k] - a[k]):+.1f}"])
    return ["## What changed against the leaky figures (shipped tiers, int8, the daemon's path)", "",
            f"Leaky: all {ev['all']['n']} images of the shipped tiers' ungrouped fold 0 test split (the figures this "
            f"report and the manifest carried before issue 16). Leakage-free: the {ev['clean']['n']} of them without a "
            "near-duplicate in that build's training or validation images. `models evaluate` with the manifest's "
            "calibrated probabilities and operating thresholds; bootstrap 95 % intervals in brackets. The "
            "leakage-free column is the honest one; the fold 0 tables above are the leaky ones until the grouped "
            "rebuild ships (see Retrain).", "",
            _md(["tier", "metric", f"leaky (n={ev['all']['n']})", f"leakage-free (n={ev['clean']['n']})", "change (points)"],
                rows), ""]


def _robustness_section(models_dir):
    rb = _json(models_dir, "report", "robustness_busi_fold0.json")
    if not rb:
        return []
    rows = []
    for n, rec in rb["tiers"].items():
        c = rec["clean"]
        rows.append([n, "none", _ci(c, "accuracy"), "-", _ci(c, "malignant_sensitivity"), "-"])
        for p, m in rec["perturbed"].items():
            d = m["ci95_drop"]
            rows.append([n, p, _pct(m["accuracy"]),
                         f"{100 * m['accuracy_drop']:+.1f} [{100 * d['accuracy_drop'][0]:+.1f}, {100 * d['accuracy_drop'][1]:+.1f}]",
                         _pct(m["malignant_sensitivity"]),
                         f"{100 * m['malignant_sensitivity_drop']:+.1f} [{100 * d['malignant_sensitivity_drop'][0]:+.1f}, "
                         f"{100 * d['malignant_sensitivity_drop'][1]:+.1f}]"])
    return ["## Robustness (`firmware-py models robustness`)", "",
            f"The perturbation suite on the stored images of the shipped tiers' leakage-free test split (n={rb['n']}, "
            f"{rb['n_malignant']} malignant; {rb['split']}), then the device path (the daemon's Preprocessor, the "
            "project's interpreter, calibrated probabilities, the manifest's operating threshold). Corners uncovered "
            "by a rotation and the outside of the daemon's convex sector (60 deg, R 50 mm, 150 mm) hold the tier's "
            f"fill value ({sorted(set(rb['fill'].values()))}); speckle x(1 + 0.15 N(0,1)); blur sigma 1.5 px of "
            "the stored 256 px image. Drop = unperturbed - perturbed (positive = worse), paired bootstrap 95 % "
            f"intervals ({rb['bootstrap']} resamples). Target (top tier): <= 3 points accuracy and <= 5 points "
            f"malignant sensitivity under every perturbation: **{'met' if rb['target']['met'] else 'missed'}** "
            f"(worst {100 * rb['target']['worst']['accuracy_drop']:.1f} / "
            f"{100 * rb['target']['worst']['malignant_sensitivity_drop']:.1f} points). The shipped tiers were "
            "trained without fill corners or sectors (reflected rotations of +-5 deg); the device augmentation "
            "profile (Retrain) targets exactly these.", "",
            _md(["tier", "perturbation", "accuracy", "accuracy drop", "malignant sensitivity", "sensitivity drop"], rows),
            ""]


def _records_interpreter(models_dir):
    """'PACKAGE VERSION' the shipped tier records were measured with (remeasure.py records it), None if unrecorded."""
    seen = set()
    for p in glob.glob(os.path.join(models_dir, "report", "tiers", "*.json")):
        with open(p, encoding="utf-8") as fh:
            it = json.load(fh).get("interpreter")
        seen.add(f"{it['package']} {it['version']}" if it else None)
    return " / ".join(sorted(x for x in seen if x)) if seen and None not in seen else None


# The interpreter-dependent figures remeasure.py keeps per interpreter: (key, label, kind).
_INTERP_ROWS = {"classify": (("accuracy", "accuracy", "pct"), ("balanced_accuracy", "balanced accuracy", "pct"),
                             ("malignant_auc", "malignant AUC", "pct"),
                             ("malignant_sensitivity", "malignant sensitivity at the shipped threshold", "pct"),
                             ("malignant_specificity", "malignant specificity at the shipped threshold", "pct"),
                             ("malignant_sensitivity_at_spec80", "sens@spec>=80% (test-tuned)", "pct"),
                             ("threshold", "operating threshold (validation)", "num"),
                             ("temperature", "temperature (validation)", "num"), ("ece_before", "ECE T=1", "num"),
                             ("ece_after", "ECE calibrated", "num"), ("latency_p50_ms", "CPU p50 ms", "ms")),
                "segment": (("dice", "Dice at the shipped threshold", "num"), ("iou", "IoU", "num"),
                            ("dice_at_0.5", "Dice at 0.5", "num"), ("val_dice", "validation Dice", "num"),
                            ("threshold", "mask threshold (validation)", "num"), ("latency_p50_ms", "CPU p50 ms", "ms"))}


def _interpreter_section(models_dir):
    """The shipped tiers' fold 0 figures per interpreter package (remeasure.py -> interpreters_fold0.json)."""
    doc = _json(models_dir, "report", "interpreters_fold0.json")
    if not doc or len(doc["interpreters"]) < 2:
        return []
    names = sorted(doc["interpreters"], key=lambda k: (k == _records_interpreter(models_dir), k))  # shipped last
    runs = [doc["interpreters"][k] for k in names]
    fmt = {"pct": _pct, "num": lambda v: f"{v:.4f}", "ms": lambda v: f"{v:.2f}"}
    rows = []
    for name in runs[-1]["tiers"]:
        task = "classify" if "accuracy" in runs[-1]["tiers"][name] else "segment"
        for key, text, kind in _INTERP_ROWS[task]:
            vals = [r["tiers"].get(name, {}).get(key) for r in runs]
            if vals[-1] is None:
                continue
            cells = [fmt[kind](v) if v is not None else "n/a" for v in vals]
            a, b = vals[0], vals[-1]
            change = "-" if a is None else (f"{100 * (b - a):+.1f} pts" if kind == "pct" else
                                            f"{b / a:.2f}x" if kind == "ms" and a else f"{b - a:+.4f}")
            rows.append([name, text, *cells, change])
    when = "; ".join(f"{k}: {r['measured_at']}" for k, r in zip(names, runs))
    both = runs[-1].get("latency_same_process") or {}
    pkgs = sorted({k for v in both.values() for k in v}, key=lambda k: names.index(k) if k in names else -1)
    same = ([f"Latency of both packages timed in one process, round-robin (every tier with every package in each "
             "round, median of the rounds), so both saw the same machine load: the fair comparison of the two; "
             "the rows above come from two runs at different moments.", "",
             _md(["tier", *[f"{k} p50 ms" for k in pkgs], "ratio"],
                 [[n, *[f"{v[k]:.2f}" for k in pkgs], f"{v[pkgs[-1]] / v[pkgs[0]]:.2f}x"] for n, v in both.items()]), ""]
            if len(pkgs) == 2 else [])
    return [f"## Interpreter: {' vs '.join(names)} (fold 0, shipped tiers)", "",
            "The same shipped int8 files, splits, seeds and code path (`python -m firmware_py.models.build.remeasure "
            "--data ../shared/data`, once per interpreter package; the daemon's Preprocessor, the interpreter the "
            "daemon's backend picks), with whatever the build fits on validation from int8 outputs fitted again "
            "per interpreter: BUSI's temperature and operating threshold (leakage-free validation split), DDTI's "
            "mask threshold (validation Dice). BUSI test figures: the records' fold 0 test split (ungrouped, "
            "n=126); ECE: its leakage-free part; DDTI: fold 0 test by patient. Latency: round-robin in one "
            f"process on this shared, loaded 2-core machine ({when}). The last column is the one in the manifest "
            "and in the tables above that come from the tier records and the report JSONs (Targets' threshold "
            "and leakage-free rows, latency, `models evaluate`, leakage, robustness, calibration). The fold 0 "
            "build tables and the cross-validation means are the build's own tflite-runtime 2.14 measurements "
            "and stay as measured: the fold 1-4 models are not stored, so they cannot be re-run.", "",
            _md(["tier", "figure", *names, "change"], rows), "", *same]


def _calibration_section(models_dir):
    cb = _json(models_dir, "report", "calibration_busi_fold0.json")
    if not cb:
        return []
    rows = []
    for n, c in cb["tiers"].items():
        f = c["ece_if_perfectly_calibrated"]
        rows.append([n, f"{c['temperature']:.2f}",
                     f"{c['ece_before']:.3f} [{c['ci95']['ece_before'][0]:.3f}, {c['ci95']['ece_before'][1]:.3f}]",
                     f"{c['ece_after']:.3f} [{c['ci95']['ece_after'][0]:.3f}, {c['ci95']['ece_after'][1]:.3f}]",
                     f"{f['mean']:.3f} (p95 {f['p95']:.3f})", f"{c['nll_test_before']:.3f} -> {c['nll_test_after']:.3f}",
                     f"{c['threshold_before']:.3f} -> {c['threshold']:.3f}",
                     f"{_pct(c['test_at_threshold']['malignant_sensitivity'])} / "
                     f"{_pct(c['test_at_threshold']['malignant_specificity'])}"])
    top = list(cb["tiers"].items())[-1]  # the manifest's order: the highest rank last
    return ["## Calibration (temperature scaling)", "",
            f"One temperature per tier, fitted by negative log-likelihood on the int8 tier's dequantized logits (the "
            f"daemon's Preprocessor) over the leakage-free validation split (n={cb['n_val']}); the decoder applies "
            "it from the manifest's `calibration` field. The malignant operating threshold is re-chosen on the "
            "calibrated validation probabilities (highest sensitivity at >= 80 % specificity), because the decoder "
            f"compares the calibrated p(malignant) with it. ECE: {cb['bins']} equal-width bins of the top-label "
            f"confidence, on the leakage-free test split (n={cb['n_test']}), bootstrap 95 % intervals (the percentile "
            "bootstrap of ECE is biased upwards). 'Perfectly calibrated': the ECE the same calibrated confidences "
            "give when the labels are drawn from them, i.e. what this n and 15 bins show for a model with no "
            f"calibration error at all. Target ECE <= {0.05}: top tier {top[0]} "
            f"{'**met**' if top[1]['ece_after'] <= 0.05 else '**missed**'} ({top[1]['ece_after']:.3f}); at n="
            f"{cb['n_test']} the measurement cannot resolve 0.05 (the no-error floor is about "
            f"{top[1]['ece_if_perfectly_calibrated']['mean']:.2f}).", "",
            _md(["tier", "T", "ECE before", "ECE after", "ECE if perfectly calibrated", "NLL test",
                 "threshold (T = 1 -> calibrated, both on validation)", "sens / spec at it (test)"], rows), "",
            "![reliability](report/reliability_busi_int8.png)", ""]


def _abstention_section(models_dir):
    """Point 7: a link to models/report/abstention.md (models/build/abstention.py writes it) and its targets."""
    ab = _json(models_dir, "report", "abstention_fold0.json")
    if ab is None:
        return []
    rows = []
    for task in ab["tasks"].values():
        for name, t in task["tiers"].items():
            worst = min(t["ood"], key=lambda k: t["ood"][k]["rate"])
            rows.append([name, f"{100 * t['in_distribution']['rate']:.1f} (n={t['in_distribution']['n']})",
                         f"{100 * t['ood'][worst]['rate']:.1f} ({worst})", f"{100 * t['ood_pooled']['rate']:.1f}",
                         "yes" if t["targets"]["met"] else "**no**"])
    return ["## Abstention (`firmware-py models abstention`)", "",
            "When a result is `indeterminate` instead of a diagnosis (blank, saturated, frozen, no tissue, atypical "
            "image, other anatomy, low confidence): rules in docs/abstention.md, every figure per OOD kind and the "
            "DDTI empty-mask specificity in [report/abstention.md](report/abstention.md). Targets: >= 90 % of each "
            "OOD kind flagged, <= 5 % of in-distribution test images flagged.", "",
            _md(["tier", "in-distribution flagged %", "least-flagged OOD kind %", "all OOD flagged %", "met"], rows),
            ""]


def _finished_students(st, models_dir):
    """Finished students of the unfinished retrain (their checkpoint records), with their robustness
    beside the shipped tier's when status --robustness measured it."""
    rows, rob_rows = [], []
    part = _json(models_dir, "report", "cv_device", "robustness_partial.json")
    shipped = _json(models_dir, "report", "robustness_busi_fold0.json")
    for fold, f in st["finished"].items():
        for name, r in f["students"].items():
            m, g = r["int8"], r.get("prune_gate") or {}
            rows.append([fold, name, _pct(m["accuracy"]), _pct(m["balanced_accuracy"]),
                         f"{_pct(m['malignant_sensitivity'])} / {_pct(m['malignant_specificity'])}",
                         _pct(m["malignant_auc"]), f"{_pct(g.get('val_int8_dense'))} / {_pct(g.get('val_int8_pruned'))}",
                         g.get("shipped", "-")])
    if part:
        for name, rec in part["tiers"].items():
            old = (shipped or {}).get("tiers", {}).get(name)
            c, oc = rec["clean"], old["clean"] if old else None
            rob_rows.append([name, "none: accuracy / sensitivity",
                             f"{_pct(oc['accuracy'])} / {_pct(oc['malignant_sensitivity'])}" if oc else "-",
                             f"{_pct(c['accuracy'])} / {_pct(c['malignant_sensitivity'])}"])
            for p, m in rec["perturbed"].items():
                o = old["perturbed"][p] if old else None
                rob_rows.append([name, p, f"{100 * o['accuracy_drop']:+.1f} / {100 * o['malignant_sensitivity_drop']:+.1f}"
                                 if o else "-",
                                 f"{100 * m['accuracy_drop']:+.1f} / {100 * m['malignant_sensitivity_drop']:+.1f}"])
    out = []
    if rows:
        out += ["", "Finished students so far (checkpoint records; int8 through the daemon's Preprocessor, grouped "
                "fold 0 test split, malignant at 0.5; validation = the pruning gate's int8 accuracy of the dense "
                "and the pruned model, grouped validation split):", "",
                _md(["fold", "tier", "accuracy", "balanced accuracy", "malignant sens / spec @0.5", "malignant AUC",
                     "validation dense / pruned", "kept"], rows)]
    if rob_rows:
        out += ["", f"Robustness of the finished students (`status --robustness`: `models robustness` on the grouped "
                f"test split, n={part['n']}, threshold 0.5, not calibrated) beside the shipped tier's (its leakage-free "
                f"test split, n={(shipped or {}).get('n')}); accuracy drop / malignant sensitivity drop in points. "
                "Different test images and operating points, so an indication, not a paired comparison:", "",
                _md(["tier", "perturbation", "shipped tier", "retrained (device augmentation)"], rob_rows)]
    return "\n".join(out).lstrip("\n")


def _retrain_section(models_dir):
    """The grouped, device-augmented fold 0 retrain (work dir models/report/cv_device)."""
    work = os.path.join(models_dir, "report", "cv_device")
    res = _json(models_dir, "report", "cv_device", "busi_fold0.json")
    st = _json(models_dir, "report", "cv_device", "status.json")
    if not res and not st:
        return []
    out = ["## Retrain: grouped splits, device augmentation, pruning gate (BUSI fold 0)", ""]
    resume = ("nice -n 19 .venv/bin/python -m firmware_py.models.build --data ../shared/data --tasks busi "
              "--folds 0 --no-ship --work-dir models/report/cv_device --threads 2")
    if res:
        out += [f"Finished: test n={res['n_test']}, train n={res['n_train']}, validation n={res['n_val']} "
                f"({res['split']['grouping']}), {res['seconds'] / 60:.0f} min.", "", _fold0_table(res, "busi"), ""]
    if st:
        rows = [[k, f"{p['epoch']}/{p['epochs']}", f"{p['loss']:.4f}",
                 f"{p['s_per_epoch']:.0f}" if p.get("s_per_epoch") else "-", p["last"]] for k, p in st["phases"].items()]
        tv = st.get("teacher_validation")
        out += [f"Status as of {st['as_of']} (`python -m firmware_py.models.build status --work-dir "
                f"{os.path.relpath(work, os.path.dirname(models_dir))}`):", "",
                _md(["phase", "epochs done", "loss", "s / epoch", "last logged"], rows), "",
                _finished_students(st, models_dir),
                (f" Teacher after epoch {tv['epoch']}, float, grouped validation n={tv['n_val']}: accuracy "
                 f"{_pct(tv['accuracy'])}, balanced accuracy {_pct(tv['balanced_accuracy'])}, malignant AUC "
                 f"{_pct(tv['malignant_auc'])}." if tv else ""), ""]
    out += _grouped_cv(models_dir, work, "busi") + _grouped_cv(models_dir, work, "ddti")
    if not res:
        out += ["Not finished, so nothing was shipped: the tiers above and in the manifest are the old ones. The "
                "run checkpoints every epoch of every phase (teacher, each student's distillation and pruning) and "
                "every finished tier under .cache/models-build/cv_device/ckpt (gitignored, outside models/ because "
                "`models sign` refuses any .tflite there that the manifest does not list); the same command resumes it "
                "after the last saved epoch:", "", "```", resume, "```", "",
                "When it has finished (busi_fold0.json appears in that folder and its table above): compare its "
                "int8 fold 0 test figures (grouped, leakage-free) with the shipped tiers' leakage-free figures "
                "(the 'What changed' table, ci95). Only if it is better: rerun the same command without "
                "`--no-ship` (every tier resumes from its checkpoint, nothing trains again; it ships the files, "
                "tunes thresholds, calibrates and re-signs), then `firmware-py models robustness --data "
                "../shared/data/busi --json models/report/robustness_busi_fold0.json` and `make test`. The "
                "cross-validation folds 1-4 in models/report/cv are still ungrouped: rerun them with "
                "`--folds 1,2,3,4 --no-ship --work-dir models/report/cv_device` and then let cv_device replace "
                "cv, so the manifest's cv_* figures and this report's fold tables are all grouped.", ""]
    return out


# Per task: the two figures a fold's cell shows, what the earlier cross-validation (models/report/cv)
# was, how the grouping is said, and the --epochs-scale that gives that cross-validation's folds 1-4
# budget (so a grouped fold compares with them at one budget).
GROUPED_CV = {
    "busi": (("accuracy", "malignant_auc"), "accuracy / malignant AUC at 0.5", "BUSI",
             ("leaky", "a different, leaky split of the same images"), 0.4,
             "the grouped splits keep whole lesions together"),
    "ddti": (("dice", "iou"), "Dice / IoU", "DDTI",
             ("patient-split", "split by patient id only, so one image filed under several ids could sit on "
              "both sides"), 0.3,
             "patients, and images shared across patient ids, stay on one side"),
}


def _grouped_cv(models_dir, work, task="busi"):
    """The grouped folds run so far (work/<task>_fold*.json) beside the leaky cross-validation's same folds."""
    runs = _load(models_dir, os.path.basename(work)).get(task, [])
    if not runs:
        return []
    keys, figures, label, (before, before_is), scale, grouping = GROUPED_CV[task]
    leaky = {r["fold"]: r for r in _load(models_dir).get(task, [])}
    names = sorted(runs[0]["tiers"], key=lambda n: runs[0]["tiers"][n]["rank"])
    same = _same_budget_folds(runs)
    same_folds = ", ".join(str(r["fold"]) for r in same)
    rows = []
    for n in names:
        variant = "float" if runs[0]["tiers"][n]["rank"] < 0 else "int8"
        cells = []
        for r in runs:
            m = r["tiers"].get(n, {}).get(variant)
            old = leaky.get(r["fold"], {}).get("tiers", {}).get(n, {}).get(variant)
            cells.append("-" if m is None else f"{_pct(m[keys[0]])} / {_pct(m[keys[1]])}"
                         + (f" ({before} {_pct(old[keys[0]])})" if old else ""))
        if same:
            cells.append(_fold_mean(same, n, variant, leaky, keys, before))
        rows.append([n, variant, *cells])
    budgets = "; ".join(f"fold {r['fold']}: teacher {_budget(r)[0]} / student {_budget(r)[1]} + prune "
                        f"{_budget(r)[2]} epochs, "
                        f"{r['seconds'] / 60:.0f} min in the run that finished it, test n={r['n_test']}" for r in runs)
    todo = [k for k in range(5) if k not in {r["fold"] for r in runs}]
    rel = os.path.relpath(work, os.path.dirname(models_dir))
    sizes = sorted({r["n_test"] for r in runs})
    out = [f"### Grouped cross-validation ({label}, device augmentation): {len(runs)} of 5 folds run", "",
           f"{figures[0].upper() + figures[1:]} on each fold's grouped test split (int8 through the daemon's "
           f"Preprocessor; the teacher float), beside the {before} cross-validation's figure for the same fold "
           f"number ({before_is}):", "",
           _md(["tier", "model", *[f"fold {r['fold']}" for r in runs],
                *([f"folds {same_folds}: mean +- sd"] if same else [])], rows), "",
           f"Epoch budgets: {budgets}. Folds at different budgets are not averaged"
           + (f" (the mean is over folds {same_folds}, which share one budget, "
              f"{' then '.join(_FIGURE_NAMES.get(k, k) for k in keys)}"
              f", beside the {before} mean of the same fold numbers" + _leaky_budget(same, leaky, before)
              + f"); across those folds the sd of {_FIGURE_NAMES.get(keys[0], keys[0])} reaches "
              f"{_widest_sd(same, keys[0])} points" if same else "")
           + f" ({grouping}, n={'/'.join(map(str, sizes))} each)."]
    if todo:
        cmd = (f"nice -n 19 .venv/bin/python -m firmware_py.models.build --data ../shared/data --tasks {task} "
               f"--no-ship --work-dir {rel} --threads 2")
        rest = [k for k in todo if k != 0]
        out += ["", f"Not run yet: fold(s) {', '.join(map(str, todo))}. Each fold's JSON is the unit that "
                "survives a session (the per-epoch checkpoints under .cache/ do not survive a new checkout); "
                "run " + ("them" if len(todo) > 1 else "it") + " with"
                + (" (fold 0, the shipped tiers' fold, at the full budget)" if 0 in todo else "") + ":", "", "```",
                *([f"{cmd} --folds 0"] if 0 in todo else []),
                *([f"{cmd} --folds {','.join(map(str, rest))} --epochs-scale {scale:g}"] if rest else []),
                "```"]
    return out + [""]


_FIGURE_NAMES = {"accuracy": "accuracy", "malignant_auc": "AUC", "dice": "Dice", "iou": "IoU"}


def _widest_sd(runs, key):
    """The largest sample sd of ``key`` (points) over the tiers of ``runs``, each in the table's variant
    (the teacher float, the students int8)."""
    sds = []
    for name, tier in runs[0]["tiers"].items():
        variant = "float" if tier["rank"] < 0 else "int8"
        vals = [r["tiers"][name][variant][key] for r in runs if r["tiers"].get(name, {}).get(variant)]
        if len(vals) >= 2:
            sds.append(float(np.std(vals, ddof=1)))
    return _pct(max(sds)) if sds else "n/a"


def _budget(run):
    """A fold run's epoch budget: (teacher, student, prune) epochs."""
    st = run["settings"]
    return st["teacher_epochs"], st["student_epochs"], st["prune_epochs"]


def _same_budget_folds(runs):
    """The largest set of (at least two) folds trained with one epoch budget, or []."""
    by = {}
    for r in runs:
        by.setdefault(_budget(r), []).append(r)
    best = max(by.values(), key=len)
    return best if len(best) >= 2 else []


def _leaky_budget(runs, leaky, before="leaky"):
    """Whether the leaky runs of the same folds had the same epoch budget (then the split and the
    augmentation are what differ)."""
    olds = [leaky.get(r["fold"]) for r in runs]
    if not all(olds):
        return ""
    same = all(_budget(o) == _budget(r) for o, r in zip(olds, runs))
    aug = {o["settings"].get("augment") or "basic" for o in olds}
    return (f"; those {before} runs had {'the same' if same else 'another'} epoch budget and the "
            f"{'/'.join(sorted(aug))} augmentation")


def _fold_mean(runs, name, variant, leaky, keys=("accuracy", "malignant_auc"), before="leaky"):
    """'mean +- sd' of the two figures over runs (sample sd), and the earlier (leaky) mean of the first for the
    same folds."""
    ms = [r["tiers"][name][variant] for r in runs if r["tiers"].get(name, {}).get(variant)]
    if len(ms) < 2:
        return "-"
    first, second = (np.array([m[k] for m in ms]) for k in keys)
    olds = [leaky.get(r["fold"], {}).get("tiers", {}).get(name, {}).get(variant) for r in runs]
    old = (f" ({before} {_pct(float(np.mean([o[keys[0]] for o in olds])))})"
           if all(olds) and len(olds) == len(ms) else "")
    return (f"{_pct(first.mean())} +- {_pct(first.std(ddof=1))} / {_pct(second.mean())} +- "
            f"{_pct(second.std(ddof=1))}" + old)


def _reruns_text(run, task):
    """Students retrained after the fold was first built, with the teacher retrained for them."""
    key = "accuracy" if task == "busi" else "dice"
    teacher = next(t for t in run["tiers"].values() if t.get("rank") == -1)
    return "".join(
        f" ({', '.join(r['tiers'])} retrained {r['date']} in {r['seconds'] / 60:.0f} min, distilled from the "
        f"teacher retrained with the same seed: {key} {_pct(r['teacher_float'][key])} against "
        f"{_pct(teacher['float'][key])})" for r in run.get("reruns", []))


def write(models_dir: str = MODELS_DIR):
    folds = _load(models_dir)
    if not folds:
        raise FileNotFoundError(f"no results in {models_dir}/report/cv: run the build first")
    out_dir = os.path.join(models_dir, "report")
    _plots(folds, out_dir)
    rows = _target_rows(folds, models_dir) + _issue16_target_rows(models_dir)
    r_any = next(iter(folds.values()))[0]
    interp_used = _records_interpreter(models_dir)
    lines = ["# Model zoo report", "",
             "Generated by `python -m firmware_py.models.build.report` from `models/report/cv/*.json` "
             "(written by `python -m firmware_py.models.build --data ../shared/data`). Every figure below "
             "is measured on images the model never trained on: the shipped tiers are fold 0's, and fold "
             "0's test split is never used for training, pruning or the QAT decision.", "",
             f"TensorFlow {r_any.get('tensorflow')} (training, conversion); "
             + (f"{interp_used} (the daemon's interpreter: the shipped tiers' int8 figures and latency, "
                "re-measured with it, see Interpreter); tflite-runtime 2.14 (the build's fold and "
                "cross-validation tables). " if interp_used else "tflite-runtime 2.14 (int8 evaluation and latency). ")
             + "Latency: median single-invoke time on this shared 2-core x86 "
             "development machine (loaded by other jobs while measuring), 1 interpreter thread; compare tiers "
             "with each other, not with the Raspberry Pi.", "", "## Targets", "", _targets(rows), "", "![frontier](report/frontier.png)", ""]
    for task, runs in sorted(folds.items()):
        r0 = runs[0]
        if r0["fold"] != 0:
            continue
        lines += [f"## {task.upper()}: fold 0 (shipped tiers; test n={r0['n_test']}, train n={r0['n_train']}, "
                  f"validation n={r0['n_val']})", "", _fold0_table(r0, task), ""]
        if task == "busi":
            lines += ["Sensitivity/specificity: malignant vs rest, malignant called when p(malignant) >= 0.5. "
                      "The daemon does not use 0.5: each tier's manifest carries an operating threshold chosen on "
                      "the validation split (see Targets and the `models evaluate` section). sens@spec>=80%: best "
                      "sensitivity over thresholds whose specificity is >= 80 % on the same test fold (an "
                      "optimistic, test-tuned figure).",
                      "", "![confusion](report/confusion_busi_int8.png)", ""]
        lines += ["### Compression: pruning and quantization", "",
                  "Dense = after distillation; pruned = after gradual magnitude pruning with distillation "
                  "fine-tuning. TFLite stores pruned weights densely, so sparsity shows up only in the "
                  "gzip size; the TFLite CPU kernels do not skip zeros, so pruning cannot change latency: the "
                  "dense/pruned latency pairs below were timed while other training jobs shared the cores, and "
                  "their differences are that noise (the round-robin table further down is the comparable one).", "",
                  _compression_table(r0), ""]
        per_fold = "; ".join(
            f"fold {r['fold']}: teacher {r['settings']['teacher_epochs']} / student {r['settings']['student_epochs']} "
            f"+ prune {r['settings']['prune_epochs']} epochs, {r['seconds'] / 60:.0f} min{_reruns_text(r, task)}"
            for r in runs)
        lines += [f"### {task.upper()}: cross-validation ({len(runs)} of 5 folds run)", "",
                  _cv_table(runs, task), "", f"Epoch budgets per fold (CPU time was short): {per_fold}.", ""]
    lines += _latency_section(models_dir)
    lines += _interpreter_section(models_dir)
    lines += _evaluate_section(models_dir)
    lines += _leakage_section(models_dir)
    lines += _changed_section(models_dir)
    lines += _robustness_section(models_dir)
    lines += _calibration_section(models_dir)
    lines += _abstention_section(models_dir)
    lines += _retrain_section(models_dir)
    s = r_any["settings"]
    lines += ["## Training settings", "",
              "- Data: BUSI 3 classes (stratified 5 folds, seed %d); DDTI split by patient (5 folds)." % s["seed"],
              f"- Validation: {int(100 * s['val_fraction'])} % of the training folds (the QAT decision and each tier's operating threshold; never for fitting weights).",
              f"- Augmentation (ultrasound), BUSI: {_augment_text('classify')}; DDTI: {_augment_text('segment')}, "
              "the geometric ones also moving the masks. Applied at the stored resolution, then resized per "
              "network (half-pixel bilinear).",
              "- Device augmentation profile (issue 16; the retrain and every build from now on, "
              "`--augment device`, the default; `--augment basic` is the recipe above), BUSI: "
              + _device_augment_text() + ".",
              f"- Teacher: {s['teacher_epochs']} epochs, Adam lr {s['lr']} cosine, batch {s['batch']}, "
              "class-weighted cross-entropy (BUSI) / BCE + soft Dice (DDTI).",
              f"- Students: {s['student_epochs']} epochs distillation (alpha {s['alpha']} hard loss, T "
              f"{s['temperature']}), then {s['prune_epochs']} epochs gradual magnitude pruning to "
              f"{int(100 * s['prune_target'])} % of the prunable kernels (lr {s['prune_lr']}).",
              f"- int8: full-integer post-training quantization, 200 training images as representative data, "
              f"int8 input (scale 1/255, zero point -128) and output; QAT ({s['qat_epochs']} epochs) when PTQ "
              f"loses > {100 * s['qat_trigger']:.0f} point on validation.", ""]
    lines += ["## Known shortfalls", "",
              *_shortfalls(rows, folds),
              f"- Latency is x86 CPU with {interp_used or 'tflite-runtime 2.14'} on a shared machine, not the Raspberry Pi or an "
              "Edge TPU; no Edge TPU compilation was done here (no compiler), and energy is not measured.",
              "- Unstructured 50 % sparsity buys only compressed size (gzip), not latency or the .tflite size.",
              ""]
    lines += ["## Reproduce", "",
              "```",
              "pip install -e .[train]          # tensorflow-cpu 2.14.1, tensorflow-model-optimization 0.7.5, matplotlib",
              "nice -n 10 firmware-py models build --data ../shared/data --folds 0            # shipped tiers",
              "nice -n 10 firmware-py models build --data ../shared/data --folds 1,2,3,4 --no-ship  # rest of the CV",
              "python -m firmware_py.models.build finish     # manifest + REPORT.md + re-sign with the dev key",
              "firmware-py models evaluate --data ../shared/data/busi --json out/busi_eval.json",
              "firmware-py models robustness --data ../shared/data/busi --json models/report/robustness_busi_fold0.json",
              "python -m firmware_py.models.build.calibrate --data ../shared/data/busi \\",
              "    --json models/report/calibration_busi_fold0.json --sign-key models/keys/dev-ed25519.pem",
              "python -m firmware_py.models.build.leakage --data ../shared/data/busi --json out/leak/leakage_busi_fold0.json",
              "python -m firmware_py.models.build status --work-dir models/report/cv_device [--validate --data ../shared/data]",
              "```", "",
              "`--epochs-scale F` multiplies every epoch count (the runs above used the budgets listed per fold); "
              "the seed (`--seed`, default 1234) fixes splits, initialisation, shuffling and augmentation, but "
              "TensorFlow CPU kernels are not bit-deterministic across thread counts, so a rebuild reproduces "
              "the figures closely, not bit for bit. `--tiers NAME[,NAME]` retrains only those students "
              "(with a teacher retrained from the same seed) and merges them into each fold's results; run "
              "it with the fold's original `--epochs-scale`.", ""]
    with open(os.path.join(models_dir, "REPORT.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))


if __name__ == "__main__":
    write()
