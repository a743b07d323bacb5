"""Data sources: image folders, the one-argument ``load_data``, and the prepared-data cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from jnet.data import cache as cache_mod
from jnet.data import sources
from jnet.data.cache import cache_key, cached_load
from jnet.data.images import load_image_folder
from jnet.data.prepare import SliceData
from jnet.data.sources import load_data, resolve_source


def _square(n: int, size: int = 16) -> np.ndarray:
    """A binary mask with a 4x4 square whose column encodes ``n``."""
    m = np.zeros((size, size), dtype=np.uint8)
    m[4:8, n : n + 4] = 1
    return m


def _save(path: Path, array: np.ndarray) -> None:
    """Write a PNG/TIFF (the tests that write image files are skipped without Pillow)."""
    image = pytest.importorskip("PIL.Image")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.fromarray(array).save(path)


def make_image_folder(root: Path, size: int = 16) -> Path:
    """case01: two 8-bit PNG slices (masks 0/255); case02: a float TIFF image with a label TIFF mask."""
    for k in (1, 0):  # written out of order: the loader sorts by patient and slice
        m = _square(k, size)
        _save(root / "images" / f"case01__00{k}.png", (40 + 150 * m).astype(np.uint8))
        _save(root / "masks" / f"case01__00{k}.png", (255 * m).astype(np.uint8))
    m = _square(5, size) * 2  # label 2
    _save(root / "images" / "case02__000.tif", (1000.0 + 500.0 * m).astype(np.float32))
    _save(root / "masks" / "case02__000.tiff", m)
    (root / "images" / ".DS_Store").write_bytes(b"junk")  # hidden files are ignored
    return root


# ---------------------------------------------------------------- image folders


def test_image_folder_png_and_tiff(tmp_path: Path) -> None:
    data = load_image_folder(make_image_folder(tmp_path))
    assert data.images.shape == (3, 1, 16, 16) and data.images.dtype == np.float32
    assert data.patient_id.tolist() == ["case01", "case01", "case02"]
    assert data.slice_index.tolist() == [0, 1, 0]
    assert data.masks.dtype == np.uint8
    np.testing.assert_array_equal(data.masks[0], _square(0))
    np.testing.assert_array_equal(data.masks[1], _square(1))
    np.testing.assert_array_equal(data.masks[2], 2 * _square(5))
    assert data.class_names == ["class_1", "class_2"]
    # the bright square of each image is its mask; slices are z-scored
    for x, m in zip(data.images[:, 0], data.masks, strict=True):
        assert x[m > 0].min() > x[m == 0].max()
        assert abs(float(x.mean())) < 1e-5


def test_image_folder_stem_without_patient_part_and_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    rgb[2:4, 2:4] = 255
    _save(tmp_path / "images" / "scan_a.png", rgb)
    _save(tmp_path / "images" / "scan_b.png", rgb[..., 1].copy())
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:4, 2:4] = 1
    _save(tmp_path / "masks" / "scan_a.png", mask)
    _save(tmp_path / "masks" / "scan_b.png", np.stack([mask] * 3, axis=-1))  # grey stored as RGB
    data = load_image_folder(tmp_path)
    assert data.images.shape == (2, 1, 8, 8)  # colour -> one grey channel
    assert data.patient_id.tolist() == ["scan_a", "scan_b"]  # each image its own patient
    assert data.slice_index.tolist() == [0, 0]
    assert data.class_names == ["foreground"]
    assert (data.masks == mask).all()


def test_image_folder_sizes_and_drop_empty(tmp_path: Path) -> None:
    make_image_folder(tmp_path)
    big = np.zeros((32, 32), dtype=np.uint8)
    _save(tmp_path / "images" / "case03__000.png", big)
    _save(tmp_path / "masks" / "case03__000.png", big)
    with pytest.raises(ValueError, match=r"case03__000\.png: 32x32 differs .*size="):
        load_image_folder(tmp_path)
    data = load_image_folder(tmp_path, size=24)
    assert data.images.shape == (4, 1, 24, 24) and data.masks.shape == (4, 24, 24)
    assert set(np.unique(data.masks)) == {0, 1, 2}  # nearest: labels stay labels
    kept = load_image_folder(tmp_path, size=24, drop_empty=True)
    assert kept.patient_id.tolist() == ["case01", "case01", "case02"]


def test_image_folder_missing_mask(tmp_path: Path) -> None:
    make_image_folder(tmp_path)
    (tmp_path / "masks" / "case01__001.png").unlink()
    with pytest.raises(ValueError, match=r"case01__001\.png: no mask"):
        load_image_folder(tmp_path)


def test_image_folder_missing_image(tmp_path: Path) -> None:
    make_image_folder(tmp_path)
    (tmp_path / "images" / "case02__000.tif").unlink()
    with pytest.raises(ValueError, match=r"case02__000\.tiff: no image"):
        load_image_folder(tmp_path)


def test_image_folder_size_mismatch(tmp_path: Path) -> None:
    make_image_folder(tmp_path)
    _save(tmp_path / "masks" / "case01__000.png", np.zeros((16, 12), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"case01__000\.png: image is 16x16 but its mask .* is 12x16"):
        load_image_folder(tmp_path, size=16)  # even with size: never resized into agreement


def test_image_folder_bad_mask_values(tmp_path: Path) -> None:
    make_image_folder(tmp_path)
    _save(tmp_path / "masks" / "case01__001.png", np.arange(256, dtype=np.uint8).reshape(16, 16))
    with pytest.raises(ValueError, match=r"case01__001\.png: mask values must be \{0, 255\}.*256 distinct"):
        load_image_folder(tmp_path)


def test_image_folder_unreadable_file(tmp_path: Path) -> None:
    make_image_folder(tmp_path)
    (tmp_path / "images" / "case01__000.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"case01__000\.png: cannot read"):
        load_image_folder(tmp_path)


def test_image_folder_layout_errors(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    with pytest.raises(ValueError, match="images: no such folder"):
        load_image_folder(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_image_folder(tmp_path)


def test_image_folder_without_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r'pip install "jnet\[images\]"'):
        load_image_folder(tmp_path)


# ---------------------------------------------------------------- load_data


def write_npz(path: Path, n: int = 6, size: int = 16, extras: bool = True) -> Path:
    rng = np.random.default_rng(0)
    masks = np.stack([_square(i % 8, size) for i in range(n)])
    images = (rng.integers(0, 50, (n, size, size)) + 150 * masks).astype(np.uint8)
    arrays = {"images": images, "masks": masks, "patient_id": np.repeat(["a", "b", "c"], n // 3)}
    if extras:
        arrays |= {"slice_index": np.tile(np.arange(n // 3), 3) + 10, "class_names": np.array(["tumour"])}
    np.savez(path, **arrays)
    return path


def test_load_data_npz(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "slices.npz")
    data = load_data(str(path))
    assert data.images.shape == (6, 1, 16, 16)
    assert data.slice_index.tolist() == [10, 11, 10, 11, 10, 11]
    assert data.class_names == ["tumour"]
    big = load_data(path, size=32)  # a different size: bilinear images, nearest masks
    assert big.images.shape == (6, 1, 32, 32) and big.masks.shape == (6, 32, 32)
    np.testing.assert_array_equal(big.masks[3], _square(3).repeat(2, 0).repeat(2, 1))
    assert big.patient_id.tolist() == data.patient_id.tolist()
    plain = load_data(write_npz(tmp_path / "plain.npz", extras=False))
    assert plain.slice_index.tolist() == list(range(6)) and plain.class_names == ["foreground"]


def test_load_data_synthetic() -> None:
    pytest.importorskip("jnet.data.synthetic")
    data = load_data("synthetic", num_patients=2, slices_per_patient=3, size=32, num_lesion_classes=2, seed=1)
    assert isinstance(data, SliceData)
    assert data.images.shape == (6, 1, 32, 32) and data.masks.shape == (6, 32, 32)
    assert data.class_names == ["lesion", "core"]
    assert sorted(set(data.patient_id.tolist())) == ["synth_000", "synth_001"]
    kept = load_data("synthetic", num_patients=2, slices_per_patient=3, size=32, drop_empty=True)
    assert all(m.any() for m in kept.masks)


def test_load_data_image_folder(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "pngs")
    assert resolve_source(tmp_path / "pngs") == sources.Source("images", (tmp_path / "pngs").resolve())
    assert load_data(str(tmp_path / "pngs"), size=8).images.shape == (3, 1, 8, 8)


def _nifti_cases(tmp_path: Path):
    nib = pytest.importorskip("nibabel")

    def save(path: Path, array: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))

    label = np.zeros((16, 16, 3), dtype=np.uint8)
    label[4:8, 4:8, :] = 1
    image = np.random.default_rng(0).uniform(1, 2, label.shape).astype(np.float32) + 5 * label
    return save, image, label


def make_msd(root: Path, tmp_path: Path) -> Path:
    save, image, label = _nifti_cases(tmp_path)
    training = []
    for case in ("p_00", "p_01"):
        save(root / "imagesTr" / f"{case}.nii.gz", image)
        save(root / "labelsTr" / f"{case}.nii.gz", label)
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    meta = {"modality": {"0": "T2"}, "labels": {"0": "background", "1": "tumour"}, "training": training}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def make_brats(root: Path, tmp_path: Path) -> Path:
    save, image, label = _nifti_cases(tmp_path)
    for case in ("BraTS20_Training_001", "BraTS20_Training_002"):
        for mod in ("flair", "t1", "t1ce", "t2"):
            save(root / case / f"{case}_{mod}.nii.gz", image)
        save(root / case / f"{case}_seg.nii.gz", label)
    return root


def test_resolve_msd_and_brats_folders(tmp_path: Path) -> None:
    (tmp_path / "msd").mkdir()
    (tmp_path / "msd" / "dataset.json").write_text("{}")
    (tmp_path / "brats" / "case_1").mkdir(parents=True)
    (tmp_path / "brats" / "case_1" / "case_1_seg.nii.gz").write_bytes(b"")
    assert resolve_source(tmp_path / "msd").kind == "msd"
    assert resolve_source(tmp_path / "brats").kind == "brats"
    assert resolve_source(" Synthetic ").kind == "synthetic"


def test_load_data_msd(tmp_path: Path) -> None:
    pytest.importorskip("jnet.data.msd")
    data = load_data(make_msd(tmp_path / "Task01", tmp_path), size=32)
    assert isinstance(data, SliceData) and data.images.shape[-2:] == (32, 32) and len(data) == 6
    assert set(data.patient_id.tolist()) == {"p_00", "p_01"}


def test_load_data_brats(tmp_path: Path) -> None:
    pytest.importorskip("jnet.data.brats")
    data = load_data(make_brats(tmp_path / "BraTS", tmp_path), size=32)
    assert isinstance(data, SliceData) and data.images.shape[1:] == (4, 32, 32) and len(data) == 6


def test_load_data_bad_specs(tmp_path: Path) -> None:
    looked_for = r"expected 'synthetic', a \.npz file, a folder holding dataset\.json"
    with pytest.raises(ValueError, match=rf"nowhere: no such file or folder; {looked_for}"):
        load_data(str(tmp_path / "nowhere"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=rf"notes\.txt: a file but not a \.npz archive; {looked_for}"):
        load_data(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=rf"empty: cannot tell what this folder holds; {looked_for}"):
        load_data(tmp_path / "empty")


def test_load_data_unknown_options(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "slices.npz")
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'modalities' for npz data; valid options: size, drop"):
        load_data(path, modalities=("t1",))
    with pytest.raises(ValueError, match="size must be a positive integer"):
        load_data(path, size=0)
    pytest.importorskip("jnet.data.synthetic")
    with pytest.raises(ValueError, match=r"'patients'.*valid options: num_patients, slices_per_patient"):
        load_data("synthetic", patients=3)


# ---------------------------------------------------------------- cache


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list:
    """Count the calls that reach the source loader."""
    calls: list = []
    real = sources.load_data

    def load(spec, **options):
        calls.append((spec, options))
        return real(spec, **options)

    monkeypatch.setattr(sources, "load_data", load)
    return calls


def test_cache_reuses_the_prepared_file(tmp_path: Path, counted: list) -> None:
    path = write_npz(tmp_path / "slices.npz")
    first = cached_load(path, tmp_path / "cache", size=16)
    second = cached_load(str(path), tmp_path / "cache", size=16)
    assert len(counted) == 1  # the second call never touched the loader
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # atomic: no temporary left behind
    np.testing.assert_array_equal(first.images, second.images)  # first call already float16-rounded
    np.testing.assert_array_equal(first.masks, second.masks)
    assert second.patient_id.tolist() == first.patient_id.tolist()
    assert second.slice_index.tolist() == [10, 11, 10, 11, 10, 11] and second.class_names == ["tumour"]
    with np.load(files[0]) as archive:
        assert archive["images"].dtype == np.float16 and archive["masks"].dtype == np.uint8
        meta = json.loads(str(archive["meta"]))
    assert meta["kind"] == "npz" and meta["options"] == {"size": 16, "drop_empty": False, "class_names": None}
    # float16 storage: close to the loader's float32
    direct = load_data(path, size=16)
    np.testing.assert_allclose(second.images, direct.images, rtol=1e-3, atol=2e-3)
    assert second.images.dtype == np.float32


def test_cache_invalidation(tmp_path: Path, counted: list) -> None:
    path = write_npz(tmp_path / "slices.npz")
    cache = tmp_path / "cache"
    cached_load(path, cache)
    cached_load(path, cache, size=16)  # the default size (None) differs from 16: a new key
    assert len(counted) == 2
    cached_load(path, cache, drop_empty=False)  # an explicit default is the same key
    assert len(counted) == 2
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    cached_load(path, cache)
    assert len(counted) == 3
    write_npz(path, n=9)  # rewritten
    assert len(cached_load(path, cache)) == 9
    assert len(counted) == 4
    assert not list(cache.glob("*.tmp")) and not list(cache.glob(".*"))


def test_cache_folder_sources_and_cache_inside(tmp_path: Path, counted: list) -> None:
    root = make_image_folder(tmp_path / "pngs")
    cache = root / ".cache"  # inside the source folder: must not change the key
    cached_load(root, cache)
    cached_load(root, cache)
    assert len(counted) == 1
    key = cache_key(root, cache)
    (root / "images" / "case01__000.png").touch()
    os.utime(root / "images" / "case01__000.png", ns=(0, 10**18))
    assert cache_key(root, cache) != key
    cached_load(root, cache)
    assert len(counted) == 2


def test_cache_synthetic_by_options(tmp_path: Path, counted: list) -> None:
    pytest.importorskip("jnet.data.synthetic")
    opts = {"num_patients": 2, "slices_per_patient": 2, "size": 32}
    a = cached_load("synthetic", tmp_path, **opts)
    b = cached_load("synthetic", tmp_path, **opts)
    cached_load("synthetic", tmp_path, **opts, seed=5)
    assert len(counted) == 2
    np.testing.assert_array_equal(a.images, b.images)


def test_cache_rebuilds_a_damaged_file(tmp_path: Path, counted: list) -> None:
    path = write_npz(tmp_path / "slices.npz")
    cached_load(path, tmp_path / "cache")
    (cached,) = (tmp_path / "cache").iterdir()
    cached.write_bytes(b"garbage")
    assert len(cached_load(path, tmp_path / "cache")) == 6
    assert len(counted) == 2
    assert cache_mod.DATA_FORMAT_VERSION >= 1
