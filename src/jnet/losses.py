"""Segmentation losses, and the multi-scale loss that trains every output of a J-Net head.

Conventions
-----------
Model outputs are logits ``(B, K, h, w)``:

* ``K == 1``: binary segmentation; ``sigmoid(logit)`` is the foreground probability.
* ``K >= 2``: multi-class; ``softmax`` over the ``K`` channels, class ``0`` is the background.

The ground truth is an integer label map ``(B, H, W)`` at full resolution, with labels in
``{0, 1}`` for ``K == 1`` and in ``[0, K)`` for ``K >= 2``. The base losses do not take labels
but float *class-probability maps* ``(B, K, h, w)`` (for ``K == 1`` the single channel is the
foreground probability), which :func:`target_pyramid` makes from the label map at every
output size. Soft maps are what area resizing produces (a pixel half covered by a lesion has
target ``0.5``); hard one-hot maps are the special case that nearest resizing produces.

Base losses (``t`` the target map, ``z`` the logits, means over batch and pixels)::

    ce       = mean( -sum_c t_c log softmax(z)_c )                        K >= 2
    bce      = mean( -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)) )    K == 1
    dice     = 1 - mean_c (2 sum p_c t_c + smooth) / (sum p_c + sum t_c + smooth)
    dice_ce  = lambda_dice * dice + lambda_ce * (bce if K == 1 else ce)

Multi-scale loss (:class:`MultiScaleLoss`), for outputs ``o_0`` (coarsest) ... ``o_n`` (finest)::

    L = sum_i w_i * base(o_i, resize(target, size(o_i)))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jnet._options import check_option, to_size
from jnet.registry import Registry

__all__ = [
    "BCELoss",
    "CrossEntropyLoss",
    "DiceCELoss",
    "MultiScaleLoss",
    "SoftDiceLoss",
    "build_loss",
    "list_losses",
    "target_pyramid",
]

_RESIZE_MODES = ("nearest", "area")
_WEIGHT_PRESETS = ("final",)


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


def _check_labels(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Validate an integer label map ``(B, H, W)`` and return it as ``int64``."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if target.dim() != 3:
        hint = " (squeeze the channel dimension: target[:, 0])" if target.dim() == 4 and target.shape[1] == 1 else ""
        raise ValueError(f"target must be an integer label map (B, H, W), got shape {tuple(target.shape)}{hint}")
    if target.dtype == torch.bool:
        target = target.to(torch.uint8)
    if target.is_floating_point() or target.is_complex():
        raise TypeError(f"target must be an integer label map, got dtype {target.dtype}; convert it with .long()")
    n_labels = 2 if num_classes == 1 else num_classes
    if target.numel() > 0:
        lo, hi = (int(v) for v in torch.aminmax(target))
        if lo < 0 or hi >= n_labels:
            bad = lo if lo < 0 else hi
            kind = (
                "binary (K == 1): labels 0 and 1"
                if num_classes == 1
                else f"K == {num_classes}: labels 0..{n_labels - 1}"
            )
            hint = " (a 0/255 mask? divide it by 255)" if bad == 255 else ""
            raise ValueError(f"target label {bad} is out of range; valid labels for {kind}{hint}")
    return target.long()


def _one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B, H, W)`` int64 labels -> ``(B, K, H, W)`` 0/1 maps (for ``K == 1``: the foreground)."""
    if num_classes == 1:
        return labels.unsqueeze(1).to(dtype)  # (B, 1, H, W)
    b, h, w = labels.shape
    out = torch.zeros(b, num_classes, h, w, dtype=dtype, device=labels.device)
    return out.scatter_(1, labels.unsqueeze(1), 1.0)  # (B, K, H, W)


def target_pyramid(
    target: torch.Tensor,
    sizes: Sequence[int | Sequence[int]],
    num_classes: int,
    mode: str = "nearest",
    *,
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """The ground truth as class-probability maps at each of ``sizes``.

    The label map is one-hot encoded once at full resolution, then resized to every size:

    * ``mode="nearest"``: nearest-neighbour resizing (``F.interpolate(mode="nearest")``, the
      MONAI / nnU-Net way). The maps stay hard 0/1; a structure smaller than the sampling
      stride can vanish from (or be inflated in) the coarse targets.
    * ``mode="area"``: area averaging (``F.interpolate(mode="area")``); each coarse pixel holds
      the fraction of its footprint covered by each class, so a small lesion survives as a
      fraction instead of being dropped (see nnU-Net issue 1226).

    For ``area``, a size that divides the full size exactly is pooled from the smallest
    already-computed map that it divides (cheaper, and equal to resizing from full resolution,
    since an average of equal-sized block averages is the block average); other sizes are
    resized from full resolution directly. A size equal to the target's size returns the
    one-hot map itself.

    Args:
        target: integer label map ``(B, H, W)`` (any integer or bool dtype); labels in
            ``{0, 1}`` for ``num_classes == 1``, in ``[0, num_classes)`` otherwise.
        sizes: output sizes, each an ``int`` (square) or ``(h, w)`` with ``h <= H``, ``w <= W``.
        num_classes: ``K``, the number of logit channels.
        mode: ``"nearest"`` or ``"area"``.
        dtype: float dtype of the maps.

    Returns:
        One ``(B, K, h, w)`` map per size, in the order of ``sizes``. For ``K == 1`` the channel
        is the foreground probability (fraction); for ``K >= 2`` the channels sum to 1.

    Raises:
        ValueError: on an unknown ``mode``, a size larger than the target, a malformed target
            or a label outside the valid range.
        TypeError: if ``target`` is a float tensor.
    """
    check_option("target resize mode", mode, _RESIZE_MODES)
    labels = _check_labels(target, num_classes)
    full = (labels.shape[-2], labels.shape[-1])
    wanted = [to_size(s) for s in sizes]
    for h, w in wanted:
        if h > full[0] or w > full[1]:
            raise ValueError(
                f"cannot resize the target up: it is {full[0]}x{full[1]} (H x W) but size {h}x{w} was requested; "
                "the ground truth must be at least as large as every output"
            )
    onehot = _one_hot(labels, num_classes, dtype)  # (B, K, H, W), computed once
    maps: dict[tuple[int, int], torch.Tensor] = {full: onehot}
    # For area mode: maps that are exact block averages of the full-resolution one-hot.
    exact: list[tuple[int, int]] = [full]
    for size in sorted(set(wanted), key=lambda s: s[0] * s[1], reverse=True):
        if size in maps:
            continue
        if mode == "nearest":
            maps[size] = F.interpolate(onehot, size=size, mode="nearest")  # (B, K, h, w)
            continue
        sources = [s for s in exact if s[0] % size[0] == 0 and s[1] % size[1] == 0]
        src = min(sources, key=lambda s: s[0] * s[1]) if sources else full
        maps[size] = F.interpolate(maps[src], size=size, mode="area")  # (B, K, h, w)
        if full[0] % size[0] == 0 and full[1] % size[1] == 0:
            exact.append(size)
    return [maps[s] for s in wanted]


# --------------------------------------------------------------------------------------------
# Base losses
# --------------------------------------------------------------------------------------------


def _check_pair(logits: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if logits.dim() != 4:
        raise ValueError(f"{name}: logits must be (B, K, h, w), got shape {tuple(logits.shape)}")
    if logits.shape != target.shape:
        raise ValueError(
            f"{name}: logits {tuple(logits.shape)} and target maps {tuple(target.shape)} differ in shape; "
            "the target must be class-probability maps (B, K, h, w), see jnet.losses.target_pyramid"
        )


class CrossEntropyLoss(nn.Module):
    """Soft-target cross-entropy for ``K >= 2`` classes.

    ``loss = mean over batch and pixels of -sum_c t_c log softmax(z)_c``; with one-hot ``t``
    this equals ``F.cross_entropy`` with the hard labels. Computed in float32.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: logits ``(B, K, h, w)``; target class-probability maps ``(B, K, h, w)``."""
        _check_pair(logits, target, "CrossEntropyLoss")
        if logits.shape[1] == 1:
            raise ValueError(
                "cross-entropy needs K >= 2 channels (softmax); with K == 1 (sigmoid, binary) use the 'bce' loss"
            )
        # probability targets: F.cross_entropy averages -sum_c t_c log_softmax(z)_c over B*h*w
        return F.cross_entropy(logits.float(), target.float())


class BCELoss(nn.Module):
    """Binary cross-entropy on logits for ``K == 1``, with soft targets.

    ``loss = mean(-t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)))``, computed in float32.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: logits ``(B, 1, h, w)``; target foreground probability ``(B, 1, h, w)``."""
        _check_pair(logits, target, "BCELoss")
        if logits.shape[1] != 1:
            raise ValueError(
                f"binary cross-entropy needs K == 1 channel (sigmoid), got K == {logits.shape[1]}; "
                "for K >= 2 (softmax) use the 'ce' loss"
            )
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())


class SoftDiceLoss(nn.Module):
    """Soft Dice loss on probabilities (sigmoid for ``K == 1``, softmax for ``K >= 2``).

    For each scored class ``c``::

        dice_c = (2 sum p_c t_c + smooth) / (sum p_c + sum t_c + smooth)
        loss   = 1 - mean_c dice_c

    With ``batch_dice`` the sums run over the batch and the pixels together (nnU-Net's "batch
    dice": one Dice per class for the whole batch, stable when some images have no foreground);
    otherwise they run over the pixels of each image and ``dice_c`` is averaged over images.

    Args:
        smooth: added to numerator and denominator (keeps empty classes finite).
        include_background: for ``K >= 2``, also score channel 0. Ignored for ``K == 1``,
            whose single channel is the foreground.
        batch_dice: sum over the batch (``True``) or score each image (``False``).
    """

    def __init__(self, smooth: float = 1e-5, include_background: bool = False, batch_dice: bool = True) -> None:
        super().__init__()
        self.smooth = float(smooth)
        self.include_background = bool(include_background)
        self.batch_dice = bool(batch_dice)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: logits ``(B, K, h, w)``; target class-probability maps ``(B, K, h, w)``."""
        _check_pair(logits, target, "SoftDiceLoss")
        logits, target = logits.float(), target.float()
        if logits.shape[1] == 1:
            probs = torch.sigmoid(logits)  # (B, 1, h, w)
        else:
            probs = torch.softmax(logits, dim=1)  # (B, K, h, w)
            if not self.include_background:
                probs, target = probs[:, 1:], target[:, 1:]  # (B, K-1, h, w)
        dims = (0, 2, 3) if self.batch_dice else (2, 3)
        inter = (probs * target).sum(dims)  # (C,) or (B, C)
        denom = probs.sum(dims) + target.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        return 1 - dice.mean()

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, include_background={self.include_background}, batch_dice={self.batch_dice}"


class DiceCELoss(nn.Module):
    """Soft Dice plus cross-entropy: ``lambda_dice * dice + lambda_ce * (bce if K == 1 else ce)``.

    Args:
        lambda_dice: weight of the Dice term.
        lambda_ce: weight of the cross-entropy term.
        smooth, include_background, batch_dice: passed to :class:`SoftDiceLoss`.
    """

    def __init__(
        self,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        smooth: float = 1e-5,
        include_background: bool = False,
        batch_dice: bool = True,
    ) -> None:
        super().__init__()
        self.lambda_dice = float(lambda_dice)
        self.lambda_ce = float(lambda_ce)
        self.dice = SoftDiceLoss(smooth=smooth, include_background=include_background, batch_dice=batch_dice)
        self.ce = CrossEntropyLoss()
        self.bce = BCELoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: logits ``(B, K, h, w)``; target class-probability maps ``(B, K, h, w)``."""
        ce = self.bce if logits.shape[1] == 1 else self.ce
        return self.lambda_dice * self.dice(logits, target) + self.lambda_ce * ce(logits, target)

    def extra_repr(self) -> str:
        return f"lambda_dice={self.lambda_dice}, lambda_ce={self.lambda_ce}"


LOSSES: Registry[type[nn.Module]] = Registry("loss")
LOSSES.add("ce", CrossEntropyLoss)
LOSSES.add("bce", BCELoss)
LOSSES.add("dice", SoftDiceLoss)
LOSSES.add("dice_ce", DiceCELoss)


def list_losses() -> list[str]:
    """Names accepted by :func:`build_loss`."""
    return LOSSES.names()


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """A base loss by name: ``"ce"``, ``"bce"``, ``"dice"`` or ``"dice_ce"``.

    Args:
        name: the loss name.
        **kwargs: options of the loss class (e.g. ``batch_dice=False`` for ``"dice"``).

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
    """
    return LOSSES.get(name)(**kwargs)


# --------------------------------------------------------------------------------------------
# Multi-scale loss
# --------------------------------------------------------------------------------------------


class MultiScaleLoss(nn.Module):
    """Sum of a base loss over every output scale, each against the ground truth resized to it.

    For outputs ``o_0`` (coarsest) ... ``o_n`` (finest) and weights ``w_i``::

        L = sum_i w_i * base(o_i, T_i),   T_i = target_pyramid(target, size(o_i))

    The resized targets are computed once per call (one one-hot for all sizes). Outputs whose
    weight is 0 are not evaluated.

    Example:
        >>> import torch
        >>> from jnet.losses import MultiScaleLoss
        >>> criterion = MultiScaleLoss("dice_ce", weights=[0.25, 0.5, 1.0])
        >>> outputs = [torch.randn(2, 1, s, s, requires_grad=True) for s in (16, 32, 64)]
        >>> target = torch.randint(0, 2, (2, 64, 64))  # full-resolution labels
        >>> loss = criterion(outputs, target)
        >>> loss.backward()
        >>> loss.shape, outputs[0].grad.shape
        (torch.Size([]), torch.Size([2, 1, 16, 16]))

    Args:
        base_loss: a name from :func:`list_losses` or any module called as
            ``loss(logits (B, K, h, w), target_probs (B, K, h, w)) -> scalar``.
        weights: ``None``: weight 1 for every output (the J-Net paper's plain sum, not
            normalised); ``"final"``: only the last (finest) output counts; a sequence: one
            non-negative weight per output, coarsest first.
        target_resize: how the full-resolution target is brought to each output size,
            ``"nearest"`` or ``"area"`` (see :func:`target_pyramid`). ``"area"`` keeps small
            lesions as fractional targets where ``"nearest"`` can drop them. The default,
            ``"nearest"``, is what every run of the LGG study used; ``"area"`` scored a little
            higher there (+1.3 and +0.7 mean Jaccard at 16x16 and 32x32 input, 3 seeds each,
            docs/results.md), so it is the setting to try first on a new data set.
    """

    def __init__(
        self,
        base_loss: str | nn.Module = "dice_ce",
        weights: Sequence[float] | str | None = None,
        target_resize: str = "nearest",
    ) -> None:
        super().__init__()
        if isinstance(base_loss, str):
            base_loss = build_loss(base_loss)
        elif not isinstance(base_loss, nn.Module):
            raise TypeError(f"base_loss must be a loss name or an nn.Module, got {type(base_loss).__name__}")
        self.base_loss = base_loss
        self.target_resize = check_option("target_resize", target_resize, _RESIZE_MODES)
        self.weights: tuple[float, ...] | str | None
        if isinstance(weights, str):
            self.weights = check_option("weights", weights, _WEIGHT_PRESETS)
        elif weights is None:
            self.weights = None
        else:
            ws = tuple(float(w) for w in weights)
            if not ws:
                raise ValueError("weights is empty; give one weight per output")
            if any(not (w >= 0 and w < float("inf")) for w in ws):
                raise ValueError(f"weights must be finite and >= 0, got {list(ws)}")
            if not any(w > 0 for w in ws):
                raise ValueError(f"at least one weight must be positive, got {list(ws)}")
            self.weights = ws

    def output_weights(self, n_outputs: int) -> list[float]:
        """The weight of each of ``n_outputs`` outputs (coarsest first).

        Raises:
            ValueError: if a weight sequence does not have ``n_outputs`` entries.
        """
        if self.weights is None:
            return [1.0] * n_outputs
        if self.weights == "final":
            return [0.0] * (n_outputs - 1) + [1.0]
        if len(self.weights) != n_outputs:
            raise ValueError(
                f"the model gave {n_outputs} output(s) but {len(self.weights)} loss weight(s) were set; "
                "give one weight per output, coarsest first"
            )
        return list(self.weights)

    def forward(
        self,
        outputs: torch.Tensor | Sequence[torch.Tensor],
        target: torch.Tensor | None = None,
        *,
        targets: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The weighted sum of the base loss over the outputs.

        Args:
            outputs: logits ``(B, K, h, w)``, or a sequence of them, coarsest first.
            target: integer label map ``(B, H, W)`` at (at least) the finest output's size.
                Moved to the outputs' device.
            targets: optional precomputed class-probability maps, one per output, matching
                the outputs' shapes (e.g. ``target_pyramid`` cached by a data loader); used
                instead of ``target`` when given.

        Returns:
            A scalar tensor.
        """
        outs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        if not outs:
            raise ValueError("outputs is empty; expected at least one logit map (B, K, h, w)")
        for o in outs:
            if o.dim() != 4:
                raise ValueError(f"every output must be logits (B, K, h, w), got shape {tuple(o.shape)}")
        k = outs[0].shape[1]
        if any(o.shape[1] != k for o in outs):
            raise ValueError(f"outputs disagree on the number of channels K: {[o.shape[1] for o in outs]}")
        weights = self.output_weights(len(outs))
        active = [i for i, w in enumerate(weights) if w != 0]

        if targets is not None:
            maps = list(targets)
            if len(maps) != len(outs):
                raise ValueError(f"got {len(outs)} output(s) but {len(maps)} precomputed target map(s)")
            for i in active:
                if maps[i].shape != outs[i].shape:
                    raise ValueError(
                        f"precomputed target {i} has shape {tuple(maps[i].shape)} "
                        f"but output {i} has shape {tuple(outs[i].shape)}"
                    )
        elif target is not None:
            sizes = [tuple(outs[i].shape[-2:]) for i in active]
            resized = target_pyramid(target.to(outs[0].device), sizes, k, self.target_resize)
            maps = [None] * len(outs)  # type: ignore[list-item]
            for i, t in zip(active, resized, strict=True):
                maps[i] = t  # (B, K, h_i, w_i)
        else:
            raise ValueError("give the ground truth: target (B, H, W) labels or targets (precomputed maps)")

        loss = None
        for i in active:
            term = weights[i] * self.base_loss(outs[i], maps[i])  # (B, K, h_i, w_i) vs (B, K, h_i, w_i)
            loss = term if loss is None else loss + term
        return loss  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"weights={self.weights!r}, target_resize={self.target_resize!r}"
