"""MALUNet (Ruan, Xiang, Xie, Liu, Fu: "MALUNet: a multi-attention and light-weight UNet for
skin lesion segmentation", IEEE BIBM 2022; official code github.com/JCruan519/MALUNet).

Architecture. Six stages of ``c = width * (1, 2, 3, 4, 6, 8)`` channels, (8, 16, 24, 32, 48,
64) for the published width 8. The encoder's stages 1-3 are 3x3 convs; stages 4-6 are an
external attention block (EAB) followed by a dilated gated attention block (DGA) that
changes the channels. Stages 1-5 are followed by group norm (4 groups), 2x2 max pooling and
GELU, stage 6 (at ``h / 32``) by GELU only. The outputs of stages 1-5 go through the
spatial-channel attention bridge (SCAB) and are added as skips to the decoder, whose levels
5-3 are a DGA (changing the channels) followed by an EAB and levels 2-1 3x3 convs; each is
followed by group norm, a x2 bilinear up-sampling (except at level 5) and GELU, then the
skip is added. A 1x1 conv gives the logits at ``h / 2``, which a x2 bilinear up-sampling
brings to the input size. Interpolations use ``align_corners=True``, as in the official code.

Blocks:

* DGA (``in -> out``): four channel groups, each a depth-wise 3x3 conv of dilation 7, 5, 2
  or 1; concatenation, group norm, 1x1 conv, GELU; then a gated attention unit: a gate
  (sigmoid of a depth-wise-separable 3x3 conv) times a value (GELU of a depth-wise-separable
  5x5 conv), a depth-wise-separable 3x3 conv to ``out`` channels and GELU, plus a 1x1 conv
  shortcut of the input. A depth-wise-separable conv is a depth-wise conv, group norm and a
  1x1 conv.
* EAB (``C`` channels): external attention with ``4C`` memory slots: a 1x1 conv, the keys
  memory (a bias-free 1x1 conv to ``4C``), a softmax over the pixels, a normalisation over
  the slots (double normalisation), the values memory (a bias-free 1x1 conv back to ``C``),
  a bias-free 1x1 conv and group norm, the input added, GELU.
* SCAB: spatial attention (a sigmoid map from a 7x7 conv of dilation 3, shared by the five
  levels, over the channel mean and max) applied and added back; then channel attention
  (the global averages of the five levels concatenated, a 1-D conv of kernel 3 across them,
  a linear layer and sigmoid per level) applied, and the spatially attended features added.

Facts taken from the paper and the official code: the channel list, the block order, kernel
sizes and dilations, the ``4C`` memory slots, the 1e-9 of the double normalisation, exact
(erf) GELU, the convs' biases, the linear ("fc") form of the channel attention and the
initialisation (:func:`jnet.models.egeunet.init_fan_out_`). With 3 input channels and one
class this model has 177,943 parameters and 0.0827 GMACs at 256x256, the official model's
counts (the paper reports 0.175 M parameters and 0.083 GFLOPs, which are MACs).

Deviations:

* Logits: the final sigmoid is left out (our backbones return logits).
* The two memories of an EAB are independent parameters, the values memory initialised as
  the transpose of the keys memory (:meth:`ExternalAttention.reset_memories_`). The official
  code assigns the values' weight a transposed *view* of the keys' weight, so on the CPU the
  two parameters share one storage (moving the model to a GPU copies them apart); the
  external-attention design has two independent memories, which is what is kept here. The
  parameter count is the same.
* The EAB memories and the SCAB are written with 1x1 2-D convs and plain tensor ops instead
  of 1-D convs on flattened maps: the same arithmetic, MACs and parameter counts.

Options: ``width`` scales the channel list (default 8, the paper's); it must be a multiple of
4 (group norm and the DGA split channels in four groups). The input's height and width must
be multiples of 32 (five poolings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jnet.models.blocks import Backbone
from jnet.models.egeunet import init_fan_out_, stage_channels, up2
from jnet.models.registry import register_model

#: Dilations of the four groups of a dilated gated attention block.
DGA_DILATIONS = (7, 5, 2, 1)


def _separable(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    """Depth-wise ``kernel x kernel`` conv, group norm (4 groups), 1x1 conv to ``out_channels``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel, padding=kernel // 2, groups=in_channels),
        nn.GroupNorm(4, in_channels),
        nn.Conv2d(in_channels, out_channels, 1),
    )


class DilatedGatedAttention(nn.Module):
    """DGA: four dilated depth-wise groups, then a gated attention unit, ``in_channels -> out_channels``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        g = in_channels // 4
        self.groups = nn.ModuleList(nn.Conv2d(g, g, 3, padding=d, dilation=d, groups=g) for d in DGA_DILATIONS)
        self.mix = nn.Sequential(nn.GroupNorm(4, in_channels), nn.Conv2d(in_channels, in_channels, 1), nn.GELU())
        self.gate = nn.Sequential(_separable(in_channels, in_channels, 3), nn.Sigmoid())
        self.value = nn.Sequential(_separable(in_channels, in_channels, 5), nn.GELU())
        self.out = nn.Sequential(_separable(in_channels, out_channels, 3), nn.GELU())
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [conv(t) for conv, t in zip(self.groups, x.chunk(4, dim=1), strict=True)]  # each (B, C/4, H, W)
        x = self.mix(torch.cat(parts, dim=1))  # (B, C, H, W)
        return self.out(self.gate(x) * self.value(x)) + self.shortcut(x)  # (B, out, H, W)


class ExternalAttention(nn.Module):
    """EAB: external attention with ``memory * channels`` slots and double normalisation, a residual, GELU."""

    def __init__(self, channels: int, memory: int = 4) -> None:
        super().__init__()
        slots = memory * channels
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.keys = nn.Conv2d(channels, slots, 1, bias=False)
        self.values = nn.Conv2d(slots, channels, 1, bias=False)
        self.proj_out = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.GroupNorm(4, channels))

    def reset_memories_(self) -> None:
        """Initialise the keys memory normal with std ``sqrt(2 / C)`` and the values memory as its
        transpose: what the official initialisation leaves in the storage the two share."""
        with torch.no_grad():
            nn.init.normal_(self.keys.weight, 0.0, (2.0 / self.values.out_channels) ** 0.5)
            self.values.weight.copy_(self.keys.weight.transpose(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.keys(self.proj_in(x))  # (B, S, H, W), S = memory slots
        a = torch.softmax(a.flatten(2), dim=-1).view_as(a)  # softmax over the pixels
        a = a / (1e-9 + a.sum(dim=1, keepdim=True))  # then normalised over the slots
        return F.gelu(self.proj_out(self.values(a)) + x)  # (B, C, H, W)


class SpatialChannelBridge(nn.Module):
    """SCAB: spatial then channel attention over the five skip levels (``channels`` of each)."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.spatial = nn.Sequential(nn.Conv2d(2, 1, 7, padding=9, dilation=3), nn.Sigmoid())
        self.across = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.excite = nn.ModuleList(nn.Linear(sum(channels), c) for c in channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        attended = [
            t * self.spatial(torch.cat([t.mean(1, keepdim=True), t.amax(1, keepdim=True)], dim=1))  # (B, C_i, H, W)
            for t in feats
        ]
        mixed = [a + t for a, t in zip(attended, feats, strict=True)]
        pooled = torch.cat([m.mean(dim=(2, 3)) for m in mixed], dim=1)  # (B, sum C_i)
        pooled = self.across(pooled.unsqueeze(1)).squeeze(1)  # 1-D conv across the channels of all levels
        return [
            m * torch.sigmoid(fc(pooled))[:, :, None, None] + a  # (B, C_i, 1, 1) channel weights
            for fc, m, a in zip(self.excite, mixed, attended, strict=True)
        ]


class MALUNet(Backbone):
    """MALUNet: external and dilated gated attention in the deep stages, an attention bridge on the skips.

    Returns logits (no sigmoid); see the module docstring.

    Example:
        >>> import torch
        >>> MALUNet(in_channels=1, num_classes=2).eval()(torch.zeros(1, 1, 64, 64)).shape
        torch.Size([1, 2, 64, 64])
    """

    depth = 5

    def __init__(self, in_channels: int = 1, num_classes: int = 1, width: int = 8) -> None:
        super().__init__()
        c = stage_channels(width)

        def conv3(i: int, o: int) -> nn.Conv2d:
            return nn.Conv2d(i, o, 3, padding=1)

        enc_blocks: list[nn.Module] = [conv3(in_channels, c[0]), conv3(c[0], c[1]), conv3(c[1], c[2])]
        enc_blocks += [
            nn.Sequential(ExternalAttention(c[i - 1]), DilatedGatedAttention(c[i - 1], c[i])) for i in (3, 4, 5)
        ]
        # encoder stage i: block (+ group norm for i < 5); pooling and GELU in forward
        self.encoder = nn.ModuleList(
            nn.Sequential(block, nn.GroupNorm(4, c[i])) if i < 5 else block for i, block in enumerate(enc_blocks)
        )
        self.bridge = SpatialChannelBridge(c[:5])
        levels = (4, 3, 2, 1, 0)  # decoder step k works at the resolution of encoder stage levels[k]
        dec_blocks: list[nn.Module] = [
            nn.Sequential(DilatedGatedAttention(c[i + 1], c[i]), ExternalAttention(c[i])) for i in (4, 3, 2)
        ]
        dec_blocks += [conv3(c[2], c[1]), conv3(c[1], c[0])]
        self.decoder = nn.ModuleList(
            nn.Sequential(block, nn.GroupNorm(4, c[i])) for block, i in zip(dec_blocks, levels, strict=True)
        )
        self.classifier = nn.Conv2d(c[0], num_classes, 1)
        init_fan_out_(self)
        for m in self.modules():
            if isinstance(m, ExternalAttention):
                m.reset_memories_()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        y = x
        for stage in self.encoder[:-1]:
            y = F.gelu(F.max_pool2d(stage(y), 2))  # stage i: (B, c_i, h/2^(i+1), w/2^(i+1))
            skips.append(y)
        skips = self.bridge(skips)  # same shapes
        y = F.gelu(self.encoder[-1](y))  # (B, c_5, h/32, w/32)
        for k, stage in enumerate(self.decoder):
            y = stage(y)  # (B, c_l, s, s), l = 4 - k
            y = F.gelu(up2(y) if k else y) + skips[-1 - k]  # x2 except at the deepest level: (B, c_l, S, S)
        return up2(self.classifier(y))  # (B, K, h/2, w/2) -> (B, K, h, w)


@register_model("malunet")
def malunet(in_channels: int = 1, num_classes: int = 1, width: int = 8) -> MALUNet:
    """MALUNet; ``width`` channels in the first stage, ``width * (1, 2, 3, 4, 6, 8)`` in all (8 published)."""
    return MALUNet(in_channels, num_classes, width=width)
