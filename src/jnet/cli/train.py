"""``jnet train``: train a model and write a run directory; a flag for every setting of :class:`TrainConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from jnet.cli._common import add_option_arg, data_options
from jnet.heads import list_heads
from jnet.losses import list_losses
from jnet.training import TrainConfig, train
from jnet.training.config import SCHEDULES

#: TrainConfig fields without a flag of their own name: how the command line sets each instead.
NOT_FLAGS: dict[str, str] = {
    "data_options": "--option KEY=VALUE (repeatable)",
    "head_options": "--head-init (the 'init' head option)",
    "loss_weights": "--loss-weights all, final or w0,w1,...",
    "downsample_mode": "only in a --config file",
    "amp": "only in a --config file",
}


def _one_of(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


def field_help() -> dict[str, str]:
    """The help text of every TrainConfig field that is a flag (the choices as registered now).

    ``jnet train --help`` lists the flags in this order; a field missing here comes last, without help.
    """
    return {
        "data": "synthetic, an .npz archive, an MSD, BraTS or image folder",
        "cache_dir": "prepare the data once into this folder and reuse it",
        "model": "backbone name (jnet models)",
        "width": "backbone width",
        "head": f"{_one_of(list_heads())} (jnet models)",
        "input_size": "network input side r",
        "output_size": "mask side S",
        "num_classes": "K (default: from the data)",
        "loss": _one_of(list_losses()),
        "target_resize": "nearest or area",
        "epochs": "",
        "batch_size": "",
        "lr": "peak learning rate",
        "weight_decay": "",
        "schedule": _one_of(SCHEDULES),
        "seed": "seed of the split, the initialisation and every epoch's order",
        "val_fraction": "share of patients held out",
        "folds": "k-fold cross-validation: number of folds",
        "fold": "which fold is the validation side",
        "split_file": "a split.json to use instead of a new split",
        "device": "auto, cpu or cuda",
        "threads": "torch threads on the CPU",
        "augment": "flips, rotation, ...",
    }


def flag_fields() -> list[dataclasses.Field]:
    """The TrainConfig fields that are flags of their own name (``--batch-size`` for ``batch_size``).

    Every field not in :data:`NOT_FLAGS`, in the order of :func:`field_help`.
    """
    order = list(field_help())
    fields = [f for f in dataclasses.fields(TrainConfig) if f.name not in NOT_FLAGS]
    return sorted(fields, key=lambda f: order.index(f.name) if f.name in order else len(order))


def _flag_type(name: str, hint: Any) -> type:
    """``int`` for ``int | None`` and the like; only str, int, float and bool fields can be flags."""
    members = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    if len(members) != 1 or members[0] not in (str, int, float, bool):
        raise TypeError(f"TrainConfig.{name} ({hint}) cannot be a flag: add it to NOT_FLAGS in {__name__}")
    return members[0]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet train``: its own options, then one flag per TrainConfig field (default: the config's)."""
    p = subparsers.add_parser("train", help="train a model; writes a run directory")
    p.add_argument("--config", default=None, help="a YAML file of settings; flags override it")
    p.add_argument("--out", default=None, help="the run directory")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run where it stopped")
    hints, texts = typing.get_type_hints(TrainConfig), field_help()
    for f in flag_fields():
        flag, typ, text = f"--{f.name.replace('_', '-')}", _flag_type(f.name, hints[f.name]), texts.get(f.name, "")
        if typ is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            p.add_argument(flag, type=typ, default=None, help=text)
    p.add_argument("--loss-weights", default=None, help="all (default), final, or w0,w1,... coarsest first")
    p.add_argument("--head-init", default=None, help="nearest (default) or default (PyTorch's)")
    add_option_arg(p)
    p.set_defaults(func=run)


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """``--config`` YAML values, overridden by the flags given on the command line."""
    values: dict[str, object] = {}
    if args.config:
        values.update(vars(TrainConfig.from_yaml(args.config)))
    for f in flag_fields():
        if getattr(args, f.name) is not None:
            values[f.name] = getattr(args, f.name)
    if args.loss_weights is not None:
        values["loss_weights"] = None if args.loss_weights == "all" else (
            "final" if args.loss_weights == "final" else [float(w) for w in args.loss_weights.split(",")]
        )  # fmt: skip
    if args.option:
        values["data_options"] = {**dict(values.get("data_options") or {}), **data_options(args.option)}
    if args.head_init is not None:
        values["head_options"] = {**dict(values.get("head_options") or {}), "init": args.head_init}
    return TrainConfig.from_dict(values, "jnet train")


def run(args: argparse.Namespace) -> int:
    """Train a new run (``--out``) or continue one (``--resume``); print the best epoch."""
    if args.resume:
        out = Path(args.resume)
        config = TrainConfig.from_yaml(out / "config.yaml")
        if args.out and Path(args.out) != out:
            raise ValueError("--resume continues a run in its own folder; leave out --out")
    else:
        if not args.out:
            raise ValueError("give --out RUN_DIR (or --resume RUN_DIR)")
        out = Path(args.out)
        if (out / "checkpoint_last.pt").exists():
            raise ValueError(f"{out} already holds a run; use --resume {out} or another --out")
        config = train_config_from_args(args)
    progress = _Progress(config.epochs, first_epoch=None if args.resume else 1)
    result = train(config, out, resume=bool(args.resume), on_epoch=progress.epoch, on_batch=progress.batch)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 reports
    best = result["best"]
    print(
        f"best epoch {best.get('epoch')}: mean Dice {best['mean_dice']:.4f}, mean Jaccard {best['mean_jaccard']:.4f} "
        f"at {best['resolution'][0]}x{best['resolution'][1]}; {result['train_seconds']:.0f} s of training; "
        f"run in {out}"
    )
    return 0


class _Progress:
    """On a terminal a tqdm bar per epoch over the batches (on stderr); a line per epoch in any case.

    Example:
        >>> progress = _Progress(epochs=2)
        >>> progress.epoch({"epoch": 1, "train_loss": 0.5, "val_mean_dice": 0.8, "val_mean_jaccard": 0.7,
        ...                 "images_per_second": 120.0, "epoch_seconds": 2.0})
        epoch 1/2 loss 0.5000 val dice 0.8000 jaccard 0.7000 (120 img/s, 2.0 s)
    """

    def __init__(self, epochs: int, first_epoch: int | None = 1) -> None:
        self.epochs, self.next_epoch = epochs, first_epoch
        self.tty = sys.stderr.isatty()
        self.bar: tqdm | None = None

    def batch(self, i: int, n: int, loss: float, ips: float) -> None:
        """After batch ``i`` of ``n``: move the bar; ``loss`` so far, ``ips`` images per second."""
        if not self.tty:
            return
        if self.bar is None:
            desc = f"epoch {self.next_epoch}/{self.epochs}" if self.next_epoch else "epoch"
            self.bar = tqdm(total=n, desc=desc, unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True)
        self.bar.set_postfix({"loss": f"{loss:.4f}", "img/s": f"{ips:.0f}"}, refresh=False)
        self.bar.update(i - self.bar.n)

    def epoch(self, row: dict[str, Any]) -> None:
        """After an epoch: close its bar and print the epoch's line (``row``: its history row)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.next_epoch = int(row["epoch"]) + 1
        print(
            f"epoch {row['epoch']}/{self.epochs} loss {row['train_loss']:.4f} "
            f"val dice {row['val_mean_dice']:.4f} jaccard {row['val_mean_jaccard']:.4f} "
            f"({row['images_per_second']:.0f} img/s, {row['epoch_seconds']:.1f} s)",
            flush=True,
        )
