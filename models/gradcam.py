"""Grad-CAM heat maps for both networks, via MONAI's ``GradCAM``.

MONAI expects a model that returns one logits tensor; ours return ``{head: logits}``, so a thin
wrapper selects the head to explain. Maps are min-max scaled to [0, 1] per image (MONAI's
default normaliser inverts them, which reads wrongly on an overlay). PNG output uses
matplotlib's Agg backend, so no display is needed on a node.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import torch
from monai.visualize import GradCAM
from torch import nn

from models.densenet import DENSENET_CAM_LAYER
from models.errors import InputShapeError
from models.names import Head
from models.unet import UNET_CAM_LAYER

log = logging.getLogger(__name__)


class HeadSelector(nn.Module):
    """Expose one head of a dict-returning network as a plain logits tensor."""

    def __init__(self, model: nn.Module, head: Head | str) -> None:
        super().__init__()
        self.model = model
        self.head = Head(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[self.head]


def _min_max(x: torch.Tensor) -> torch.Tensor:
    """Scale each map to [0, 1]; a constant map (no positive evidence) becomes all zeros."""
    flat = x.flatten(1)
    low = flat.min(dim=1).values.view(-1, *[1] * (x.ndim - 1))
    span = (flat.max(dim=1).values.view(-1, *[1] * (x.ndim - 1)) - low).clamp_min(1e-12)
    return (x - low) / span


def grad_cam(
    model: nn.Module,
    image: torch.Tensor | np.ndarray,
    *,
    head: Head | str,
    target_layer: str,
    class_idx: int | None = None,
) -> np.ndarray:
    """Heat map in [0, 1] with the image's spatial shape, for one sample ``(C, *spatial)``.

    ``class_idx`` defaults to the predicted class. ``target_layer`` names a module of ``model``
    (e.g. ``"net.features.norm5"``). MONAI registers hooks it never removes, so the map is
    computed on a copy: the caller's model is left exactly as it was (no hooks, same mode).
    """
    if target_layer not in dict(model.named_modules()):
        raise InputShapeError(f"the model has no layer named {target_layer!r}")
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))
    device = next(model.parameters()).device
    x = x.unsqueeze(0).to(device)
    wrapped = HeadSelector(copy.deepcopy(model), head)
    cam = GradCAM(wrapped, target_layers=f"model.{target_layer}", postprocessing=_min_max)
    heat = cam(x, class_idx=class_idx)
    return heat[0, 0].detach().cpu().numpy().astype(np.float32)


def grad_cam_2d(
    model: nn.Module,
    image: torch.Tensor | np.ndarray,
    *,
    head: Head | str = Head.MGMT,
    class_idx: int | None = None,
    target_layer: str = DENSENET_CAM_LAYER,
) -> np.ndarray:
    """Grad-CAM ``(H, W)`` of the 2D classifier for one slice ``(C, H, W)``."""
    if np.ndim(image) != 3:
        raise InputShapeError(f"expected one slice (C, H, W), got shape {tuple(np.shape(image))}")
    return grad_cam(model, image, head=head, target_layer=target_layer, class_idx=class_idx)


def grad_cam_3d(
    model: nn.Module,
    volume: torch.Tensor | np.ndarray,
    *,
    head: Head | str,
    class_idx: int | None = None,
    target_layer: str = UNET_CAM_LAYER,
) -> np.ndarray:
    """Grad-CAM ``(D, H, W)`` of one marker head for one volume ``(C, D, H, W)``.

    Each depth index is the heat map of that slice: the U-Net never pools along depth, so the
    bottleneck keeps one feature slice per input slice.
    """
    if np.ndim(volume) != 4:
        raise InputShapeError(
            f"expected one volume (C, D, H, W), got shape {tuple(np.shape(volume))}"
        )
    if Head(head) is Head.SEG:
        raise InputShapeError("Grad-CAM explains a marker head, not the segmentation output")
    return grad_cam(model, volume, head=head, target_layer=target_layer, class_idx=class_idx)


def write_overlay_png(
    image: np.ndarray,
    heat: np.ndarray,
    path: str | Path,
    *,
    alpha: float = 0.4,
    title: str | None = None,
) -> Path:
    """Save a grey image with the heat map blended on top; both ``(H, W)``."""
    from matplotlib.figure import Figure  # no pyplot: Agg canvas, no global backend change

    if image.shape != heat.shape or image.ndim != 2:
        raise InputShapeError(f"image {image.shape} and heat map {heat.shape} must be equal 2D")
    fig = Figure(figsize=(4, 4), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(image, cmap="gray")
    ax.imshow(heat, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    out = Path(path)
    fig.savefig(out, bbox_inches="tight")
    log.debug("wrote Grad-CAM overlay %s", out.name)
    return out


def write_slice_overlays(
    volume_channel: np.ndarray, heat: np.ndarray, directory: str | Path, *, stem: str = "slice"
) -> list[Path]:
    """One overlay PNG per depth slice of a 3D heat map ``(D, H, W)``; returns the paths."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_overlay_png(volume_channel[d], heat[d], folder / f"{stem}_{d:03d}.png")
        for d in range(heat.shape[0])
    ]
