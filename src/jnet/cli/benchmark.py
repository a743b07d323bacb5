"""``jnet benchmark``: latency on this CPU (eager PyTorch, TorchScript, compile or ONNX Runtime), or training speed."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from jnet.cli._common import (
    MODEL_KEYS,
    add_model_args,
    add_option_arg,
    add_overwrite_arg,
    append_json,
    check_out_file,
    data_options,
    model_from_args,
    read_results,
)
from jnet.deploy.benchmark import (
    benchmark,
    compare_settings,
    format_benchmark,
    format_comparison_of_settings,
    head_form_label,
    model_from_onnx,
    onnx_op_profile,
)
from jnet.deploy.export import export_onnx
from jnet.deploy.latency_grid import load_latency_grid, run_latency_grid
from jnet.model import JNet
from jnet.study.figures import plot_latency_by_size
from jnet.training import TrainConfig, benchmark_training, load_training_data

#: ``--compare`` keys that set the runner rather than the model.
SETTING_KEYS = ("runtime", "onnx", "threads", "optimization")
_INTEGER_KEYS = {"input_size", "output_size", "num_classes", "in_channels", "width", "threads"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jnet benchmark``."""
    p = subparsers.add_parser("benchmark", help="latency on this CPU: eager PyTorch or ONNX Runtime, median and p90")
    add_model_args(p, "time this checkpoint's model (default: a fresh --model; weights do not change timings)")
    p.add_argument(
        "--runtime", default=None, help="torch (eager, default), torchscript, compile or onnxruntime (an fp32 export)"
    )
    p.add_argument("--onnx", default=None, help="time this ONNX file (from jnet export) with onnxruntime")
    p.add_argument("--batch-size", type=int, default=None, help="default 1 (inference), 16 (--train)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: PyTorch's)")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--optimization", default="all", help="ONNX Runtime graph optimisation: disable ... all")
    p.add_argument("--peak", action="store_true", help="also time a dense float32 matmul and report the fraction")
    p.add_argument("--peak-size", type=int, default=1024, help="the matmul's matrix side")
    p.add_argument("--head-share", action="store_true", help="also time the backbone alone: the head's share")
    p.add_argument("--ops", type=int, default=0, metavar="N", help="onnxruntime: profile per node, show the N slowest")
    p.add_argument(
        "--compare",
        default=None,
        metavar="KEY=VALUE[,...]",
        help="a second configuration (e.g. runtime=onnxruntime, or cascade_head=true), alternated with the first",
    )
    p.add_argument(
        "--config", default=None, metavar="STUDY.yaml",
        help="time every configuration of a study file's latency: section (configs/study_lgg.yaml) instead",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="append the result(s) to this JSON list (input of jnet plan)")
    p.add_argument("--plot", default=None, metavar="PNG", help="--config: latency against input size, per head")
    add_overwrite_arg(p, "the --plot figure")
    p.add_argument("--json", action="store_true")
    p.add_argument("--train", action="store_true", help="time training epochs on --data instead of inference")
    p.add_argument("--data", default="synthetic", help="--train: the training data (split by patient as in train)")
    add_option_arg(p, "--train: a reader option")
    p.add_argument("--epochs", type=int, default=3, help="--train: epochs to time (the first is warm-up)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False, help="--train: augmentation")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Time inference of one configuration, two alternated ones (``--compare``), or training (``--train``).

    ``--out`` is checked before any timing: a new file, or a JSON list of earlier results.
    """
    if args.train:
        if args.out:
            raise ValueError("--out collects latency results (the input of jnet plan); --train does not write it")
        return _run_training(args)
    if args.out:
        read_results(args.out)
    if args.config:
        return _run_grid(args)
    args.batch_size = args.batch_size or 1
    model, setting = _model_and_setting(args)
    if args.compare:
        return _run_comparison(args, model, setting)
    result = benchmark(
        model,
        runtime=setting["runtime"],
        batch_size=args.batch_size,
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        onnx_path=args.onnx,
        peak=args.peak,
        peak_size=args.peak_size,
        head_share=args.head_share,
        optimization=args.optimization,
    )
    if args.ops:
        result["op_profile"] = _op_profile(model, args)
    if args.out:
        append_json(args.out, [result])
    print(json.dumps(result, indent=1) if args.json else format_benchmark(result))
    return 0


def _run_grid(args: argparse.Namespace) -> int:
    """``--config``: the study's latency grid, each result printed and appended to ``--out`` as it comes."""
    grid = load_latency_grid(args.config)
    if args.plot:
        check_out_file(args.plot, args.overwrite, flag="--plot")
    total = len(grid.runs_to_time())
    measured = 0

    def measurement(done: int, result: dict[str, Any]) -> None:
        nonlocal measured
        measured += 1
        where = f"pass {done}/{grid.passes}, " if grid.passes > 1 else ""
        print(
            f"[{where}{(measured - 1) % total + 1}/{total}] {result['model']} + "
            f"{result['head']}{head_form_label(result)} @{result['input_size']}, {result['threads']} thread(s): "
            f"median {result['latency_ms_median']:.3f} ms, p90 {result['latency_ms_p90']:.3f} ms",
            flush=True,
        )

    def keep(result: dict[str, Any]) -> None:
        if args.out:
            append_json(args.out, [result])

    results = run_latency_grid(grid, on_result=keep, on_pass=measurement)
    if args.plot:
        threads = min(grid.threads)
        if plot_latency_by_size(results, args.plot, threads=threads) is None:
            raise ValueError("--plot needs matplotlib: pip install 'jnet[plot]'")
        print(f"figure ({threads} thread(s)) written to {args.plot}")
    return 0


def _model_and_setting(args: argparse.Namespace) -> tuple[JNet, dict[str, Any]]:
    """The model to time and the runner setting (:func:`jnet.deploy.benchmark.make_runner`'s) of the arguments."""
    runtime = args.runtime or ("onnxruntime" if args.onnx is not None else "torch")
    if args.ops and runtime != "onnxruntime":
        raise ValueError("--ops profiles ONNX Runtime's nodes: add --runtime onnxruntime")
    if args.onnx is not None:
        if runtime != "onnxruntime":
            raise ValueError(f"--onnx runs with --runtime onnxruntime, not {runtime}")
        model = model_from_args(args) if args.checkpoint else model_from_onnx(args.onnx)
    else:
        model = model_from_args(args)
    setting = {
        "runtime": runtime,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "onnx_path": args.onnx,
        "optimization": args.optimization,
    }
    return model, setting


def _run_comparison(args: argparse.Namespace, model: JNet, setting: dict[str, Any]) -> int:
    model_over, setting_over = _compare_overrides(args.compare)
    model_b = model_from_args(args, **model_over) if model_over else model
    setting_b = {**setting, **{("onnx_path" if k == "onnx" else k): v for k, v in setting_over.items()}}
    if "runtime" in setting_over and "onnx" not in setting_over:
        setting_b["onnx_path"] = None
    if setting_b.get("onnx_path") is not None:
        setting_b["runtime"] = "onnxruntime"
    result = compare_settings(model, model_b, setting, setting_b, runs=args.runs, warmup=args.warmup)
    if args.out:
        env = result["environment"]
        append_json(args.out, [{**result[f"config_{k}"], **result[k], "environment": env} for k in ("a", "b")])
    print(json.dumps(result, indent=1) if args.json else format_comparison_of_settings(result))
    return 0


def _compare_overrides(text: str) -> tuple[dict[str, object], dict[str, object]]:
    """``"runtime=onnxruntime,threads=1"`` -> (model overrides, runner setting overrides)."""
    keys = set(MODEL_KEYS) | set(SETTING_KEYS) | {"cascade_head"}
    model_over: dict[str, object] = {}
    setting_over: dict[str, object] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in keys:
            raise ValueError(f"--compare takes KEY=VALUE pairs with keys {', '.join(sorted(keys))}; got {pair!r}")
        typed: object = value
        if key == "cascade_head":  # a flag: cascade_head=true times the cascade against the compiled head
            if value.strip().lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--compare cascade_head must be true or false, got {value!r}")
            key, typed = "compiled_head", value.strip().lower() in ("false", "0")
        elif key in _INTEGER_KEYS:
            try:
                typed = int(value)
            except ValueError:
                raise ValueError(f"--compare {key} must be an integer, got {value!r}") from None
        (model_over if key in (*MODEL_KEYS, "compiled_head") else setting_over)[key] = typed
    if not model_over and not setting_over:
        raise ValueError("--compare needs at least one KEY=VALUE that differs, e.g. runtime=onnxruntime")
    return model_over, setting_over


def _op_profile(model: JNet, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx or export_onnx(model, Path(tmp) / "model.onnx")
        return onnx_op_profile(path, args.batch_size, args.threads, runs=args.runs, top=args.ops)


def _run_training(args: argparse.Namespace) -> int:
    values = {k: getattr(args, k) for k in ("model", "head", "input_size", "output_size", "width", "threads")}
    values = {k: v for k, v in values.items() if v is not None}
    config = TrainConfig(data=args.data, data_options=data_options(args.option), batch_size=args.batch_size or 16,
                         augment=args.augment, compiled_head=not args.cascade_head, **values)  # fmt: skip
    result = benchmark_training(config, load_training_data(config), epochs=args.epochs)
    print(json.dumps(result, indent=1) if args.json else format_training_benchmark(result))
    return 0


def format_training_benchmark(result: dict[str, Any]) -> str:
    """:func:`jnet.training.trainer.benchmark_training`'s result as one line.

    It belongs beside ``benchmark_training`` in ``jnet.training.trainer``; kept here while that file is rewritten.
    """
    return (
        f"training {result['model']} + {result['head']}{head_form_label(result)}, "
        f"{result['input_size']} -> {result['output_size']}, "
        f"batch {result['batch_size']}, {result['n_train']} slices, {result['threads']} thread(s): "
        f"median {result['epoch_seconds_median']:.2f} s per epoch ({result['images_per_second_median']:.0f} img/s); "
        "epochs: " + ", ".join(f"{s:.2f}" for s in result["epoch_seconds"]) + " s"
    )
