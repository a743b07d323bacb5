"""Slice preparation: normalisation, low-resolution inputs, patient splits, npz archives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jnet.data.prepare import SliceData, downsample, load_npz, normalize_slices, patient_split, save_split


def test_normalize_slices_z_score() -> None:
    x = np.array([[[0, 2], [4, 6]], [[5, 5], [5, 5]]], dtype=np.uint8)  # second slice constant
    out = normalize_slices(x)
    assert out.shape == (2, 1, 2, 2) and out.dtype == np.float32
    # mean 3, population std sqrt(5)
    np.testing.assert_allclose(out[0, 0], (np.array([[0, 2], [4, 6]]) - 3) / np.sqrt(5), rtol=1e-6)
    assert np.all(out[1] == 0)


def test_normalize_rejects_nan() -> None:
    x = np.zeros((3, 4, 4), dtype=np.float32)
    x[2, 1, 1] = np.nan
    with pytest.raises(ValueError, match="slice 2 contains NaN"):
        normalize_slices(x)


def test_downsample_area_is_block_mean() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # 2x2 blocks: (0+1+4+5)/4 = 2.5, (2+3+6+7)/4 = 4.5, (8+9+12+13)/4 = 10.5, 12.5
    assert torch.equal(downsample(x, 2), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert downsample(x, 2, mode="bilinear").shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="unknown downsample mode 'cubic'"):
        downsample(x, 2, mode="cubic")


def test_patient_split_is_by_patient_and_seeded() -> None:
    pid = np.repeat([f"p{i}" for i in range(10)], 5)
    a = patient_split(pid, 0.2, seed=1)
    assert len(a["val"]) == 2 and len(a["train"]) == 8
    assert not set(a["val"]) & set(a["train"])
    assert a == patient_split(pid, 0.2, seed=1)
    assert any(patient_split(pid, 0.2, seed=s)["val"] != a["val"] for s in range(2, 6))
    with pytest.raises(ValueError, match="at least 2 patients"):
        patient_split(np.array(["a", "a"]))


def test_save_split_round_trip(tmp_path) -> None:
    split = patient_split(np.array(["a", "b", "c"]), 0.34, seed=0)
    save_split(split, tmp_path / "split.json")
    assert json.loads((tmp_path / "split.json").read_text()) == split
    assert not list(tmp_path.glob("*.tmp"))


def test_load_npz_and_errors(tmp_path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 32, 32), dtype=np.uint8)
    masks = (images > 128).astype(np.uint8)
    np.savez(tmp_path / "ok.npz", images=images, masks=masks, patient_id=np.array(["a", "a", "b", "b"]))
    data = load_npz(tmp_path / "ok.npz")
    assert data.images.shape == (4, 1, 32, 32) and len(data) == 4
    np.testing.assert_array_equal(data.masks, masks)

    np.savez(tmp_path / "nokey.npz", images=images, patient_id=np.array(["a"] * 4))
    with pytest.raises(ValueError, match=r"nokey.npz: missing array\(s\) masks"):
        load_npz(tmp_path / "nokey.npz")
    np.savez(tmp_path / "short.npz", images=images, masks=masks[:3], patient_id=np.array(["a"] * 4))
    with pytest.raises(ValueError, match=r"short\.npz: images, masks and patient_id have 4, 3, 4 entries"):
        load_npz(tmp_path / "short.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.npz: not a readable \.npz archive"):
        load_npz(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match=r"missing\.npz: no such file"):
        load_npz(tmp_path / "missing.npz")


def test_slice_data_checks_shapes() -> None:
    with pytest.raises(ValueError, match="masks must be"):
        SliceData(np.zeros((2, 1, 8, 8), np.float32), np.zeros((2, 4, 4), np.uint8), np.array(["a", "b"]))
