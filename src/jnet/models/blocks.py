"""Building blocks shared by the backbones."""

from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3 convolution (no bias, since batch norm follows), batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two :class:`ConvBNReLU` blocks: the U-Net's basic unit."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


class Encoder(nn.Module):
    """The U-Net encoder: a double conv per level, 2x2 max pooling between levels.

    Returns the features of every level, finest first: ``depth + 1`` tensors with
    ``widths[i]`` channels at resolution ``h / 2**i``.
    """

    def __init__(self, in_channels: int, widths: list[int]) -> None:
        super().__init__()
        chans = [in_channels, *widths]
        self.blocks = nn.ModuleList(DoubleConv(chans[i], chans[i + 1]) for i in range(len(widths)))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))  # (B, widths[i], h/2^i, w/2^i)
            feats.append(x)
        return feats


class Backbone(nn.Module):
    """Base class of our backbones: checks that the input size fits ``depth`` poolings.

    Subclasses set ``depth`` and implement ``_forward``.
    """

    depth: int = 4

    @property
    def size_divisor(self) -> int:
        """Height and width of the input must be multiples of this (``2**depth``)."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        d = self.size_divisor
        if h % d or w % d or h == 0 or w == 0:
            raise ValueError(
                f"{type(self).__name__} with {self.depth} poolings needs height and width that are "
                f"positive multiples of {d} (e.g. {d}, {2 * d}, {4 * d}, ...); got {h}x{w}"
            )
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
