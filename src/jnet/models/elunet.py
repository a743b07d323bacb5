"""ELU-Net (Deng, Hou, Yan, Zeng: "ELU-Net: an efficient and lightweight U-Net for medical
image segmentation", IEEE Access 10, 2022), the backbone the J-Net paper builds on.

The encoder is the U-Net's. The decoder replaces the U-Net's single skip per level with
"deep skip connections": decoder level ``l`` concatenates

* the output of the deeper decoder level, up-sampled x2 (transposed conv, then 3x3 conv to
  ``c_l`` channels), and
* the encoder features of level ``l`` and of every deeper encoder level ``j > l`` (the
  bottleneck excluded), each brought to level ``l``'s resolution by ``j - l`` x2 transposed
  convs and a 3x3 conv to ``c_l`` channels (level ``l`` itself: the 3x3 conv only),

then applies a double conv. With ``depth`` poolings, level ``l`` concatenates
``depth - l + 1`` tensors of ``c_l = width * 2**l`` channels.

Default width: 16. The J-Net paper's Table 4 gives ELU-Net 29.98 GMac against U-Net 71.16 GMac
at 320x320 with one input channel, but its ELU-Net code is not published. Here, at 320x320,
the U-Net at width 64 has 75.1 GMac and this ELU-Net has 4.5 / 17.9 / 71.7 GMac at width
8 / 16 / 32 (MACs of convs and transposed convs, ``tests/test_models.py`` pins them). Width 16
is the power of two closest to the paper's complexity, keeps ELU-Net "lightweight" (about a
quarter of the U-Net's MACs, 3.4 M parameters against 31.0 M), and is the setting the
project's experiments use. Width 21 would match the paper's 29.98 GMac if that is wanted.
"""

from __future__ import annotations

import torch
from torch import nn

from jnet.models.blocks import Backbone, DoubleConv, Encoder
from jnet.models.registry import register_model


class _UpProject(nn.Sequential):
    """``steps`` x2 transposed convs at ``in_channels``, then a 3x3 conv to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, steps: int) -> None:
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_channels, in_channels, 2, stride=2) for _ in range(steps)]
        layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        super().__init__(*layers)


class ELUNet(Backbone):
    """ELU-Net with deep skip connections from the same and every deeper encoder level.

    Example:
        >>> import torch
        >>> ELUNet(in_channels=1, num_classes=3, width=4).eval()(torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 3, 16, 16])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 1, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
        self.depth = depth
        c = [width * 2**i for i in range(depth + 1)]
        self.encoder = Encoder(in_channels, c)
        # ups[k] / skips[k] / decoders[k] serve decoder level l = depth - 1 - k (deepest first)
        self.ups = nn.ModuleList(_UpProject(c[l + 1], c[l], 1) for l in reversed(range(depth)))
        self.skips = nn.ModuleList(
            nn.ModuleList(_UpProject(c[j], c[l], j - l) for j in range(l, depth)) for l in reversed(range(depth))
        )
        self.decoders = nn.ModuleList(DoubleConv((depth - l + 1) * c[l], c[l]) for l in reversed(range(depth)))
        self.classifier = nn.Conv2d(c[0], num_classes, 1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)  # level i: (B, width*2^i, h/2^i, w/2^i)
        y = feats[-1]  # bottleneck
        for k, (up, skips, dec) in enumerate(zip(self.ups, self.skips, self.decoders, strict=True)):
            level = self.depth - 1 - k
            parts = [up(y)] + [s(feats[j]) for s, j in zip(skips, range(level, self.depth), strict=True)]
            y = dec(torch.cat(parts, dim=1))  # (B, (depth-level+1)*c_l, s, s) -> (B, c_l, s, s)
        return self.classifier(y)  # (B, K, h, w)


@register_model("elunet")
def elunet(in_channels: int = 1, num_classes: int = 1, width: int = 16, depth: int = 4) -> ELUNet:
    """ELU-Net; ``width`` channels at the finest level (default 16, see the module docstring)."""
    return ELUNet(in_channels, num_classes, width=width, depth=depth)
