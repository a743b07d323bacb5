"""``jnet compare``: paired comparison of two sweep configurations, with a confidence interval over patients."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jnet.cli._common import add_bootstrap_args, add_overwrite_arg, check_out_file
from jnet.io import write_text
from jnet.study.compare import compare, format_comparison, format_markdown, load_pairs


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet compare``."""
    p = subparsers.add_parser("compare", help="paired comparison of two sweep configurations, with a CI over patients")
    p.add_argument("--results", required=True, help="a sweep folder (results.csv and the run folders)")
    p.add_argument(
        "--config", default=None, metavar="STUDY.yaml",
        help="take the pairs (and size bins) from a study file's compare: section, e.g. configs/study_lgg.yaml",
    )  # fmt: skip
    p.add_argument(
        "--pair", nargs=2, action="append", default=[], metavar=("A", "B"),
        help="configurations METHOD@INPUT_SIZE as in results.csv, e.g. elunet+jnet@16 elunet+interp@16, averaged "
        "over their seeds; METHOD@INPUT_SIZE/sSEED[+sSEED...] takes the seeds named, e.g. elunet+jnet@32/s0 or "
        "unet+jnet@16/s1+s2 (repeatable)",
    )  # fmt: skip
    p.add_argument("--metric", default="jaccard", help="jaccard or dice")
    add_bootstrap_args(p)
    p.add_argument(
        "--size-bins", type=_int_list, default=None, metavar="N,M,...",
        help="also compare on empty slices and on bands of the truth's foreground area in pixels, e.g. 1000,2500",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="write the comparisons as a JSON list")
    add_overwrite_arg(p, "the --out file")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the comparisons as JSON")
    fmt.add_argument("--markdown", action="store_true", help="print one markdown table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compare every pair (the study file's first, then ``--pair``'s); print each as it is done (or all as JSON
    or one markdown table). ``--size-bins`` overrides the study file's."""
    if args.out:
        results = Path(args.results)
        check_out_file(args.out, args.overwrite, inputs=(results, results / "results.csv", args.config))
    pairs, bins = [tuple(pair) for pair in args.pair], args.size_bins
    if args.config:
        study_pairs, study_bins = load_pairs(args.config)
        pairs, bins = study_pairs + pairs, bins if bins is not None else study_bins
    if not pairs:
        raise ValueError("give --pair A B (repeatable) or --config STUDY.yaml")
    loaded: dict = {}
    done = []
    for a, b in pairs:
        done.append(compare(args.results, a, b, args.metric, args.boot, args.seed, args.confidence, loaded, bins))
        if not (args.json or args.markdown):
            print(format_comparison(done[-1]), flush=True)
    if args.json:
        print(json.dumps([c.to_dict() for c in done], indent=1))
    elif args.markdown:
        print(format_markdown(done))
    if args.out:
        write_text(args.out, json.dumps([c.to_dict() for c in done], indent=1) + "\n")
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
