"""Issue 16: the perturbation suite, `models robustness`, temperature scaling and the held-out splits.

TensorFlow-free: the shipped int8 tiers through the daemon's Preprocessor and interpreter on a
tiny generated BUSI-style folder (no shared data needed).
"""
import json
import os

import numpy as np
import pytest

from firmware_py.models.build import calibrate as C
from firmware_py.models.build import evaluate as E
from firmware_py.models.build import heldout, perturb, robustness, splits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(REPO, "models")


def _synthetic_busi(root, per_class=4, seed=3):
    """labels.csv + class folders of 96 x 96 speckle images, dark round (benign) or ragged (malignant) lesions."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:96]
    rows = []
    for label in ("normal", "benign", "malignant"):
        os.makedirs(os.path.join(root, label), exist_ok=True)
        for k in range(per_class):
            img = rng.rayleigh(1.0, (96, 96)) * np.exp(-yy / 150.0)
            if label != "normal":
                a = np.arctan2(yy - 45, xx - 48)
                edge = 16 * (1 + (0.0 if label == "benign" else 0.3 * np.sin(7 * a + k)))
                img[np.hypot(yy - 45, xx - 48) < edge] *= 0.2
            name = f"{label}/{label}_{k:03d}.png"
            Image.fromarray(np.clip(img * 70, 0, 255).astype(np.uint8)).save(os.path.join(root, name))
            rows.append(f"{name},{label}")
    with open(os.path.join(root, "labels.csv"), "w") as fh:
        fh.write("image,label\n" + "\n".join(rows) + "\n")
    return [r.split(",")[0] for r in rows]


def test_fill_regions_hold_exactly_the_fill_and_leave_the_rest():
    img = np.random.default_rng(0).integers(1, 255, (64, 80)).astype(np.uint8)
    inside = perturb.sector_mask(64, 80)
    # The daemon's convex geometry: a fan (apex row narrower than the deepest row), not a rectangle.
    assert 0.3 < inside.mean() < 0.95 and inside[0].sum() < inside[-3].sum()
    out = perturb.sector(img, 37)
    assert (out[~inside] == 37).all() and (out[inside] == img[inside]).all()
    rot = perturb.rotate(np.full((64, 64), 200, np.uint8), 10, 37)
    assert rot[0, 0] == rot[-1, -1] == 37 and rot[32, 32] == 200
    assert perturb.gain(np.array([[100, 200]], np.uint8), 1.4).tolist() == [[140, 255]]  # saturates, as a display


def test_blur_and_speckle():
    flat = np.full((40, 40), 120, np.uint8)
    assert (perturb.gaussian_blur(flat) == 120).all()  # a constant image stays constant (edge replicated)
    noisy = np.random.default_rng(1).integers(0, 255, (40, 40)).astype(np.uint8)
    assert perturb.gaussian_blur(noisy).std() < 0.5 * noisy.std()
    a = perturb.speckle(flat, np.random.default_rng(5))
    assert (a == perturb.speckle(flat, np.random.default_rng(5))).all()  # seeded
    assert abs(a.std() - 120 * perturb.SPECKLE_SIGMA) < 3


def test_robustness_on_a_tiny_set_agrees_with_evaluate(tmp_path):
    names = _synthetic_busi(str(tmp_path / "busi"))
    data = str(tmp_path / "busi")
    res = robustness.robustness(data, str(tmp_path / "r.json"), MODELS, names=names, bootstrap=50)
    ev = E.evaluate(data, str(tmp_path / "e.json"), MODELS, latency_runs=1, bootstrap=10, names=names)
    assert json.loads((tmp_path / "r.json").read_text())["n"] == len(names) == 12
    for tier, rec in res["tiers"].items():
        # The unperturbed figures are evaluate()'s (same device path, same threshold and temperature).
        assert rec["clean"]["accuracy"] == pytest.approx(ev["tiers"][tier]["accuracy"])
        assert rec["clean"]["malignant_sensitivity"] == pytest.approx(ev["tiers"][tier]["malignant_sensitivity"])
        assert set(rec["perturbed"]) == set(perturb.suite(0))
        for m in rec["perturbed"].values():
            assert m["accuracy_drop"] == pytest.approx(rec["clean"]["accuracy"] - m["accuracy"])
            lo, hi = m["ci95_drop"]["accuracy_drop"]
            assert -1 <= lo <= hi <= 1
    assert res["target"]["tier"] == max(res["tiers"].items(), key=lambda kv: kv[1]["rank"])[0]


def test_robustness_cli_refuses_a_segmentation_folder(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("image,patient\na,1\n")
    assert robustness.main(["--data", str(tmp_path), "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "BUSI-style folder" in err[0]


def test_temperature_fit_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (20000, 3))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = (rng.random((len(z), 1)) > np.cumsum(p, 1)).sum(1)  # labels drawn from softmax(z)
    t = C.fit_temperature(3.0 * z, y)  # logits three times too large
    assert t == pytest.approx(3.0, rel=0.05)
    assert C.ece(p, y) < 0.02 < C.ece(np.exp(3 * z) / np.exp(3 * z).sum(1, keepdims=True), y)


def test_ece_on_known_cases():
    probs = np.tile([0.9, 0.05, 0.05], (10, 1))
    y = np.array([0] * 6 + [1] * 4)   # 90 % confident, 60 % right
    assert C.ece(probs, y) == pytest.approx(0.3)
    r = C.reliability(probs, y)
    assert r["count"][13] == 10 and sum(r["count"]) == 10  # 0.9 falls in (13/15, 14/15]


def test_legacy_clean_split_drops_leaked_validation_and_test_images():
    labels = np.array([0] * 20 + [1] * 20 + [2] * 10)
    groups = list(range(50))
    for a, b in ((0, 1), (20, 21), (40, 41), (5, 6)):
        groups[b] = groups[a]  # near-duplicate pairs
    info = {"groups": groups, "excluded": [5, 6]}
    s = heldout.legacy_clean_split(type("Items", (), {"labels": labels})(), info, seed=2, n_folds=5)
    g = np.asarray(groups)
    assert not set(g[s.val].tolist()) & set(g[s.train].tolist())
    seen = set(s.train.tolist()) | set(s.val.tolist())
    for i in s.test:  # no near-duplicate of a test image was trained or validated on
        assert not seen & (set(np.flatnonzero(g == g[i]).tolist()) - {int(i)})
    assert len(s.test) < 10  # the legacy fold holds 10; at least one leaked image was dropped
    assert not {5, 6} & (set(s.val.tolist()) | set(s.test.tolist()))
    assert isinstance(s, splits.Split)


def test_shipped_manifest_carries_a_calibration_the_engine_loads():
    from firmware_py.inference.manifest import load_manifest

    tiers = [t for t in E.load_tiers(MODELS) if t["task"] == "classify"]
    assert tiers and all(0.05 <= t["calibration"]["temperature"] <= 20 for t in tiers)
    loaded = load_manifest(os.path.join(MODELS, "manifest.yaml"))
    by_name = {t.name: t for t in loaded.tiers}
    for t in tiers:
        assert by_name[t["name"]].calibration.temperature == pytest.approx(t["calibration"]["temperature"])


def test_build_checkpoints_stay_out_of_the_models_folder(tmp_path):
    """`models sign` refuses any .tflite under the models folder the manifest does not list, and a
    finished tier's checkpoint is one: a work dir inside models/ checkpoints under .cache instead."""
    from firmware_py.models.build.checkpoint import root

    models = tmp_path / "repo" / "models"
    (models / "report" / "cv").mkdir(parents=True)
    inside = root(str(models / "report" / "cv"), str(models))
    assert not os.path.realpath(inside).startswith(os.path.realpath(str(models)) + os.sep)
    assert inside == str(tmp_path / "repo" / ".cache" / "models-build" / "cv" / "ckpt")
    assert root(str(tmp_path / "elsewhere"), str(models)) == str(tmp_path / "elsewhere" / "ckpt")


def test_build_status_reads_progress_lines_across_a_resume(tmp_path):
    from firmware_py.models.build import status

    log = tmp_path / "build.log"
    bar = "INFO [#.....] 3.3% classify fold 0"
    log.write_text("\n".join([
        f"2026-12-02 00:30:00,001 {bar} teacher train epoch 9/100 loss 1.0500 eta 9 min",
        f"2026-12-02 00:30:30,001 {bar} teacher train epoch 10/100 loss 1.0400 eta 9 min",
        f"2026-12-02 00:31:10,001 {bar} teacher train epoch 11/100 loss 1.0300 eta 9 min",
        "2026-12-02 00:40:00,000 INFO classify fold 0 teacher train: resumed after epoch 11 of 100 (x)",
        f"2026-12-02 00:45:00,001 {bar} teacher train epoch 12/100 loss 1.0200 eta 9 min",  # 5 min: the restart
        f"2026-12-02 00:45:20,001 {bar} busi-cls-fire-r64 distil epoch 1/80 loss 2.0 eta 9 min"]) + "\n")
    st = status.from_log(str(log))
    t = st["classify fold 0 teacher train"]
    assert (t["epoch"], t["epochs"], t["loss"]) == (12, 100, 1.02)
    assert t["s_per_epoch"] == 40.0  # median of 30, 40 and the restart's 290 s
    assert st["classify fold 0 busi-cls-fire-r64 distil"]["s_per_epoch"] is None
