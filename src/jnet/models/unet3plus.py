"""U-Net 3+ (Huang, Lin, Tong, Hu, Zhang, Iwamoto, Han, Chen, Wu: "UNet 3+: a full-scale
connected UNet for medical image segmentation", ICASSP 2020).

The encoder is the U-Net's (``width * 2**i`` channels at level ``i``, 64 ... 1024 in the
paper). The decoder replaces the U-Net's single same-level skip by "full-scale skip
connections": decoder level ``l`` (from ``depth - 1`` up to 0) gathers ``depth + 1`` feature
maps at its own resolution ``h / 2**l``:

* every shallower encoder level ``i < l``, max-pooled by ``2**(l - i)`` (kernel = stride),
* the encoder features of level ``l`` itself,
* every deeper decoder level ``k > l``, and the bottleneck (encoder level ``depth``, which
  stands in for the deepest decoder level), bilinearly up-sampled by ``2**(k - l)``.

Each of them goes through its own 3x3 conv + BN + ReLU to ``cat_channels`` channels (64 in
the paper); the ``depth + 1`` maps are concatenated and fused by one 3x3 conv + BN + ReLU at
``up_channels = (depth + 1) * cat_channels`` (320 in the paper). So every decoder level has
``up_channels`` channels, whatever its depth. A 3x3 conv (with bias) maps decoder level 0 to
the ``num_classes`` logits, as in the paper, whose output layers are 3x3 convs (a 1x1 conv
would save ``8 * up_channels * num_classes`` weights, 2,560 per class in the paper's setting).

Left out, on purpose:

* the full-scale deep supervision (a side output per decoder level, each up-sampled to the
  input size) and
* the classification-guided module (an image-level "organ present?" classifier on the
  bottleneck that zeroes the masks of empty images).

Both are training-time aids that would change what the backbone returns. In J-Net a backbone
must return one ``(B, K, h, w)`` logit map at the input resolution; the J-Net head then makes
its own multi-scale outputs, each supervised by :class:`jnet.losses.MultiScaleLoss`, which
takes the role of deep supervision, and empty-mask handling is left to the loss.

Like the other backbones here, convs followed by batch norm have no bias (the batch norm's
shift makes it redundant). With the paper's settings (width 64, depth 4, cat_channels 64)
this model has 26,965,249 parameters for 3 input channels and one class (26,964,097 for one
input channel), against the 26.97 M the paper reports for UNet 3+ without deep supervision:
the 6,528 biases of the convs that precede a batch norm (3,968 in the encoder, 1,280 in the
skip paths, 1,280 in the fusion convs) make up the difference, 26,971,777 with them.
"""

from __future__ import annotations

import torch
from torch import nn

from jnet.models.blocks import Backbone, ConvBNReLU, Encoder
from jnet.models.registry import register_model


def _skip_path(in_channels: int, out_channels: int, steps: int) -> nn.Module:
    """Bring a feature map ``steps`` levels finer than the decoder to its resolution, then a
    3x3 conv + BN + ReLU.

    ``steps`` > 0: max pooling by ``2**steps`` (a shallower encoder level); ``steps`` < 0:
    bilinear up-sampling by ``2**-steps`` (a deeper decoder level or the bottleneck);
    ``steps`` == 0: the conv only (the encoder level at the decoder's own resolution).
    """
    conv = ConvBNReLU(in_channels, out_channels)
    if steps > 0:
        return nn.Sequential(nn.MaxPool2d(2**steps, stride=2**steps), conv)
    if steps < 0:
        up = nn.Upsample(scale_factor=2**-steps, mode="bilinear", align_corners=False)
        return nn.Sequential(up, conv)
    return conv


class UNet3Plus(Backbone):
    """U-Net 3+: full-scale skip connections, ``(depth + 1) * cat_channels`` decoder channels.

    Without deep supervision or the classification-guided module (see the module docstring).

    Args:
        in_channels: image channels.
        num_classes: output channels ``K``.
        width: encoder channels at the finest level (``width * 2**i`` at level ``i``).
        depth: number of poolings; height and width must be multiples of ``2**depth``.
        cat_channels: channels of each skip path before concatenation (default ``width``).

    Example:
        >>> import torch
        >>> UNet3Plus(in_channels=1, num_classes=2, width=4)(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 2, 32, 32])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 1,
        width: int = 64,
        depth: int = 4,
        cat_channels: int | None = None,
    ) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
        cat = width if cat_channels is None else cat_channels
        if cat < 1:
            raise ValueError(f"cat_channels must be >= 1, got {cat_channels}")
        self.depth = depth
        self.cat_channels = cat
        self.up_channels = up = (depth + 1) * cat
        c = [width * 2**i for i in range(depth + 1)]
        self.encoder = Encoder(in_channels, c)

        def sources(level: int) -> list[tuple[int, int]]:
            # (channels, level) of the depth + 1 inputs of decoder `level`, shallowest first:
            # encoder 0..level, decoder level+1..depth-1, then the bottleneck (encoder `depth`)
            enc = [(c[i], i) for i in range(level + 1)]
            dec = [(up, k) for k in range(level + 1, depth)]
            return [*enc, *dec, (c[depth], depth)]

        # skips[n] / fuses[n] serve decoder level l = depth - 1 - n (deepest first)
        self.skips = nn.ModuleList(
            nn.ModuleList(_skip_path(ch, cat, level - k) for ch, k in sources(level))
            for level in reversed(range(depth))
        )
        self.fuses = nn.ModuleList(ConvBNReLU(up, up) for _ in range(depth))
        self.classifier = nn.Conv2d(up, num_classes, 3, padding=1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)  # level i: (B, width*2^i, h/2^i, w/2^i); feats[depth] is the bottleneck
        dec: dict[int, torch.Tensor] = {self.depth: feats[-1]}  # the bottleneck stands in for decoder `depth`
        for n, (skips, fuse) in enumerate(zip(self.skips, self.fuses, strict=True)):
            level = self.depth - 1 - n
            inputs = [*feats[: level + 1], *(dec[k] for k in range(level + 1, self.depth + 1))]
            parts = [s(t) for s, t in zip(skips, inputs, strict=True)]  # each (B, cat, h/2^l, w/2^l)
            dec[level] = fuse(torch.cat(parts, dim=1))  # (B, (depth+1)*cat, h/2^l, w/2^l)
        return self.classifier(dec[0])  # (B, K, h, w)


@register_model("unet3plus")
def unet3plus(
    in_channels: int = 1, num_classes: int = 1, width: int = 64, depth: int = 4, cat_channels: int | None = None
) -> UNet3Plus:
    """U-Net 3+; ``width`` channels at the finest level and ``cat_channels`` per skip (64 and 64 published)."""
    return UNet3Plus(in_channels, num_classes, width=width, depth=depth, cat_channels=cat_channels)
