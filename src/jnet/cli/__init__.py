"""The ``jnet`` command line: parses arguments, calls library functions, prints."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from jnet._version import __version__
from jnet.cli import (
    benchmark,
    compare,
    crossval,
    data,
    demo,
    evaluate,
    export,
    models,
    plan,
    predict,
    profile,
    sweep,
    train,
)

#: The command modules, in the order ``jnet --help`` lists them; each has ``add_parser(subparsers)`` and ``run(args)``.
COMMANDS = (models, train, evaluate, predict, data, profile, benchmark, export, plan, sweep, compare, crossval, demo)


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
    """Entry point of the ``jnet`` console script; returns the exit code.

    A bad argument, a file that cannot be read or written (a full disk, a read-only folder) is
    one line on stderr and exit code 2; Ctrl-C is one line and 130 (128 + SIGINT), as a shell
    reports it.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args))
    except KeyboardInterrupt as err:
        print(f"jnet {args.command}: interrupted{f' {err}' if str(err) else ''}", file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:
        print(f"jnet {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: BaseException) -> str:
    """An error as one line; an ``OSError`` from the system as ``FILE: reason`` (not ``[Errno 28] ...``)."""
    if isinstance(err, OSError) and err.errno is not None and err.strerror:
        files = [str(f) for f in (err.filename, err.filename2) if f is not None]
        text = f"{' -> '.join(files)}: {err.strerror}" if files else err.strerror
    else:
        text = str(err) or type(err).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
