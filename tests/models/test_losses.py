"""The masked multitask loss: missing labels contribute nothing, not even a gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.losses import MaskedSegLoss, MultitaskLoss, masked_cross_entropy
from models.names import MARKER_HEADS, BatchKey, Head
from models.unet import MultitaskUNet3D


def test_masked_cross_entropy_equals_ce_on_labelled_rows() -> None:
    logits = torch.randn(4, 3)
    labels = torch.tensor([-1, 2, -1, 0])
    value, count = masked_cross_entropy(logits, labels)
    assert count == 2
    torch.testing.assert_close(value, F.cross_entropy(logits[[1, 3]], labels[[1, 3]]))


def test_all_missing_is_exact_zero_without_graph() -> None:
    logits = torch.randn(3, 2, requires_grad=True)
    value, count = masked_cross_entropy(logits, torch.full((3,), -1))
    assert count == 0 and value.item() == 0.0 and not value.requires_grad


def test_seg_loss_uses_only_subjects_with_masks() -> None:
    logits = torch.randn(2, 4, 2, 8, 8)
    masks = torch.randint(0, 4, (2, 2, 8, 8))
    seg = MaskedSegLoss()
    value, count = seg(logits, masks, torch.tensor([False, True]))
    alone, _ = seg(logits[1:], masks[1:], torch.tensor([True]))
    assert count == 1
    torch.testing.assert_close(value, alone)


def _batch(model_out_batch: int = 2) -> dict[str, torch.Tensor]:
    n = model_out_batch
    return {
        BatchKey.IMAGE: torch.rand(n, 4, 2, 16, 16),
        Head.IDH: torch.tensor([0, 1]),
        Head.CODELETION_1P19Q: torch.full((n,), -1),  # no site measured 1p/19q
        Head.MGMT: torch.tensor([1, -1]),
        Head.GRADE: torch.tensor([-1, 2]),
        Head.SEG: torch.zeros(n, 2, 16, 16, dtype=torch.int64),
        BatchKey.HAS_SEG: torch.tensor([False, False]),  # and nobody has a mask
    }


def test_head_with_all_labels_missing_gets_zero_gradient() -> None:
    torch.manual_seed(0)
    model = MultitaskUNet3D(dropout=0.0)
    batch = _batch()
    result = MultitaskLoss()(model(batch[BatchKey.IMAGE]), batch)
    result.total.backward()
    assert result.counts[Head.CODELETION_1P19Q] == 0 and result.counts[Head.SEG] == 0
    assert set(result.per_head) == {Head.IDH, Head.MGMT, Head.GRADE}
    for silent in (model.heads[Head.CODELETION_1P19Q], model.seg_head):
        for p in silent.parameters():
            assert p.grad is None or torch.count_nonzero(p.grad) == 0
    for head in (Head.IDH, Head.MGMT, Head.GRADE):
        assert torch.count_nonzero(model.heads[head].weight.grad) > 0


def test_total_is_weighted_sum_of_present_heads() -> None:
    torch.manual_seed(0)
    model = MultitaskUNet3D()
    batch = _batch()
    out = model(batch[BatchKey.IMAGE])
    plain = MultitaskLoss()(out, batch)
    weighted = MultitaskLoss(weights={Head.GRADE: 3.0})(out, batch)
    expected = plain.total.item() + 2.0 * plain.per_head[Head.GRADE]
    assert weighted.total.item() == pytest.approx(expected, rel=1e-5)


def test_batch_without_any_label_has_nothing_to_backpropagate() -> None:
    model = MultitaskUNet3D()
    batch = _batch()
    for head in MARKER_HEADS:
        batch[head] = torch.full((2,), -1)
    result = MultitaskLoss()(model(batch[BatchKey.IMAGE]), batch)
    assert not result.has_grad and result.total.item() == 0.0
