"""Latency and throughput on the CPU: eager PyTorch against ONNX Runtime, with the context to trust them.

Method: every configuration is a *runner*, a callable that processes one fixed batch. It is
called ``warmup`` times untimed, then ``runs`` times, each call timed alone with
``time.perf_counter``; results give the median and the 90th percentile of the per-batch
latency (the mean is reported too, but one preempted run moves it). :func:`compare` alternates
two runners call by call, so that both see the same background load and clock drift, and gives
the ratio of their medians.

Every result carries its context: torch and onnxruntime versions, thread count, CPU model and
vector extensions, batch size and the load average before and after (other processes on the
machine disturb timings; a load above the core count means the numbers are pessimistic).

The dense-matmul peak (:func:`matmul_peak`) is the rate of a large float32 matrix product
with the same thread count, ``n**3`` MACs per product: an achievable ceiling for this CPU.
A model's efficiency is its GMAC/s (its MACs per image, :func:`jnet.profile.count_macs`, times
images per second) divided by that peak.

ONNX Runtime's idle pool threads spin by default. A single configuration is timed that way
(its fastest setting on an idle machine); whenever two runners alternate (:func:`compare_settings`,
``head_share``) spinning is turned off, because a spinning pool steals the cores the other
runner needs between calls.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jnet.deploy.export import export_onnx, in_channels, read_metadata
from jnet.deploy.onnxrt import OnnxRunner, ort_session
from jnet.deploy.profile import count_macs
from jnet.deploy.timing import Threads, compare, environment, latency_stats, load_average, matmul_peak, time_calls
from jnet.model import JNet
from jnet.registry import Registry
from jnet.training.checkpoint import load_checkpoint


class TorchRunner:
    """Eager PyTorch: the eval-mode model on a fixed random batch, under ``torch.inference_mode``."""

    runtime = "torch"

    def __init__(self, model: torch.nn.Module, input_shape: Sequence[int], threads: int | None = None) -> None:
        self.model = copy.deepcopy(model).eval()
        if isinstance(self.model, JNet):
            self.model.return_all = False
        self.input_shape = tuple(input_shape)
        self.x = torch.randn(self.input_shape, generator=torch.Generator().manual_seed(0))
        self.threads = threads or torch.get_num_threads()

    def __call__(self) -> None:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            self.model(self.x)


class CompiledTorchRunner(TorchRunner):
    """PyTorch ahead of the call: ``torchscript`` (traced, frozen and optimised for inference)
    or ``compile`` (``torch.compile``, inductor on the CPU: the first call compiles, which the
    warm-up absorbs; it needs a C++ compiler)."""

    def __init__(self, model: torch.nn.Module, input_shape: Sequence[int], threads: int | None = None,
                 runtime: str = "torchscript") -> None:  # fmt: skip
        super().__init__(model, input_shape, threads)
        self.runtime = runtime
        with torch.inference_mode(False), torch.no_grad():
            if runtime == "torchscript":
                with warnings.catch_warnings():  # TorchScript's deprecation notice
                    warnings.simplefilter("ignore")
                    traced = torch.jit.trace(self.model, self.x)
                    self.model = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
            else:
                self.model = torch.compile(self.model)


Runner = TorchRunner | OnnxRunner


def build_model(
    checkpoint: str | os.PathLike | None = None,
    model: str = "elunet",
    head: str = "jnet",
    input_size: int = 16,
    output_size: int = 256,
    num_classes: int = 1,
    in_channels: int = 1,
    width: int | None = None,
    full_resolution_input: bool | None = None,
    compiled_head: bool = True,
) -> JNet:
    """The model of a checkpoint, or (without one) a freshly initialised configuration, in eval mode.

    ``full_resolution_input=True`` gives the deployment-shaped model (it takes the
    ``output_size`` image and down-samples it itself); ``None`` keeps the checkpoint's, or the
    head's default. ``compiled_head=False`` runs a J-Net head as its cascade (:mod:`jnet.compiled`).
    """
    if checkpoint is not None:
        return load_checkpoint(Path(checkpoint), full_resolution_input, compiled_head)[0]
    config = {
        "backbone": model,
        "num_classes": num_classes,
        "input_size": input_size,
        "output_size": output_size,
        "head": head,
        "in_channels": in_channels,
        "backbone_options": {} if width is None else {"width": width},
        "full_resolution_input": full_resolution_input,
        "compiled_head": compiled_head,
    }
    return JNet.from_config(config).eval()


def model_from_onnx(path: str | os.PathLike) -> JNet:
    """The (weightless, meta-device) JNet an exported file was made from, read from its metadata."""
    config = read_metadata(path)["model_config"]
    if config is None:
        raise ValueError(f"{path}: no jnet model configuration in its metadata (not exported by jnet export)")
    if config.get("rebuildable") is False:
        raise ValueError(
            f"{path}: exported from a JNet whose backbone is a third-party module ({config.get('backbone_class')}), "
            "which cannot be rebuilt by name"
        )
    with torch.device("meta"):
        return JNet.from_config(config).eval()


def describe(model: JNet) -> dict[str, Any]:
    """The configuration keys a benchmark result is filed under (``model``, ``head``, ``input_size`` ...)."""
    cfg: dict[str, Any] = model.config
    h, w = model.input_size
    oh, ow = model.output_size
    return {
        "model": cfg["backbone"],
        "head": cfg["head"],
        "input_size": h if h == w else [h, w],
        "output_size": oh if oh == ow else [oh, ow],
        "num_classes": cfg["num_classes"],
        "in_channels": cfg["in_channels"],
        "width": cfg["backbone_options"].get("width"),
        "full_resolution_input": model.full_resolution_input,
        "head_form": model.head_form,
    }


def make_runner(
    model: JNet,
    runtime: str = "torch",
    batch_size: int = 1,
    threads: int | None = None,
    onnx_path: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    optimization: str = "all",
    spinning: bool = True,
) -> Runner:
    """A runner for ``model`` on ``runtime``; ONNX Runtime uses ``onnx_path`` or an fp32 export into ``workdir``."""
    build = RUNTIMES.get(runtime)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shape = (batch_size, in_channels(model), *model.image_size)
    if onnx_path is None:
        return build(model, shape, threads, workdir=workdir, optimization=optimization, spinning=spinning)
    if runtime != "onnxruntime":
        raise ValueError(f"an ONNX file runs with --runtime onnxruntime, not {runtime}")
    return OnnxRunner(onnx_path, batch_size=batch_size, threads=threads, optimization=optimization, spinning=spinning)


def _torch_runner(module: torch.nn.Module, shape: tuple[int, ...], threads: int | None, **_: Any) -> TorchRunner:
    if any(p.is_meta for p in module.parameters()):
        raise ValueError("the torch runtime needs the model's weights: give a checkpoint or a model name")
    return TorchRunner(module, shape, threads)


def _compiled_runner(runtime: str) -> Callable[..., Runner]:
    def build(module: torch.nn.Module, shape: tuple[int, ...], threads: int | None, **_: Any) -> Runner:
        return CompiledTorchRunner(module, shape, threads, runtime)

    return build


def _onnx_runner(
    module: torch.nn.Module, shape: tuple[int, ...], threads: int | None, *, workdir: Any, optimization: str,
    spinning: bool,
) -> OnnxRunner:  # fmt: skip
    """An fp32 export of ``module`` into ``workdir``, run by ONNX Runtime."""
    if workdir is None:
        raise ValueError("exporting for ONNX Runtime needs a working folder")
    path = export_onnx(module, Path(workdir) / f"model_{id(module)}.onnx", input_shape=(1, *shape[1:]))
    return OnnxRunner(path, batch_size=shape[0], threads=threads, optimization=optimization, spinning=spinning)


#: The runtimes a model is timed on: name -> ``build(module, shape, threads, *, workdir, optimization, spinning)``.
RUNTIMES: Registry[Callable[..., Runner]] = Registry("runtime")
RUNTIMES.add("torch", _torch_runner)
RUNTIMES.add("torchscript", _compiled_runner("torchscript"))
RUNTIMES.add("compile", _compiled_runner("compile"))
RUNTIMES.add("onnxruntime", _onnx_runner)


def benchmark(
    model: JNet,
    runtime: str = "torch",
    batch_size: int = 1,
    threads: int | None = None,
    runs: int = 100,
    warmup: int = 10,
    onnx_path: str | os.PathLike | None = None,
    peak: bool = False,
    peak_size: int = 1024,
    head_share: bool = False,
    optimization: str = "all",
) -> dict[str, Any]:
    """Latency of ``model`` on ``runtime`` at ``batch_size``, with its context.

    Args:
        model: the model (random weights time the same as trained ones); with ``onnx_path``
            it only names the configuration and gives the MACs (see :func:`model_from_onnx`).
        runtime: ``"torch"`` (eager) or ``"onnxruntime"`` (an fp32 export unless ``onnx_path``).
        batch_size: images per call.
        threads: intra-op threads of both runtimes (default: PyTorch's current number).
        runs, warmup: timed and untimed calls.
        onnx_path: time this ONNX file (e.g. an int8 export) instead of exporting.
        peak: also measure :func:`matmul_peak` and the model's fraction of it.
        peak_size: the matrix side of the peak measurement.
        head_share: also time the backbone alone (same runtime, alternated with the full
            model) and report the head's share of the latency.
        optimization: ONNX Runtime graph optimisation level.

    Returns:
        :func:`describe` keys, ``runtime``, ``precision``, ``batch_size``, ``threads``,
        ``runs``, ``warmup``, the :func:`latency_stats` keys, ``gmacs_per_image``,
        ``gmacs_per_second``, optionally ``peak`` / ``peak_gmacs_per_second`` /
        ``fraction_of_peak`` and ``backbone_latency_ms_median`` / ``head_share``, and
        ``environment``.
    """
    threads = threads or torch.get_num_threads()
    shape = (batch_size, in_channels(model), *model.image_size)
    load_before = load_average()
    result: dict[str, Any] = {**describe(model), "runtime": runtime, "batch_size": batch_size, "threads": threads}
    result["precision"] = "fp32"
    if onnx_path is not None:
        result["precision"] = read_metadata(onnx_path)["precision"] or "fp32"
        result["onnx"] = str(onnx_path)
    with tempfile.TemporaryDirectory() as tmp, Threads(threads):
        # alternated with the backbone (head_share): no spinning, as in compare_settings
        runner = make_runner(model, runtime, batch_size, threads, onnx_path, tmp, optimization, not head_share)
        if head_share:
            backbone = _backbone_runner(model, runtime, shape, threads, tmp, optimization)
            both = compare(runner, backbone, runs, warmup, ("full", "backbone"), batch_size)
            stats = both["full"]
            result["backbone_latency_ms_median"] = both["backbone"]["latency_ms_median"]
            result["head_share"] = 1.0 - both["ratio"]
        else:
            stats = latency_stats(time_calls(runner, runs, warmup), batch_size)
        result.update(runs=runs, warmup=warmup, **stats)
        macs = count_macs(model, (1, *shape[1:]))
        result["gmacs_per_image"] = macs / 1e9
        result["gmacs_per_second"] = macs / 1e9 * stats["images_per_second"]
        if peak:
            result["peak"] = matmul_peak(threads, n=peak_size)
            result["peak_gmacs_per_second"] = result["peak"]["gmacs_per_second"]
            result["fraction_of_peak"] = result["gmacs_per_second"] / result["peak_gmacs_per_second"]
    result["environment"] = environment(threads)
    result["environment"]["load_average_before"] = load_before
    return result


def _backbone_runner(
    model: JNet, runtime: str, shape: tuple[int, ...], threads: int, workdir: str, optimization: str
) -> Runner:
    if any(p.is_meta for p in model.parameters()):
        raise ValueError("timing the backbone alone needs the model's weights (a checkpoint or a model name)")
    build = RUNTIMES.get(runtime)
    return build(model.backbone, shape, threads, workdir=workdir, optimization=optimization, spinning=False)


def compare_settings(
    model_a: JNet,
    model_b: JNet,
    setting_a: dict[str, Any],
    setting_b: dict[str, Any],
    runs: int = 100,
    warmup: int = 10,
) -> dict[str, Any]:
    """Two configurations, alternated in one process (:func:`compare`), with their context.

    Each setting holds :func:`make_runner`'s ``runtime``, ``batch_size``, ``threads``,
    ``onnx_path`` and ``optimization``. ONNX Runtime's pool threads do not spin here: spinning
    between its calls would take the cores from the other runner (measured on 2 cores: eager
    PyTorch at 2 threads went from 6 ms to 365 ms per call). Returns :func:`compare`'s result under the labels
    ``"a"`` and ``"b"``, plus ``config_a`` / ``config_b`` (:func:`describe` + the setting) and
    ``environment``.
    """
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        ra = make_runner(model_a, workdir=tmp, spinning=False, **setting_a)
        rb = make_runner(model_b, workdir=tmp, spinning=False, **setting_b)
        batch = setting_a.get("batch_size", 1)
        if setting_b.get("batch_size", 1) != batch:
            # different batches: compare per-image time
            raise ValueError("--compare with another batch size is not a like-for-like ratio; benchmark each alone")
        result = compare(ra, rb, runs, warmup, ("a", "b"), batch)
    result["config_a"] = {**describe(model_a), **_plain(setting_a)}
    result["config_b"] = {**describe(model_b), **_plain(setting_b)}
    result["environment"] = environment(setting_a.get("threads"))
    result["environment"]["load_average_before"] = load_before
    return result


def _plain(setting: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in setting.items()}


def onnx_op_profile(
    path: str | os.PathLike, batch_size: int = 1, threads: int | None = None, runs: int = 100, top: int = 15
) -> dict[str, Any]:
    """Per-node times of an ONNX file from ONNX Runtime's profiler: where the latency goes.

    Nodes are the ones ORT runs after its graph optimisations (fused, NCHWc-blocked and
    ``Reorder*`` layout nodes included). Returns ``total_us`` (the sum of the nodes' median
    times per run), ``by_op`` (``{op type: us}``, largest first) and ``top`` (the ``top``
    slowest nodes: ``name``, ``op``, ``us``, ``output_shape``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(path, threads=threads, profile_prefix=str(Path(tmp) / "ort"))
        spec = session.get_inputs()[0]
        shape = [batch_size if i == 0 or not isinstance(d, int) else d for i, d in enumerate(spec.shape)]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        for _ in range(runs):
            session.run(None, {spec.name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    times: dict[str, list[float]] = {}
    info: dict[str, tuple[str, str]] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            times.setdefault(name, []).append(float(e["dur"]))
            info[name] = (e["args"].get("op_name", "?"), str(e["args"].get("output_type_shape", "")))
    medians = {name: statistics.median(v) for name, v in times.items()}
    by_op: dict[str, float] = {}
    for name, us in medians.items():
        by_op[info[name][0]] = by_op.get(info[name][0], 0.0) + us
    slowest = sorted(medians, key=medians.__getitem__, reverse=True)[:top]
    return {
        "total_us": sum(medians.values()),
        "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
        "top": [{"name": n, "op": info[n][0], "us": medians[n], "output_shape": info[n][1]} for n in slowest],
    }


def format_environment(env: dict[str, Any]) -> str:
    """The ``machine:`` line of a result's ``environment`` (:func:`jnet.deploy.timing.environment`)."""
    flags = " ".join(env["cpu_flags"])
    load = " ".join(f"{v:.2f}" for v in env["load_average"]) if env.get("load_average") else "n/a"
    return (
        f"  machine: {env['cpu']} ({flags}), {env['cpu_count']} cores; torch {env['torch']}, "
        f"onnxruntime {env['onnxruntime']}; load average {load}; {env['date']}"
    )


def head_form_label(config: Mapping[str, Any]) -> str:
    """`` (compiled)`` or `` (cascade)`` for a J-Net head, else (or for results from before the option) nothing."""
    form = config.get("head_form")
    if form == "compiled":
        return " (compiled)"
    return " (cascade)" if form == "modules" and str(config.get("head", "")).startswith("jnet") else ""


def format_benchmark(result: dict[str, Any]) -> str:
    """:func:`benchmark`'s result as text (with ``op_profile``, :func:`onnx_op_profile`'s, when present)."""
    r = result
    lines = [
        f"{r['model']} + {r['head']} head{head_form_label(r)}, {r['input_size']} -> {r['output_size']}"
        f"{' (full-resolution input)' if r.get('full_resolution_input') else ''}, K={r['num_classes']}; "
        f"{r['runtime']} ({r['precision']}), batch {r['batch_size']}, {r['threads']} thread(s)",
        f"  latency: median {r['latency_ms_median']:.3f} ms, p90 {r['latency_ms_p90']:.3f} ms "
        f"({r['runs']} runs after {r['warmup']} warm-up); {r['images_per_second']:.1f} images/s",
    ]
    compute = f"  compute: {r['gmacs_per_image']:.4f} GMAC/image -> {r['gmacs_per_second']:.2f} GMAC/s"
    if "fraction_of_peak" in r:
        compute += (
            f"; dense matmul peak {r['peak_gmacs_per_second']:.1f} GMAC/s (n={r['peak']['n']}): "
            f"{r['fraction_of_peak']:.1%} of peak"
        )
    lines.append(compute)
    if "head_share" in r:
        lines.append(
            f"  head: backbone alone {r['backbone_latency_ms_median']:.3f} ms, "
            f"so the head takes {r['head_share']:.1%} of the latency"
        )
    if "op_profile" in r:
        prof = r["op_profile"]
        lines.append(f"  ONNX Runtime nodes (median per run, total {prof['total_us']:.0f} us):")
        lines.append("    by op: " + ", ".join(f"{op} {us:.0f} us" for op, us in prof["by_op"].items()))
        lines += [f"    {node['us']:8.0f} us  {node['op']:<14} {node['name']}" for node in prof["top"]]
    lines.append(format_environment(r["environment"]))
    return "\n".join(lines)


def format_comparison_of_settings(result: dict[str, Any]) -> str:
    """:func:`compare_settings`' result as text: one line per configuration, the ratio, the machine."""
    lines = []
    for k in ("a", "b"):
        c, s = result[f"config_{k}"], result[k]
        onnx = f" {c['onnx_path']}" if c.get("onnx_path") else ""
        lines.append(
            f"{k}: {c['model']} + {c['head']}{head_form_label(c)}, {c['input_size']} -> {c['output_size']}, "
            f"{c['runtime']}{onnx}, batch {c['batch_size']}, threads {c['threads'] or 'default'}: "
            f"median {s['latency_ms_median']:.3f} ms, p90 {s['latency_ms_p90']:.3f} ms"
        )
    lines.append(
        f"ratio b/a {result['ratio']:.3f} (b is {result['speedup']:.2f}x as fast as a); "
        f"{result['runs']} alternated runs each after {result['warmup']} warm-up"
    )
    lines.append(format_environment(result["environment"]))
    return "\n".join(lines)
