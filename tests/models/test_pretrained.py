"""Local ImageNet weights: verified by checksum, adapted to one channel, never downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import densenet121

from models.densenet import DenseNet2D
from models.errors import ModelError, WeightsError
from models.pretrained import adapt_first_conv, sha256_of


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A torchvision-format DenseNet121 file (1000 classes, RGB stem) with random weights."""
    torch.manual_seed(3)
    state = densenet121(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "densenet121.pth"
    torch.save(state, path)
    return path, state


def test_missing_file_is_a_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        DenseNet2D(weights_path=tmp_path / "nope.pth", weights_sha256="0" * 64)


def test_checksum_mismatch_is_a_weights_error(imagenet_file: tuple[Path, dict]) -> None:
    path, _ = imagenet_file
    with pytest.raises(WeightsError, match="SHA-256") as info:
        DenseNet2D(weights_path=path, weights_sha256="f" * 64)
    assert isinstance(info.value, ModelError)
    assert info.value.code == "MODEL_WEIGHTS"


def test_checksum_is_required(imagenet_file: tuple[Path, dict]) -> None:
    with pytest.raises(WeightsError):
        DenseNet2D(weights_path=imagenet_file[0])


def test_loads_features_adapts_stem_and_keeps_new_classifier(
    imagenet_file: tuple[Path, dict],
) -> None:
    path, state = imagenet_file
    model = DenseNet2D(weights_path=path, weights_sha256=sha256_of(path).upper())
    loaded = model.net.state_dict()
    stem = state["features.conv0.weight"]
    assert torch.equal(loaded["features.conv0.weight"], stem.sum(dim=1, keepdim=True))
    key = "features.denseblock3.denselayer5.conv2.weight"
    assert torch.equal(loaded[key], state[key])
    assert loaded["classifier.weight"].shape == (2, 1024)
    assert model.eval()(torch.rand(1, 1, 32, 32))["mgmt"].shape == (1, 2)


def test_old_torchvision_key_names_are_accepted(
    imagenet_file: tuple[Path, dict], tmp_path: Path
) -> None:
    _, state = imagenet_file
    # The original files name layers "norm.1" / "conv.2" and predate num_batches_tracked.
    old = {
        k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    path = tmp_path / "old.pth"
    torch.save(old, path)
    model = DenseNet2D(weights_path=path, weights_sha256=sha256_of(path))
    key = "features.denseblock1.denselayer1.norm1.weight"
    assert torch.equal(model.net.state_dict()[key], state[key])


def test_wrong_architecture_is_a_weights_error(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"features.conv0.weight": torch.rand(64, 3, 7, 7)}, path)
    with pytest.raises(WeightsError, match="does not fit"):
        DenseNet2D(weights_path=path, weights_sha256=sha256_of(path))


def test_non_torch_file_is_a_weights_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"torch\.load"):
        DenseNet2D(weights_path=path, weights_sha256=sha256_of(path))


def test_adapt_first_conv_keeps_response_to_grey_images() -> None:
    rgb = torch.rand(64, 3, 7, 7)
    grey = torch.rand(1, 1, 20, 20)
    as_rgb = torch.nn.functional.conv2d(grey.repeat(1, 3, 1, 1), rgb)
    adapted = torch.nn.functional.conv2d(grey, adapt_first_conv(rgb, 1))
    torch.testing.assert_close(adapted, as_rgb)
    assert adapt_first_conv(rgb, 4).shape == (64, 4, 7, 7)
