"""The 3D multitask U-Net of the federated glioma paper (design.md section 6).

Four MR sequences in (T1, T1ce, T2, FLAIR), 128x128 in-plane, depth = the subject's slices.
Encoder: 3 stages of 2 x (Conv3d-BN-ReLU) with channels 16, 32, 64, each followed by a
(1, 2, 2) max-pool, so depth is never reduced and any depth D >= 1 works; a 128-channel
bottleneck. Decoder: transposed convolutions (1, 2, 2) with skip connections, then a 1x1x1 conv
to 4 voxel classes. A classification branch pools the bottleneck globally and feeds an MLP with
one linear head per marker (IDH, 1p/19q, MGMT, grade).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from models.errors import InputShapeError
from models.names import MARKER_HEADS, NUM_CLASSES, Head

#: Layer Grad-CAM hooks by default: the bottleneck the marker heads read from.
UNET_CAM_LAYER = "bottleneck"

_POOL = (1, 2, 2)


def _double_conv(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """2 x (Conv-BN-ReLU); conv bias is off because BatchNorm's shift makes it redundant."""
    return nn.Sequential(
        *(
            Convolution(
                spatial_dims,
                cin,
                out_channels,
                kernel_size=3,
                act="RELU",
                norm="BATCH",
                bias=False,
            )
            for cin in (in_channels, out_channels)
        )
    )


class MultitaskUNet3D(nn.Module):
    """Segmentation + marker classification; ``forward`` returns ``{Head: logits}``.

    Args:
        spatial_dims: must be 3 (kept for the shared argument vocabulary).
        in_channels: MR sequences stacked as channels.
        out_channels: voxel classes of the segmentation head.
        channels: encoder widths; the bottleneck has twice the last one.
        hidden: width of the classification MLP.
        dropout: dropout in the classification MLP.
        heads: marker heads and their class counts.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = NUM_CLASSES[Head.SEG],
        *,
        channels: Sequence[int] = (16, 32, 64),
        hidden: int = 64,
        dropout: float = 0.2,
        heads: Sequence[Head] = MARKER_HEADS,
    ) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError("MultitaskUNet3D supports spatial_dims=3 only")
        self.in_channels = in_channels
        self.out_channels = out_channels
        widths = list(channels)
        self.encoders = nn.ModuleList()
        cin = in_channels
        for width in widths:
            self.encoders.append(_double_conv(3, cin, width))
            cin = width
        self.pool = nn.MaxPool3d(_POOL)
        self.bottleneck = _double_conv(3, cin, 2 * cin)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        cin = 2 * cin
        for width in reversed(widths):
            self.ups.append(self._up(cin, width))
            self.decoders.append(_double_conv(3, 2 * width, width))
            cin = width
        self.seg_head = nn.Conv3d(cin, out_channels, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Linear(2 * widths[-1], hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.heads = nn.ModuleDict({str(h): nn.Linear(hidden, NUM_CLASSES[h]) for h in heads})
        self._factor = 2 ** len(widths)

    @staticmethod
    def _up(in_channels: int, out_channels: int) -> nn.Module:
        return Convolution(
            3,
            in_channels,
            out_channels,
            strides=_POOL,
            kernel_size=_POOL,
            padding=0,
            output_padding=0,
            is_transposed=True,
            conv_only=True,
        )

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise InputShapeError(
                f"expected (N, {self.in_channels}, D, H, W), got {tuple(x.shape)}"
            )
        if x.shape[-1] % self._factor or x.shape[-2] % self._factor:
            raise InputShapeError(
                f"height and width must be multiples of {self._factor}, got {tuple(x.shape[-2:])}"
            )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check(x)
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        bottom = self.bottleneck(x)
        x = bottom
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            x = decoder(torch.cat([up(x), skip], dim=1))
        out: dict[str, torch.Tensor] = {Head.SEG: self.seg_head(x)}
        features = self.classifier(bottom)
        for name, head in self.heads.items():
            out[Head(name)] = head(features)
        return out
