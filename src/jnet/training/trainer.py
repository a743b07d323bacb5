"""The training loop behind ``jnet train``, ``jnet sweep`` and ``jnet demo``.

The network reads images down-sampled to ``input_size``; every output scale is trained
against the full-resolution mask resized to that scale (:class:`jnet.losses.MultiScaleLoss`),
and validation scores hard predictions at the mask's full resolution.

A run directory holds ``config.yaml`` (every setting), ``split.json`` (the patients of each
side), ``history.csv`` (one row per epoch), ``checkpoint_last.pt`` (everything needed to
resume: weights, optimiser, scheduler, epoch, history), ``checkpoint_best.pt`` (by validation
mean Jaccard at full resolution) and ``metrics.json``. Every file is written to a temporary
name and renamed, so a run killed at any moment leaves loadable files, and
``fit(..., resume=True)`` continues from the last finished epoch. Each epoch's shuffling and
augmentation come from a generator seeded by ``seed + epoch``, so on the CPU an interrupted
and resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from jnet.data.augment import AugmentConfig
from jnet.data.dataset import SliceBatches, SliceDataset
from jnet.data.prepare import SliceData, downsample, save_split
from jnet.io import write_text
from jnet.losses import MultiScaleLoss
from jnet.metrics import SegmentationMetrics
from jnet.training.checkpoint import read_checkpoint, save_checkpoint
from jnet.training.config import TrainConfig
from jnet.training.evaluate import evaluate_counts, metrics_from_counts
from jnet.training.splits import load_training_data, make_split

log = logging.getLogger(__name__)


def _device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but CUDA is not available")
        if dist.is_initialized():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cuda")
    return torch.device("cpu")


def _scheduler(config: TrainConfig, opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    total = config.epochs * steps
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.1)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def _history_csv(history: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


EpochCallback = Callable[[dict[str, Any]], None]
BatchCallback = Callable[[int, int, float, float], None]


def fit(
    config: TrainConfig,
    data: SliceData,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
) -> dict[str, Any]:
    """Train ``config`` on ``data`` (split by patient); return the run's results.

    Args:
        config: the settings.
        data: the slices, masks at ``config.output_size``.
        out_dir: the run directory (see the module docstring); ``None`` writes nothing.
        resume: continue from ``out_dir/checkpoint_last.pt`` if it exists.
        on_epoch: called with each epoch's history row (for progress output).
        on_batch: called with ``(batch, n_batches, loss, images_per_second)`` after each step.

    Returns:
        ``{"config", "split", "best", "final", "history", "train_seconds", "n_train", "n_val",
        "params", "head_params", "epochs_run"}``.
    """
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    if config.threads:
        torch.set_num_threads(config.threads)
    device = _device(config)
    out = Path(out_dir) if out_dir is not None else None
    writer = out is not None and rank == 0

    if data.masks.shape[-2:] != (config.output_size, config.output_size):
        raise ValueError(
            f"masks are {data.masks.shape[-1]}x{data.masks.shape[-2]} but output_size is {config.output_size}"
        )
    last = None
    if resume and out is not None and (out / "checkpoint_last.pt").is_file():
        last = read_checkpoint(out / "checkpoint_last.pt")
    split = json.loads((out / "split.json").read_text()) if last is not None else make_split(config, data.patient_id)
    train = data.subset(np.isin(data.patient_id, split["train"]))
    val = data.subset(np.isin(data.patient_id, split["val"]))
    k = config.model_num_classes(len(data.class_names))

    torch.manual_seed(config.seed)
    model = config.build_model(in_channels=data.images.shape[1], num_classes=k).to(device)
    feed = model.image_size[0]  # the batches' image size: the input size, or the full size for guided heads
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    criterion = MultiScaleLoss(config.loss, weights=config.loss_weights, target_resize=config.target_resize)
    try:  # the fused kernel: one pass over all parameters (3x faster steps on a CPU)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # older torch, or a device without it
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    augment = AugmentConfig() if config.augment else None
    per_rank = config.batch_size
    if len(train) < per_rank * world:
        raise ValueError(
            f"{len(train)} training slices are fewer than one batch of {per_rank}"
            + (f" on each of {world} ranks" if world > 1 else "")
            + "; lower batch_size (batch norm needs at least 2 images per batch)"
        )
    if distributed:
        dataset = SliceDataset(train, feed, augment=augment, downsample_mode=config.downsample_mode,
                               seed=config.seed)  # fmt: skip
        sampler = torch.utils.data.DistributedSampler(dataset, world, rank, shuffle=True, seed=config.seed,
                                                      drop_last=True)  # fmt: skip
        batches: Any = torch.utils.data.DataLoader(dataset, per_rank, sampler=sampler, drop_last=True)
        if len(batches) == 0:
            raise ValueError(f"{len(train)} training slices over {world} ranks leave no batch of {per_rank}")
    else:
        batches = SliceBatches(train, feed, per_rank, drop_last=True, augment=augment,
                               downsample_mode=config.downsample_mode, seed=config.seed)  # fmt: skip
    steps = len(batches)
    sched = _scheduler(config, opt, steps)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ddp_model: torch.nn.Module = model
    if distributed:
        ids = [device.index] if device.type == "cuda" else None
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    x_val = downsample(val.images, feed, config.downsample_mode)
    y_val = torch.from_numpy(val.masks)
    # each rank scores its share of the validation slices; the counts are gathered
    x_val_rank, y_val_rank = x_val[rank::world], y_val[rank::world]

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"mean_jaccard": -math.inf}
    start_epoch, elapsed = 1, 0.0
    if last is not None:
        model.load_state_dict(last["state_dict"])
        opt.load_state_dict(last["optimizer"])
        sched.load_state_dict(last["scheduler"])
        scaler.load_state_dict(last["scaler"])
        history, best = list(last["history"]), dict(last["best"])
        start_epoch, elapsed = int(last["epoch"]) + 1, float(last["train_seconds"])
        log.info("resuming %s at epoch %d of %d", out, start_epoch, config.epochs)
    elif writer:
        assert out is not None
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "config.yaml", config.to_yaml())
        save_split(split, out / "split.json")

    metrics: dict[str, Any] = dict(last["final"]) if last is not None else {}
    for epoch in range(start_epoch, config.epochs + 1):
        ddp_model.train()
        if distributed:
            sampler.set_epoch(epoch)
            dataset.set_epoch(epoch)
        else:
            batches.set_epoch(epoch)
        t0, total, seen = time.perf_counter(), 0.0, 0
        for i, (x, y) in enumerate(batches, start=1):
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=use_amp):
                outs = ddp_model(x)  # [(B, K, h, w), ..., (B, K, S, S)]
                loss = criterion([o.float() for o in outs], y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            total += loss.item() * len(x)
            seen += len(x)
            if on_batch is not None and rank == 0:
                on_batch(i, steps, total / seen, seen * world / (time.perf_counter() - t0))
        train_s = time.perf_counter() - t0
        elapsed += train_s
        full, low = evaluate_counts(model, x_val_rank, y_val_rank, 64, val.class_names)
        train_loss = total / seen
        if distributed:
            full, low = _gather_counts(full), _gather_counts(low)
            loss_t = torch.tensor([train_loss], dtype=torch.float64)
            dist.all_reduce(loss_t)
            train_loss = float(loss_t) / world
        metrics = metrics_from_counts(full, low, tuple(y_val.shape[-2:]), model.input_size)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_mean_dice": metrics["mean_dice"],
            "val_mean_jaccard": metrics["mean_jaccard"],
            "val_mean_jaccard_global": metrics["mean_jaccard_global"],
            "lr": opt.param_groups[0]["lr"],
            "epoch_seconds": train_s,
            "images_per_second": seen * world / train_s,
        }
        history.append(row)
        log.info(
            "%s/%s epoch %d/%d loss %.4f val dice %.4f jaccard %.4f (%.0f img/s)",
            config.model, config.head, epoch, config.epochs, row["train_loss"],
            row["val_mean_dice"], row["val_mean_jaccard"], row["images_per_second"],
        )  # fmt: skip
        improved = metrics["mean_jaccard"] > best["mean_jaccard"]
        if improved:
            best = {**metrics, "epoch": epoch}
        if writer:
            assert out is not None
            if improved:
                save_checkpoint(out / "checkpoint_best.pt", model, train_config=asdict(config), epoch=epoch,
                                metrics=metrics)  # fmt: skip
            save_checkpoint(
                out / "checkpoint_last.pt", model, train_config=asdict(config), epoch=epoch,
                optimizer=opt.state_dict(), scheduler=sched.state_dict(), scaler=scaler.state_dict(),
                history=history, best=best, final=metrics, train_seconds=elapsed,
            )  # fmt: skip
            write_text(out / "history.csv", _history_csv(history))
        if on_epoch is not None and rank == 0:
            on_epoch(row)

    result = {
        "config": asdict(config),
        "split": split,
        "best": best,
        "final": metrics,
        "history": history,
        "train_seconds": elapsed,
        "epochs_run": len(history),
        "n_train": len(train),
        "n_val": len(val),
        "params": sum(p.numel() for p in model.parameters()),
        "head_params": sum(p.numel() for p in model.head.parameters()),
    }
    if writer:
        assert out is not None
        write_text(out / "metrics.json", json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1))
    return result


def _gather_counts(metrics: SegmentationMetrics) -> SegmentationMetrics:
    """Every rank's per-image counts, merged into one accumulator (the same on every rank)."""
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, metrics.counts())
    merged = SegmentationMetrics(metrics.num_classes, metrics.class_names, metrics.empty)
    for counts in gathered:
        merged.add_counts(*counts)
    return merged


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
) -> dict[str, Any]:
    """Load ``config.data`` and :func:`fit`; under ``torchrun`` (``WORLD_SIZE`` > 1) with DDP.

    The process group is started here when the environment describes one (gloo on CPU,
    NCCL on CUDA) and torn down at the end; only rank 0 writes files.
    """
    started = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if _device(config).type == "cuda" else "gloo"
        dist.init_process_group(backend)
        started = True
    try:
        data = load_training_data(config)
        return fit(config, data, out_dir, resume=resume, on_epoch=on_epoch, on_batch=on_batch)
    finally:
        if started:
            dist.destroy_process_group()


def benchmark_training(config: TrainConfig, data: SliceData, epochs: int = 3) -> dict[str, Any]:
    """Time ``epochs`` training epochs of ``config`` on ``data`` (training steps only, no validation cost).

    Returns:
        ``{"epoch_seconds": [...], "epoch_seconds_median", "images_per_second_median",
        "n_train", "threads", "torch"}``; the first epoch includes warm-up and is reported
        but left out of the medians when more than one epoch ran.
    """
    result = fit(dataclasses.replace(config, epochs=epochs), data)
    seconds = [row["epoch_seconds"] for row in result["history"]]
    rates = [row["images_per_second"] for row in result["history"]]
    steady = slice(1, None) if len(seconds) > 1 else slice(None)
    return {
        "model": config.model,
        "head": config.head,
        "input_size": config.input_size,
        "output_size": config.output_size,
        "batch_size": config.batch_size,
        "n_train": result["n_train"],
        "epoch_seconds": seconds,
        "epoch_seconds_median": float(np.median(seconds[steady])),
        "images_per_second_median": float(np.median(rates[steady])),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
