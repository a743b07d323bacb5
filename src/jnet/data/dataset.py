"""Feeding training: ``(input_lowres (B, C, r, r), mask_fullres (B, S, S))`` batches.

Two ways, giving the same pairs when nothing is augmented:

* :class:`SliceBatches` -- the fast path: whole batches cut from in-memory tensors, shuffled
  per epoch, augmented as a batch at full resolution (:func:`~jnet.data.augment.augment_batch`)
  and only then down-sampled to ``r``. Without augmentation the low-resolution inputs are made
  once, so a batch is two index gathers.
* :class:`SliceDataset` -- a standard per-item :class:`torch.utils.data.Dataset` for a
  :class:`~torch.utils.data.DataLoader` (e.g. with a ``DistributedSampler``); optional
  per-item augmentation is seeded by ``(seed, epoch, index)``, so it does not depend on the
  worker that loads the item.

:func:`benchmark_loading` measures either one alone (no model), in images per second
(``jnet data --data SPEC --benchmark`` runs it).

Typical use::

    train_batches = SliceBatches(train, 16, batch_size=16, drop_last=True, augment=AugmentConfig())
    val_batches = SliceBatches(val, 16, batch_size=64, shuffle=False)  # never augmented
    for epoch in range(epochs):
        train_batches.set_epoch(epoch)
        for x, y in train_batches:  # x (16, C, 16, 16) float32, y (16, 256, 256) uint8
            ...
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from jnet._options import check_option
from jnet.data.augment import AugmentConfig, augment_batch
from jnet.data.prepare import SliceData, downsample

__all__ = ["SliceBatches", "SliceDataset", "benchmark_loading"]

_CHUNK = 256  # slices down-sampled at a time when the inputs are made up front


def _tensors(data: SliceData) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and masks as tensors sharing ``data``'s memory where the dtypes allow."""
    images = torch.from_numpy(np.ascontiguousarray(data.images, dtype=np.float32))
    masks = torch.from_numpy(np.ascontiguousarray(data.masks))
    return images, masks


def _lowres(images: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """:func:`downsample` of every image, a chunk at a time (bounded temporary memory).

    Images already at ``size`` (a model that takes the full-resolution image) are used as they
    are: batches are index gathers, so they never write into them, and no copy is made.
    """
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return torch.cat([downsample(images[i : i + _CHUNK], size, mode) for i in range(0, len(images), _CHUNK)])


def _check(data: SliceData, input_size: int) -> None:
    if len(data) == 0:
        raise ValueError("no slices to load")
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"input_size must be a positive integer, got {input_size!r}")


def _active(augment: AugmentConfig | None) -> AugmentConfig | None:
    return augment if augment is not None and augment.enabled else None


class SliceBatches:
    """Batches ``(inputs (B, C, r, r) float32, masks (B, H, W))`` over in-memory slices.

    Each pass (``for x, y in batches``) is one epoch: its order and augmentation come from a
    :class:`torch.Generator` seeded with ``seed + epoch``; the epoch then advances by one
    (or set it with :meth:`set_epoch`, as for a ``DistributedSampler``). Masks keep their
    dtype (uint8), as in :func:`jnet.train.fit`.

    Args:
        data: the slices (kept in memory; the tensors share its arrays).
        input_size: ``r``, the side of the network input.
        batch_size: slices per batch.
        shuffle: a new random order every epoch; ``False``: slice order.
        drop_last: leave out the last, smaller batch (batch norm needs more than one image).
        augment: applied at full resolution before down-sampling; ``None`` or disabled: none.
        downsample_mode: ``"area"`` or ``"bilinear"`` (see :func:`~jnet.data.prepare.downsample`).
        seed: the base seed of the per-epoch generators.
    """

    def __init__(
        self,
        data: SliceData,
        input_size: int,
        batch_size: int = 16,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        augment: AugmentConfig | None = None,
        downsample_mode: str = "area",
        seed: int = 0,
    ) -> None:
        _check(data, input_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if drop_last and batch_size > len(data):
            raise ValueError(f"drop_last with batch_size {batch_size} > {len(data)} slices leaves no batch")
        self.images, self.masks = _tensors(data)
        self.input_size, self.batch_size = input_size, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.augment = _active(augment)
        self.downsample_mode = downsample_mode
        self.seed, self.epoch = seed, 0
        # without augmentation every epoch reads the same inputs: make them once
        self.inputs = None if self.augment is not None else _lowres(self.images, input_size, downsample_mode)

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next pass (its order and augmentation)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        n = len(self.images)
        order = (torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)).numpy()
        for k in range(len(self)):
            idx = order[k * self.batch_size : (k + 1) * self.batch_size]
            # gathered with numpy: one thread, no OpenMP hand-off (which costs ms on a busy CPU),
            # and 10x faster than torch's masks[idx] for uint8
            masks = torch.from_numpy(self.masks.numpy().take(idx, axis=0))
            if self.inputs is not None:
                yield torch.from_numpy(self.inputs.numpy().take(idx, axis=0)), masks
            else:
                yield augment_batch(
                    torch.from_numpy(self.images.numpy().take(idx, axis=0)),
                    masks,
                    self.augment,
                    gen,
                    output_size=self.input_size,
                    downsample_mode=self.downsample_mode,
                )


class SliceDataset(torch.utils.data.Dataset):
    """Per-item ``(input (C, r, r) float32, mask (H, W))``; item ``i`` without augmentation is
    exactly the element of slice ``i`` in a :class:`SliceBatches` batch.

    With ``augment``, item ``i`` of epoch ``e`` is augmented (at full resolution, then
    down-sampled) with a generator seeded from ``(seed, e, i)``, whichever worker loads it.
    Call :meth:`set_epoch` before each epoch; with ``num_workers > 0`` keep the DataLoader's
    default ``persistent_workers=False``, so each epoch's workers start from the updated copy.
    """

    def __init__(
        self,
        data: SliceData,
        input_size: int,
        *,
        augment: AugmentConfig | None = None,
        downsample_mode: str = "area",
        seed: int = 0,
    ) -> None:
        _check(data, input_size)
        self.images, self.masks = _tensors(data)
        self.input_size = input_size
        self.augment = _active(augment)
        self.downsample_mode = downsample_mode
        self.seed, self.epoch = seed, 0
        self.inputs = None if self.augment is not None else _lowres(self.images, input_size, downsample_mode)

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation the items get."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} slices")
        if self.inputs is not None:
            return self.inputs[i], self.masks[i]
        state = np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1, dtype=np.uint64)[0]
        gen = torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
        x, y = augment_batch(
            self.images[i : i + 1],
            self.masks[i : i + 1],
            self.augment,
            gen,
            output_size=self.input_size,
            downsample_mode=self.downsample_mode,
        )
        return x[0], y[0]


def benchmark_loading(
    data: SliceData,
    input_size: int = 16,
    batch_size: int = 16,
    augment: bool | AugmentConfig = False,
    *,
    seconds: float | None = None,
    epochs: int | None = None,
    loader: str = "batches",
    num_workers: int = 0,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Images per second of loading alone (no model): shuffle, gather, augment, down-sample.

    Args:
        data: the slices.
        input_size, batch_size: as in training.
        augment: ``True`` for the default :class:`AugmentConfig`, or a config.
        seconds: run whole batches until this much time has passed (checked after each batch);
        epochs: or run this many epochs (the default: 1 when neither is given).
        loader: ``"batches"`` (:class:`SliceBatches`) or ``"dataloader"`` (a shuffling
            :class:`~torch.utils.data.DataLoader` over :class:`SliceDataset`).
        num_workers: the DataLoader's workers.
        threads: torch's intra-op threads during the run (restored afterwards); ``None``: as set.

    Returns:
        ``{"loader", "augment", "input_size", "batch_size", "num_workers", "threads", "images",
        "batches", "seconds", "images_per_second", "setup_seconds"}``; ``setup_seconds`` is the
        time to build the loader (e.g. making the low-resolution inputs once).
    """
    check_option("loader", loader, ("batches", "dataloader"))
    if seconds is None and epochs is None:
        epochs = 1
    config = augment if isinstance(augment, AugmentConfig) else (AugmentConfig() if augment else None)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = _benchmark(data, input_size, batch_size, config, seconds, epochs, loader, num_workers, seed)
    finally:
        torch.set_num_threads(previous)
    return {
        "loader": loader,
        "augment": config is not None,
        "input_size": input_size,
        "batch_size": batch_size,
        "num_workers": num_workers if loader == "dataloader" else 0,
        "threads": threads or previous,
        **result,
    }


def _benchmark(
    data: SliceData,
    input_size: int,
    batch_size: int,
    config: AugmentConfig | None,
    seconds: float | None,
    epochs: int | None,
    loader: str,
    num_workers: int,
    seed: int,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    if loader == "batches":
        source: Any = SliceBatches(
            data, input_size, batch_size, shuffle=True, drop_last=True, augment=config, seed=seed
        )
    else:
        dataset = SliceDataset(data, input_size, augment=config, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        source = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=num_workers, generator=gen
        )
    setup = time.perf_counter() - t0
    images = batches = epoch = 0
    start = time.perf_counter()
    while True:
        if loader == "dataloader":
            dataset.set_epoch(epoch)
        for x, _ in source:
            images += len(x)
            batches += 1
            if seconds is not None and time.perf_counter() - start >= seconds:
                break
        epoch += 1
        elapsed = time.perf_counter() - start
        if (seconds is not None and elapsed >= seconds) or (epochs is not None and epoch >= epochs):
            break
    return {
        "images": images,
        "batches": batches,
        "seconds": elapsed,
        "images_per_second": images / elapsed if elapsed > 0 else float("inf"),
        "setup_seconds": setup,
    }
