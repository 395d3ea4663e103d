"""How `models abstention` chooses thresholds (issue 16 point 7): the confidence threshold is stable
with ~50 validation images, and the no-nodule rule is the decoder's."""
from __future__ import annotations

import numpy as np

from firmware_py.models.build.abstention import confidence_threshold, no_nodule


def test_confidence_threshold_moves_little_when_one_image_goes():
    rng = np.random.default_rng(0)
    u = rng.normal(2.0, 1.0, 54)  # logit((c - 1/3) / (1 - c)) of 54 validation confidences
    conf = (1 / 3 + np.exp(u)) / (1 + np.exp(u))
    full, without = confidence_threshold(conf, 3, 0.01), confidence_threshold(np.sort(conf)[1:], 3, 0.01)
    empirical = np.quantile(conf, 0.01), np.quantile(np.sort(conf)[1:], 0.01)
    assert abs(full - without) < abs(empirical[0] - empirical[1]) / 2
    assert 1 / 3 < full < np.median(conf)


def test_no_nodule_rule_matches_the_decoders_order():
    peaks, comps = np.array([0.99, 0.999, 0.999, 0.999]), np.array([50, 50, 5, 0])
    got = no_nodule(peaks, comps, {"min_peak_probability": 0.995, "min_area_px": 10})
    assert got.tolist() == [True, False, True, True]
    assert no_nodule(peaks, comps, {"min_peak_probability": None, "min_area_px": 0}).tolist() == [False] * 3 + [True]
