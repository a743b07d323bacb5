"""``jnet evaluate``: Dice and Jaccard of a checkpoint at full resolution."""

from __future__ import annotations

import argparse

from jnet.cli._common import (
    add_cascade_head_arg,
    add_option_arg,
    add_overwrite_arg,
    check_out_file,
    data_options,
    write_json,
)
from jnet.training.evaluate import evaluate_checkpoint, format_evaluation
from jnet.training.scores import checkpoint_scores, write_scores


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet evaluate``."""
    p = subparsers.add_parser("evaluate", help="Dice and Jaccard of a checkpoint at full resolution")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=None, help="default: the data the checkpoint was trained on")
    p.add_argument("--split", default="val", help="val (the run's validation patients) or all")
    p.add_argument("--split-file", default=None, help="default: split.json beside the checkpoint")
    add_option_arg(p)
    p.add_argument("--out", default=None, help="write the metrics as JSON")
    p.add_argument("--scores", default=None, metavar="CSV", help="write each slice's Dice and Jaccard (val_scores.csv)")
    p.add_argument(
        "--largest-component",
        action="store_true",
        help="post-process before scoring: keep, per patient volume and class, only the largest 3D connected "
        "component (6-connected) of the prediction; off by default, named in the output when on",
    )
    add_cascade_head_arg(p)
    add_overwrite_arg(p, "the --out and --scores files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score the checkpoint, print the scores, optionally write them as JSON (its path checked first)."""
    for flag, path in (("--out", args.out), ("--scores", args.scores)):
        if path:
            check_out_file(path, args.overwrite, inputs=(args.checkpoint, args.data, args.split_file), flag=flag)
    options = data_options(args.option) if args.option else None
    compiled = False if args.cascade_head else None
    post = "largest_component_3d" if args.largest_component else None
    result = evaluate_checkpoint(args.checkpoint, args.data, args.split, options, args.split_file, compiled, post)
    print(format_evaluation(result, args.split))
    if args.out:
        write_json(args.out, result)
    if args.scores:
        where = {"data": args.data, "split": args.split, "data_options": options, "split_file": args.split_file}
        scores = checkpoint_scores(args.checkpoint, compiled_head=compiled, postprocessing=post, **where)
        write_scores(scores, args.scores)
        print(f"per-slice scores written to {args.scores}")
    return 0
