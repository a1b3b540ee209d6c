"""Small synthetic inputs shared by the model tests (sizes chosen for speed on 2 CPU cores)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data import ArrayDataset
from models.names import Head

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def slices() -> ArrayDataset:
    """Eight 1x32x32 slices with balanced MGMT labels (32 px is DenseNet's smallest input)."""
    rng = np.random.default_rng(0)
    images = rng.random((8, 1, 32, 32), dtype=np.float32)
    return ArrayDataset(images, {Head.MGMT: [0, 1] * 4})


@pytest.fixture
def volumes() -> ArrayDataset:
    """Three 4-channel volumes of different depths, with gaps in every kind of label."""
    rng = np.random.default_rng(1)
    images = [rng.random((4, d, 32, 32), dtype=np.float32) for d in (4, 6, 5)]
    masks = [rng.integers(0, 4, (4, 32, 32)), None, rng.integers(0, 4, (5, 32, 32))]
    labels = {
        Head.IDH: [0, 1, -1],
        Head.CODELETION_1P19Q: [-1, -1, -1],
        Head.MGMT: [1, 0, 1],
        Head.GRADE: [2, -1, 0],
    }
    return ArrayDataset(images, labels, masks=masks)


@pytest.fixture(autouse=True)
def _restore_torch_globals():  # type: ignore[no-untyped-def]
    """Trainers switch on deterministic kernels process-wide; leave other test folders as found."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
