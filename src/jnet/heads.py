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
``jnet-guided`` the J-Net cascade whose stages also read the image        ``m + 1``
``guided``      bilinear logits plus image detail, by a guided filter     2
=============== ========================================================= ================

The last two are *image-guided*: ``forward(y0, image)`` also takes the full-resolution image
``(B, C, H, W)`` (their ``needs_image`` is true), so a :class:`jnet.JNet` with one of them
takes the full-resolution image and down-samples it itself.

``m = log2(output / input)``. The J-Net heads need the output size to be the input size
times a power of two (in both dimensions) and raise a ValueError otherwise; ``interp``
accepts any output size at least the input size. There is no hidden final resize.

The J-Net heads contain no non-linearity (the paper lists none and counts only the
convolutions' weights): the cascade is a learned *linear* up-sampler of the base logits.
``jnet-guided`` stays linear in the logits and in the image without its uncertainty gate.

Because of that, each output of ``jnet``, ``jnet-noskip`` and ``jnet-single`` equals one 3x3
convolution of ``y0`` at the input resolution and a pixel shuffle, and ``jnet-guided`` has a
form with one such convolution per stage (:mod:`jnet.compiled`). Their ``forward`` takes an
optional ``compiled`` callable that computes the outputs in that form instead of the cascade
(what :class:`jnet.JNet` passes by default): run inside the head, so that it is the head's part
of a trace or an ONNX graph.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jnet._options import Size, check_option, to_size
from jnet.registry import Registry
from jnet.resize import downsample_image

#: A callable that computes a head's outputs in another form (``forward(..., compiled=...)``).
CompiledForm = Callable[..., list[torch.Tensor]]


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
    """Whether the batch-folded kernels below may replace the modules' own forward: in float32
    training on a CPU (where they matter: oneDNN's forward and backward at full resolution; in
    float64, which oneDNN does not run, one group at a time they are slower) and never in export."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    return x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[0] > 1 and torch.is_grad_enabled()


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


def _pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a 1x1 conv as a matrix product over channels (training on a CPU only).

    oneDNN runs 1x1 convs with one or a few channels on 256x256 maps very slowly (about 100 ms
    for the backward of 16 x 1 x 256 x 256 -> 8 channels on one core); the product is the same
    up to float rounding and takes a few ms. Export and inference use the module.
    """
    if not _fast_path(x):
        return conv(x)
    y = torch.einsum("bchw,oc->bohw", x, conv.weight[:, :, 0, 0])  # (B, C, H, W) -> (B, O, H, W)
    return y if conv.bias is None else y + conv.bias.view(1, -1, 1, 1)


class Head(nn.Module):
    """Base class: ``forward(y0)`` returns the outputs at ``self.scales`` (coarsest first).

    A head with ``needs_image = True`` is called as ``forward(y0, image)`` with the
    full-resolution image ``(B, C, H, W)``, ``(H, W) = output_size``. The J-Net heads also take
    ``compiled``: a callable of the same arguments that computes their outputs another way
    (:mod:`jnet.compiled`), returned as it is.
    """

    needs_image = False

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

    def forward(self, y0: torch.Tensor, compiled: CompiledForm | None = None) -> list[torch.Tensor]:
        return self._cascade(y0) if compiled is None else compiled(y0)

    def _cascade(
        self, y0: torch.Tensor, extra: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        """The stages; ``extra(i, u)`` may widen stage ``i``'s conv input ``u`` (the guided head's image)."""
        outs = [y0]  # (B, K, h, w)
        y = y0
        for i, (up, conv) in enumerate(zip(self.ups, self.convs, strict=True), start=1):
            u = _up2(up, y)  # (B, K, s, s) -> (B, K, 2s, 2s)
            if i in self.skip_stages:
                u = torch.cat([u, self._stretched(i, y0)], dim=1)  # (B, 2K, 2s, 2s)
            if extra is not None:
                u = extra(i, u)  # (B, nK (+ more), 2s, 2s)
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

    def forward(self, y0: torch.Tensor, compiled: CompiledForm | None = None) -> list[torch.Tensor]:
        if compiled is not None:
            return compiled(y0)
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


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the ``(2r+1) x (2r+1)`` window around each pixel (windows cut at the border)."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def _image_pyramid(image: torch.Tensor, sizes: Sequence[Size]) -> list[torch.Tensor]:
    """``image`` area-down-sampled to every size in ``sizes`` (each a power-of-two fraction of it).

    Each level is pooled from the next larger one (an average of equal block averages is the
    block average), largest first: the same numbers up to float rounding, and a small fraction
    of the work of pooling every level from the full resolution.
    """
    levels: dict[Size, torch.Tensor] = {}
    source = image
    for size in sorted(set(sizes), key=lambda s: s[0] * s[1], reverse=True):
        exact = source.shape[-2] % size[0] == 0 and source.shape[-1] % size[1] == 0
        levels[size] = downsample_image(source if exact else image, size, "area")
        source = levels[size] if exact else source
    return [levels[size] for size in sizes]


def _uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """``(B, K, H, W)`` logits -> ``(B, 1, H, W)`` in ``[0, 1]``: 1 where the classes tie, 0 where one is sure.

    ``4 p (1 - p)`` for one sigmoid channel, ``K / (K - 1) (1 - max softmax)`` for ``K`` classes.
    """
    k = logits.shape[1]
    if k == 1:
        p = torch.sigmoid(logits)
        return 4 * p * (1 - p)
    return (1 - torch.softmax(logits, dim=1).amax(dim=1, keepdim=True)) * (k / (k - 1))


class GuidedJNetHead(JNetHead):
    """The J-Net cascade whose stages also read the image at their own resolution, where unsure.

    Stage ``i``'s 3x3 conv reads, besides ``u_i`` (and the stretched ``s_i`` in a skip stage),
    the image area-down-sampled to the stage's resolution, ``g_i``, and its local contrast
    ``g_i - box3x3(g_i)``: ``2C`` more input channels per guided stage. With ``gate=True``
    (default) both are multiplied by the stage's uncertainty, ``4 p (1 - p)`` of the
    up-sampled logits ``u_i`` (:func:`_uncertainty`): the image can move the prediction only
    in the band where the low-resolution logits are undecided, the boundaries the backbone
    could not place, and cannot paint bright tissue far from them. ``gate=False`` adds the
    image features everywhere (the head is then linear). The image weights start at zero, so
    with ``init="nearest"`` the head starts as the plain J-Net head does.

    Parameters: :meth:`JNetHead.count_parameters` plus ``9 * K * 2C`` per guided stage;
    K = 1, C = 1, 16 -> 256 with all 4 stages guided: 133 + 72 = 205.

    Args:
        in_channels: ``C``, the image's channels.
        guided_stages: the stages (``1..m``) that read the image; default all of them.
        skip, skip_stages, init: as for :class:`JNetHead`.
        gate: weight the image features by the logits' uncertainty (see above).
    """

    needs_image = True

    def __init__(
        self,
        num_classes: int,
        input_size: int | Sequence[int],
        output_size: int | Sequence[int],
        in_channels: int = 1,
        guided_stages: Sequence[int] | None = None,
        skip: bool = True,
        skip_stages: Sequence[int] | None = None,
        init: str = "nearest",
        gate: bool = True,
    ) -> None:
        super().__init__(num_classes, input_size, output_size, skip=skip, skip_stages=skip_stages, init=init)
        self.gate = gate
        m, k = self.num_stages, num_classes
        stages = tuple(range(1, m + 1)) if guided_stages is None else tuple(sorted(set(guided_stages)))
        if not stages or any(i < 1 or i > m for i in stages):
            raise ValueError(f"guided_stages must be a non-empty subset of 1..{m}, got {guided_stages!r}")
        self.guided_stages, self.in_channels = stages, in_channels
        for i in stages:  # widen the stage's conv by the image channels, their weights zero
            old = self.convs[i - 1]
            conv = nn.Conv2d(old.in_channels + 2 * in_channels, k, 3, padding=1)
            with torch.no_grad():  # the stage's own weights as initialised above, the image's zero
                conv.weight.zero_()
                conv.weight[:, : old.in_channels].copy_(old.weight)
                conv.bias.copy_(old.bias)
            self.convs[i - 1] = conv

    @staticmethod
    def count_guided_parameters(
        num_classes: int, num_stages: int, skip_stages: Sequence[int], in_channels: int, guided_stages: Sequence[int]
    ) -> int:
        """The closed-form parameter count of the class docstring."""
        extra = len(set(guided_stages)) * 9 * num_classes * 2 * in_channels
        return JNetHead.count_parameters(num_classes, num_stages, skip_stages) + extra

    def forward(  # type: ignore[override]
        self, y0: torch.Tensor, image: torch.Tensor, compiled: CompiledForm | None = None
    ) -> list[torch.Tensor]:
        if compiled is not None:
            return compiled(y0, image)
        features = self.image_features(image)

        def add_image(i: int, u: torch.Tensor) -> torch.Tensor:  # (B, nK, 2s, 2s) -> (B, nK + 2C, 2s, 2s)
            f = features[i - 1]
            return u if f is None else torch.cat([u, self.gated(f, u)], dim=1)

        return self._cascade(y0, add_image)

    def image_features(self, image: torch.Tensor) -> list[torch.Tensor | None]:
        """What each stage's conv reads of the image: ``[g_i, g_i - box3x3(g_i)]`` ``(B, 2C, 2^i h, 2^i w)``
        for a guided stage ``i`` (the image area-down-sampled to the stage's resolution and its local
        contrast), ``None`` for the others."""
        guides = _image_pyramid(image, self.scales[1:])  # [(B, C, 2h, 2w), ..., (B, C, H, W)]
        return [
            torch.cat([g, g - _box(g, 1)], dim=1) if i in self.guided_stages else None
            for i, g in enumerate(guides, start=1)
        ]

    def gated(self, features: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """A stage's image ``features`` ``(B, 2C, H, W)`` times the uncertainty of its up-sampled logits
        ``u[:, :K]`` ``(B, >= K, H, W)`` (unchanged if ``gate`` is off)."""
        return features * _uncertainty(u[:, : self.num_classes]) if self.gate else features


class GuidedFilterHead(Head):
    """Bilinear up-sampling of the logits plus the image's detail, weighted by a guided filter.

    The guided filter (He et al., 2013) fits, in every ``(2r+1)^2`` window of the input
    resolution, the logits as a linear function of a guide image, ``y0 ~ A g + b``; the fast
    trainable version (Wu et al., CVPR 2018) computes ``A, b`` at low resolution, up-samples
    them bilinearly and applies them to the full-resolution guide. The guide ``g = G(image)``
    is learned and pointwise: by default (``hidden=0``) a 1x1 conv ``C -> 1`` without bias,
    for a single-channel MRI a scale of the intensity, which sets the regulariser's weight;
    ``hidden > 0`` makes it Wu et al.'s small net ``conv1x1(C -> hidden), LeakyReLU(0.2),
    conv1x1(hidden -> 1)`` (slower to train on a CPU: its maps are full-resolution). ``G`` is
    applied at both resolutions (to ``downsample(image)`` at the input resolution, as Wu et
    al. do).

    ``form="detail"`` (default) keeps the bilinear logits and adds only the detail the
    low-resolution guide lacks, ``up(y0) + up(A) * (g_H - up(g_h))``: wherever the logits are
    locally linear in the guide this is the filter's output, but a flat guide leaves the
    prediction exactly ``interp``'s instead of box-blurring it. ``form="filter"`` returns the
    guided filter itself, ``up(mean A) * g_H + up(mean b)``.

    Outputs: ``[y0, y]``, as ``interp``. Parameters: ``C`` (1 for C = 1), or
    ``hidden (C + 2)`` with a hidden layer (24 for C = 1, hidden = 8); ``radius`` and ``eps``
    are fixed.

    Args:
        in_channels: ``C``, the image's channels.
        radius: the window radius at the input resolution.
        eps: the filter's regulariser (the guide is learned, so its scale is too).
        hidden: hidden channels of the guide net (0: none, a linear guide).
        form: ``"detail"`` or ``"filter"``.
    """

    needs_image = True

    def __init__(
        self,
        num_classes: int,
        input_size: int | Sequence[int],
        output_size: int | Sequence[int],
        in_channels: int = 1,
        radius: int = 1,
        eps: float = 1e-2,
        hidden: int = 0,
        form: str = "detail",
    ) -> None:
        super().__init__(num_classes, input_size, output_size)
        check_option("form", form, ("detail", "filter"))
        if self.output_size[0] < self.input_size[0] or self.output_size[1] < self.input_size[1]:
            raise ValueError(f"output size {self.output_size} is smaller than input size {self.input_size}")
        if radius < 1 or eps <= 0 or hidden < 0:
            raise ValueError(f"radius must be >= 1, hidden >= 0 and eps > 0, got {radius}, {hidden}, {eps}")
        self.radius, self.eps, self.form, self.in_channels = radius, float(eps), form, in_channels
        # the guide's offset cancels (in A, and in g_H - up(g_h)), so its last layer has no bias
        if hidden:
            layers = [nn.Conv2d(in_channels, hidden, 1), nn.LeakyReLU(0.2), nn.Conv2d(hidden, 1, 1, bias=False)]
            self.guide = nn.Sequential(*layers)
        else:  # a learned linear combination of the channels (a scale of a single-channel image)
            self.guide = nn.Sequential(nn.Conv2d(in_channels, 1, 1, bias=False))

    def forward(self, y0: torch.Tensor, image: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        r, size = self.radius, self.output_size
        g_big = self._guide(image)  # (B, C, H, W) -> (B, 1, H, W)
        g = self._guide(downsample_image(image, self.input_size, "area"))  # (B, 1, h, w)
        mean_g, mean_y = _box(g, r), _box(y0, r)  # (B, 1, h, w), (B, K, h, w)
        cov = _box(g * y0, r) - mean_g * mean_y  # (B, K, h, w)
        var = _box(g * g, r) - mean_g * mean_g  # (B, 1, h, w)
        a = cov / (var + self.eps)  # (B, K, h, w)

        def up(t: torch.Tensor) -> torch.Tensor:  # (B, *, h, w) -> (B, *, H, W)
            return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

        if self.form == "detail":
            y = up(y0) + up(a) * (g_big - up(g))  # (B, K, H, W)
        else:
            b = mean_y - a * mean_g
            y = up(_box(a, r)) * g_big + up(_box(b, r))  # (B, K, H, W)
        return [y0, y]

    def _guide(self, image: torch.Tensor) -> torch.Tensor:
        g = image  # (B, C, *, *)
        for layer in self.guide:
            g = _pointwise(layer, g) if isinstance(layer, nn.Conv2d) else layer(g)
        return g  # (B, 1, *, *)


HEADS: Registry[Callable[..., Head]] = Registry("head")
HEADS.add("jnet", JNetHead)
HEADS.add("jnet-noskip", functools.partial(JNetHead, skip=False))
HEADS.add("jnet-single", SingleStepHead)
HEADS.add("interp", InterpolationHead)
HEADS.add("none", IdentityHead)
HEADS.add("jnet-guided", GuidedJNetHead)
HEADS.add("guided", GuidedFilterHead)


def list_heads() -> list[str]:
    """Names of the available heads."""
    return HEADS.names()


def head_needs_image(name: str) -> bool:
    """Whether the head ``name`` reads the full-resolution image (an image-guided head)."""
    factory = HEADS.get(name)
    return bool(getattr(getattr(factory, "func", factory), "needs_image", False))


def create_head(
    name: str, num_classes: int, input_size: int | Sequence[int], output_size: int | Sequence[int], **options: object
) -> Head:
    """Build a head by name (see the module docstring for the choices)."""
    return HEADS.get(name)(num_classes, input_size, output_size, **options)
