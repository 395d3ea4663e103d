"""Issue 17 point 3: the shipped tiers' figures re-measured with the interpreter this process runs.

TensorFlow-free; the shipped int8 tiers on a few real BUSI and DDTI images (../shared/data), in a
copy of the models folder. Passes with either interpreter package (the figures are recorded under
whichever one runs).
"""
import csv
import json
import os
import shutil

import numpy as np
import pytest
import yaml

from firmware_py.models.build import data as D
from firmware_py.models.build import evaluate as E
from firmware_py.models.build import heldout, remeasure, report
from test_models_build_evaluate import _busi_subset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("FIRMWARE_PY_DATA", os.path.join(REPO, "..", "shared", "data"))
MODELS = os.path.join(REPO, "models")


def _need(kind):
    src = os.path.join(DATA, kind)
    if not os.path.isfile(os.path.join(src, "labels.csv")):
        pytest.skip(f"{kind} data not found at {src}: set FIRMWARE_PY_DATA to the shared data folder")
    return src


def _copy_rows(src, dst, rows, files):
    for r in rows:
        for f in files(r):
            os.makedirs(os.path.dirname(os.path.join(dst, f)), exist_ok=True)
            shutil.copy(os.path.join(src, f), os.path.join(dst, f))
    with open(os.path.join(dst, "labels.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _tiny_data(root, per_class=10, patients=12):
    """The first `per_class` BUSI images of each class and the DDTI images of the first `patients` patients."""
    _busi_subset(os.path.join(root, "busi"), per_class)
    src = _need("ddti")
    with open(os.path.join(src, "labels.csv")) as fh:
        rows = list(csv.DictReader(fh))
    first = list(dict.fromkeys(r["patient"] for r in rows))[:patients]
    keep = [r for r in rows if r["patient"] in first]
    _copy_rows(src, os.path.join(root, "ddti"), keep,
               lambda r: [f"{sub}/{r['image']}.png" for sub in ("images", "masks")])
    return root


def _models_copy(dst):
    os.makedirs(os.path.join(dst, "report"))
    for f in os.listdir(MODELS):
        if f.endswith(".tflite") or f == "manifest.yaml":
            shutil.copy(os.path.join(MODELS, f), dst)
    for sub in ("tiers", "cv"):
        shutil.copytree(os.path.join(MODELS, "report", sub), os.path.join(dst, "report", sub))
    return dst


def test_legacy_ddti_split_is_the_one_the_shipped_tiers_were_built_on():
    items = D.load_ddti(_need("ddti"))
    with open(os.path.join(MODELS, "report", "cv", "ddti_fold0.json")) as fh:
        built = json.load(fh)
    s = heldout.legacy_ddti_split(items, 1234)
    # the build's own counts (its fold result), and a partition of every image
    assert (len(s.train), len(s.val), len(s.test)) == (built["n_train"], built["n_val"], built["n_test"])
    assert sorted(np.concatenate([s.train, s.val, s.test]).tolist()) == list(range(len(items.images)))
    patients = np.asarray(items.patients)
    assert not set(patients[s.test]) & set(patients[np.concatenate([s.train, s.val])])  # test by patient


def test_remeasure_writes_the_running_interpreters_figures_into_records_and_manifest(tmp_path):
    data = _tiny_data(str(tmp_path / "data"))
    models = _models_copy(str(tmp_path / "models"))
    before = {f: json.load(open(os.path.join(models, "report", "tiers", f))) for f in
              os.listdir(os.path.join(models, "report", "tiers"))}
    assert remeasure.main(["--data", data, "--models-dir", models, "--write", "--no-report-jsons",
                           "--latency-rounds", "1", "--latency-runs", "3", "--bootstrap", "10",
                           "--keep-scratch", str(tmp_path / "scratch")]) == 0
    info = remeasure.interpreter_info()
    doc = json.load(open(os.path.join(models, "report", remeasure.COMPARE_JSON)))
    entry = doc["interpreters"][remeasure.label(info)]
    assert entry["interpreter"] == info
    manifest = yaml.safe_load(open(os.path.join(models, "manifest.yaml")))["tiers"]
    text = open(os.path.join(models, "manifest.yaml")).read()
    assert text.count(f"measured with {remeasure.label(info)}") == len(manifest) == len(entry["tiers"])
    for f, old in before.items():
        rec = json.load(open(os.path.join(models, "report", "tiers", f)))
        assert rec["interpreter"]["package"] == info["package"]
        # fields a re-measure does not own stay as they were (abstention belongs to its own step)
        mine = (*remeasure.RECORD_FIELDS, "interpreter")
        assert {k: v for k, v in rec.items() if k not in mine} == {k: v for k, v in old.items() if k not in mine}
        assert remeasure.tier_figures(rec) == entry["tiers"][rec["name"]]
        assert rec["metrics"]["n"] < old["metrics"]["n"]  # measured on the tiny set, not carried over
    # The records' test figures against `models evaluate` on the same test images with the regenerated
    # manifest (its temperature and threshold): two code paths, one answer.
    for kind, task in (("busi", "classify"), ("ddti", "segment")):
        names = remeasure._fold0_test_names(kind, os.path.join(data, kind), models)
        ev = E.evaluate(os.path.join(data, kind), str(tmp_path / f"ev_{kind}.json"), models, latency_runs=1,
                        bootstrap=5, names=names)
        for name, m in ev["tiers"].items():
            rec = json.load(open(os.path.join(models, "report", "tiers", name + ".json")))["metrics"]
            for k in (("accuracy", "malignant_auc", "malignant_sensitivity", "malignant_specificity")
                      if task == "classify" else ("dice", "iou")):
                assert m[k] == pytest.approx(rec[k], abs=1e-6), (name, k)


def test_report_shows_both_interpreters_with_the_shipped_one_last(tmp_path):
    models = _models_copy(str(tmp_path / "models"))
    tiers = {"busi-cls-fire-r64": {"accuracy": 0.80, "malignant_auc": 0.93, "threshold": 0.36,
                                   "latency_p50_ms": 0.30},
             "ddti-seg-ds-r64": {"dice": 0.858, "threshold": 0.6, "latency_p50_ms": 4.0}}
    newer = {"busi-cls-fire-r64": {**tiers["busi-cls-fire-r64"], "accuracy": 0.81, "latency_p50_ms": 0.06},
             "ddti-seg-ds-r64": {**tiers["ddti-seg-ds-r64"], "dice": 0.86}}
    doc = {"interpreters": {
        "ai-edge-litert 2.3.0": {"measured_at": "t1", "tiers": newer},
        "tflite-runtime 2.14.0": {"measured_at": "t0", "tiers": tiers}}}
    with open(os.path.join(models, "report", remeasure.COMPARE_JSON), "w") as fh:
        json.dump(doc, fh)
    for p in os.listdir(os.path.join(models, "report", "tiers")):
        path = os.path.join(models, "report", "tiers", p)
        rec = json.load(open(path))
        rec["interpreter"] = {"package": "ai-edge-litert", "version": "2.3.0", "module": "ai_edge_litert.interpreter"}
        json.dump(rec, open(path, "w"))
    assert report._records_interpreter(models) == "ai-edge-litert 2.3.0"
    text = "\n".join(report._interpreter_section(models))
    assert "## Interpreter: tflite-runtime 2.14.0 vs ai-edge-litert 2.3.0" in text
    assert "| busi-cls-fire-r64 | accuracy | 80.0 | 81.0 | +1.0 pts |" in text
    assert "| busi-cls-fire-r64 | CPU p50 ms | 0.30 | 0.06 | 0.20x |" in text
    assert "| ddti-seg-ds-r64 | Dice at the shipped threshold | 0.8580 | 0.8600 | +0.0020 |" in text
    assert "fold 1-4 models are not stored" in text
