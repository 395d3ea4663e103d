"""Where an unfinished (resumable) build stands: epochs done per phase, time per epoch, and the
teacher's validation accuracy from its last per-epoch checkpoint.

    python -m firmware_py.models.build status --work-dir models/report/cv_device --data ../shared/data [--validate]

Reads <work-dir>/build.log (the progress lines) and checkpoint.root(work-dir)/<task>_fold<k>/ (train.fit's
per-epoch state, checkpoint.py's finished tiers); writes <work-dir>/status.json, which REPORT.md
shows. --validate needs TensorFlow: it loads the teacher's last saved epoch and measures it (float)
on the fold's grouped validation split.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import time
from datetime import datetime

import numpy as np

LINE = re.compile(r"^(\S+ \S+),\d+ INFO \[[#.]+\]\s+[\d.]+% (\w+) fold (\d+) (\S+) (\w+) epoch (\d+)/(\d+) loss (\S+)")


def from_log(path: str) -> dict:
    """{'<task> fold <k> <net> <phase>': {epoch, epochs, loss, s_per_epoch, last}} from the progress lines.
    Seconds per epoch: the median gap between consecutive epochs of that phase within one run."""
    phases, stamps = {}, {}
    if not os.path.exists(path):
        return phases
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            m = LINE.match(line)
            if not m:
                continue
            when, task, fold, net, phase, ep, eps, loss = m.groups()
            key = f"{task} fold {fold} {net} {phase}"
            t = datetime.strptime(when, "%Y-%m-%d %H:%M:%S").timestamp()
            prev = phases.get(key)
            if prev and int(ep) == prev["epoch"] + 1:
                stamps.setdefault(key, []).append(t - prev["_t"])
            phases[key] = {"epoch": int(ep), "epochs": int(eps), "loss": float(loss), "last": when, "_t": t}
    for key, p in phases.items():
        p.pop("_t")
        p["s_per_epoch"] = float(np.median(stamps[key])) if stamps.get(key) else None
    return phases


def finished_tiers(work_dir: str) -> dict:
    """{'<task>_fold<k>': {'teacher': bool, 'students': [names]}} from the fold checkpoints."""
    out = {}
    from .checkpoint import root

    for d in sorted(glob.glob(os.path.join(root(work_dir), "*_fold*"))):
        students = {}
        for p in sorted(glob.glob(os.path.join(d, "*.json"))):
            if os.path.basename(p) == "meta.json":
                continue
            with open(p, encoding="utf-8") as fh:
                rec = json.load(fh)
            students[os.path.basename(p)[:-5]] = {k: rec.get(k) for k in ("int8", "float", "prune_gate", "quantization")}
        out[os.path.basename(d)] = {"teacher": os.path.exists(os.path.join(d, "teacher.weights.h5")),
                                    "students": students}
    return out


def finished_robustness(work_dir: str, data: str, json_path: str, fold: int = 0) -> dict:
    """`models robustness` on the finished BUSI students of an unfinished fold: they are laid out
    as a models folder (as fold._ship would; threshold 0.5, no calibration yet) in a temporary
    directory, so nothing under models/ changes."""
    import shutil
    import tempfile

    from . import manifest, robustness
    from . import tiers as Z
    from .checkpoint import root

    ck = os.path.join(root(work_dir), f"busi_fold{fold}")
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "report", "tiers"))
        for spec in Z.BUSI_STUDENTS:
            stem = os.path.join(ck, spec.name.replace("-", "_"))
            if not os.path.exists(stem + ".json"):
                continue
            with open(stem + ".json", encoding="utf-8") as fh:
                rec = json.load(fh)
            shutil.copy(stem + ".tflite", os.path.join(tmp, spec.file))
            tier = {"name": spec.name, "task": "classify", "rank": spec.rank, "file": spec.file,
                    "grid": [spec.res, spec.res], "params": rec["params"], "macs": rec["macs"],
                    "metrics": rec["int8"], "metrics_note": f"unfinished build, fold {fold}", "decode": "softmax",
                    "labels": ["normal", "benign", "malignant"], "threshold": {"label": "malignant", "value": 0.5},
                    "split": "grouped"}
            with open(os.path.join(tmp, "report", "tiers", spec.name + ".json"), "w", encoding="utf-8") as fh:
                json.dump(tier, fh)
        with open(os.path.join(tmp, "manifest.yaml"), "w", encoding="utf-8") as fh:
            fh.write(manifest.generate(tmp))
        return robustness.robustness(os.path.join(data, "busi") if os.path.isdir(os.path.join(data, "busi"))
                                     else data, json_path, tmp)


def teacher_validation(work_dir: str, data: str, fold: int = 0, threads: int = 2) -> dict:
    """Float accuracy of the BUSI teacher's last saved epoch on the fold's grouped validation split."""
    import tensorflow as tf

    from . import data as D
    from . import metrics as M
    from . import splits, tfutil
    from . import tiers as Z

    tfutil.setup_tf(1234, threads)
    from .checkpoint import root

    ck = os.path.join(root(work_dir), f"busi_fold{fold}", "teacher_train")
    latest = tf.train.latest_checkpoint(ck)
    if latest is None:
        raise FileNotFoundError(f"{ck}: no per-epoch teacher checkpoint yet")
    with open(os.path.join(root(work_dir), f"busi_fold{fold}", "meta.json")) as fh:
        cfg = json.load(fh)["settings"]
    items = D.load_busi(D.resolve(data, "busi"))
    split, _ = splits.for_fold("busi", items, 5, fold, cfg["seed"], cfg["val_fraction"])
    net = Z.BUSI_TEACHER.build(tf, Z.BUSI_TEACHER.name.replace("-", "_"))
    epoch = tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(net=net, epoch=epoch).restore(latest).expect_partial()
    # BN statistics as the build sets them after training: population statistics of the training images.
    from .train import recalibrate_bn
    x_tr = tfutil.resize_batch([items.images[i] for i in split.train], (Z.BUSI_TEACHER.res,) * 2)
    recalibrate_bn(tf, net, x_tr)
    x = tfutil.resize_batch([items.images[i] for i in split.val], (Z.BUSI_TEACHER.res,) * 2)
    m = M.classification_metrics(M.softmax(net.predict(x, verbose=0)), items.labels[split.val], items.classes)
    return {"epoch": int(epoch.numpy()), "n_val": int(len(split.val)),
            **{k: m[k] for k in ("accuracy", "balanced_accuracy", "malignant_auc")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware_py.models.build status", description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--data", default=None, help="../shared/data (for --validate)")
    ap.add_argument("--validate", action="store_true", help="measure the teacher's last epoch on validation (TF)")
    ap.add_argument("--robustness", action="store_true",
                    help="models robustness on the finished BUSI students -> <work-dir>/robustness_partial.json")
    args = ap.parse_args(argv)
    st = {"as_of": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
          "phases": from_log(os.path.join(args.work_dir, "build.log")), "finished": finished_tiers(args.work_dir)}
    if args.validate:
        st["teacher_validation"] = teacher_validation(args.work_dir, args.data or "../shared/data")
    if args.robustness:
        finished_robustness(args.work_dir, args.data or "../shared/data",
                            os.path.join(args.work_dir, "robustness_partial.json"))
    with open(os.path.join(args.work_dir, "status.json"), "w", encoding="utf-8") as fh:
        json.dump(st, fh, indent=1)
    for k, p in st["phases"].items():
        spe = f"{p['s_per_epoch']:.0f} s/epoch" if p["s_per_epoch"] else "-"
        print(f"{k}: epoch {p['epoch']}/{p['epochs']} loss {p['loss']:.4f} ({spe}, last {p['last']})")
    for fold, f in st["finished"].items():
        print(f"{fold}: teacher {'done' if f['teacher'] else 'training'}; finished students:",
              {n: {"int8_accuracy": r["int8"]["accuracy"], "shipped": (r["prune_gate"] or {}).get("shipped")}
               for n, r in f["students"].items()})
    print(json.dumps(st.get("teacher_validation", {})))
    return 0
