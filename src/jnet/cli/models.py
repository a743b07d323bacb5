"""``jnet models``: the registered backbones and heads."""

from __future__ import annotations

import argparse

from jnet.heads import list_heads
from jnet.models import list_models


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet models``."""
    p = subparsers.add_parser("models", help="list the backbones and heads")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the backbone and head names."""
    print("backbones:", " ".join(list_models()))
    print("heads:    ", " ".join(list_heads()))
    return 0
