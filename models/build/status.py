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
        out[os.path.basename(d)] = {
            "teacher": os.path.exists(os.path.join(d, "teacher.weights.h5")),
            "students": sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(d, "*.json"))
                               if os.path.basename(p) != "meta.json")}
    return out


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
    args = ap.parse_args(argv)
    st = {"as_of": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
          "phases": from_log(os.path.join(args.work_dir, "build.log")), "finished": finished_tiers(args.work_dir)}
    if args.validate:
        st["teacher_validation"] = teacher_validation(args.work_dir, args.data or "../shared/data")
    with open(os.path.join(args.work_dir, "status.json"), "w", encoding="utf-8") as fh:
        json.dump(st, fh, indent=1)
    for k, p in st["phases"].items():
        spe = f"{p['s_per_epoch']:.0f} s/epoch" if p["s_per_epoch"] else "-"
        print(f"{k}: epoch {p['epoch']}/{p['epochs']} loss {p['loss']:.4f} ({spe}, last {p['last']})")
    print(json.dumps(st["finished"]), json.dumps(st.get("teacher_validation", {})))
    return 0
