"""``jnet sweep``: a grid of training runs, then the tables and figures of the paper's kind."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jnet.cli._common import add_overwrite_arg, check_out_dir
from jnet.study.sweep import format_markdown, load_sweep, run_status, run_sweep, summarize


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet sweep``."""
    p = subparsers.add_parser("sweep", help="a grid of training runs; tables and figures like the paper's")
    p.add_argument("--config", required=True, help="the sweep YAML (see configs/sweep_demo.yaml)")
    p.add_argument("--out", required=True, help="the sweep folder: one run directory per run, results, figures")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="train only unfinished runs whose name matches this glob (repeatable), e.g. 'elunet_*_r16_*'",
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether each would train or be skipped")
    add_overwrite_arg(p, "files in a --out folder that is not empty and holds no sweep (a sweep folder resumes)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train the sweep's unfinished runs (or, ``--dry-run``, list them) and print the summary."""
    if args.dry_run:
        runs = load_sweep(args.config).runs
        for i, r in enumerate(runs, start=1):
            print(f"[{i}/{len(runs)}] {r.name} ({r.method}): {run_status(Path(args.out) / r.name)}")
        print(f"{len(runs)} runs")
        return 0
    out = check_out_dir(args.out)
    if out.is_dir() and any(out.iterdir()) and not (out / "sweep.yaml").is_file() and not args.overwrite:
        raise ValueError(f"{out}: is not empty and holds no sweep (no sweep.yaml); give a new folder, or --overwrite")
    rows = run_sweep(args.config, args.out, on_run=_print_event, only=args.only or None)
    if not rows:
        print("no run has finished yet")
        return 0
    print()
    print(format_markdown(summarize(rows)))
    print(f"results in {args.out}: results.csv, results.md and figures")
    return 0


def _print_event(event: dict[str, Any]) -> None:
    where = f"[{event['index']}/{event['total']}] {event['run']}"
    if event["status"] == "skip":
        print(f"{where}: finished before, skipped", flush=True)
    elif event["status"] == "done":
        row = event["row"]
        print(
            f"{where}: done, mean Jaccard {row['mean_jaccard']:.4f}, Dice {row['mean_dice']:.4f} "
            f"(epoch {row['best_epoch']}), {row['train_seconds']:.0f} s"
            + ("" if row["epoch_seconds"] == "" else f" ({row['epoch_seconds']:.1f} s per epoch, median)"),
            flush=True,
        )
    else:
        verb = "resuming" if event["status"] == "resume" else "training"
        print(f"{where}: {verb} {event['method']}", flush=True)
