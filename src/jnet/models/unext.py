"""UNeXt (Valanarasu, Patel: "UNeXt: MLP-based rapid medical image segmentation network",
MICCAI 2022; official code github.com/jeya-maria-jose/UNeXt-pytorch).

Architecture, with stage channels ``c = (16, 32, 128, 160, 256)``:

* Convolutional stages 1-3: a 3x3 conv (with bias), batch norm, 2x2 max pooling and ReLU,
  to ``c_0, c_1, c_2`` channels at ``h/2, h/4, h/8``.
* Tokenized MLP stages 4 and 5 (the bottleneck): an overlapping patch embedding (3x3 conv of
  stride 2 and a layer norm over the channels) to ``c_3`` at ``h/16`` and ``c_4`` at
  ``h/32``, one shifted-MLP block, a layer norm.
* Decoder, five steps: a 3x3 conv (with bias) to the next shallower stage's channels, batch
  norm (none in the last step), x2 bilinear up-sampling (``align_corners=False``), ReLU, the
  encoder features of that stage added; after the first two steps (at ``c_3`` and ``c_2``
  channels) a shifted-MLP block and a layer norm. The last step maps ``c_0`` to ``c_0`` at
  the input resolution and has no skip; a 1x1 conv gives the logits.

Shifted-MLP block (``C`` channels, residual): a layer norm, a shift along the height (the
channels split in five groups, ``ceil(C / 5)`` each, shifted by -2, -1, 0, 1, 2 pixels with
zero filling), a channel MLP (``C -> C``), a depth-wise 3x3 conv, GELU, a shift along the
width, a channel MLP (``C -> C``); the block's input is added.

Facts taken from the paper and the official code: the channels, the stage order above, MLP
ratio 1, the shift of 5 groups (along the height, dim 2, before the first MLP and along the
width, dim 3, before the second, as the official code does), layer norms with eps 1e-5,
exact (erf) GELU, ``align_corners=False`` and the initialisation of the tokenized blocks
(linear layers truncated normal with std 0.02 and zero bias, convs normal with std
``sqrt(2 / fan_out)``, ``fan_out = k_h * k_w * out / groups``, zero bias; the convolutional
stages keep PyTorch's default). Like the official model, it returns logits (no sigmoid).
With 3 input channels and one class this model has 1,471,921 parameters and 0.562 GMACs at
256x256, the official model's counts (the paper: 1.47 M parameters, 0.57 GFLOPs).

Deviations, none of which changes the arithmetic, the parameter count or the MACs:

* The tokens are kept as ``(B, C, H, W)`` maps: the "linear" layers of the MLPs are 1x1
  convs and the layer norms normalise over the channel axis (no flatten / transpose round
  trips).
* The shift pads the map once and slices each group (the official code rolls the groups of
  a zero-padded map and crops them): the same zero-filled shift, exported to ONNX as ``Pad`` and ``Slice``.
* The first conv reads ``in_channels`` channels (the official class ignores its
  ``input_channels`` argument and always reads 3).
* Dropout and stochastic depth are left out (their rates are 0 in the official code).

Options: ``channels`` sets the five stage channels (the paper's by default; the official
code's lighter UNeXt-S uses ``(8, 16, 32, 64, 128)``). The model is not scaled by one
``width``, so a ``width`` option is refused with a ValueError that says so. The input's
height and width must be multiples of 32 (three poolings and two stride-2 embeddings).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jnet.models.blocks import Backbone
from jnet.models.egeunet import ChannelLayerNorm
from jnet.models.registry import register_model

#: The stage channels of UNeXt as published.
CHANNELS = (16, 32, 128, 160, 256)
#: Channel groups of a shift (shifted by -2 ... 2 pixels).
SHIFT_GROUPS = 5
LN_EPS = 1e-5


def shift_groups(x: torch.Tensor, dim: int, groups: int = SHIFT_GROUPS) -> torch.Tensor:
    """Shift channel group ``i`` of ``x`` by ``i - groups // 2`` pixels along ``dim`` (2: height, 3: width).

    The channels are split in groups of ``ceil(C / groups)`` (the last one smaller, as
    ``torch.chunk`` does); vacated pixels are zero.
    """
    pad = groups // 2
    size = int(x.shape[dim])  # a constant when traced
    padding = (0, 0, pad, pad) if dim == 2 else (pad, pad)
    padded = F.pad(x, padding)  # (B, C, H + 2 pad, W) or (B, C, H, W + 2 pad)
    channels = int(x.shape[1])
    step = math.ceil(channels / groups)
    sizes = [min(step, channels - start) for start in range(0, channels, step)]  # torch.chunk's split
    parts = torch.split(padded, sizes, dim=1)  # explicit sizes: the exporter mis-splits an uneven int
    # group i moves by s = i - pad: out[j] = in[j - s] = padded[j + pad - s]
    return torch.cat([p.narrow(dim, 2 * pad - i, size) for i, p in enumerate(parts)], dim=1)


class ShiftedMLPBlock(nn.Module):
    """Layer norm, shift along the height, channel MLP, depth-wise conv, GELU, shift along the width,
    channel MLP; plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(channels, eps=LN_EPS)
        self.fc1 = nn.Conv2d(channels, channels, 1)
        self.dwconv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.fc2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc1(shift_groups(self.norm(x), dim=2))  # (B, C, H, W)
        y = F.gelu(self.dwconv(y))
        return x + self.fc2(shift_groups(y, dim=3))  # (B, C, H, W)


class TokenStage(nn.Sequential):
    """Overlapping patch embedding (3x3 conv of stride 2, layer norm), a shifted-MLP block, a layer norm."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1),
            ChannelLayerNorm(out_channels, eps=LN_EPS),
            ShiftedMLPBlock(out_channels),
            ChannelLayerNorm(out_channels, eps=LN_EPS),
        )


def _init_tokenized_(module: nn.Module) -> None:
    """The official initialisation of the tokenized blocks: convs normal with std ``sqrt(2 / fan_out)``
    (``fan_out = k_h * k_w * out / groups``), the MLPs' layers truncated normal with std 0.02; zero biases."""
    for m in module.modules():
        if isinstance(m, ShiftedMLPBlock):
            for fc in (m.fc1, m.fc2):
                nn.init.trunc_normal_(fc.weight, std=0.02)
                nn.init.zeros_(fc.bias)  # type: ignore[arg-type]
        elif isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class UNeXt(Backbone):
    """UNeXt: three conv stages, two tokenized shifted-MLP stages, a conv decoder with MLP blocks.

    Example:
        >>> import torch
        >>> UNeXt(in_channels=1, num_classes=2).eval()(torch.zeros(1, 1, 64, 64)).shape
        torch.Size([1, 2, 64, 64])
    """

    depth = 5

    def __init__(self, in_channels: int = 1, num_classes: int = 1, channels: Sequence[int] = CHANNELS) -> None:
        super().__init__()
        c = [int(v) for v in channels]
        if len(c) != 5 or min(c) < 1:
            raise ValueError(f"channels must be five positive stage widths, e.g. {CHANNELS}; got {tuple(channels)}")
        self.channels = tuple(c)
        chans = [in_channels, *c[:3]]
        # conv stage i: conv + batch norm (next to each other: export folds the norm); pooling, ReLU in forward
        self.conv_stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 3, padding=1), nn.BatchNorm2d(chans[i + 1]))
            for i in range(3)
        )
        self.token_stages = nn.ModuleList([TokenStage(c[2], c[3]), TokenStage(c[3], c[4])])
        # decoder step k: c[4-k] -> c[3-k] (the last c[0] -> c[0], without batch norm)
        outs = [c[3], c[2], c[1], c[0], c[0]]
        ins = [c[4], *outs[:-1]]
        self.decoder = nn.ModuleList(
            nn.Sequential(nn.Conv2d(i, o, 3, padding=1), *([nn.BatchNorm2d(o)] if k < 4 else []))
            for k, (i, o) in enumerate(zip(ins, outs, strict=True))
        )
        self.decoder_mlps = nn.ModuleList(
            nn.Sequential(ShiftedMLPBlock(o), ChannelLayerNorm(o, eps=LN_EPS)) for o in outs[:2]
        )
        self.classifier = nn.Conv2d(c[0], num_classes, 1)
        for m in (self.token_stages, self.decoder_mlps):
            _init_tokenized_(m)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        y = x
        for stage in self.conv_stages:
            y = F.relu(F.max_pool2d(stage(y), 2))  # stage i: (B, c_i, h/2^(i+1), w/2^(i+1))
            skips.append(y)
        y = self.token_stages[0](y)  # (B, c_3, h/16, w/16)
        skips.append(y)
        y = self.token_stages[1](y)  # (B, c_4, h/32, w/32)
        for k, step in enumerate(self.decoder):
            y = F.relu(_up2(step(y)))  # (B, c_(3-k), 2s, 2s); the last step (B, c_0, h, w)
            if k < 4:
                y = y + skips[3 - k]
            if k < 2:
                y = self.decoder_mlps[k](y)
        return self.classifier(y)  # (B, K, h, w)


@register_model("unext")
def unext(
    in_channels: int = 1, num_classes: int = 1, channels: Sequence[int] = CHANNELS, **unsupported: object
) -> UNeXt:
    """UNeXt; ``channels``: the five stage widths (the paper's ``(16, 32, 128, 160, 256)`` by default).

    UNeXt has no ``width`` option (its stages are not multiples of one width): any other
    option is a ValueError that says so.
    """
    if unsupported:
        names = ", ".join(sorted(unsupported))
        raise ValueError(
            f"unext has no option(s) {names}: it is not scaled by a width; set its five stage channels with "
            f"channels=(...) instead, e.g. {CHANNELS} (the paper's) or (8, 16, 32, 64, 128) (the official UNeXt-S)"
        )
    return UNeXt(in_channels, num_classes, channels=channels)
