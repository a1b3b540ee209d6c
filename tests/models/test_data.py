"""ArrayDataset: labels with gaps, optional masks, memory-mapped arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.config import TrainerConfig
from models.data import ArrayDataset, collate
from models.densenet import DenseNet2D
from models.errors import InputShapeError
from models.names import BatchKey, Head
from models.trainer import Trainer


def test_sample_layout(volumes: ArrayDataset) -> None:
    sample = volumes[1]
    assert sample[BatchKey.IMAGE].dtype == torch.float32
    assert sample[BatchKey.IMAGE].shape == (4, 6, 32, 32)
    assert sample[Head.IDH].item() == 1 and sample[Head.GRADE].item() == -1
    assert not sample[BatchKey.HAS_SEG] and sample[Head.SEG].shape == (6, 32, 32)
    assert int(sample[Head.SEG].abs().sum()) == 0 and volumes[0][BatchKey.HAS_SEG]


def test_memmap_arrays_train(tmp_path: Path, slices: ArrayDataset) -> None:
    path = tmp_path / "images.npy"
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(8, 1, 32, 32))
    images[:] = np.asarray(slices.images)
    images.flush()
    mapped = np.load(path, mmap_mode="r")
    data = ArrayDataset(mapped, {Head.MGMT: [0, 1] * 4})
    torch.testing.assert_close(data[3][BatchKey.IMAGE], slices[3][BatchKey.IMAGE])
    history = Trainer(DenseNet2D(), data, config=TrainerConfig(batch_size=8)).fit(1)
    assert np.isfinite(history[0]["train_loss"])


def test_dense_masks_with_has_seg_override() -> None:
    data = ArrayDataset(
        np.zeros((2, 4, 2, 8, 8), np.float32),
        masks=np.ones((2, 2, 8, 8), np.uint8),
        has_seg=[True, False],
    )
    assert data[0][BatchKey.HAS_SEG] and int(data[0][Head.SEG].sum()) == 2 * 8 * 8
    assert not data[1][BatchKey.HAS_SEG] and int(data[1][Head.SEG].sum()) == 0


@pytest.mark.parametrize(
    ("labels", "masks", "message"),
    [
        ({Head.MGMT: [0, 1, 0]}, None, "shape"),
        ({Head.MGMT: [0, -2]}, None, ">= -1"),
        ({"tumour": [0, 1]}, None, "tumour"),
        (None, [np.zeros((2, 8, 8))], "masks"),
    ],
)
def test_bad_inputs_are_rejected(labels, masks, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises((InputShapeError, ValueError), match=message):
        ArrayDataset(np.zeros((2, 4, 2, 8, 8), np.float32), labels, masks=masks)


def test_mask_shape_mismatch_is_reported() -> None:
    data = ArrayDataset(np.zeros((1, 4, 2, 8, 8), np.float32), masks=[np.zeros((3, 8, 8))])
    with pytest.raises(InputShapeError, match="mask of sample 0"):
        data[0]


def test_collate_stacks_equal_shapes(slices: ArrayDataset) -> None:
    batch = collate([slices[0], slices[1]])
    assert batch[BatchKey.IMAGE].shape == (2, 1, 32, 32)
    assert batch[Head.MGMT].tolist() == [0, 1]
