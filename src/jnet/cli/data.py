"""``jnet data``: inspect a data source; optionally its loading speed and the low-resolution oracle."""

from __future__ import annotations

import argparse

import numpy as np

from jnet.cli._common import add_option_arg, check_out_dir, data_options
from jnet.data import SliceData, benchmark_loading, cached_load, load_data
from jnet.io import read_json
from jnet.metrics import low_resolution_oracle


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet data``."""
    p = subparsers.add_parser("data", help="inspect a data source (and measure loading speed)")
    p.add_argument("--data", default="synthetic", help="synthetic, an .npz archive, an MSD, BraTS or image folder")
    add_option_arg(p, "a reader option")
    p.add_argument("--cache-dir", default=None, help="prepare once into this folder and reuse")
    p.add_argument("--benchmark", action="store_true", help="measure images/s of loading alone")
    p.add_argument("--input-size", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument(
        "--oracle", type=int, action="append", default=[], metavar="SIZE",
        help="score the truth squeezed through SIZExSIZE and back (repeatable): the resolution's own cost",
    )  # fmt: skip
    p.add_argument("--split-file", default=None, help="--oracle: score only this split's validation patients")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the data and print its shape, patients and label shares (then the oracle and loading speed)."""
    options = data_options(args.option)
    if args.cache_dir:
        check_out_dir(args.cache_dir, "--cache-dir")
    data = cached_load(args.data, args.cache_dir, **options) if args.cache_dir else load_data(args.data, **options)
    _print_summary(args.data, data)
    if args.oracle:
        _print_oracle(args, data)
    if args.benchmark:
        _print_loading_speed(args, data)
    return 0


def _print_summary(spec: str, data: SliceData) -> None:
    n, c, h, w = data.images.shape
    patients, counts = np.unique(data.patient_id, return_counts=True)
    empty = int((data.masks.reshape(n, -1).max(axis=1) == 0).sum())
    print(f"{spec}: {n} slices of {c} channel(s) at {h}x{w} from {len(patients)} patients")
    print(
        f"  slices per patient: {counts.min()} to {counts.max()}; slices with an empty mask: {empty} ({empty / n:.0%})"
    )
    labels = np.bincount(data.masks.ravel(), minlength=len(data.class_names) + 1)
    for k, name in enumerate(["background", *data.class_names]):
        print(f"  label {k} {name}: {labels[k] / labels.sum():.3%} of pixels")


def _print_oracle(args: argparse.Namespace, data: SliceData) -> None:
    masks, where = data.masks, "all slices"
    if args.split_file is not None:
        split = read_json(args.split_file, "split file")
        if not isinstance(split, dict) or not isinstance(split.get("val"), list):
            raise ValueError(f"{args.split_file}: a split file needs a 'val' list of patient ids")
        chosen = np.isin(data.patient_id, split["val"])
        if not chosen.any():
            raise ValueError(f"{args.split_file}: none of its validation patients are in {args.data}")
        masks, where = masks[chosen], f"the {len(split['val'])} validation patients of {args.split_file}"
    k = 1 if len(data.class_names) == 1 else len(data.class_names) + 1
    h = data.masks.shape[-1]
    print(f"low-resolution oracle (the truth area-down-sampled, bilinearly up-sampled back), {where}:")
    for size in args.oracle:
        r = low_resolution_oracle(masks, size, k, data.class_names)
        print(
            f"  {size}x{size} -> {h}x{h}: mean Dice {r['mean_dice']:.4f}, mean Jaccard {r['mean_jaccard']:.4f} "
            f"(global {r['mean_dice_global']:.4f} / {r['mean_jaccard_global']:.4f}), {r['n_images']} slices"
        )


def _print_loading_speed(args: argparse.Namespace, data: SliceData) -> None:
    print(f"loading alone, {args.input_size}x{args.input_size} input, batch {args.batch_size}:")
    for loader in ("batches", "dataloader"):
        for augment in (False, True):
            r = benchmark_loading(data, args.input_size, args.batch_size, augment, epochs=args.epochs, loader=loader)
            name = "SliceBatches" if loader == "batches" else "DataLoader(workers=0)"
            print(f"  {name:<22} augment={augment!s:<5} {r['images_per_second']:>10,.0f} images/s")
