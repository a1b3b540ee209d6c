"""Collecting per-batch outputs into predictions and metrics (used by the Trainer).

Kept apart from the loop so the Flower client and the study code can compute the same metrics
from stored predictions without a model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from models.losses import LossResult, MultitaskLoss
from models.metrics import classification_metrics, region_dice
from models.names import MISSING_LABEL, BatchKey, Head, Metric, Region, metric_key


@dataclass
class Predictions:
    """Per-sample outputs of one split, in dataset order.

    ``labels[head]`` holds the true class or -1 (missing); ``probabilities[head]`` the softmax,
    ``(N, C)``; ``dice[region]`` one value per subject that has a segmentation.
    """

    labels: dict[str, np.ndarray] = field(default_factory=dict)
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    dice: dict[str, np.ndarray] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """``<head>_<metric>`` over labelled samples and ``<region>_dice`` (mean and median)."""
        out: dict[str, float] = {}
        for head, probs in self.probabilities.items():
            labels = self.labels[head]
            keep = labels != MISSING_LABEL
            for name, value in classification_metrics(labels[keep], probs[keep]).items():
                out[metric_key(head, name)] = value
        for region, values in self.dice.items():
            empty = values.size == 0
            out[metric_key(region, Metric.DICE)] = float("nan") if empty else float(values.mean())
            out[metric_key(region, Metric.DICE_MEDIAN)] = (
                float("nan") if empty else float(np.median(values))
            )
        return out


class Accumulator:
    """Running sums of losses (weighted by labelled counts) and collected predictions."""

    def __init__(self) -> None:
        self.samples = 0
        self._loss_sum: dict[str, float] = defaultdict(float)
        self._loss_n: dict[str, int] = defaultdict(int)
        self._labels: dict[str, list[np.ndarray]] = defaultdict(list)
        self._probs: dict[str, list[np.ndarray]] = defaultdict(list)
        self._dice: dict[str, list[float]] = defaultdict(list)
        self._dice_regions: tuple[Region, ...] = ()

    def add_loss(self, result: LossResult, batch_size: int) -> None:
        self.samples += batch_size
        for head, value in result.per_head.items():
            count = result.counts[head]
            self._loss_sum[head] += value * count
            self._loss_n[head] += count

    def loss_metrics(self, loss: MultitaskLoss) -> dict[str, float]:
        """``loss`` (weighted sum of head means, as optimised) and ``<head>_loss``."""
        means = {h: self._loss_sum[h] / n for h, n in self._loss_n.items() if n}
        total = sum(loss.weights.get(Head(h), 1.0) * v for h, v in means.items())
        out = {Metric.LOSS.value: float(total) if means else float("nan")}
        out |= {metric_key(h, Metric.LOSS): v for h, v in means.items()}
        return out

    def add_outputs(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> None:
        n = len(batch[BatchKey.IMAGE])
        for name, logits in outputs.items():
            head = Head(name)
            if head is Head.SEG:
                self._add_seg(logits, batch)
                continue
            probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
            labels = batch.get(head)
            self._probs[head].append(probs)
            self._labels[head].append(
                np.full(n, MISSING_LABEL) if labels is None else labels.cpu().numpy()
            )

    def _add_seg(self, logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> None:
        if Head.SEG not in batch or BatchKey.HAS_SEG not in batch:
            return
        self._dice_regions = tuple(Region)  # report every region, NaN when no subject has a mask
        predicted = logits.argmax(dim=1).cpu().numpy()
        truth = batch[Head.SEG].cpu().numpy()
        for i in np.flatnonzero(batch[BatchKey.HAS_SEG].cpu().numpy()):
            for region, value in region_dice(predicted[i], truth[i]).items():
                self._dice[region].append(value)

    def predictions(self) -> Predictions:
        return Predictions(
            labels={h: np.concatenate(v) for h, v in self._labels.items()},
            probabilities={h: np.concatenate(v) for h, v in self._probs.items()},
            dice={r: np.asarray(self._dice[r], dtype=np.float64) for r in self._dice_regions},
        )
