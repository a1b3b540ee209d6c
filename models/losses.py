"""Masked multitask loss: each head learns only from subjects that carry its label.

Sites lack some labels (no segmentation, no 1p/19q test; design.md section 6). A head's loss
term is computed over the labelled samples of the batch only; a head with no labelled sample in
the batch contributes a constant zero that is *not connected to the graph*. That matters beyond
the loss value: its parameters then get no gradient at all (``grad is None``), so neither
weight decay nor optimizer momentum moves them on that step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from models.names import MISSING_LABEL, BatchKey, Head

log = logging.getLogger(__name__)


@dataclass
class LossResult:
    """Total loss to back-propagate plus per-head values and labelled-sample counts."""

    total: torch.Tensor
    per_head: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def has_grad(self) -> bool:
        """False when no head had a label in the batch: nothing to back-propagate."""
        return self.total.requires_grad


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over samples whose label is not missing, and how many there were."""
    present = labels != MISSING_LABEL
    count = int(present.sum())
    if count == 0:
        return logits.new_zeros(()), 0
    return F.cross_entropy(logits[present].float(), labels[present]), count


class MaskedSegLoss:
    """Dice + cross-entropy (MONAI ``DiceCELoss``) over samples that have a mask."""

    def __init__(self, lambda_dice: float = 1.0, lambda_ce: float = 1.0) -> None:
        self.loss = DiceCELoss(
            to_onehot_y=True, softmax=True, lambda_dice=lambda_dice, lambda_ce=lambda_ce
        )

    def __call__(
        self, logits: torch.Tensor, masks: torch.Tensor, has_seg: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        present = has_seg.bool()
        count = int(present.sum())
        if count == 0:
            return logits.new_zeros(()), 0
        target = masks[present].unsqueeze(1).long()
        return self.loss(logits[present].float(), target), count


class MultitaskLoss:
    """Sum of the masked per-head losses, each multiplied by an optional weight.

    Works for the single-head DenseNet (output ``{mgmt: logits}``) and the multitask U-Net alike:
    a head is scored when the model produced it and the batch carries its labels.
    """

    def __init__(
        self,
        weights: Mapping[Head | str, float] | None = None,
        seg_loss: MaskedSegLoss | None = None,
    ) -> None:
        self.weights = {Head(k): float(v) for k, v in (weights or {}).items()}
        self.seg_loss = seg_loss or MaskedSegLoss()

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> LossResult:
        total: torch.Tensor | None = None
        result = LossResult(total=torch.zeros(()))
        for name, logits in outputs.items():
            head = Head(name)
            if head not in batch:
                continue
            if head is Head.SEG:
                if BatchKey.HAS_SEG not in batch:
                    continue
                value, count = self.seg_loss(logits, batch[head], batch[BatchKey.HAS_SEG])
            else:
                value, count = masked_cross_entropy(logits, batch[head])
            result.counts[head] = count
            if count == 0:
                continue
            result.per_head[head] = float(value.detach())
            weighted = value * self.weights.get(head, 1.0)
            total = weighted if total is None else total + weighted
        if total is not None:
            result.total = total
        return result
