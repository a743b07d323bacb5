"""The ``jnet`` command line: parses arguments, calls library functions, prints."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from jnet._version import __version__
from jnet.cli import benchmark, compare, data, demo, evaluate, export, models, plan, predict, profile, sweep, train

#: The command modules, in the order ``jnet --help`` lists them; each has ``add_parser(subparsers)`` and ``run(args)``.
COMMANDS = (models, train, evaluate, predict, data, profile, benchmark, export, plan, sweep, compare, demo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``jnet`` command."""
    parser = argparse.ArgumentParser(prog="jnet", description=__doc__)
    parser.add_argument("--version", action="version", version=f"jnet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jnet`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as err:
        print(f"jnet {args.command}: error: {err}", file=sys.stderr)
        return 2
