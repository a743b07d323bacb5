"""Scoring a model at the masks' full resolution: means, per-image scores, checkpoints.

:func:`evaluate` gives the mean Dice and Jaccard at full resolution (and, labelled, at the
input resolution, the way the paper appears to score its baselines); :func:`image_scores`
gives each image's scores, which a run keeps in ``val_scores.csv`` (:data:`SCORES_FILE`) so
that two runs can later be compared on the same slices without their checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jnet._options import check_option
from jnet.data.prepare import SliceData, downsample
from jnet.io import read_json
from jnet.metrics import (
    POSTPROCESSING,
    SegmentationMetrics,
    largest_component_per_patient,
    logits_to_labels,
    upsample_labels,
    upsample_logits,
)
from jnet.model import JNet
from jnet.training.checkpoint import load_checkpoint
from jnet.training.config import TrainConfig
from jnet.training.splits import load_training_data


@torch.no_grad()
def evaluate(
    model: JNet,
    inputs: torch.Tensor,
    masks: torch.Tensor,
    batch_size: int = 64,
    class_names: list[str] | None = None,
    patient_id: np.ndarray | None = None,
    postprocessing: str | None = None,
    slice_index: np.ndarray | None = None,
) -> dict[str, Any]:
    """Dice and Jaccard at the masks' full resolution, and (labelled) at the input resolution.

    A prediction smaller than the masks (the ``none`` head) is up-sampled as bilinear logits.
    The input-resolution score compares the base prediction ``y0`` with nearest-down-sampled
    masks: the way the paper appears to score its baselines.

    Args:
        model: the model; put in eval mode here.
        inputs: ``(N, C, h, w)`` network inputs.
        masks: ``(N, H, W)`` full-resolution labels.
        batch_size: images per forward pass.
        class_names: names of the foreground classes, for the per-class entries.
        patient_id: ``(N,)`` each image's patient: adds the per-volume scores (``volume_dice``,
            ``mean_volume_dice``, ``n_volumes``; see :func:`jnet.metrics.volume_scores`).
        postprocessing: ``None`` or one of :data:`jnet.metrics.POSTPROCESSING` (needs
            ``patient_id``), applied to the full-resolution predictions before every
            full-resolution score; the result names it as ``postprocessing``.
        slice_index: ``(N,)`` each slice's position in its volume, for the post-processing.
    """
    full, low = evaluate_counts(model, inputs, masks, batch_size, class_names, patient_id, postprocessing, slice_index)
    result = metrics_from_counts(full, low, tuple(masks.shape[-2:]), model.input_size, patient_id)
    return {**result, "postprocessing": postprocessing}


@torch.no_grad()
def evaluate_counts(
    model: JNet,
    inputs: torch.Tensor,
    masks: torch.Tensor,
    batch_size: int,
    class_names: list[str] | None,
    patient_id: np.ndarray | None = None,
    postprocessing: str | None = None,
    slice_index: np.ndarray | None = None,
) -> tuple[SegmentationMetrics, SegmentationMetrics]:
    """Per-image counts at full resolution and at input resolution (the arguments are :func:`evaluate`'s).

    With ``postprocessing``, the full-resolution predictions of every image are kept (one byte
    a pixel), post-processed one patient volume at a time, then counted; the input-resolution
    counts are always those of the raw base prediction.
    """
    if postprocessing is not None:
        check_option("postprocessing", postprocessing, POSTPROCESSING)
        if patient_id is None or len(patient_id) != len(inputs):
            raise ValueError(f"postprocessing {postprocessing!r} needs the patient id of every image")
    model.eval()
    device = next(model.parameters()).device
    k = model.num_classes
    names = class_names if class_names is not None and len(class_names) == (1 if k == 1 else k - 1) else None
    full, low = SegmentationMetrics(k, names), SegmentationMetrics(k, names)
    size = tuple(masks.shape[-2:])
    kept: list[torch.Tensor] = []  # the full-resolution predictions, for the post-processing
    return_all, model.return_all = model.return_all, True
    try:
        for i in range(0, len(inputs), batch_size):
            x, y = inputs[i : i + batch_size].to(device), masks[i : i + batch_size].long().to(device)
            outs = model(x)  # [(B, K, h, w), ..., (B, K, S, S)]
            final = outs[-1].float()
            if tuple(final.shape[-2:]) != size:
                final = upsample_logits(final, size)
            if postprocessing is None:
                full.update(logits_to_labels(final), y)
            else:
                kept.append(logits_to_labels(final).to("cpu", torch.uint8 if k <= 256 else torch.int64))
            low.update(logits_to_labels(outs[0].float()), upsample_labels(y, tuple(outs[0].shape[-2:])))
    finally:
        model.return_all = return_all
    if kept:
        labels = largest_component_per_patient(torch.cat(kept).numpy(), np.asarray(patient_id), k, slice_index)
        for i in range(0, len(labels), batch_size):
            full.update(torch.from_numpy(labels[i : i + batch_size]).long(), masks[i : i + batch_size].long())
    return full, low


def metrics_from_counts(
    full: SegmentationMetrics,
    low: SegmentationMetrics,
    size: tuple[int, ...],
    input_size: tuple[int, int],
    patient_id: np.ndarray | None = None,
) -> dict[str, Any]:
    """The metrics of :func:`evaluate` from its counts; the per-volume ones when ``patient_id`` is given."""
    result = full.compute()
    if patient_id is not None:
        result.update(full.volume_scores(patient_id).as_dict())
    result["resolution"] = list(size)
    low_res = low.compute()
    result["input_resolution"] = {
        "resolution": list(input_size),
        "mean_dice": low_res["mean_dice"],
        "mean_jaccard": low_res["mean_jaccard"],
        "dice": low_res["dice"],
        "jaccard": low_res["jaccard"],
        "note": "base prediction against nearest-down-sampled ground truth (paper-style), not comparable",
    }
    return result


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "val",
    data_options: dict[str, Any] | None = None,
    split_file: str | Path | None = None,
    compiled_head: bool | None = None,
    postprocessing: str | None = None,
) -> dict[str, Any]:
    """Score a checkpoint at full resolution (and, labelled, at input resolution).

    Args:
        checkpoint: a ``checkpoint_*.pt``.
        data: a data spec; default: the one the checkpoint was trained on.
        split: ``"val"`` (the validation patients of the run's ``split.json``, next to the
            checkpoint or given as ``split_file``) or ``"all"``.
        data_options: reader options; default: the training run's.
        split_file: the split to use for ``"val"``.
        compiled_head: run a J-Net head in its compiled form (``False``: the cascade; ``None``:
            the checkpoint's setting, compiled unless it was trained with ``--cascade-head``).
        postprocessing: ``None`` (default) or ``"largest_component_3d"``: keep only the largest
            3D connected component of each class in each patient's predicted volume (see
            :func:`jnet.metrics.largest_component_per_patient`) before scoring.

    Returns:
        The metrics (``dice``, ``jaccard`` per class, ``mean_dice``, ``mean_jaccard``,
        global variants, ``resolution``, ``n_images``, ``input_resolution``), the per-patient
        3D scores (``volume_dice`` per class, ``mean_volume_dice``, ``n_volumes``) and
        ``postprocessing``, plus ``checkpoint``, ``data`` and ``split``.
    """
    model, trained, slices = checkpoint_data(
        checkpoint, data, split, data_options, split_file, compiled_head=compiled_head
    )
    inputs = downsample(slices.images, model.image_size[0], trained.downsample_mode)
    result = evaluate(
        model, inputs, torch.from_numpy(slices.masks), class_names=slices.class_names,
        patient_id=slices.patient_id, postprocessing=postprocessing, slice_index=slices.slice_index,
    )  # fmt: skip
    return {**result, "checkpoint": str(checkpoint), "data": trained.data, "split": split}


def checkpoint_data(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "val",
    data_options: dict[str, Any] | None = None,
    split_file: str | Path | None = None,
    loaded: dict[tuple[str, str], SliceData] | None = None,
    compiled_head: bool | None = None,
) -> tuple[JNet, TrainConfig, SliceData]:
    """A checkpoint's model (eval mode), its training config and the slices to score it on.

    The arguments are those of :func:`evaluate_checkpoint`; the returned config's ``data`` and
    ``data_options`` are the ones used. ``loaded`` caches the data between calls (keyed by
    data spec and reader options), for scoring many checkpoints of one study.
    """
    check_option("split", split, ("val", "all"))
    model, ckpt = load_checkpoint(checkpoint, compiled_head=compiled_head)
    trained = TrainConfig.from_dict(ckpt.get("train_config", {}), str(checkpoint))
    spec = data or trained.data
    options = dict(trained.data_options if data_options is None else data_options)
    config = dataclasses.replace(trained, data=spec, data_options=options, cache_dir=None)
    key = (spec, json.dumps({"size": config.output_size, **options}, sort_keys=True, default=str))
    if loaded is not None and key in loaded:
        slices = loaded[key]
    else:
        slices = load_training_data(config)
        if loaded is not None:
            loaded[key] = slices
    if split == "val":
        path = Path(split_file) if split_file else Path(checkpoint).with_name("split.json")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no split.json for --split val (give --split all or a split file)")
        split_values = read_json(path, "split file")
        if not isinstance(split_values, dict) or not isinstance(split_values.get("val"), list):
            raise ValueError(f"{path}: a split file needs a 'val' list of patient ids")
        chosen = split_values["val"]
        slices = slices.subset(np.isin(slices.patient_id, chosen))
        if len(slices) == 0:
            raise ValueError(f"none of the validation patients of {path} are in {spec}")
    if slices.images.shape[1] != model.config["in_channels"]:
        raise ValueError(
            f"{spec} has {slices.images.shape[1]} channel(s) but the model expects {model.config['in_channels']}"
        )
    return model, config, slices


def format_evaluation(result: dict[str, Any], split: str | None = None) -> str:
    """:func:`evaluate_checkpoint`'s (or :func:`evaluate`'s) result as text, per class and mean.

    ``split`` labels the images (default: the result's ``split``, when it has one).
    """
    split = split or result.get("split")
    low = result["input_resolution"]
    label = f" ({split})" if split else ""
    lines = [f"{result['n_images']} images{label} at {result['resolution'][0]}x{result['resolution'][1]}:"]
    for name in result["dice"]:
        lines.append(f"  {name:<16} Dice {result['dice'][name]:.4f}  Jaccard {result['jaccard'][name]:.4f}")
    lines.append(
        f"  mean             Dice {result['mean_dice']:.4f}  Jaccard {result['mean_jaccard']:.4f}  "
        f"(global: {result['mean_dice_global']:.4f} / {result['mean_jaccard_global']:.4f})"
    )
    if "mean_volume_dice" in result:
        per_class = "" if len(result["volume_dice"]) < 2 else "  (" + ", ".join(
            f"{name} {value:.4f}" for name, value in result["volume_dice"].items()
        ) + ")"  # fmt: skip
        lines.append(
            f"  per patient (3D) Dice {result['mean_volume_dice']:.4f}, mean over {result['n_volumes']} "
            f"volume(s){per_class}"
        )
    if result.get("postprocessing"):
        lines.append(f"  post-processing: {result['postprocessing']} (full-resolution scores only)")
    lines.append(
        f"  at input resolution {low['resolution'][0]}x{low['resolution'][1]} against down-sampled truth "
        f"(paper-style, not comparable): Dice {low['mean_dice']:.4f}  Jaccard {low['mean_jaccard']:.4f}"
    )
    return "\n".join(lines)
