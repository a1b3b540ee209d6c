"""The data interface between whatever produces arrays (the dataset cache) and the Trainer.

The cache is built elsewhere (``node``); this module only fixes what the model layer accepts:

* images: one array ``(N, C, *spatial)`` (2D slices, or equal-depth volumes), or a sequence of
  per-subject arrays ``(C, D, H, W)`` when depth varies. ``np.memmap`` works: samples are read
  one at a time, nothing is loaded up front.
* labels: ``{head: int array of length N}`` with :data:`~models.names.MISSING_LABEL` (-1) where a
  subject has no label. A head absent from the mapping is missing for every subject.
* masks (3D only): an array ``(N, D, H, W)`` or a sequence with ``None`` for subjects without a
  segmentation; ``has_seg`` records which subjects have one.

Each sample is a dict: ``image`` (float32 tensor), one int64 scalar per head, and for datasets
with masks ``seg`` (int64 tensor, zeros when absent) and ``has_seg`` (bool).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from models.errors import InputShapeError
from models.names import MISSING_LABEL, BatchKey, Head

Sample = dict[str, torch.Tensor]


class ArrayDataset(Dataset[Sample]):
    """Samples read lazily from in-memory or memory-mapped numpy arrays.

    Args:
        images: ``(N, C, *spatial)`` array or a sequence of ``(C, *spatial)`` arrays.
        labels: per-head integer labels, -1 where missing.
        masks: segmentation masks, per subject ``(*spatial)``; ``None`` entries mean missing.
        has_seg: overrides which subjects count as having a mask (needed when ``masks`` is one
            dense array in which some subjects hold a placeholder).
    """

    def __init__(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        labels: Mapping[Head | str, Sequence[int] | np.ndarray] | None = None,
        *,
        masks: np.ndarray | Sequence[np.ndarray | None] | None = None,
        has_seg: Sequence[bool] | np.ndarray | None = None,
    ) -> None:
        self.images = images
        n = len(images)
        self.labels: dict[Head, np.ndarray] = {}
        for head, values in (labels or {}).items():
            array = np.asarray(values, dtype=np.int64)
            if array.shape != (n,):
                raise InputShapeError(
                    f"labels for {head} have shape {array.shape}, expected ({n},)"
                )
            if array.min(initial=0) < MISSING_LABEL:
                raise InputShapeError(f"labels for {head} must be >= {MISSING_LABEL}")
            self.labels[Head(head)] = array
        self.masks = masks
        self.has_seg = self._has_seg(n, masks, has_seg)

    @staticmethod
    def _has_seg(
        n: int,
        masks: np.ndarray | Sequence[np.ndarray | None] | None,
        has_seg: Sequence[bool] | np.ndarray | None,
    ) -> np.ndarray | None:
        if masks is None:
            return None
        if len(masks) != n:
            raise InputShapeError(f"{len(masks)} masks for {n} images")
        if has_seg is not None:
            flags = np.asarray(has_seg, dtype=bool)
            if flags.shape != (n,):
                raise InputShapeError(f"has_seg has shape {flags.shape}, expected ({n},)")
            return flags
        return np.array([m is not None for m in masks], dtype=bool)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        # Always a private copy: memmaps may be read-only, and tensors must not alias the cache.
        image = np.array(self.images[index], dtype=np.float32, order="C")
        sample: Sample = {BatchKey.IMAGE: torch.from_numpy(image)}
        for head, values in self.labels.items():
            sample[head] = torch.tensor(values[index], dtype=torch.int64)
        if self.masks is not None and self.has_seg is not None:
            present = bool(self.has_seg[index])
            mask = self.masks[index] if present else None
            spatial = image.shape[1:]
            if mask is None:
                seg = torch.zeros(spatial, dtype=torch.int64)
            else:
                seg = torch.from_numpy(np.asarray(mask).astype(np.int64))
                if tuple(seg.shape) != tuple(spatial):
                    raise InputShapeError(
                        f"mask of sample {index} has shape {tuple(seg.shape)}, "
                        f"image has {tuple(spatial)}"
                    )
            sample[Head.SEG] = seg
            sample[BatchKey.HAS_SEG] = torch.tensor(present)
        return sample


def collate(samples: list[Sample]) -> dict[str, Any]:
    """Stack samples; volumes of different depth cannot share a batch, so say so plainly."""
    shapes = {tuple(s[BatchKey.IMAGE].shape) for s in samples}
    if len(shapes) > 1:
        raise InputShapeError(
            f"samples of one batch differ in shape: {sorted(shapes)}",
            hint="use batch_size=1 for volumes whose depth varies",
        )
    return default_collate(samples)
