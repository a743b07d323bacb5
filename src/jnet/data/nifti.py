"""Shared helpers for the NIfTI dataset readers: reading, slicing, normalising, resizing.

The readers (:func:`jnet.data.msd.load_msd`, :func:`jnet.data.brats.load_brats`) turn 3D
volumes into the 2D slices of a :class:`~jnet.data.prepare.SliceData`. Every step lives here
so that both readers follow the same conventions.

Orientation
-----------
Volumes are **not reoriented** (no use of the affine beyond checking that an image and its
label share the same grid). A volume is kept as stored, ``(X, Y, Z)`` = nibabel's voxel axes
``(i, j, k)``, and slices are cut along the third array axis ``k``. Each slice is transposed so
that it is laid out as ``(rows, cols) = (Y, X)``::

    slice[z][row, col] == volume[col, row, z]     # i.e. slice z is volume[:, :, z].T

No axis is flipped. For a volume stored close to RAS+ (``i`` towards the patient's right,
``j`` towards anterior), row 0 is the most posterior row, so the slice shown with row 0 at
the top (``plt.imshow``) has posterior up; flip the rows (``slice[::-1]``) for the usual
anterior-up radiological view. The orientation only matters for display: every image slice
and its mask are cut and transposed identically.

Normalisation (per volume, per channel)
---------------------------------------
Statistics are taken over the **non-zero voxels** of one channel of one volume (the zero
voxels are the background outside a skull-stripped head, or padding). Zero voxels stay
exactly 0 after normalisation, so the zero padding added later by ``"pad_crop"`` is the same
value as the background.

* ``"zscore"``: ``(x - mean) / std`` with ``mean`` and ``std`` of the non-zero voxels.
* ``"percentile"``: clip to the 0.5 and 99.5 percentiles ``lo, hi`` of the non-zero voxels,
  then ``(x - lo) / (hi - lo)``, in ``[0, 1]``.

A volume containing NaN or infinity, or whose non-zero voxels are constant (including an
all-zero volume), raises a ValueError naming the file.

Common size
-----------
:func:`fit_to_size` brings the ``H x W`` slices to ``size x size``: ``"pad_crop"`` centre-pads
with zeros and/or centre-crops each axis (BraTS 240 -> 256); ``"resize"`` stretches each axis
to ``size`` (the aspect ratio is not kept), bilinearly for images and by nearest neighbour for
label maps (never interpolating labels linearly).

nibabel is an optional dependency: ``pip install "jnet[nifti]"``.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from jnet._options import check_option
from jnet.data.prepare import SliceData

__all__ = [
    "AFFINE_ATOL",
    "NORMALIZE_MODES",
    "RESIZE_MODES",
    "add_reports",
    "case_to_slices",
    "check_same_grid",
    "concat_cases",
    "drop_empty_slices",
    "fit_to_size",
    "label_values",
    "log_drop_report",
    "normalize_volume",
    "read_volume",
    "volume_to_slices",
    "voxel_counts",
]

logger = logging.getLogger(__name__)

NORMALIZE_MODES = ("zscore", "percentile")
RESIZE_MODES = ("pad_crop", "resize")
AFFINE_ATOL = 1e-3
"""Largest absolute difference (in the affine's units, usually mm) between two affines that
still count as the same voxel grid."""

_PERCENTILES = (0.5, 99.5)


def _import_nibabel():
    try:
        import nibabel
    except ImportError as err:
        raise ImportError('reading NIfTI files needs nibabel: pip install "jnet[nifti]"') from err
    return nibabel


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_volume(path: str | Path, *, labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``.nii`` or ``.nii.gz`` file completely.

    nibabel reads lazily; here the whole data block is read at once, so a damaged file fails
    now, with the file's path, instead of later inside a training loop.

    Args:
        path: the file.
        labels: read a label map: the values must be integers (they may be stored as floats,
            as some BraTS segmentations are) and come back as ``int32``. Otherwise the
            values come back as ``float32`` (with the header's scaling applied).

    Returns:
        ``(data, affine)``: the array as stored (``(X, Y, Z)``, ``(X, Y, Z, M)``, ...) and the
        ``4 x 4`` float64 voxel-to-world affine.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: if the file cannot be read (not gzip, truncated or corrupt, bad header,
            not NIfTI) or a label map holds non-integer values; the message starts with the
            path.
        ImportError: if nibabel is not installed.
    """
    nib = _import_nibabel()
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError, ImageDataError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    gz = path.name.endswith(".gz")
    errors = (OSError, EOFError, zlib.error, ImageFileError, HeaderDataError, ImageDataError, ValueError, TypeError)
    try:
        img = nib.load(str(path), mmap=False)
    except errors as err:
        raise ValueError(f"{path}: {_describe(err, gz)}") from err
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(f"{path}: not a NIfTI file (nibabel read it as {type(img).__name__})")
    try:
        data = np.asanyarray(img.dataobj)  # reads (and decompresses) everything now
        affine = np.array(img.affine, dtype=np.float64)
    except errors as err:
        raise ValueError(f"{path}: {_describe(err, gz)}") from err
    if data.dtype.fields is not None or not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(f"{path}: unsupported voxel type {data.dtype} (expected real numbers)")
    if not labels:
        return data.astype(np.float32, copy=False), affine
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.int32, copy=False), affine
    finite = np.isfinite(data)
    if not finite.all():
        raise ValueError(f"{path}: the label map contains {int((~finite).sum())} NaN or infinite values")
    rounded = np.rint(data)
    if not np.array_equal(rounded, data):
        off = rounded != data
        bad = np.unique(data[off])[:5]
        raise ValueError(
            f"{path}: the label map has non-integer values, e.g. {bad.tolist()} ({int(off.sum())} voxels; "
            f"{voxel_counts(data, bad[:1])})"
        )
    return rounded.astype(np.int32), affine


def _describe(err: BaseException, gz: bool) -> str:
    kind = "truncated or corrupt .nii.gz" if gz else "truncated or corrupt NIfTI file"
    return f"{kind} ({type(err).__name__}: {err})"


def check_same_grid(
    case: str,
    name_a: str,
    shape_a: Sequence[int],
    affine_a: np.ndarray,
    name_b: str,
    shape_b: Sequence[int],
    affine_b: np.ndarray,
) -> None:
    """Raise a ValueError naming ``case`` unless two volumes share their voxel grid.

    The spatial shapes (first three axes) must be equal and the affines equal within
    :data:`AFFINE_ATOL`.
    """
    if tuple(shape_a[:3]) != tuple(shape_b[:3]):
        raise ValueError(
            f"case {case}: spatial shapes differ: {name_a} is {tuple(shape_a)}, {name_b} is {tuple(shape_b)}"
        )
    if not np.allclose(affine_a, affine_b, rtol=0.0, atol=AFFINE_ATOL):
        with np.printoptions(precision=4, suppress=True):
            raise ValueError(
                f"case {case}: affines differ by more than {AFFINE_ATOL} (not the same voxel grid):\n"
                f"{name_a}:\n{affine_a}\n{name_b}:\n{affine_b}"
            )


# --------------------------------------------------------------------------------------------
# Volumes to slices
# --------------------------------------------------------------------------------------------


def volume_to_slices(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut a volume into axial slices along its third axis (see the module's *Orientation*).

    Args:
        volume: ``(X, Y, Z)`` or ``(X, Y, Z, C)`` (channels on the last axis).

    Returns:
        ``(slices, slice_index)``: slices ``(Z, Y, X)`` or ``(Z, C, Y, X)`` with
        ``slices[z][..., row, col] == volume[col, row, z, ...]``, and ``slice_index``
        ``(Z,)`` = ``0 .. Z-1``.
    """
    if volume.ndim == 3:
        slices = volume.transpose(2, 1, 0)
    elif volume.ndim == 4:
        slices = volume.transpose(2, 3, 1, 0)
    else:
        raise ValueError(f"a volume must be (X, Y, Z) or (X, Y, Z, C), got shape {volume.shape}")
    return np.ascontiguousarray(slices), np.arange(volume.shape[2])


def normalize_volume(volume: np.ndarray, mode: str = "zscore", *, name: str = "volume") -> np.ndarray:
    """Normalise one channel of one volume over its non-zero voxels; zero voxels stay 0.

    Args:
        volume: any shape, one channel.
        mode: ``"zscore"`` or ``"percentile"`` (see the module's *Normalisation*).
        name: used in error messages (the file).

    Returns:
        float32, same shape.

    Raises:
        ValueError: on NaN / infinite values, or if the non-zero voxels are constant.
    """
    check_option("normalize", mode, NORMALIZE_MODES)
    x = np.asarray(volume, dtype=np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        raise ValueError(f"{name}: contains {int((~finite).sum())} NaN or infinite voxels")
    nonzero = x != 0
    values = x[nonzero].astype(np.float64)
    if values.size == 0:
        raise ValueError(f"{name}: constant volume (every voxel is 0), cannot normalise")
    out = np.zeros_like(x)
    if mode == "zscore":
        mean, std = values.mean(), values.std()
        if std == 0:
            raise ValueError(f"{name}: constant volume (every non-zero voxel is {values[0]:g}), cannot normalise")
        out[nonzero] = (values - mean) / std
    else:
        lo, hi = np.percentile(values, _PERCENTILES)
        if hi <= lo:
            raise ValueError(
                f"{name}: constant volume (the {_PERCENTILES[0]} and {_PERCENTILES[1]} percentiles of the "
                f"non-zero voxels are both {lo:g}), cannot normalise"
            )
        out[nonzero] = (np.clip(values, lo, hi) - lo) / (hi - lo)
    return out


def _centre_window(n: int, size: int) -> tuple[slice, slice]:
    """Source and destination index ranges for centre padding / cropping ``n`` to ``size``."""
    if n >= size:
        start = (n - size) // 2
        return slice(start, start + size), slice(0, size)
    start = (size - n) // 2
    return slice(0, n), slice(start, start + n)


def _nearest_index(n: int, size: int) -> np.ndarray:
    """Source pixel of each of ``size`` output pixels, matching pixel centres (``n`` -> ``size``)."""
    return np.minimum(((np.arange(size) + 0.5) * (n / size)).astype(np.int64), n - 1)


def fit_to_size(
    images: np.ndarray, masks: np.ndarray, size: int, mode: str = "pad_crop"
) -> tuple[np.ndarray, np.ndarray]:
    """Bring slices of any ``H x W`` (square or not) to ``size x size``.

    Args:
        images: ``(N, C, H, W)`` float.
        masks: ``(N, H, W)`` integer label maps.
        size: the output side ``S``.
        mode: ``"pad_crop"``: centre zero-padding where ``H`` (or ``W``) ``< S``, centre
            cropping where it is ``> S`` (an odd difference puts the extra pixel after);
            ``"resize"``: each axis stretched to ``S``, images bilinearly (anti-aliased when
            shrinking), masks by nearest neighbour (pixel centres matched), so the labels stay
            within the input's label set.

    Returns:
        ``(images (N, C, S, S) float32, masks (N, S, S))`` with the masks' dtype kept.
    """
    check_option("resize", mode, RESIZE_MODES)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if images.ndim != 4 or masks.ndim != 3 or images.shape[0] != masks.shape[0] or images.shape[2:] != masks.shape[1:]:
        raise ValueError(f"expected images (N, C, H, W) and masks (N, H, W), got {images.shape} and {masks.shape}")
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images.astype(np.float32, copy=False), masks
    if mode == "pad_crop":
        (src_r, dst_r), (src_c, dst_c) = _centre_window(h, size), _centre_window(w, size)
        out_img = np.zeros((n, c, size, size), dtype=np.float32)
        out_msk = np.zeros((n, size, size), dtype=masks.dtype)
        out_img[:, :, dst_r, dst_c] = images[:, :, src_r, src_c]
        out_msk[:, dst_r, dst_c] = masks[:, src_r, src_c]
        return out_img, out_msk
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    out_img = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).numpy()
    out_msk = masks[:, _nearest_index(h, size)][:, :, _nearest_index(w, size)]
    return np.ascontiguousarray(out_img), np.ascontiguousarray(out_msk)


def drop_empty_slices(
    images: np.ndarray, masks: np.ndarray, slice_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Remove the slices whose mask is all background (0).

    Returns:
        The kept ``images, masks, slice_index`` and a report
        ``{"slices": before, "dropped": removed, "kept": after}``.
    """
    keep = masks.reshape(len(masks), -1).any(axis=1)
    kept = int(keep.sum())
    report = {"slices": len(masks), "dropped": len(masks) - kept, "kept": kept}
    return images[keep], masks[keep], slice_index[keep], report


# --------------------------------------------------------------------------------------------
# Whole cases
# --------------------------------------------------------------------------------------------


def case_to_slices(
    channels: Sequence[tuple[np.ndarray, str]],
    label: np.ndarray,
    *,
    normalize: str = "zscore",
    size: int | None = None,
    resize: str = "pad_crop",
    drop_empty: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """One case's channel volumes and label map -> its slices, normalised and sized.

    Args:
        channels: ``(volume (X, Y, Z), name)`` per input channel, in channel order; ``name``
            (the file) appears in normalisation errors.
        label: ``(X, Y, Z)`` label map, already mapped to the output labels (``0 .. 255``).
        normalize: see :func:`normalize_volume`.
        size: output side, or ``None`` to keep the slices' own ``Y x X``.
        resize: see :func:`fit_to_size`.
        drop_empty: drop the slices whose (sized) mask is all background.

    Returns:
        ``images (Z', C, S, S) float32, masks (Z', S, S) uint8, slice_index (Z',), report``;
        the report is that of :func:`drop_empty_slices` (nothing dropped when ``drop_empty``
        is off).
    """
    volume = np.stack([normalize_volume(v, normalize, name=name) for v, name in channels], axis=-1)
    images, slice_index = volume_to_slices(volume)  # (Z, C, Y, X)
    masks, _ = volume_to_slices(label.astype(np.uint8))  # (Z, Y, X)
    if size is not None:
        images, masks = fit_to_size(images, masks, size, resize)
    if drop_empty:
        return drop_empty_slices(images, masks, slice_index)
    return images, masks, slice_index, {"slices": len(masks), "dropped": 0, "kept": len(masks)}


def concat_cases(
    parts: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    *,
    source: str,
    dropped: int = 0,
) -> SliceData:
    """Join the cases' slices into one :class:`SliceData`.

    Args:
        parts: ``(patient_id, images, masks, slice_index)`` per case.
        class_names: names of the foreground labels ``1..``.
        source: what was read (for messages), e.g. the dataset root.
        dropped: how many empty slices were dropped (for the empty-dataset message).

    Raises:
        ValueError: if no slice is left, or the cases' slice sizes differ.
    """
    parts = [p for p in parts if len(p[1])]
    if not parts:
        why = f" after drop_empty removed {dropped} all-background slices" if dropped else ""
        raise ValueError(f"{source}: empty dataset: no slices{why}")
    shapes = {p[1].shape[1:] for p in parts}
    if len(shapes) > 1:
        examples = ", ".join(f"{p[0]}: {p[1].shape[2]}x{p[1].shape[3]}" for p in parts[:4])
        raise ValueError(
            f"{source}: the cases' slices differ in size or channels ({examples}, ...); "
            "pass size= to bring them to a common size"
        )
    return SliceData(
        images=np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False),
        masks=np.concatenate([p[2] for p in parts]).astype(np.uint8, copy=False),
        patient_id=np.concatenate([np.full(len(p[1]), p[0]) for p in parts]).astype(str),
        slice_index=np.concatenate([p[3] for p in parts]).astype(np.int64),
        class_names=list(class_names),
    )


def log_drop_report(source: str, report: dict[str, int]) -> None:
    """Log how many all-background slices were dropped (``logging``, INFO)."""
    logger.info(
        "%s: drop_empty removed %d of %d slices (all background), %d kept",
        source,
        report["dropped"],
        report["slices"],
        report["kept"],
    )


def add_reports(total: dict[str, int], report: dict[str, int]) -> dict[str, int]:
    """Sum two drop reports."""
    return {k: total.get(k, 0) + v for k, v in report.items()}


def voxel_counts(label: np.ndarray, values: Sequence[float]) -> str:
    """``"voxels per value: 3: 12, 7: 1"`` for the (offending) ``values`` of ``label``."""
    return "voxels per value: " + ", ".join(f"{v:g}: {int((label == v).sum())}" for v in values)


def label_values(label: np.ndarray) -> np.ndarray:
    """The distinct values of an integer label map (fast for small non-negative labels)."""
    if label.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(label.min()), int(label.max())
    if lo >= 0 and hi < 65536:
        return np.flatnonzero(np.bincount(label.ravel(), minlength=hi + 1))
    return np.unique(label)
