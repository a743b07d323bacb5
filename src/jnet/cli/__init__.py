"""The ``jnet`` command line: parses arguments, calls library functions, prints."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from jnet._version import __version__

if TYPE_CHECKING:
    from jnet.training.config import TrainConfig


def _cmd_models(args: argparse.Namespace) -> int:
    from jnet.heads import list_heads
    from jnet.models import list_models

    print("backbones:", " ".join(list_models()))
    print("heads:    ", " ".join(list_heads()))
    return 0


def _data_options(pairs: Sequence[str]) -> dict[str, object]:
    """``["size=256", "modalities=[0]"]`` -> ``{"size": 256, "modalities": [0]}`` (values parsed as YAML)."""
    import yaml

    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"data option {pair!r} is not KEY=VALUE")
        options[key.replace("-", "_")] = yaml.safe_load(value)
    return options


def _cmd_predict(args: argparse.Namespace) -> int:
    from jnet.deploy.predict import predict_files

    tty = sys.stderr.isatty()

    def report(i: int, n: int, r: dict) -> None:
        if tty:
            sys.stderr.write(f"\r  [{'#' * (20 * i // n):<20}] {i}/{n} {Path(r['input']).name[:40]:<40}")
            sys.stderr.flush()
        else:
            print(f"{i}/{n} {r['input']} -> {r['output']} (foreground {r['foreground']:.2%})", flush=True)

    modalities = [int(m) for m in args.modalities.split(",")] if args.modalities else None
    results = predict_files(args.checkpoint, args.inputs, args.out, resize=args.resize, normalize=args.normalize,
                            modalities=modalities, on_file=report)  # fmt: skip
    if tty:
        sys.stderr.write("\n")
    print(f"{len(results)} mask(s) written to {args.out}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    import numpy as np

    from jnet.data import benchmark_loading, cached_load, load_data

    options = _data_options(args.option)
    data = cached_load(args.data, args.cache_dir, **options) if args.cache_dir else load_data(args.data, **options)
    n, c, h, w = data.images.shape
    patients, counts = np.unique(data.patient_id, return_counts=True)
    empty = int((data.masks.reshape(n, -1).max(axis=1) == 0).sum())
    print(f"{args.data}: {n} slices of {c} channel(s) at {h}x{w} from {len(patients)} patients")
    print(
        f"  slices per patient: {counts.min()} to {counts.max()}; slices with an empty mask: {empty} ({empty / n:.0%})"
    )
    labels = np.bincount(data.masks.ravel(), minlength=len(data.class_names) + 1)
    for k, name in enumerate(["background", *data.class_names]):
        print(f"  label {k} {name}: {labels[k] / labels.sum():.3%} of pixels")
    if args.oracle:
        _print_oracle(args, data)
    if args.benchmark:
        print(f"loading alone, {args.input_size}x{args.input_size} input, batch {args.batch_size}:")
        for loader in ("batches", "dataloader"):
            for augment in (False, True):
                r = benchmark_loading(
                    data, args.input_size, args.batch_size, augment, epochs=args.epochs, loader=loader
                )
                name = "SliceBatches" if loader == "batches" else "DataLoader(workers=0)"
                print(f"  {name:<22} augment={augment!s:<5} {r['images_per_second']:>10,.0f} images/s")
    return 0


def _print_oracle(args: argparse.Namespace, data) -> None:  # data: SliceData
    import numpy as np

    from jnet.metrics import low_resolution_oracle

    masks, where = data.masks, "all slices"
    if args.split_file is not None:
        split = json.loads(Path(args.split_file).read_text())
        chosen = np.isin(data.patient_id, split["val"])
        if not chosen.any():
            raise ValueError(f"{args.split_file}: none of its validation patients are in {args.data}")
        masks, where = masks[chosen], f"the {len(split['val'])} validation patients of {args.split_file}"
    k = 1 if len(data.class_names) == 1 else len(data.class_names) + 1
    h = data.masks.shape[-1]
    print(f"low-resolution oracle (the truth area-down-sampled, bilinearly up-sampled back), {where}:")
    for size in args.oracle:
        r = low_resolution_oracle(masks, size, k, data.class_names)
        print(
            f"  {size}x{size} -> {h}x{h}: mean Dice {r['mean_dice']:.4f}, mean Jaccard {r['mean_jaccard']:.4f} "
            f"(global {r['mean_dice_global']:.4f} / {r['mean_jaccard_global']:.4f}), {r['n_images']} slices"
        )


# TrainConfig fields that `jnet train` exposes as flags: (flag, type, help)
_TRAIN_FLAGS: list[tuple[str, type, str]] = [
    ("data", str, "synthetic, an .npz archive, an MSD, BraTS or image folder"),
    ("cache-dir", str, "prepare the data once into this folder and reuse it"),
    ("model", str, "backbone name (jnet models)"),
    ("width", int, "backbone width"),
    ("head", str, "jnet, jnet-noskip, jnet-single, interp, none, jnet-guided or guided (jnet models)"),
    ("input-size", int, "network input side r"),
    ("output-size", int, "mask side S"),
    ("num-classes", int, "K (default: from the data)"),
    ("loss", str, "ce, bce, dice or dice_ce"),
    ("target-resize", str, "nearest or area"),
    ("epochs", int, ""),
    ("batch-size", int, ""),
    ("lr", float, "peak learning rate"),
    ("weight-decay", float, ""),
    ("schedule", str, "onecycle, cosine or constant"),
    ("seed", int, "seed of the split, the initialisation and every epoch's order"),
    ("val-fraction", float, "share of patients held out"),
    ("folds", int, "k-fold cross-validation: number of folds"),
    ("fold", int, "which fold is the validation side"),
    ("split-file", str, "a split.json to use instead of a new split"),
    ("device", str, "auto, cpu or cuda"),
    ("threads", int, "torch threads on the CPU"),
]


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """``--config`` YAML values, overridden by the flags given on the command line."""
    from jnet.training.config import TrainConfig

    values: dict[str, object] = {}
    if args.config:
        values.update(vars(TrainConfig.from_yaml(args.config)))
    for flag, _, _ in _TRAIN_FLAGS:
        name = flag.replace("-", "_")
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.augment is not None:
        values["augment"] = args.augment
    if args.loss_weights is not None:
        values["loss_weights"] = None if args.loss_weights == "all" else (
            "final" if args.loss_weights == "final" else [float(w) for w in args.loss_weights.split(",")]
        )  # fmt: skip
    if args.option:
        values["data_options"] = {**dict(values.get("data_options") or {}), **_data_options(args.option)}
    if args.head_init is not None:
        values["head_options"] = {**dict(values.get("head_options") or {}), "init": args.head_init}
    return TrainConfig.from_dict(values, "jnet train")


class _Progress:
    """A progress line per batch on a terminal; one line per epoch otherwise."""

    def __init__(self, epochs: int) -> None:
        self.tty = sys.stderr.isatty()
        self.epochs = epochs

    def batch(self, i: int, n: int, loss: float, ips: float) -> None:
        if self.tty:
            bar = "#" * (20 * i // n)
            sys.stderr.write(f"\r  [{bar:<20}] {i}/{n} loss {loss:.4f} {ips:.0f} img/s")
            sys.stderr.flush()

    def epoch(self, row: dict) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 70 + "\r")
        print(
            f"epoch {row['epoch']}/{self.epochs} loss {row['train_loss']:.4f} "
            f"val dice {row['val_mean_dice']:.4f} jaccard {row['val_mean_jaccard']:.4f} "
            f"({row['images_per_second']:.0f} img/s, {row['epoch_seconds']:.1f} s)",
            flush=True,
        )


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jnet.training import TrainConfig, train

    if args.resume:
        run = Path(args.resume)
        config = TrainConfig.from_yaml(run / "config.yaml")
        if args.out and Path(args.out) != run:
            raise ValueError("--resume continues a run in its own folder; leave out --out")
    else:
        if not args.out:
            raise ValueError("give --out RUN_DIR (or --resume RUN_DIR)")
        run = Path(args.out)
        if (run / "checkpoint_last.pt").exists():
            raise ValueError(f"{run} already holds a run; use --resume {run} or another --out")
        config = train_config_from_args(args)
    progress = _Progress(config.epochs)
    result = train(config, run, resume=bool(args.resume), on_epoch=progress.epoch, on_batch=progress.batch)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 reports
    best = result["best"]
    print(
        f"best epoch {best.get('epoch')}: mean Dice {best['mean_dice']:.4f}, mean Jaccard {best['mean_jaccard']:.4f} "
        f"at {best['resolution'][0]}x{best['resolution'][1]}; {result['train_seconds']:.0f} s of training; "
        f"run in {run}"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jnet.training import evaluate_checkpoint

    options = _data_options(args.option) if args.option else None
    result = evaluate_checkpoint(args.checkpoint, args.data, args.split, options, args.split_file)
    low = result["input_resolution"]
    print(f"{result['n_images']} images ({args.split}) at {result['resolution'][0]}x{result['resolution'][1]}:")
    for name in result["dice"]:
        print(f"  {name:<16} Dice {result['dice'][name]:.4f}  Jaccard {result['jaccard'][name]:.4f}")
    print(f"  mean             Dice {result['mean_dice']:.4f}  Jaccard {result['mean_jaccard']:.4f}  "
          f"(global: {result['mean_dice_global']:.4f} / {result['mean_jaccard_global']:.4f})")  # fmt: skip
    print(f"  at input resolution {low['resolution'][0]}x{low['resolution'][1]} against down-sampled truth "
          f"(paper-style, not comparable): Dice {low['mean_dice']:.4f}  Jaccard {low['mean_jaccard']:.4f}")  # fmt: skip
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(out)
    return 0


def _model_args(p: argparse.ArgumentParser, checkpoint_help: str) -> None:
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


def _model_from_args(args: argparse.Namespace, **overrides: object):  # -> JNet
    from jnet.deploy.benchmark import build_model

    spec = {
        k: getattr(args, k)
        for k in ("checkpoint", "model", "head", "input_size", "output_size", "num_classes", "in_channels", "width")
    }
    spec["full_resolution_input"] = True if getattr(args, "full_resolution_input", False) else None
    spec.update(overrides)
    return build_model(**spec)  # type: ignore[arg-type]


def _cmd_profile(args: argparse.Namespace) -> int:
    from jnet.deploy.profile import format_paper_table, paper_table, profile_model

    if args.table:
        rows = paper_table(
            output_size=args.table_output_size,
            unet_width=args.unet_width,
            elunet_width=args.elunet_width,
            train=args.train,
        )
        print(json.dumps(rows, indent=1) if args.json else format_paper_table(rows))
        return 0
    model = _model_from_args(args)
    in_channels = int(model.config["in_channels"])
    info = profile_model(model, in_channels, batch_size=args.batch_size, train=args.train)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    (h, w), (oh, ow) = model.input_size, model.output_size
    full = " (takes the full-resolution image, down-samples it inside)" if info["full_resolution_input"] else ""
    k = info["num_classes"]
    print(f"{info['backbone']} + {info['head']} head, {h}x{w} -> {oh}x{ow}{full}, K={k}, C={in_channels}")
    print(f"  parameters: {info['params']:,} (head {info['head_params']:,}); weights {info['weights_mb']:.2f} MB")
    print(f"  GMACs/image: {info['gmacs']:.4f} (head {info['head_gmacs']:.4f})")
    print(
        f"  activations, eval forward, batch {info['batch_size']}: {info['activation_mb']:.2f} MB measured peak "
        f"(paper-style forward/backward estimate {info['summary_style_mb']:.2f} MB per image)"
    )
    if args.train:
        print(
            f"  training step (forward + loss + backward), batch {info['train_batch_size']}: "
            f"{info['train_step_mb']:.2f} MB measured peak"
        )
    print("  (MB = 2**20 bytes; see jnet.profile for what is counted)")
    return 0


def _compare_overrides(text: str) -> tuple[dict[str, object], dict[str, object]]:
    """``"runtime=onnxruntime,threads=1"`` -> (model overrides, runner setting overrides)."""
    model_keys = {"checkpoint", "model", "head", "input_size", "output_size", "num_classes", "in_channels", "width"}
    setting_keys = {"runtime", "onnx", "threads", "optimization"}
    model_over: dict[str, object] = {}
    setting_over: dict[str, object] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in model_keys | setting_keys:
            valid = ", ".join(sorted(model_keys | setting_keys))
            raise ValueError(f"--compare takes KEY=VALUE pairs with keys {valid}; got {pair!r}")
        typed: object = value
        if key in {"input_size", "output_size", "num_classes", "in_channels", "width", "threads"}:
            try:
                typed = int(value)
            except ValueError:
                raise ValueError(f"--compare {key} must be an integer, got {value!r}") from None
        (model_over if key in model_keys else setting_over)[key] = typed
    if not model_over and not setting_over:
        raise ValueError("--compare needs at least one KEY=VALUE that differs, e.g. runtime=onnxruntime")
    return model_over, setting_over


def _append_json(path: str, entries: list[dict]) -> None:
    from pathlib import Path

    target = Path(path)
    existing = []
    if target.is_file() and target.stat().st_size:
        try:
            existing = json.loads(target.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{target}: exists but is not a JSON list of results ({err})") from err
        if not isinstance(existing, list):
            raise ValueError(f"{target}: exists but is not a JSON list of results")
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(existing + entries, indent=1))
    tmp.replace(target)


def _benchmark_training(args: argparse.Namespace) -> int:
    from jnet.training import TrainConfig, benchmark_training, load_training_data

    values = {k: getattr(args, k) for k in ("model", "head", "input_size", "output_size", "width", "threads")}
    values = {k: v for k, v in values.items() if v is not None}
    config = TrainConfig(data=args.data, data_options=_data_options(args.option), batch_size=args.batch_size or 16,
                         augment=args.augment, **values)  # fmt: skip
    result = benchmark_training(config, load_training_data(config), epochs=args.epochs)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"training {config.model} + {config.head}, {config.input_size} -> {config.output_size}, "
        f"batch {config.batch_size}, {result['n_train']} slices, {result['threads']} thread(s): "
        f"median {result['epoch_seconds_median']:.2f} s per epoch ({result['images_per_second_median']:.0f} img/s); "
        "epochs: " + ", ".join(f"{s:.2f}" for s in result["epoch_seconds"]) + " s"
    )
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from jnet.deploy.benchmark import benchmark, compare_settings, model_from_onnx

    if args.train:
        return _benchmark_training(args)
    args.batch_size = args.batch_size or 1

    runtime = args.runtime or ("onnxruntime" if args.onnx is not None else "torch")
    if args.ops and runtime != "onnxruntime":
        raise ValueError("--ops profiles ONNX Runtime's nodes: add --runtime onnxruntime")
    if args.onnx is not None:
        if runtime != "onnxruntime":
            raise ValueError(f"--onnx runs with --runtime onnxruntime, not {runtime}")
        model = _model_from_args(args) if args.checkpoint else model_from_onnx(args.onnx)
    else:
        model = _model_from_args(args)
    setting = {
        "runtime": runtime,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "onnx_path": args.onnx,
        "optimization": args.optimization,
    }
    if args.compare:
        model_over, setting_over = _compare_overrides(args.compare)
        model_b = _model_from_args(args, **model_over) if model_over else model
        setting_b = {**setting, **{("onnx_path" if k == "onnx" else k): v for k, v in setting_over.items()}}
        if "runtime" in setting_over and "onnx" not in setting_over:
            setting_b["onnx_path"] = None
        if setting_b.get("onnx_path") is not None:
            setting_b["runtime"] = "onnxruntime"
        result = compare_settings(model, model_b, setting, setting_b, runs=args.runs, warmup=args.warmup)
        if args.out:
            env = result["environment"]
            _append_json(args.out, [{**result[f"config_{k}"], **result[k], "environment": env} for k in ("a", "b")])
        if args.json:
            print(json.dumps(result, indent=1))
            return 0
        for k in ("a", "b"):
            c, s = result[f"config_{k}"], result[k]
            onnx = f" {c['onnx_path']}" if c.get("onnx_path") else ""
            print(
                f"{k}: {c['model']} + {c['head']}, {c['input_size']} -> {c['output_size']}, {c['runtime']}{onnx}, "
                f"batch {c['batch_size']}, threads {c['threads'] or 'default'}: "
                f"median {s['latency_ms_median']:.3f} ms, p90 {s['latency_ms_p90']:.3f} ms"
            )
        print(
            f"ratio b/a {result['ratio']:.3f} (b is {result['speedup']:.2f}x as fast as a); "
            f"{result['runs']} alternated runs each after {result['warmup']} warm-up"
        )
        _print_machine(result["environment"])
        return 0
    result = benchmark(
        model,
        runtime=runtime,
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
        _append_json(args.out, [result])
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    r = result
    print(
        f"{r['model']} + {r['head']} head, {r['input_size']} -> {r['output_size']}"
        f"{' (full-resolution input)' if r.get('full_resolution_input') else ''}, K={r['num_classes']}; "
        f"{r['runtime']} ({r['precision']}), batch {r['batch_size']}, {r['threads']} thread(s)"
    )
    print(
        f"  latency: median {r['latency_ms_median']:.3f} ms, p90 {r['latency_ms_p90']:.3f} ms "
        f"({r['runs']} runs after {r['warmup']} warm-up); {r['images_per_second']:.1f} images/s"
    )
    line = f"  compute: {r['gmacs_per_image']:.4f} GMAC/image -> {r['gmacs_per_second']:.2f} GMAC/s"
    if "fraction_of_peak" in r:
        line += (
            f"; dense matmul peak {r['peak_gmacs_per_second']:.1f} GMAC/s (n={r['peak']['n']}): "
            f"{r['fraction_of_peak']:.1%} of peak"
        )
    print(line)
    if "head_share" in r:
        print(
            f"  head: backbone alone {r['backbone_latency_ms_median']:.3f} ms, "
            f"so the head takes {r['head_share']:.1%} of the latency"
        )
    if "op_profile" in r:
        prof = r["op_profile"]
        print(f"  ONNX Runtime nodes (median per run, total {prof['total_us']:.0f} us):")
        print("    by op: " + ", ".join(f"{op} {us:.0f} us" for op, us in prof["by_op"].items()))
        for node in prof["top"]:
            print(f"    {node['us']:8.0f} us  {node['op']:<14} {node['name']}")
    _print_machine(r["environment"])
    return 0


def _op_profile(model, args: argparse.Namespace) -> dict:  # model: JNet
    import tempfile
    from pathlib import Path

    from jnet.deploy.benchmark import onnx_op_profile
    from jnet.deploy.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx or export_onnx(model, Path(tmp) / "model.onnx")
        return onnx_op_profile(path, args.batch_size, args.threads, runs=args.runs, top=args.ops)


def _print_machine(env: dict) -> None:
    flags = " ".join(env["cpu_flags"])
    load = " ".join(f"{v:.2f}" for v in env["load_average"]) if env.get("load_average") else "n/a"
    print(
        f"  machine: {env['cpu']} ({flags}), {env['cpu_count']} cores; torch {env['torch']}, "
        f"onnxruntime {env['onnxruntime']}; load average {load}; {env['date']}"
    )


def _cmd_export(args: argparse.Namespace) -> int:
    from jnet.deploy.export import export_checkpoint, network_inputs
    from jnet.training import load_checkpoint

    model, ckpt = load_checkpoint(args.checkpoint, full_resolution_input=not args.low_res_input)
    mode = (ckpt.get("train_config") or {}).get("downsample_mode", "area")
    calibration = validation = None
    if args.calibration is not None:
        if args.precision != "int8":
            raise ValueError("--calibration is for --precision int8")
        options = _data_options(args.calibration_option)
        calibration = network_inputs(
            args.calibration, model, options, limit=args.calibration_size, downsample_mode=mode
        )[0]
    if args.data is not None:
        validation = network_inputs(args.data, model, _data_options(args.option), downsample_mode=mode)
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
    )
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    p = report["precision"]
    print(
        f"wrote {report['path']} ({p}, opset {report['opset']}, input (B, "
        f"{', '.join(map(str, report['input_shape']))})): {report['size_bytes'] / 2**20:.2f} MB "
        f"(fp32 {report['fp32_size_bytes'] / 2**20:.2f} MB); "
        f"{report['batchnorm_nodes']} BatchNormalization nodes"
    )
    print("  ops: " + ", ".join(f"{op} {n}" for op, n in report["ops"].items()))
    print(
        f"  max |ONNX - PyTorch| on {min(8, len(validation[0])) if validation else 8} inputs: "
        f"{report['max_abs_diff']:.3g}"
    )
    if "quality" in report:
        q = report["quality"]
        n = q["torch"]["n_images"]
        for metric in ("dice", "jaccard"):
            line = f"  {metric} on {args.data} ({n} slices, full resolution): torch {q['torch'][f'mean_{metric}']:.4f}"
            line += f", fp32 ONNX {q['fp32'][f'mean_{metric}']:.4f}"
            if p != "fp32":
                line += f", {p} {q[p][f'mean_{metric}']:.4f} ({q[f'delta_{metric}']:+.4f})"
            print(line)
    if "speed" in report:
        s = report["speed"]
        print(
            f"  speed (onnxruntime, batch 1, alternated): fp32 {s['fp32']['latency_ms_median']:.3f} ms -> "
            f"{p} {s[p]['latency_ms_median']:.3f} ms ({s['speedup']:.2f}x)"
        )
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from jnet.deploy.plan import fastest, format_plan, make_plan
    from jnet.study.figures import plot_plan

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


def _cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jnet.study.sweep import format_markdown, load_sweep, run_status, run_sweep, summarize

    if args.dry_run:
        runs = load_sweep(args.config).runs
        for i, run in enumerate(runs, start=1):
            print(f"[{i}/{len(runs)}] {run.name} ({run.method}): {run_status(Path(args.out) / run.name)}")
        print(f"{len(runs)} runs")
        return 0

    def on_run(event: dict) -> None:
        where = f"[{event['index']}/{event['total']}] {event['run']}"
        if event["status"] == "skip":
            print(f"{where}: finished before, skipped", flush=True)
        elif event["status"] == "done":
            row = event["row"]
            print(
                f"{where}: done, mean Jaccard {row['mean_jaccard']:.4f}, Dice {row['mean_dice']:.4f} "
                f"(epoch {row['best_epoch']}), {row['train_seconds']:.0f} s",
                flush=True,
            )
        else:
            verb = "resuming" if event["status"] == "resume" else "training"
            print(f"{where}: {verb} {event['method']}", flush=True)

    rows = run_sweep(args.config, args.out, on_run=on_run, only=args.only or None)
    if not rows:
        print("no run has finished yet")
        return 0
    print()
    print(format_markdown(summarize(rows)))
    print(f"results in {args.out}: results.csv, results.md and figures")
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _cmd_compare(args: argparse.Namespace) -> int:
    from jnet.study.compare import compare, format_comparison, format_markdown

    loaded: dict = {}
    done = []
    for a, b in args.pair:
        done.append(
            compare(args.results, a, b, args.metric, args.boot, args.seed, args.confidence, loaded, args.size_bins)
        )
        if not (args.json or args.markdown):
            print(format_comparison(done[-1]), flush=True)
    if args.json:
        print(json.dumps([c.to_dict() for c in done], indent=1))
    elif args.markdown:
        print(format_markdown(done))
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps([c.to_dict() for c in done], indent=1) + "\n")
        tmp.replace(out)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from jnet.study.demo import format_table, run_demo

    heads = args.heads.split(",")
    results = run_demo(quick=args.quick, out_dir=args.out, seed=args.seed, heads=heads, head_init=args.head_init)
    print(format_table(results))
    if args.out:
        print(f"results written to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``jnet`` command."""
    parser = argparse.ArgumentParser(prog="jnet", description=__doc__)
    parser.add_argument("--version", action="version", version=f"jnet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the backbones and heads")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("train", help="train a model; writes a run directory")
    p.add_argument("--config", default=None, help="a YAML file of settings; flags override it")
    p.add_argument("--out", default=None, help="the run directory")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run where it stopped")
    for flag, typ, text in _TRAIN_FLAGS:
        p.add_argument(f"--{flag}", type=typ, default=None, help=text)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None, help="flips, rotation, ...")
    p.add_argument("--loss-weights", default=None, help="all (default), final, or w0,w1,... coarsest first")
    p.add_argument("--head-init", default=None, help="nearest (default) or default (PyTorch's)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a data reader option")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="Dice and Jaccard of a checkpoint at full resolution")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=None, help="default: the data the checkpoint was trained on")
    p.add_argument("--split", default="val", help="val (the run's validation patients) or all")
    p.add_argument("--split-file", default=None, help="default: split.json beside the checkpoint")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a data reader option")
    p.add_argument("--out", default=None, help="write the metrics as JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="segment NIfTI volumes or PNG/TIFF slices with a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".nii/.nii.gz volumes or .png/.tif slices")
    p.add_argument("--out", required=True, help="output folder (same file names; PNG for 2D inputs)")
    p.add_argument("--resize", default=None, help="resize or pad_crop (default: the training reader's)")
    p.add_argument("--normalize", default=None, help="zscore, percentile or slice (default: as in training)")
    p.add_argument("--modalities", default=None, help="for 4D volumes, e.g. 0 or 0,1 (default: as in training)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("data", help="inspect a data source (and measure loading speed)")
    p.add_argument("--data", default="synthetic", help="synthetic, an .npz archive, an MSD, BraTS or image folder")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a reader option")
    p.add_argument("--cache-dir", default=None, help="prepare once into this folder and reuse")
    p.add_argument("--benchmark", action="store_true", help="measure images/s of loading alone")
    p.add_argument("--input-size", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument(
        "--oracle", type=int, action="append", default=[], metavar="SIZE",
        help="score the truth squeezed through SIZExSIZE and back (repeatable): the resolution's own cost",
    )  # fmt: skip
    p.add_argument("--split-file", default=None, help="--oracle: score only this split's validation patients")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("profile", help="parameters, GMACs and activation memory; --table: the paper's Table 4")
    _model_args(p, "profile this checkpoint's model")
    p.add_argument("--batch-size", type=int, default=1, help="batch of the eval forward whose memory is measured")
    p.add_argument("--train", action="store_true", help="also measure one training step (computed on the CPU)")
    p.add_argument("--table", action="store_true", help="the paper's Table 4: U-Net, ELU-Net, J-Net at 320..16")
    p.add_argument("--table-output-size", type=int, default=320, help="J-Net's output size in --table")
    p.add_argument("--unet-width", type=int, default=None, help="U-Net width in --table (default 64)")
    p.add_argument("--elunet-width", type=int, default=None, help="ELU-Net width in --table (default 16)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("benchmark", help="latency on this CPU: eager PyTorch or ONNX Runtime, median and p90")
    _model_args(p, "time this checkpoint's model (default: a fresh --model; weights do not change timings)")
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
        help="a second configuration (e.g. runtime=onnxruntime), alternated with the first",
    )
    p.add_argument("--out", default=None, help="append the result(s) to this JSON list (input of jnet plan)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--train", action="store_true", help="time training epochs on --data instead of inference")
    p.add_argument("--data", default="synthetic", help="--train: the training data (split by patient as in train)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="--train: a reader option")
    p.add_argument("--epochs", type=int, default=3, help="--train: epochs to time (the first is warm-up)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False, help="--train: augmentation")
    p.set_defaults(func=_cmd_benchmark)

    p = sub.add_parser("export", help="ONNX export (fp32, fp16, int8) with parity, quality and speed checks")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--precision", default="fp32", help="fp32, fp16 or int8")
    p.add_argument("--calibration", default=None, help="int8: data whose slices calibrate the activation ranges")
    p.add_argument("--calibration-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--calibration-size", type=int, default=64, help="slices drawn for calibration")
    p.add_argument("--data", default=None, help="validation data: Dice/Jaccard of PyTorch, fp32 and the export")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a reader option of --data")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--speed-runs", type=int, default=100, help="fp16/int8: alternated batch-1 runs against fp32")
    p.add_argument(
        "--low-res-input", action="store_true",
        help="export the graph that reads the down-sampled image (default: it takes the full-resolution "
        "image and down-samples it itself, as training did)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("plan", help="Pareto front of quality and latency; the best configuration in a budget")
    p.add_argument("--results", required=True, help="a sweep folder holding results.csv (jnet sweep's), or the file")
    p.add_argument("--budget-ms", type=float, default=None)
    p.add_argument("--benchmark", default=None, help="a JSON list of jnet benchmark results (jnet benchmark --out)")
    p.add_argument("--metric", default="mean_jaccard", help="mean_jaccard or mean_dice")
    p.add_argument("--runtime", default=None, help="use only benchmark results of this runtime")
    p.add_argument("--batch-size", type=int, default=None, help="use only benchmark results at this batch")
    p.add_argument("--threads", type=int, default=None, help="use only benchmark results with these threads")
    p.add_argument("--precision", default=None, help="use only benchmark results of this precision (fp32, int8 ...)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also draw quality against latency into this file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("sweep", help="a grid of training runs; tables and figures like the paper's")
    p.add_argument("--config", required=True, help="the sweep YAML (see configs/sweep_demo.yaml)")
    p.add_argument("--out", required=True, help="the sweep folder: one run directory per run, results, figures")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="train only unfinished runs whose name matches this glob (repeatable), e.g. 'elunet_*_r16_*'",
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether each would train or be skipped")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("compare", help="paired comparison of two sweep configurations, with a CI over patients")
    p.add_argument("--results", required=True, help="a sweep folder (results.csv and the run folders)")
    p.add_argument(
        "--pair", nargs=2, action="append", required=True, metavar=("A", "B"),
        help="configurations METHOD@INPUT_SIZE as in results.csv, e.g. elunet+jnet@16 elunet+interp@16, averaged "
        "over their seeds; METHOD@INPUT_SIZE/sSEED[+sSEED...] takes the seeds named, e.g. elunet+jnet@32/s0 or "
        "unet+jnet@16/s1+s2 (repeatable)",
    )  # fmt: skip
    p.add_argument("--metric", default="jaccard", help="jaccard or dice")
    p.add_argument("--boot", type=int, default=10000, help="bootstrap resamples of the patients")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument(
        "--size-bins", type=_int_list, default=None, metavar="N,M,...",
        help="also compare on empty slices and on bands of the truth's foreground area in pixels, e.g. 1000,2500",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="write the comparisons as a JSON list")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the comparisons as JSON")
    fmt.add_argument("--markdown", action="store_true", help="print one markdown table")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("demo", help="train the baseline and J-Net on synthetic phantoms and compare")
    p.add_argument("--quick", action="store_true", help="a smaller run (under 2 minutes on 2 CPU cores)")
    p.add_argument("--out", default=None, help="folder for the runs and results.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heads", default="none,interp,jnet", help="comma-separated heads to train")
    p.add_argument("--head-init", default="nearest", help="init of the J-Net heads: nearest or default")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jnet`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as err:
        print(f"jnet {args.command}: error: {err}", file=sys.stderr)
        return 2
