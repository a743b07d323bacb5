"""``jnet profile``: parameters, GMACs and activation memory of a model; ``--table``: the paper's Table 4."""

from __future__ import annotations

import argparse
import json

from jnet.cli._common import add_model_args, model_from_args
from jnet.deploy.profile import format_paper_table, format_profile, paper_table, profile_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet profile``."""
    p = subparsers.add_parser("profile", help="parameters, GMACs and activation memory; --table: the paper's Table 4")
    add_model_args(p, "profile this checkpoint's model")
    p.add_argument("--batch-size", type=int, default=1, help="batch of the eval forward whose memory is measured")
    p.add_argument("--train", action="store_true", help="also measure one training step (computed on the CPU)")
    p.add_argument("--table", action="store_true", help="the paper's Table 4: U-Net, ELU-Net, J-Net at 320..16")
    p.add_argument("--table-output-size", type=int, default=320, help="J-Net's output size in --table")
    p.add_argument("--unet-width", type=int, default=None, help="U-Net width in --table (default 64)")
    p.add_argument("--elunet-width", type=int, default=None, help="ELU-Net width in --table (default 16)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Profile one model, or build the paper's table."""
    if args.table:
        rows = paper_table(
            output_size=args.table_output_size,
            unet_width=args.unet_width,
            elunet_width=args.elunet_width,
            train=args.train,
        )
        print(json.dumps(rows, indent=1) if args.json else format_paper_table(rows))
        return 0
    model = model_from_args(args)
    in_channels = int(model.config["in_channels"])
    info = profile_model(model, in_channels, batch_size=args.batch_size, train=args.train)
    print(json.dumps(info, indent=1) if args.json else format_profile(info, in_channels))
    return 0
