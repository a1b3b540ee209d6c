"""Local, checksum-verified ImageNet weights for DenseNet121.

Why this exists: nodes run inside hospital networks without internet access and must not fetch
code or weights from a hub. A steward places the torchvision file (``densenet121-a639ec97.pth``
or any state dict with the same keys) on disk and configures its SHA-256; this module refuses
anything that does not match, then adapts the RGB stem to grey input.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from models.errors import WeightsError

log = logging.getLogger(__name__)

# torchvision's original DenseNet files use keys like "denselayer1.norm.1.weight"; the current
# module names are "denselayer1.norm1.weight". Same pattern torchvision applies when loading.
_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
_CHUNK = 1 << 20


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks so large files need no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: str | Path, expected_sha256: str) -> Path:
    """Return ``path`` if it exists and matches ``expected_sha256``; else raise WeightsError."""
    file = Path(path)
    if not file.is_file():
        raise WeightsError(
            f"weights file {file.name} not found",
            hint="copy the file onto the node and check the configured path",
        )
    actual = sha256_of(file)
    if actual.lower() != expected_sha256.strip().lower():
        raise WeightsError(
            f"weights file {file.name} does not match its expected SHA-256",
            hint=f"got {actual[:12]}..., expected {expected_sha256.strip()[:12]}...",
        )
    return file


def _unwrap(obj: object) -> Mapping[str, torch.Tensor]:
    """Accept a bare state dict or a checkpoint holding one under ``state_dict``."""
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError("weights file does not hold a state dict of tensors")
    return obj


def _rename_old_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _OLD_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Turn an RGB stem kernel ``(64, 3, k, k)`` into one for ``in_channels`` inputs.

    For one channel the RGB kernels are summed: a grey image copied into R, G and B gives the
    same activations as the summed kernel on the grey image, so ImageNet features keep their
    scale. For other counts the mean kernel is repeated and rescaled by ``3 / in_channels``.
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise WeightsError(f"first conv has shape {tuple(weight.shape)}, expected (64, 3, k, k)")
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, 1, 1) * (3.0 / in_channels)


def load_imagenet_densenet(
    path: str | Path, expected_sha256: str, *, in_channels: int = 1
) -> dict[str, torch.Tensor]:
    """Verified torchvision-DenseNet121 state dict with the stem adapted and the classifier dropped.

    The result loads into ``torchvision.models.densenet121`` with ``strict=False``; the only
    missing keys are ``classifier.weight`` / ``classifier.bias`` (a new head for our classes).
    """
    file = verify_file(path, expected_sha256)
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or non-torch files
        raise WeightsError(f"weights file {file.name} cannot be read by torch.load") from exc
    state = _rename_old_keys(_unwrap(raw))
    if "features.conv0.weight" not in state:
        raise WeightsError(f"weights file {file.name} is not a DenseNet state dict")
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    state["features.conv0.weight"] = adapt_first_conv(state["features.conv0.weight"], in_channels)
    return state
