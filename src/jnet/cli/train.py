"""``jnet train``: train a model and write a run directory; a flag for every setting of :class:`TrainConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from jnet.cli._common import (
    add_cascade_head_arg,
    add_option_arg,
    check_out_dir,
    check_writable_folder,
    data_options,
    same_file,
)
from jnet.heads import list_heads
from jnet.io import write_text
from jnet.losses import list_losses
from jnet.training import RUN_FILES, TrainConfig, read_checkpoint, train
from jnet.training.config import SCHEDULES

#: TrainConfig fields without a flag of their own name: how the command line sets each instead.
NOT_FLAGS: dict[str, str] = {
    "data_options": "--option KEY=VALUE (repeatable)",
    "head_options": "--head-init (the 'init' head option)",
    "loss_weights": "--loss-weights all, final or w0,w1,...",
    "downsample_mode": "only in a --config file",
    "amp": "only in a --config file",
    "compiled_head": "--cascade-head (compiled_head: false)",
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
    p.add_argument(
        "--overwrite", action="store_true",
        help="train into a --out folder that is not empty (its run files are deleted first)",
    )  # fmt: skip
    hints, texts = typing.get_type_hints(TrainConfig), field_help()
    for f in flag_fields():
        flag, typ, text = f"--{f.name.replace('_', '-')}", _flag_type(f.name, hints[f.name]), texts.get(f.name, "")
        if typ is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            p.add_argument(flag, type=typ, default=None, help=text)
    p.add_argument("--loss-weights", default=None, help="all (default), final, or w0,w1,... coarsest first")
    p.add_argument("--head-init", default=None, help="nearest (default) or default (PyTorch's)")
    add_cascade_head_arg(p)
    add_option_arg(p)
    p.set_defaults(func=run)


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """``--config`` YAML values, overridden by the flags given on the command line."""
    return TrainConfig.from_dict(given_settings(args), "jnet train")


def given_settings(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base`` (default: none), updated with the ``--config`` file's settings and then the flags given."""
    values: dict[str, Any] = dict(base or {})
    if args.config:
        values.update(vars(TrainConfig.from_yaml(args.config)))
    for f in flag_fields():
        if getattr(args, f.name) is not None:
            values[f.name] = getattr(args, f.name)
    if args.loss_weights is not None:
        values["loss_weights"] = _loss_weights(args.loss_weights)
    if args.option:
        values["data_options"] = {**dict(values.get("data_options") or {}), **data_options(args.option)}
    if args.head_init is not None:
        values["head_options"] = {**dict(values.get("head_options") or {}), "init": args.head_init}
    if getattr(args, "cascade_head", False):
        values["compiled_head"] = False
    return values


def _loss_weights(text: str) -> str | list[float] | None:
    if text in ("all", "final"):
        return None if text == "all" else text
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise ValueError(f"--loss-weights takes all, final or numbers w0,w1,...; got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    """Train a new run (``--out``) or continue one (``--resume``); print the best epoch.

    Ctrl-C or a failed write (a full disk) ends with one line that says how the run resumes.
    """
    out, config, first_epoch = _resumed_run(args) if args.resume else _new_run(args)
    progress = _Progress(config.epochs, first_epoch=first_epoch)
    try:
        result = train(config, out, resume=bool(args.resume), on_epoch=progress.epoch, on_batch=progress.batch)
    except KeyboardInterrupt:
        progress.close()
        if not _is_run(out):
            raise KeyboardInterrupt(f"before training began; nothing was saved in {out}") from None
        epoch = progress.next_epoch or first_epoch
        raise KeyboardInterrupt(
            f"in epoch {epoch} of {config.epochs} ({epoch - 1} finished and saved); {_how_to_resume(out)}"
        ) from None
    except OSError as err:
        progress.close()
        if err.errno is None or not _is_run(out):
            raise
        reason = err.strerror or os.strerror(err.errno)
        raise OSError(err.errno, f"{reason}; {_how_to_resume(out)}", err.filename) from err
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 reports
    best = result["best"]
    print(
        f"best epoch {best.get('epoch')}: mean Dice {best['mean_dice']:.4f}, mean Jaccard {best['mean_jaccard']:.4f} "
        f"at {best['resolution'][0]}x{best['resolution'][1]}; {result['train_seconds']:.0f} s of training; "
        f"run in {out}"
    )
    return 0


#: Settings that ``--resume`` takes from the command line: they choose the hardware or the data cache, not
#: what is computed (``jnet sweep`` resumes its runs with these changed too).
RESUME_MAY_CHANGE = ("device", "threads", "cache_dir")


def _new_run(args: argparse.Namespace) -> tuple[Path, TrainConfig, int]:
    """``--out``: the folder, checked before anything is loaded, and the config of the new run."""
    if not args.out:
        raise ValueError("give --out RUN_DIR (or --resume RUN_DIR)")
    out = check_out_dir(args.out)
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if names and not args.overwrite:
        if "checkpoint_last.pt" in names:
            raise ValueError(f"{out}: already holds a run; continue it with --resume {out}, or give --overwrite")
        if _is_run(out):
            raise ValueError(
                f"{out}: holds a run that stopped in its first epoch (no checkpoint_last.pt); start it again with "
                f"--resume {out}, or give --overwrite"
            )
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise ValueError(f"{out}: is not empty ({shown}) and holds no jnet run; give a new folder, or --overwrite")
    config = train_config_from_args(args)
    if names:  # --overwrite: no file of an earlier run may mix with the new one's
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    return out, config, 1


def _resumed_run(args: argparse.Namespace) -> tuple[Path, TrainConfig, int]:
    """``--resume``: the run folder, the settings it continues with, and the first epoch to train."""
    out = Path(args.resume)
    if args.out and not same_file(args.out, out):
        raise ValueError("--resume continues a run in its own folder; leave out --out")
    if args.config:
        raise ValueError(f"--resume takes its settings from {out / 'config.yaml'}; leave out --config")
    if args.overwrite:
        raise ValueError("--overwrite is for a new run in a used --out folder; --resume continues the run instead")
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: no such run folder")
    check_writable_folder(out, "--resume")
    last = out / "checkpoint_last.pt"
    if not last.is_file() and not _is_run(out):
        raise ValueError(
            f"{out}: not a jnet run (no config.yaml and split.json); to train with a settings file: "
            "jnet train --config FILE --out NEW_DIR"
        )
    saved = TrainConfig.from_yaml(out / "config.yaml")
    done = int(read_checkpoint(last)["epoch"]) if last.is_file() else 0
    config = _resume_settings(args, saved, done, out)
    if int(os.environ.get("RANK", "0")) == 0 and not done:
        print(f"{out}: no checkpoint_last.pt (the run stopped in its first epoch): it starts again at epoch 1")
    return out, config, done + 1


def _resume_settings(args: argparse.Namespace, saved: TrainConfig, done: int, out: Path) -> TrainConfig:
    """The saved settings with the flags given to ``--resume``: those of :data:`RESUME_MAY_CHANGE`, and
    ``--epochs`` where the schedule does not depend on it; any other change is refused."""
    base = asdict(saved)
    given = given_settings(args, base)
    changed = [k for k in given if given[k] != base[k]]
    refused = [k for k in changed if k not in (*RESUME_MAY_CHANGE, "epochs")]
    if refused:
        diff = ", ".join(f"{_flag(k)} ({base[k]!r} -> {given[k]!r})" for k in refused)
        raise ValueError(
            f"--resume continues {out} with the settings of its config.yaml, and these flags would change them: "
            f"{diff}; leave them out, or start a new run with --out"
        )
    if "epochs" in changed:
        epochs = given["epochs"]
        if saved.schedule != "constant" and done:
            raise ValueError(
                f"--epochs {epochs} with --resume: the {saved.schedule} learning-rate schedule of {out} is laid out "
                f"over the run's epochs ({saved.epochs}), so the resumed run would not be the one that --epochs "
                f"{epochs} trains; start a new run with --out (only --schedule constant runs can be extended)"
            )
        if epochs < done:
            raise ValueError(f"--epochs {epochs} with --resume: {out} has already finished {done} epochs")
    config = TrainConfig.from_dict(given, "jnet train")
    if changed and int(os.environ.get("RANK", "0")) == 0:
        write_text(out / "config.yaml", config.to_yaml())  # the run's own file: it now runs with these settings
        print(f"{out}: resuming with " + ", ".join(f"{k} {given[k]!r} (was {base[k]!r})" for k in changed))
    return config


def _flag(key: str) -> str:
    """The flag that sets TrainConfig field ``key``."""
    named = {"data_options": "--option", "head_options": "--head-init", "loss_weights": "--loss-weights"}
    return named.get(key, "--" + key.replace("_", "-"))


def _is_run(out: Path) -> bool:
    """Whether ``out`` holds a jnet run that has started: its ``config.yaml`` and ``split.json``."""
    return (out / "config.yaml").is_file() and (out / "split.json").is_file()


def _how_to_resume(out: Path) -> str:
    return f"the run in {out} resumes with: jnet train --resume {out}"


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

    def close(self) -> None:
        """Close the bar of an epoch that did not finish."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def epoch(self, row: dict[str, Any]) -> None:
        """After an epoch: close its bar and print the epoch's line (``row``: its history row)."""
        self.close()
        self.next_epoch = int(row["epoch"]) + 1
        print(
            f"epoch {row['epoch']}/{self.epochs} loss {row['train_loss']:.4f} "
            f"val dice {row['val_mean_dice']:.4f} jaccard {row['val_mean_jaccard']:.4f} "
            f"({row['images_per_second']:.0f} img/s, {row['epoch_seconds']:.1f} s)",
            flush=True,
        )
