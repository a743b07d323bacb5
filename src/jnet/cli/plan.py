"""``jnet plan``: the Pareto front of quality and latency; the best configuration within a budget."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jnet.cli._common import add_overwrite_arg, check_out_file
from jnet.deploy.latency_grid import load_latency_grid
from jnet.deploy.plan import fastest, format_plan, make_plan
from jnet.study.figures import plot_plan


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet plan``."""
    p = subparsers.add_parser("plan", help="Pareto front of quality and latency; the best configuration in a budget")
    p.add_argument("--results", required=True, help="a sweep folder holding results.csv (jnet sweep's), or the file")
    p.add_argument("--budget-ms", type=float, default=None)
    p.add_argument(
        "--config", default=None, metavar="STUDY.yaml",
        help="plan at each budget of a study file's latency: plan: section (its threads unless --threads)",
    )  # fmt: skip
    p.add_argument("--benchmark", default=None, help="a JSON list of jnet benchmark results (jnet benchmark --out)")
    p.add_argument("--metric", default="mean_jaccard", help="mean_jaccard or mean_dice")
    p.add_argument("--runtime", default=None, help="use only benchmark results of this runtime")
    p.add_argument("--batch-size", type=int, default=None, help="use only benchmark results at this batch")
    p.add_argument("--threads", type=int, default=None, help="use only benchmark results with these threads")
    p.add_argument("--precision", default=None, help="use only benchmark results of this precision (fp32, int8 ...)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also draw quality against latency into this file")
    add_overwrite_arg(p, "the --plot file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the plan (and draw it); an error when nothing fits the budget. With ``--config``, one plan per
    budget of the study file, the figure drawn for the last."""
    if args.plot is not None:
        results = Path(args.results)
        inputs = (results, results / "results.csv", args.benchmark, args.config)
        check_out_file(args.plot, args.overwrite, inputs=inputs, flag="--plot")
    if args.config is None:
        return _plan(args)
    if args.budget_ms is not None:
        raise ValueError("--config plans at the study file's budgets; leave out --budget-ms")
    settings = load_latency_grid(args.config).plan
    budgets = settings.get("budgets_ms") or []
    if not budgets:
        raise ValueError(f"{args.config}: latency: plan: budgets_ms is empty")
    args.threads = args.threads if args.threads is not None else settings.get("threads")
    args.runtime = args.runtime if args.runtime is not None else settings.get("runtime")
    plot, args.plot = args.plot, None
    for i, budget in enumerate(budgets):
        args.budget_ms = float(budget)
        args.plot = plot if i == len(budgets) - 1 else None
        _plan(args)
    return 0


def _plan(args: argparse.Namespace) -> int:
    plan = make_plan(
        args.results,
        budget_ms=args.budget_ms,
        benchmark=args.benchmark,
        metric=args.metric,
        runtime=args.runtime,
        batch_size=args.batch_size,
        threads=args.threads,
        precision=args.precision,
    )
    print(json.dumps(plan.to_dict(), indent=1) if args.json else format_plan(plan))
    if args.plot is not None:
        if plot_plan(plan, args.plot) is None:
            raise ValueError("--plot needs matplotlib: pip install 'jnet[plot]'")
        if not args.json:
            print(f"wrote {args.plot}")
    if args.budget_ms is not None and plan.best is None:
        quick = fastest(plan.candidates)
        raise ValueError(
            f"no configuration runs within {args.budget_ms:g} ms; the fastest, {quick.name}, "  # type: ignore[union-attr]
            f"takes {quick.latency_ms:.3f} ms"  # type: ignore[union-attr]
        )
    return 0
