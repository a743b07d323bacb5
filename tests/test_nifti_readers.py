"""NIfTI readers: shared helpers, the MSD task layout and the BraTS 2020 layout, on tiny files."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from jnet.data.brats import brats_region_masks, load_brats  # noqa: E402
from jnet.data.msd import load_msd  # noqa: E402
from jnet.data.nifti import (  # noqa: E402
    drop_empty_slices,
    fit_to_size,
    normalize_volume,
    read_volume,
    volume_to_slices,
)

X, Y, Z = 12, 10, 5  # MSD test volumes: non-square in-plane so a transpose cannot go unnoticed
PROSTATE_LABELS = {"0": "background", "1": "PZ", "2": "TZ"}


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def _square(z: int) -> tuple[slice, slice]:
    """The foreground square of slice ``z``: voxels x in [1+z, 3+z), y in [1, 3)."""
    return slice(1 + z, 3 + z), slice(1, 3)


def _label(shape: tuple[int, int, int], values: tuple[int, ...] = (1, 2), empty: tuple[int, ...] = ()) -> np.ndarray:
    """A label volume with a z-dependent square on each slice (label cycling through ``values``)."""
    label = np.zeros(shape, dtype=np.uint8)
    for z in range(shape[2]):
        if z not in empty:
            sx, sy = _square(z)
            label[sx, sy, z] = values[z % len(values)]
    return label


def _image(label: np.ndarray, seed: int, offset: float = 0.0) -> np.ndarray:
    """Noise in [1, 2) with a zero background row (y = 0) and a bright square where label > 0."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(1.0, 2.0, label.shape).astype(np.float32) + offset
    image[:, 0, :] = 0.0
    image[label > 0] = 10.0 + offset
    return image


def make_msd(
    root: Path,
    n_cases: int = 2,
    shape: tuple[int, int, int] = (X, Y, Z),
    n_mod: int = 1,
    labels: dict[str, str] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write an MSD-layout task folder; returns ``{case: (image, label)}`` as written."""
    modality = {"0": "T2", "1": "ADC", "2": "DWI"}
    cases = {}
    training = []
    for i in range(n_cases):
        case = f"prostate_{i:02d}"
        label = _label(shape)
        if n_mod == 1:
            image = _image(label, seed=i)
        else:  # modality m: its own noise, offset by 100 m
            image = np.stack([_image(label, seed=10 * i + m, offset=100.0 * m) for m in range(n_mod)], axis=-1)
        _save(root / "imagesTr" / f"{case}.nii.gz", image)
        _save(root / "labelsTr" / f"{case}.nii.gz", label)
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
        cases[case] = (image, label)
    meta = {
        "name": "Prostate",
        "modality": {str(m): modality[str(m)] for m in range(n_mod)},
        "labels": PROSTATE_LABELS if labels is None else labels,
        "numTraining": n_cases,
        "training": training,
        "test": [],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return cases


BRATS_SHAPE = (12, 12, 6)  # the 240 x 240 x 155 analogue; padded to 16 like 240 -> 256
BRATS_MODS = ("flair", "t1", "t1ce", "t2")


def _brats_seg(shape: tuple[int, int, int]) -> np.ndarray:
    """Per slice: an ED (2) square with an NCR (1) pixel and an ET (4) pixel inside; slice 0 empty."""
    seg = np.zeros(shape, dtype=np.uint8)
    for z in range(1, shape[2]):
        sx, sy = _square(z)
        seg[sx.start : sx.stop + 1, sy.start : sy.stop + 1, z] = 2  # 3 x 3 square
        seg[sx.start, sy.start, z] = 1
        seg[sx.start + 1, sy.start + 1, z] = 4
    return seg


def make_brats(root: Path, n_cases: int = 2, shape: tuple[int, int, int] = BRATS_SHAPE) -> dict[str, dict]:
    """Write a BraTS-layout folder; returns ``{case: {"seg": ..., "flair": ..., ...}}``."""
    cases = {}
    for i in range(n_cases):
        case = f"BraTS20_Training_{i + 1:03d}"
        seg = _brats_seg(shape)
        vols = {"seg": seg}
        _save(root / case / f"{case}_seg.nii.gz", seg)
        for j, mod in enumerate(BRATS_MODS):
            vols[mod] = _image(seg, seed=100 * i + j, offset=10.0 * j)
            _save(root / case / f"{case}_{mod}.nii.gz", vols[mod])
        cases[case] = vols
    return cases


def _as_slices(volume: np.ndarray) -> np.ndarray:
    """The documented convention: slice z is volume[:, :, z].T."""
    return np.stack([volume[:, :, z].T for z in range(volume.shape[2])])


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def test_read_volume_returns_data_and_affine(tmp_path: Path) -> None:
    affine = np.diag([0.5, 0.6, 3.0, 1.0])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    data = np.arange(X * Y * Z, dtype=np.int16).reshape(X, Y, Z)
    path = _save(tmp_path / "v.nii.gz", data, affine)
    image, aff = read_volume(path)
    assert image.dtype == np.float32 and np.array_equal(image, data)
    np.testing.assert_allclose(aff, affine)
    label, _ = read_volume(_save(tmp_path / "l.nii", data.astype(np.float64)), labels=True)
    assert label.dtype == np.int32 and np.array_equal(label, data)


def test_read_volume_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.nii\.gz: no such file"):
        read_volume(tmp_path / "nope.nii.gz")


def test_read_volume_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "junk.nii.gz"
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(ValueError, match=r"^.*junk\.nii\.gz: truncated or corrupt \.nii\.gz"):
        read_volume(path)
    path = tmp_path / "junk.nii"
    path.write_bytes(np.random.default_rng(1).bytes(3000))
    with pytest.raises(ValueError, match=r"junk\.nii: truncated or corrupt NIfTI file"):
        read_volume(path)


@pytest.mark.parametrize("name", ["half.nii.gz", "half.nii"])
def test_read_volume_truncated(tmp_path: Path, name: str) -> None:
    full = _save(tmp_path / f"full_{name}", np.random.default_rng(0).random((X, Y, Z)).astype(np.float32))
    raw = full.read_bytes()
    path = tmp_path / name
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=re.escape(name) + ": truncated or corrupt"):
        read_volume(path)


def test_read_volume_non_integer_labels(tmp_path: Path) -> None:
    data = np.zeros((X, Y, Z), dtype=np.float32)
    data[1, 1, 1] = 0.5
    with pytest.raises(ValueError, match=r"lab\.nii\.gz: the label map has non-integer values, e\.g\. \[0\.5\]"):
        read_volume(_save(tmp_path / "lab.nii.gz", data), labels=True)


def test_missing_nibabel_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(ImportError, match=r'pip install "jnet\[nifti\]"'):
        read_volume(tmp_path / "x.nii.gz")


def test_volume_to_slices_orientation() -> None:
    vol = np.zeros((X, Y, Z), dtype=np.float32)
    vol[7, 2, 3] = 1.0  # x = 7, y = 2, z = 3
    slices, index = volume_to_slices(vol)
    assert slices.shape == (Z, Y, X) and np.array_equal(index, np.arange(Z))
    assert slices[3, 2, 7] == 1.0 and slices.sum() == 1.0  # row = y, col = x
    four, _ = volume_to_slices(np.stack([vol, 2 * vol], axis=-1))
    assert four.shape == (Z, 2, Y, X) and four[3, 1, 2, 7] == 2.0


def test_normalize_volume_zscore_and_percentile() -> None:
    rng = np.random.default_rng(0)
    vol = rng.uniform(5.0, 50.0, (X, Y, Z)).astype(np.float32)
    vol[:3] = 0.0  # background
    out = normalize_volume(vol, "zscore")
    nz = vol != 0
    assert np.all(out[~nz] == 0)
    assert abs(out[nz].mean()) < 1e-5 and abs(out[nz].std() - 1) < 1e-5
    np.testing.assert_allclose(out[nz], (vol[nz] - vol[nz].mean()) / vol[nz].std(), rtol=1e-4, atol=1e-5)
    pct = normalize_volume(vol, "percentile")
    lo, hi = np.percentile(vol[nz], [0.5, 99.5])
    assert np.all(pct[~nz] == 0) and pct.min() == 0 and pct.max() == 1
    np.testing.assert_allclose(pct[nz], (np.clip(vol[nz], lo, hi) - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown normalize 'minmax'"):
        normalize_volume(vol, "minmax")


def test_normalize_volume_rejects_nan_and_constant() -> None:
    vol = np.ones((X, Y, Z), dtype=np.float32)
    with pytest.raises(ValueError, match=r"^a\.nii: constant volume"):
        normalize_volume(vol, name="a.nii")
    with pytest.raises(ValueError, match=r"^a\.nii: constant volume"):
        normalize_volume(vol, "percentile", name="a.nii")
    with pytest.raises(ValueError, match=r"^b\.nii: constant volume \(every voxel is 0\)"):
        normalize_volume(np.zeros_like(vol), name="b.nii")
    vol[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"^c\.nii: contains 1 NaN"):
        normalize_volume(vol, name="c.nii")


def test_fit_to_size_pad_crop() -> None:
    images = np.arange(2 * 12 * 10, dtype=np.float32).reshape(2, 1, 12, 10) + 1
    masks = (images[:, 0] % 3).astype(np.uint8)
    out, m = fit_to_size(images, masks, 16, "pad_crop")  # 12 x 10 -> 16 x 16: pad 2/2 rows, 3/3 cols
    assert out.shape == (2, 1, 16, 16) and m.shape == (2, 16, 16) and m.dtype == np.uint8
    assert np.array_equal(out[:, :, 2:14, 3:13], images) and out.sum() == images.sum()
    assert np.array_equal(m[:, 2:14, 3:13], masks) and m.sum() == masks.sum()
    big = np.arange(1 * 1 * 20 * 13, dtype=np.float32).reshape(1, 1, 20, 13)
    out, m = fit_to_size(big, np.ones((1, 20, 13), np.uint8), 16, "pad_crop")  # crop 2/2 rows, pad 1/2 cols
    assert np.array_equal(out[0, 0, :, 1:14], big[0, 0, 2:18]) and np.all(out[0, 0, :, [0, 14, 15]] == 0)
    assert m[0, :, 1:14].all() and not m[0, :, [0, 14, 15]].any()


def test_fit_to_size_resize_uses_nearest_labels() -> None:
    rng = np.random.default_rng(0)
    masks = rng.choice(np.array([0, 1, 4], dtype=np.uint8), size=(3, 12, 10))
    images = np.full((3, 2, 12, 10), 3.0, dtype=np.float32)
    for size in (16, 7):  # up and down, non-square input
        out, m = fit_to_size(images, masks, size, "resize")
        assert out.shape == (3, 2, size, size) and m.shape == (3, size, size)
        assert set(np.unique(m)) <= {0, 1, 4}  # nothing in between
        np.testing.assert_allclose(out, 3.0, rtol=1e-6)  # bilinear keeps a constant
    ramp = np.tile(np.arange(4, dtype=np.float32), (1, 1, 4, 1))  # 4 x 4 -> 8 x 8 bilinear: half steps
    out, m = fit_to_size(ramp, np.zeros((1, 4, 4), np.uint8), 8, "resize")
    np.testing.assert_allclose(out[0, 0, 0], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3], atol=1e-6)
    two = np.zeros((1, 4, 4), np.uint8)
    two[:, :, 2:] = 2
    _, m = fit_to_size(ramp, two, 8, "resize")
    assert np.array_equal(m[0, 0], [0, 0, 0, 0, 2, 2, 2, 2])
    three = np.array([[[0, 1, 2]] * 3], np.uint8)  # 3 -> 5 by pixel centres: 0.3, 0.9, 1.5, 2.1, 2.7
    _, m = fit_to_size(np.zeros((1, 1, 3, 3), np.float32), three, 5, "resize")
    assert np.array_equal(m[0, 0], [0, 0, 1, 2, 2])
    with pytest.raises(ValueError, match="unknown resize 'cubic'"):
        fit_to_size(images, masks, 16, "cubic")


def test_drop_empty_slices_report() -> None:
    masks = np.zeros((4, 3, 3), np.uint8)
    masks[1, 0, 0] = masks[3, 2, 2] = 1
    images = np.arange(4, dtype=np.float32)[:, None, None, None] * np.ones((4, 1, 3, 3), np.float32)
    im, m, idx, report = drop_empty_slices(images, masks, np.arange(4))
    assert report == {"slices": 4, "dropped": 2, "kept": 2}
    assert np.array_equal(idx, [1, 3]) and np.array_equal(im[:, 0, 0, 0], [1, 3]) and len(m) == 2


# --------------------------------------------------------------------------------------------
# MSD
# --------------------------------------------------------------------------------------------


def test_msd_slices_orientation_pairing_and_normalisation(tmp_path: Path) -> None:
    cases = make_msd(tmp_path, n_cases=2)
    data = load_msd(tmp_path)
    assert len(data) == 2 * Z
    assert data.images.shape == (2 * Z, 1, Y, X) and data.images.dtype == np.float32
    assert data.masks.shape == (2 * Z, Y, X) and data.masks.dtype == np.uint8
    assert data.patient_id.tolist() == ["prostate_00"] * Z + ["prostate_01"] * Z
    assert data.slice_index.tolist() == list(range(Z)) * 2
    assert data.class_names == ["PZ", "TZ"]
    for n in range(len(data)):
        z = int(data.slice_index[n])
        expected = np.zeros((Y, X), np.uint8)  # the documented layout: rows = y, cols = x
        expected[1:3, 1 + z : 3 + z] = 1 + z % 2
        assert np.array_equal(data.masks[n], expected), n
        bright = data.images[n, 0] == data.images[n, 0].max()  # the image's square is its own slice's
        assert np.array_equal(bright, expected > 0), n
        assert np.all(data.images[n, 0, 0] == 0)  # the zero background row y = 0 stays 0
    for case, (image, label) in cases.items():  # per-volume z-score over the non-zero voxels
        got = data.images[data.patient_id == case, 0]
        nz = _as_slices(image) != 0
        assert abs(got[nz].mean()) < 1e-5 and abs(got[nz].std() - 1) < 1e-5
        assert np.array_equal(data.masks[data.patient_id == case], _as_slices(label))


def test_msd_percentile_normalisation(tmp_path: Path) -> None:
    make_msd(tmp_path, n_cases=1)
    data = load_msd(tmp_path, normalize="percentile")
    assert data.images.min() == 0 and data.images.max() == 1


def test_msd_modality_selection(tmp_path: Path) -> None:
    cases = make_msd(tmp_path, n_cases=2, n_mod=2)
    both = load_msd(tmp_path)
    assert both.images.shape == (2 * Z, 2, Y, X)
    adc = load_msd(tmp_path, modalities=[1])
    assert adc.images.shape == (2 * Z, 1, Y, X)
    for case, (image, _) in cases.items():
        expected = _as_slices(normalize_volume(image[..., 1]))
        np.testing.assert_allclose(adc.images[adc.patient_id == case, 0], expected, atol=1e-6)
        np.testing.assert_allclose(both.images[both.patient_id == case, 1], expected, atol=1e-6)
        t2 = _as_slices(normalize_volume(image[..., 0]))
        np.testing.assert_allclose(both.images[both.patient_id == case, 0], t2, atol=1e-6)
        assert not np.allclose(t2, expected)


def test_msd_modality_index_that_does_not_exist(tmp_path: Path) -> None:
    make_msd(tmp_path, n_mod=2)
    with pytest.raises(ValueError, match=r"case prostate_00: modality index 2 does not exist; available: 0 \(T2\), 1 "):
        load_msd(tmp_path, modalities=[0, 2])


def test_msd_label_map_merges_and_renames(tmp_path: Path) -> None:
    make_msd(tmp_path)
    raw = load_msd(tmp_path)
    merged = load_msd(tmp_path, label_map={1: 1, 2: 1})
    assert merged.class_names == ["PZ+TZ"]
    assert np.array_equal(merged.masks, (raw.masks > 0).astype(np.uint8))
    swapped = load_msd(tmp_path, label_map={1: 2, 2: 1})
    assert swapped.class_names == ["TZ", "PZ"]
    assert np.array_equal(swapped.masks, np.array([0, 2, 1], np.uint8)[raw.masks])
    tz_only = load_msd(tmp_path, label_map={1: 0, 2: 1})
    assert tz_only.class_names == ["TZ"] and np.array_equal(tz_only.masks, (raw.masks == 2).astype(np.uint8))


def test_msd_label_map_errors(tmp_path: Path) -> None:
    make_msd(tmp_path)
    with pytest.raises(ValueError, match=r"not covered: 2 \(TZ\)"):
        load_msd(tmp_path, label_map={1: 1})
    with pytest.raises(ValueError, match=r"without gaps, got \[1, 3\]"):
        load_msd(tmp_path, label_map={1: 1, 2: 3})
    with pytest.raises(ValueError, match=r"labels \[5\] are not declared"):
        load_msd(tmp_path, label_map={1: 1, 2: 1, 5: 1})
    with pytest.raises(ValueError, match="background 0 must stay 0"):
        load_msd(tmp_path, label_map={0: 1, 1: 1, 2: 1})


def test_msd_resize_and_pad_to_common_size(tmp_path: Path) -> None:
    make_msd(tmp_path)
    raw = load_msd(tmp_path)
    for size in (16, 8):
        data = load_msd(tmp_path, size=size, resize="resize")
        assert data.images.shape == (2 * Z, 1, size, size) and data.masks.shape == (2 * Z, size, size)
        assert set(np.unique(data.masks)) <= {0, 1, 2}  # nearest: labels stay in the declared set
        assert set(np.unique(data.masks)) == {0, 1, 2}
    padded = load_msd(tmp_path, size=16, resize="pad_crop")  # 10 x 12 -> 16 x 16: 3/3 rows, 2/2 cols
    assert np.array_equal(padded.masks[:, 3:13, 2:14], raw.masks) and padded.masks.sum() == raw.masks.sum()
    np.testing.assert_allclose(padded.images[:, :, 3:13, 2:14], raw.images)


def test_msd_different_slice_sizes_need_size(tmp_path: Path) -> None:
    make_msd(tmp_path, n_cases=2)
    label = _label((14, Y, Z))
    _save(tmp_path / "imagesTr" / "prostate_01.nii.gz", _image(label, seed=3))
    _save(tmp_path / "labelsTr" / "prostate_01.nii.gz", label)
    with pytest.raises(ValueError, match=r"prostate_00: 10x12, prostate_01: 10x14.*pass size="):
        load_msd(tmp_path)
    data = load_msd(tmp_path, size=16)
    assert data.images.shape == (2 * Z, 1, 16, 16)


def test_msd_drop_empty_logs_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_msd(tmp_path, n_cases=2)
    label = _label((X, Y, Z), empty=(0, 3))
    _save(tmp_path / "labelsTr" / "prostate_01.nii.gz", label)
    assert len(load_msd(tmp_path)) == 2 * Z  # off by default
    with caplog.at_level(logging.INFO, logger="jnet.data.nifti"):
        data = load_msd(tmp_path, drop_empty=True)
    assert len(data) == 2 * Z - 2
    assert data.slice_index[data.patient_id == "prostate_01"].tolist() == [1, 2, 4]
    assert "drop_empty removed 2 of 10 slices" in caplog.text


def test_msd_empty_after_drop_empty(tmp_path: Path) -> None:
    make_msd(tmp_path, n_cases=1)
    _save(tmp_path / "labelsTr" / "prostate_00.nii.gz", np.zeros((X, Y, Z), np.uint8))
    with pytest.raises(ValueError, match=r"empty dataset: no slices after drop_empty removed 5"):
        load_msd(tmp_path, drop_empty=True)


def test_msd_no_training_cases(tmp_path: Path) -> None:
    make_msd(tmp_path, n_cases=1)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["training"] = []
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r'dataset\.json: empty dataset: "training" lists no cases'):
        load_msd(tmp_path)


def test_msd_missing_or_bad_dataset_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"dataset\.json: no such file"):
        load_msd(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"dataset\.json: not valid JSON"):
        load_msd(tmp_path)


def test_msd_missing_label(tmp_path: Path) -> None:
    make_msd(tmp_path)
    (tmp_path / "labelsTr" / "prostate_01.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"case prostate_01: image .*prostate_01\.nii\.gz has no label: .*labelsTr"):
        load_msd(tmp_path)


def test_msd_missing_image(tmp_path: Path) -> None:
    make_msd(tmp_path)
    (tmp_path / "imagesTr" / "prostate_00.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"case prostate_00: label .* has no image: .*imagesTr.prostate_00\.nii\.gz"):
        load_msd(tmp_path)


def test_msd_dataset_json_lists_missing_files(tmp_path: Path) -> None:
    make_msd(tmp_path)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["training"].append({"image": "./imagesTr/ghost.nii.gz", "label": "./labelsTr/ghost.nii.gz"})
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"lists files that do not exist:\ncase ghost: neither .*ghost\.nii\.gz"):
        load_msd(tmp_path)


def test_msd_unpaired_files_in_folders(tmp_path: Path) -> None:
    make_msd(tmp_path)
    extra = _save(tmp_path / "imagesTr" / "prostate_09.nii.gz", np.ones((X, Y, Z), np.float32))
    with pytest.raises(ValueError, match=r"imagesTr.prostate_09\.nii\.gz: image has no label"):
        load_msd(tmp_path)
    extra.unlink()
    _save(tmp_path / "labelsTr" / "prostate_08.nii.gz", np.zeros((X, Y, Z), np.uint8))
    with pytest.raises(ValueError, match=r"labelsTr.prostate_08\.nii\.gz: label has no image"):
        load_msd(tmp_path)
    (tmp_path / "imagesTr" / "._prostate_00.nii.gz").write_bytes(b"macOS resource fork")  # ignored
    (tmp_path / "labelsTr" / "prostate_08.nii.gz").unlink()
    assert len(load_msd(tmp_path)) == 2 * Z


def test_msd_shape_mismatch(tmp_path: Path) -> None:
    make_msd(tmp_path)
    _save(tmp_path / "labelsTr" / "prostate_01.nii.gz", _label((X, Y, Z + 1)))
    with pytest.raises(
        ValueError, match=r"case prostate_01: spatial shapes differ: .* is \(12, 10, 5\), .* \(12, 10, 6\)"
    ):
        load_msd(tmp_path)


def test_msd_affine_mismatch(tmp_path: Path) -> None:
    cases = make_msd(tmp_path)
    shifted = np.eye(4)
    shifted[0, 3] = 1.5
    _save(tmp_path / "labelsTr" / "prostate_00.nii.gz", cases["prostate_00"][1], shifted)
    with pytest.raises(ValueError, match=r"(?s)case prostate_00: affines differ.*prostate_00.*1\.5"):
        load_msd(tmp_path)
    _save(tmp_path / "labelsTr" / "prostate_00.nii.gz", cases["prostate_00"][1], np.eye(4) + 1e-5)
    assert len(load_msd(tmp_path)) == 2 * Z  # within the tolerance


def test_msd_undeclared_label_values(tmp_path: Path) -> None:
    make_msd(tmp_path)
    label = _label((X, Y, Z), values=(1, 3, 7))
    _save(tmp_path / "labelsTr" / "prostate_01.nii.gz", label)
    with pytest.raises(ValueError, match=r"case prostate_01: .* has label values \[3, 7\] not declared"):
        load_msd(tmp_path)


def test_msd_2d_image_and_4d_label(tmp_path: Path) -> None:
    make_msd(tmp_path)
    _save(tmp_path / "imagesTr" / "prostate_01.nii.gz", np.ones((X, Y), np.float32))
    with pytest.raises(ValueError, match=r"imagesTr.prostate_01\.nii\.gz: expected a 3D .* got shape \(12, 10\)"):
        load_msd(tmp_path)
    make_msd(tmp_path)
    _save(tmp_path / "labelsTr" / "prostate_00.nii.gz", np.zeros((X, Y, Z, 2), np.uint8))
    with pytest.raises(ValueError, match=r"labelsTr.prostate_00\.nii\.gz: expected a 3D .* label map"):
        load_msd(tmp_path)


def test_msd_modality_count_disagrees_with_dataset_json(tmp_path: Path) -> None:
    make_msd(tmp_path, n_mod=2)
    cases = make_msd(tmp_path / "other", n_mod=1)
    _save(tmp_path / "imagesTr" / "prostate_00.nii.gz", cases["prostate_00"][0])
    with pytest.raises(ValueError, match=r"prostate_00\.nii\.gz: holds 1 modalities .* declares 2"):
        load_msd(tmp_path)


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_msd_corrupt_image(tmp_path: Path, damage: str) -> None:
    make_msd(tmp_path)
    path = tmp_path / "imagesTr" / "prostate_01.nii.gz"
    raw = path.read_bytes()
    path.write_bytes(np.random.default_rng(0).bytes(len(raw)) if damage == "random" else raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"imagesTr.prostate_01\.nii\.gz: truncated or corrupt \.nii\.gz"):
        load_msd(tmp_path)


def test_msd_nan_and_constant_volumes(tmp_path: Path) -> None:
    cases = make_msd(tmp_path)
    image = cases["prostate_01"][0].copy()
    image[3, 3, 3] = np.nan
    _save(tmp_path / "imagesTr" / "prostate_01.nii.gz", image)
    with pytest.raises(ValueError, match=r"imagesTr.prostate_01\.nii\.gz \[modality 0 T2\]: contains 1 NaN"):
        load_msd(tmp_path)
    _save(tmp_path / "imagesTr" / "prostate_01.nii.gz", np.full((X, Y, Z), 7.0, np.float32))
    with pytest.raises(ValueError, match=r"imagesTr.prostate_01\.nii\.gz \[modality 0 T2\]: constant volume"):
        load_msd(tmp_path)


def test_msd_bad_options(tmp_path: Path) -> None:
    make_msd(tmp_path)
    with pytest.raises(ValueError, match="unknown resize 'stretch'"):
        load_msd(tmp_path, resize="stretch")
    with pytest.raises(ValueError, match="unknown normalize 'none'"):
        load_msd(tmp_path, normalize="none")
    with pytest.raises(ValueError, match="size must be a positive integer"):
        load_msd(tmp_path, size=0)


# --------------------------------------------------------------------------------------------
# BraTS
# --------------------------------------------------------------------------------------------


def test_brats_labels_padding_and_channels(tmp_path: Path) -> None:
    cases = make_brats(tmp_path, n_cases=2)
    (tmp_path / "name_mapping.csv").write_text("not a case\n")  # files next to the cases are ignored
    (tmp_path / "notes").mkdir()  # a folder without NIfTI files is not a case
    data = load_brats(tmp_path, size=16)
    n = 2 * BRATS_SHAPE[2]
    assert data.images.shape == (n, 4, 16, 16) and data.masks.shape == (n, 16, 16)
    assert data.class_names == ["NCR/NET", "ED", "ET"]
    assert sorted(set(data.patient_id.tolist())) == sorted(cases)
    assert data.slice_index.tolist() == list(range(BRATS_SHAPE[2])) * 2
    for case, vols in cases.items():
        sel = data.patient_id == case
        expected = np.array([0, 1, 2, 0, 3], np.uint8)[_as_slices(vols["seg"])]  # 0/1/2/4 -> 0/1/2/3
        assert np.array_equal(data.masks[sel][:, 2:14, 2:14], expected)  # 12 -> 16: 2 pixels each side
        assert data.masks[sel].sum() == expected.sum()
        for c, mod in enumerate(BRATS_MODS):
            np.testing.assert_allclose(
                data.images[sel, c, 2:14, 2:14], _as_slices(normalize_volume(vols[mod])), atol=1e-6
            )
        assert np.all(data.images[sel][:, :, :2] == 0) and np.all(data.images[sel][:, :, :, 14:] == 0)
    z = 2  # slice 2 of the first case: NCR at (x, y) = (3, 1), ET at (4, 2), padded by 2
    first = data.masks[(data.patient_id == "BraTS20_Training_001") & (data.slice_index == z)][0]
    assert first[1 + 2, 3 + 2] == 1 and first[2 + 2, 4 + 2] == 3 and first[1 + 2, 4 + 2] == 2


def test_brats_modality_subset_and_order(tmp_path: Path) -> None:
    cases = make_brats(tmp_path, n_cases=1)
    data = load_brats(tmp_path, modalities=("t2", "flair"), size=12)
    vols = cases["BraTS20_Training_001"]
    assert data.images.shape == (BRATS_SHAPE[2], 2, 12, 12)
    np.testing.assert_allclose(data.images[:, 0], _as_slices(normalize_volume(vols["t2"])), atol=1e-6)
    np.testing.assert_allclose(data.images[:, 1], _as_slices(normalize_volume(vols["flair"])), atol=1e-6)
    with pytest.raises(ValueError, match="unknown BraTS modality 'dwi'"):
        load_brats(tmp_path, modalities=("dwi",))


def test_brats_regions_are_nested(tmp_path: Path) -> None:
    cases = make_brats(tmp_path, n_cases=1)
    sub = load_brats(tmp_path, size=12)
    reg = load_brats(tmp_path, size=12, regions=True)
    assert reg.class_names == ["WT", "TC", "ET"]
    seg = _as_slices(cases["BraTS20_Training_001"]["seg"])
    assert np.array_equal(reg.masks, np.array([0, 2, 1, 0, 3], np.uint8)[seg])  # ED 1, NCR 2, ET 3
    regions = brats_region_masks(reg.masks, nested=True)
    assert regions.shape == (len(reg), 3, 12, 12)
    assert np.array_equal(regions[:, 0], seg > 0)  # WT = 1, 2, 4
    assert np.array_equal(regions[:, 1], (seg == 1) | (seg == 4))  # TC = 1, 4
    assert np.array_equal(regions[:, 2], seg == 4)  # ET = 4
    assert np.array_equal(brats_region_masks(sub.masks, nested=False), regions)


def test_brats_resize_keeps_labels(tmp_path: Path) -> None:
    make_brats(tmp_path, n_cases=1)
    data = load_brats(tmp_path, size=20, resize="resize")
    assert data.masks.shape == (BRATS_SHAPE[2], 20, 20)
    assert set(np.unique(data.masks)) == {0, 1, 2, 3}


def test_brats_drop_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_brats(tmp_path, n_cases=2)
    with caplog.at_level(logging.INFO, logger="jnet.data.nifti"):
        data = load_brats(tmp_path, size=16, drop_empty=True)
    assert len(data) == 2 * (BRATS_SHAPE[2] - 1) and 0 not in data.slice_index
    assert "drop_empty removed 2 of 12 slices" in caplog.text


def test_brats_missing_seg(tmp_path: Path) -> None:
    make_brats(tmp_path)
    (tmp_path / "BraTS20_Training_002" / "BraTS20_Training_002_seg.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"case BraTS20_Training_002: no segmentation .*BraTS20_Training_002_seg"):
        load_brats(tmp_path)


def test_brats_missing_modality(tmp_path: Path) -> None:
    make_brats(tmp_path)
    (tmp_path / "BraTS20_Training_001" / "BraTS20_Training_001_t1ce.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"case BraTS20_Training_001: missing modality 't1ce': no .*_t1ce\.nii\.gz"):
        load_brats(tmp_path)
    assert load_brats(tmp_path, modalities=("flair", "t2"), size=16).images.shape[1] == 2  # not needed


def test_brats_label_3(tmp_path: Path) -> None:
    cases = make_brats(tmp_path)
    seg = cases["BraTS20_Training_002"]["seg"].copy()
    seg[seg == 4] = 3
    _save(tmp_path / "BraTS20_Training_002" / "BraTS20_Training_002_seg.nii.gz", seg)
    with pytest.raises(ValueError, match=r"case BraTS20_Training_002: .* has label values \[3\]; expected 0, 1, 2, 4"):
        load_brats(tmp_path)


def test_brats_shape_and_affine_mismatch(tmp_path: Path) -> None:
    cases = make_brats(tmp_path)
    path = tmp_path / "BraTS20_Training_001" / "BraTS20_Training_001_t2.nii.gz"
    _save(path, np.ones((12, 12, 5), np.float32))
    with pytest.raises(ValueError, match=r"case BraTS20_Training_001: spatial shapes differ: .*t2.* \(12, 12, 5\)"):
        load_brats(tmp_path)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    _save(path, cases["BraTS20_Training_001"]["t2"], affine)
    with pytest.raises(ValueError, match=r"case BraTS20_Training_001: affines differ"):
        load_brats(tmp_path)


def test_brats_no_cases(tmp_path: Path) -> None:
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(ValueError, match="empty dataset: no BraTS case folders"):
        load_brats(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_brats(tmp_path / "missing")
