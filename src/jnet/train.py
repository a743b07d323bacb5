"""Training and evaluation on in-memory slices: the loop behind ``jnet demo``.

The network reads images down-sampled to ``input_size``; every output scale is trained
against the full-resolution mask resized to that scale (:class:`jnet.losses.MultiScaleLoss`),
and validation scores hard predictions at the mask's full resolution.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jnet.checkpoint import save_checkpoint
from jnet.data.prepare import SliceData, downsample, patient_split, save_split
from jnet.losses import MultiScaleLoss
from jnet.metrics import SegmentationMetrics, logits_to_labels, upsample_labels, upsample_logits
from jnet.model import JNet

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Every setting of a training run; written to the run directory as ``config.json``."""

    model: str = "elunet"
    head: str = "jnet"
    head_options: dict[str, Any] = field(default_factory=dict)
    width: int | None = None
    input_size: int = 16
    output_size: int = 256
    num_classes: int = 1
    loss: str = "dice_ce"
    loss_weights: str | list[float] | None = None
    target_resize: str = "nearest"
    downsample_mode: str = "area"
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    val_fraction: float = 0.2

    def build_model(self, in_channels: int) -> JNet:
        """The model this config describes."""
        options = {} if self.width is None else {"width": self.width}
        return JNet(
            self.model,
            self.num_classes,
            self.input_size,
            self.output_size,
            head=self.head,
            in_channels=in_channels,
            backbone_options=options,
            head_options=self.head_options,
        )


@torch.no_grad()
def evaluate(model: JNet, inputs: torch.Tensor, masks: torch.Tensor, batch_size: int = 64) -> dict[str, Any]:
    """Dice and Jaccard at the masks' full resolution, and (labelled) at the input resolution.

    A prediction smaller than the masks (the ``none`` head) is up-sampled as bilinear logits.
    The input-resolution score compares the base prediction ``y0`` with nearest-down-sampled
    masks: the way the paper appears to score its baselines.

    Args:
        model: the model; put in eval mode here.
        inputs: ``(N, C, h, w)`` network inputs.
        masks: ``(N, H, W)`` full-resolution labels.
    """
    model.eval()
    return_all, model.return_all = model.return_all, True
    try:
        return _evaluate(model, inputs, masks, batch_size)
    finally:
        model.return_all = return_all


def _evaluate(model: JNet, inputs: torch.Tensor, masks: torch.Tensor, batch_size: int) -> dict[str, Any]:
    k = model.num_classes
    full, low = SegmentationMetrics(k), SegmentationMetrics(k)
    size = tuple(masks.shape[-2:])
    for i in range(0, len(inputs), batch_size):
        x, y = inputs[i : i + batch_size], masks[i : i + batch_size].long()
        outs = model(x)  # [(B, K, h, w), ..., (B, K, S, S)]
        final = outs[-1]
        if tuple(final.shape[-2:]) != size:
            final = upsample_logits(final, size)
        full.update(logits_to_labels(final), y)
        y_low = upsample_labels(y, tuple(outs[0].shape[-2:]))  # nearest resize (here: down)
        low.update(logits_to_labels(outs[0]), y_low)
    result = full.compute()
    result["resolution"] = list(size)
    low_res = low.compute()
    result["input_resolution"] = {
        "resolution": list(outs[0].shape[-2:]),
        "mean_dice": low_res["mean_dice"],
        "mean_jaccard": low_res["mean_jaccard"],
        "note": "base prediction against nearest-down-sampled ground truth (paper-style), not comparable",
    }
    return result


def fit(config: TrainConfig, data: SliceData, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Train ``config`` on ``data`` with a seeded patient split; return the validation metrics.

    Writes, when ``out_dir`` is given: ``config.json``, ``split.json``, ``history.csv``,
    ``checkpoint_best.pt`` (by validation mean Jaccard at full resolution) and ``metrics.json``.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    split = patient_split(data.patient_id, config.val_fraction, config.seed)
    train = data.subset(np.isin(data.patient_id, split["train"]))
    val = data.subset(np.isin(data.patient_id, split["val"]))
    if tuple(data.masks.shape[-2:]) != (config.output_size, config.output_size):
        raise ValueError(
            f"masks are {data.masks.shape[-1]}x{data.masks.shape[-2]} but output_size is {config.output_size}"
        )
    x_train = downsample(train.images, config.input_size, config.downsample_mode)
    x_val = downsample(val.images, config.input_size, config.downsample_mode)
    y_train, y_val = torch.from_numpy(train.masks), torch.from_numpy(val.masks)

    model = config.build_model(in_channels=data.images.shape[1])
    criterion = MultiScaleLoss(config.loss, weights=config.loss_weights, target_resize=config.target_resize)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(x_train) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.1
    )
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(config), indent=1))
        save_split(split, out / "split.json")

    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"mean_jaccard": -math.inf}
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        t0, total, seen = time.perf_counter(), 0.0, 0
        # drop the last partial batch: batch norm at the 1x1 bottleneck needs more than one image
        order = rng.permutation(len(x_train))[: steps_per_epoch * config.batch_size]
        for idx in np.array_split(order, steps_per_epoch):
            idx_t = torch.from_numpy(idx)
            outs = model(x_train[idx_t])
            loss = criterion(outs, y_train[idx_t])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        train_s = time.perf_counter() - t0
        metrics = evaluate(model, x_val, y_val)
        row = {
            "epoch": epoch,
            "train_loss": total / seen,
            "val_mean_dice": metrics["mean_dice"],
            "val_mean_jaccard": metrics["mean_jaccard"],
            "epoch_seconds": train_s,
            "images_per_second": seen / train_s,
        }
        history.append(row)
        log.info(
            "%s/%s epoch %d/%d loss %.4f val dice %.4f jaccard %.4f (%.0f img/s)",
            config.model, config.head, epoch, config.epochs, row["train_loss"],
            row["val_mean_dice"], row["val_mean_jaccard"], row["images_per_second"],
        )  # fmt: skip
        if metrics["mean_jaccard"] > best["mean_jaccard"]:
            best = {**metrics, "epoch": epoch}
            if out is not None:
                save_checkpoint(out / "checkpoint_best.pt", model, train_config=asdict(config), epoch=epoch)
    result = {
        "config": asdict(config),
        "best": best,
        "final": metrics,
        "train_seconds": time.perf_counter() - start,
        "n_train": len(x_train),
        "n_val": len(x_val),
        "params": sum(p.numel() for p in model.parameters()),
        "head_params": sum(p.numel() for p in model.head.parameters()),
    }
    if out is not None:
        with open(out / "history.csv.tmp", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
        (out / "history.csv.tmp").replace(out / "history.csv")
        (out / "metrics.json.tmp").write_text(json.dumps(result, indent=1))
        (out / "metrics.json.tmp").replace(out / "metrics.json")
    return result
