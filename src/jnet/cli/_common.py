"""Helpers that several commands share: reader options, the model arguments, JSON output files."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from jnet.deploy.benchmark import build_model
from jnet.io import write_text
from jnet.model import JNet

#: The arguments of :func:`add_model_args` that name the model (``--compare`` may override them).
MODEL_KEYS = ("checkpoint", "model", "head", "input_size", "output_size", "num_classes", "in_channels", "width")


def data_options(pairs: Sequence[str]) -> dict[str, object]:
    """``["size=256", "modalities=[0]"]`` -> ``{"size": 256, "modalities": [0]}`` (values parsed as YAML)."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"data option {pair!r} is not KEY=VALUE")
        options[key.replace("-", "_")] = yaml.safe_load(value)
    return options


def add_option_arg(p: argparse.ArgumentParser, text: str = "a data reader option", flag: str = "--option") -> None:
    """The repeatable ``--option KEY=VALUE`` of a data reader (see :func:`data_options`)."""
    p.add_argument(flag, action="append", default=[], metavar="KEY=VALUE", help=text)


def add_model_args(p: argparse.ArgumentParser, checkpoint_help: str) -> None:
    """The options that name a model: a checkpoint, or a configuration with fresh weights."""
    p.add_argument("--checkpoint", default=None, help=checkpoint_help)
    p.add_argument("--model", default="elunet")
    p.add_argument("--head", default="jnet")
    p.add_argument("--input-size", type=int, default=16)
    p.add_argument("--output-size", type=int, default=256)
    p.add_argument("--num-classes", type=int, default=1)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--width", type=int, default=None, help="backbone width (default: the backbone's)")
    p.add_argument(
        "--full-resolution-input", action="store_true",
        help="the deployment-shaped model: it takes the output-size image and down-samples it itself "
        "(always so for image-guided heads)",
    )  # fmt: skip


def model_from_args(args: argparse.Namespace, **overrides: object) -> JNet:
    """The model that :func:`add_model_args`' options name; ``overrides`` replace some of them."""
    spec: dict[str, Any] = {k: getattr(args, k) for k in MODEL_KEYS}
    spec["full_resolution_input"] = True if getattr(args, "full_resolution_input", False) else None
    spec.update(overrides)
    return build_model(**spec)


def write_json(path: str | Path, value: object) -> None:
    """Write ``value`` as indented JSON to ``path`` (atomically)."""
    write_text(path, json.dumps(value, indent=1))


def append_json(path: str | Path, entries: list[dict[str, Any]]) -> None:
    """Append ``entries`` to the JSON list in ``path`` (created when missing or empty)."""
    target = Path(path)
    existing = []
    if target.is_file() and target.stat().st_size:
        try:
            existing = json.loads(target.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{target}: exists but is not a JSON list of results ({err})") from err
        if not isinstance(existing, list):
            raise ValueError(f"{target}: exists but is not a JSON list of results")
    write_json(target, existing + entries)
