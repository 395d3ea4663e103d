"""Retraining some students (`--tiers`): merged into the fold's results without losing the rest."""
import json

import pytest

from firmware_py.models.build import pipeline, report

TEACHER = "busi-cls-teacher-resnet-r128"
SETTINGS = {"teacher_epochs": 40, "student_epochs": 32, "prune_epochs": 6, "seed": 1234}


def _fold(tiers, settings=SETTINGS, seconds=1200.0):
    return {"fold": 1, "n_train": 500, "n_val": 80, "n_test": 125, "seconds": seconds,
            "settings": dict(settings), "tiers": tiers}


def _teacher(acc):
    return {"rank": -1, "float": {"accuracy": acc}}


def _student(rank, acc):
    return {"rank": rank, "int8": {"accuracy": acc}, "float": {"accuracy": acc}}


@pytest.fixture
def fold_json(tmp_path):
    path = tmp_path / "busi_fold1.json"
    path.write_text(json.dumps(_fold({TEACHER: _teacher(0.77), "small": _student(0, 0.60),
                                      "large": _student(2, 0.75)})))
    return path


def test_rerun_replaces_its_students_and_keeps_the_rest(fold_json):
    rerun = _fold({TEACHER: _teacher(0.79), "small": _student(0, 0.70)}, seconds=600.0)
    merged = pipeline._merge_rerun(str(fold_json), rerun, TEACHER)

    assert merged["tiers"]["small"]["int8"]["accuracy"] == 0.70
    assert merged["tiers"]["small"]["rerun_teacher_float"] == {"accuracy": 0.79}
    # The fold's teacher row is the one the untouched students were distilled from.
    assert merged["tiers"][TEACHER]["float"]["accuracy"] == 0.77
    assert merged["tiers"]["large"]["int8"]["accuracy"] == 0.75
    assert list(merged["tiers"]) == [TEACHER, "small", "large"]
    assert merged["seconds"] == 1200.0
    assert merged["reruns"][0]["tiers"] == ["small"] and merged["reruns"][0]["seconds"] == 600.0

    text = report._reruns_text(merged, "busi")
    assert "small retrained" in text and "accuracy 79.0 against 77.0" in text


def test_rerun_with_another_epoch_budget_is_refused(fold_json):
    rerun = _fold({TEACHER: _teacher(0.8), "small": _student(0, 0.7)},
                  settings=dict(SETTINGS, student_epochs=80))
    with pytest.raises(ValueError, match="same --epochs-scale"):
        pipeline._merge_rerun(str(fold_json), rerun, TEACHER)
    assert json.loads(fold_json.read_text())["tiers"]["small"]["int8"]["accuracy"] == 0.60


def test_unknown_tier_name_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="unknown tier.*busi-cls-fire-r64"):
        pipeline.build(str(tmp_path), tasks=("busi",), folds=(1,), work_dir=str(tmp_path),
                       ship=False, only=("busi-cls-nonesuch",))
