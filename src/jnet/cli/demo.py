"""``jnet demo``: train the baseline and J-Net on synthetic phantoms and compare them."""

from __future__ import annotations

import argparse

from jnet.cli._common import add_overwrite_arg, check_out_dir
from jnet.study.demo import format_table, run_demo


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet demo``."""
    p = subparsers.add_parser("demo", help="train the baseline and J-Net on synthetic phantoms and compare")
    p.add_argument("--quick", action="store_true", help="a smaller run (under 2 minutes on 2 CPU cores)")
    p.add_argument("--out", default=None, help="folder for the runs and results.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heads", default="none,interp,jnet", help="comma-separated heads to train")
    p.add_argument("--head-init", default="nearest", help="init of the J-Net heads: nearest or default")
    add_overwrite_arg(p, "the files in a --out folder that is not empty (an earlier demo's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its table; a ``--out`` folder that is not empty only with ``--overwrite``."""
    if args.out:
        out = check_out_dir(args.out)
        if out.is_dir() and any(out.iterdir()) and not args.overwrite:
            raise ValueError(f"{out}: is not empty; give --overwrite to write the demo's runs and results over it")
    heads = args.heads.split(",")
    results = run_demo(quick=args.quick, out_dir=args.out, seed=args.seed, heads=heads, head_init=args.head_init)
    print(format_table(results))
    if args.out:
        print(f"results written to {args.out}")
    return 0
