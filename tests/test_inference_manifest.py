"""Manifest schema: a valid manifest parses; each schema problem is refused in one line naming the field."""
import copy
import os
import sys

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
from model_sets import tier_entry  # noqa: E402

from firmware_py.errors import ModelError  # noqa: E402
from firmware_py.inference.manifest import load_manifest, parse_manifest  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(scope="module")
def doc():
    return {
        "schema_version": 1,
        "tiers": [
            tier_entry(DATA, "cls-a", "cls_int8.tflite", rank=0),
            tier_entry(DATA, "cls-b", "cls_int8_b.tflite", rank=1, accel={"edgetpu": "cls_edgetpu.tflite"}),
            tier_entry(DATA, "seg-a", "seg_int8.tflite", task="segment", rank=0),
        ],
    }


def text(d):
    return yaml.safe_dump(d, sort_keys=False)


def test_valid_manifest_parses_with_every_field(doc):
    m = parse_manifest(text(doc), "m.yaml")
    assert [t.name for t in m.ladder("classify")] == ["cls-a", "cls-b"]
    b = m.tier("cls-b")
    assert sorted(b.files) == ["cpu", "edgetpu"]
    assert b.input.shape == (1, 32, 32, 1) and b.input.dtype == "int8"
    assert b.input.quantization.zero_point == -128
    assert b.preprocess.grid == (32, 32) and b.preprocess.dynamic_range_db == 60.0
    assert b.output.labels == ("normal", "benign", "malignant")
    assert b.output.threshold.label == "malignant" and b.output.applied_in_model is True
    assert len(m.files()) == 4  # every distinct file, which the signature's digests cover
    assert m.ladder("segment")[0].output.decode == "sigmoid"


def test_the_trainers_manifest_parses_when_present():
    path = os.path.join(os.path.dirname(DATA), "..", "models", "manifest.yaml")
    if not os.path.exists(path):
        pytest.skip("models/manifest.yaml not built yet (the trainer writes it)")
    m = load_manifest(path)
    assert m.tiers and all("cpu" in t.files for t in m.tiers)


def broken(doc, edit):
    d = copy.deepcopy(doc)
    edit(d)
    return text(d)


CASES = [
    ("no cpu twin", lambda d: d["tiers"][0]["files"].pop("cpu"), "every tier needs a CPU twin"),
    ("bad digest", lambda d: d["tiers"][0]["files"]["cpu"].update(sha256="abc"), "64 hex digits"),
    ("absolute path", lambda d: d["tiers"][0]["files"]["cpu"].update(path="/etc/passwd"), "relative"),
    ("dot-dot path", lambda d: d["tiers"][0]["files"]["cpu"].update(path="../x.tflite"), "relative"),
    ("unknown task", lambda d: d["tiers"][0].update(task="detect"), "tiers[cls-a].task"),
    ("grid != input", lambda d: d["tiers"][0]["preprocess"].update(grid=[64, 64]), "must equal the input"),
    ("bad decode", lambda d: d["tiers"][0]["output"].update(decode="sigmoid"), "does not fit task classify"),
    ("threshold label", lambda d: d["tiers"][0]["output"]["threshold"].update(label="cyst"), "not one of the labels"),
    ("threshold range", lambda d: d["tiers"][0]["output"]["threshold"].update(value=1.5), "probability"),
    ("duplicate name", lambda d: d["tiers"][1].update(name="cls-a"), "duplicate tier name"),
    ("duplicate rank", lambda d: d["tiers"][1].update(rank=0), "share task/rank"),
    ("batch 2", lambda d: d["tiers"][0]["input"].update(shape=[2, 32, 32, 1]), "batch 2"),
    ("zero scale", lambda d: d["tiers"][0]["input"]["quantization"].update(scale=0), "must be > 0"),
    ("zp range", lambda d: d["tiers"][0]["input"]["quantization"].update(zero_point=300), "outside -128..127"),
    ("missing input", lambda d: d["tiers"][0].pop("input"), "tiers[cls-a].input: missing"),
    ("schema 2", lambda d: d.update(schema_version=2), "not supported"),
    ("no tiers", lambda d: d.update(tiers=[]), "empty"),
    ("same file two digests", lambda d: d["tiers"][1]["files"]["cpu"].update(
        path="cls_int8.tflite", sha256="0" * 64), "listed twice with different sha256"),
]


@pytest.mark.parametrize("name,edit,needle", CASES, ids=[c[0] for c in CASES])
def test_schema_problem_is_one_line_naming_the_field(doc, name, edit, needle):
    with pytest.raises(ModelError) as e:
        parse_manifest(broken(doc, edit), "m.yaml")
    msg = str(e.value)
    assert needle in msg
    assert msg.startswith("m.yaml: ") and "\n" not in msg


def test_not_yaml_and_missing_file_are_one_line(tmp_path):
    with pytest.raises(ModelError, match=r"not valid YAML at line \d+"):
        parse_manifest("tiers: [\n  {", "m.yaml")
    with pytest.raises(ModelError, match="manifest not found"):
        load_manifest(str(tmp_path / "nope.yaml"))
