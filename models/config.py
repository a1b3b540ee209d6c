"""Trainer settings, device choice and seeding.

Defaults follow the seed papers (design.md section 6): the 2D DenseNet used Adam, lr 1e-4,
batch 16; the 3D multitask U-Net used SGD, lr 1e-3 (momentum is not stated there; 0.9 is our
choice) with batch 1 because subject depth varies.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from models.errors import TrainerConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainerConfig:
    """Everything that changes how a Trainer trains, as plain values (easy to log and compare).

    ``device``: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda:N"``. ``amp``: mixed
    precision; ``None`` means on for CUDA, off otherwise (CPU AMP is refused). ``seed``: seeds
    torch/numpy/random and the loader's shuffling; ``None`` leaves RNG state alone.
    ``deterministic``: ask torch for deterministic kernels (warn-only where none exist).
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-4
    batch_size: int = 16
    eval_batch_size: int | None = None
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int | None = 0
    deterministic: bool = True
    device: str = "auto"
    amp: bool | None = None
    num_workers: int = 0
    num_threads: int | None = None
    shuffle: bool = True

    @classmethod
    def for_densenet(cls, **overrides: object) -> TrainerConfig:
        """RSNA-MICCAI 2D recipe: Adam, lr 1e-4, batch 16."""
        return replace(cls(optimizer="adam", lr=1e-4, batch_size=16), **overrides)  # type: ignore[arg-type]

    @classmethod
    def for_unet(cls, **overrides: object) -> TrainerConfig:
        """Federated glioma 3D recipe: SGD, lr 1e-3; batch 1 since depth varies per subject."""
        return replace(cls(optimizer="sgd", lr=1e-3, batch_size=1), **overrides)  # type: ignore[arg-type]

    def build_optimizer(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The configured optimiser over ``params``."""
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        raise TrainerConfigError(f"unknown optimizer {self.optimizer!r}", hint="adam or sgd")


def resolve_device(spec: str) -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` into a usable device or fail clearly."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise TrainerConfigError(f"unknown device {spec!r}", hint="auto, cpu or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise TrainerConfigError(f"unsupported device {spec!r}", hint="auto, cpu or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainerConfigError(f"device {spec!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainerConfigError(f"device {spec!r} does not exist on this machine")
    return device


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed every RNG a run touches; optionally request deterministic kernels.

    Seed *before* building the model so its initial weights are reproducible too. On CUDA, full
    determinism also needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment, which only an
    entry point should set; ``warn_only`` keeps ops without a deterministic kernel usable.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
