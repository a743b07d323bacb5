"""Training batches (low-res input, full-res mask), the per-item Dataset, k-fold splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jnet.data import load_data
from jnet.data.augment import AugmentConfig
from jnet.data.dataset import SliceBatches, SliceDataset, benchmark_loading
from jnet.data.prepare import SliceData, downsample, kfold_split

S, R, N = 64, 8, 20  # full size, input size (8x8 blocks of 8x8 pixels), slices


def marked(n: int = N, channels: int = 2) -> SliceData:
    """Slice ``i`` holds a bright 8x8 block at block ``(i // 8, i % 8)`` in its image and its mask."""
    rng = np.random.default_rng(0)
    images = rng.normal(0, 0.1, (n, channels, S, S)).astype(np.float32)
    masks = np.zeros((n, S, S), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, 8)
        images[i, :, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8] += 10.0
        masks[i, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8] = 1
    return SliceData(images, masks, np.repeat([f"p{i}" for i in range(n // 4)], 4))


def slice_of_mask(mask: torch.Tensor) -> int:
    """Decode the slice index from the position of its mask block."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return int(ys.min()) // 8 * 8 + int(xs.min()) // 8


def test_batches_pair_each_input_with_its_own_mask() -> None:
    data = marked()
    images = torch.from_numpy(data.images)
    seen = []
    for x, y in SliceBatches(data, R, batch_size=6, seed=3):
        assert x.shape[1:] == (2, R, R) and x.dtype == torch.float32
        assert y.shape[1:] == (S, S) and y.dtype == torch.uint8
        for xb, yb in zip(x, y, strict=True):
            i = slice_of_mask(yb)
            seen.append(i)
            assert torch.equal(xb, downsample(images[i : i + 1], R)[0])  # the downsample of its own image
            assert torch.equal(yb, torch.from_numpy(data.masks[i]))
            assert int(xb[0].argmax()) == i  # and its bright input pixel is its mask's block
    assert sorted(seen) == list(range(N))  # each slice once per epoch


def test_shuffle_per_epoch_seeded() -> None:
    batches = SliceBatches(marked(), R, batch_size=4, seed=1)

    def order() -> list[int]:
        return [slice_of_mask(m) for _, y in batches for m in y]

    first, second = order(), order()  # each pass is the next epoch
    assert sorted(first) == sorted(second) == list(range(N)) and first != second
    batches.set_epoch(0)
    assert order() == first
    assert [slice_of_mask(m) for _, y in SliceBatches(marked(), R, 4, seed=0) for m in y] != first
    # seeded by seed + epoch
    other = SliceBatches(marked(), R, batch_size=4, seed=0)
    other.set_epoch(2)
    assert [slice_of_mask(m) for _, y in other for m in y] == second
    plain = SliceBatches(marked(), R, batch_size=4, shuffle=False)
    assert [slice_of_mask(m) for _, y in plain for m in y] == list(range(N))


def test_drop_last() -> None:
    data = marked()
    keep = SliceBatches(data, R, batch_size=8)
    drop = SliceBatches(data, R, batch_size=8, drop_last=True)
    assert len(keep) == 3 and [len(x) for x, _ in keep] == [8, 8, 4]
    assert len(drop) == 2 and [len(x) for x, _ in drop] == [8, 8]
    with pytest.raises(ValueError, match="leaves no batch"):
        SliceBatches(data, R, batch_size=32, drop_last=True)


def test_dataset_item_equals_batch_element() -> None:
    data = marked()
    dataset = SliceDataset(data, R)
    assert len(dataset) == N
    for x, y in SliceBatches(data, R, batch_size=7, seed=5):
        for xb, yb in zip(x, y, strict=True):
            xi, yi = dataset[slice_of_mask(yb)]
            assert torch.equal(xi, xb) and torch.equal(yi, yb)
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, shuffle=False)
    (x0, y0), *_ = loader
    assert torch.equal(x0, SliceBatches(data, R, batch_size=5, shuffle=False).inputs[:5])
    assert torch.equal(y0, torch.from_numpy(data.masks[:5]))
    assert torch.equal(dataset[-1][1], dataset[N - 1][1])
    with pytest.raises(IndexError):
        dataset[N]


def test_augmented_batches_stay_aligned_and_seeded() -> None:
    masks = marked(16).masks
    masks[:, 20:44, 20:44] = 1  # a larger shape than the marker
    images = 100.0 * masks[:, None].astype(np.float32)
    data = SliceData(images, masks, np.arange(16).astype(str))
    cfg = AugmentConfig(gamma=(1.0, 1.0), gain=(1.0, 1.0), bias=0.0)
    batches = SliceBatches(data, R, batch_size=8, augment=cfg, seed=4)
    assert batches.inputs is None  # made per batch, after augmenting at full resolution
    epoch0 = list(batches)
    moved = 0
    for x, y in epoch0:
        assert x.shape == (8, 1, R, R) and y.shape == (8, S, S)
        # the input is the down-sampled augmented image: 100 x the down-sampled augmented mask
        torch.testing.assert_close(x[:, 0], 100 * downsample(y[:, None].float(), R)[:, 0], atol=12.0, rtol=0)
        moved += sum(not any(torch.equal(m, torch.from_numpy(o)) for o in masks) for m in y)
    assert moved > 8
    batches.set_epoch(0)
    again = list(batches)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(epoch0, again, strict=True))
    assert not torch.equal(next(iter(batches))[1], epoch0[0][1])  # epoch 1 differs


def test_augmented_dataset_is_seeded_per_item_and_epoch() -> None:
    data = marked()
    ds = SliceDataset(data, R, augment=AugmentConfig(), seed=2)
    a, b = ds[3], ds[3]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], a[0])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True, drop_last=True)
    x, y = next(iter(loader))
    assert x.shape == (4, 2, R, R) and y.shape == (4, S, S)
    # disabled augmentation: the plain path
    assert torch.equal(SliceDataset(data, R, augment=AugmentConfig(enabled=False))[3][0], SliceDataset(data, R)[3][0])


def test_benchmark_loading_reports_rates() -> None:
    data = marked()
    for loader in ("batches", "dataloader"):
        for augment in (False, True):
            r = benchmark_loading(data, R, 4, augment, epochs=1, loader=loader)
            assert r["images"] == 20 and r["batches"] == 5 and r["images_per_second"] > 0
            assert r["loader"] == loader and r["augment"] is augment
    r = benchmark_loading(data, R, 4, seconds=0.05)
    assert r["images"] >= 4 and r["seconds"] >= 0.05
    with pytest.raises(ValueError, match="unknown loader"):
        benchmark_loading(data, R, loader="threads")


# ---------------------------------------------------------------- k-fold


def test_kfold_partitions_the_patients() -> None:
    pid = np.repeat([f"p{i:02d}" for i in range(11)], 3)
    folds = [kfold_split(pid, 4, f, seed=1) for f in range(4)]
    vals = [set(f["val"]) for f in folds]
    assert set().union(*vals) == set(pid.tolist())
    assert sum(len(v) for v in vals) == 11 and sorted(len(v) for v in vals) == [2, 3, 3, 3]
    for f, v in zip(folds, vals, strict=True):
        assert not set(f["train"]) & v and set(f["train"]) | v == set(pid.tolist())
        assert f["train"] == sorted(f["train"]) and f["val"] == sorted(f["val"])
        assert (f["k"], f["seed"]) == (4, 1)
    assert [f["fold"] for f in folds] == [0, 1, 2, 3]
    assert folds[2] == kfold_split(pid, 4, 2, seed=1)  # deterministic
    assert any(kfold_split(pid, 4, 0, seed=s)["val"] != folds[0]["val"] for s in range(2, 6))


def test_kfold_errors() -> None:
    pid = np.array(["a", "b", "c"])
    with pytest.raises(ValueError, match="k must be at least 2"):
        kfold_split(pid, 1, 0)
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.2"):
        kfold_split(pid, 3, 3)
    with pytest.raises(ValueError, match="needs at least 4 patients, got 3"):
        kfold_split(pid, 4, 0)
    with pytest.raises(TypeError, match="k must be an integer"):
        kfold_split(pid, 2.0, 0)


def test_full_resolution_batches_are_not_copied_up_front() -> None:
    # a model that takes the full-resolution image (a guided head) is fed the slices as they are
    data = load_data("synthetic", num_patients=2, slices_per_patient=4, size=64)
    batches = SliceBatches(data, 64, batch_size=3, shuffle=False)
    assert batches.inputs.data_ptr() == batches.images.data_ptr()  # no second copy of every slice
    x, _ = next(iter(batches))
    assert torch.equal(x, torch.from_numpy(data.images[:3]))
    x[:] = 0  # a batch is its own memory: the slices are untouched
    assert np.abs(data.images[:3]).sum() > 0
