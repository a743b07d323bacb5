"""EGE-UNet (Ruan, Xie, Gao, Liu, Fu: "EGE-UNet: an efficient group enhanced UNet for skin
lesion segmentation", MICCAI 2023; official code github.com/JCruan519/EGE-UNet).

Architecture. Six stages of ``c = width * (1, 2, 3, 4, 6, 8)`` channels, (8, 16, 24, 32, 48,
64) for the published width 8. The encoder's stages 1-3 are 3x3 convs, stages 4-6 are
grouped multi-axis Hadamard product attention (GHPA) blocks; stages 1-5 are followed by
group norm (4 groups), 2x2 max pooling and GELU, stage 6 (at ``h / 32``) by GELU only. The
decoder mirrors it: GHPA blocks at levels 5-3, 3x3 convs at levels 2-1, each followed by
group norm, a x2 bilinear up-sampling (except at level 5) and GELU. At every decoder level a
1x1 conv turns the decoder features into a one-channel mask map, and a group aggregation
bridge (GAB) adds to the decoder features a fusion of

* the previous (coarser) bridge output (the last encoder stage for level 5), projected by a
  1x1 conv and bilinearly up-sampled to the level,
* the encoder features of the level, and
* the mask map,

split into four channel groups, each ``[coarse_g, skip_g, mask]`` going through a layer norm
and a depth-wise 3x3 conv of dilation 1, 2, 5 or 7, then concatenated, layer-normed and
1x1-convolved back to the level's channels. A 1x1 conv gives the logits at ``h / 2``, which
a x2 bilinear up-sampling brings to the input size. All interpolations use
``align_corners=True``, as in the official code.

GHPA (``in -> out`` channels): a channels-first layer norm, then four channel groups of
``in / 4`` channels: group 1 is multiplied by a learned ``8 x 8`` (height x width) grid,
group 2 by a learned ``channels x 8`` (x height) grid, group 3 by a ``channels x 8``
(x width) grid, each grid bilinearly interpolated to the feature size and passed through a
depth-wise conv (3x3; kernel 3 for the 1-D grids), GELU and a 1x1 conv; group 4 goes through a 1x1
conv, GELU and a depth-wise 3x3 conv. The concatenation is layer-normed and mapped to
``out`` channels by a depth-wise 3x3 conv, GELU and a 1x1 conv.

Facts taken from the paper and the official code: the channel list, the block order above,
the grid size 8 initialised to ones, the dilations (1, 2, 5, 7), layer norm with eps 1e-6
over channels (ConvNeXt's channels-first form), exact (erf) GELU, group norm with 4 groups,
the convs' biases, and the initialisation (2-D convs normal with std ``sqrt(2 / fan_out)``,
``fan_out = k_h * k_w * out / groups``, zero biases; see :func:`init_fan_out_`). With 3 input
channels and one class this model has 53,374 parameters and 0.0721 GMACs at 256x256, the
official model's counts (the paper's "50 KB" parameters and "0.072 GFLOPs", which are MACs).

Deviations:

* Deep supervision: the official model also returns the five mask maps, each up-sampled to
  the input size and passed through a sigmoid, for auxiliary losses during training. Here
  the backbone returns one ``(B, K, h, w)`` logit map (J-Net's multi-scale loss on the head
  takes the role of deep supervision), so those auxiliary outputs are dropped. The five
  mask convs stay: the bridges read their (raw, pre-sigmoid) output, so they are part of the
  inference path. They are one-channel (a class-agnostic foreground map) for any
  ``num_classes``, as in the official code.
* Logits: the final sigmoid is left out (our backbones return logits).

ONNX: the GHPA grids are interpolated to the feature size of each call with
``F.interpolate``; the sizes are Python integers, so a traced export holds constant sizes
(the exported graph has fixed height and width anyway, and a dynamic batch axis).

Numerics: with the authors' initialisation (std ``sqrt(2)`` for the 1x1 convs to one mask
channel) an untrained EGE-UNet gives logits of about 10-40, and its small layer-norm groups
(5 channels in the finest bridge) amplify float32 rounding: its float32 forward can be about
1e-3 from float64. With PyTorch's default conv initialisation the difference is about 1e-6,
which is why the ONNX parity test uses that initialisation for this model.

Options: ``width`` scales the channel list (default 8, the paper's); it must be a multiple of
4, since group norm, the GHPA and the bridges split channels in four groups. The input's
height and width must be multiples of 32 (five poolings).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from jnet.models.blocks import Backbone
from jnet.models.registry import register_model

#: Channels of the six stages relative to ``width``: (8, 16, 24, 32, 48, 64) at the published width 8.
STAGE_RATIOS = (1, 2, 3, 4, 6, 8)
#: Dilations of the four groups of a group aggregation bridge.
BRIDGE_DILATIONS = (1, 2, 5, 7)


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of each pixel of a ``(B, C, H, W)`` map, with a learned affine."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)  # (B, 1, H, W)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def init_fan_out_(module: nn.Module) -> None:
    """The official EGE-UNet / MALUNet initialisation, in place.

    2-D convs: normal with std ``sqrt(2 / fan_out)``, ``fan_out = k_h * k_w * out_channels / groups``,
    zero bias; 1-D convs: normal with std ``sqrt(2 / (k * out_channels))`` (the groups not
    counted, the bias left at PyTorch's default); linear layers: truncated normal with std
    0.02, zero bias. Norm layers keep weight 1 and bias 0.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = max(1, m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups)
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv1d):
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.out_channels)))
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _grid_mixer(conv: type[nn.Conv1d] | type[nn.Conv2d], channels: int) -> nn.Sequential:
    """Depth-wise conv (kernel 3), GELU, 1x1 conv: what a GHPA grid goes through after interpolation."""
    depthwise = conv(channels, channels, 3, padding=1, groups=channels)
    return nn.Sequential(depthwise, nn.GELU(), conv(channels, channels, 1))


class HadamardAttention(nn.Module):
    """Grouped multi-axis Hadamard product attention (GHPA), ``in_channels -> out_channels``.

    Four channel groups: three are multiplied by learned grids over (height, width),
    (channel, height) and (channel, width), interpolated to the feature size; the fourth goes
    through a small conv branch. See the module docstring.
    """

    def __init__(self, in_channels: int, out_channels: int, grid: int = 8) -> None:
        super().__init__()
        c = in_channels // 4
        self.norm_in = ChannelLayerNorm(in_channels)
        self.grid_hw = nn.Parameter(torch.ones(1, c, grid, grid))  # height x width
        self.grid_ch = nn.Parameter(torch.ones(1, 1, c, grid))  # channel x height
        self.grid_cw = nn.Parameter(torch.ones(1, 1, c, grid))  # channel x width
        self.mix_hw = _grid_mixer(nn.Conv2d, c)
        self.mix_ch = _grid_mixer(nn.Conv1d, c)
        self.mix_cw = _grid_mixer(nn.Conv1d, c)
        self.local = nn.Sequential(nn.Conv2d(c, c, 1), nn.GELU(), nn.Conv2d(c, c, 3, padding=1, groups=c))
        self.norm_out = ChannelLayerNorm(in_channels)
        self.project = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels),
            nn.GELU(),
            nn.Conv2d(in_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.grid_ch.shape[2]
        h, w = int(x.shape[-2]), int(x.shape[-1])  # constants when traced: the ONNX graph has fixed sizes
        g1, g2, g3, g4 = self.norm_in(x).chunk(4, dim=1)  # each (B, C/4, H, W)
        a_hw = self.mix_hw(F.interpolate(self.grid_hw, size=(h, w), mode="bilinear", align_corners=True))
        a_ch = F.interpolate(self.grid_ch, size=(c, h), mode="bilinear", align_corners=True)  # (1, 1, C/4, H)
        a_cw = F.interpolate(self.grid_cw, size=(c, w), mode="bilinear", align_corners=True)  # (1, 1, C/4, W)
        a_ch = self.mix_ch(a_ch[0]).unsqueeze(-1)  # (1, C/4, H) -> (1, C/4, H, 1)
        a_cw = self.mix_cw(a_cw[0]).unsqueeze(-2)  # (1, C/4, W) -> (1, C/4, 1, W)
        y = torch.cat([g1 * a_hw, g2 * a_ch, g3 * a_cw, self.local(g4)], dim=1)  # (B, C, H, W)
        return self.project(self.norm_out(y))  # (B, out, H, W)


class GroupAggregationBridge(nn.Module):
    """Fuses the coarser bridge output, the encoder skip and a one-channel mask in four dilated groups.

    Args:
        coarse_channels: channels of the coarser input (projected to ``channels`` by a 1x1 conv).
        channels: channels of the skip and of the output (a multiple of 4).
        upsample: whether the coarser input is at half the resolution (x2 bilinear up-sampling).
    """

    def __init__(self, coarse_channels: int, channels: int, upsample: bool) -> None:
        super().__init__()
        g = 2 * (channels // 4) + 1  # a quarter of the coarse and of the skip channels, and the mask
        self.project = nn.Conv2d(coarse_channels, channels, 1)
        self.upsample = upsample
        self.groups = nn.ModuleList(
            nn.Sequential(ChannelLayerNorm(g), nn.Conv2d(g, g, 3, padding=d, dilation=d, groups=g))
            for d in BRIDGE_DILATIONS
        )
        self.fuse = nn.Sequential(ChannelLayerNorm(4 * g), nn.Conv2d(4 * g, channels, 1))

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        coarse = self.project(coarse)  # (B, C, s, s), s = S or S/2
        if self.upsample:
            coarse = F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=True)  # (B, C, S, S)
        parts = [
            group(torch.cat([a, b, mask], dim=1))  # (B, C/2 + 1, S, S)
            for group, a, b in zip(self.groups, coarse.chunk(4, dim=1), skip.chunk(4, dim=1), strict=True)
        ]
        return self.fuse(torch.cat(parts, dim=1))  # (B, 2C + 4, S, S) -> (B, C, S, S)


def up2(x: torch.Tensor) -> torch.Tensor:
    """x2 bilinear up-sampling with aligned corners, as EGE-UNet's and MALUNet's decoders do."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)


def stage_channels(width: int) -> list[int]:
    """EGE-UNet's and MALUNet's six stage widths, ``width * STAGE_RATIOS`` (``width`` 8 as published)."""
    if width < 4 or width % 4:
        raise ValueError(f"width must be a positive multiple of 4 (channels split in 4 groups), got {width}")
    return [width * r for r in STAGE_RATIOS]


class EGEUNet(Backbone):
    """EGE-UNet: GHPA blocks in the deep stages, group aggregation bridges as skips.

    Returns logits (no sigmoid) and no deep-supervision outputs; see the module docstring.

    Example:
        >>> import torch
        >>> EGEUNet(in_channels=1, num_classes=2).eval()(torch.zeros(1, 1, 64, 64)).shape
        torch.Size([1, 2, 64, 64])
    """

    depth = 5

    def __init__(self, in_channels: int = 1, num_classes: int = 1, width: int = 8) -> None:
        super().__init__()
        c = stage_channels(width)

        def conv3(i: int, o: int) -> nn.Conv2d:
            return nn.Conv2d(i, o, 3, padding=1)

        enc_blocks: list[nn.Module] = [conv3(in_channels, c[0]), conv3(c[0], c[1]), conv3(c[1], c[2])]
        enc_blocks += [HadamardAttention(c[i - 1], c[i]) for i in (3, 4, 5)]
        # encoder stage i: block (+ group norm for i < 5); pooling and GELU in forward
        self.encoder = nn.ModuleList(
            nn.Sequential(block, nn.GroupNorm(4, c[i])) if i < 5 else block for i, block in enumerate(enc_blocks)
        )
        levels = (4, 3, 2, 1, 0)  # decoder step k works at the resolution of encoder stage levels[k]
        dec_blocks = [HadamardAttention(c[i + 1], c[i]) for i in (4, 3, 2)] + [conv3(c[2], c[1]), conv3(c[1], c[0])]
        self.decoder = nn.ModuleList(
            nn.Sequential(block, nn.GroupNorm(4, c[i])) for block, i in zip(dec_blocks, levels, strict=True)
        )
        self.mask_heads = nn.ModuleList(nn.Conv2d(c[i], 1, 1) for i in levels)
        self.bridges = nn.ModuleList(GroupAggregationBridge(c[i + 1], c[i], upsample=i < 4) for i in levels)
        self.classifier = nn.Conv2d(c[0], num_classes, 1)
        init_fan_out_(self)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        y = x
        for stage in self.encoder[:-1]:
            y = F.gelu(F.max_pool2d(stage(y), 2))  # stage i: (B, c_i, h/2^(i+1), w/2^(i+1))
            skips.append(y)
        y = F.gelu(self.encoder[-1](y))  # (B, c_5, h/32, w/32)
        coarse = y
        for k, (stage, mask_head, bridge) in enumerate(zip(self.decoder, self.mask_heads, self.bridges, strict=True)):
            y = stage(y)  # (B, c_l, s, s), l = 4 - k
            y = F.gelu(up2(y) if k else y)  # x2 except at the deepest level: (B, c_l, S, S)
            mask = mask_head(y)  # (B, 1, S, S): the mask map that guides the bridge
            coarse = bridge(coarse, skips[-1 - k], mask)  # (B, c_l, S, S)
            y = y + coarse
        return up2(self.classifier(y))  # (B, K, h/2, w/2) -> (B, K, h, w)


@register_model("egeunet")
def egeunet(in_channels: int = 1, num_classes: int = 1, width: int = 8) -> EGEUNet:
    """EGE-UNet; ``width`` channels in the first stage, ``width * (1, 2, 3, 4, 6, 8)`` in all (8 published)."""
    return EGEUNet(in_channels, num_classes, width=width)
