"""Helpers that several commands share: reader options, the model arguments, JSON output files."""

from __future__ import annotations

import argparse
import json
import os
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
        try:
            options[key.replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            reason = " ".join(str(err).split())
            raise ValueError(f"data option {pair!r}: the value is not valid YAML ({reason})") from None
    return options


def add_bootstrap_args(p: argparse.ArgumentParser) -> None:
    """``--boot``, ``--seed`` and ``--confidence``: the bootstrap over patients of ``jnet compare`` and ``crossval``."""
    p.add_argument("--boot", type=int, default=10000, help="bootstrap resamples of the patients")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    p.add_argument("--confidence", type=float, default=0.95)


def add_overwrite_arg(p: argparse.ArgumentParser, what: str = "the output file") -> None:
    """``--overwrite``: the one flag that lets a command replace a file it did not write itself."""
    p.add_argument("--overwrite", action="store_true", help=f"replace {what} if it exists (refused otherwise)")


def check_out_file(
    path: str | Path, overwrite: bool, inputs: Sequence[str | Path | None] = (), flag: str = "--out"
) -> Path:
    """Refuse, before any work, an output file that cannot be written or may not be replaced.

    It may not be a folder; its folder must exist and be writable; it may never be one of the
    command's ``inputs``; an existing file is replaced only with ``--overwrite``.
    """
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; {flag} names the file to write")
    check_writable_folder(out.parent, flag)
    for given in inputs:
        if given is not None and same_file(out, given):
            raise ValueError(f"{out}: is an input of this command; {flag} may not replace it")
    if out.exists() and not overwrite:
        raise ValueError(f"{out}: already exists; give --overwrite to replace it")
    return out


def check_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """Refuse, before any work, an output folder that is a file or cannot be created or written."""
    out = Path(path)
    existing = next(p for p in (out, *out.parents) if p.exists() or p == Path(p.anchor or "."))
    if existing == out and not out.is_dir():
        raise ValueError(f"{out}: is a file; {flag} names a folder")
    check_writable_folder(existing, flag)
    return out


def check_writable_folder(folder: Path, flag: str = "--out") -> None:
    """``folder`` exists, is a folder and can take new files."""
    folder = folder if str(folder) else Path(".")
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder (for {flag})")
    if not folder.is_dir():
        raise ValueError(f"{folder}: is a file, not a folder (for {flag})")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{folder}: folder is not writable (for {flag})")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (through links and ``..`` too)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


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
    add_cascade_head_arg(p)


def add_cascade_head_arg(p: argparse.ArgumentParser) -> None:
    """``--cascade-head``: run the J-Net head as its cascade of stages instead of its compiled form."""
    p.add_argument(
        "--cascade-head", action="store_true",
        help="run the J-Net head as its cascade of up-scaling stages, not in its compiled form "
        "(jnet.compiled: the same outputs to float rounding, at a fraction of the cost)",
    )  # fmt: skip


def model_from_args(args: argparse.Namespace, **overrides: object) -> JNet:
    """The model that :func:`add_model_args`' options name; ``overrides`` replace some of them."""
    spec: dict[str, Any] = {k: getattr(args, k) for k in MODEL_KEYS}
    spec["full_resolution_input"] = True if getattr(args, "full_resolution_input", False) else None
    spec["compiled_head"] = not getattr(args, "cascade_head", False)
    spec.update(overrides)
    return build_model(**spec)


def write_json(path: str | Path, value: object) -> None:
    """Write ``value`` as indented JSON to ``path`` (atomically)."""
    write_text(path, json.dumps(value, indent=1))


def append_json(path: str | Path, entries: list[dict[str, Any]]) -> None:
    """Append ``entries`` to the JSON list of results in ``path`` (created when missing or empty)."""
    write_json(path, read_results(path) + entries)


def read_results(path: str | Path, flag: str = "--out") -> list[dict[str, Any]]:
    """The JSON list of ``jnet benchmark`` results in ``path`` (``[]`` when missing or empty).

    Anything else is refused, so appending never replaces a file that is not jnet's: a folder,
    a file that is not JSON, or JSON that is not a list of results (objects with ``latency_ms_median``).
    """
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{target}: is a folder; {flag} names a JSON file of results")
    check_writable_folder(target.parent, flag)
    if not target.is_file() or not target.stat().st_size:
        return []
    try:
        existing = json.loads(target.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        existing = None
    if not isinstance(existing, list) or not all(isinstance(e, dict) and "latency_ms_median" in e for e in existing):
        raise ValueError(
            f"{target}: exists but is not a JSON list of jnet benchmark results; {flag} appends to such a list, "
            "give a new file"
        )
    return existing
