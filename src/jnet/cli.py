"""The ``jnet`` command line: parses arguments, calls library functions, prints."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from jnet import __version__


def _cmd_models(args: argparse.Namespace) -> int:
    from jnet.heads import list_heads
    from jnet.models import list_models

    print("backbones:", " ".join(list_models()))
    print("heads:    ", " ".join(list_heads()))
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from jnet.model import JNet
    from jnet.profile import summarize

    options = {} if args.width is None else {"width": args.width}
    model = JNet(
        args.model,
        args.num_classes,
        args.input_size,
        args.output_size,
        head=args.head,
        in_channels=args.in_channels,
        backbone_options=options,
    )
    info = summarize(model, args.in_channels)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        sizes = f"{args.input_size} -> {args.output_size}"
        print(f"{info['backbone']} + {info['head']} head, {sizes}, K={args.num_classes}")
        print(f"  parameters: {info['params']:,} (head {info['head_params']:,})")
        print(f"  GMACs/image: {info['gmacs']:.4f} (head {info['head_gmacs']:.4f})")
        print("  output scales:", ", ".join(f"{h}x{w}" for h, w in info["scales"]))
    return 0


def _data_options(pairs: Sequence[str]) -> dict[str, object]:
    """``["size=256", "modalities=[0]"]`` -> ``{"size": 256, "modalities": [0]}`` (values parsed as YAML)."""
    import yaml

    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"data option {pair!r} is not KEY=VALUE")
        options[key.replace("-", "_")] = yaml.safe_load(value)
    return options


def _cmd_data(args: argparse.Namespace) -> int:
    import numpy as np

    from jnet.data import benchmark_loading, cached_load, load_data

    options = _data_options(args.option)
    data = cached_load(args.data, args.cache_dir, **options) if args.cache_dir else load_data(args.data, **options)
    n, c, h, w = data.images.shape
    patients, counts = np.unique(data.patient_id, return_counts=True)
    empty = int((data.masks.reshape(n, -1).max(axis=1) == 0).sum())
    print(f"{args.data}: {n} slices of {c} channel(s) at {h}x{w} from {len(patients)} patients")
    print(
        f"  slices per patient: {counts.min()} to {counts.max()}; slices with an empty mask: {empty} ({empty / n:.0%})"
    )
    labels = np.bincount(data.masks.ravel(), minlength=len(data.class_names) + 1)
    for k, name in enumerate(["background", *data.class_names]):
        print(f"  label {k} {name}: {labels[k] / labels.sum():.3%} of pixels")
    if args.benchmark:
        print(f"loading alone, {args.input_size}x{args.input_size} input, batch {args.batch_size}:")
        for loader in ("batches", "dataloader"):
            for augment in (False, True):
                r = benchmark_loading(
                    data, args.input_size, args.batch_size, augment, epochs=args.epochs, loader=loader
                )
                name = "SliceBatches" if loader == "batches" else "DataLoader(workers=0)"
                print(f"  {name:<22} augment={augment!s:<5} {r['images_per_second']:>10,.0f} images/s")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from jnet.demo import format_table, run_demo

    heads = args.heads.split(",")
    results = run_demo(quick=args.quick, out_dir=args.out, seed=args.seed, heads=heads, head_init=args.head_init)
    print(format_table(results))
    if args.out:
        print(f"results written to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``jnet`` command."""
    parser = argparse.ArgumentParser(prog="jnet", description=__doc__)
    parser.add_argument("--version", action="version", version=f"jnet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the backbones and heads")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("summary", help="parameters, GMACs and output scales of a configuration")
    p.add_argument("--model", default="elunet")
    p.add_argument("--head", default="jnet")
    p.add_argument("--input-size", type=int, default=16)
    p.add_argument("--output-size", type=int, default=256)
    p.add_argument("--num-classes", type=int, default=1)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--width", type=int, default=None, help="backbone width (default: the backbone's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("data", help="inspect a data source (and measure loading speed)")
    p.add_argument("--data", default="synthetic", help="synthetic, an .npz archive, an MSD, BraTS or image folder")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a reader option")
    p.add_argument("--cache-dir", default=None, help="prepare once into this folder and reuse")
    p.add_argument("--benchmark", action="store_true", help="measure images/s of loading alone")
    p.add_argument("--input-size", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("demo", help="train the baseline and J-Net on synthetic phantoms and compare")
    p.add_argument("--quick", action="store_true", help="a smaller run (under 2 minutes on 2 CPU cores)")
    p.add_argument("--out", default=None, help="folder for the runs and results.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heads", default="none,interp,jnet", help="comma-separated heads to train")
    p.add_argument("--head-init", default="nearest", help="init of the J-Net heads: nearest or default")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jnet`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as err:
        print(f"jnet {args.command}: error: {err}", file=sys.stderr)
        return 2
