"""From slice arrays to network inputs: normalisation, low-resolution inputs, patient splits."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
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
        masks: ``(N, H, W)`` uint8 labels ``0..len(class_names)`` (checked: a larger label is a
            ValueError, so no label can go unnamed or uncounted).
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
        if self.masks.dtype != np.uint8:
            raise ValueError(f"masks must be uint8 labels, got dtype {self.masks.dtype} (see check_mask_values)")
        top = int(self.masks.max()) if self.masks.size else 0
        if top > len(self.class_names):
            raise ValueError(
                f"the masks hold label {top} but class_names names {len(self.class_names)} foreground "
                f"class(es) {list(self.class_names)}: labels must be 0..{len(self.class_names)}"
            )

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


MAX_LABEL_VALUE = 255
"""The largest label a mask may hold (masks are stored as uint8)."""


def _value_count(values: np.ndarray, bad: np.ndarray) -> tuple[float, int, int, int]:
    """The smallest offending value, how many pixels hold it, how many distinct offending values and pixels."""
    found, counts = np.unique(values[bad], return_counts=True)
    return float(found[0]), int(counts[0]), len(found), int(counts.sum())


def check_mask_values(masks: np.ndarray, where: str, array: str = "masks") -> np.ndarray:
    """``masks`` as uint8 labels, refusing every value a cast to uint8 would corrupt.

    Booleans and integer-valued floats are accepted; a non-finite, non-integral, negative or
    larger than :data:`MAX_LABEL_VALUE` value raises a one-line ValueError naming ``where`` (the
    file), ``array``, the offending value and how many pixels hold it (a cast would turn 0.5
    into 0, 256 into 0 and -1 into 255, silently).
    """
    m = np.asarray(masks)
    if m.dtype == np.uint8:
        return m
    if m.dtype == np.bool_:
        return m.astype(np.uint8)
    if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise ValueError(f"{where}: {array} has dtype {m.dtype}; masks must hold integer labels 0..{MAX_LABEL_VALUE}")
    problems = []
    if np.issubdtype(m.dtype, np.floating):
        problems.append((~np.isfinite(m), "is not a number"))
        with np.errstate(invalid="ignore"):
            problems.append((np.isfinite(m) & (m != np.rint(m)), "is not an integer label"))
    problems.append((m < 0, "is negative"))
    problems.append((m > MAX_LABEL_VALUE, f"is above {MAX_LABEL_VALUE}, the largest label"))
    for bad, what in problems:
        if bad.any():
            value, count, distinct, pixels = _value_count(m, bad)
            more = f" ({distinct} such values in {pixels} pixels)" if distinct > 1 else ""
            raise ValueError(
                f"{where}: {array}: value {value:g} in {count} pixel(s) {what}{more}; "
                f"masks must hold integer labels 0..{MAX_LABEL_VALUE}"
            )
    return m.astype(np.uint8)


def label_counts(masks: np.ndarray) -> dict[int, int]:
    """``{label: pixels}`` of the labels present in uint8 ``masks``."""
    counts = np.bincount(np.asarray(masks, dtype=np.uint8).ravel(), minlength=MAX_LABEL_VALUE + 1)
    return {int(k): int(counts[k]) for k in np.flatnonzero(counts)}


def _first_with(masks: np.ndarray, label: int) -> int:
    return int(np.argmax((masks == label).reshape(len(masks), -1).any(axis=1)))


def check_class_names(
    masks: np.ndarray,
    where: str,
    declared: Sequence[str] | None = None,
    describe: Callable[[int], str] | None = None,
) -> list[str]:
    """The class names of uint8 label ``masks``: ``declared`` checked, or inferred from the labels present.

    Args:
        masks: ``(N, H, W)`` uint8 labels (see :func:`check_mask_values`).
        where: the source, for messages.
        declared: the names of the foreground labels ``1..K``; a label above ``K`` is refused.
            ``None``: ``K`` is the largest label present (``["foreground"]`` when it is 0 or 1,
            else ``class_1 .. class_K``), and every label ``1..K`` must be present.
        describe: slice index -> what to call that slice (e.g. its file), for "first in ...".

    Raises:
        ValueError: one line with the unexpected or missing labels, the pixel count of every
            label present, and the first slice holding the first unexpected label.
    """
    if isinstance(declared, str):  # one name, not a sequence of characters
        declared = [declared]
    counts = label_counts(masks)
    shown = ", ".join(f"{k}: {v}" for k, v in counts.items())
    name = describe or (lambda i: f"slice {i}")
    top = max(counts, default=0)
    if declared is not None:
        names = [str(n) for n in declared]
        if not names or len(set(names)) != len(names) or len(names) > MAX_LABEL_VALUE:
            raise ValueError(f"{where}: class_names must be 1 to {MAX_LABEL_VALUE} distinct names, got {names}")
        unexpected = [k for k in counts if k > len(names)]
        if unexpected:
            raise ValueError(
                f"{where}: label(s) {unexpected} beyond the {len(names)} declared class(es) {names}, first in "
                f"{name(_first_with(masks, unexpected[0]))}; pixels per label: {shown}"
            )
        return names
    if top <= 1:
        return ["foreground"]
    missing = [k for k in range(1, top + 1) if k not in counts]
    if missing:
        hint = " (a 0/255 binary mask? store it as 0/1)" if set(counts) == {0, MAX_LABEL_VALUE} else ""
        raise ValueError(
            f"{where}: the labels are not 0..K: label {top} is present (first in {name(_first_with(masks, top))}) "
            f"but {_ranges(missing)} are not{hint}; pixels per label: {shown}; declare class_names to say which "
            "classes there are"
        )
    return [f"class_{k}" for k in range(1, top + 1)]


def _ranges(values: list[int]) -> str:
    """``[2, 3, 4, 6]`` -> ``"labels 2-4, 6"``."""
    parts: list[str] = []
    start = prev = values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ("label " if len(values) == 1 else "labels ") + ", ".join(parts)


def check_constant_images(
    images: np.ndarray,
    masks: np.ndarray,
    patient_id: np.ndarray,
    where: str,
    describe: Callable[[int], str] | None = None,
) -> None:
    """Refuse constant 2D images, as the NIfTI readers refuse constant volumes.

    Refused: a slice that is constant in a channel while its mask holds foreground (nothing in
    the image can show that foreground); a patient of two or more slices that are all constant
    in a channel (a blank volume, which a NIfTI reader refuses too); a source whose images are
    all constant in a channel. A blank slice with an empty mask, such as the first slice of a
    scan or a blank single image among others, is kept (z-scored to 0).

    Args:
        images: ``(N, H, W)`` or ``(N, C, H, W)``, any numeric dtype, before normalisation.
        masks: ``(N, H, W)`` labels.
        patient_id: ``(N,)``.
        where: the source, for messages.
        describe: slice index -> what to call that slice (e.g. its file).
    """
    x = np.asarray(images)
    x = x[:, None] if x.ndim == 3 else x
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    if flat.shape[-1] == 0:
        return
    constant = flat.max(axis=-1) == flat.min(axis=-1)  # (N, C)
    if not constant.any():
        return
    name = describe or (lambda i: f"slice {i} (patient {patient_id[i]})")
    foreground = np.asarray(masks).reshape(len(masks), -1).astype(bool).sum(axis=1)
    bad = np.flatnonzero(constant.any(axis=1) & (foreground > 0))
    if bad.size:
        i = int(bad[0])
        c = int(np.argmax(constant[i]))
        raise ValueError(
            f"{where}: images: {name(i)} is constant (every pixel of channel {c} is {float(flat[i, c, 0]):g}) "
            f"but its mask has {int(foreground[i])} foreground pixels ({bad.size} such slice(s))"
        )
    patients, inverse = np.unique(np.asarray(patient_id), return_inverse=True)
    per_patient = np.bincount(inverse, minlength=len(patients))
    for c in range(constant.shape[1]):
        if constant[:, c].all():
            raise ValueError(
                f"{where}: images: every image is constant in channel {c} ({len(constant)} slice(s), the first "
                f"{name(0)} with every pixel {float(flat[0, c, 0]):g}), cannot normalise"
            )
        blank_count = np.bincount(inverse, weights=constant[:, c], minlength=len(patients))
        blank = np.flatnonzero((blank_count == per_patient) & (per_patient > 1))
        if blank.size:
            p = int(blank[0])
            first = int(np.argmax(inverse == p))
            raise ValueError(
                f"{where}: images: every slice of patient {patients[p]} is constant in channel {c} "
                f"({per_patient[p]} slice(s), first {name(first)}: every pixel {float(flat[first, c, 0]):g}), "
                f"cannot normalise ({blank.size} such patient(s))"
            )


def downsample(images: torch.Tensor | np.ndarray, size: int, mode: str = "area") -> torch.Tensor:
    """The network input: full-resolution images ``(N, C, H, W)`` resized to ``size x size``.

    ``mode="area"`` (default) averages each block, an anti-aliased down-sampling;
    ``"bilinear"`` samples like OpenCV's ``INTER_LINEAR`` without anti-aliasing (the paper's).
    The same function as a model's own down-sampling (:func:`jnet.resize.downsample_image`).
    """
    check_option("downsample mode", mode, DOWNSAMPLE_MODES)
    return downsample_image(torch.as_tensor(images, dtype=torch.float32), (size, size), mode)


def load_npz(path: str | Path, class_names: Sequence[str] | None = None) -> SliceData:
    """Read a slice archive: ``images`` (N,H,W) or (N,C,H,W), ``masks`` (N,H,W), ``patient_id`` (N,).

    Optional arrays: ``slice_index`` (N,) and ``class_names`` (K,), the names of the labels
    ``1..K``. Every mask value must be an integer label ``0..255`` (:func:`check_mask_values`);
    the labels must fit the declared classes (``class_names``, else the archive's), and without
    a declaration ``K`` is the largest label present, every label up to it present
    (:func:`check_class_names`). Constant images are refused as :func:`check_constant_images`
    says. Each refusal is a one-line ValueError naming the file.
    """
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
        try:
            arrays = {k: archive[k] for k in ("images", "masks", "patient_id", "slice_index", "class_names")
                      if k in archive.files}  # fmt: skip
        except ValueError as err:  # object arrays need pickle, which is never allowed
            raise ValueError(f"{path}: {err}") from err
    images, masks, pid = arrays["images"], arrays["masks"], arrays["patient_id"]
    if not (len(images) == len(masks) == len(pid)):
        raise ValueError(f"{path}: images, masks and patient_id have {len(images)}, {len(masks)}, {len(pid)} entries")
    if len(images) == 0:
        raise ValueError(f"{path}: the archive holds no slices")
    if images.ndim not in (3, 4) or masks.shape != (len(images), *images.shape[-2:]):
        raise ValueError(
            f"{path}: images {images.shape} and masks {masks.shape}: expected (N, [C,] H, W) and (N, H, W)"
        )
    index = arrays.get("slice_index")
    if index is not None and index.shape != (len(images),):
        raise ValueError(f"{path}: slice_index has shape {index.shape}, expected ({len(images)},)")
    if class_names is None and "class_names" in arrays:
        class_names = [str(c) for c in np.atleast_1d(arrays["class_names"]).tolist()]
    masks = check_mask_values(masks, str(path))
    names = check_class_names(masks, str(path), class_names, lambda i: f"slice {i} (patient {pid[i]})")
    check_constant_images(images, masks, pid, str(path))
    try:
        return SliceData(
            normalize_slices(images), masks, pid.astype(str), None if index is None else index.astype(np.int64), names
        )
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
