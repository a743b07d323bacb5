"""Up-scaling heads: from class logits at the input resolution to the output resolution.

A head takes the backbone's logits ``y0`` of shape ``(B, K, h, w)`` and returns the list of
its outputs at every scale, input resolution first and output resolution last. Every head
works on ``K = num_classes`` channels only, so it attaches to any backbone.

=============== ========================================================= ================
name            what it does                                              outputs
=============== ========================================================= ================
``jnet``        the paper's cascade of x2 stages with inter-stage skips   ``m + 1``
``jnet-noskip`` the same cascade without the skips (ablation)             ``m + 1``
``jnet-single`` one x2**m transposed conv + 3x3 conv (ablation)           2
``interp``      bilinear up-sampling of the logits, no parameters         2
``none``        nothing: output at the input resolution (the baseline)    1
=============== ========================================================= ================

``m = log2(output / input)``. The J-Net heads need the output size to be the input size
times a power of two (in both dimensions) and raise a ValueError otherwise; ``interp``
accepts any output size at least the input size. There is no hidden final resize.

The J-Net heads contain no non-linearity (the paper lists none and counts only the
convolutions' weights): the cascade is a learned *linear* up-sampler of the base logits.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jnet._options import check_option

Size = tuple[int, int]


def to_size(size: int | Sequence[int], name: str = "size") -> Size:
    """``16`` -> ``(16, 16)``; ``(h, w)`` stays; anything else raises a ValueError."""
    if isinstance(size, int):
        pair = (size, size)
    else:
        pair = tuple(int(s) for s in size)
        if len(pair) != 2:
            raise ValueError(f"{name} must be an int or (height, width), got {size!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return pair  # type: ignore[return-value]


def num_upscaling_stages(input_size: int | Sequence[int], output_size: int | Sequence[int]) -> int:
    """``m`` such that ``output = input * 2**m`` in both dimensions, or a ValueError saying why not."""
    (h, w), (oh, ow) = to_size(input_size, "input_size"), to_size(output_size, "output_size")
    ratios = (oh / h, ow / w)
    m = round(math.log2(ratios[0])) if ratios[0] >= 1 else -1
    if m < 0 or ratios[0] != ratios[1] or ratios[0] != 2**m:
        valid = ", ".join(f"{h * 2**k}x{w * 2**k}" for k in range(1, 6))
        raise ValueError(
            f"output size {oh}x{ow} is not input size {h}x{w} times a power of two; "
            f"the J-Net heads up-scale by x2 stages, so valid output sizes are {h}x{w}, {valid}, ... "
            "(the 'interp' head accepts any size)"
        )
    return m


_INITS = ("nearest", "default")


@torch.no_grad()
def _init_nearest(head: nn.Module) -> None:
    """Make a transposed-conv head start as nearest-neighbour up-sampling of ``y0``.

    Transposed convs copy each class channel into its block, 3x3 convs pass the centre
    pixel through, and a skip stage's conv averages its two (then equal) inputs.
    """
    for m in head.modules():
        if isinstance(m, nn.ConvTranspose2d | nn.Conv2d):
            k = m.out_channels
            eye = torch.eye(k)
            m.bias.zero_()
            m.weight.zero_()
            if isinstance(m, nn.ConvTranspose2d):  # weight (K_in, K_out, f, f)
                m.weight.copy_(eye[:, :, None, None].expand_as(m.weight))
            else:  # weight (K_out, n*K, 3, 3): 1/n of the identity on each K-channel group
                share = k / m.in_channels
                for start in range(0, m.in_channels, k):
                    m.weight[:, start : start + k, 1, 1] = share * eye


def _stage_sizes(input_size: Size, m: int) -> list[Size]:
    return [(input_size[0] * 2**i, input_size[1] * 2**i) for i in range(m + 1)]


def _fast_path(x: torch.Tensor) -> bool:
    """Whether the batch-folded kernels below may replace the modules' own forward: in training
    on a CPU (where they matter: forward and backward at full resolution) and never in export."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    return x.device.type == "cpu" and x.shape[0] > 1 and torch.is_grad_enabled()


def _conv3x3(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a 3x3 conv with one output channel, computed as per-channel depthwise convs.

    The heads' convolutions have ``K`` or ``2K`` input channels and ``K`` outputs; for ``K = 1``
    oneDNN's dense kernels are very slow on such maps (about 110 ms forward + backward for
    16 x 1 x 256 x 256 on 2 cores). Folding the batch into channels makes them depthwise
    convolutions, which take about 7 ms, with the same parameters and the same result up to
    float rounding. Other cases, and export or tracing, use the module itself.
    """
    if conv.out_channels != 1 or not _fast_path(x):
        return conv(x)
    b, c, h, w = x.shape
    y = conv.bias.expand(b).view(1, b, 1, 1)  # (1, B, 1, 1)
    for i in range(c):
        xi = x[:, i].reshape(1, b, h, w)  # (1, B, H, W): the batch as depthwise channels
        y = y + F.conv2d(xi, conv.weight[:, i : i + 1].expand(b, 1, 3, 3), padding=1, groups=b)
    return y.view(b, 1, h, w)  # (B, 1, H, W)


def _up2(up: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``up(x)`` for a single-channel transposed conv, batch folded into depthwise channels."""
    if up.in_channels != 1 or up.out_channels != 1 or not _fast_path(x):
        return up(x)
    b, _, h, w = x.shape
    f = up.stride[0]
    y = F.conv_transpose2d(x.reshape(1, b, h, w), up.weight.expand(b, 1, -1, -1), up.bias.expand(b), stride=f, groups=b)
    return y.view(b, 1, h * f, w * f)  # (B, 1, fH, fW)


class Head(nn.Module):
    """Base class: ``forward(y0)`` returns the outputs at ``self.scales`` (coarsest first)."""

    def __init__(self, num_classes: int, input_size: int | Sequence[int], output_size: int | Sequence[int]) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.input_size = to_size(input_size, "input_size")
        self.output_size = to_size(output_size, "output_size")
        self.scales: list[Size] = [self.input_size, self.output_size]

    def forward(self, y0: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError


class JNetHead(Head):
    """The J-Net up-scaling cascade: ``m`` stages, each a 2x2 stride-2 transposed conv and a 3x3 conv.

    Structure (all layers have ``K`` output channels and a bias):

    * stage ``i`` (``i = 1..m``) up-samples the previous output ``y_{i-1}``:
      ``u_i = ConvT_i(y_{i-1})``, then ``y_i = Conv_i(u_i)``;
    * a *skip stage* first concatenates a "stretched" copy of the base prediction ``y0``:
      ``s_i = Conv3x3(ConvT^i(y0))`` (``i`` chained x2 transposed convs bring ``y0`` to stage
      ``i``'s resolution), and ``y_i = Conv_i([u_i, s_i])`` with ``2K`` input channels.

    ``init="nearest"`` (default) starts the head as nearest-neighbour up-sampling of ``y0``
    (transposed convs copy each pixel into its 2x2 block, 3x3 convs pass the centre through,
    a skip stage's conv averages its two inputs); ``init="default"`` keeps PyTorch's random
    initialisation, as the paper presumably did. With the random start the cascade of
    single-channel layers learned nothing in ``jnet demo --quick``-sized trainings (validation
    Jaccard 0.03 against 0.58 with ``"nearest"``, see ``docs/heads.md``).

    By default the last two stages are skip stages (never stage 1, whose input is ``y0``
    itself): stages 3 and 4 for 16 -> 256, as in the paper's worked example; ``skip=False``
    removes them (the "without inter-stage skips" ablation).

    Parameters, for ``K`` classes, ``m`` stages and the set ``S`` of skip stages::

        P = m (4K^2 + K)                      # the stages' transposed convs
          + (m - |S|) (9K^2 + K)              # plain 3x3 convs
          + |S| (18K^2 + K)                   # 3x3 convs reading [u_i, s_i]
          + sum_{i in S} i (4K^2 + K)         # the stretching transposed convs
          + |S| (9K^2 + K)                    # the stretching 3x3 convs

    K = 1, 16 -> 256 (m = 4, S = {3, 4}): 20 + 20 + 38 + 35 + 20 = 133 parameters.

    The paper's own count for that case, "159", does not follow from its terms: its three
    brackets give 30 + 55 + 56 = 141, and its last bracket gives the stage's *transposed* conv
    two input channels although the stretched copy can only join after that conv has
    up-sampled. We read its terms as above (7 stretching transposed convs, 2 stretching
    convs, two 3x3 convs with two input channels) and keep the concatenation where it is
    possible, before the stage's 3x3 conv.

    Example:
        >>> import torch
        >>> head = JNetHead(num_classes=1, input_size=16, output_size=256)
        >>> [tuple(y.shape[-2:]) for y in head(torch.zeros(2, 1, 16, 16))]
        [(16, 16), (32, 32), (64, 64), (128, 128), (256, 256)]
        >>> sum(p.numel() for p in head.parameters())
        133
    """

    def __init__(
        self,
        num_classes: int,
        input_size: int | Sequence[int],
        output_size: int | Sequence[int],
        skip: bool = True,
        skip_stages: Sequence[int] | None = None,
        init: str = "nearest",
    ) -> None:
        super().__init__(num_classes, input_size, output_size)
        check_option("init", init, _INITS)
        m = num_upscaling_stages(self.input_size, self.output_size)
        self.num_stages = m
        if not skip:
            stages: tuple[int, ...] = ()
        elif skip_stages is None:
            stages = tuple(range(max(2, m - 1), m + 1))
        else:
            stages = tuple(sorted(set(skip_stages)))
            if any(i < 2 or i > m for i in stages):
                raise ValueError(f"skip_stages must lie in 2..{m} (stage 1 reads y0 itself), got {list(skip_stages)}")
        self.skip_stages = stages
        self.scales = _stage_sizes(self.input_size, m)
        k = num_classes
        self.ups = nn.ModuleList(nn.ConvTranspose2d(k, k, 2, stride=2) for _ in range(m))
        self.convs = nn.ModuleList(nn.Conv2d(2 * k if i in stages else k, k, 3, padding=1) for i in range(1, m + 1))
        self.stretch = nn.ModuleDict(
            {
                str(i): nn.Sequential(
                    *(nn.ConvTranspose2d(k, k, 2, stride=2) for _ in range(i)), nn.Conv2d(k, k, 3, padding=1)
                )
                for i in stages
            }
        )
        if init == "nearest":
            _init_nearest(self)

    @staticmethod
    def count_parameters(num_classes: int, num_stages: int, skip_stages: Sequence[int]) -> int:
        """The closed-form parameter count of the class docstring."""
        k, m, s = num_classes, num_stages, list(skip_stages)
        convt, conv, conv2 = 4 * k * k + k, 9 * k * k + k, 18 * k * k + k
        return m * convt + (m - len(s)) * conv + len(s) * conv2 + sum(s) * convt + len(s) * conv

    def forward(self, y0: torch.Tensor) -> list[torch.Tensor]:
        outs = [y0]  # (B, K, h, w)
        y = y0
        for i, (up, conv) in enumerate(zip(self.ups, self.convs, strict=True), start=1):
            u = _up2(up, y)  # (B, K, s, s) -> (B, K, 2s, 2s)
            if i in self.skip_stages:
                u = torch.cat([u, self._stretched(i, y0)], dim=1)  # (B, 2K, 2s, 2s)
            y = _conv3x3(conv, u)  # (B, K, 2s, 2s)
            outs.append(y)
        return outs

    def _stretched(self, i: int, y0: torch.Tensor) -> torch.Tensor:
        """``y0`` brought to stage ``i``'s resolution: ``i`` x2 transposed convs, then a 3x3 conv."""
        *ups, conv = self.stretch[str(i)]
        s = y0
        for up in ups:
            s = _up2(up, s)  # (B, K, s, s) -> (B, K, 2s, 2s)
        return _conv3x3(conv, s)


class SingleStepHead(Head):
    """One ``2**m x 2**m`` transposed conv with stride ``2**m``, then a 3x3 conv (the paper's x16 ablation).

    Parameters: ``(4**m K + 1) K + (9K + 1) K``. ``init`` as for :class:`JNetHead`.
    """

    def __init__(
        self,
        num_classes: int,
        input_size: int | Sequence[int],
        output_size: int | Sequence[int],
        init: str = "nearest",
    ) -> None:
        super().__init__(num_classes, input_size, output_size)
        check_option("init", init, _INITS)
        m = num_upscaling_stages(self.input_size, self.output_size)
        k, f = num_classes, 2**m
        self.up = nn.ConvTranspose2d(k, k, f, stride=f)
        self.conv = nn.Conv2d(k, k, 3, padding=1)
        if init == "nearest":
            _init_nearest(self)

    def forward(self, y0: torch.Tensor) -> list[torch.Tensor]:
        return [y0, _conv3x3(self.conv, _up2(self.up, y0))]  # (B, K, h, w), (B, K, 2^m h, 2^m w)


class InterpolationHead(Head):
    """Bilinear up-sampling of the logits to the output size (``align_corners=False``), no parameters."""

    def __init__(self, num_classes: int, input_size: int | Sequence[int], output_size: int | Sequence[int]) -> None:
        super().__init__(num_classes, input_size, output_size)
        if self.output_size[0] < self.input_size[0] or self.output_size[1] < self.input_size[1]:
            raise ValueError(f"output size {self.output_size} is smaller than input size {self.input_size}")

    def forward(self, y0: torch.Tensor) -> list[torch.Tensor]:
        y = F.interpolate(y0, size=self.output_size, mode="bilinear", align_corners=False)
        return [y0, y]  # (B, K, h, w), (B, K, H, W)


class IdentityHead(Head):
    """No up-scaling: the prediction stays at the input resolution (trained on down-sampled truth)."""

    def __init__(self, num_classes: int, input_size: int | Sequence[int], output_size: int | Sequence[int]) -> None:
        super().__init__(num_classes, input_size, input_size)
        self.scales = [self.input_size]

    def forward(self, y0: torch.Tensor) -> list[torch.Tensor]:
        return [y0]  # (B, K, h, w)


_HEADS: dict[str, Callable[..., Head]] = {
    "jnet": JNetHead,
    "jnet-noskip": functools.partial(JNetHead, skip=False),
    "jnet-single": SingleStepHead,
    "interp": InterpolationHead,
    "none": IdentityHead,
}


def list_heads() -> list[str]:
    """Names of the available heads."""
    return list(_HEADS)


def create_head(
    name: str, num_classes: int, input_size: int | Sequence[int], output_size: int | Sequence[int], **options: object
) -> Head:
    """Build a head by name (see the module docstring for the choices)."""
    check_option("head", name, _HEADS)
    return _HEADS[name](num_classes, input_size, output_size, **options)
