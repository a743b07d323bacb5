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
