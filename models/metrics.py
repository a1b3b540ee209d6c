"""Per-head classification metrics and BraTS region Dice.

Conventions, chosen so small or lopsided site splits never crash a federated round:

* A metric that is undefined for the data returns ``nan`` rather than raising: ROC AUC when
  ``y_true`` holds a single class, specificity with no negatives, kappa when both raters use a
  single identical class. Callers aggregating across sites should use ``nanmean``/``nanmedian``.
* Binary heads: F1 and recall are for class 1 (e.g. MGMT methylated); specificity is the recall
  of class 0. Multiclass heads (grade): macro averages; specificity is the mean over classes of
  TN / (TN + FP); AUC is one-vs-rest, macro.
* Dice: a region empty in both prediction and ground truth scores 1.0 (BraTS convention); empty
  ground truth with a non-empty prediction scores 0.0.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
)

from models.names import REGION_LABELS, Metric, Region

NAN = float("nan")


def roc_auc(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """ROC AUC from class probabilities ``(N, C)``; ``nan`` when fewer than two classes occur.

    Binary: AUC of the class-1 probability. Multiclass: one-vs-rest macro AUC over the classes
    present in ``y_true`` (probabilities renormalised over those columns, as sklearn requires).
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probabilities, dtype=np.float64)
    present = np.unique(y_true)
    if present.size < 2:
        return NAN
    if probs.shape[1] == 2:
        return float(roc_auc_score(y_true, probs[:, 1]))
    if present.size == 2:
        positive = present[1]
        return float(roc_auc_score(y_true == positive, probs[:, positive]))
    sub = probs[:, present]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
    return float(roc_auc_score(y_true, sub, multi_class="ovr", average="macro", labels=present))


def specificity(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """TN / (TN + FP): of class 0 for binary heads, macro over classes otherwise."""
    labels = list(range(num_classes))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    total = cm.sum()
    values = []
    for k in labels if num_classes > 2 else [1]:
        fp = cm[:, k].sum() - cm[k, k]
        tn = total - cm[k, :].sum() - cm[:, k].sum() + cm[k, k]
        values.append(tn / (tn + fp) if tn + fp else NAN)
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else NAN


def _kappa(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int]) -> float:
    """Cohen's kappa; ``nan`` (documented above) instead of sklearn's warning when undefined."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(y_true, y_pred, labels=labels))


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy, F1, kappa, AUC, recall, specificity and count for one head.

    Rows with a missing label (-1) must already be removed. Empty input gives ``n = 0`` and
    ``nan`` everywhere.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probabilities, dtype=np.float64)
    n, num_classes = probs.shape
    if n == 0:
        return {str(m): NAN for m in _CLASSIFICATION} | {Metric.COUNT: 0.0}
    y_pred = probs.argmax(axis=1)
    labels = list(range(num_classes))
    binary = num_classes == 2
    average = "binary" if binary else "macro"
    extra = {"pos_label": 1} if binary else {"labels": labels}
    return {
        Metric.ACCURACY: float(accuracy_score(y_true, y_pred)),
        Metric.F1: float(f1_score(y_true, y_pred, average=average, zero_division=0, **extra)),
        Metric.KAPPA: _kappa(y_true, y_pred, labels),
        Metric.AUC: roc_auc(y_true, probs),
        Metric.RECALL: float(
            recall_score(y_true, y_pred, average=average, zero_division=0, **extra)
        ),
        Metric.SPECIFICITY: specificity(y_true, y_pred, num_classes),
        Metric.COUNT: float(n),
    }


_CLASSIFICATION = (
    Metric.ACCURACY,
    Metric.F1,
    Metric.KAPPA,
    Metric.AUC,
    Metric.RECALL,
    Metric.SPECIFICITY,
)


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty (BraTS convention)."""
    prediction = np.asarray(prediction, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    denominator = prediction.sum() + truth.sum()
    if denominator == 0:
        return 1.0
    return float(2.0 * np.logical_and(prediction, truth).sum() / denominator)


def region_dice(prediction: np.ndarray, truth: np.ndarray) -> dict[Region, float]:
    """Dice of ET, TC and WT between two integer label maps of the same shape."""
    if prediction.shape != truth.shape:
        raise ValueError(f"shapes differ: {prediction.shape} vs {truth.shape}")
    return {
        region: dice(np.isin(prediction, labels), np.isin(truth, labels))
        for region, labels in REGION_LABELS.items()
    }
