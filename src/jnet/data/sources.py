"""One ``--data`` argument for every data source: :func:`load_data`.

What a spec can be, checked in this order (kind: loader):

* ``"synthetic"`` (synthetic: :func:`jnet.data.synthetic.make_synthetic`);
* a ``.npz`` file (npz: :func:`jnet.data.prepare.load_npz`, plus the archive's optional
  ``slice_index`` and ``class_names``);
* a folder holding ``dataset.json`` (msd: :func:`jnet.data.msd.load_msd`);
* a folder holding ``images/`` and ``masks/`` (images: :func:`jnet.data.images.load_image_folder`);
* a folder whose sub-folders hold ``*_seg.nii.gz`` or ``*_seg.nii`` (brats: :func:`jnet.data.brats.load_brats`).

The word ``synthetic`` wins over a file or folder of that name (write ``./synthetic`` for
those). Options go to the source's loader; each kind accepts its loader's keyword arguments
(see :func:`source_options`), and every kind accepts ``size`` (slices come out ``size x size``)
and ``drop_empty`` (leave out slices with an empty mask); ``npz`` and ``images`` accept
``class_names`` (the foreground classes; a mask label outside them is refused).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jnet.data.brats import load_brats
from jnet.data.images import load_image_folder, resize_images, resize_masks
from jnet.data.msd import load_msd
from jnet.data.prepare import SliceData, load_npz, normalize_slices
from jnet.data.synthetic import make_synthetic
from jnet.registry import Registry

__all__ = ["SOURCE_KINDS", "Source", "load_data", "resolve_source", "source_options"]

SYNTHETIC_CLASS_NAMES = ("lesion", "core", "enhancing ring")
_LOOKED_FOR = (
    "expected 'synthetic', a .npz file, a folder holding dataset.json (Medical Segmentation Decathlon), "
    "a folder holding images/ and masks/ (PNG/TIFF pairs), or a folder of case folders holding "
    "*_seg.nii.gz (BraTS)"
)


@dataclass(frozen=True)
class SourceKind:
    """A kind of data source: its loader ``load(path, **options)`` (``path`` is ``None`` for
    synthetic data) and ``options()``, the options it accepts with their defaults."""

    load: Callable[..., SliceData]
    options: Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Source:
    """What a spec points at: its ``kind`` (one of :data:`SOURCE_KINDS`) and resolved ``path`` (``None``: synthetic)."""

    kind: str
    path: Path | None


def resolve_source(spec: str | os.PathLike) -> Source:
    """Tell what ``spec`` is (table in the module docstring); ValueError saying what was looked for."""
    if isinstance(spec, str) and spec.strip().lower() == "synthetic":
        return Source("synthetic", None)
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return Source("npz", path.resolve())
        raise ValueError(f"{path}: a file but not a .npz archive; {_LOOKED_FOR}")
    if not path.is_dir():
        raise ValueError(f"{spec!s}: no such file or folder; {_LOOKED_FOR}")
    path = path.resolve()
    if (path / "dataset.json").is_file():
        return Source("msd", path)
    if (path / "images").is_dir() and (path / "masks").is_dir():
        return Source("images", path)
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        if next(sub.glob("*_seg.nii.gz"), None) is not None or next(sub.glob("*_seg.nii"), None) is not None:
            return Source("brats", path)
    raise ValueError(f"{path}: cannot tell what this folder holds; {_LOOKED_FOR}")


def _keyword_defaults(func, skip_first: bool) -> dict[str, Any]:
    params = list(inspect.signature(func).parameters.values())[1 if skip_first else 0 :]
    return {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in params
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def source_options(kind: str) -> dict[str, Any]:
    """The options a source kind accepts, with their defaults."""
    return SOURCES.get(kind).options()


def check_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` completed with the kind's defaults; ValueError listing the valid ones for an unknown one."""
    valid = source_options(kind)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for {kind} data; valid options: {', '.join(valid)}"
        )
    size = options.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1):
        raise ValueError(f"size must be a positive integer, got {size!r}")
    return {**valid, **options}


def load_data(spec: str | os.PathLike, **options: Any) -> SliceData:
    """Load the slices ``spec`` points at (see the module docstring) as :class:`SliceData`.

    Args:
        spec: ``"synthetic"``, a ``.npz`` file, or an MSD, BraTS or image folder.
        **options: the source's options (:func:`source_options`); ``size=S`` gives ``S x S``
            slices from every kind, ``drop_empty=True`` leaves out slices with empty masks.

    Raises:
        ValueError: an unrecognised spec (saying what was looked for) or an unknown option
            (listing the valid ones).
    """
    source = resolve_source(spec)
    opts = {k: v for k, v in check_options(source.kind, options).items() if k in options}
    return SOURCES.get(source.kind).load(source.path, **opts)


def _drop_empty(data: SliceData, where: str) -> SliceData:
    keep = data.masks.reshape(len(data), -1).any(axis=1)
    if not keep.any():
        raise ValueError(f"{where}: every mask is empty, nothing left with drop_empty=True")
    return data.subset(keep)


def _load_synthetic(path: None, drop_empty: bool = False, **kwargs: Any) -> SliceData:
    raw = make_synthetic(**kwargs)
    k = int(kwargs.get("num_lesion_classes", source_options("synthetic")["num_lesion_classes"]))
    names = (
        list(SYNTHETIC_CLASS_NAMES[:k]) if k <= len(SYNTHETIC_CLASS_NAMES) else [f"class_{i}" for i in range(1, k + 1)]
    )
    data = SliceData(
        normalize_slices(raw["images"]),
        raw["masks"].astype(np.uint8),
        raw["patient_id"].astype(str),
        raw["slice_index"].astype(np.int64),
        names,
    )
    return _drop_empty(data, "synthetic") if drop_empty else data


def _load_npz(
    path: Path, size: int | None = None, drop_empty: bool = False, class_names: list[str] | None = None
) -> SliceData:
    data = load_npz(path, class_names=class_names)  # also reads the optional slice_index and class_names
    if size is not None and data.images.shape[-2:] != (size, size):
        data = SliceData(
            normalize_slices(resize_images(data.images, size)),
            resize_masks(data.masks, size),
            data.patient_id,
            data.slice_index,
            data.class_names,
        )
    return _drop_empty(data, str(path)) if drop_empty else data


SOURCES: Registry[SourceKind] = Registry("data source")
SOURCES.add(
    "synthetic", SourceKind(_load_synthetic, lambda: {**_keyword_defaults(make_synthetic, False), "drop_empty": False})
)
SOURCES.add("npz", SourceKind(_load_npz, lambda: {"size": None, "drop_empty": False, "class_names": None}))
SOURCES.add("msd", SourceKind(load_msd, lambda: _keyword_defaults(load_msd, skip_first=True)))
SOURCES.add("images", SourceKind(load_image_folder, lambda: _keyword_defaults(load_image_folder, skip_first=True)))
SOURCES.add("brats", SourceKind(load_brats, lambda: _keyword_defaults(load_brats, skip_first=True)))
SOURCE_KINDS = tuple(SOURCES.names())
