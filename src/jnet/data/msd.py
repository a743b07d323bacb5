"""Reader for the Medical Segmentation Decathlon (MSD) task layout.

A task folder (e.g. ``Task05_Prostate``) holds::

    dataset.json            name, modality {"0": "T2", "1": "ADC"},
                            labels {"0": "background", "1": "PZ", "2": "TZ"},
                            training [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}, ...]
    imagesTr/x.nii.gz       (X, Y, Z) or (X, Y, Z, M) with the M modalities on the last axis
    labelsTr/x.nii.gz       (X, Y, Z) integer labels

Only the ``training`` cases are read (the test cases have no labels). Hidden files such as the
``._x.nii.gz`` macOS leftovers shipped in some MSD archives are ignored. Slicing, orientation
and normalisation follow :mod:`jnet.data.nifti`.
"""

from __future__ import annotations

import json
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

__all__ = ["load_msd"]

logger = logging.getLogger(__name__)

_MAX_LISTED = 5  # how many offending files an error message lists


def _case_id(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _int_keys(table: object, key: str, json_path: Path) -> dict[int, str]:
    """``{"0": "background", ...}`` -> ``{0: "background", ...}``, validated."""
    if not isinstance(table, dict) or not table:
        raise ValueError(f'{json_path}: "{key}" must be a non-empty mapping like {{"0": "name", ...}}, got {table!r}')
    out: dict[int, str] = {}
    for k, v in table.items():
        try:
            value = int(k)
        except (TypeError, ValueError):
            raise ValueError(
                f'{json_path}: "{key}" keys must be integers written as strings ("0", "1", ...), got {k!r}'
            ) from None
        if value < 0:
            raise ValueError(f'{json_path}: "{key}" has a negative key {k!r}')
        out[value] = str(v)
    return out


def _read_dataset_json(root: Path) -> tuple[dict[int, str], dict[int, str] | None, list[tuple[str, Path, Path]]]:
    """Parse ``dataset.json``: declared labels, modality names (or None) and the training pairs."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    json_path = root / "dataset.json"
    if not json_path.is_file():
        raise FileNotFoundError(
            f"{json_path}: no such file (an MSD task folder holds dataset.json, imagesTr/, labelsTr/)"
        )
    try:
        meta = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{json_path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{json_path}: expected a JSON object, got {type(meta).__name__}")
    for key in ("labels", "training"):
        if key not in meta:
            raise ValueError(f'{json_path}: no "{key}" entry (has {", ".join(map(repr, meta))})')
    labels = _int_keys(meta["labels"], "labels", json_path)
    modalities = _int_keys(meta["modality"], "modality", json_path) if "modality" in meta else None
    if modalities is not None and sorted(modalities) != list(range(len(modalities))):
        raise ValueError(f'{json_path}: "modality" keys must be 0..M-1, got {sorted(modalities)}')
    training = meta["training"]
    if not isinstance(training, list):
        raise ValueError(f'{json_path}: "training" must be a list of {{"image": ..., "label": ...}}')
    if not training:
        raise ValueError(f'{json_path}: empty dataset: "training" lists no cases')
    pairs: list[tuple[str, Path, Path]] = []
    for i, entry in enumerate(training):
        if not (
            isinstance(entry, dict) and isinstance(entry.get("image"), str) and isinstance(entry.get("label"), str)
        ):
            raise ValueError(f'{json_path}: training entry {i} must be {{"image": path, "label": path}}, got {entry!r}')
        image, label = root / entry["image"], root / entry["label"]
        pairs.append((_case_id(image), image, label))
    seen: dict[str, Path] = {}
    for case, image, _ in pairs:
        if case in seen:
            raise ValueError(f"{json_path}: case {case} is listed twice ({seen[case]} and {image})")
        seen[case] = image
    return labels, modalities, pairs


def _nifti_names(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.name.endswith((".nii", ".nii.gz")) and not p.name.startswith(".")}


def _check_files(root: Path, pairs: list[tuple[str, Path, Path]]) -> None:
    """Every listed file exists; imagesTr/ and labelsTr/ pair up; unlisted pairs are reported."""
    problems: list[str] = []
    for case, image, label in pairs:
        if not image.is_file() and not label.is_file():
            problems.append(f"case {case}: neither {image} nor {label} exists")
        elif not label.is_file():
            problems.append(f"case {case}: image {image} has no label: {label} does not exist")
        elif not image.is_file():
            problems.append(f"case {case}: label {label} has no image: {image} does not exist")
    if problems:
        more = f"\n... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise ValueError(
            f"{root / 'dataset.json'} lists files that do not exist:\n" + "\n".join(problems[:_MAX_LISTED]) + more
        )
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    image_names, label_names = _nifti_names(images_dir), _nifti_names(labels_dir)
    for name in sorted(image_names - label_names):
        raise ValueError(f"{images_dir / name}: image has no label {labels_dir / name}")
    for name in sorted(label_names - image_names):
        raise ValueError(f"{labels_dir / name}: label has no image {images_dir / name}")
    listed = {image.resolve() for _, image, _ in pairs}
    unlisted = sorted(n for n in image_names if (images_dir / n).resolve() not in listed)
    if unlisted:
        logger.warning(
            "%s: %d case(s) in imagesTr/labelsTr are not listed in dataset.json and are ignored: %s",
            root,
            len(unlisted),
            ", ".join(unlisted[:_MAX_LISTED]),
        )


def _label_table(
    declared: dict[int, str], label_map: dict[int, int] | None, json_path: Path
) -> tuple[np.ndarray, list[str]]:
    """Lookup table raw label -> output label (indexable by every declared label) and class names."""
    size = max(declared) + 1
    if label_map is None:
        foreground = sorted(k for k in declared if k != 0)
        if foreground != list(range(1, len(foreground) + 1)) or len(foreground) > 255:
            raise ValueError(
                f"{json_path}: the declared labels {sorted(declared)} are not 0..K (K <= 255); "
                "pass label_map= to renumber them"
            )
        return np.arange(size).astype(np.uint8), [declared[k] for k in foreground]
    for k, v in label_map.items():
        for x in (k, v):
            if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
                raise ValueError(f"label_map must map int -> int, got {k!r}: {v!r}")
        if not 0 <= v <= 255:
            raise ValueError(f"label_map: output label {v} (for {k}) is outside 0..255")
    unknown = sorted(k for k in label_map if k not in declared)
    if unknown:
        raise ValueError(f"label_map: labels {unknown} are not declared in {json_path} (declared: {_named(declared)})")
    if label_map.get(0, 0) != 0:
        raise ValueError(f"label_map: the background 0 must stay 0, got 0 -> {label_map[0]}")
    uncovered = [k for k in sorted(declared) if k != 0 and k not in label_map]
    if uncovered:
        raise ValueError(
            f"label_map must give every declared foreground label an output label (0 for background); "
            f"not covered: {_named({k: declared[k] for k in uncovered})}"
        )
    targets = sorted({int(v) for v in label_map.values() if v != 0})
    if targets != list(range(1, len(targets) + 1)):
        raise ValueError(f"label_map: the output labels must be 0..K without gaps, got {targets}")
    table = np.zeros(size, dtype=np.uint8)
    for k, v in label_map.items():
        table[k] = v
    names = ["+".join(declared[k] for k in sorted(label_map) if label_map[k] == t) for t in targets]
    return table, names


def _named(table: dict[int, str]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in sorted(table.items()))


def _check_modalities(modalities: Sequence[int] | None) -> list[int] | None:
    if modalities is None:
        return None
    chosen = list(modalities)
    if not chosen:
        raise ValueError("modalities must list at least one modality index (or be None for all)")
    for m in chosen:
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
            raise ValueError(f"modalities must be integer indices, got {m!r}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"modalities lists an index twice: {chosen}")
    return [int(m) for m in chosen]


def _read_case(
    case: str,
    image_path: Path,
    label_path: Path,
    chosen: list[int] | None,
    modality_names: dict[int, str] | None,
    declared: dict[int, str],
    table: np.ndarray,
    json_path: Path,
) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    """One case's labels mapped through ``table``, and its chosen channels with their names; checked."""
    allowed = set(declared) | {0}
    image, image_affine = read_volume(image_path)
    label, label_affine = read_volume(label_path, labels=True)
    if image.ndim not in (3, 4):
        raise ValueError(f"{image_path}: expected a 3D (X, Y, Z) or 4D (X, Y, Z, M) image, got shape {image.shape}")
    if label.ndim != 3:
        raise ValueError(f"{label_path}: expected a 3D (X, Y, Z) label map, got shape {label.shape}")
    n_mod = 1 if image.ndim == 3 else image.shape[3]
    names = modality_names if modality_names is not None else {m: f"modality {m}" for m in range(n_mod)}
    if len(names) != n_mod:
        raise ValueError(
            f"{image_path}: holds {n_mod} modalities (shape {image.shape}) but {json_path} declares "
            f"{len(names)}: {_named(names)}"
        )
    picked = list(range(n_mod)) if chosen is None else chosen
    missing = [m for m in picked if not 0 <= m < n_mod]
    if missing:
        raise ValueError(
            f"case {case}: modality index {missing[0]} does not exist; available: {_named(names)} (from {json_path})"
        )
    check_same_grid(
        case, f"image {image_path}", image.shape, image_affine, f"label {label_path}", label.shape, label_affine
    )
    values = label_values(label)
    bad = [int(v) for v in values if int(v) not in allowed]
    if bad:
        raise ValueError(
            f"case {case}: {label_path} has label values {bad} not declared in {json_path} "
            f"(declared: {_named(declared)}; {voxel_counts(label, bad[:5])})"
        )
    mapped = table[label]
    channels = [
        (image if image.ndim == 3 else image[..., m], f"{image_path} [modality {m} {names[m]}]") for m in picked
    ]
    return mapped, channels


def load_msd(
    root: str | Path,
    *,
    modalities: Sequence[int] | None = None,
    label_map: dict[int, int] | None = None,
    size: int | None = None,
    resize: str = "resize",
    normalize: str = "zscore",
    drop_empty: bool = False,
) -> SliceData:
    """Read the training cases of an MSD task folder as axial slices.

    All listed files are checked to exist before any volume is read. Each case's image and
    label must share their voxel grid (shape and affine), and the label values must be among
    the labels declared in ``dataset.json``.

    Args:
        root: the task folder (holding ``dataset.json``).
        modalities: indices (keys of ``dataset.json``'s ``"modality"``) of the channels to
            keep, in this order; ``None`` keeps all. E.g. ``[0]`` for T2 only in Task05
            Prostate (as in the J-Net paper), ``[1]`` for ADC only.
        label_map: raw label -> output label, e.g. ``{1: 1, 2: 1}`` merges PZ and TZ into one
            class named ``"PZ+TZ"``. It must cover every declared foreground label (map a
            label to 0 to make it background) and its outputs must be ``0..K`` without gaps.
            ``None`` keeps the declared labels, which must then be ``0..K``.
        size: the common output side ``S``; ``None`` keeps each slice's own ``Y x X`` (all
            cases must then share it).
        resize: how slices reach ``S x S``: ``"resize"`` (stretch; bilinear images, nearest
            labels) or ``"pad_crop"`` (centre zero-pad / crop); see
            :func:`jnet.data.nifti.fit_to_size`.
        normalize: ``"zscore"`` or ``"percentile"``, per case and channel over the non-zero
            voxels; see :func:`jnet.data.nifti.normalize_volume`.
        drop_empty: drop the slices whose mask is all background (the count is logged).

    Returns:
        :class:`SliceData` with images ``(N, C, S, S)``, masks ``(N, S, S)``, ``patient_id`` the
        case file name without ``.nii.gz`` (e.g. ``"prostate_00"``), ``slice_index`` the
        ``z`` index in the volume, and ``class_names`` the names of the output labels ``1..K``.

    Raises:
        FileNotFoundError: if ``root`` or ``dataset.json`` is missing.
        ValueError: on a malformed ``dataset.json``, missing or unpaired files, unreadable
            volumes, wrong dimensions, shape or affine mismatches, undeclared label values, a
            modality index that does not exist, NaN or constant volumes, or an empty result;
            the message names the file or case.
    """
    check_option("resize", resize, RESIZE_MODES)
    check_option("normalize", normalize, NORMALIZE_MODES)
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1):
        raise ValueError(f"size must be a positive integer or None, got {size!r}")
    chosen = _check_modalities(modalities)
    root = Path(root)
    json_path = root / "dataset.json"
    declared, modality_names, pairs = _read_dataset_json(root)
    table, class_names = _label_table(declared, label_map, json_path)
    _check_files(root, pairs)

    parts = []
    total: dict[str, int] = {}
    for case, image_path, label_path in pairs:
        mapped, channels = _read_case(case, image_path, label_path, chosen, modality_names, declared, table, json_path)
        images, masks, index, report = case_to_slices(
            channels, mapped, normalize=normalize, size=size, resize=resize, drop_empty=drop_empty
        )
        parts.append((case, images, masks, index))
        total = add_reports(total, report)
    if drop_empty:
        log_drop_report(str(root), total)
    return concat_cases(parts, class_names, source=str(root), dropped=total.get("dropped", 0))
