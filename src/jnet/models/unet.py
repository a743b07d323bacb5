"""The classic U-Net (Ronneberger et al., MICCAI 2015), with batch norm and padded convs."""

from __future__ import annotations

import torch
from torch import nn

from jnet.models.blocks import Backbone, DoubleConv, Encoder
from jnet.models.registry import register_model


class UNet(Backbone):
    """U-Net: ``depth`` poolings, double 3x3 conv + BN + ReLU blocks, transposed-conv up path.

    Channels are ``width * 2**i`` at level ``i`` (64, 128, ..., 1024 for the default width).

    Example:
        >>> import torch
        >>> UNet(in_channels=1, num_classes=1, width=8)(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 1, width: int = 64, depth: int = 4) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
        self.depth = depth
        widths = [width * 2**i for i in range(depth + 1)]
        self.encoder = Encoder(in_channels, widths)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.decoders = nn.ModuleList(DoubleConv(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)  # level i: (B, width*2^i, h/2^i, w/2^i)
        y = feats[-1]
        for up, dec, skip in zip(self.ups, self.decoders, reversed(feats[:-1]), strict=True):
            y = dec(torch.cat([up(y), skip], dim=1))  # (B, c, s, s) -> (B, c/2, 2s, 2s)
        return self.classifier(y)  # (B, K, h, w)


@register_model("unet")
def unet(in_channels: int = 1, num_classes: int = 1, width: int = 64, depth: int = 4) -> UNet:
    """The classic U-Net; ``width`` channels at the finest level (default 64, as published)."""
    return UNet(in_channels, num_classes, width=width, depth=depth)
