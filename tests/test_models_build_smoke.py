"""Smoke test of the model build pipeline: the smallest BUSI tier, a few steps, a tiny subset.

Exercises the same code as the full build (augmentation, distillation, magnitude pruning,
full-integer int8 conversion, metrics, tier record, manifest generation) so it cannot rot.
Needs TensorFlow (the `train` extra); CI's test extra does not install it, so there it skips
with the reason below and the lead's CI step with the train extra runs it. Uses 8 real BUSI
images per class when the shared data is reachable; otherwise a generated folder in the BUSI
layout (speckle with no / round / irregular hypoechoic lesions), so a clone anywhere, without
the data, still exercises every stage.
"""
import json
import os

import numpy as np
import pytest

tf = pytest.importorskip(
    "tensorflow", reason="TensorFlow not installed: the model build needs the train extra "
    "(pip install -e .[train]); CI's test extra skips this smoke test")

from firmware_py.models.build import data as D  # noqa: E402
from firmware_py.models.build import fold as F  # noqa: E402
from firmware_py.models.build import interp, manifest, splits, tfutil, tiers  # noqa: E402

DATA = os.environ.get("FIRMWARE_PY_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
BUSI = os.path.join(DATA, "busi")


def _write_synthetic_busi(root, per_class=8, seed=7):
    """A folder laid out like ../shared/data/busi: labels.csv + one PNG folder per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:128]
    rows = []
    for label in D.BUSI_LABELS:
        os.makedirs(os.path.join(root, label), exist_ok=True)
        for k in range(per_class):
            tissue = rng.rayleigh(1.0, (96, 128)) * np.exp(-yy / 160.0)  # speckle with depth attenuation
            if label != "normal":
                cy, cx, r = rng.uniform(35, 60), rng.uniform(40, 88), rng.uniform(10, 18)
                angle = np.arctan2(yy - cy, xx - cx)
                # Benign: smooth oval margin; malignant: spiculated margin.
                edge = r * (1 + (0.0 if label == "benign" else 0.35 * np.sin(7 * angle + k)))
                tissue[np.hypot((yy - cy) * 1.4, xx - cx) < edge] *= 0.2
            name = f"{label}/{label}_{k:03d}.png"
            Image.fromarray(np.clip(tissue * 70, 0, 255).astype(np.uint8)).save(os.path.join(root, name))
            rows.append(f"{name},{label}")
    with open(os.path.join(root, "labels.csv"), "w") as fh:
        fh.write("image,label\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def busi_subset(tmp_path_factory):
    src = BUSI
    if not os.path.isfile(os.path.join(BUSI, "labels.csv")):
        src = str(tmp_path_factory.mktemp("busi_synthetic"))
        _write_synthetic_busi(src)
    return D.load_busi(src, limit_per_class=8)


@pytest.mark.slow
def test_smallest_tier_trains_and_converts_to_int8(busi_subset, tmp_path):
    tf_ = tfutil.setup_tf(seed=7, threads=2)
    smallest = min(tiers.BUSI_STUDENTS, key=lambda s: s.rank)
    # The smallest tier doubles as its own teacher here: a few steps, every stage of the pipeline.
    cfg = tiers.TrainSettings(seed=7, batch=8, teacher_epochs=1, student_epochs=1, prune_epochs=1,
                              qat_epochs=1, qat_trigger=1.0, prune_gate=1.0)  # gate open: pruning is tested
    split = splits.fold_split(list(range(len(busi_subset.labels))), busi_subset.labels, [], 4, 0, seed=7,
                              val_fraction=0.25)
    te = split.test
    ckpt = str(tmp_path / "ckpt")
    res = F.run_fold(tf_, "classify", busi_subset, split, smallest, (smallest,), cfg, fold=0,
                     progress=None, ship_dir=str(tmp_path), classes=busi_subset.classes, ckpt_dir=ckpt)
    # A rerun of the same split and settings resumes: the teacher and the student come from the
    # checkpoint (no training), so the int8 file and the record are the first run's.
    first = (tmp_path / smallest.file).read_bytes()
    again = F.run_fold(tf_, "classify", busi_subset, split, smallest, (smallest,), cfg, fold=0,
                       progress=None, ship_dir=str(tmp_path), classes=busi_subset.classes, ckpt_dir=ckpt)
    assert (tmp_path / smallest.file).read_bytes() == first
    assert again["tiers"][smallest.name] == json.loads(json.dumps(res["tiers"][smallest.name]))

    rec = res["tiers"][smallest.name]
    assert rec["sparsity"]["pruned_kernels"] == pytest.approx(cfg.prune_target, abs=0.02)
    assert 0.0 <= rec["int8"]["accuracy"] <= 1.0 and rec["int8"]["n"] == len(te)

    path = tmp_path / smallest.file
    it = interp.interpreter(str(path))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert list(inp["shape"]) == [1, smallest.res, smallest.res, 1]
    assert inp["quantization"][0] == pytest.approx(1 / 255, rel=1e-5) and inp["quantization"][1] == -128
    assert list(out["shape"]) == [1, 3]

    record = json.loads((tmp_path / "report" / "tiers" / f"{smallest.name}.json").read_text())
    assert record["decode"] == "softmax" and record["labels"] == list(busi_subset.classes)
    text = manifest.generate(str(tmp_path))
    import yaml
    doc = yaml.safe_load(text)
    (tier,) = doc["tiers"]
    assert tier["files"]["cpu"]["bytes"] == path.stat().st_size
    assert tier["output"]["applied_in_model"] is False
