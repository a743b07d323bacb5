"""The training loop behind ``jnet train``, ``jnet sweep`` and ``jnet demo``.

The network reads images down-sampled to ``input_size``; every output scale is trained
against the full-resolution mask resized to that scale (:class:`jnet.losses.MultiScaleLoss`),
and validation scores hard predictions at the mask's full resolution.

A run directory holds ``config.yaml`` (every setting), ``split.json`` (the patients of each
side), ``history.csv`` (one row per epoch), ``checkpoint_last.pt`` (everything needed to
resume: weights, optimiser, scheduler, epoch, history), ``checkpoint_best.pt`` (by validation
mean Jaccard at full resolution), ``metrics.json`` and ``val_scores.csv`` (each validation
slice's scores at the best checkpoint, :mod:`jnet.training.scores`). Every file is written to
a temporary name and renamed, so a run killed at any moment leaves loadable files, and
``fit(..., resume=True)`` continues from the last finished epoch. Each epoch's shuffling and
augmentation come from a generator seeded by ``seed + epoch``, so on the CPU an interrupted
and resumed run ends with the same weights as an uninterrupted one.

:class:`Trainer` is the loop as a short :meth:`Trainer.run` of steps, each a method that a
variant may override (as nnU-Net's trainers do); :func:`fit` runs the default one.
"""

from __future__ import annotations

import copy
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
from jnet.io import read_json, write_text
from jnet.losses import MultiScaleLoss
from jnet.metrics import SegmentationMetrics
from jnet.model import JNet
from jnet.training.checkpoint import read_checkpoint, save_checkpoint
from jnet.training.config import TrainConfig
from jnet.training.evaluate import evaluate_counts, metrics_from_counts
from jnet.training.scores import SCORES_FILE, ImageScores, image_scores, write_scores
from jnet.training.splits import load_training_data, make_split

log = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, Any]], None]
BatchCallback = Callable[[int, int, float, float], None]

VAL_BATCH = 64  # validation images per forward pass

#: The files a run writes into its run directory (and only these).
RUN_FILES = ("config.yaml", "split.json", "history.csv", "checkpoint_last.pt", "checkpoint_best.pt", "metrics.json",
             SCORES_FILE)  # fmt: skip


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


class Trainer:
    """One training run of ``config`` on ``data``: :meth:`run` is a short list of overridable steps.

    :meth:`setup` (device, threads, ranks, the patient split) -> :meth:`build` (model, loss,
    optimiser, gradient scaler, DDP wrapper) -> :meth:`batches` (training batches, validation
    tensors) -> :meth:`schedule` (the learning rate, which counts the batches) -> :meth:`resume`
    from ``checkpoint_last.pt`` or :meth:`start` (``config.yaml``, ``split.json``); then per
    epoch :meth:`train_epoch` (:meth:`train_step` per batch), :meth:`validate`,
    :meth:`end_epoch` (history row, log line, best epoch) and :meth:`save` (checkpoints,
    ``history.csv``); last :meth:`finish` (``val_scores.csv``, ``metrics.json``, the result).
    A variant overrides one step; :func:`fit` runs this one. The arguments are :func:`fit`'s.

    Example:
        >>> from jnet.training import TrainConfig, load_training_data
        >>> class Frozen(Trainer):  # a variant: validation only, the weights stay as built
        ...     def train_epoch(self, epoch):
        ...         return {"train_loss": 0.0, "epoch_seconds": 1.0, "images_per_second": 0.0}
        >>> config = TrainConfig(data="synthetic", data_options={"num_patients": 3, "slices_per_patient": 2},
        ...                      output_size=32, model="unet", width=2, batch_size=2, epochs=2)
        >>> result = Frozen(config, load_training_data(config)).run()
        >>> [row["train_loss"] for row in result["history"]], result["best"]["epoch"]
        ([0.0, 0.0], 1)
    """

    def __init__(
        self,
        config: TrainConfig,
        data: SliceData,
        out_dir: str | Path | None = None,
        *,
        resume: bool = False,
        on_epoch: EpochCallback | None = None,
        on_batch: BatchCallback | None = None,
    ) -> None:
        self.config, self.data = config, data
        self.out = Path(out_dir) if out_dir is not None else None
        self.resume_requested = resume
        self.on_epoch, self.on_batch = on_epoch, on_batch
        self.last: dict[str, Any] | None = None  # checkpoint_last.pt, when resuming
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"mean_jaccard": -math.inf}
        self.final: dict[str, Any] = {}
        self.start_epoch, self.elapsed = 1, 0.0
        self.val_counts: SegmentationMetrics | None = None  # the latest validation's per-image counts
        self.best_counts: SegmentationMetrics | None = None  # the best epoch's, if it ran in this process

    def run(self) -> dict[str, Any]:
        """Train, validate and save every epoch; return :meth:`finish`'s result (see :func:`fit`)."""
        self.setup()
        self.build()
        self.batches()
        self.schedule()
        if self.last is not None:
            self.resume()
        else:
            self.start()
        for epoch in range(self.start_epoch, self.config.epochs + 1):
            trained = self.train_epoch(epoch)
            metrics = self.validate()
            improved = self.end_epoch(epoch, trained, metrics)
            self.save(epoch, improved)
            if self.on_epoch is not None and self.rank == 0:
                self.on_epoch(self.history[-1])
        return self.finish()

    def setup(self) -> None:
        """Ranks, threads and device; the checkpoint to resume from; the patient split and its two sides."""
        config, data = self.config, self.data
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = _device(config)
        self.writer = self.out is not None and self.rank == 0  # only rank 0 writes files
        if data.masks.shape[-2:] != (config.output_size, config.output_size):
            raise ValueError(
                f"masks are {data.masks.shape[-1]}x{data.masks.shape[-2]} but output_size is {config.output_size}"
            )
        if self.resume_requested and self.out is not None and (self.out / "checkpoint_last.pt").is_file():
            self.last = read_checkpoint(self.out / "checkpoint_last.pt")
        if self.last is not None:
            assert self.out is not None
            self.split = read_json(self.out / "split.json", "split file")
        else:
            self.split = make_split(config, data.patient_id)
        self.train_data = data.subset(np.isin(data.patient_id, self.split["train"]))
        self.val_data = data.subset(np.isin(data.patient_id, self.split["val"]))

    def build(self) -> None:
        """The model (seeded), the loss, the optimiser, the gradient scaler and, under DDP, the wrapper."""
        config, device = self.config, self.device
        k = config.model_num_classes(len(self.data.class_names))
        torch.manual_seed(config.seed)
        self.model: JNet = config.build_model(in_channels=self.data.images.shape[1], num_classes=k).to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = MultiScaleLoss(config.loss, weights=config.loss_weights, target_resize=config.target_resize)
        lr, decay = config.lr, config.weight_decay
        try:  # the fused kernel: one pass over all parameters (3x faster steps on a CPU)
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=decay, fused=True)
        except (RuntimeError, TypeError):  # older torch, or a device without it
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=decay)
        self.use_amp = config.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.ddp_model: torch.nn.Module = self.model
        if self.distributed:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def batches(self) -> None:
        """The training batches (under DDP a DataLoader over this rank's share) and the validation tensors."""
        config, train, world = self.config, self.train_data, self.world
        feed = self.model.image_size[0]  # the batches' image size: the input size, or the full size for guided heads
        augment = AugmentConfig() if config.augment else None
        per_rank = config.batch_size
        if len(train) < per_rank * world:
            raise ValueError(
                f"{len(train)} training slices are fewer than one batch of {per_rank}"
                + (f" on each of {world} ranks" if world > 1 else "")
                + "; lower batch_size (batch norm needs at least 2 images per batch)"
            )
        self.train_batches: Any
        if self.distributed:
            self.dataset = SliceDataset(train, feed, augment=augment, downsample_mode=config.downsample_mode,
                                        seed=config.seed)  # fmt: skip
            self.sampler = torch.utils.data.DistributedSampler(self.dataset, world, self.rank, shuffle=True,
                                                               seed=config.seed, drop_last=True)  # fmt: skip
            self.train_batches = torch.utils.data.DataLoader(self.dataset, per_rank, sampler=self.sampler,
                                                             drop_last=True)  # fmt: skip
            if len(self.train_batches) == 0:
                raise ValueError(f"{len(train)} training slices over {world} ranks leave no batch of {per_rank}")
        else:
            self.train_batches = SliceBatches(train, feed, per_rank, drop_last=True, augment=augment,
                                              downsample_mode=config.downsample_mode, seed=config.seed)  # fmt: skip
        self.x_val = downsample(self.val_data.images, feed, config.downsample_mode)  # (N, C, h, w)
        self.y_val = torch.from_numpy(self.val_data.masks)  # (N, H, W)

    def schedule(self) -> None:
        """The learning-rate schedule over ``epochs`` x the number of batches."""
        self.scheduler = _scheduler(self.config, self.optimizer, len(self.train_batches))

    def resume(self) -> None:
        """Continue from ``checkpoint_last.pt``: weights, optimiser, schedule, scaler, history, best, epoch."""
        assert self.last is not None
        last = self.last
        self.model.load_state_dict(last["state_dict"])
        self.optimizer.load_state_dict(last["optimizer"])
        self.scheduler.load_state_dict(last["scheduler"])
        self.scaler.load_state_dict(last["scaler"])
        self.history, self.best, self.final = list(last["history"]), dict(last["best"]), dict(last["final"])
        self.start_epoch, self.elapsed = int(last["epoch"]) + 1, float(last["train_seconds"])
        log.info("resuming %s at epoch %d of %d", self.out, self.start_epoch, self.config.epochs)

    def start(self) -> None:
        """A new run: write ``config.yaml`` and ``split.json`` into the run directory."""
        if self.writer:
            assert self.out is not None
            self.out.mkdir(parents=True, exist_ok=True)
            write_text(self.out / "config.yaml", self.config.to_yaml())
            save_split(self.split, self.out / "split.json")

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training batches, reshuffled for ``epoch``.

        Returns:
            ``train_loss`` (the mean over images and ranks), ``epoch_seconds`` and
            ``images_per_second`` (over all ranks).
        """
        self.ddp_model.train()
        if self.distributed:
            self.sampler.set_epoch(epoch)
            self.dataset.set_epoch(epoch)
        else:
            self.train_batches.set_epoch(epoch)
        steps = len(self.train_batches)
        t0, total, seen = time.perf_counter(), 0.0, 0
        for i, (x, y) in enumerate(self.train_batches, start=1):
            total += self.train_step(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))
            seen += len(x)
            if self.on_batch is not None and self.rank == 0:
                self.on_batch(i, steps, total / seen, seen * self.world / (time.perf_counter() - t0))
        seconds = time.perf_counter() - t0
        self.elapsed += seconds
        train_loss = total / seen
        if self.distributed:
            loss_t = torch.tensor([train_loss], dtype=torch.float64)
            dist.all_reduce(loss_t)
            train_loss = float(loss_t) / self.world
        return {"train_loss": train_loss, "epoch_seconds": seconds, "images_per_second": seen * self.world / seconds}

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimiser step on a batch; returns the batch's summed loss (mean loss x images)."""
        with torch.autocast(self.device.type, enabled=self.use_amp):
            outs = self.ddp_model(x)  # [(B, K, h, w), ..., (B, K, S, S)]
            loss = self.criterion([o.float() for o in outs], y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item() * len(x)

    def validate(self) -> dict[str, Any]:
        """The model's validation metrics at full resolution (and, labelled, at input resolution).

        Keeps the per-image counts in ``val_counts``, for the best epoch's ``val_scores.csv``.
        """
        full, low = self.score(self.model)
        self.val_counts = full
        return metrics_from_counts(full, low, tuple(self.y_val.shape[-2:]), self.model.input_size)

    def score(self, model: JNet) -> tuple[SegmentationMetrics, SegmentationMetrics]:
        """``model``'s per-image counts at full and at input resolution on every validation slice.

        Each rank scores the slices ``rank::world``; the counts are gathered in rank order (the
        same on every rank): see :func:`_in_slice_order`.
        """
        rank, world = self.rank, self.world
        names = self.val_data.class_names
        full, low = evaluate_counts(model, self.x_val[rank::world], self.y_val[rank::world], VAL_BATCH, names)
        if self.distributed:
            full, low = _gather_counts(full), _gather_counts(low)
        return full, low

    def end_epoch(self, epoch: int, trained: dict[str, float], metrics: dict[str, Any]) -> bool:
        """Add the epoch's history row, log it and keep the best epoch; returns whether it improved."""
        row = {
            "epoch": epoch,
            "train_loss": trained["train_loss"],
            "val_mean_dice": metrics["mean_dice"],
            "val_mean_jaccard": metrics["mean_jaccard"],
            "val_mean_jaccard_global": metrics["mean_jaccard_global"],
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_seconds": trained["epoch_seconds"],
            "images_per_second": trained["images_per_second"],
        }
        self.history.append(row)
        self.final = metrics
        log.info(
            "%s/%s epoch %d/%d loss %.4f val dice %.4f jaccard %.4f (%.0f img/s)",
            self.config.model, self.config.head, epoch, self.config.epochs, row["train_loss"],
            row["val_mean_dice"], row["val_mean_jaccard"], row["images_per_second"],
        )  # fmt: skip
        counts, self.val_counts = self.val_counts, None
        improved = metrics["mean_jaccard"] > self.best["mean_jaccard"]
        if improved:
            self.best, self.best_counts = {**metrics, "epoch": epoch}, counts
        return improved

    def save(self, epoch: int, improved: bool) -> None:
        """Write ``checkpoint_best.pt`` (if ``improved``), ``checkpoint_last.pt`` and ``history.csv``."""
        if not self.writer:
            return
        assert self.out is not None
        config = asdict(self.config)
        if improved:
            save_checkpoint(self.out / "checkpoint_best.pt", self.model, train_config=config, epoch=epoch,
                            metrics=self.final)  # fmt: skip
        save_checkpoint(
            self.out / "checkpoint_last.pt", self.model, train_config=config, epoch=epoch,
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(), history=self.history, best=self.best, final=self.final,
            train_seconds=self.elapsed,
        )  # fmt: skip
        write_text(self.out / "history.csv", _history_csv(self.history))

    def finish(self) -> dict[str, Any]:
        """Write ``val_scores.csv`` and ``metrics.json`` (the result without its history); return the result.

        With ``val_scores.csv``, the best epoch's scores gain the per-patient 3D Dice
        (``volume_dice``, ``mean_volume_dice``, ``n_volumes``; :func:`jnet.metrics.volume_scores`).
        """
        scores = self.best_scores() if self.out is not None else None  # every rank: rescoring gathers counts
        best = self.best
        if scores is not None and scores.has_counts:  # the best epoch's per-patient 3D Dice
            best = {**best, **scores.volume_scores().as_dict()}
        result = {
            "config": asdict(self.config),
            "split": self.split,
            "best": best,
            "final": self.final,
            "history": self.history,
            "train_seconds": self.elapsed,
            "epochs_run": len(self.history),
            "n_train": len(self.train_data),
            "n_val": len(self.val_data),
            "params": sum(p.numel() for p in self.model.parameters()),
            "head_params": sum(p.numel() for p in self.model.head.parameters()),
        }
        if self.writer:
            assert self.out is not None
            if scores is not None:
                write_scores(scores, self.out / SCORES_FILE)
            write_text(self.out / "metrics.json", json.dumps({k: v for k, v in result.items() if k != "history"},
                                                             indent=1))  # fmt: skip
        return result

    def best_scores(self) -> ImageScores | None:
        """Each validation slice's Dice and Jaccard at the best epoch, in the slices' order.

        The best epoch's counts are kept when it runs in this process; when it ran before a
        resume, ``checkpoint_best.pt`` is scored again (on every rank, its share). ``None``
        (with a warning) when there is no best checkpoint, or its scores miss the best metrics.
        """
        if "epoch" not in self.best:
            return None
        counts = self.best_counts
        if counts is None:
            path = self.out / "checkpoint_best.pt" if self.out is not None else None
            if path is None or not path.is_file():
                log.warning("%s not written: no checkpoint_best.pt to score", SCORES_FILE)
                return None
            model = copy.deepcopy(self.model)
            model.load_state_dict(read_checkpoint(path)["state_dict"])
            counts, _ = self.score(model)
        scores = image_scores(_in_slice_order(counts, self.world), self.val_data.patient_id)
        for name in ("dice", "jaccard"):
            got, want = float(scores.metric(name).mean()), float(self.best.get(f"mean_{name}", math.nan))
            if not math.isclose(got, want, rel_tol=0, abs_tol=1e-6):
                log.warning("%s not written: mean %s %.6f differs from the best epoch's %.6f", SCORES_FILE, name,
                            got, want)  # fmt: skip
                return None
        return scores


def fit(
    config: TrainConfig,
    data: SliceData,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
) -> dict[str, Any]:
    """Train ``config`` on ``data`` (split by patient); return the run's results (a :class:`Trainer` run).

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
    return Trainer(config, data, out_dir, resume=resume, on_epoch=on_epoch, on_batch=on_batch).run()


def _gather_counts(metrics: SegmentationMetrics) -> SegmentationMetrics:
    """Every rank's per-image counts, merged into one accumulator (the same on every rank)."""
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, metrics.counts())
    merged = SegmentationMetrics(metrics.num_classes, metrics.class_names, metrics.empty)
    for counts in gathered:
        merged.add_counts(*counts)
    return merged


def _in_slice_order(metrics: SegmentationMetrics, world: int) -> SegmentationMetrics:
    """Counts gathered in rank order (rank ``r`` scored slices ``r, r + world, ...``) in the slices' order."""
    tp, fp, fn = metrics.counts()  # (N, C) each
    gathered = np.concatenate([np.arange(r, len(tp), world) for r in range(world)])  # the slice of each row
    order = torch.from_numpy(np.argsort(gathered, kind="stable"))
    ordered = SegmentationMetrics(metrics.num_classes, metrics.class_names, metrics.empty)
    ordered.add_counts(tp[order], fp[order], fn[order])
    return ordered


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
        "head_form": "compiled" if config.compiled_head and config.head.startswith("jnet") else "modules",
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
