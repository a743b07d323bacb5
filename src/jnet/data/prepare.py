"""From slice arrays to network inputs: normalisation, low-resolution inputs, patient splits."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from jnet._options import check_option
from jnet.io import write_text
from jnet.resize import DOWNSAMPLE_MODES, downsample_image


@dataclass
class SliceData:
    """2D slices with their full-resolution masks.

    Attributes:
        images: ``(N, C, H, W)`` float32, normalised (see :func:`normalize_slices`).
        masks: ``(N, H, W)`` uint8 labels.
        patient_id: ``(N,)`` str; splits are made over these, never over slices.
        slice_index: ``(N,)`` int, the slice's position in its volume (0, 1, ... when unknown).
        class_names: names of the foreground labels ``1..``, in order.
    """

    images: np.ndarray
    masks: np.ndarray
    patient_id: np.ndarray
    slice_index: np.ndarray | None = None
    class_names: list[str] = field(default_factory=lambda: ["foreground"])

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.slice_index is None:
            self.slice_index = np.arange(n)
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {self.images.shape}")
        if self.masks.shape != (n, *self.images.shape[2:]):
            raise ValueError(f"masks must be (N, H, W) = {(n, *self.images.shape[2:])}, got {self.masks.shape}")
        if self.patient_id.shape != (n,):
            raise ValueError(f"patient_id must have one entry per slice ({n}), got shape {self.patient_id.shape}")
        if self.slice_index.shape != (n,):
            raise ValueError(f"slice_index must have one entry per slice ({n}), got shape {self.slice_index.shape}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> SliceData:
        """The slices at ``index`` (an integer or boolean array)."""
        return SliceData(
            self.images[index],
            self.masks[index],
            self.patient_id[index],
            self.slice_index[index],  # type: ignore[index]
            list(self.class_names),
        )


def normalize_slices(images: np.ndarray) -> np.ndarray:
    """Per-slice, per-channel z-score: ``(x - mean) / std`` over the slice; constant slices become 0.

    Args:
        images: ``(N, H, W)`` or ``(N, C, H, W)`` of any numeric dtype.

    Returns:
        ``(N, C, H, W)`` float32.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x).reshape(len(x), -1).all(axis=1))[0, 0])
        raise ValueError(f"slice {bad} contains NaN or infinite values")
    mean = x.mean(axis=(2, 3), keepdims=True)
    std = x.std(axis=(2, 3), keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def downsample(images: torch.Tensor | np.ndarray, size: int, mode: str = "area") -> torch.Tensor:
    """The network input: full-resolution images ``(N, C, H, W)`` resized to ``size x size``.

    ``mode="area"`` (default) averages each block, an anti-aliased down-sampling;
    ``"bilinear"`` samples like OpenCV's ``INTER_LINEAR`` without anti-aliasing (the paper's).
    The same function as a model's own down-sampling (:func:`jnet.resize.downsample_image`).
    """
    check_option("downsample mode", mode, DOWNSAMPLE_MODES)
    return downsample_image(torch.as_tensor(images, dtype=torch.float32), (size, size), mode)


def load_npz(path: str | Path) -> SliceData:
    """Read a slice archive with ``images`` (N,H,W) or (N,C,H,W), ``masks`` (N,H,W), ``patient_id`` (N,)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as err:  # zipfile / numpy errors: name the file
        raise ValueError(f"{path}: not a readable .npz archive ({err})") from err
    with archive:
        missing = [k for k in ("images", "masks", "patient_id") if k not in archive.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {', '.join(missing)} (has {', '.join(archive.files)})")
        images, masks, pid = archive["images"], archive["masks"], archive["patient_id"]
    if not (len(images) == len(masks) == len(pid)):
        raise ValueError(f"{path}: images, masks and patient_id have {len(images)}, {len(masks)}, {len(pid)} entries")
    if len(images) == 0:
        raise ValueError(f"{path}: the archive holds no slices")
    try:
        return SliceData(normalize_slices(images), masks.astype(np.uint8), pid.astype(str))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def patient_split(patient_id: np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> dict[str, list[str]]:
    """Split the distinct patients (never the slices) into train and validation, seeded.

    Returns:
        ``{"train": [...], "val": [...], "seed": seed, "val_fraction": val_fraction}`` with
        sorted patient ids; at least one patient lands on each side.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    patients = np.unique(np.asarray(patient_id).astype(str))
    if len(patients) < 2:
        raise ValueError(f"a patient split needs at least 2 patients, got {len(patients)}")
    order = np.random.default_rng(seed).permutation(len(patients))
    n_val = min(max(1, round(val_fraction * len(patients))), len(patients) - 1)
    val = sorted(patients[order[:n_val]].tolist())
    train = sorted(patients[order[n_val:]].tolist())
    return {"train": train, "val": val, "seed": seed, "val_fraction": val_fraction}


def save_split(split: dict, path: str | Path) -> None:
    """Write a split as JSON, atomically."""
    path = Path(path)
    write_text(path, json.dumps(split, indent=1))


def kfold_split(patient_id: np.ndarray, k: int, fold: int, seed: int = 0) -> dict:
    """Fold ``fold`` of a seeded ``k``-fold split of the distinct patients (never the slices).

    The patients are shuffled once with ``seed`` and cut into ``k`` folds of near-equal size
    (sizes differ by at most one); fold ``fold`` is the validation set and the others train,
    so over ``fold = 0..k-1`` every patient is validated exactly once.

    Returns:
        ``{"train": [...], "val": [...], "seed": seed, "k": k, "fold": fold}`` with sorted
        patient ids, the format of :func:`patient_split` (and :func:`save_split`).
    """
    for name, value in (("k", k), ("fold", fold), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    if not 0 <= fold < k:
        raise ValueError(f"fold must be in 0..{k - 1} for k={k}, got {fold}")
    patients = np.unique(np.asarray(patient_id).astype(str))
    if len(patients) < k:
        raise ValueError(f"a {k}-fold split needs at least {k} patients, got {len(patients)}")
    order = np.random.default_rng(seed).permutation(len(patients))
    folds = np.array_split(order, k)
    val = sorted(patients[folds[fold]].tolist())
    train = sorted(patients[np.concatenate([f for i, f in enumerate(folds) if i != fold])].tolist())
    return {"train": train, "val": val, "seed": int(seed), "k": int(k), "fold": int(fold)}
