"""The report's grouped cross-validation table, from fold JSONs laid out as the build writes them."""
import json
import os

from firmware_py.models.build import report


def _fold(root, work, fold, acc, auc, budget=(40, 32, 6), task="busi"):
    first, second = ("accuracy", "malignant_auc") if task == "busi" else ("dice", "iou")
    tiers = {"teacher": {"rank": -1, "float": {first: acc + 0.05, second: auc}},
             "small": {"rank": 0, "int8": {first: acc, second: auc}}}
    run = {"fold": fold, "tiers": tiers, "seconds": 3000, "n_test": 122,
           "settings": dict(zip(("teacher_epochs", "student_epochs", "prune_epochs"), budget))}
    os.makedirs(os.path.join(root, "report", work), exist_ok=True)
    with open(os.path.join(root, "report", work, f"{task}_fold{fold}.json"), "w") as fh:
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
    assert "across those folds the sd of accuracy reaches 7.1 points" in text
    assert "Not run yet: fold(s) 3, 4" in text and "--folds 3,4 --epochs-scale 0.4" in text


def test_no_two_folds_at_one_budget_means_no_mean_column(tmp_path):
    root = str(tmp_path)
    _fold(root, "cv_device", 0, 0.70, 0.90, budget=(100, 80, 15))
    _fold(root, "cv_device", 1, 0.60, 0.80)
    text = "\n".join(report._grouped_cv(root, os.path.join(root, "report", "cv_device")))
    assert "mean +- sd" not in text and "| fold 0 | fold 1 |" in text


def test_ddti_folds_get_their_own_table_of_dice_and_iou_beside_the_patient_split_folds(tmp_path):
    root = str(tmp_path)
    _fold(root, "cv_device", 0, 0.60, 0.50, budget=(40, 32, 6))  # a BUSI fold: not in the DDTI table
    for k, dice, iou in ((1, 0.80, 0.70), (2, 0.84, 0.74)):
        _fold(root, "cv_device", k, dice, iou, budget=(30, 24, 4), task="ddti")
        _fold(root, "cv", k, dice + 0.02, iou, budget=(30, 24, 4), task="ddti")
    work = os.path.join(root, "report", "cv_device")
    text = "\n".join(report._grouped_cv(root, work, "ddti"))
    assert "(DDTI, device augmentation): 2 of 5 folds run" in text and "Dice / IoU on each fold" in text
    small = next(ln for ln in text.splitlines() if ln.startswith("| small |"))
    # Dice 82.0 +- 2.8 (sample sd of 80, 84), IoU 72.0 +- 2.8; the patient-split folds average 84.0
    assert small == "| small | int8 | 80.0 / 70.0 (patient-split 82.0) | 84.0 / 74.0 (patient-split 86.0) " \
                    "| 82.0 +- 2.8 / 72.0 +- 2.8 (patient-split 84.0) |"
    assert "those patient-split runs had the same epoch budget" in text and "Dice then IoU" in text
    assert "across those folds the sd of Dice reaches 2.8 points" in text
    # fold 0 (the shipped tiers' fold) at the full budget, the others at the patient-split folds' budget
    command = [ln for ln in text.splitlines() if ln.startswith("nice -n 19")]
    assert command[0].endswith("--tasks ddti --no-ship --work-dir " + os.path.relpath(work, str(tmp_path.parent))
                               + " --threads 2 --folds 0")
    assert command[1].endswith("--folds 3,4 --epochs-scale 0.3") and len(command) == 2
    assert "leaky" not in text and "fold 0 |" not in text
