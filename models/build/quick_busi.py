"""Quick int8 BUSI classifier for the walking skeleton (issue 2); the zoo (issue 6) supersedes it.

    nice -n 10 python -m firmware_py.models.build.quick_busi --data ../shared/data/busi

Seeded; holds out a stratified 20 % test split; writes models/busi_cls_quick.tflite and a tier
record (models/report/tiers/busi-cls-quick.json) that models/build/manifest.py turns into
manifest.yaml. The model ends in logits (no softmax layer): decode with softmax.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from . import data as D
from . import interp
from . import metrics as M
from . import tfutil

MODELS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_model(tf, grid: tuple, n_classes: int):
    L = tf.keras.layers
    x = inp = L.Input((grid[0], grid[1], 1), name="image")
    for filters in (16, 32, 48, 64):
        x = L.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        x = L.MaxPooling2D()(x)
    x = L.Conv2D(96, 3, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.3)(x)
    out = L.Dense(n_classes, name="logits")(x)
    return tf.keras.Model(inp, out, name="busi_cls_quick")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder laid out like ../shared/data/busi")
    ap.add_argument("--out", default=MODELS_DIR, help="where the .tflite and report/tiers go")
    ap.add_argument("--grid", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)

    tf = tfutil.setup_tf(args.seed)
    t0 = time.time()
    ds = D.load_busi(args.data)
    grid = (args.grid, args.grid)
    x = tfutil.resize_batch(ds.images, grid)
    y = ds.labels
    tr, te = D.stratified_split(y, 0.2, args.seed)
    counts = np.bincount(y[tr], minlength=len(ds.classes))
    class_weight = {c: len(tr) / (len(counts) * n) for c, n in enumerate(counts)}

    aug = tf.keras.Sequential([tf.keras.layers.RandomFlip("horizontal"),
                               tf.keras.layers.RandomTranslation(0.05, 0.05, fill_mode="reflect"),
                               tf.keras.layers.RandomContrast(0.2)])
    train_ds = (tf.data.Dataset.from_tensor_slices((x[tr], y[tr])).shuffle(len(tr), seed=args.seed)
                .batch(32).map(lambda a, b: (tf.clip_by_value(aug(a, training=True), 0, 1), b)))
    model = build_model(tf, grid, len(ds.classes))
    model.compile(tf.keras.optimizers.Adam(2e-3),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    sched = tf.keras.callbacks.LearningRateScheduler(
        lambda e: 2e-3 * 0.5 * (1 + np.cos(np.pi * e / args.epochs)))
    model.fit(train_ds, epochs=args.epochs, class_weight=class_weight, callbacks=[sched], verbose=2)

    float_probs = M.softmax(model.predict(x[te], verbose=0))
    tfl = tfutil.convert_int8(model, x[tr])
    int8_probs = M.softmax(interp.run_float_inputs(tfl, x[te]))
    m_float = M.classification_metrics(float_probs, y[te], ds.classes)
    m_int8 = M.classification_metrics(int8_probs, y[te], ds.classes)

    name = "busi_cls_quick.tflite"
    with open(os.path.join(args.out, name), "wb") as fh:
        fh.write(tfl)
    record = {
        "name": "busi-cls-quick", "task": "classify", "rank": 3, "file": name,
        "grid": list(grid), "labels": list(ds.classes), "decode": "softmax",
        "threshold": {"label": "malignant", "value": 0.5},
        "params": int(model.count_params()), "macs": tfutil.count_macs(model),
        "metrics": {k: v for k, v in m_int8.items() if k != "confusion"},
        # Ranked above the zoo's students by MACs (46 M); kept for the walking-skeleton tests.
        "metrics_note": f"walking-skeleton model (models/build/quick_busi.py), kept for the end-to-end test; "
                        f"int8 on its own held-out stratified 20 % split (n={len(te)}, seed {args.seed}), not "
                        "fold 0; ranked last by MACs (46 M)",
        "float_metrics": {k: v for k, v in m_float.items() if k != "confusion"},
        "confusion_int8": m_int8["confusion"],
        "training": {"epochs": args.epochs, "seed": args.seed, "batch": 32, "optimizer": "adam 2e-3 cosine",
                     "tensorflow": tf.__version__, "seconds": round(time.time() - t0, 1)},
    }
    os.makedirs(os.path.join(args.out, "report", "tiers"), exist_ok=True)
    with open(os.path.join(args.out, "report", "tiers", "busi-cls-quick.json"), "w") as fh:
        json.dump(record, fh, indent=2)
    print(json.dumps({"float": record["float_metrics"], "int8": record["metrics"]}, indent=1))


if __name__ == "__main__":
    main()
