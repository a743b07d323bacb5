"""Bad data is refused, never accepted silently: one table of archives and folders written into
tmp_path, each with the one-line message it must raise; then the number of classes inferred
from the labels, and the cache, which must not hand back what the readers refuse."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jnet.cli import main
from jnet.data import SliceData, cached_load, load_data
from jnet.training.config import TrainConfig

S = 16
Writer = Callable[[Path], tuple[Path, dict[str, Any]]]


def _images(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 255, (n, S, S)).astype(np.uint8)


def _npz(masks: np.ndarray, images: np.ndarray | None = None, **extra: Any) -> Writer:
    """An archive of 4 slices (patients a, a, b, b) with these masks."""

    def write(tmp: Path) -> tuple[Path, dict[str, Any]]:
        path = tmp / "slices.npz"
        pid = np.array(["a", "a", "b", "b"])
        np.savez(path, images=_images() if images is None else images, masks=masks, patient_id=pid, **extra)
        return path, {}

    return write


def _masks(dtype: Any = np.uint8, **cells: Any) -> np.ndarray:
    """Four empty masks; ``s1=v`` puts the value v into a 2x3 block of slice 1."""
    m = np.zeros((4, S, S), dtype=dtype)
    for key, value in cells.items():
        m[int(key[1:]), 2:4, 3:6] = value
    return m


def _save_image(path: Path, array: np.ndarray) -> None:
    image = pytest.importorskip("PIL.Image")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.fromarray(array).save(path)


def _folder(masks: dict[str, np.ndarray], images: dict[str, np.ndarray] | None = None, **options: Any) -> Writer:
    """An image folder: one PNG image per mask (random unless given), masks as given (PNG or TIFF by suffix)."""

    def write(tmp: Path) -> tuple[Path, dict[str, Any]]:
        for i, (name, mask) in enumerate(sorted(masks.items())):
            stem = name.rsplit(".", 1)[0]
            given = (images or {}).get(stem)
            _save_image(tmp / "images" / f"{stem}.png", _images(1, seed=i)[0] if given is None else given)
            _save_image(tmp / "masks" / name, mask)
        return tmp, options

    return write


def _mask2d(value: Any = 1, dtype: Any = np.uint8) -> np.ndarray:
    m = np.zeros((S, S), dtype=dtype)
    m[4:8, 4:8] = value
    return m


def _nifti(path: Path, data: np.ndarray) -> None:
    nib = pytest.importorskip("nibabel")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4)), str(path))


def _volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1.0, 2.0, (S, S, 3)).astype(np.float32)


def _msd(label: np.ndarray, image: np.ndarray | None = None) -> Writer:
    def write(tmp: Path) -> tuple[Path, dict[str, Any]]:
        _nifti(tmp / "imagesTr" / "p_00.nii.gz", _volume() if image is None else image)
        _nifti(tmp / "labelsTr" / "p_00.nii.gz", label)
        meta = {"labels": {"0": "background", "1": "lesion"}, "modality": {"0": "T2"},
                "training": [{"image": "./imagesTr/p_00.nii.gz", "label": "./labelsTr/p_00.nii.gz"}]}  # fmt: skip
        (tmp / "dataset.json").write_text(json.dumps(meta))
        return tmp, {}

    return write


def _brats(seg: np.ndarray) -> Writer:
    def write(tmp: Path) -> tuple[Path, dict[str, Any]]:
        case = tmp / "BraTS20_Training_001"
        for i, mod in enumerate(("flair", "t1", "t1ce", "t2")):
            _nifti(case / f"BraTS20_Training_001_{mod}.nii.gz", _volume(i))
        _nifti(case / "BraTS20_Training_001_seg.nii.gz", seg)
        return tmp, {"size": S}

    return write


def _label(value: Any, dtype: Any) -> np.ndarray:
    label = np.zeros((S, S, 3), dtype=dtype)
    label[2:5, 3:6, 1] = value
    return label


_blank = _images()
_blank[:2] = 7  # patient a: both slices constant
_fg_blank = _images()
_fg_blank[1] = 0  # slice 1 blank, but its mask has foreground
_k4 = _masks(s1=1)
_k4[2, :2, :2], _k4[3, :3, :3] = 2, 3

NPZ = r"slices\.npz: "
CASES: list[tuple[str, Writer, str]] = [
    # .npz masks: what a cast to uint8 would corrupt
    ("npz-float-0.5", _npz(_masks(np.float32, s1=0.5)),
     NPZ + r"masks: value 0\.5 in 6 pixel\(s\) is not an integer label; masks must hold integer labels 0\.\.255"),
    ("npz-uint16-256", _npz(_masks(np.uint16, s1=256)), NPZ + r"masks: value 256 in 6 pixel\(s\) is above 255"),
    ("npz-negative", _npz(_masks(np.int16, s1=-1)), NPZ + r"masks: value -1 in 6 pixel\(s\) is negative"),
    ("npz-nan", _npz(_masks(np.float64, s1=np.nan)), NPZ + r"masks: value nan in 6 pixel\(s\) is not a number"),
    ("npz-text", _npz(_masks(np.uint8).astype(str)), NPZ + r"masks has dtype <U\d+; masks must hold integer labels"),
    # .npz labels: a gap, a label beyond the declared classes, a 0/255 mask
    ("npz-gap", _npz(_masks(s1=7)),
     NPZ + r"the labels are not 0\.\.K: label 7 is present \(first in slice 1 \(patient a\)\) but labels 1-6 are not; "
     r"pixels per label: 0: 1018, 7: 6"),
    ("npz-declared", _npz(_k4, class_names=np.array(["lesion"])),
     NPZ + r"label\(s\) \[2, 3\] beyond the 1 declared class\(es\) \['lesion'\], first in slice 2 \(patient b\); "
     r"pixels per label: 0: 1005, 1: 6, 2: 4, 3: 9"),
    ("npz-0-255", _npz(_masks(s1=255)), r"label 255 is present .* \(a 0/255 binary mask\? store it as 0/1\)"),
    # .npz images: constant, as the NIfTI readers refuse constant volumes
    ("npz-constant-archive", _npz(_masks(), images=np.full((4, S, S), 3, np.uint8)),
     NPZ + r"images: every image is constant in channel 0 \(4 slice\(s\)"),
    ("npz-constant-patient", _npz(_masks(), images=_blank),
     NPZ + r"images: every slice of patient a is constant in channel 0 \(2 slice"),
    ("npz-constant-foreground", _npz(_masks(s1=1), images=_fg_blank),
     r"images: slice 1 \(patient a\) is constant \(every pixel of channel 0 is 0\) but its mask has 6 foreground"),
    # image folders
    ("png-stray-label", _folder({"c__000.png": _mask2d(1), "c__001.png": _mask2d(7)}),
     r"label 7 is present \(first in .*masks/c__001\.png\) but labels 2-6 are not; "
     r"pixels per label: 0: 480, 1: 16, 7: 16"),
    ("png-declared", _folder({"c__000.png": _mask2d(1), "c__001.png": _mask2d(2)}, class_names=["lesion"]),
     r"label\(s\) \[2\] beyond the 1 declared class\(es\) \['lesion'\], first in .*masks/c__001\.png; "
     r"pixels per label: 0: 480, 1: 16, 2: 16"),
    ("tiff-negative", _folder({"c__000.tif": _mask2d(-1, np.int32)}),
     r"c__000\.tif: mask: value -1 in 16 pixel\(s\) is negative"),
    ("tiff-float", _folder({"c__000.tif": _mask2d(0.5, np.float32)}),
     r"c__000\.tif: mask: value 0\.5 in 16 pixel\(s\) is not an integer label"),
    ("png-constant-foreground",
     _folder({"a.png": _mask2d(1), "b.png": _mask2d(1)}, {"b": np.full((S, S), 9, np.uint8)}),
     r"images: .*images/b\.png is constant \(every pixel of channel 0 is 9\) but its mask has 16 foreground pixels"),
    ("png-all-constant", _folder({"a.png": _mask2d(0), "b.png": _mask2d(0)},
                                 {"a": np.zeros((S, S), np.uint8), "b": np.zeros((S, S), np.uint8)}),
     r"images: every image is constant in channel 0 \(2 slice\(s\)"),
    # NIfTI readers: negative and non-integer labels, constant volumes
    ("msd-negative", _msd(_label(-1, np.int16)),
     r"p_00\.nii\.gz has label values \[-1\] not declared .* voxels per value: -1: 9"),
    ("msd-float", _msd(_label(0.5, np.float32)),
     r"p_00\.nii\.gz: the label map has non-integer values, e\.g\. \[0\.5\] \(9 voxels"),
    ("msd-constant", _msd(_label(1, np.uint8), image=np.full((S, S, 3), 4, np.float32)), r"constant volume"),
    ("brats-negative", _brats(_label(-1, np.int16)),
     r"has label values \[-1\]; expected 0, 1, 2, 4 \(voxels per value: -1: 9\)"),
]  # fmt: skip


@pytest.mark.parametrize(("write", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_data_is_refused_in_one_line(write: Writer, fragment: str, tmp_path: Path) -> None:
    spec, options = write(tmp_path)
    with pytest.raises(ValueError, match=fragment) as err:
        load_data(spec, **options)
    assert "\n" not in str(err.value)


def test_the_cli_prints_the_refusal_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec, _ = _npz(_masks(np.int16, s1=-1))(tmp_path)
    assert main(["data", "--data", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(r"slices\.npz: masks: value -1 in 6 pixel\(s\) is negative", err)


def test_slice_data_refuses_unnamed_labels_and_other_dtypes() -> None:
    images, pid = np.zeros((2, 1, 4, 4), np.float32), np.array(["a", "b"])
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[1, 0, 0] = 3
    with pytest.raises(ValueError, match=r"the masks hold label 3 but class_names names 1 foreground class"):
        SliceData(images, masks, pid)  # e.g. synthetic data or a cache file whose names lag its labels
    with pytest.raises(ValueError, match=r"masks must be uint8 labels, got dtype int64"):
        SliceData(images, masks.astype(np.int64), pid, class_names=["a", "b", "c"])


# ---------------------------------------------------------------- inferring K


def test_npz_without_class_names_infers_k_from_the_labels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec, _ = _npz(_k4)(tmp_path)
    data = load_data(spec)
    assert data.class_names == ["class_1", "class_2", "class_3"]
    assert TrainConfig().model_num_classes(len(data.class_names)) == 4  # jnet train without --num-classes: K = 4
    assert main(["data", "--data", str(spec)]) == 0
    out = capsys.readouterr().out
    for k, share in ((1, 6), (2, 4), (3, 9)):  # no label vanishes from the summary
        assert f"label {k} class_{k}: {share / (4 * S * S):.3%} of pixels" in out
    declared = load_data(spec, class_names=["edema", "core", "ring"])
    assert declared.class_names == ["edema", "core", "ring"]


def test_binary_and_declared_sources_keep_their_names(tmp_path: Path) -> None:
    binary, _ = _npz(_masks(s1=1))(tmp_path)
    assert load_data(binary).class_names == ["foreground"]
    folder, options = _folder({"c__000.png": _mask2d(1), "c__001.png": _mask2d(2)}, class_names=["a", "b"])(
        tmp_path / "f"
    )
    assert load_data(folder, **options).class_names == ["a", "b"]
    assert load_data(folder).class_names == ["class_1", "class_2"]  # 0..2 all present: inferred
    kept = _images()
    kept[0] = 0  # one blank slice with an empty mask (the first slice of a scan): kept, z-scored to 0
    (tmp_path / "g").mkdir()
    data = load_data(_npz(_masks(s1=1), images=kept)(tmp_path / "g")[0])
    assert len(data) == 4 and not data.images[0].any()


def test_a_cache_file_that_disagrees_with_its_labels_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec, _ = _npz(_masks(s1=1))(tmp_path)
    cached_load(spec, tmp_path / "cache")
    (path,) = (tmp_path / "cache").iterdir()
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["masks"] = arrays["masks"] * 5  # label 5, one class name: never handed back
    np.savez(path, **arrays)
    with caplog.at_level(logging.WARNING, logger="jnet.data.cache"):
        data = cached_load(spec, tmp_path / "cache")
    assert "ignoring unreadable cache file" in caplog.text and "label 5" in caplog.text
    assert int(data.masks.max()) == 1
