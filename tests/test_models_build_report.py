"""The report's grouped cross-validation table, from fold JSONs laid out as the build writes them."""
import json
import os

from firmware_py.models.build import report


def _fold(root, work, fold, acc, auc, budget=(40, 32, 6)):
    tiers = {"teacher": {"rank": -1, "float": {"accuracy": acc + 0.05, "malignant_auc": auc}},
             "small": {"rank": 0, "int8": {"accuracy": acc, "malignant_auc": auc}}}
    run = {"fold": fold, "tiers": tiers, "seconds": 3000, "n_test": 122,
           "settings": dict(zip(("teacher_epochs", "student_epochs", "prune_epochs"), budget))}
    os.makedirs(os.path.join(root, "report", work), exist_ok=True)
    with open(os.path.join(root, "report", work, f"busi_fold{fold}.json"), "w") as fh:
        json.dump(run, fh)


def test_folds_sharing_a_budget_are_averaged_beside_the_leaky_mean_and_others_are_not(tmp_path):
    root = str(tmp_path)
    _fold(root, "cv_device", 0, 0.70, 0.90, budget=(100, 80, 15))  # another budget: shown, not averaged
    _fold(root, "cv_device", 1, 0.60, 0.80)
    _fold(root, "cv_device", 2, 0.70, 0.90)
    for k, acc in ((0, 0.9), (1, 0.8), (2, 0.6)):
        _fold(root, "cv", k, acc, 0.95)
    text = "\n".join(report._grouped_cv(root, os.path.join(root, "report", "cv_device")))
    assert "3 of 5 folds run" in text and "| fold 0 | fold 1 | fold 2 | folds 1, 2: mean +- sd |" in text
    small = next(ln for ln in text.splitlines() if ln.startswith("| small |"))
    # mean 65.0, sample sd of (60, 70) 7.1; AUC 85.0 +- 7.1; the leaky folds 1 and 2 average 70.0
    assert small.endswith("| 65.0 +- 7.1 / 85.0 +- 7.1 (leaky 70.0) |")
    assert "those leaky runs had the same epoch budget and the basic augmentation" in text
    assert "Not run yet: fold(s) 3, 4" in text and "--folds 3,4" in text


def test_no_two_folds_at_one_budget_means_no_mean_column(tmp_path):
    root = str(tmp_path)
    _fold(root, "cv_device", 0, 0.70, 0.90, budget=(100, 80, 15))
    _fold(root, "cv_device", 1, 0.60, 0.80)
    text = "\n".join(report._grouped_cv(root, os.path.join(root, "report", "cv_device")))
    assert "mean +- sd" not in text and "| fold 0 | fold 1 |" in text
