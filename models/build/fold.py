"""One cross-validation fold: train the teacher, distil + prune + quantize every student, measure.

Returns a JSON-able dict; when `ship_dir` is given the students' int8 files and tier records are
written there (the shipped tiers are fold 0's, so their manifest metrics come from a test fold they
never trained on).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from . import interp
from . import metrics as M
from . import tfutil
from . import train as T
from .augment import UltrasoundAugment
from .checkpoint import FoldCheckpoint
from .tiers import TierSpec, TrainSettings, augment_kwargs


def _eval(task, outputs, y, classes):
    """Metrics from float logits (N, C) or mask logits (N, h, w, 1) against labels / masks."""
    if task == "classify":
        m = M.classification_metrics(M.softmax(outputs), y, classes)
        m["score"] = m["accuracy"]
        return m
    dice, iou = M.dice_iou(outputs > 0.0, y > 0.5)
    return {"n": int(len(y)), "dice": float(dice.mean()), "iou": float(iou.mean()),
            "dice_std": float(dice.std()), "score": float(dice.mean())}


def _strip(m):
    return {k: v for k, v in m.items() if k not in ("confusion", "score")}


def _targets(task, items, idx, spec, res_cache):
    """Model-grid inputs and targets for a tier, from the stored images (daemon preprocessing)."""
    key = (spec.res, np.asarray(idx).tobytes())
    if key not in res_cache:
        res_cache[key] = tfutil.resize_batch([items.images[i] for i in idx], (spec.res, spec.res))
    x = res_cache[key]
    if task == "classify":
        return x, items.labels[idx]
    masks = tfutil.resize_masks([items.masks[i] for i in idx], (spec.res, spec.res))
    return x, masks


def run_fold(tf, task, items, split, teacher_spec: TierSpec, students, cfg: TrainSettings,
             fold: int, progress, ship_dir: str | None = None, classes=None, ckpt_dir: str | None = None):
    """Train and measure one fold on `split` (splits.Split: train / validation / test by group).

    Validation (the QAT decision here, the operating thresholds in threshold.py) never overlaps
    the test split. With `ckpt_dir`, the trained teacher and every finished student are saved
    there and a rerun of the same split and settings resumes from them (checkpoint.py)."""
    t_start = time.time()
    rng = np.random.default_rng(cfg.seed + fold)
    tr, val, test_idx = np.asarray(split.train), np.asarray(split.val), np.asarray(split.test)
    if cfg.max_train:
        tr = np.sort(rng.permutation(tr)[:cfg.max_train])
    ckpt = FoldCheckpoint(ckpt_dir, split.signature(), vars(cfg)) if ckpt_dir else None
    test_images = [items.images[i] for i in test_idx]

    base = np.stack([im.astype(np.float32) / 255.0 for im in (items.images[i] for i in tr)])[..., None]
    if task == "classify":
        y_tr = items.labels[tr]
        counts = np.bincount(y_tr, minlength=len(classes))
        class_weight = (len(y_tr) / (len(counts) * np.maximum(counts, 1))).astype(np.float32)
    else:
        y_tr = np.stack([m.astype(np.float32) for m in (items.masks[i] for i in tr)])[..., None]
        class_weight = None
    aug = UltrasoundAugment(tf, cfg.seed + 100 * fold, **augment_kwargs(task, cfg.augment))
    steps = int(np.ceil(len(tr) / cfg.batch))
    cache = {}
    result = {"fold": fold, "n_train": int(len(tr)), "n_val": int(len(val)), "n_test": int(len(test_idx)),
              "tiers": {}}

    def label(name, phase):
        return f"{task} fold {fold} {name} {phase}"

    # Teacher: supervised, float only.
    teacher = teacher_spec.build(tf, teacher_spec.name.replace("-", "_"))
    ds = T.make_dataset(tf, base, y_tr, cfg.batch, cfg.seed + fold, aug, task)
    if ckpt and ckpt.has_teacher():
        teacher.load_weights(ckpt.teacher_weights)
    else:
        T.fit(tf, T.build_trainer(tf, teacher, task, class_weight=class_weight), ds, cfg.teacher_epochs,
              cfg.lr, steps, log=progress, label=label("teacher", "train"),
              resume=os.path.join(ckpt.path, "teacher_train") if ckpt else None)
        T.recalibrate_bn(tf, teacher, _targets(task, items, tr, teacher_spec, cache)[0])
        if ckpt:
            teacher.save_weights(ckpt.teacher_weights)
    x_te, y_te = _targets(task, items, test_idx, teacher_spec, cache)
    result["tiers"][teacher_spec.name] = {
        "rank": -1, "params": int(teacher.count_params()), "macs": tfutil.count_macs(teacher),
        "float": _strip(_eval(task, teacher.predict(x_te, verbose=0), y_te, classes))}

    for spec in students:
        done = ckpt.student(spec.name) if ckpt else None
        if done:
            rec, tfl = done
            result["tiers"][spec.name] = rec
            if ship_dir:
                _ship(ship_dir, spec, tfl, rec, classes, fold, len(test_idx), cfg)
            continue
        net = spec.build(tf, spec.name.replace("-", "_"))
        trainer = T.build_trainer(tf, net, task, teacher=teacher, alpha=cfg.alpha,
                                  temperature=cfg.temperature, class_weight=class_weight)
        T.fit(tf, trainer, ds, cfg.student_epochs, cfg.lr, steps, log=progress, label=label(spec.name, "distil"),
              resume=_phase_dir(ckpt, spec.name, "distil"))
        x_te, y_te = _targets(task, items, test_idx, spec, cache)
        x_val, y_val = _targets(task, items, val, spec, cache)
        x_cal, _ = _targets(task, items, tr, spec, cache)
        T.recalibrate_bn(tf, net, x_cal)
        rec = {"rank": spec.rank, "res": spec.res, "params": int(net.count_params()),
               "macs": tfutil.count_macs(net), "description": spec.description}
        dense_tfl = tfutil.convert_int8(net, x_cal)
        rec["dense"] = {"float": _strip(_eval(task, net.predict(x_te, verbose=0), y_te, classes)),
                        "int8": _strip(_eval(task, interp.run_images(dense_tfl, test_images), y_te, classes)),
                        "file_bytes": len(dense_tfl), "gzip_bytes": interp.gzip_bytes(dense_tfl),
                        "latency_ms": interp.latency_ms(dense_tfl)}

        # Gradual magnitude pruning while still distilling, at a lower learning rate.
        p_steps = cfg.prune_epochs * steps
        cb = T.make_pruning_callback(tf, net, cfg.prune_target, 0, int(0.7 * p_steps))
        trainer = T.build_trainer(tf, net, task, teacher=teacher, alpha=cfg.alpha,
                                  temperature=cfg.temperature, class_weight=class_weight)
        dense_weights = net.get_weights()
        val_images = [items.images[i] for i in val]
        dense_q_val = _eval(task, interp.run_images(dense_tfl, val_images), y_val, classes)["score"]
        T.fit(tf, trainer, ds, cfg.prune_epochs, cfg.prune_lr, steps, callbacks=[cb], log=progress,
              label=label(spec.name, "prune"), resume=_phase_dir(ckpt, spec.name, "prune"))
        T.recalibrate_bn(tf, net, x_cal)
        rec["sparsity"] = T.sparsity(tf, net)

        tfl = tfutil.convert_int8(net, x_cal)
        q_val = _eval(task, interp.run_images(tfl, val_images), y_val, classes)["score"]
        # Pruning gate: validation (device-fed int8) decides; a pruned model more than
        # cfg.prune_gate worse than its dense self is not shipped, the dense one is.
        rec["prune_gate"] = {"val_int8_dense": round(dense_q_val, 4), "val_int8_pruned": round(q_val, 4),
                             "limit": cfg.prune_gate, "shipped": "pruned"}
        if dense_q_val - q_val > cfg.prune_gate:
            net.set_weights(dense_weights)
            tfl, q_val = dense_tfl, dense_q_val
            rec["prune_gate"]["shipped"] = "dense"
            rec["sparsity"] = T.sparsity(tf, net)
        f_val = _eval(task, net.predict(x_val, verbose=0), y_val, classes)["score"]
        rec["ptq_val_drop"] = round(f_val - q_val, 4)
        rec["quantization"] = "ptq"
        if f_val - q_val > cfg.qat_trigger:
            rec["quantization"] = _try_qat(tf, net, x_cal, y_tr, task, cfg, fold, val_images, y_val,
                                           classes, q_val, rec)
            if rec["quantization"] == "qat":
                tfl = rec.pop("_qat_tfl")
        rec["float"] = _strip(_eval(task, net.predict(x_te, verbose=0), y_te, classes))
        out = interp.run_images(tfl, test_images)
        m8 = _eval(task, out, y_te, classes)
        rec["int8"] = _strip(m8)
        if task == "classify":
            rec["confusion_int8"] = m8["confusion"]
            probs = M.softmax(out)[:, classes.index("malignant")]
            s, sp, thr = M.sensitivity_at_specificity(probs, y_te == classes.index("malignant"), 0.80)
            rec["int8"]["malignant_sensitivity_at_spec80"] = s
            rec["int8"]["threshold_at_spec80"] = thr
        rec["file_bytes"] = len(tfl)
        rec["gzip_bytes"] = interp.gzip_bytes(tfl)
        rec["latency_ms"] = interp.latency_ms(tfl)
        result["tiers"][spec.name] = rec
        if ckpt:
            ckpt.save_student(spec.name, rec, tfl)
        if ship_dir:
            _ship(ship_dir, spec, tfl, rec, classes, fold, len(test_idx), cfg)
    result["seconds"] = round(time.time() - t_start, 1)
    return result


def _phase_dir(ckpt, name, phase):
    """Per-epoch resume directory of one student's training phase (None without checkpoints)."""
    return os.path.join(ckpt.path, f"{name.replace('-', '_')}_{phase}") if ckpt else None


def _try_qat(tf, net, x_cal, y_tr, task, cfg, fold, val_images, y_val, classes, q_val, rec):
    """QAT on the tier's own grid; kept only if it beats PTQ on validation (device-fed int8)."""
    try:
        q = T.quantization_aware(tf, net, x_cal, y_tr, task, cfg.qat_epochs, cfg.prune_lr, cfg.batch,
                                 cfg.seed + fold)
        tfl = tfutil.convert_int8(q, x_cal)
        qat_val = _eval(task, interp.run_images(tfl, val_images), y_val, classes)["score"]
        rec["qat_val_gain"] = round(qat_val - q_val, 4)
        if qat_val > q_val:
            rec["_qat_tfl"] = tfl
            return "qat"
        return "ptq (qat tried, not better on validation)"
    except Exception as exc:  # tfmot refuses some layers; PTQ stays and the report says why
        rec["qat_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return "ptq (qat failed)"


def _ship(ship_dir, spec, tfl, rec, classes, fold, n_test, cfg):
    with open(os.path.join(ship_dir, spec.file), "wb") as fh:
        fh.write(tfl)
    m = dict(rec["int8"])
    tier = {"name": spec.name, "task": spec.task, "rank": spec.rank, "file": spec.file,
            "grid": [spec.res, spec.res], "params": rec["params"], "macs": rec["macs"],
            "metrics": m, "latency_ms": {"cpu_x86_1thread_p50": round(rec["latency_ms"]["cpu_p50"], 3)},
            "metrics_note": f"int8 on the test fold {fold} of 5 (n={n_test}, seed {cfg.seed}); never trained on",
            "float_metrics": rec["float"], "sparsity": rec["sparsity"], "quantization": rec["quantization"],
            "split": "grouped"}  # heldout.py: which images this tier never saw
    if spec.task == "classify":
        tier.update(decode="softmax", labels=list(classes), threshold={"label": "malignant", "value": 0.5})
    else:
        tier.update(decode="sigmoid", labels=["nodule"], threshold={"value": 0.5})
    os.makedirs(os.path.join(ship_dir, "report", "tiers"), exist_ok=True)
    with open(os.path.join(ship_dir, "report", "tiers", spec.name + ".json"), "w") as fh:
        json.dump(tier, fh, indent=2)
