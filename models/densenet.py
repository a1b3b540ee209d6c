"""The 2D MGMT classifier: torchvision's DenseNet121 on one grey slice.

Recipe (design.md section 6, after the RSNA-MICCAI submission): DenseNet121, one input channel
(the middle coronal FLAIR slice, 128x128, intensities in [0, 1]), a two-way softmax head.
Hospital nodes cannot download from a model hub, so torchvision is always built with
``weights=None``; ImageNet weights come only from a local file whose SHA-256 the caller supplies
(see :mod:`models.pretrained`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import densenet121

from models.errors import WeightsError
from models.names import NUM_CLASSES, Head
from models.pretrained import load_imagenet_densenet

log = logging.getLogger(__name__)

#: Layer MONAI's Grad-CAM hooks by default: the last feature map before global pooling.
DENSENET_CAM_LAYER = "net.features.norm5"


class DenseNet2D(nn.Module):
    """DenseNet121 for ``in_channels``-channel 2D images, returning ``{head: logits}``.

    The forward pass is re-implemented (not torchvision's) so the ReLU after the last norm layer
    is not in-place: Grad-CAM's backward hooks on ``features.norm5`` break on in-place ops.
    The output is a dict so the 2D and 3D models share one loss, metric and Trainer path.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = NUM_CLASSES[Head.MGMT],
        *,
        head: Head = Head.MGMT,
        weights_path: str | Path | None = None,
        weights_sha256: str | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError("DenseNet2D supports spatial_dims=2 only")
        self.head = Head(head)
        self.in_channels = in_channels
        self.out_channels = out_channels
        # weights=None always: never reach out to a hub from a hospital node.
        self.net = densenet121(weights=None, num_classes=out_channels)
        self.net.features.conv0 = nn.Conv2d(
            in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False
        )
        nn.init.kaiming_normal_(self.net.features.conv0.weight)
        if weights_path is not None:
            if weights_sha256 is None:
                raise WeightsError(
                    "a local weights file needs its expected SHA-256",
                    hint="pass weights_sha256 (e.g. from `sha256sum FILE`)",
                )
            self.load_imagenet(weights_path, weights_sha256)

    def load_imagenet(self, path: str | Path, sha256: str) -> None:
        """Load verified ImageNet features; the first conv is adapted, the classifier kept new."""
        state = load_imagenet_densenet(path, sha256, in_channels=self.in_channels)
        try:
            missing, unexpected = self.net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatch: a different architecture's file
            raise WeightsError(f"{Path(path).name} does not fit DenseNet121") from exc
        # The new head is ours; pre-2018 torchvision files have no BatchNorm step counters.
        missing = [
            k
            for k in missing
            if not k.startswith("classifier.") and not k.endswith("num_batches_tracked")
        ]
        if missing or unexpected:
            raise WeightsError(
                f"{Path(path).name} does not fit DenseNet121",
                hint=f"{len(missing)} missing and {len(unexpected)} unexpected keys",
            )
        log.info("loaded ImageNet DenseNet121 features from %s", Path(path).name)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.net.features(x)
        out = F.relu(features)
        out = F.adaptive_avg_pool2d(out, (1, 1)).flatten(1)
        return {self.head: self.net.classifier(out)}
