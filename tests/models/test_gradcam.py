"""Grad-CAM maps: shape of the input, finite, in [0, 1], model left untouched; PNG writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.densenet import DenseNet2D
from models.errors import InputShapeError
from models.gradcam import (
    grad_cam,
    grad_cam_2d,
    grad_cam_3d,
    write_overlay_png,
    write_slice_overlays,
)
from models.names import Head
from models.unet import MultitaskUNet3D


@pytest.mark.parametrize("size", [(32, 32), (64, 48)])
def test_gradcam_2d_shape_and_range(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = DenseNet2D()
    heat = grad_cam_2d(model, np.random.default_rng(0).random((1, *size)), class_idx=1)
    assert heat.shape == size and np.isfinite(heat).all()
    assert heat.min() >= 0.0 and heat.max() <= 1.0


@pytest.mark.parametrize("head", [Head.IDH, Head.GRADE])
def test_gradcam_3d_gives_one_map_per_slice(head: Head) -> None:
    torch.manual_seed(0)
    model = MultitaskUNet3D().train()
    before = [p.detach().clone() for p in model.parameters()]
    heat = grad_cam_3d(model, np.random.default_rng(1).random((4, 5, 32, 32)), head=head)
    assert heat.shape == (5, 32, 32) and np.isfinite(heat).all()
    assert heat.max() <= 1.0 and heat.min() >= 0.0
    # the caller's model keeps its mode, weights, gradients and has no hooks left behind
    assert model.training
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())
    assert not model.bottleneck._forward_hooks and not model.bottleneck._backward_hooks


def test_gradcam_input_checks() -> None:
    model = MultitaskUNet3D()
    with pytest.raises(InputShapeError):
        grad_cam_3d(model, np.zeros((4, 32, 32)), head=Head.IDH)
    with pytest.raises(InputShapeError):
        grad_cam_3d(model, np.zeros((4, 2, 32, 32)), head=Head.SEG)
    with pytest.raises(InputShapeError, match="no layer"):
        grad_cam(model, np.zeros((4, 2, 32, 32)), head=Head.IDH, target_layer="nope")


def test_png_writers(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    out = write_overlay_png(rng.random((32, 32)), rng.random((32, 32)), tmp_path / "a.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    paths = write_slice_overlays(rng.random((3, 16, 16)), rng.random((3, 16, 16)), tmp_path / "s")
    assert [p.name for p in paths] == ["slice_000.png", "slice_001.png", "slice_002.png"]
    with pytest.raises(InputShapeError):
        write_overlay_png(rng.random((8, 8)), rng.random((8, 9)), tmp_path / "b.png")
