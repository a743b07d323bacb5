"""The synthetic phantoms: layout, determinism, labels, errors, the archive, and hardness at low resolution."""

from __future__ import annotations

import numpy as np
import pytest

from jnet.data.synthetic import make_synthetic, write_synthetic_npz

KEYS = {"images", "masks", "patient_id", "slice_index"}


@pytest.fixture(scope="module")
def default() -> dict[str, np.ndarray]:
    """The default dataset: 8 patients x 8 slices at 256 x 256, one lesion class."""
    return make_synthetic()


def round_trip(fg: np.ndarray, factor: int, how: str) -> np.ndarray:
    """Binary masks ``(N, H, W)`` down-sampled by ``factor`` and up-sampled back with nearest."""
    n, h, w = fg.shape
    if how == "nearest":
        low = fg[:, ::factor, ::factor]
    else:  # block majority
        low = fg.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4)) >= 0.5
    return low.repeat(factor, axis=1).repeat(factor, axis=2)


def mean_jaccard(masks: np.ndarray, factor: int, how: str = "majority") -> float:
    """Mean foreground Jaccard of the round trip against the truth, over the slices with a lesion."""
    fg = masks > 0
    fg = fg[fg.any(axis=(1, 2))]
    up = round_trip(fg, factor, how)
    return float(((up & fg).sum(axis=(1, 2)) / (up | fg).sum(axis=(1, 2))).mean())


def test_layout(default: dict[str, np.ndarray]) -> None:
    assert set(default) == KEYS
    assert default["images"].shape == default["masks"].shape == (64, 256, 256)
    assert default["images"].dtype == default["masks"].dtype == np.uint8
    assert default["patient_id"].shape == default["slice_index"].shape == (64,)
    assert default["patient_id"].dtype.kind == "U"  # plain strings: loadable with allow_pickle=False
    assert default["slice_index"].dtype == np.int16
    assert default["images"].max() > 200  # uses the 8-bit range


@pytest.mark.parametrize(("size", "patients", "slices"), [(16, 1, 1), (48, 2, 3), (64, 3, 5)])
def test_other_sizes(size: int, patients: int, slices: int) -> None:
    d = make_synthetic(num_patients=patients, slices_per_patient=slices, size=size, seed=1)
    n = patients * slices
    assert d["images"].shape == d["masks"].shape == (n, size, size)
    assert d["patient_id"].shape == d["slice_index"].shape == (n,)


def test_deterministic() -> None:
    kwargs = {"num_patients": 2, "slices_per_patient": 4, "size": 64, "num_lesion_classes": 3}
    a, b = make_synthetic(**kwargs, seed=3), make_synthetic(**kwargs, seed=3)
    for key in KEYS:
        np.testing.assert_array_equal(a[key], b[key])
    c = make_synthetic(**kwargs, seed=4)
    assert not np.array_equal(a["images"], c["images"])
    assert not np.array_equal(a["masks"], c["masks"])


def test_geometry_independent_of_size_and_classes(default: dict[str, np.ndarray]) -> None:
    # masks are drawn analytically per pixel: at 64 x 64 they match the 256 x 256 masks block-reduced
    fg = default["masks"] > 0
    small = make_synthetic(size=64)["masks"] > 0
    reduced = fg.reshape(64, 64, 4, 64, 4).mean(axis=(2, 4)) >= 0.5
    assert (small & reduced).sum() / (small | reduced).sum() > 0.9
    # more classes split the lesion, they do not move it
    three = make_synthetic(num_lesion_classes=3)["masks"]
    np.testing.assert_array_equal(three > 0, fg)


@pytest.mark.parametrize("num_classes", [1, 2, 3])
def test_labels(num_classes: int) -> None:
    m = make_synthetic(num_patients=4, slices_per_patient=6, size=128, num_lesion_classes=num_classes)["masks"]
    assert set(np.unique(m).tolist()) == set(range(num_classes + 1))
    # inner classes only appear together with the outer lesion (nested, not free-floating)
    if num_classes > 1:
        inner = (m >= 2).any(axis=(1, 2))
        assert (m[inner] == 1).any(axis=(1, 2)).all()


def test_lesion_free_and_lesion_slices(default: dict[str, np.ndarray]) -> None:
    has_lesion = (default["masks"] > 0).any(axis=(1, 2))
    assert 0.05 < 1 - has_lesion.mean() < 0.6  # about a quarter lesion-free
    assert has_lesion.sum() >= 16


def test_lesions_consistent_across_neighbouring_slices(default: dict[str, np.ndarray]) -> None:
    fg, pid = default["masks"] > 0, default["patient_id"]
    overlaps = [
        (fg[i] & fg[i + 1]).sum() / (fg[i] | fg[i + 1]).sum()
        for i in range(len(fg) - 1)
        if pid[i] == pid[i + 1] and fg[i].any() and fg[i + 1].any()
    ]
    assert len(overlaps) >= 10
    assert np.mean(overlaps) > 0.35  # measured about 0.56; unrelated blobs would barely overlap


def test_patient_grouping() -> None:
    d = make_synthetic(num_patients=3, slices_per_patient=5, size=32)
    assert d["patient_id"].tolist() == [f"synth_{p:03d}" for p in range(3) for _ in range(5)]
    np.testing.assert_array_equal(d["slice_index"], np.tile(np.arange(5), 3))
    ids, counts = np.unique(d["patient_id"], return_counts=True)
    assert ids.tolist() == ["synth_000", "synth_001", "synth_002"]
    assert counts.tolist() == [5, 5, 5]


@pytest.mark.parametrize("num_classes", [0, 4, -1])
def test_bad_num_classes(num_classes: int) -> None:
    with pytest.raises(ValueError, match="num_lesion_classes"):
        make_synthetic(num_lesion_classes=num_classes, size=16)


@pytest.mark.parametrize("size", [0, 8, 40, 250])
def test_bad_size(size: int) -> None:
    with pytest.raises(ValueError, match="size must be a multiple of 16"):
        make_synthetic(size=size)


@pytest.mark.parametrize("kwargs", [{"num_patients": 0}, {"slices_per_patient": 0}, {"seed": -1}])
def test_bad_counts_and_seed(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        make_synthetic(size=16, **kwargs)


def test_write_npz_round_trip(tmp_path) -> None:
    kwargs = {"num_patients": 2, "slices_per_patient": 3, "size": 32, "num_lesion_classes": 2, "seed": 5}
    target = tmp_path / "sub" / "synth.npz"
    path = write_synthetic_npz(target, **kwargs)
    assert path == target and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["synth.npz"]  # no temporary file left behind
    expected = make_synthetic(**kwargs)
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == KEYS
        for key in KEYS:
            np.testing.assert_array_equal(archive[key], expected[key])
            assert archive[key].dtype == expected[key].dtype
    write_synthetic_npz(target, **{**kwargs, "seed": 6})  # overwrites in place
    with np.load(path) as archive:
        assert not np.array_equal(archive["masks"], expected["masks"])


def test_hard_at_low_resolution(default: dict[str, np.ndarray]) -> None:
    masks = default["masks"]
    j16, j32, j64 = (mean_jaccard(masks, f) for f in (16, 8, 4))
    # measured (seed 0): block majority 0.585 / 0.752 / 0.857 at 16 / 32 / 64 (seeds 0-9: 16x16 <= 0.61)
    assert j16 < 0.75
    assert j16 + 0.1 < j32 < j64
    assert j64 > 0.75
    # plain nearest (top-left sample of each block) loses even more: measured 0.406 at 16x16
    assert mean_jaccard(masks, 16, "nearest") < 0.6


def test_low_resolution_input_has_structure(default: dict[str, np.ndarray]) -> None:
    images = default["images"].astype(np.float64)
    low = images.reshape(64, 32, 8, 32, 8).mean(axis=(2, 4))  # 32 x 32 area down-sampling
    assert (low.std(axis=(1, 2)) > 10).all()
    # the lesions stay visible, with moderate contrast, in the full-resolution image
    fg = default["masks"] > 0
    head = (images > 60) & ~fg
    assert 10 < images[fg].mean() - images[head].mean() < 80
