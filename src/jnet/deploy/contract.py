"""The device's contract: what happens to a raw image before an exported graph and to its output after.

:func:`prediction_settings` decides, from a checkpoint's training config, how ``jnet predict``
prepares a file (normalisation, resize rule, modalities), and :func:`preprocessing` /
:func:`postprocessing` describe the same steps as plain JSON-able dicts, which
:func:`jnet.deploy.export.export_onnx` writes into the ONNX metadata (``jnet.preprocessing``,
``jnet.postprocessing``). One source for both, so an export says exactly what ``jnet predict``
does; ``src/jnet_runner`` (numpy, onnxruntime, nibabel; no torch) reads the metadata and
reproduces ``jnet predict`` voxel for voxel. Every key is documented in
``docs/performance.md`` (section "The device's contract").
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jnet.data.brats import BRATS_MODALITIES, REGION_NAMES, SUBREGION_NAMES
from jnet.data.sources import SYNTHETIC_CLASS_NAMES, resolve_source, source_options
from jnet.model import JNet

__all__ = [
    "CONTRACT_FORMAT",
    "checkpoint_class_names",
    "data_kind",
    "postprocessing",
    "prediction_settings",
    "preprocessing",
]

CONTRACT_FORMAT = 1
"""Version of the ``jnet.preprocessing`` / ``jnet.postprocessing`` layout."""

VOLUME_KINDS = ("msd", "brats")
PERCENTILES = (0.5, 99.5)  # as jnet.data.nifti's percentile normalisation


def data_kind(spec: str | os.PathLike | None) -> str | None:
    """The source kind (:data:`jnet.data.sources.SOURCE_KINDS`) a training spec names, or ``None`` if unknown.

    The spec is resolved when it exists on this machine; otherwise ``synthetic`` and ``*.npz``
    are told by name and anything else is unknown.
    """
    if not spec:
        return None
    text = str(spec).strip()
    if text.lower() == "synthetic":
        return "synthetic"
    try:
        return resolve_source(spec).kind
    except ValueError:
        return "npz" if text.lower().endswith(".npz") else None


def prediction_settings(train_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """How ``jnet predict`` prepares files for a model trained with ``train_config``.

    Returns:
        ``kind`` (:func:`data_kind`), ``normalize`` (``"zscore"`` or ``"percentile"`` per volume
        for NIfTI-trained models, the reader's option; ``"slice"`` for 2D-trained ones; a
        spec that cannot be resolved and is not ``.npz`` is taken for volumes), ``resize``
        (the reader's option, else its default: ``"pad_crop"`` for BraTS, ``"resize"``
        otherwise) and ``modalities`` (an MSD reader's indices on a 4D volume's last axis, else
        ``None``: all, in the volume's order).
    """
    trained = dict(train_config or {})
    spec = trained.get("data")
    options = dict(trained.get("data_options") or {})
    kind = data_kind(spec)
    volume = kind in VOLUME_KINDS or (kind is None and bool(spec))
    default_resize = source_options(kind)["resize"] if kind in VOLUME_KINDS else "resize"
    modalities = options.get("modalities") if kind in ("msd", None) else None
    if modalities is not None and not all(isinstance(m, int) and not isinstance(m, bool) for m in modalities):
        modalities = None  # names (a BraTS reader's): the channels are named in the contract instead
    return {
        "kind": kind,
        "normalize": options.get("normalize", "zscore") if volume else "slice",
        "resize": options.get("resize", default_resize),
        "modalities": None if modalities is None else [int(m) for m in modalities],
    }


def checkpoint_class_names(ckpt: Mapping[str, Any], num_classes: int) -> list[str] | None:
    """The foreground class names a training run scored under (from its per-class metrics), or ``None``.

    A run's checkpoints keep its validation metrics (``metrics`` or ``final``), whose per-class
    entries are keyed by the data's class names in label order; ``K`` logit channels have
    ``max(1, K - 1)`` foreground classes.
    """
    want = 1 if num_classes == 1 else num_classes - 1
    for key in ("metrics", "final"):
        scores = ckpt.get(key)
        per_class = scores.get("dice") if isinstance(scores, Mapping) else None
        if isinstance(per_class, Mapping) and len(per_class) == want:
            return [str(name) for name in per_class]
    return None


def _class_names(
    model: JNet, kind: str | None, class_names: Sequence[str] | None, options: Mapping[str, Any]
) -> list[str]:
    k = model.num_classes
    want = 1 if k == 1 else k - 1
    if class_names is not None and len(class_names) == want:
        return [str(n) for n in class_names]
    if kind == "synthetic" and want <= len(SYNTHETIC_CLASS_NAMES):
        return list(SYNTHETIC_CLASS_NAMES[:want])
    if kind == "brats" and want == 3:
        return list(REGION_NAMES if options.get("regions") else SUBREGION_NAMES)
    return ["foreground"] if want == 1 else [f"class_{i}" for i in range(1, want + 1)]


def _msd_modality_names(spec: str | os.PathLike) -> dict[int, str]:
    """``dataset.json``'s ``modality`` table when the task folder is on this machine (else empty)."""
    try:
        table = json.loads((Path(spec) / "dataset.json").read_text()).get("modality") or {}
        return {int(k): str(v) for k, v in table.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _channels(model: JNet, kind: str | None, settings: Mapping[str, Any], trained: Mapping[str, Any]) -> list[dict]:
    """One entry per graph input channel: its name and where it comes from."""
    c = int(model.config["in_channels"])
    options = dict(trained.get("data_options") or {})
    if kind == "brats":
        chosen = options.get("modalities") or BRATS_MODALITIES
        names = [chosen] if isinstance(chosen, str) else [str(m) for m in chosen]
        return [{"index": i, "name": n, "modality": i} for i, n in enumerate(names[:c])]
    if kind == "msd" or (kind is None and trained.get("data")):
        picked = settings["modalities"] if settings["modalities"] is not None else list(range(c))
        known = _msd_modality_names(trained["data"]) if kind == "msd" else {}
        return [{"index": i, "name": known.get(m, f"modality {m}"), "modality": m} for i, m in enumerate(picked)]
    name = {"images": "grey", "synthetic": "phantom MRI"}.get(kind or "")
    return [{"index": i, "name": name or f"channel {i}", "modality": None} for i in range(c)]


def _normalization(mode: str) -> dict[str, Any]:
    if mode == "slice":
        return {
            "mode": "slice",
            "scope": "slice",
            "voxels": "all",
            "formula": "(x - mean) / std per slice and channel, float32, population std; a constant slice becomes 0",
        }
    entry: dict[str, Any] = {"mode": mode, "scope": "volume", "voxels": "nonzero", "zero_stays_zero": True}
    if mode == "zscore":
        entry["formula"] = (
            "(x - mean) / std over the non-zero voxels of one channel of one volume (float64 statistics, "
            "population std, float32 result); zero voxels stay 0; a constant volume is an error"
        )
    else:
        entry["percentiles"] = list(PERCENTILES)
        entry["formula"] = (
            "clip to the 0.5 and 99.5 percentiles lo, hi (linear interpolation) of the non-zero voxels of one "
            "channel of one volume, then (x - lo) / (hi - lo); zero voxels stay 0"
        )
    return entry


def preprocessing(
    model: JNet,
    train_config: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
) -> dict[str, Any]:
    """What a device must do to a raw image before the graph (``jnet.preprocessing``); keys in the module docs.

    Args:
        model: the exported model (its sizes, channels, down-sampling and whether the graph
            takes the full-resolution image).
        train_config: the checkpoint's training config (``None``: what ``jnet predict`` does
            without one: per-slice z-score, stretched to size).
        input_shape: the graph's example input ``(B, C, h, w)`` when not the model's own.
    """
    trained = dict(train_config or {})
    settings = prediction_settings(trained)
    kind = settings["kind"]
    size = [int(s) for s in model.output_size]
    order = ["slice", "normalise"] if settings["normalize"] == "slice" else ["normalise", "slice"]
    shape = list(input_shape) if input_shape is not None else [1, int(model.config["in_channels"]), *model.image_size]
    return {
        "format": CONTRACT_FORMAT,
        "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "shape": ["batch", *shape[1:]]},
        "channels": _channels(model, kind, settings, trained),
        "modalities": settings["modalities"],
        "normalization": _normalization(settings["normalize"]),
        "orientation": {
            "reorient": False,
            "slice_axis": 2,
            "slice": "slice z, channel c = volume[:, :, z, c].T: rows follow voxel axis j, columns axis i; no flip",
            "image_2d": "rows and columns as stored; colour read as grey (0.299 R + 0.587 G + 0.114 B, float32)",
        },
        "fit": {
            "mode": settings["resize"],
            "size": size,
            "image": "bilinear, align_corners=false, antialiased (triangle filter widened by the scale when "
            "shrinking), separable; or centre zero-padding / cropping, the extra pixel of an odd difference after",
        },
        "downsample": {
            "in_graph": bool(model.full_resolution_input),
            "mode": model.downsample_mode,
            "from": size,
            "to": [int(s) for s in model.input_size],
        },
        "order": ["read", "select modalities", *order, "fit", "downsample", "graph"],
        "source": {"data": trained.get("data"), "kind": kind, "data_options": dict(trained.get("data_options") or {})},
    }


def postprocessing(
    model: JNet,
    train_config: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """What a device must do with the graph's output (``jnet.postprocessing``); keys in the module docs."""
    kind = prediction_settings(train_config)["kind"]
    k = int(model.num_classes)
    names = _class_names(model, kind, class_names, dict((train_config or {}).get("data_options") or {}))
    size = [int(s) for s in model.output_size]
    out = [int(s) for s in model.scales[-1]]
    return {
        "format": CONTRACT_FORMAT,
        "output": {"name": "logits", "layout": "NCHW", "dtype": "float32", "shape": ["batch", k, *out]},
        "num_classes": k,
        "upsample_logits": None if out == size else {"mode": "bilinear", "align_corners": False, "size": size},
        "decision": "threshold" if k == 1 else "argmax",
        "threshold": 0.0 if k == 1 else None,
        "threshold_rule": "label 1 where logit > threshold (sigmoid > 0.5)" if k == 1 else None,
        "argmax_ties": None if k == 1 else "lowest class index",
        "class_names": names,
        "labels": [{"value": 0, "name": "background"}, *({"value": i, "name": n} for i, n in enumerate(names, 1))],
        "back_to_input": {
            "resize": "nearest: input pixel i reads model pixel min(floor((i + 0.5) * S / n), S - 1) per axis",
            "pad_crop": "the inverse centre crop / pad; pixels outside the model's window are 0",
        },
        "nifti": {"dtype": "uint8", "layout": "the input's (X, Y, Z), affine and header", "values": "labels"},
        "png": {"dtype": "uint8", "scale": 255 if k == 1 else 1},
    }
