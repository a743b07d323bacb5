"""``jnet crossval``: pool a cross-validation sweep's folds into per-patient 3D Dice over every patient."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jnet.cli._common import add_bootstrap_args, add_overwrite_arg, check_out_file
from jnet.io import write_text
from jnet.study.compare import load_pairs
from jnet.study.crossval import (
    SLICE_SETS,
    compare_pooled,
    configurations,
    format_markdown,
    format_pooled,
    pool_folds,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet crossval``."""
    p = subparsers.add_parser(
        "crossval", help="pool a cross-validation sweep's folds: per-patient 3D Dice over every patient, with CIs"
    )
    p.add_argument("--results", required=True, help="the sweep folder of a sweep with a fold axis (results.csv)")
    p.add_argument(
        "--config", default=None, metavar="STUDY.yaml",
        help="also compare the pairs of a study file's compare: section, e.g. configs/cv_lgg.yaml",
    )  # fmt: skip
    p.add_argument(
        "--pair", nargs=2, action="append", default=[], metavar=("A", "B"),
        help="compare two configurations patient by patient, e.g. elunet+jnet@16 elunet+interp@16 (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--only", action="append", default=[], metavar="METHOD@INPUT_SIZE",
        help="pool these configurations (repeatable; default: every one in results.csv)",
    )  # fmt: skip
    p.add_argument(
        "--incomplete", action="store_true",
        help="pool a configuration over the folds it has (marked INCOMPLETE) instead of refusing it, and compare "
        "a pair on the patients both scored (marked INCOMPLETE too)",
    )  # fmt: skip
    p.add_argument(
        "--scores-file", default="val_scores.csv", metavar="NAME",
        help="the per-slice scores to pool in each run folder (default: the training's val_scores.csv), e.g. one "
        "written by jnet evaluate --largest-component --scores RUN/val_scores_lcc.csv",
    )  # fmt: skip
    p.add_argument(
        "--slices", choices=SLICE_SETS, default="all",
        help="pool every validation slice (default) or only those whose ground truth has foreground (tumour): "
        "set beside the default, it shows whether a gap comes from false positives on empty slices",
    )  # fmt: skip
    add_bootstrap_args(p)
    p.add_argument("--out", default=None, help="write the pooled scores (per patient too) and comparisons as JSON")
    add_overwrite_arg(p, "the --out file")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the result as JSON")
    fmt.add_argument("--markdown", action="store_true", help="print markdown tables")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Pool each configuration, then compare the pairs (the study file's first, then ``--pair``'s)."""
    results = Path(args.results)
    if args.out:
        check_out_file(args.out, args.overwrite, inputs=(results, results / "results.csv", args.config))
    pairs = [tuple(pair) for pair in args.pair]
    if args.config:
        pairs = load_pairs(args.config)[0] + pairs
    specs = list(dict.fromkeys([*(args.only or configurations(results)), *(s for pair in pairs for s in pair)]))
    settings = (args.boot, args.seed, args.confidence)
    pooled = {}
    for spec in specs:
        pooled[spec] = pool_folds(
            results, spec, *settings, allow_incomplete=args.incomplete, scores_file=args.scores_file,
            slices=args.slices,
        )  # fmt: skip
        if not (args.json or args.markdown):
            print(format_pooled(pooled[spec]), flush=True)
    comparisons = [compare_pooled(pooled[a], pooled[b], *settings, shared_only=args.incomplete) for a, b in pairs]
    if not (args.json or args.markdown):
        for c in comparisons:
            r = c.result
            print(
                f"{c.a} vs {c.b}{'' if c.complete else ' (INCOMPLETE)'}, {r.n_patients} patients: "
                f"3D Dice {100 * r.mean_a:.1f} vs {100 * r.mean_b:.1f}, "
                f"difference {100 * r.difference:+.1f} ({100 * r.confidence:g}% CI over patients "
                f"{100 * r.ci_low:+.1f} .. {100 * r.ci_high:+.1f}); patients better / worse "
                f"{r.patients_better} / {r.patients_worse} (sign test p = {r.sign_test_p:.3g})"
            )
    document = {
        "configurations": [p.to_dict() for p in pooled.values()],
        "comparisons": [c.to_dict() for c in comparisons],
    }
    if args.json:
        print(json.dumps(document, indent=1))
    elif args.markdown:
        print(format_markdown(list(pooled.values()), comparisons))
    if args.out:
        write_text(args.out, json.dumps(document, indent=1) + "\n")
    return 0
