"""A folder of 2D image/mask files (PNG or TIFF) as :class:`~jnet.data.prepare.SliceData`.

Layout::

    root/
      images/  case01__000.png  case01__001.png  case02__000.tif  scan7.tiff ...
      masks/   case01__000.png  case01__001.png  case02__000.tif  scan7.png  ...

* An image and its mask share the file *stem* (the name without its extension); the
  extensions may differ (``.png``, ``.tif`` or ``.tiff``, any case). Other files (and hidden
  ones) are ignored.
* The patient id is the part of the stem before the first ``"__"`` and the slice index the
  part after it (``case01__003`` is patient ``case01``, slice 3; when that part is not an
  integer the patient's slices are numbered 0, 1, ... in name order). A stem without ``"__"``
  is its own patient (slice 0): every such image is then a separate patient in the splits,
  which is right only when the images really come from different patients.
* Images may be 8- or 16-bit grey, 32-bit integer or float (TIFF). Colour images are
  converted to one grey channel (luma, ``0.299 R + 0.587 G + 0.114 B``; alpha dropped), so
  every slice has ``C = 1``; keep several channels (e.g. MRI sequences) in an ``.npz``
  archive instead. Each slice is z-scored (:func:`~jnet.data.prepare.normalize_slices`).
* Masks are label images: ``{0, 255}`` (a binary mask saved for viewing) becomes ``{0, 1}``;
  otherwise the values must be integer labels ``0..MAX_LABEL``. A palette (``P``) PNG gives
  its palette indices; a colour mask must have equal channels.
* The classes: ``class_names=[...]`` declares the foreground labels ``1..K`` and any other
  label is refused, with the pixel count of every label and the first file holding it.
  Without it ``K`` is the largest label found, and every label ``1..K`` must occur somewhere
  (one stray value 7 in a binary folder is refused, not taken for 8 classes).
* A constant image with foreground in its mask, or a patient whose images are all constant,
  is refused (:func:`~jnet.data.prepare.check_constant_images`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from jnet.data.prepare import (
    SliceData,
    check_class_names,
    check_constant_images,
    check_mask_values,
    normalize_slices,
)

__all__ = ["IMAGE_SUFFIXES", "MAX_LABEL", "load_image_folder", "resize_images", "resize_masks"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
MAX_LABEL = 63  # a mask value above this (other than a binary 255) is taken for a grey level, not a label


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``(N, C, H, W)`` images to ``size x size`` (anti-aliased when shrinking), float32."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if tuple(x.shape[-2:]) == (size, size):
        return x.numpy()
    shrink = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink).numpy()


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of ``(N, H, W)`` label masks to ``size x size``; labels stay labels."""
    m = np.asarray(masks)
    if m.shape[-2:] == (size, size):
        return m
    y = F.interpolate(torch.from_numpy(m.astype(np.float32))[:, None], size=(size, size), mode="nearest-exact")
    return y[:, 0].numpy().astype(m.dtype)


def _list_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in files:
            raise ValueError(f"{path}: two files with the stem {path.stem!r} ({files[path.stem].name}, {path.name})")
        files[path.stem] = path
    return files


def _read(path: Path) -> np.ndarray:
    """The pixel array of one file (2D, or 3D ``(H, W, bands)`` for colour), any dtype."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise ValueError(f"{path}: a multi-page file ({im.n_frames} pages); one 2D slice per file expected")
            im.load()
            if im.mode == "1":
                im = im.convert("L")
            arr = np.array(im)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:  # Pillow's errors for bad or truncated files
        raise ValueError(f"{path}: cannot read the image ({err})") from err
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ValueError(f"{path}: unexpected pixel array of shape {arr.shape}")
    return arr


def _to_grey(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return arr.astype(np.float32)
    bands = arr.shape[2]
    if bands in (1, 2):  # grey or grey + alpha
        return arr[..., 0].astype(np.float32)
    rgb = arr[..., :3].astype(np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def read_grey(path: str | Path) -> np.ndarray:
    """One 2D image file as a float32 ``(H, W)`` grey image (colour is converted with the BT.601 weights)."""
    return _to_grey(_read(Path(path)))


def _to_labels(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 3:
        bands = arr[..., : 1 if arr.shape[2] <= 2 else 3]
        if not (bands == bands[..., :1]).all():
            raise ValueError(f"{path}: a colour mask; masks must be grey label images (or have equal channels)")
        arr = bands[..., 0]
    arr = check_mask_values(arr, str(path), "mask")  # integers 0..255, else the value and its pixel count
    values = np.unique(arr)
    if values.max() == 255 and set(values.tolist()) <= {0, 255}:
        return (arr == 255).astype(np.uint8)
    if values.max() > MAX_LABEL:
        raise ValueError(
            f"{path}: mask values must be {{0, 255}} (binary) or integer labels 0..{MAX_LABEL}, "
            f"found {_show(values)} (a grey-level or anti-aliased image?)"
        )
    return arr.astype(np.uint8)


def _show(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit].tolist())
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} distinct)"


def _patient_and_slice(stems: list[str]) -> tuple[list[str], list[int]]:
    """Patient ids and slice indices from the stems (see the module docstring)."""
    parts = [s.split("__", 1) if "__" in s else [s, None] for s in stems]
    patients = [p[0] for p in parts]
    indices: list[int] = [0] * len(stems)
    by_patient: dict[str, list[int]] = {}
    for i, p in enumerate(patients):
        by_patient.setdefault(p, []).append(i)
    for members in by_patient.values():
        rest = [parts[i][1] for i in members]
        if all(r is not None and r.isdigit() for r in rest):
            for i, r in zip(members, rest, strict=True):
                indices[i] = int(r)  # type: ignore[arg-type]
        else:
            for k, i in enumerate(sorted(members, key=lambda j: stems[j])):
                indices[i] = k
    return patients, indices


def _paired_files(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """``root/images`` and ``root/masks`` by stem; every image has its mask and every mask its image."""
    image_dir, mask_dir = root / "images", root / "masks"
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such folder (an image folder holds images/ and masks/)")
    images, masks = _list_files(image_dir), _list_files(mask_dir)
    if not images:
        raise ValueError(f"{image_dir}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    for stem, path in images.items():
        if stem not in masks:
            raise ValueError(f"{path}: no mask for this image (looked for {mask_dir / stem}.png|.tif|.tiff)")
    for stem, path in masks.items():
        if stem not in images:
            raise ValueError(f"{path}: no image for this mask (looked for {image_dir / stem}.png|.tif|.tiff)")
    return images, masks


def load_image_folder(
    root: str | Path,
    *,
    size: int | None = None,
    drop_empty: bool = False,
    class_names: Sequence[str] | None = None,
) -> SliceData:
    """Read ``root/images`` and ``root/masks`` (PNG/TIFF pairs; layout in the module docstring).

    Args:
        root: the folder holding ``images/`` and ``masks/``.
        size: resize every slice to ``size x size`` (bilinear images, nearest masks; non-square
            images are stretched). Required when the files differ in size; ``None`` keeps them
            as they are.
        drop_empty: leave out slices whose mask is all background.
        class_names: the names of the foreground labels ``1..K``; a mask holding another
            label is refused. ``None``: inferred (see the module docstring).

    Returns:
        :class:`SliceData`, ``C = 1``, sorted by patient and slice index; ``class_names`` as
        declared, else ``["foreground"]`` for binary masks and ``["class_1", ..., "class_K"]``
        for the largest label ``K`` found.

    Raises:
        ImportError: Pillow is missing (``pip install "jnet[images]"``).
        ValueError: naming the file, for a missing mask or image, an unreadable file, an
            image and mask of different sizes, mask values that are not labels, labels
            outside the declared classes (or, undeclared, not 0..K), constant images, or files
            of different sizes without ``size``.
    """
    try:
        import PIL  # noqa: F401
    except ImportError as err:
        raise ImportError('reading PNG/TIFF folders needs Pillow: pip install "jnet[images]"') from err
    root = Path(root)
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"size must be a positive integer or None, got {size!r}")
        size = int(size)
    images, masks = _paired_files(root)
    stems = list(images)
    patients, indices = _patient_and_slice(stems)
    order = sorted(range(len(stems)), key=lambda i: (patients[i], indices[i], stems[i]))
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    first: tuple[Path, tuple[int, int]] | None = None
    for i in order:
        image_path, mask_path = images[stems[i]], masks[stems[i]]
        x, y = _to_grey(_read(image_path)), _to_labels(_read(mask_path), mask_path)
        if x.shape != y.shape:
            raise ValueError(
                f"{image_path}: image is {x.shape[1]}x{x.shape[0]} but its mask {mask_path.name} "
                f"is {y.shape[1]}x{y.shape[0]}"
            )
        if not np.isfinite(x).all():
            raise ValueError(f"{image_path}: the image contains NaN or infinite values")
        if first is None:
            first = (image_path, x.shape)
        elif x.shape != first[1] and size is None:
            raise ValueError(
                f"{image_path}: {x.shape[1]}x{x.shape[0]} differs from {first[0].name} ({first[1][1]}x{first[1][0]}); "
                "pass size=S to resize every slice to S x S"
            )
        if size is not None:  # a constant image stays exactly constant, for check_constant_images
            x = (
                np.full((size, size), x.flat[0], np.float32)
                if x.min() == x.max()
                else resize_images(x[None, None], size)[0, 0]
            )
            y = resize_masks(y[None], size)[0]
        xs.append(x)
        ys.append(y)

    mask_arr, image_arr = np.stack(ys), np.stack(xs)
    pid = np.array([patients[i] for i in order])
    names = check_class_names(mask_arr, str(root), class_names, lambda i: str(masks[stems[order[i]]]))
    check_constant_images(image_arr, mask_arr, pid, str(root), lambda i: str(images[stems[order[i]]]))
    keep = np.ones(len(order), dtype=bool)
    if drop_empty:
        keep = mask_arr.reshape(len(mask_arr), -1).any(axis=1)
        if not keep.any():
            raise ValueError(f"{root}: every mask is empty, nothing left with drop_empty=True")
    return SliceData(
        normalize_slices(image_arr[keep]),
        mask_arr[keep],
        pid[keep],
        np.array([indices[i] for i in order], dtype=np.int64)[keep],
        names,
    )
