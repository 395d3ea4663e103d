"""Leakage-free splits, near-duplicate detection, checkpoints and the int8 input contract of the
model build: TensorFlow-free, on generated data (real-data checks skip without the data)."""
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from firmware_py.models.build import data as D
from firmware_py.models.build import dedup, interp, leakage, splits
from firmware_py.models.build import metrics as M
from firmware_py.models.build.checkpoint import FoldCheckpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(REPO, "models")


def _grouped_set(seed=0, n_groups=120):
    """Group key and label per item: groups of 1-4 items sharing a label, 3 classes."""
    rng = np.random.default_rng(seed)
    groups, labels = [], []
    for g in range(n_groups):
        size, label = int(rng.integers(1, 5)), int(rng.choice(3, p=[.2, .5, .3]))
        groups += [g] * size
        labels += [label] * size
    return groups, np.asarray(labels)


def _owner(split):
    return {**{int(i): "train" for i in split.train}, **{int(i): "val" for i in split.val},
            **{int(i): "test" for i in split.test}}


@pytest.mark.parametrize("stratified", [True, False])
def test_no_group_straddles_two_splits_and_conflicts_are_in_none(stratified):
    groups, labels = _grouped_set()
    excluded = [i for i, g in enumerate(groups) if g in (3, 17)]
    tests = []
    for fold in range(5):
        s = splits.fold_split(groups, labels if stratified else None, excluded, 5, fold, seed=7, val_fraction=0.15)
        owner = _owner(s)
        assert len(owner) == len(s.train) + len(s.val) + len(s.test)  # pairwise disjoint
        assert sorted(owner) == sorted(set(range(len(groups))) - set(excluded))
        place = {}
        for i, where in owner.items():
            assert place.setdefault(groups[i], where) == where, f"group {groups[i]} in two splits"
        assert 0.10 < len(s.val) / (len(s.train) + len(s.val)) < 0.20
        tests.append(s.test)
    # The test folds partition every item that is not excluded.
    assert sorted(np.concatenate(tests).tolist()) == sorted(set(range(len(groups))) - set(excluded))


def test_folds_are_stratified_deterministic_for_a_seed_and_change_with_it():
    groups, labels = _grouped_set()
    folds = splits.grouped_folds(groups, 5, seed=1, labels=labels)
    share = np.array([np.bincount(labels[f], minlength=3) / len(f) for f in folds])
    assert np.abs(share - np.bincount(labels) / len(labels)).max() < 0.08
    a = splits.fold_split(groups, labels, [], 5, 2, seed=1, val_fraction=0.15)
    b = splits.fold_split(groups, labels, [], 5, 2, seed=1, val_fraction=0.15)
    c = splits.fold_split(groups, labels, [], 5, 2, seed=2, val_fraction=0.15)
    assert a.signature() == b.signature() and all(np.array_equal(x, y) for x, y in zip(
        (a.train, a.val, a.test), (b.train, b.val, b.test)))
    assert a.signature() != c.signature()


def _speckle(rng, lesion=None):
    yy, xx = np.mgrid[0:256, 0:256]
    img = rng.rayleigh(1.0, (256, 256)) * np.exp(-yy / 300.0)
    from PIL import Image, ImageFilter
    img = np.asarray(Image.fromarray(np.clip(img * 70, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5)),
                     np.float64)
    if lesion is not None:
        cy, cx, r = lesion
        img[np.hypot(yy - cy, xx - cx) < r] *= 0.25
    return np.clip(img, 0, 255).astype(np.uint8)


def _with_calipers(img):
    """The same frame with two caliper crosses, a dotted line and a text block burnt in."""
    out = img.copy()
    for cy, cx in ((80, 90), (150, 170)):
        out[cy - 5:cy + 6, cx] = 255
        out[cy, cx - 5:cx + 6] = 255
    out[115, 90:170:4] = 255
    out[230:238, 20:60:2] = 250
    return out


def _synthetic_busi():
    rng = np.random.default_rng(3)
    images, labels = [], []
    for k in range(10):  # 10 unrelated lesions
        images.append(_speckle(rng, (rng.uniform(60, 190), rng.uniform(60, 190), rng.uniform(15, 40))))
        labels.append(k % 3)
    images.append(_with_calipers(images[0]))     # 10: twin of 0, same label
    labels.append(labels[0])
    images.append(np.roll(images[1], 3, axis=1))  # 11: adjacent frame of 1, other label: a conflict
    labels.append((labels[1] + 1) % 3)
    names = [f"img_{i}.png" for i in range(len(images))]
    return D.ClassificationSet(images, np.asarray(labels), names, D.BUSI_LABELS)


def test_dedup_groups_caliper_twins_and_shifted_frames_and_flags_label_conflicts():
    items = _synthetic_busi()
    res = dedup.find("busi", items)
    assert res["groups"] == [[0, 10], [1, 11]]
    assert res["conflicts"] == [[1, 11]]
    info = splits.task_groups("busi", items)
    assert info["excluded"] == [1, 11] and info["groups"][10] == info["groups"][0]


def test_ddti_patients_are_joined_by_a_cross_patient_duplicate():
    rng = np.random.default_rng(5)
    imgs = [_speckle(rng, (128, 128, 30 + 3 * k)) if k % 2 else _speckle(rng) for k in range(5)]
    imgs.append(_with_calipers(imgs[4]))  # patient "d" holds patient "c"'s image
    items = D.SegmentationSet(imgs, [np.zeros((256, 256), np.uint8)] * 6, [f"{k}.png" for k in range(6)],
                              ["a", "a", "b", "c", "c", "d"])
    res = dedup.find("ddti", items)
    assert res["cross_patient"] == [[4, 5]]
    ids = res["ids"]
    assert ids[0] == ids[1] and ids[3] == ids[4] == ids[5] and len({ids[0], ids[2], ids[3]}) == 3


def test_dedup_cli_writes_groups_conflicts_and_a_montage_per_conflict(tmp_path):
    from PIL import Image

    items = _synthetic_busi()
    root = tmp_path / "busi"
    rows = []
    for img, label, name in zip(items.images, items.labels, items.names):
        cls = D.BUSI_LABELS[label]
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / cls / name)
        rows.append(f"{cls}/{name},{cls}")
    (root / "labels.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    from firmware_py.cli.models import main

    assert main(["dedup", "--data", str(root), "--out", str(tmp_path / "out")]) == 0
    rep = json.loads((tmp_path / "out" / "busi_dedup.json").read_text())
    assert (rep["n_groups"], rep["n_in_groups"], rep["n_distinct"]) == (2, 4, 10)
    assert [[m["image"] for m in g] for g in rep["conflicts"]] == [[rows[1].split(",")[0], rows[11].split(",")[0]]]
    assert Image.open(tmp_path / "out" / "busi_conflict_0.png").size[0] > 0
    assert not (tmp_path / "out" / "busi_conflict_1.png").exists()
    assert main(["dedup", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")]) == 2


def test_leaked_test_items_are_those_with_a_group_member_in_training():
    ids = np.array([0, 0, 2, 3, 3, 5])
    assert leakage.leaked_test_items(None, np.array([1, 2, 3, 4]), ids).tolist() == [1]


def test_bootstrap_ci95_brackets_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (50, 800):
        hit = rng.random(n) < 0.7
        ci = M.bootstrap_ci95(lambda i: {"acc": hit[i].mean()}, n, ("acc",), draws=400, seed=1)["acc"]
        assert ci[0] < hit.mean() < ci[1]
        widths.append(ci[1] - ci[0])
    assert widths[1] < widths[0] / 2
    assert M.bootstrap_ci95(lambda i: {"acc": hit[i].mean()}, 800, ("acc",), draws=50, seed=3) == \
        M.bootstrap_ci95(lambda i: {"acc": hit[i].mean()}, 800, ("acc",), draws=50, seed=3)


def test_checkpoint_resumes_the_same_split_and_settings_and_forgets_any_other(tmp_path):
    path = str(tmp_path / "busi_fold0")
    ck = FoldCheckpoint(path, "sig-a", {"epochs": 3})
    ck.save_student("busi-cls-x", {"int8": {"accuracy": 0.5}}, b"TFL3")
    open(ck.teacher_weights, "wb").close()
    again = FoldCheckpoint(path, "sig-a", {"epochs": 3})
    assert again.student("busi-cls-x") == ({"int8": {"accuracy": 0.5}}, b"TFL3") and again.has_teacher()
    again.drop("busi-cls-x")
    assert again.student("busi-cls-x") is None and again.has_teacher()
    again.save_student("busi-cls-x", {}, b"x")
    other = FoldCheckpoint(path, "sig-b", {"epochs": 3})
    assert other.student("busi-cls-x") is None and not other.has_teacher()


def _tie_images(rng, n=4):
    """256 x 256 images whose 2x and 4x bilinear downsampling lands on half-way display values
    (neighbours differ by odd steps), the inputs where two rounding rules disagree."""
    base = rng.integers(0, 255, (n, 256, 256))
    base[:, :, 1::2] = np.clip(base[:, :, 0::2] + rng.choice([-3, -1, 1, 3], (n, 256, 128)), 0, 255)
    return [b.astype(np.uint8) for b in base]


def test_int8_inputs_of_the_build_and_the_daemon_are_bit_identical():
    from firmware_py.daemon.frames import preprocessor_for_tier
    from firmware_py.inference.manifest import load_manifest
    from firmware_py.kernels import Preprocessor
    from firmware_py.models.build import evaluate as E

    images = _tie_images(np.random.default_rng(0))
    manifest = load_manifest(os.path.join(MODELS, "manifest.yaml"))
    cfg = SimpleNamespace(speckle_filter=False, threads=1)
    for tier in E.load_tiers(MODELS):
        device = preprocessor_for_tier(manifest.tier(tier["name"]), cfg)
        want = interp.device_codes(images, device)
        # The build's evaluation path (evaluate, threshold) and its training-time path (fold).
        assert np.array_equal(interp.device_codes(images, E.preprocessor(tier, Preprocessor)), want)
        path = os.path.join(MODELS, tier["files"]["cpu"]["path"])
        it = interp.interpreter(path)
        assert np.array_equal(interp.run_images(path, images), interp.run_int8_inputs(it, want))
