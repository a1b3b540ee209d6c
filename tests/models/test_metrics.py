"""Metrics against small cases computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice

from models.metrics import classification_metrics, dice, region_dice, roc_auc, specificity
from models.names import REGION_LABELS, Metric, Region


def _probs(p1: list[float]) -> np.ndarray:
    p = np.asarray(p1)
    return np.stack([1 - p, p], axis=1)


def test_binary_metrics_by_hand() -> None:
    # y_true 0 0 1 1 1 ; class-1 scores .1 .6 .8 .7 .4 -> predictions 0 1 1 1 0
    # TP 2, FN 1, FP 1, TN 1: accuracy 3/5, recall 2/3, precision 2/3, F1 2/3, spec 1/2
    # kappa: po .6, pe (2/5)(2/5) + (3/5)(3/5) = .52 -> (.6 - .52) / .48 = 1/6
    # AUC: positive>negative in 5 of 6 pairs (0.4 < 0.6 is the miss) -> 5/6
    m = classification_metrics(np.array([0, 0, 1, 1, 1]), _probs([0.1, 0.6, 0.8, 0.7, 0.4]))
    assert m[Metric.ACCURACY] == pytest.approx(0.6)
    assert m[Metric.RECALL] == pytest.approx(2 / 3)
    assert m[Metric.F1] == pytest.approx(2 / 3)
    assert m[Metric.SPECIFICITY] == pytest.approx(0.5)
    assert m[Metric.KAPPA] == pytest.approx(1 / 6)
    assert m[Metric.AUC] == pytest.approx(5 / 6)
    assert m[Metric.COUNT] == 5


def test_multiclass_specificity_by_hand() -> None:
    # true 0 1 2 2, pred 0 2 2 1 -> per class TN/(TN+FP): 3/3, 2/3, 1/2 -> mean 13/18
    assert specificity(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]), 3) == pytest.approx(13 / 18)


def test_multiclass_auc_one_vs_rest() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    perfect = np.eye(3)[y] * 0.8 + 0.2 / 3
    assert roc_auc(y, perfect) == pytest.approx(1.0)
    inverted = np.eye(3)[(y + 1) % 3]
    assert roc_auc(y, inverted) < 0.5


def test_multiclass_auc_with_two_classes_present() -> None:
    # classes 0 and 2 only: AUC of the class-2 probability; positives .7 .15, negatives .2 .1
    # -> .7 beats both, .15 beats .1 only: 3 of 4 pairs
    probs = np.array([[0.6, 0.2, 0.2], [0.8, 0.1, 0.1], [0.2, 0.1, 0.7], [0.75, 0.1, 0.15]])
    assert roc_auc(np.array([0, 0, 2, 2]), probs) == pytest.approx(3 / 4)


def test_single_class_gives_nan_not_an_error() -> None:
    m = classification_metrics(np.array([1, 1, 1]), _probs([0.9, 0.2, 0.7]))
    assert math.isnan(m[Metric.AUC])
    assert math.isnan(m[Metric.SPECIFICITY])  # no negatives
    assert m[Metric.ACCURACY] == pytest.approx(2 / 3)
    both_constant = classification_metrics(np.array([0, 0]), _probs([0.1, 0.2]))
    assert both_constant[Metric.ACCURACY] == 1.0
    assert math.isnan(both_constant[Metric.KAPPA])


def test_empty_head_gives_nan_and_zero_count() -> None:
    m = classification_metrics(np.array([], dtype=int), np.empty((0, 3)))
    assert m[Metric.COUNT] == 0
    assert math.isnan(m[Metric.AUC]) and math.isnan(m[Metric.ACCURACY])


def test_region_dice_by_hand() -> None:
    truth = np.array([0, 1, 2, 3, 3, 0])
    pred = np.array([0, 1, 2, 3, 0, 3])
    # ET {3,4} vs {3,5}: 2*1/4; TC {1,3,4} vs {1,3,5}: 2*2/6; WT {1..4} vs {1,2,3,5}: 2*3/8
    assert region_dice(pred, truth) == pytest.approx(
        {Region.ET: 0.5, Region.TC: 2 / 3, Region.WT: 0.75}
    )


def test_dice_empty_cases() -> None:
    empty = np.zeros(5, dtype=bool)
    assert dice(empty, empty) == 1.0
    assert dice(np.array([1, 0, 0, 0, 0], dtype=bool), empty) == 0.0
    with pytest.raises(ValueError):
        region_dice(np.zeros(3), np.zeros(4))


def test_region_dice_agrees_with_monai() -> None:
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 4, (3, 8, 8))
    pred = np.where(rng.random((3, 8, 8)) < 0.7, truth, rng.integers(0, 4, (3, 8, 8)))
    ours = region_dice(pred, truth)
    for region, labels in REGION_LABELS.items():
        p = torch.from_numpy(np.isin(pred, labels)).float()[None, None]
        t = torch.from_numpy(np.isin(truth, labels)).float()[None, None]
        theirs = float(compute_dice(p, t, include_background=True))
        assert ours[region] == pytest.approx(theirs)
