"""`build()`: reproduce every shipped tier from the data, seeded, with a progress bar and a log.

    python -m firmware_py.models.build --data ../shared/data            # busi/ and ddti/ inside
    python -m firmware_py.models.build --data ../shared/data --folds 0   # shipped fold only

Fold 0 of the 5-fold split trains the shipped tiers; the other folds only add to the
cross-validation statistics. Results go to <work>/<task>_fold<k>.json; the manifest, report and
signature are regenerated at the end.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time

import numpy as np

from . import data as D
from . import splits
from . import tiers as Z
from .checkpoint import FoldCheckpoint
from .checkpoint import root as ckpt_root

MODELS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
log = logging.getLogger("firmware_py.models.build")


class Progress:
    """One-line progress bar on stderr (a terminal) and a line per epoch in the log."""

    def __init__(self, total_epochs: int, stream=sys.stderr):
        self.total, self.done, self.t0, self.stream = max(1, total_epochs), 0, time.time(), stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, label, epoch, epochs, loss):
        self.done += 1
        frac = min(1.0, self.done / self.total)
        eta = (time.time() - self.t0) * (1 - frac) / max(frac, 1e-9)
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        line = f"[{bar}] {100 * frac:5.1f}% {label} epoch {epoch}/{epochs} loss {loss:.4f} eta {eta / 60:.0f} min"
        log.info(line)
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
            self.stream.flush()


def _epochs(cfg: Z.TrainSettings, n_students: int) -> int:
    return cfg.teacher_epochs + n_students * (cfg.student_epochs + cfg.prune_epochs)


def build(data: str, tasks=("busi", "ddti"), folds=(0, 1, 2, 3, 4), n_folds: int = 5,
          models_dir: str = MODELS_DIR, work_dir: str | None = None, cfg: Z.TrainSettings | None = None,
          ship: bool = True, sign_key: str | None = None, students=None, threads: int = 2,
          only=None, fresh: bool = False) -> dict:
    """Train, evaluate and (fold 0) ship the zoo; returns {task: [fold results]}.

    Splits are grouped (splits.py): no near-duplicate group or patient straddles two splits, and
    label-conflict groups are left out. Each fold checkpoints its teacher and finished students
    under checkpoint.root(work_dir) (outside the models folder), and a rerun resumes from them;
    `fresh` discards them first.

    `only` (tier names) retrains just those students, with a teacher retrained from the same seed,
    and merges their results into the fold's existing JSON (see _merge_rerun)."""
    from . import fold as F
    from . import tfutil

    cfg = cfg or Z.TrainSettings()
    work_dir = work_dir or os.path.join(models_dir, "report", "cv")
    os.makedirs(work_dir, exist_ok=True)
    plan = []
    for task in tasks:
        if only and not [t for t in _students(task, students) if t.name in only]:
            continue
        d = D.resolve(data, task)
        if d is None:
            raise FileNotFoundError(f"{data}: no {task}/labels.csv (or a {task}-style labels.csv) here; "
                                    "pass --data pointing at ../shared/data or at the dataset folder")
        plan.append((task, d))
    if only:
        known = {t.name for task in ("busi", "ddti") for t in _students(task, students)}
        if set(only) - known:
            raise ValueError(f"unknown tier(s) {', '.join(sorted(set(only) - known))}: "
                             f"pick from {', '.join(sorted(known))}")
    picked = {task: tuple(t for t in _students(task, students) if not only or t.name in only)
              for task in ("busi", "ddti")}
    n_students = {task: len(v) for task, v in picked.items()}
    progress = Progress(sum(_epochs(cfg, n_students[t]) * len(folds) for t, _ in plan))
    tf = tfutil.setup_tf(cfg.seed, threads)
    log.info("tensorflow %s, settings %s", tf.__version__, cfg)
    results = {}
    for task, d in plan:
        if task == "busi":
            items = D.load_busi(d)
            teacher, studs, kind, classes = Z.BUSI_TEACHER, picked[task], "classify", items.classes
        else:
            items = D.load_ddti(d)
            teacher, studs, kind, classes = Z.DDTI_TEACHER, picked[task], "segment", None
        grouping = splits.task_groups(task, items)
        log.info("%s: %d items from %s, %d folds, %d excluded (label conflicts)", task, len(items.images), d,
                 n_folds, len(grouping["excluded"]))
        results[task] = []
        for k in folds:
            split, _ = splits.for_fold(task, items, n_folds, k, cfg.seed, cfg.val_fraction, grouping)
            ckpt_dir = os.path.join(ckpt_root(work_dir, models_dir), f"{task}_fold{k}")
            if fresh and os.path.isdir(ckpt_dir):
                shutil.rmtree(ckpt_dir)
            if only:  # the chosen students retrain; the fold's teacher checkpoint stays
                for spec in studs:
                    FoldCheckpoint(ckpt_dir, split.signature(), vars(cfg)).drop(spec.name)
            tf.keras.utils.set_random_seed(cfg.seed + k)
            res = F.run_fold(tf, kind, items, split, teacher, studs, cfg, k, progress,
                             ship_dir=models_dir if (ship and k == 0) else None, classes=classes,
                             ckpt_dir=ckpt_dir)
            res["split"] = {"grouping": "near-duplicate groups" if task == "busi" else
                            "patients joined by cross-patient near-duplicates",
                            "signature": split.signature(), "n_excluded": len(split.excluded),
                            "excluded_conflicts": grouping["conflicts"], "n_groups": grouping["n_groups"]}
            res["settings"] = {k2: v for k2, v in vars(cfg).items()}
            res["tensorflow"] = tf.__version__
            path = os.path.join(work_dir, f"{task}_fold{k}.json")
            if only and os.path.exists(path):
                res = _merge_rerun(path, res, teacher.name)
            with open(path, "w") as fh:
                json.dump(res, fh, indent=2)
            log.info("%s fold %d done in %.0f s: %s", task, k, res["seconds"],
                     {n: t.get("int8", t.get("float")) for n, t in res["tiers"].items()})
            results[task].append(res)
    if ship:
        if 0 in folds:
            # Operating thresholds from fold 0's validation split need the manifest's tensor parameters.
            from . import threshold
            finish(models_dir, None, timing=False)
            dirs = dict(plan)
            log.info("thresholds chosen on validation: %s",
                     threshold.tune(dirs.get("busi"), dirs.get("ddti"), models_dir, seed=cfg.seed,
                                    n_folds=n_folds, val_fraction=cfg.val_fraction))
            if dirs.get("busi"):
                # Temperature on validation; the malignant threshold again on the calibrated probabilities.
                from . import calibrate
                finish(models_dir, None, timing=False)
                calibrate.calibrate(dirs["busi"], models_dir,
                                    os.path.join(models_dir, "report", "reliability_busi_int8.png"))
        finish(models_dir, sign_key)
    return results


def _students(task, custom=None):
    return tuple(custom) if custom else (Z.BUSI_STUDENTS if task == "busi" else Z.DDTI_STUDENTS)


def _merge_rerun(path: str, res: dict, teacher_name: str) -> dict:
    """Fold `res` (a rerun of some students) into the fold's earlier results at `path`.

    The rerun's students replace their old rows. The fold's teacher row stays the one the other
    students were distilled from; the rerun's own teacher (same seed and recipe, retrained) is
    recorded beside the students it distilled, so the report can show how far the two differ.
    """
    with open(path) as fh:
        old = json.load(fh)
    budget = ("teacher_epochs", "student_epochs", "prune_epochs")
    if [old["settings"].get(b) for b in budget] != [res["settings"].get(b) for b in budget]:
        raise ValueError(
            f"{path} was built with epochs {[old['settings'].get(b) for b in budget]}, this rerun with "
            f"{[res['settings'].get(b) for b in budget]}: rerun with the same --epochs-scale, or rebuild the whole fold")
    names = [n for n in res["tiers"] if n != teacher_name]
    teacher = res["tiers"][teacher_name]["float"]
    for n in names:
        old["tiers"][n] = dict(res["tiers"][n], rerun_teacher_float=teacher)
    old.setdefault("reruns", []).append({"tiers": names, "seconds": res["seconds"], "teacher_float": teacher,
                                         "date": time.strftime("%Y-%m-%d")})
    return old


def refresh_latency(models_dir: str = MODELS_DIR, rounds: int = 5, runs: int = 20) -> dict:
    """Re-time every shipped tier in one process, round-robin, so the tiers' latencies are
    comparable with each other (training runs measure each tier at a different, noisy moment)."""
    import glob

    from . import interp

    recs = {}
    for p in sorted(glob.glob(os.path.join(models_dir, "report", "tiers", "*.json"))):
        with open(p) as fh:
            rec = json.load(fh)
        if os.path.exists(os.path.join(models_dir, rec["file"])):
            recs[p] = rec
    samples = {p: [] for p in recs}
    for _ in range(rounds):
        for p, rec in recs.items():
            samples[p].append(interp.latency_ms(os.path.join(models_dir, rec["file"]), runs=runs)["cpu_p50"])
    out = {}
    for p, rec in recs.items():
        rec["latency_ms"] = {"cpu_x86_1thread_p50": round(float(np.median(samples[p])), 3)}
        out[rec["name"]] = rec["latency_ms"]["cpu_x86_1thread_p50"]
        with open(p, "w") as fh:
            json.dump(rec, fh, indent=2)
    log.info("latency (round-robin, one process): %s", out)
    return out


def finish(models_dir: str = MODELS_DIR, sign_key: str | None = None, timing: bool = True):
    """Re-time the tiers, regenerate manifest.yaml (and REPORT.md when matplotlib is present),
    then re-sign."""
    from . import manifest

    if timing:
        refresh_latency(models_dir)

    text = manifest.generate(models_dir)
    with open(os.path.join(models_dir, "manifest.yaml"), "w", encoding="utf-8") as fh:
        fh.write(text)
    log.info("wrote manifest.yaml")
    try:
        from . import report
        report.write(models_dir)
        log.info("wrote REPORT.md")
    except ImportError as exc:
        log.warning("REPORT.md not regenerated: %s", exc)
    if sign_key:
        log.info("manifest %s", "signed" if manifest.sign(models_dir, sign_key)
                 else "NOT signed: firmware_py.inference.cli is not available")
