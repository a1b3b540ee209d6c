"""Shapes of both networks over a table of inputs, and the input checks."""

from __future__ import annotations

import pytest
import torch

from models.densenet import DenseNet2D
from models.errors import InputShapeError
from models.names import MARKER_HEADS, NUM_CLASSES, Head
from models.networks import ModelKind, build_model
from models.unet import MultitaskUNet3D

DENSENET_CASES = [
    # (batch, in_channels, height, width)
    (1, 1, 32, 32),
    (2, 1, 64, 64),
    (2, 1, 48, 80),
    (1, 3, 64, 64),
]


@pytest.mark.parametrize(("batch", "in_channels", "height", "width"), DENSENET_CASES)
def test_densenet_output_shape(batch: int, in_channels: int, height: int, width: int) -> None:
    model = DenseNet2D(in_channels=in_channels).eval()
    with torch.no_grad():
        out = model(torch.rand(batch, in_channels, height, width))
    assert list(out) == [Head.MGMT]
    assert out[Head.MGMT].shape == (batch, 2)


def test_densenet_parameter_count_matches_design() -> None:
    # design.md section 6: torchvision DenseNet121, 1 channel in, 2 out.
    assert sum(p.numel() for p in DenseNet2D().parameters()) == 6_949_634


UNET_CASES = [
    # (batch, depth, height, width): depth is never pooled, so 1 and odd depths must work
    (1, 1, 32, 32),
    (1, 4, 32, 32),
    (2, 5, 32, 64),
    (1, 7, 64, 32),
    (1, 8, 16, 16),
]


@pytest.mark.parametrize(("batch", "depth", "height", "width"), UNET_CASES)
def test_unet_output_shapes(batch: int, depth: int, height: int, width: int) -> None:
    model = MultitaskUNet3D().eval()
    with torch.no_grad():
        out = model(torch.rand(batch, 4, depth, height, width))
    assert out[Head.SEG].shape == (batch, 4, depth, height, width)
    for head in MARKER_HEADS:
        assert out[head].shape == (batch, NUM_CLASSES[head])
    assert set(out) == {Head.SEG, *MARKER_HEADS}


def test_unet_architecture_follows_design() -> None:
    model = MultitaskUNet3D()
    encoder_widths = [enc[-1].conv.out_channels for enc in model.encoders]
    assert encoder_widths == [16, 32, 64]
    assert model.bottleneck[-1].conv.out_channels == 128
    assert all(len(enc) == 2 for enc in model.encoders)
    assert model.pool.kernel_size == (1, 2, 2)
    assert [up.conv.stride for up in model.ups] == [(1, 2, 2)] * 3
    assert model.seg_head.kernel_size == (1, 1, 1)


@pytest.mark.parametrize(
    "shape",
    [(1, 3, 4, 32, 32), (1, 4, 4, 30, 32), (4, 4, 32, 32)],
    ids=["channels", "not-multiple-of-8", "4d"],
)
def test_unet_rejects_bad_input(shape: tuple[int, ...]) -> None:
    with pytest.raises(InputShapeError):
        MultitaskUNet3D()(torch.rand(*shape))


def test_build_model_by_kind() -> None:
    assert isinstance(build_model(ModelKind.DENSENET_2D), DenseNet2D)
    unet = build_model("unet3d", heads=(Head.MGMT,))
    assert isinstance(unet, MultitaskUNet3D)
    assert set(unet.heads) == {Head.MGMT}
    with pytest.raises(ValueError):
        build_model("resnet")
