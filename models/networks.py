"""One entry point to build either network by name, for configs and the Flower client.

The classes live in :mod:`models.densenet` and :mod:`models.unet`; this module only maps a
stable ``ModelKind`` string (what a run configuration holds) to a constructor.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from torch import nn

from models.densenet import DENSENET_CAM_LAYER, DenseNet2D
from models.unet import UNET_CAM_LAYER, MultitaskUNet3D

__all__ = [
    "DENSENET_CAM_LAYER",
    "UNET_CAM_LAYER",
    "DenseNet2D",
    "ModelKind",
    "MultitaskUNet3D",
    "build_model",
]


class ModelKind(StrEnum):
    """The two recipes of design.md section 6."""

    DENSENET_2D = "densenet2d"
    MULTITASK_UNET_3D = "unet3d"


def build_model(kind: ModelKind | str, **kwargs: Any) -> nn.Module:
    """Build a network by kind; keyword arguments go to its constructor unchanged."""
    kind = ModelKind(kind)
    if kind is ModelKind.DENSENET_2D:
        return DenseNet2D(**kwargs)
    return MultitaskUNet3D(**kwargs)
