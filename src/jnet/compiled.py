"""The J-Net heads compiled: one convolution at the input resolution per output scale.

The heads ``jnet``, ``jnet-noskip`` and ``jnet-single`` contain no non-linearity, so every
output ``y_i`` (up-scaling factor ``r = 2**i``) is an affine map of the base logits ``y0``
``(B, K, h, w)``. A 2x2 stride-2 transposed conv never mixes two input pixels, and a 3x3 conv
at scale ``i`` reaches one pixel of that scale, ``1 / 2**i`` input pixels; summed over the
stages the reach stays below one input pixel (a skip stage ``i >= 2`` adds its stretched copy,
whose 3x3 conv and the stage's own reach ``2 / 2**i``: still below one in all). So the
``r x r`` block of output pixels above input pixel ``(p, q)`` depends on ``y0`` only through
its 3x3 neighbourhood::

    block(p, q) = sum_{|d| <= 1} W_c[d] y0[(p, q) + d] + b_c,     c = class(p, q)

``W_c`` is ``(K r^2, K, 3, 3)`` and ``b_c`` ``(K r^2,)``: a 3x3 conv with ``K r^2`` output
channels at the input resolution followed by ``PixelShuffle(r)``. The zero padding of the
intermediate maps makes the map depend on the position, but only for the outermost ring of
input pixels: the class of a position is whether it touches the top, bottom, left and right
border. Along an axis of ``n >= 3`` pixels there are three classes (first, inner, last), for
``n = 2`` two (first, last) and for ``n = 1`` one (touching both borders): at most 9 in all.
``tests/test_compiled.py`` checks these claims numerically, for random weights, every head
and the tiny sizes.

:func:`compile_head` reads every class's kernel and constant off the head itself: the head,
in float64, is applied to one impulse per channel and pixel of a canvas with the input's
classes (``min(h, 3) x min(w, 3)`` pixels) and to zeros. It runs the head's own modules, so
the kernels are a differentiable function of its current parameters.

:class:`CompiledHead` computes the outputs from them, exactly (borders included):

* without gradients (evaluation, export): each class region of ``y0`` convolved with its
  kernel (a "valid" convolution of the region and its neighbours, the kernel cut where it
  would read beyond the border), the regions concatenated, then pixel-shuffled. Nothing but
  the output itself exists above the input resolution; in ONNX: ``Slice``, ``Conv``,
  ``Concat`` and one ``DepthToSpace``.
* with gradients (training): ``y0``'s 3x3 patches times the inner kernel in one matrix
  product, the ring of border positions replaced by their own classes' products, then
  pixel-shuffled; the kernels are derived afresh on every call, so gradients reach the
  head's parameters through them.

The image-guided cascade ``jnet-guided`` is not affine (its uncertainty gate), but each of its
stages is, around the gate: :class:`CompiledGuidedHead` runs it stage by stage with one
convolution below each stage's resolution (see there).

A :class:`jnet.JNet` uses these forms by default (``compiled_head``, ``compiled_training``),
through the head's ``forward(..., compiled=...)``: the parameters stay the head's and nothing
derived is stored, so a state dict loads the same with or without them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from jnet._options import Size
from jnet.heads import GuidedJNetHead, Head, JNetHead, SingleStepHead


def is_affine_head(head: nn.Module) -> bool:
    """Whether ``head`` is one of the affine heads that :func:`compile_head` compiles."""
    return isinstance(head, JNetHead | SingleStepHead) and not isinstance(head, GuidedJNetHead)


def _axis_classes(n: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` of each position class along an axis of ``n`` pixels, in canvas order:
    first pixel, inner pixels, last pixel (``n >= 3``); first, last (``n = 2``); the one (``n = 1``)."""
    if n >= 3:
        return [(0, 1), (1, n - 1), (n - 1, n)]
    return [(i, i + 1) for i in range(n)]


class CompiledScale(NamedTuple):
    """One output scale's compiled form: the factor ``r``, ``weight (R, C, K r^2, K, 3, 3)`` and
    ``bias (R, C, K r^2)`` for the ``R x C`` position classes (rows and columns as :func:`_axis_classes`)."""

    ratio: int
    weight: torch.Tensor
    bias: torch.Tensor


@functools.lru_cache(maxsize=64)
def _readout_index(k_in: int, k_out: int, ch: int, cw: int, r: int) -> torch.Tensor:
    """Where each kernel tap lies in the flattened probe responses ``(n, K_out, ch r, cw r)`` (``n = K_in ch cw``
    impulses), as ``(ch, cw, K_out r^2, K_in, 3, 3)``; a tap beyond the canvas points one past the end (a zero)."""
    ar = torch.arange
    big_p, big_q = ar(ch).view(ch, 1, 1, 1, 1, 1, 1, 1), ar(cw).view(1, cw, 1, 1, 1, 1, 1, 1)
    out_k, a, b = (
        ar(k_out).view(1, 1, -1, 1, 1, 1, 1, 1),
        ar(r).view(1, 1, 1, r, 1, 1, 1, 1),
        ar(r).view(1, 1, 1, 1, r, 1, 1, 1),
    )
    in_k, dp, dq = (
        ar(k_in).view(1, 1, 1, 1, 1, -1, 1, 1),
        ar(3).view(1, 1, 1, 1, 1, 1, 3, 1),
        ar(3).view(1, 1, 1, 1, 1, 1, 1, 3),
    )
    p, q = big_p + dp - 1, big_q + dq - 1  # the impulse's pixel
    impulse = (in_k * ch + p) * cw + q
    y, x = big_p * r + a, big_q * r + b  # the output pixel
    index = ((impulse * k_out + out_k) * (ch * r) + y) * (cw * r) + x
    inside = (p >= 0) & (p < ch) & (q >= 0) & (q < cw)
    index = torch.where(inside, index, k_in * ch * cw * k_out * ch * r * cw * r)
    return index.reshape(ch, cw, k_out * r * r, k_in, 3, 3)


def _without_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that turns autocast off on ``device`` if it is on there (the meta device has none)."""
    try:
        enabled = torch.is_autocast_enabled(device.type)
    except (RuntimeError, TypeError):
        enabled = False
    return torch.autocast(device.type, enabled=False) if enabled else contextlib.nullcontext()


def _probe(
    fn: Callable[[torch.Tensor], list[torch.Tensor]], k: int, size: Size, dtype: torch.dtype, device: torch.device
) -> list[CompiledScale]:
    """The class kernels and constants of every output of an affine map ``fn`` of ``(B, K, h, w)`` maps
    whose outputs are ``r x r`` times larger and reach at most the 3x3 neighbourhood (see the module
    docstring): ``fn`` applied to the impulses of a ``min(h, 3) x min(w, 3)`` canvas and to zeros."""
    h, w = size
    ch, cw = min(h, 3), min(w, 3)
    n = k * ch * cw
    probe = torch.eye(n, dtype=dtype, device=device).view(n, k, ch, cw)
    probe = torch.cat([probe, probe.new_zeros(1, k, ch, cw)])  # (n + 1, K, ch, cw): the impulses, then zeros
    with _without_autocast(device):  # the probe in dtype, also inside a mixed-precision region
        outs = fn(probe)
    compiled = []
    for out in outs:
        k_out, r = out.shape[1], out.shape[-2] // ch
        if out.shape[-2:] != (ch * r, cw * r):
            raise ValueError(f"an output {tuple(out.shape[-2:])} is not the input {h}x{w} up-scaled by one factor")
        const = out[-1]  # (K_out, ch r, cw r): the response to zeros
        resp = torch.cat([(out[:-1] - const).reshape(-1), const.new_zeros(1)])  # impulse responses, then a zero
        weight = resp[_readout_index(k, k_out, ch, cw, r).to(device)]  # (ch, cw, K_out r^2, K, 3, 3)
        bias = const.view(k_out, ch, r, cw, r).permute(1, 3, 0, 2, 4).reshape(ch, cw, k_out * r * r)
        compiled.append(CompiledScale(r, weight, bias))
    return compiled


def compile_head(head: Head, dtype: torch.dtype = torch.float64) -> list[CompiledScale]:
    """The compiled form of every output of an affine head but the first (``y0`` itself).

    The head is applied, with its parameters cast to ``dtype``, to the impulses of a canvas
    of ``min(h, 3) x min(w, 3)`` pixels (one per channel and pixel) and to zeros; the response
    of block ``(P, Q)`` to the impulse at ``(P + dp, Q + dq)``, less the response to zeros, is
    class ``(P, Q)``'s kernel tap ``(dp, dq)``, and the response to zeros is its constant. The
    result is differentiable in the head's parameters (autograd records the probe), and is
    computed on their device (the meta device included).

    Args:
        head: an affine head (:func:`is_affine_head`).
        dtype: the precision of the probe and of the result.

    Returns:
        One :class:`CompiledScale` per output after ``y0``, coarsest first.

    Example:
        >>> from jnet.heads import create_head
        >>> [(c.ratio, tuple(c.weight.shape)) for c in compile_head(create_head("jnet", 1, 16, 64))]
        [(2, (3, 3, 4, 1, 3, 3)), (4, (3, 3, 16, 1, 3, 3))]
    """
    if not is_affine_head(head):
        raise ValueError(
            f"{type(head).__name__} has no compiled form: only the affine heads jnet, jnet-noskip, jnet-single"
        )
    params = {name: p.to(dtype) for name, p in head.named_parameters()}
    device = next(iter(params.values())).device
    return _probe(lambda x: functional_call(head, params, (x,))[1:], head.num_classes, head.input_size, dtype, device)


# --------------------------------------------------------------------------------------------
# Without gradients: the class regions as "valid" convolutions (evaluation, ONNX export)
# --------------------------------------------------------------------------------------------


class _Region(NamedTuple):
    """One class region: its output rows and columns are computed from the input rows ``rows`` and
    columns ``cols`` (``(start, stop)``) by a "valid" convolution with ``weight`` (the class kernel
    without the taps beyond the border, which would read the zero padding) and ``bias``."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    weight: torch.Tensor
    bias: torch.Tensor


def _regions(size: tuple[int, int], weight: torch.Tensor, bias: torch.Tensor) -> list[list[_Region]]:
    """The class regions of an ``(h, w)`` input, row by row, for ``weight (R, C, N, K, 3, 3)``, ``bias (R, C, N)``."""

    def span(start: int, stop: int, n: int) -> tuple[tuple[int, int], slice]:
        lo, hi = max(start - 1, 0), min(stop + 1, n)  # the input the region reads
        return (lo, hi), slice(lo - (start - 1), 3 - (stop + 1 - hi))  # and the kernel taps that read it

    h, w = size
    regions = []
    for i, (r0, r1) in enumerate(_axis_classes(h)):
        rows, taps_r = span(r0, r1, h)
        line = []
        for j, (c0, c1) in enumerate(_axis_classes(w)):
            cols, taps_c = span(c0, c1, w)
            line.append(_Region(rows, cols, weight[i, j][..., taps_r, taps_c].contiguous(), bias[i, j].contiguous()))
        regions.append(line)
    return regions


def _convolve_regions(y0: torch.Tensor, regions: list[list[_Region]]) -> torch.Tensor:
    """``(B, K, h, w)`` -> ``(B, N, h, w)``: every class region convolved with its kernel, the regions
    concatenated along the width, then along the height."""
    rows = []
    for line in regions:
        cols = [F.conv2d(y0[:, :, g.rows[0] : g.rows[1], g.cols[0] : g.cols[1]], g.weight, g.bias) for g in line]
        rows.append(cols[0] if len(cols) == 1 else torch.cat(cols, dim=3))  # (B, N, rows of the class, w)
    return rows[0] if len(rows) == 1 else torch.cat(rows, dim=2)  # (B, N, h, w)


# --------------------------------------------------------------------------------------------
# With gradients: patches times kernels, the border ring by its own classes (training)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _border_classes(h: int, w: int) -> tuple[int | None, list[tuple[int, torch.Tensor]], torch.Tensor]:
    """``(inner, border, ring)`` of an ``(h, w)`` input: the inner class (``i C + j``; ``None`` if ``h < 3``
    or ``w < 3``), every other class with its flat positions (``p w + q``), and those positions in that order."""
    rows, cols = _axis_classes(h), _axis_classes(w)
    inner = len(cols) + 1 if h >= 3 and w >= 3 else None
    border = []
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            if i * len(cols) + j != inner:
                positions = (torch.arange(r0, r1)[:, None] * w + torch.arange(c0, c1)[None, :]).reshape(-1)
                border.append((i * len(cols) + j, positions))
    return inner, border, torch.cat([positions for _, positions in border])


def _multiply_patches(y0: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``(B, K, h, w)`` -> ``(B, N, h, w)``, the same as :func:`_convolve_regions`, as products of
    ``y0``'s 3x3 patches (and a 1 for the constant) with the kernels: the inner kernel for every
    position, then each border class's kernel for its positions, written over them."""
    b, k, h, w = y0.shape
    n = weight.shape[2]
    patches = F.unfold(y0, 3, padding=1)  # (B, 9K, h w); taps beyond the border read zeros
    patches = torch.cat([patches, patches.new_ones(b, 1, h * w)], dim=1)  # (B, 9K + 1, h w)
    kernels = torch.cat([weight.reshape(-1, n, k * 9), bias.reshape(-1, n, 1)], dim=2)  # (classes, N, 9K + 1)
    inner, border, ring = _border_classes(h, w)
    ring_out = torch.cat(
        [torch.bmm(kernels[c].expand(b, -1, -1), patches[:, :, positions.to(y0.device)]) for c, positions in border],
        dim=2,
    )  # (B, N, ring positions)
    ring = ring.to(y0.device)
    if inner is None:  # every position is on the ring
        return ring_out[:, :, torch.argsort(ring)].view(b, n, h, w)
    out = torch.bmm(kernels[inner].expand(b, -1, -1), patches)  # (B, N, h w)
    return out.index_copy_(2, ring, ring_out).view(b, n, h, w)


class _Group(NamedTuple):
    """Scales computed together: their factors, and their kernels stacked along the output channels."""

    ratios: list[int]
    weight: torch.Tensor  # (R, C, sum K r^2, K, 3, 3)
    bias: torch.Tensor  # (R, C, sum K r^2)
    regions: list[list[_Region]] | None  # the region convolutions (cached plans only)


class _Compiled(nn.Module):
    """What the compiled forms share: the head (not a submodule's state of their own: its parameters stay
    the head's), kernels derived afresh while gradients are recorded, else cached per parameter state."""

    #: whether a call for the final scale alone has kernels of its own (else one set serves both)
    final_only_kernels = True

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.head = head
        self.scales = list(head.scales)
        self._cache: dict[tuple, object] = {}
        self._values: torch.Tensor | None = None  # the parameter values the cached kernels were derived from

    def _state(self) -> tuple:
        return tuple((id(p), p.device, p.dtype, p.data_ptr()) for p in self.head.parameters())

    def _check_values(self) -> None:
        """Empty the cache if a parameter's value changed since the kernels were derived. Compared by
        value (the head has a few hundred parameters): an update in place may leave a tensor's version
        counter as it was (the fused AdamW step does), so the counter cannot tell."""
        params = list(self.head.parameters())
        if any(p.device.type == "meta" for p in params):  # nothing to compare; nothing is computed either
            return
        values = torch.cat([p.detach().reshape(-1) for p in params])
        old = self._values
        same = old is not None and old.shape == values.shape and old.device == values.device
        if not (same and old.dtype == values.dtype and torch.equal(old, values)):
            self._cache = {}
            self._values = values.clone()

    def _differentiable(self) -> bool:
        """Whether this call records gradients for the head's parameters (never while tracing)."""
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return False
        return torch.is_grad_enabled() and any(p.requires_grad for p in self.head.parameters())

    def _derive(self, dtype: torch.dtype, final_only: bool) -> object:
        raise NotImplementedError

    def _kernels(self, dtype: torch.dtype, final_only: bool) -> object:
        """The derived kernels: afresh under autograd, else from the cache (derived again if stale)."""
        if self._differentiable():
            return self._derive(dtype, final_only)
        return self.refresh(dtype, final_only)

    def refresh(self, dtype: torch.dtype | None = None, final_only: bool = True) -> object:
        """The cached kernels (in ``dtype``, default the parameters'), derived again if a parameter changed."""
        dtype = dtype or next(self.head.parameters()).dtype
        final_only = final_only and self.final_only_kernels
        key = (dtype, final_only, self._state())
        if not torch.jit.is_tracing():
            self._check_values()
        if key not in self._cache:
            if torch.jit.is_tracing():  # a trace would record the probe instead of its result
                raise RuntimeError(
                    "the compiled head's kernels are derived before tracing: call model.eval() after the last "
                    "change of the weights, device or dtype, then trace (or build with compiled_head=False)"
                )
            with torch.inference_mode(False), torch.no_grad():
                kernels = self._derive(dtype, final_only)
            self._cache = {old: v for old, v in self._cache.items() if old[2] == key[2]}  # drop other tensors' entries
            self._cache[key] = kernels
        return self._cache[key]


class CompiledHead(_Compiled):
    """An affine head computed in its compiled form: the same outputs, from the head's own parameters.

    ``forward(y0)`` returns the head's outputs, ``y0`` first. The kernels are derived from the
    head's current parameters: while gradients are recorded, on every call (so that the head
    trains through them); otherwise once, and again whenever a parameter changes (an optimiser
    step, a ``load_state_dict``, a move to another device or dtype). While tracing (ONNX
    export) they are constants of the graph.

    Args:
        head: an affine head (:func:`is_affine_head`); its parameters stay its own.

    Example:
        >>> import torch
        >>> from jnet.heads import create_head
        >>> head = create_head("jnet", 1, 16, 64, init="default")
        >>> y0 = torch.randn(2, 1, 16, 16)
        >>> with torch.no_grad():
        ...     error = (CompiledHead(head)(y0)[-1] - head(y0)[-1]).abs().max().item()
        >>> error < 1e-5
        True
    """

    def __init__(self, head: Head) -> None:
        if not is_affine_head(head):
            raise ValueError(
                f"{type(head).__name__} has no compiled form: only the affine heads jnet, jnet-noskip, jnet-single"
            )
        super().__init__(head)

    def _derive(self, dtype: torch.dtype, final_only: bool) -> list[_Group]:
        """The scales to compute, in groups: the coarser ones stacked, the final one alone (so that it is
        computed the same way with or without the others); region convolutions unless under autograd."""
        scales = compile_head(self.head)
        groups = [scales[-1:]] if final_only or len(scales) == 1 else [scales[:-1], scales[-1:]]
        plan = []
        for group in groups:
            weight = torch.cat([c.weight for c in group], dim=2).to(dtype)  # (R, C, sum K r^2, K, 3, 3)
            bias = torch.cat([c.bias for c in group], dim=2).to(dtype)
            regions = None if torch.is_grad_enabled() else _regions(self.head.input_size, weight, bias)
            plan.append(_Group([c.ratio for c in group], weight, bias, regions))
        return plan

    def forward(self, y0: torch.Tensor, final_only: bool = False) -> list[torch.Tensor]:
        """``y0 (B, K, h, w)`` -> ``[y0, y_1, ..., y_m]``, or ``[y_m]`` alone with ``final_only``."""
        if tuple(y0.shape[-2:]) != self.head.input_size:
            raise ValueError(f"the head was compiled for {self.head.input_size} inputs, got {tuple(y0.shape[-2:])}")
        k, outs = self.head.num_classes, []
        plan: list[_Group] = self._kernels(y0.dtype, final_only)  # type: ignore[assignment]
        for group in plan:
            if group.regions is None:
                blocks = _multiply_patches(y0, group.weight, group.bias)  # (B, sum K r^2, h, w)
            else:
                blocks = _convolve_regions(y0, group.regions)
            parts = blocks.split([k * r * r for r in group.ratios], dim=1) if len(group.ratios) > 1 else [blocks]
            outs += [F.pixel_shuffle(part, r) for part, r in zip(parts, group.ratios, strict=True)]  # (B, K, rh, rw)
        return outs if final_only else [y0, *outs]


# --------------------------------------------------------------------------------------------
# The image-guided cascade: one conv per stage, the gated image term at the stage's resolution
# --------------------------------------------------------------------------------------------


class _Piece(NamedTuple):
    """An affine map whose zero padding acts once (one 3x3 conv after transposed convs): one kernel for
    every position, ``weight (N, K, 3, 3)``, and a constant per position, ``const (1, N, h, w)``, that
    differs on the border ring; then a pixel shuffle by ``ratio``."""

    ratio: int
    weight: torch.Tensor
    const: torch.Tensor


def _single_padding_piece(
    fn: Callable[[torch.Tensor], torch.Tensor], k: int, size: Size, dtype: torch.dtype, device: torch.device
) -> _Piece:
    """:func:`_probe` of ``fn``, with the class kernels merged into one: they agree on every tap that
    reads the image (only the zero padding of ``fn``'s one 3x3 conv differs at the border, and the
    transposed convs before it make a zero input a constant map), so any class that has a tap gives it."""
    (scale,) = _probe(lambda x: [fn(x)], k, size, dtype, device)
    rows, cols = _axis_classes(size[0]), _axis_classes(size[1])
    # each tap from the class that reads the image there: the inner one if any, else a border one
    i_of = [min(1, len(rows) - 1) if dp == 1 else (len(rows) - 1 if dp == 0 else 0) for dp in range(3)]
    j_of = [min(1, len(cols) - 1) if dq == 1 else (len(cols) - 1 if dq == 0 else 0) for dq in range(3)]
    weight = torch.stack(
        [torch.stack([scale.weight[i_of[dp], j_of[dq], :, :, dp, dq] for dq in range(3)], -1) for dp in range(3)], -2
    )
    const = torch.cat(
        [
            torch.cat(
                [scale.bias[i, j].view(-1, 1, 1).expand(-1, r1 - r0, c1 - c0) for j, (c0, c1) in enumerate(cols)], 2
            )
            for i, (r0, r1) in enumerate(rows)
        ],
        1,
    )
    return _Piece(scale.ratio, weight, const.unsqueeze(0))


class _GuidedStage(NamedTuple):
    """Stage ``i`` of the guided cascade: ``transfer`` maps ``y_{i-1}`` to the stage's own term (its
    transposed conv and the conv's part for it, bias included); for a guided stage, ``up`` is the
    transposed conv itself (``weight, bias``: the gate's input) and ``image`` the conv's part for the
    image features, as a transposed conv's kernel ``(2C, K, 3, 3)`` (flipped: the same convolution);
    ``shuffle`` is the one-hot kernel of :func:`_shuffle2`."""

    transfer: _Piece
    shuffle: torch.Tensor
    up: tuple[torch.Tensor, torch.Tensor] | None
    image: torch.Tensor | None


class _GuidedPlan(NamedTuple):
    """The stages, and the skip stages' stretched terms as one compiled group (``None`` without skips)."""

    stages: list[_GuidedStage]
    stretch: _Group | None
    stretch_stages: list[int]


class CompiledGuidedHead(_Compiled):
    """The ``jnet-guided`` head computed stage by stage with one conv each below the stage's resolution.

    The uncertainty gate is not affine, so each stage's output ``y_i`` must exist at its own
    resolution: the gate reads ``u_i``, the transposed conv of ``y_{i-1}``, and ``y_{i-1}`` holds
    the image terms of the stages before. Everything else of a stage is affine:

    * the stage's transposed conv and its conv's part for ``u_i`` act through one zero padding,
      so they compile (:func:`_single_padding_piece`) to one 3x3 conv of ``y_{i-1}`` at the
      lower resolution, a border-dependent constant and a 2x pixel shuffle;
    * a skip stage's stretched copy of ``y0`` through the conv's part for it is an affine map
      of ``y0`` of the kind :func:`compile_head` reads off (reach below one input pixel): one
      set of region convolutions of ``y0`` gives all skip stages' terms::

        t_i = shuffle_2(conv(y_{i-1}) + c)                    # the stage's own term, bias included
        u_i = convT_i(y_{i-1})                                 # the gate's input (the head's own layer)
        s_i = shuffle_{2^i}(regions(y0))                       # a skip stage's stretched y0, conv'd
        y_i = t_i + s_i + conv3x3(gate(u_i) * f_i)             # f_i: the image features (a guided stage)

    What stays at the stage's resolution is the image's own 3x3 conv (``2C -> K``), the gate's
    element-wise ops and the additions; the stage's and the stretch path's 3x3 convs there
    disappear. For ONNX Runtime two ops take another, equal form: ``shuffle_2`` is a
    transposed conv with a one-hot kernel (:func:`_one_hot_shuffle`) and the image's 3x3 conv a
    transposed conv with the flipped kernel (ONNX Runtime pads a one-output-channel ``Conv``
    to a block of 8 or 16 channels; its ``ConvTranspose`` has no such layout). Exact
    (``tests/test_compiled.py``); kernels cached as for :class:`CompiledHead`, derived with
    autograd while gradients are recorded.

    Args:
        head: a :class:`~jnet.heads.GuidedJNetHead`.
    """

    final_only_kernels = False

    def __init__(self, head: Head) -> None:
        if not isinstance(head, GuidedJNetHead):
            raise ValueError(f"{type(head).__name__} is not the image-guided J-Net head")
        super().__init__(head)

    def _derive(self, dtype: torch.dtype, final_only: bool) -> _GuidedPlan:
        head = self.head
        assert isinstance(head, GuidedJNetHead)
        k, c, f64 = head.num_classes, head.in_channels, torch.float64
        device = next(head.parameters()).device
        stages = []
        for i, (up, conv) in enumerate(zip(head.ups, head.convs, strict=True), start=1):
            wt, bt, w, b = (t.to(f64) for t in (up.weight, up.bias, conv.weight, conv.bias))

            def transfer(x: torch.Tensor, wt=wt, bt=bt, w=w, b=b) -> torch.Tensor:
                return F.conv2d(F.conv_transpose2d(x, wt, bt, stride=2), w[:, :k], b, padding=1)  # (B, K, 2s, 2s)

            piece = _single_padding_piece(transfer, k, head.scales[i - 1], f64, device)
            piece = _Piece(piece.ratio, piece.weight.to(dtype), piece.const.to(dtype))
            shuffle = _one_hot_shuffle(k, dtype, device)
            if i not in head.guided_stages:
                stages.append(_GuidedStage(piece, shuffle, None, None))
                continue
            # copies, not views of the parameters (a view made under no_grad still requires grad)
            up_ = (up.weight.to(dtype, copy=True), up.bias.to(dtype, copy=True))
            image = conv.weight[:, -2 * c :].transpose(0, 1).flip(-2, -1).to(dtype, copy=True)  # (2C, K, 3, 3)
            stages.append(_GuidedStage(piece, shuffle, up_, image))
        skips = list(head.skip_stages)
        if not skips:
            return _GuidedPlan(stages, None, [])
        params = {name: p.to(f64) for name, p in head.named_parameters()}

        def stretched(x: torch.Tensor) -> list[torch.Tensor]:  # y0 -> each skip stage's conv part for s_i
            return [
                F.conv2d(_stretch(head, params, i, x), params[f"convs.{i - 1}.weight"][:, k : 2 * k], padding=1)
                for i in skips
            ]

        scales = _probe(stretched, k, head.input_size, f64, device)
        weight = torch.cat([s.weight for s in scales], dim=2).to(dtype)
        bias = torch.cat([s.bias for s in scales], dim=2).to(dtype)
        regions = None if torch.is_grad_enabled() else _regions(head.input_size, weight, bias)
        return _GuidedPlan(stages, _Group([s.ratio for s in scales], weight, bias, regions), skips)

    def forward(self, y0: torch.Tensor, image: torch.Tensor, final_only: bool = False) -> list[torch.Tensor]:
        """``y0 (B, K, h, w)``, ``image (B, C, H, W)`` -> ``[y0, y_1, ..., y_m]`` (``[y_m]`` with ``final_only``)."""
        head = self.head
        assert isinstance(head, GuidedJNetHead)
        k = head.num_classes
        plan: _GuidedPlan = self._kernels(y0.dtype, False)  # type: ignore[assignment]
        stretched = {}
        if plan.stretch is not None:
            group = plan.stretch
            blocks = (
                _multiply_patches(y0, group.weight, group.bias)
                if group.regions is None
                else _convolve_regions(y0, group.regions)
            )
            parts = blocks.split([k * r * r for r in group.ratios], dim=1)
            stretched = {
                i: F.pixel_shuffle(part, r) for i, part, r in zip(plan.stretch_stages, parts, group.ratios, strict=True)
            }
        features = head.image_features(image)  # [(B, 2C, 2^i h, 2^i w) or None]
        outs, y = [y0], y0
        for i, (stage, f) in enumerate(zip(plan.stages, features, strict=True), start=1):
            t = F.conv2d(y, stage.transfer.weight, padding=1) + stage.transfer.const  # (B, 4K, s, s)
            t = F.conv_transpose2d(t, stage.shuffle, stride=2)  # (B, K, 2s, 2s): PixelShuffle(2), see _one_hot_shuffle
            if i in stretched:
                t = t + stretched[i]
            if f is not None and stage.up is not None and stage.image is not None:
                u = F.conv_transpose2d(y, *stage.up, stride=2)  # (B, K, 2s, 2s): the gate's input
                t = t + F.conv_transpose2d(head.gated(f, u), stage.image, padding=1)  # the image's 3x3 conv
            y = t
            outs.append(y)
        return outs[-1:] if final_only else outs


def _one_hot_shuffle(k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The kernel ``(4K, K, 2, 2)`` of a stride-2 transposed conv that is ``PixelShuffle(2)`` of ``4K`` channels.

    The same numbers; ONNX Runtime runs a 2x ``DepthToSpace`` at 256x256 several times slower
    than this ``ConvTranspose`` (its inner copies are two floats long).
    """
    return torch.eye(4 * k, dtype=dtype, device=device).view(4 * k, k, 2, 2)  # [c 4 + a 2 + b, c, a, b] = 1


def _stretch(head: GuidedJNetHead, params: dict[str, torch.Tensor], i: int, x: torch.Tensor) -> torch.Tensor:
    """``s_i``: skip stage ``i``'s stretched copy of ``x``, computed with ``params`` (the head's, cast)."""
    n = len(head.stretch[str(i)]) - 1
    for j in range(n):
        x = F.conv_transpose2d(x, params[f"stretch.{i}.{j}.weight"], params[f"stretch.{i}.{j}.bias"], stride=2)
    return F.conv2d(x, params[f"stretch.{i}.{n}.weight"], params[f"stretch.{i}.{n}.bias"], padding=1)
