"""Per-image validation scores: what ``val_scores.csv`` holds, so runs can be compared in pairs.

Every training run writes ``val_scores.csv`` (:data:`SCORES_FILE`) beside its
``metrics.json``: one row per validation slice, in the data's order, with columns
``image, patient_id, truth_pixels, dice, jaccard`` (``truth_pixels`` counts the ground
truth's foreground pixels; the scores are means over the foreground classes, scored at full
resolution by the best checkpoint), then per foreground class ``tp_<class>, fp_<class>,
fn_<class>``: the slice's true positive, false positive and false negative pixel counts, from
which :meth:`ImageScores.volume_scores` gives each patient's 3D Dice without the checkpoint.
The means of ``dice`` and ``jaccard`` are the run's best ``mean_dice`` and ``mean_jaccard``.
:mod:`jnet.study.compare` pairs two runs' files slice by slice.

Files written before the counts existed (``image, patient_id, truth_pixels, dice, jaccard``
only) are still read; their counts are ``None``, and asking them for volume scores is a
``ValueError`` that says so.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jnet.data.prepare import downsample
from jnet.io import write_text
from jnet.metrics import SegmentationMetrics, VolumeScores, volume_scores
from jnet.training.evaluate import checkpoint_data, evaluate_counts

SCORES_FILE = "val_scores.csv"
SCORE_METRICS = ("dice", "jaccard")
SCORE_COLUMNS = ("image", "patient_id", "truth_pixels", "dice", "jaccard")
COUNT_PREFIXES = ("tp_", "fp_", "fn_")
"""Per-class count columns of ``val_scores.csv``: ``tp_<class>``, ``fp_<class>``, ``fn_<class>``."""


@dataclass
class ImageScores:
    """Per-image scores on a run's validation slices, in the data's slice order.

    ``tp``, ``fp``, ``fn`` (``(N, C)`` int64 pixel counts, one column per name of
    ``class_names``) are ``None`` for a file written before they were kept.
    """

    patient_id: np.ndarray  # (N,) str
    truth_pixels: np.ndarray  # (N,) int64, foreground pixels of the ground truth
    dice: np.ndarray  # (N,) float64, mean over the foreground classes
    jaccard: np.ndarray  # (N,) float64
    tp: np.ndarray | None = None  # (N, C) int64
    fp: np.ndarray | None = None
    fn: np.ndarray | None = None
    class_names: list[str] | None = None
    source: str | None = field(default=None, compare=False)  # the file read, for messages

    def __post_init__(self) -> None:
        n = len(self.patient_id)
        if not len(self.truth_pixels) == len(self.dice) == len(self.jaccard) == n:
            raise ValueError(
                f"ImageScores: {n} patient ids, {len(self.truth_pixels)} truth sizes, {len(self.dice)} Dice "
                f"and {len(self.jaccard)} Jaccard scores"
            )
        counts = (self.tp, self.fp, self.fn)
        if any(c is None for c in counts) != all(c is None for c in counts) or (
            self.tp is not None and self.class_names is None
        ):
            raise ValueError("ImageScores: give tp, fp, fn and class_names together, or none of them")
        if self.tp is not None:
            shape = (n, len(self.class_names or ()))
            if any(np.shape(c) != shape for c in counts):
                raise ValueError(f"ImageScores: tp, fp and fn must be {shape}, got {[np.shape(c) for c in counts]}")

    @property
    def has_counts(self) -> bool:
        """Whether the per-class pixel counts are known (not for files written before they were kept)."""
        return self.tp is not None

    def volume_scores(self) -> VolumeScores:
        """Each patient's 3D Dice from the per-slice counts (:func:`jnet.metrics.volume_scores`).

        Raises:
            ValueError: if the counts are unknown (a ``val_scores.csv`` of an older jnet).
        """
        if self.tp is None or self.fp is None or self.fn is None:
            where = f"{self.source}: " if self.source else ""
            raise ValueError(
                f"{where}no per-slice tp/fp/fn counts (written by an older jnet), so no per-volume Dice; "
                "rescore the run's checkpoint to get them (jnet evaluate --scores)"
            )
        return volume_scores(self.tp, self.fp, self.fn, self.patient_id, self.class_names)

    def subset(self, keep: np.ndarray) -> ImageScores:
        """The scores of the images where ``keep`` (``(N,)`` bool) is true, in the same order."""
        keep = np.asarray(keep)
        if keep.dtype != bool or keep.shape != self.patient_id.shape:
            raise ValueError(f"ImageScores.subset: keep must be a ({len(self.patient_id)},) bool array, got "
                             f"{keep.dtype} {keep.shape}")  # fmt: skip

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[keep]

        return ImageScores(
            self.patient_id[keep], self.truth_pixels[keep], self.dice[keep], self.jaccard[keep],
            pick(self.tp), pick(self.fp), pick(self.fn), self.class_names, self.source,
        )  # fmt: skip

    def metric(self, name: str) -> np.ndarray:
        if name not in SCORE_METRICS:
            raise ValueError(f"metric must be one of {', '.join(SCORE_METRICS)}, got {name!r}")
        return self.dice if name == "dice" else self.jaccard


def image_scores(metrics: SegmentationMetrics, patient_id: Sequence[str] | np.ndarray) -> ImageScores:
    """Each image's Dice and Jaccard (mean over the foreground classes) from an accumulator's counts.

    An image whose class is empty in both prediction and truth scores 1 for that class, as in
    :class:`jnet.metrics.SegmentationMetrics`, so the means equal its ``mean_dice`` and
    ``mean_jaccard``. The per-class counts are kept too.
    """
    counts = tuple(c.numpy().astype(np.int64) for c in metrics.counts())  # (N, C) each
    tp, fp, fn = (c.astype(np.float64) for c in counts)
    dice = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 1.0).mean(axis=1)
    jaccard = np.where(tp + fp + fn > 0, tp / np.maximum(tp + fp + fn, 1), 1.0).mean(axis=1)
    truth = (counts[0] + counts[2]).sum(axis=1)
    pid = np.asarray(patient_id).astype(str)
    return ImageScores(pid, truth, dice, jaccard, *counts, class_names=list(metrics.class_names))


def checkpoint_scores(
    checkpoint: str | Path,
    loaded: dict | None = None,
    compiled_head: bool | None = None,
    postprocessing: str | None = None,
    **where: Any,
) -> ImageScores:
    """Score ``checkpoint`` image by image on the validation slices of its ``split.json``.

    ``loaded`` caches the data between calls; ``compiled_head`` and ``where`` (``data``, ``split``,
    ``data_options``, ``split_file``) are :func:`jnet.training.evaluate.checkpoint_data`'s;
    ``postprocessing`` is :func:`jnet.training.evaluate.evaluate_checkpoint`'s (default: none).
    """
    model, config, slices = checkpoint_data(checkpoint, loaded=loaded, compiled_head=compiled_head, **where)
    inputs = downsample(slices.images, model.image_size[0], config.downsample_mode)
    masks = torch.from_numpy(slices.masks)
    full, _ = evaluate_counts(
        model, inputs, masks, 64, slices.class_names, slices.patient_id, postprocessing, slices.slice_index
    )
    return image_scores(full, slices.patient_id)


def write_scores(scores: ImageScores, path: str | Path) -> None:
    """Write per-image scores as CSV (with the count columns when the counts are known), through a temporary name."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = scores.class_names if scores.has_counts else []
    writer.writerow([*SCORE_COLUMNS, *(f"{prefix}{name}" for name in names or [] for prefix in COUNT_PREFIXES)])
    if scores.tp is not None and scores.fp is not None and scores.fn is not None:
        # (N, C, 3) -> (N, 3C): tp, fp, fn of the first class, then of the next
        counts = np.stack([scores.tp, scores.fp, scores.fn], axis=2).reshape(len(scores.tp), -1)
    else:
        counts = np.zeros((len(scores.dice), 0), dtype=np.int64)
    rows = zip(scores.patient_id, scores.truth_pixels, scores.dice, scores.jaccard, counts, strict=True)
    for i, (pid, t, d, j, c) in enumerate(rows):
        writer.writerow([i, pid, int(t), repr(float(d)), repr(float(j)), *(int(x) for x in c)])
    write_text(path, buf.getvalue())


def _count_columns(path: Path, fieldnames: Sequence[str]) -> list[str]:
    """The class names of the ``tp_/fp_/fn_`` columns (none in an old file); a missing partner column is an error."""
    names = [c[len("tp_") :] for c in fieldnames if c.startswith("tp_")]
    others = {c for c in fieldnames if c.startswith(COUNT_PREFIXES[1:])}
    wanted = {f"{prefix}{name}" for name in names for prefix in COUNT_PREFIXES[1:]}
    missing, stray = sorted(wanted - others), sorted(others - wanted)
    if missing or stray:
        raise ValueError(f"{path}: count columns without their partners: {', '.join(missing + stray)}")
    return names


def read_scores(path: str | Path) -> ImageScores:
    """Read a ``val_scores.csv``, old (no count columns: counts ``None``) or new.

    A malformed file is an error that names it and the line.
    """
    path = Path(path)
    pids, truth, dice, jaccard, counts = [], [], [], [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = ("patient_id", "truth_pixels", "dice", "jaccard")
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (delete the file to rescore the run)")
        names = _count_columns(path, reader.fieldnames or [])
        for line, row in enumerate(reader, start=2):
            try:
                t, d, j = int(row["truth_pixels"]), float(row["dice"]), float(row["jaccard"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line}: truth_pixels must be an integer, dice and jaccard numbers") from None
            if not (0.0 <= d <= 1.0 and 0.0 <= j <= 1.0):
                raise ValueError(f"{path}:{line}: scores must lie in [0, 1], got dice={d}, jaccard={j}")
            if t < 0:
                raise ValueError(f"{path}:{line}: truth_pixels must not be negative, got {t}")
            if names:
                counts.append(_row_counts(row, names, t, f"{path}:{line}"))
            pids.append(row["patient_id"])
            truth.append(t)
            dice.append(d)
            jaccard.append(j)
    if not pids:
        raise ValueError(f"{path}: no images")
    tp = fp = fn = None
    if names:
        tp, fp, fn = np.array(counts, dtype=np.int64).transpose(2, 0, 1)  # each (N, C)
    return ImageScores(
        np.array(pids), np.array(truth, dtype=np.int64), np.array(dice), np.array(jaccard), tp, fp, fn,
        class_names=names or None, source=str(path),
    )  # fmt: skip


def _row_counts(row: dict[str, str], names: list[str], truth_pixels: int, where: str) -> list[list[int]]:
    """One row's ``[[tp, fp, fn], ...]`` per class, checked: non-negative integers, ``tp + fn`` summing to the truth."""
    try:
        counts = [[int(row[f"{prefix}{name}"]) for prefix in COUNT_PREFIXES] for name in names]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: the tp_, fp_ and fn_ counts must be integers") from None
    if min(min(c) for c in counts) < 0:
        raise ValueError(f"{where}: the tp_, fp_ and fn_ counts must not be negative")
    if sum(tp + fn for tp, _, fn in counts) != truth_pixels:
        raise ValueError(f"{where}: truth_pixels {truth_pixels} is not the sum of the tp_ and fn_ counts")
    return counts
