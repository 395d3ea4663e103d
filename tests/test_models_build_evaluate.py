"""TensorFlow-free parts of the model build: metrics, splits, dataset readers, evaluate()."""
import csv
import json
import os
import shutil

import numpy as np
import pytest

from firmware_py.models.build import data as D
from firmware_py.models.build import metrics as M

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("FIRMWARE_PY_DATA", os.path.join(REPO, "..", "shared", "data"))
MODELS = os.path.join(REPO, "models")


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(60), 1)  # many ties
    pos = rng.random(60) < 0.4
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a in scores[pos] for b in scores[~pos]]
    assert M.auc(scores, pos) == pytest.approx(np.mean(pairs))


def test_classification_metrics_on_a_known_case():
    classes = ("normal", "benign", "malignant")
    probs = np.array([[.8, .1, .1], [.1, .8, .1], [.1, .3, .6], [.1, .6, .3], [.2, .2, .6]])
    y = np.array([0, 1, 2, 2, 1])
    m = M.classification_metrics(probs, y, classes)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["malignant_sensitivity"] == pytest.approx(1 / 2)   # sample 3 missed
    assert m["malignant_specificity"] == pytest.approx(2 / 3)   # sample 4 falsely called
    assert m["confusion"] == [[1, 0, 0], [0, 1, 1], [0, 1, 1]]
    # p(malignant) = .1 .1 .6 .3 .6; at t=0.3 both malignant are called and one benign (0.6).
    assert M.sensitivity_at_specificity(probs[:, 2], y == 2, 0.6) == (1.0, pytest.approx(2 / 3), 0.3)
    assert M.sensitivity_at_specificity(probs[:, 2], y == 2, 0.99)[0] == 0.0


def test_dice_and_iou():
    a = np.zeros((2, 4, 4), bool)
    b = np.zeros((2, 4, 4), bool)
    a[0, :2] = True
    b[0, 1:3] = True  # half overlap: 4 shared of 8 + 8
    dice, iou = M.dice_iou(a, b)
    assert dice[0] == pytest.approx(0.5) and iou[0] == pytest.approx(4 / 12)
    assert dice[1] == 1.0 and iou[1] == 1.0  # both empty: agreement


def test_legacy_stratified_folds_partition_and_stratify():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    folds = D.stratified_folds(labels, 5, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(100))
    assert all(np.bincount(labels[f], minlength=3).tolist() == [10, 6, 4] for f in folds)


def test_readers_refuse_bad_folders_with_a_clear_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        D.load_busi(str(tmp_path))
    (tmp_path / "labels.csv").write_text("image,label\nx.png,cancer\n")
    with pytest.raises(ValueError, match="'cancer'.*normal, benign, malignant"):
        D.load_busi(str(tmp_path))
    (tmp_path / "labels.csv").write_text("image,grade\nx.png,3\n")
    with pytest.raises(ValueError, match="neither a 'label' column"):
        D.dataset_kind(str(tmp_path))


def _busi_subset(dst, per_class=2):
    src = os.path.join(DATA, "busi")
    if not os.path.isfile(os.path.join(src, "labels.csv")):
        pytest.skip(f"BUSI data not found at {src}: set FIRMWARE_PY_DATA to the shared data folder")
    with open(os.path.join(src, "labels.csv")) as fh:
        rows = list(csv.DictReader(fh))
    keep, seen = [], {}
    for r in rows:
        if seen.get(r["label"], 0) < per_class:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            keep.append(r)
            os.makedirs(os.path.join(dst, os.path.dirname(r["image"])), exist_ok=True)
            shutil.copy(os.path.join(src, r["image"]), os.path.join(dst, r["image"]))
    with open(os.path.join(dst, "labels.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, ["image", "label"])
        w.writeheader()
        w.writerows(keep)
    return keep


def test_evaluate_runs_shipped_tiers_through_the_daemon_preprocessing(tmp_path):
    from firmware_py.kernels import Preprocessor, reference
    from firmware_py.models.build import evaluate as E
    from firmware_py.models.build import interp

    rows = _busi_subset(str(tmp_path / "busi"))
    out = tmp_path / "eval.json"
    res = E.evaluate(str(tmp_path / "busi"), str(out), MODELS, latency_runs=3)
    assert json.loads(out.read_text())["tiers"].keys() == res["tiers"].keys()
    tiers = [t for t in E.load_tiers(MODELS) if t["task"] == "classify"]
    assert set(res["tiers"]) == {t["name"] for t in tiers}

    # The tier fed by the daemon's Cython preprocessing, checked against the kernels' NumPy twin.
    tier = tiers[0]
    items = D.load_busi(str(tmp_path / "busi"))
    h, w = tier["preprocess"]["grid"]
    q = tier["input"]["quantization"]
    it = interp.interpreter(os.path.join(MODELS, tier["files"]["cpu"]["path"]))
    codes = np.stack([reference.preprocess(np.ascontiguousarray(im.T), interp.frame_geometry(*im.shape), h, w,
                                           scale=q["scale"], zero_point=q["zero_point"]) for im in items.images])
    # The Cython path may differ from its NumPy twin by 1 input LSB (the kernels' contract). A
    # trained network can amplify one LSB into several output steps, so the outputs are compared
    # bit for bit on the Cython codes themselves, and the codes against the twin within 1 LSB.
    pp = E.preprocessor(tier, Preprocessor)
    ours_codes = np.empty_like(codes)
    for k, im in enumerate(items.images):
        pp.run(np.ascontiguousarray(im.T), interp.frame_geometry(*im.shape), ours_codes[k:k + 1])
    assert np.max(np.abs(ours_codes.astype(np.int16) - codes.astype(np.int16))) <= 1
    out, (s, z), _, _ = E._run_tier(tier, MODELS, items.images, Preprocessor)
    assert np.array_equal((out.astype(np.float32) - z) * s, interp.run_int8_inputs(it, ours_codes))
    ours = (out.astype(np.float32) - z) * s
    assert res["tiers"][tier["name"]]["accuracy"] == pytest.approx(np.mean(ours.argmax(1) == items.labels))
    assert res["n"] == len(rows)
    for m in res["tiers"].values():
        assert set(m["ci95"]) == set(E.CLS_KEYS)
        for k, (lo, hi) in m["ci95"].items():
            assert lo <= m[k] <= hi or np.isnan(m[k])
        assert 0.0 <= m["lsb_flip_share"] <= 1.0
