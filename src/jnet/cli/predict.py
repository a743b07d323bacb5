"""``jnet predict``: segment NIfTI volumes or PNG/TIFF slices with a checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from jnet.cli._common import add_cascade_head_arg, add_overwrite_arg, check_out_dir
from jnet.deploy.predict import predict_files


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet predict``."""
    p = subparsers.add_parser("predict", help="segment NIfTI volumes or PNG/TIFF slices with a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".nii/.nii.gz volumes or .png/.tif slices")
    p.add_argument("--out", required=True, help="output folder (same file names; PNG for 2D inputs)")
    p.add_argument("--resize", default=None, help="resize or pad_crop (default: the training reader's)")
    p.add_argument("--normalize", default=None, help="zscore, percentile or slice (default: as in training)")
    p.add_argument("--modalities", default=None, help="for 4D volumes, e.g. 0 or 0,1 (default: as in training)")
    add_cascade_head_arg(p)
    add_overwrite_arg(p, "masks that exist already in --out (an input file is never replaced)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Predict every input; a progress bar on a terminal, else one line per file."""
    check_out_dir(args.out)
    tty = sys.stderr.isatty()
    modalities = _modalities(args.modalities)
    with tqdm(total=len(args.inputs), unit="file", file=sys.stderr, disable=not tty) as bar:

        def report(i: int, n: int, r: dict[str, Any]) -> None:
            bar.set_postfix_str(Path(r["input"]).name[:40], refresh=False)
            bar.update()
            if not tty:
                print(f"{i}/{n} {r['input']} -> {r['output']} (foreground {r['foreground']:.2%})", flush=True)

        results = predict_files(args.checkpoint, args.inputs, args.out, resize=args.resize, normalize=args.normalize,
                                modalities=modalities, on_file=report, overwrite=args.overwrite,
                                compiled_head=not args.cascade_head)  # fmt: skip
    print(f"{len(results)} mask(s) written to {args.out}")
    return 0


def _modalities(text: str | None) -> list[int] | None:
    try:
        return [int(m) for m in text.split(",")] if text else None
    except ValueError:
        raise ValueError(f"--modalities takes channel numbers such as 0 or 0,1; got {text!r}") from None
