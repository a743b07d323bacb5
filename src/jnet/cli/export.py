"""``jnet export``: ONNX export (fp32, fp16, int8) with parity, quality and speed checks."""

from __future__ import annotations

import argparse
import json

import torch

from jnet.cli._common import add_cascade_head_arg, add_option_arg, add_overwrite_arg, check_out_file, data_options
from jnet.deploy.export import export_checkpoint, format_export_report, network_inputs
from jnet.training.checkpoint import load_checkpoint


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet export``."""
    p = subparsers.add_parser("export", help="ONNX export (fp32, fp16, int8) with parity, quality and speed checks")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--precision", default="fp32", help="fp32, fp16 or int8")
    p.add_argument("--calibration", default=None, help="int8: data whose slices calibrate the activation ranges")
    p.add_argument("--calibration-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--calibration-size", type=int, default=64, help="slices drawn for calibration")
    p.add_argument("--data", default=None, help="validation data: Dice/Jaccard of PyTorch, fp32 and the export")
    add_option_arg(p, "a reader option of --data")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--speed-runs", type=int, default=100, help="fp16/int8: alternated batch-1 runs against fp32")
    p.add_argument(
        "--low-res-input", action="store_true",
        help="export the graph that reads the down-sampled image (default: it takes the full-resolution "
        "image and down-samples it itself, as training did)",
    )  # fmt: skip
    add_cascade_head_arg(p)
    p.add_argument("--json", action="store_true")
    add_overwrite_arg(p, "the --out file (never the checkpoint itself)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export the checkpoint and print the report."""
    check_out_file(args.out, args.overwrite, inputs=(args.checkpoint, args.calibration, args.data))
    calibration, validation = _network_inputs(args)
    report = export_checkpoint(
        args.checkpoint,
        args.out,
        precision=args.precision,
        calibration=calibration,
        validation=validation,
        opset=args.opset,
        speed_runs=args.speed_runs,
        threads=args.threads,
        full_resolution_input=not args.low_res_input,
        compiled_head=not args.cascade_head,
    )
    print(json.dumps(report, indent=1) if args.json else format_export_report(report, args.data))
    return 0


def _network_inputs(args: argparse.Namespace) -> tuple[torch.Tensor | None, tuple[torch.Tensor, torch.Tensor] | None]:
    """The int8 calibration inputs and the validation ``(inputs, masks)`` that the arguments ask for."""
    model, ckpt = load_checkpoint(args.checkpoint, full_resolution_input=not args.low_res_input)
    mode = (ckpt.get("train_config") or {}).get("downsample_mode", "area")
    calibration = validation = None
    if args.calibration is not None:
        if args.precision != "int8":
            raise ValueError("--calibration is for --precision int8")
        options = data_options(args.calibration_option)
        calibration = network_inputs(
            args.calibration, model, options, limit=args.calibration_size, downsample_mode=mode
        )[0]
    if args.data is not None:
        validation = network_inputs(args.data, model, data_options(args.option), downsample_mode=mode)
    return calibration, validation
