"""Per-image validation scores: what ``val_scores.csv`` holds, so runs can be compared in pairs.

Every training run writes ``val_scores.csv`` (:data:`SCORES_FILE`) beside its
``metrics.json``: one row per validation slice, in the data's order, with columns
``image, patient_id, truth_pixels, dice, jaccard`` (``truth_pixels`` counts the ground
truth's foreground pixels; the scores are means over the foreground classes, scored at full
resolution by the best checkpoint). Their means are the run's best ``mean_dice`` and
``mean_jaccard``. :mod:`jnet.study.compare` pairs two runs' files slice by slice.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jnet.data.prepare import downsample
from jnet.io import write_text
from jnet.metrics import SegmentationMetrics
from jnet.training.evaluate import checkpoint_data, evaluate_counts

SCORES_FILE = "val_scores.csv"
SCORE_METRICS = ("dice", "jaccard")


@dataclass
class ImageScores:
    """Per-image scores on a run's validation slices, in the data's slice order."""

    patient_id: np.ndarray  # (N,) str
    truth_pixels: np.ndarray  # (N,) int64, foreground pixels of the ground truth
    dice: np.ndarray  # (N,) float64, mean over the foreground classes
    jaccard: np.ndarray  # (N,) float64

    def __post_init__(self) -> None:
        n = len(self.patient_id)
        if not len(self.truth_pixels) == len(self.dice) == len(self.jaccard) == n:
            raise ValueError(
                f"ImageScores: {n} patient ids, {len(self.truth_pixels)} truth sizes, {len(self.dice)} Dice "
                f"and {len(self.jaccard)} Jaccard scores"
            )

    def metric(self, name: str) -> np.ndarray:
        if name not in SCORE_METRICS:
            raise ValueError(f"metric must be one of {', '.join(SCORE_METRICS)}, got {name!r}")
        return self.dice if name == "dice" else self.jaccard


def image_scores(metrics: SegmentationMetrics, patient_id: Sequence[str] | np.ndarray) -> ImageScores:
    """Each image's Dice and Jaccard (mean over the foreground classes) from an accumulator's counts.

    An image whose class is empty in both prediction and truth scores 1 for that class, as in
    :class:`jnet.metrics.SegmentationMetrics`, so the means equal its ``mean_dice`` and
    ``mean_jaccard``.
    """
    tp, fp, fn = (c.numpy().astype(np.float64) for c in metrics.counts())  # (N, C) each
    dice = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 1.0).mean(axis=1)
    jaccard = np.where(tp + fp + fn > 0, tp / np.maximum(tp + fp + fn, 1), 1.0).mean(axis=1)
    truth = (tp + fn).sum(axis=1).astype(np.int64)
    return ImageScores(np.asarray(patient_id).astype(str), truth, dice, jaccard)


def checkpoint_scores(
    checkpoint: str | Path, loaded: dict | None = None, compiled_head: bool | None = None, **where: Any
) -> ImageScores:
    """Score ``checkpoint`` image by image on the validation slices of its ``split.json``.

    ``loaded`` caches the data between calls; ``compiled_head`` and ``where`` (``data``, ``split``,
    ``data_options``, ``split_file``) are :func:`jnet.training.evaluate.checkpoint_data`'s.
    """
    model, config, slices = checkpoint_data(checkpoint, loaded=loaded, compiled_head=compiled_head, **where)
    inputs = downsample(slices.images, model.image_size[0], config.downsample_mode)
    full, _ = evaluate_counts(model, inputs, torch.from_numpy(slices.masks), 64, slices.class_names)
    return image_scores(full, slices.patient_id)


def write_scores(scores: ImageScores, path: str | Path) -> None:
    """Write per-image scores as CSV, through a temporary name."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "patient_id", "truth_pixels", "dice", "jaccard"])
    rows = zip(scores.patient_id, scores.truth_pixels, scores.dice, scores.jaccard, strict=True)
    for i, (pid, t, d, j) in enumerate(rows):
        writer.writerow([i, pid, int(t), repr(float(d)), repr(float(j))])
    write_text(path, buf.getvalue())


def read_scores(path: str | Path) -> ImageScores:
    """Read a ``val_scores.csv``; a malformed file is an error that names it and the line."""
    path = Path(path)
    pids, truth, dice, jaccard = [], [], [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = ("patient_id", "truth_pixels", "dice", "jaccard")
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (delete the file to rescore the run)")
        for line, row in enumerate(reader, start=2):
            try:
                t, d, j = int(row["truth_pixels"]), float(row["dice"]), float(row["jaccard"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line}: truth_pixels must be an integer, dice and jaccard numbers") from None
            if not (0.0 <= d <= 1.0 and 0.0 <= j <= 1.0):
                raise ValueError(f"{path}:{line}: scores must lie in [0, 1], got dice={d}, jaccard={j}")
            if t < 0:
                raise ValueError(f"{path}:{line}: truth_pixels must not be negative, got {t}")
            pids.append(row["patient_id"])
            truth.append(t)
            dice.append(d)
            jaccard.append(j)
    if not pids:
        raise ValueError(f"{path}: no images")
    return ImageScores(np.array(pids), np.array(truth, dtype=np.int64), np.array(dice), np.array(jaccard))
