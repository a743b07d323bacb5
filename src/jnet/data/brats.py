"""Reader for the BraTS 2020 training data layout.

One folder per case, named after the case (the patient id)::

    root/BraTS20_Training_001/BraTS20_Training_001_flair.nii.gz
                              BraTS20_Training_001_t1.nii.gz
                              BraTS20_Training_001_t1ce.nii.gz
                              BraTS20_Training_001_t2.nii.gz
                              BraTS20_Training_001_seg.nii.gz

(uncompressed ``.nii`` files are accepted too). The volumes are skull-stripped, co-registered
``240 x 240 x 155``; the slices are centre zero-padded to ``256 x 256`` by default, as in the
J-Net paper.

Labels
------
The segmentation holds 0 (background), 1 (NCR/NET: necrotic and non-enhancing tumour core),
2 (ED: peritumoral edema) and 4 (ET: enhancing tumour). Two output layouts:

* ``regions=False`` (default): the tumour sub-regions as contiguous classes,
  ``0, 1, 2, 4 -> 0, 1, 2, 3`` with ``class_names = ["NCR/NET", "ED", "ET"]`` (the J-Net
  paper's classes).
* ``regions=True``: the BraTS evaluation regions WT = {1, 2, 4}, TC = {1, 4}, ET = {4}.
  They overlap (ET inside TC inside WT), so they are stored as one *nested* (ordinal) label
  map ``0 -> 0, 2 (ED) -> 1, 1 (NCR/NET) -> 2, 4 (ET) -> 3`` with
  ``class_names = ["WT", "TC", "ET"]``: region ``k`` (``k = 1, 2, 3``) is ``mask >= k``, the
  union of labels ``k .. 3``. It is the same partition as the default, with labels 1 and 2
  swapped so that each region is a threshold. A pixel's label is its *innermost* region, so
  a per-label score (e.g. Dice of ``mask == 1``) scores ED, not WT; to score the regions,
  compare ``mask >= k`` (see :func:`brats_region_masks`), and for a network predicting this
  label map, take the predicted regions the same way from its argmax.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jnet._options import check_option
from jnet.data.nifti import (
    NORMALIZE_MODES,
    RESIZE_MODES,
    add_reports,
    case_to_slices,
    check_same_grid,
    concat_cases,
    label_values,
    log_drop_report,
    read_volume,
    voxel_counts,
)
from jnet.data.prepare import SliceData

__all__ = ["BRATS_MODALITIES", "brats_region_masks", "load_brats"]

logger = logging.getLogger(__name__)

BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")
_RAW_LABELS = (0, 1, 2, 4)
_SUBREGION_TABLE = {0: 0, 1: 1, 2: 2, 4: 3}
_NESTED_TABLE = {0: 0, 2: 1, 1: 2, 4: 3}
SUBREGION_NAMES = ["NCR/NET", "ED", "ET"]
REGION_NAMES = ["WT", "TC", "ET"]


def brats_region_masks(masks: np.ndarray, *, nested: bool) -> np.ndarray:
    """The WT, TC and ET region masks of label maps made by :func:`load_brats`.

    Args:
        masks: ``(..., H, W)`` label maps in ``0..3``.
        nested: ``True`` for maps read with ``regions=True`` (region ``k`` is ``mask >= k``),
            ``False`` for the default sub-region maps (WT = 1, 2, 3; TC = 1, 3; ET = 3).

    Returns:
        ``(..., 3, H, W)`` bool, channels WT, TC, ET.
    """
    m = np.asarray(masks)
    regions = [m >= 1, m >= 2, m == 3] if nested else [m >= 1, (m == 1) | (m == 3), m == 3]
    return np.stack(regions, axis=-3)


def _find(folder: Path, stem: str) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        path = folder / f"{stem}{ext}"
        if path.is_file():
            return path
    return None


def _is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".nii", ".nii.gz")) and not path.name.startswith(".")


def _find_cases(root: Path, modalities: Sequence[str]) -> list[tuple[str, list[Path], Path]]:
    """The case folders (every sub-folder holding NIfTI files) with their modality and seg files."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p.name for p in folder.iterdir() if _is_nifti(p))
        if not files:
            continue
        case = folder.name
        seg = _find(folder, f"{case}_seg")
        if seg is None:
            raise ValueError(
                f"case {case}: no segmentation {folder / (case + '_seg.nii.gz')} (the folder holds: {', '.join(files)})"
            )
        images = []
        for mod in modalities:
            path = _find(folder, f"{case}_{mod}")
            if path is None:
                raise ValueError(
                    f"case {case}: missing modality {mod!r}: no {folder / (case + '_' + mod + '.nii.gz')} "
                    f"(the folder holds: {', '.join(files)})"
                )
            images.append(path)
        cases.append((case, images, seg))
    if not cases:
        raise ValueError(f"{root}: empty dataset: no BraTS case folders (sub-folders holding <case>_seg.nii.gz)")
    return cases


def load_brats(
    root: str | Path,
    *,
    modalities: Sequence[str] = BRATS_MODALITIES,
    regions: bool = False,
    size: int = 256,
    resize: str = "pad_crop",
    normalize: str = "zscore",
    drop_empty: bool = False,
) -> SliceData:
    """Read BraTS 2020 training cases as axial slices.

    Every sub-folder of ``root`` holding NIfTI files is a case; all of them are checked for
    their seg and modality files before any volume is read. The modalities and the seg of a
    case must share their voxel grid (shape and affine). All slices are held in memory: the
    full BraTS 2020 training set (369 cases x 155 slices x 4 modalities x 256 x 256 float32)
    takes about 56 GiB, so read fewer modalities, a folder with a subset of the cases, or use
    ``drop_empty`` (many slices hold no tumour) on smaller machines.

    Args:
        root: the folder holding the case folders (e.g. ``MICCAI_BraTS2020_TrainingData``).
        modalities: the input channels, in this order, from ``"flair"``, ``"t1"``,
            ``"t1ce"``, ``"t2"``.
        regions: ``False``: classes NCR/NET, ED, ET; ``True``: nested WT, TC, ET label map
            (see the module docstring).
        size: the output side ``S`` (256: the 240 x 240 slices are centre-padded).
        resize: ``"pad_crop"`` or ``"resize"``; see :func:`jnet.data.nifti.fit_to_size`.
        normalize: ``"zscore"`` or ``"percentile"``, per case and modality over the non-zero
            (brain) voxels; see :func:`jnet.data.nifti.normalize_volume`.
        drop_empty: drop the slices without tumour (the count is logged).

    Returns:
        :class:`SliceData` with images ``(N, C, S, S)`` (C = ``len(modalities)``), masks
        ``(N, S, S)`` in ``0..3``, ``patient_id`` the case folder name, ``slice_index`` the
        ``z`` index.

    Raises:
        FileNotFoundError: if ``root`` does not exist.
        ValueError: on a case folder without seg or a requested modality, an unreadable or
            non-3D volume, a shape or affine mismatch, a label other than 0, 1, 2, 4, NaN or
            constant volumes, or an empty result; the message names the case or file.
    """
    if isinstance(modalities, str):
        modalities = (modalities,)
    modalities = tuple(modalities)
    if not modalities:
        raise ValueError(f"modalities must name at least one of {', '.join(BRATS_MODALITIES)}")
    for mod in modalities:
        check_option("BraTS modality", mod, BRATS_MODALITIES)
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities lists a modality twice: {list(modalities)}")
    check_option("resize", resize, RESIZE_MODES)
    check_option("normalize", normalize, NORMALIZE_MODES)
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1):
        raise ValueError(f"size must be a positive integer, got {size!r}")
    root = Path(root)
    cases = _find_cases(root, modalities)
    table = np.zeros(max(_RAW_LABELS) + 1, dtype=np.uint8)
    for raw, out in (_NESTED_TABLE if regions else _SUBREGION_TABLE).items():
        table[raw] = out

    parts = []
    total: dict[str, int] = {}
    for case, image_paths, seg_path in cases:
        label, seg_affine = read_volume(seg_path, labels=True)
        if label.ndim != 3:
            raise ValueError(f"{seg_path}: expected a 3D (X, Y, Z) label map, got shape {label.shape}")
        bad = [int(v) for v in label_values(label) if int(v) not in _RAW_LABELS]
        if bad:
            hint = " (BraTS 2023 and later label ET as 3; this reader expects the 2020 labels)" if 3 in bad else ""
            raise ValueError(
                f"case {case}: {seg_path} has label values {bad}; expected 0, 1, 2, 4{hint} "
                f"({voxel_counts(label, bad[:5])})"
            )
        channels = []
        for path in image_paths:
            image, affine = read_volume(path)
            if image.ndim != 3:
                raise ValueError(f"{path}: expected a 3D (X, Y, Z) image, got shape {image.shape}")
            check_same_grid(case, str(path), image.shape, affine, str(seg_path), label.shape, seg_affine)
            channels.append((image, str(path)))
        images, masks, index, report = case_to_slices(
            channels, table[label], normalize=normalize, size=size, resize=resize, drop_empty=drop_empty
        )
        parts.append((case, images, masks, index))
        total = add_reports(total, report)
    if drop_empty:
        log_drop_report(str(root), total)
    return concat_cases(
        parts, REGION_NAMES if regions else SUBREGION_NAMES, source=str(root), dropped=total.get("dropped", 0)
    )
