"""Segmentation metrics: Dice and Jaccard (IoU) per foreground class, scored at full resolution.

Conventions
-----------
Model outputs are logits ``(B, K, h, w)``:

* ``K == 1``: binary; the hard prediction is ``logit > 0`` (sigmoid above 0.5), classes
  ``{0: background, 1: foreground}``.
* ``K >= 2``: softmax; the hard prediction is the argmax over channels, classes ``0..K-1``
  with ``0`` the background.

Ground truth is an integer label map ``(B, H, W)``. The background is never scored: there is
one score per foreground class, ``C = 1`` for ``K == 1`` and ``C = K - 1`` otherwise.
``num_classes`` everywhere in this module means ``K``, the number of logit channels.

Scoring a low-resolution model at full resolution
-------------------------------------------------
Metrics are always computed on the ground truth's grid ``(H, W)``; a prediction made at a lower
resolution ``(h, w)`` has to be brought to ``(H, W)`` first, in one of two ways:

* :func:`upsample_logits` (bilinear on the logits, ``align_corners=False``) and then
  :func:`logits_to_labels`. This is what a user would deploy (it gives smooth boundaries), and
  it is the default the rest of the library uses for "full-resolution" numbers.
* :func:`logits_to_labels` at low resolution and then :func:`upsample_labels` (nearest
  neighbour on the labels): blocky masks; useful as a baseline. The same function also
  resizes a full-resolution ground truth *down* to score a prediction at input resolution.

Per-image and global aggregation
--------------------------------
For one image and one class, with ``TP``, ``FP``, ``FN`` the pixel counts::

    dice    = 2 TP / (2 TP + FP + FN)
    jaccard =   TP / (  TP + FP + FN)

``reduction="mean_image"`` averages the per-image scores over the images (every image weighs
the same, however large its structure); ``reduction="global"`` first sums ``TP``, ``FP`` and
``FN`` over all images, then applies the formula once (large structures weigh more). The
arithmetic is done in float64.

Empty slices
------------
When a class is absent from both the prediction and the ground truth of an image, the
denominator is 0 and the score is undefined. ``empty`` decides:

* ``empty="one"`` (default): the score is ``1.0``; correctly predicting an empty slice is a
  perfect answer and counts as such in the per-image mean.
* ``empty="nan"``: the score is ``NaN`` and the per-image mean ignores those images (a
  ``nanmean``); if every image is empty for a class, that class's score is ``NaN``. Means over
  classes (``mean_dice`` ...) then also ignore ``NaN`` classes, and are ``NaN`` only if every
  class is.

A class absent from the truth but present in the prediction scores ``0`` (a false-positive
slice is penalised), whatever ``empty`` is. The same rules apply to the global scores (the
denominator is 0 only if the class appears in no prediction and no truth at all).

Per-volume (3D) scores
----------------------
The 2D slices of one patient form a volume. :func:`volume_scores` sums each patient's ``TP``,
``FP`` and ``FN`` over its slices, per class, and applies the Dice formula once: each patient's
3D Dice. ``volume_dice`` is the mean over patients of that score (every patient weighs the
same), the protocol of Buda et al. (Computers in Biology and Medicine, 2019) on the LGG data.
A patient with neither truth nor prediction of a class follows ``empty`` as above.

:func:`largest_component_per_patient` is the optional post-processing of the same protocol:
per patient volume and foreground class, only the largest 3D connected component of the
predicted mask is kept (6-connectivity: voxels sharing a face, as ``scipy.ndimage.label``'s
default; :func:`label_components` needs no scipy). It is never applied unless asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from jnet._options import check_option, to_size
from jnet.resize import downsample_image

__all__ = [
    "POSTPROCESSING",
    "SegmentationMetrics",
    "VolumeScores",
    "confusion_counts",
    "dice_score",
    "jaccard_score",
    "label_components",
    "largest_component",
    "largest_component_per_class",
    "largest_component_per_patient",
    "logits_to_labels",
    "upsample_labels",
    "upsample_logits",
    "volume_scores",
]

#: The post-processing methods of the predicted masks (none is applied unless named).
POSTPROCESSING = ("largest_component_3d",)

_REDUCTIONS = ("mean_image", "global")
_EMPTY = ("one", "nan")
_FULL_RES_HINT = (
    "metrics are computed at the ground truth's full resolution: up-sample the prediction first "
    "(upsample_logits, then logits_to_labels; or upsample_labels)"
)


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1 (the number of logit channels), got {num_classes!r}")
    return num_classes


def _is_label_dtype(x: torch.Tensor) -> bool:
    return not (x.is_floating_point() or x.is_complex())


def logits_to_labels(logits: torch.Tensor) -> torch.Tensor:
    """Hard labels from logits: ``logit > 0`` for one channel, the argmax over channels otherwise.

    Args:
        logits: ``(B, K, h, w)`` floating-point logits.

    Returns:
        ``(B, h, w)`` int64 labels in ``{0, 1}`` for ``K == 1``, in ``0..K-1`` for ``K >= 2``.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, K, h, w), got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def _nearest_index(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    # Pixel-centre alignment: output pixel i (centre i + 0.5) reads the input pixel whose cell
    # contains (i + 0.5) * n_in / n_out. Exact for integer factors in both directions.
    pos = (torch.arange(n_out, device=device, dtype=torch.float64) + 0.5) * (n_in / n_out)
    return pos.floor().long().clamp_(0, n_in - 1)


def upsample_labels(labels: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of an integer label map (up or down), keeping its dtype.

    Pixel centres are aligned (like ``align_corners=False``), so an integer up-sampling factor
    ``s`` turns each pixel into an ``s x s`` block, and an integer down-sampling factor picks
    one pixel near the centre of each block. No new label values are ever created.

    Args:
        labels: ``(B, h, w)`` integer (or bool) label map.
        size: the target ``(H, W)``, or one int for a square.

    Returns:
        ``(B, H, W)`` label map of the same dtype and device.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be (B, h, w), got shape {tuple(labels.shape)}")
    if not _is_label_dtype(labels):
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype} (use logits_to_labels on logits)")
    height, width = to_size(size)
    h, w = labels.shape[-2:]
    if (h, w) == (height, width):
        return labels
    rows = _nearest_index(h, height, labels.device)
    cols = _nearest_index(w, width, labels.device)
    return labels[:, rows[:, None], cols[None, :]]


def upsample_logits(logits: torch.Tensor, size: int | Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """Resize logits ``(B, K, h, w)`` to ``(B, K, H, W)`` by interpolation (``align_corners=False``).

    Bilinear logits followed by :func:`logits_to_labels` is the library's default way to score a
    low-resolution model at full resolution, since that is what would be deployed.

    Args:
        logits: ``(B, K, h, w)`` floating-point logits.
        size: the target ``(H, W)``, or one int for a square.
        mode: ``"bilinear"`` (default) or ``"bicubic"``.

    Returns:
        ``(B, K, H, W)`` logits of the same dtype.
    """
    check_option("upsample mode", mode, ("bilinear", "bicubic"))
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, K, h, w), got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    size2 = to_size(size)
    if tuple(logits.shape[-2:]) == size2:
        return logits
    return F.interpolate(logits, size=size2, mode=mode, align_corners=False)


def confusion_counts(
    pred_labels: torch.Tensor, target: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image, per-foreground-class true positive, false positive and false negative counts.

    Args:
        pred_labels: ``(B, H, W)`` integer predicted labels (see :func:`logits_to_labels`).
        target: ``(B, H, W)`` integer ground truth, same shape as ``pred_labels``.
        num_classes: ``K``, the number of logit channels (1 for binary).

    Returns:
        ``(tp, fp, fn)``, each an int64 tensor ``(B, C)`` on ``target``'s device, column ``j``
        for class ``j + 1`` (``C = 1`` for ``K == 1``, ``C = K - 1`` otherwise).

    Raises:
        ValueError: if the shapes differ or are not ``(B, H, W)``, or a label is out of range.
        TypeError: if either tensor is floating point.
    """
    _check_num_classes(num_classes)
    n_labels = max(num_classes, 2)  # K == 1 still has the labels {0, 1}
    for name, x in (("pred_labels", pred_labels), ("target", target)):
        if not _is_label_dtype(x):
            raise TypeError(f"{name} must be an integer label tensor, got {x.dtype} (use logits_to_labels on logits)")
    if pred_labels.shape != target.shape:
        raise ValueError(
            f"pred_labels shape {tuple(pred_labels.shape)} does not match target shape {tuple(target.shape)}; "
            + _FULL_RES_HINT
        )
    if target.ndim != 3:
        raise ValueError(f"pred_labels and target must be (B, H, W), got shape {tuple(target.shape)}")
    pred = pred_labels.to(device=target.device, dtype=torch.long)
    true = target.long()
    for name, x in (("pred_labels", pred), ("target", true)):
        if x.numel():
            lo, hi = int(x.min()), int(x.max())
            if lo < 0 or hi >= n_labels:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"{name} contains label {bad}, outside 0..{n_labels - 1} for num_classes={num_classes}"
                )
    batch = true.shape[0]
    # One bincount for the whole batch: cell (b, t, p) counts pixels of image b with truth t, prediction p.
    offset = torch.arange(batch, device=true.device).view(-1, 1, 1) * (n_labels * n_labels)
    cells = (offset + true * n_labels + pred).flatten()
    cm = torch.bincount(cells, minlength=batch * n_labels * n_labels).view(batch, n_labels, n_labels)
    hits = cm.diagonal(dim1=1, dim2=2)
    tp = hits[:, 1:]
    fp = cm.sum(dim=1)[:, 1:] - tp  # predicted as c, truth something else
    fn = cm.sum(dim=2)[:, 1:] - tp  # truth c, predicted something else
    return tp.contiguous(), fp.contiguous(), fn.contiguous()


def _scores(
    tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, metric: str, reduction: str, empty: str
) -> torch.Tensor:
    """``(C,)`` float64 Dice or Jaccard from ``(B, C)`` counts (see the module docstring)."""
    check_option("reduction", reduction, _REDUCTIONS)
    check_option("empty", empty, _EMPTY)
    if tp.shape[0] == 0:
        raise ValueError("no images to score (the batch is empty)")
    tp, fp, fn = (x.to(torch.float64) for x in (tp, fp, fn))
    if reduction == "global":
        tp, fp, fn = (x.sum(dim=0, keepdim=True) for x in (tp, fp, fn))
    if metric == "dice":
        num, den = 2 * tp, 2 * tp + fp + fn
    else:
        num, den = tp, tp + fp + fn
    fill = 1.0 if empty == "one" else float("nan")
    score = torch.where(den > 0, num / den.clamp(min=1), torch.full_like(num, fill))
    return score.nanmean(dim=0) if empty == "nan" else score.mean(dim=0)


def dice_score(
    pred_labels: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    reduction: str = "mean_image",
    empty: str = "one",
) -> torch.Tensor:
    """Dice coefficient ``2TP / (2TP + FP + FN)`` per foreground class.

    Args:
        pred_labels: ``(B, H, W)`` integer predicted labels, on the ground truth's grid.
        target: ``(B, H, W)`` integer ground truth.
        num_classes: ``K``, the number of logit channels (1 for binary).
        reduction: ``"mean_image"`` (mean of per-image scores) or ``"global"`` (counts summed
            over the images first).
        empty: score of a class absent from both prediction and truth: ``"one"`` (1.0) or
            ``"nan"`` (NaN, ignored by the per-image mean).

    Returns:
        ``(C,)`` float64 tensor, entry ``j`` for class ``j + 1``.
    """
    return _scores(*confusion_counts(pred_labels, target, num_classes), "dice", reduction, empty)


def jaccard_score(
    pred_labels: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    reduction: str = "mean_image",
    empty: str = "one",
) -> torch.Tensor:
    """Jaccard index (IoU) ``TP / (TP + FP + FN)`` per foreground class.

    Args:
        pred_labels: ``(B, H, W)`` integer predicted labels, on the ground truth's grid.
        target: ``(B, H, W)`` integer ground truth.
        num_classes: ``K``, the number of logit channels (1 for binary).
        reduction: ``"mean_image"`` (mean of per-image scores) or ``"global"`` (counts summed
            over the images first).
        empty: score of a class absent from both prediction and truth: ``"one"`` (1.0) or
            ``"nan"`` (NaN, ignored by the per-image mean).

    Returns:
        ``(C,)`` float64 tensor, entry ``j`` for class ``j + 1``.
    """
    return _scores(*confusion_counts(pred_labels, target, num_classes), "jaccard", reduction, empty)


def _class_mean(scores: torch.Tensor, empty: str) -> float:
    return float(scores.nanmean() if empty == "nan" else scores.mean())


class SegmentationMetrics:
    """Dice and Jaccard accumulated over batches, per image and globally.

    Only the per-image, per-class ``TP``/``FP``/``FN`` counts are kept (``B x C`` integers per
    batch), so the result after several :meth:`update` calls is exactly that of
    :func:`dice_score` / :func:`jaccard_score` on the concatenated batches.

    Args:
        num_classes: ``K``, the number of logit channels (1 for binary).
        class_names: one name per foreground class (``C`` names); by default ``"foreground"``
            for ``K == 1`` and ``"class_1" .. "class_{K-1}"`` otherwise.
        empty: ``"one"`` or ``"nan"``, see the module docstring.

    Example:
        >>> import torch
        >>> m = SegmentationMetrics(num_classes=1)
        >>> target = torch.tensor([[[0, 1], [1, 1]]])
        >>> m.update(torch.tensor([[[0, 1], [0, 1]]]), target)  # TP=2, FP=0, FN=1
        >>> r = m.compute()
        >>> round(r["dice"]["foreground"], 4), round(r["jaccard"]["foreground"], 4), r["n_images"]
        (0.8, 0.6667, 1)
        >>> m.update(torch.randn(3, 1, 2, 2), torch.zeros(3, 2, 2, dtype=torch.long))  # logits work too
        >>> m.compute()["n_images"]
        4
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, empty: str = "one") -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.empty = check_option("empty", empty, _EMPTY)
        n_fg = 1 if num_classes == 1 else num_classes - 1
        if class_names is None:
            names = ["foreground"] if num_classes == 1 else [f"class_{c}" for c in range(1, num_classes)]
        else:
            if isinstance(class_names, str):
                raise ValueError("class_names must be a sequence of names, not a single string")
            names = [str(n) for n in class_names]
            if len(names) != n_fg:
                raise ValueError(
                    f"class_names has {len(names)} name(s) but num_classes={num_classes} has {n_fg} foreground "
                    f"class(es) (the background, label 0, is not named)"
                )
            if len(set(names)) != len(names):
                raise ValueError(f"class_names must be distinct, got {names}")
        self.class_names: list[str] = names
        self._counts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._counts = []

    @property
    def n_images(self) -> int:
        """Number of images accumulated since construction or the last :meth:`reset`."""
        return sum(int(c[0].shape[0]) for c in self._counts)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Args:
            pred: hard labels ``(B, H, W)`` (integer) or logits ``(B, K, H, W)`` (floating point,
                converted with :func:`logits_to_labels`), on the ground truth's grid.
            target: ``(B, H, W)`` integer ground truth.

        Raises:
            ValueError: on a shape mismatch, a wrong number of logit channels, or a label out of range.
        """
        if pred.is_floating_point():
            if pred.ndim != 4 or pred.shape[1] != self.num_classes:
                raise ValueError(
                    f"floating-point pred is taken as logits (B, K={self.num_classes}, H, W), "
                    f"got shape {tuple(pred.shape)}"
                )
            pred = logits_to_labels(pred)
        tp, fp, fn = confusion_counts(pred, target, self.num_classes)
        self._counts.append((tp.cpu(), fp.cpu(), fn.cpu()))

    def counts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-image ``(tp, fp, fn)``, each ``(N, C)`` int64: what :meth:`compute` scores.

        With :meth:`add_counts`, this merges accumulators, e.g. across distributed ranks.
        """
        if not self._counts:
            empty = torch.zeros(0, len(self.class_names), dtype=torch.int64)
            return empty, empty.clone(), empty.clone()
        tp, fp, fn = (torch.cat([c[i] for c in self._counts]) for i in range(3))
        return tp, fp, fn

    def add_counts(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> None:
        """Add per-image counts ``(N, C)`` taken from another accumulator's :meth:`counts`."""
        c = len(self.class_names)
        if not (tp.shape == fp.shape == fn.shape) or tp.ndim != 2 or tp.shape[1] != c:
            raise ValueError(f"counts must be three (N, {c}) tensors, got {tuple(tp.shape)}, {tuple(fp.shape)}")
        if len(tp):
            self._counts.append((tp.long().cpu(), fp.long().cpu(), fn.long().cpu()))

    def compute(self) -> dict[str, Any]:
        """The scores over every image seen, as plain Python floats.

        Returns:
            ``{"dice", "jaccard"}``: class name -> mean over images of the per-image score;
            ``{"dice_global", "jaccard_global"}``: class name -> score of the summed counts;
            ``mean_dice``, ``mean_jaccard``, ``mean_dice_global``, ``mean_jaccard_global``: means
            over the foreground classes; ``n_images``: the number of images.

        Raises:
            ValueError: if no images were seen.
        """
        if not self._counts:
            raise ValueError("SegmentationMetrics.compute(): no images were seen; call update() first")
        tp, fp, fn = self.counts()
        per_class: dict[str, Any] = {}
        means: dict[str, Any] = {}
        for reduction, suffix in (("mean_image", ""), ("global", "_global")):
            for metric in ("dice", "jaccard"):
                scores = _scores(tp, fp, fn, metric, reduction, self.empty)
                per_class[metric + suffix] = {n: float(s) for n, s in zip(self.class_names, scores, strict=True)}
                means[f"mean_{metric}{suffix}"] = _class_mean(scores, self.empty)
        return {**per_class, **means, "n_images": int(tp.shape[0])}

    def volume_scores(self, patient_id: Sequence[str] | np.ndarray) -> VolumeScores:
        """Each patient's 3D Dice from the per-image counts (:func:`volume_scores`).

        Args:
            patient_id: one id per image seen, in the order of the :meth:`update` calls.
        """
        tp, fp, fn = self.counts()
        return volume_scores(tp, fp, fn, patient_id, self.class_names, self.empty)

    def __repr__(self) -> str:
        return (
            f"SegmentationMetrics(num_classes={self.num_classes}, class_names={self.class_names}, "
            f"empty={self.empty!r}, n_images={self.n_images})"
        )


def low_resolution_oracle(
    masks: torch.Tensor | np.ndarray,
    input_size: int,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Scores at full resolution of the ground truth itself, squeezed through ``input_size``.

    Each class's mask is area-down-sampled to ``input_size`` (the fraction of each
    low-resolution pixel it covers), up-sampled bilinearly and turned into labels as a model's
    logits would be (fraction > 0.5 for one class, the argmax otherwise). This is what a
    backbone that predicted the exact class fractions at its input resolution would score
    behind the ``interp`` head: the resolution's own cost. It is not a hard ceiling: a head
    that reads the image (``jnet-guided``, ``guided``) can place boundaries better than it.

    Args:
        masks: ``(N, H, W)`` integer labels.
        input_size: the low resolution.
        num_classes: ``K`` as for the model (1: binary).
        class_names: names of the foreground classes.
        batch_size: masks processed at a time.

    Returns:
        :meth:`SegmentationMetrics.compute` of those predictions against ``masks``.
    """
    y = torch.as_tensor(np.asarray(masks)).long()
    metrics = SegmentationMetrics(num_classes, class_names)
    size = tuple(y.shape[-2:])
    k = max(2, num_classes)
    for i in range(0, len(y), batch_size):
        labels = y[i : i + batch_size]
        onehot = F.one_hot(labels, k).permute(0, 3, 1, 2).float()  # (B, K', H, W)
        low = downsample_image(onehot, (input_size, input_size), "area")  # (B, K', r, r): class fractions
        up = upsample_logits(low, size)  # (B, K', H, W)
        pred = (up[:, 1] > 0.5).long() if num_classes == 1 else up.argmax(dim=1)
        metrics.update(pred, labels)
    return metrics.compute()


# ------------------------------------------------------------------------------------------
# per-volume (3D) scores
# ------------------------------------------------------------------------------------------


def _mean(values: np.ndarray, empty: str, axis: int | None = None) -> np.ndarray:
    """The mean, or with ``empty="nan"`` the mean of the non-NaN values (NaN if there are none), without warnings."""
    if empty != "nan":
        return np.mean(values, axis=axis)
    known = ~np.isnan(values)
    total = np.where(known, values, 0.0).sum(axis=axis)
    count = known.sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass(frozen=True)
class VolumeScores:
    """Each patient's 3D Dice per foreground class (see :func:`volume_scores`).

    Attributes:
        patient_id: ``(P,)`` str, the patients in order of first appearance.
        dice: ``(P, C)`` float64, patient ``i``'s Dice of class ``j + 1`` over all its slices.
        class_names: the ``C`` foreground class names.
        empty: ``"one"`` or ``"nan"``: how a patient without the class in truth and prediction scored.
    """

    patient_id: np.ndarray
    dice: np.ndarray
    class_names: tuple[str, ...]
    empty: str = "one"

    @property
    def volume_dice(self) -> dict[str, float]:
        """Class name -> mean over the patients of their 3D Dice."""
        means = _mean(self.dice, self.empty, axis=0)
        return {name: float(m) for name, m in zip(self.class_names, means, strict=True)}

    @property
    def mean_volume_dice(self) -> float:
        """:attr:`volume_dice` averaged over the foreground classes."""
        return float(_mean(np.array(list(self.volume_dice.values())), self.empty))

    def as_dict(self) -> dict[str, Any]:
        """The entries a metrics JSON holds: ``volume_dice``, ``mean_volume_dice``, ``n_volumes``."""
        return {
            "volume_dice": self.volume_dice,
            "mean_volume_dice": self.mean_volume_dice,
            "n_volumes": len(self.patient_id),
        }


def volume_scores(
    tp: Any,
    fp: Any,
    fn: Any,
    patient_id: Sequence[str] | np.ndarray,
    class_names: Sequence[str] | None = None,
    empty: str = "one",
) -> VolumeScores:
    """Per-patient (3D) Dice: each patient's counts summed over its slices, then ``2TP / (2TP + FP + FN)``.

    Args:
        tp, fp, fn: per-image counts ``(N, C)`` (arrays, tensors or nested lists; ``(N,)`` is
            one class), e.g. :meth:`SegmentationMetrics.counts`.
        patient_id: ``(N,)`` the patient of each image; a patient's images need not be adjacent.
        class_names: the ``C`` class names; default ``"foreground"`` for one class, ``"class_1"``... otherwise.
        empty: score of a class absent from a patient's truth and prediction: ``"one"`` (1.0,
            as :class:`SegmentationMetrics`' default) or ``"nan"`` (left out of the means).

    Returns:
        A :class:`VolumeScores`: the per-patient values and their means.

    Example:
        >>> tp, fp, fn = [[2], [0], [1]], [[0], [0], [1]], [[1], [0], [0]]  # patient a: 2 slices, b: 1
        >>> v = volume_scores(tp, fp, fn, ["a", "a", "b"])
        >>> v.patient_id.tolist(), v.dice[:, 0].round(4).tolist()  # a: 4 / 5, b: 2 / 3
        (['a', 'b'], [0.8, 0.6667])
        >>> round(v.mean_volume_dice, 4), v.as_dict()["n_volumes"]
        (0.7333, 2)
    """
    check_option("empty", empty, _EMPTY)
    counts = []
    for name, x in (("tp", tp), ("fp", fp), ("fn", fn)):
        a = np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        a = a.reshape(-1, 1) if a.ndim == 1 else a
        if a.ndim != 2:
            raise ValueError(f"{name} must be per-image counts (N, C), got shape {a.shape}")
        counts.append(a)
    pid = np.asarray(patient_id).astype(str)
    if not counts[0].shape == counts[1].shape == counts[2].shape or pid.shape != (len(counts[0]),):
        shapes = ", ".join(str(c.shape) for c in (*counts, pid))
        raise ValueError(f"tp, fp, fn and patient_id must have one row per image, got shapes {shapes}")
    if len(pid) == 0:
        raise ValueError("no images to score")
    n_classes = counts[0].shape[1]
    names = tuple(class_names) if class_names is not None else None
    if names is None:
        names = ("foreground",) if n_classes == 1 else tuple(f"class_{c}" for c in range(1, n_classes + 1))
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class name(s) for {n_classes} count column(s)")
    patients, first, inverse = np.unique(pid, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # patients in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    summed = []
    for a in counts:
        total = np.zeros((len(patients), n_classes))
        np.add.at(total, rank[inverse.reshape(-1)], a)
        summed.append(total)
    s_tp, s_fp, s_fn = summed
    den = 2 * s_tp + s_fp + s_fn
    dice = np.where(den > 0, 2 * s_tp / np.maximum(den, 1), 1.0 if empty == "one" else np.nan)
    return VolumeScores(patients[order], dice, names, empty)


# ------------------------------------------------------------------------------------------
# largest connected component
# ------------------------------------------------------------------------------------------


def _connect(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Each node's root (the smallest node of its component) in the graph of ``n`` nodes and edges ``u``-``v``.

    Vectorised union-find: every round hooks each root to the smallest root it has an edge to,
    then jumps pointers until every node points at a root. Every component's number of trees at
    least halves per round, so there are ``O(log n)`` rounds.
    """
    parent = np.arange(n)
    while True:
        pu, pv = parent[u], parent[v]
        apart = pu != pv
        if not apart.any():
            return parent
        u, v, pu, pv = u[apart], v[apart], pu[apart], pv[apart]  # an edge within one tree stays so
        np.minimum.at(parent, np.maximum(pu, pv), np.minimum(pu, pv))
        while True:
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of a boolean array, neighbours sharing a face (6-connectivity in 3D, 4 in 2D).

    Needs no scipy, and gives the same labels as ``scipy.ndimage.label(mask)`` (its default
    structure): components numbered ``1..n`` in the order of their first element (C order).

    Args:
        mask: a boolean (or 0/1) array of any number of dimensions.

    Returns:
        ``(labels, n)``: int64 labels of ``mask``'s shape, ``0`` outside the mask.

    Example:
        >>> labels, n = label_components(np.array([[1, 1, 0, 1], [0, 0, 0, 1], [1, 0, 1, 1]]))
        >>> n, labels.tolist()
        (3, [[1, 1, 0, 2], [0, 0, 0, 2], [3, 0, 2, 2]])
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    labels = np.zeros(mask.shape, dtype=np.int64)
    flat = np.flatnonzero(mask)  # sorted: node i is the i-th voxel of the mask in C order
    if len(flat) == 0:
        return labels, 0
    strides = [int(np.prod(mask.shape[axis + 1 :])) for axis in range(mask.ndim)]
    us, vs = [], []
    for axis in range(mask.ndim):
        lower = tuple(slice(None, -1) if a == axis else slice(None) for a in range(mask.ndim))
        upper = tuple(slice(1, None) if a == axis else slice(None) for a in range(mask.ndim))
        first = np.ravel_multi_index(np.nonzero(mask[lower] & mask[upper]), mask.shape)
        us.append(first)
        vs.append(first + strides[axis])
    u = np.searchsorted(flat, np.concatenate(us))
    v = np.searchsorted(flat, np.concatenate(vs))
    roots, component = np.unique(_connect(len(flat), u, v), return_inverse=True)
    labels.flat[flat] = component.reshape(-1) + 1
    return labels, len(roots)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of a boolean array (:func:`label_components`), as a boolean array.

    Of components of equal size the first (in C order) is kept; an empty mask stays empty.

    Example:
        >>> largest_component(np.array([[1, 0, 1], [0, 0, 1]])).astype(int).tolist()
        [[0, 0, 1], [0, 0, 1]]
    """
    labels, n = label_components(mask)
    if n <= 1:
        return labels > 0
    sizes = np.bincount(labels.reshape(-1), minlength=n + 1)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def largest_component_per_class(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Keep, per foreground class, only the largest connected component of ``labels``; the rest becomes 0.

    Args:
        labels: an integer label map of any dimensions, e.g. one patient's ``(D, H, W)`` volume.
        num_classes: ``K``, the number of logit channels (1: binary, the foreground is label 1).

    Returns:
        A copy of ``labels`` with every other component of each class set to the background.
    """
    _check_num_classes(num_classes)
    out = np.array(labels, copy=True)
    for c in range(1, max(num_classes, 2)):
        mask = out == c
        if mask.any():
            out[mask & ~largest_component(mask)] = 0
    return out


def largest_component_per_patient(
    labels: np.ndarray,
    patient_id: Sequence[str] | np.ndarray,
    num_classes: int,
    slice_index: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Largest-3D-component post-processing of predicted slices, one patient volume at a time.

    A patient's slices are stacked into a ``(D, H, W)`` volume in the data's order, or, given
    ``slice_index``, in that order with a gap (two stacked slices whose indices differ by more
    than 1, e.g. where empty slices were dropped) kept apart. Then
    :func:`largest_component_per_class` (6-connectivity) keeps one component per class.

    Args:
        labels: ``(N, H, W)`` integer predicted labels.
        patient_id: ``(N,)`` the patient of each slice.
        num_classes: ``K`` (1: binary).
        slice_index: ``(N,)`` each slice's position in its volume (default: a patient's slices are
            consecutive, in the data's order).

    Returns:
        ``(N, H, W)`` post-processed labels, in the input's order and dtype.
    """
    labels = np.asarray(labels)
    pid = np.asarray(patient_id).astype(str)
    index = None if slice_index is None else np.asarray(slice_index, dtype=np.int64)
    if labels.ndim != 3 or pid.shape != (len(labels),) or (index is not None and index.shape != pid.shape):
        shapes = f"{labels.shape}, {pid.shape}" + ("" if index is None else f" and {index.shape}")
        raise ValueError(f"labels must be (N, H, W) with one patient id (and slice index) per slice, got {shapes}")
    out = np.empty_like(labels)
    for patient in np.unique(pid):
        rows = np.flatnonzero(pid == patient)
        gap = np.zeros(len(rows) - 1, dtype=bool)
        if index is not None:
            rows = rows[np.argsort(index[rows], kind="stable")]
            gap = np.diff(index[rows]) > 1
        depth = np.concatenate([[0], np.cumsum(1 + gap)])  # an empty slice in each gap
        volume = np.zeros((int(depth[-1]) + 1, *labels.shape[1:]), dtype=labels.dtype)
        volume[depth] = labels[rows]
        out[rows] = largest_component_per_class(volume, num_classes)[depth]
    return out
