"""ONNX export for deployment: fp32 with batch norm folded, int8 (static quantisation) and fp16.

The exported graph is the eval-mode model: input ``image`` ``(B, C, h, w)`` float32, output
``logits`` ``(B, K, H, W)`` float32 at the final scale only, batch axis dynamic. Batch norm is
folded into the preceding convolution in a copy of the model before export (and the graph is
checked to hold no ``BatchNormalization`` node), so the file is what runs, whatever runtime
loads it.

The model is traced by PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``): the ``torch.export``-based one needs ``onnxscript``, which the ``onnx`` extra
does not install, and gives nothing these plain convolutional graphs need.

Precisions:

* ``fp32``: the exported graph; parity with PyTorch is within 1e-4 (tested for every backbone
  and head).
* ``int8``: ONNX Runtime's static quantisation (QDQ format, int8 weights per output channel,
  uint8 activations with min/max ranges) calibrated on real input slices.
* ``fp16``: every supported operator (:data:`FP16_OPS`) computes in float16; anything else
  stays float32 behind ``Cast`` nodes. The input and output stay float32, so callers do not
  change. Weights beyond the float16 range are refused.

Each exported file carries the model's configuration in its metadata
(:func:`read_metadata`), so it can be benchmarked and evaluated without the checkpoint, and
the device's contract (``jnet.preprocessing``, ``jnet.postprocessing``;
:mod:`jnet.deploy.contract`): what to do to a raw image before the graph and to its output
after, as ``jnet predict`` does.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from jnet._options import check_option
from jnet._version import __version__
from jnet.data.prepare import downsample
from jnet.data.sources import load_data
from jnet.deploy.contract import checkpoint_class_names, postprocessing, preprocessing
from jnet.deploy.onnxrt import OnnxRunner, ort_session, require_onnx, run_onnx
from jnet.deploy.timing import compare
from jnet.io import atomic_write
from jnet.metrics import SegmentationMetrics, upsample_logits
from jnet.model import JNet
from jnet.training.checkpoint import load_checkpoint
from jnet.training.evaluate import evaluate

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17

#: Operators that the fp16 conversion runs in float16 (``Resize``: its data input only).
FP16_OPS = frozenset({"Conv", "ConvTranspose", "Relu", "MaxPool", "Concat", "Identity", "Add", "Mul", "Resize"})
_FP16_MAX = float(np.finfo(np.float16).max)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy in which each ``Conv2d`` directly followed by a ``BatchNorm2d`` absorbs it.

    Only pairs that sit next to each other in an ``nn.Sequential`` are folded (that is how
    every backbone here builds its conv + batch norm + ReLU blocks); the batch norm becomes an
    ``nn.Identity``. The original model is not touched.
    """
    net = copy.deepcopy(model).eval()
    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in itertools.pairwise(names):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = nn.Identity()
    return net


def in_channels(model: JNet) -> int:
    """The image channels a JNet reads (from its config)."""
    return int(model.config["in_channels"])  # type: ignore[arg-type]


def _input_shape(model: nn.Module, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    if isinstance(model, JNet):
        return (1, in_channels(model), *model.image_size)
    raise ValueError("input_shape is needed to export a module that is not a JNet")


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    input_shape: Sequence[int] | None = None,
    dynamic_batch: bool = True,
    train_config: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write the eval-mode ``model`` with batch norm folded to ``path`` as ONNX (fp32).

    A JNet's file carries in its metadata the model's configuration (``jnet.model_config``;
    for a third-party backbone module its class name and ``"rebuildable": false``) and the
    device's contract, ``jnet.preprocessing`` and ``jnet.postprocessing``
    (:mod:`jnet.deploy.contract`): what ``jnet predict`` does to a raw image before the graph
    and to the logits after it.

    Args:
        model: a :class:`~jnet.model.JNet` (exported with its final output only) or any module.
        path: the ``.onnx`` file to write (atomically: written beside it, then renamed).
        opset: the ONNX opset.
        input_shape: ``(B, C, h, w)`` of the example input; taken from a JNet's config if omitted.
        dynamic_batch: leave the batch axis free (else fixed to ``input_shape[0]``).
        train_config: the checkpoint's training config, for the contract (reader, options).
        class_names: the foreground class names, for the contract.

    Returns:
        ``path``. Raises a ValueError if the graph still holds a BatchNormalization node.
    """
    onnx, _ = require_onnx()
    path = Path(path)
    shape = _input_shape(model, input_shape)
    net = fold_batchnorm(model)
    if isinstance(net, JNet):
        net.return_all = False
        net.eval()  # derives the compiled head's kernels for this copy, before the trace
    example = torch.zeros(shape)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with atomic_write(path) as tmp:
        with warnings.catch_warnings():
            # the shape checks in forward() become constants of the trace (intended: sizes are fixed),
            # and the TorchScript exporter announces its deprecation
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            kwargs: dict[str, Any] = {
                "input_names": [INPUT_NAME],
                "output_names": [OUTPUT_NAME],
                "dynamic_axes": axes,
                "opset_version": opset,
                "do_constant_folding": True,
            }
            try:
                torch.onnx.export(net, (example,), str(tmp), dynamo=False, **kwargs)
            except TypeError as err:  # torch < 2.5 has no dynamo argument and only the TorchScript exporter
                if "dynamo" not in str(err):
                    raise
                torch.onnx.export(net, (example,), str(tmp), **kwargs)
        graph = onnx.load(str(tmp))
        _constants_to_initializers(graph.graph)
        metadata = {"jnet.version": __version__, "jnet.precision": "fp32"}
        if isinstance(model, JNet):
            metadata |= _contract_metadata(model, shape, train_config, class_names)
        _set_metadata(graph, metadata)
        bn = op_counts(graph).get("BatchNormalization", 0)
        if bn:
            raise ValueError(f"{bn} BatchNormalization node(s) left after folding: a batch norm that follows no conv")
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
    return path


def _constants_to_initializers(graph: Any) -> None:
    """Store the float tensors of ``Constant`` nodes as initializers (the compiled head's kernels are
    derived from the parameters, so the trace holds them as constants), so that the fp16 conversion
    and the int8 quantiser treat them as the weights they are. Scalars and integer shapes stay."""
    from onnx import TensorProto

    floats = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)
    keep = []
    for node in graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and value.data_type in floats and len(value.dims) > 0:
            value.name = node.output[0]
            graph.initializer.append(value)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def _contract_metadata(
    model: JNet, shape: Sequence[int], train_config: Mapping[str, Any] | None, class_names: Sequence[str] | None
) -> dict[str, str]:
    """``jnet.model_config``, ``jnet.preprocessing`` and ``jnet.postprocessing`` of a JNet, as JSON text."""
    config = dict(model.config)
    if config.get("backbone") is None:  # a module, not a registered name: say what it was
        cls = type(model.backbone)
        config |= {"backbone": cls.__name__, "backbone_class": f"{cls.__module__}.{cls.__qualname__}"}
        config["rebuildable"] = False
    return {
        "jnet.model_config": json.dumps(config),
        "jnet.preprocessing": json.dumps(preprocessing(model, train_config, input_shape=shape)),
        "jnet.postprocessing": json.dumps(postprocessing(model, train_config, class_names)),
    }


def _set_metadata(graph: Any, values: dict[str, str]) -> None:
    kept = {p.key: p.value for p in graph.metadata_props}
    kept.update(values)
    del graph.metadata_props[:]
    for key, value in kept.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The jnet metadata of an exported file: ``precision``, ``version``, ``model_config``, ``preprocessing``
    and ``postprocessing`` (each ``None`` when absent)."""
    onnx, _ = require_onnx()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf decode errors: name the file
        raise ValueError(f"{path}: not a readable ONNX file ({err})") from err
    props = {p.key: p.value for p in graph.metadata_props}

    def parsed(key: str) -> Any:
        return None if props.get(key) is None else json.loads(props[key])

    return {
        "precision": props.get("jnet.precision"),
        "version": props.get("jnet.version"),
        "model_config": parsed("jnet.model_config"),
        "preprocessing": parsed("jnet.preprocessing"),
        "postprocessing": parsed("jnet.postprocessing"),
    }


def op_counts(graph_or_path: Any) -> dict[str, int]:
    """``{op_type: count}`` of an ONNX model (a loaded ``ModelProto`` or a path)."""
    if isinstance(graph_or_path, str | os.PathLike):
        onnx, _ = require_onnx()
        graph_or_path = onnx.load(str(graph_or_path))
    counts: dict[str, int] = {}
    for node in graph_or_path.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def max_abs_diff(model: nn.Module, path: str | os.PathLike, inputs: torch.Tensor) -> float:
    """Largest absolute difference between the eval-mode PyTorch model and the ONNX file on ``inputs``."""
    net = copy.deepcopy(model).eval()
    if isinstance(net, JNet):
        net.return_all = False
    with torch.no_grad():
        expected = net(inputs).numpy()
    got = run_onnx(ort_session(path, threads=1), inputs)
    if got.shape != expected.shape:
        raise ValueError(f"ONNX output shape {got.shape} differs from PyTorch's {expected.shape}")
    return float(np.abs(got.astype(np.float64) - expected).max())


class _Batches:
    """An ``onnxruntime.quantization.CalibrationDataReader``: the calibration inputs in batches."""

    def __init__(self, inputs: np.ndarray, batch_size: int) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(
            {INPUT_NAME: inputs[i : i + batch_size]} for i in range(0, len(inputs), batch_size)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_int8(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    calibration: torch.Tensor | np.ndarray,
    per_channel: bool = True,
    exclude_ops: Sequence[str] = (),
    fp32_head: bool = True,
    method: str = "percentile",
    batch_size: int = 16,
) -> Path:
    """Static int8 quantisation of the fp32 file ``src`` into ``dst`` (QDQ, calibrated on ``calibration``).

    Args:
        src: an fp32 file from :func:`export_onnx`.
        dst: the int8 file to write.
        calibration: ``(N, C, h, w)`` network inputs (down-sampled slices) whose activation
            ranges (min/max) set the quantisation scales; a few dozen slices suffice.
        per_channel: one weight scale per output channel (recommended).
        exclude_ops: op types left in fp32 (e.g. ``("ConvTranspose",)``).
        fp32_head: keep the up-scaling head and the backbone's classifier (the layers that
            make and refine the logits) in fp32. Quantised, their single-channel layers spend
            more time in quantise / dequantise than they save: ELU-Net + J-Net 16 -> 256 ran
            5.2 ms per image against 2.8 ms with them in fp32, at the same Dice.
        method: activation ranges from ``"percentile"`` (the 99.999th percentile, robust to
            outliers; 1.4 Dice points better than min/max on the synthetic data) or ``"minmax"``.
        batch_size: calibration batch.
    """
    onnx, _ = require_onnx()
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    x = calibration.numpy() if isinstance(calibration, torch.Tensor) else np.asarray(calibration)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"calibration inputs must be a non-empty (N, C, h, w) array, got shape {x.shape}")
    reader = type("CalibrationBatches", (_Batches, CalibrationDataReader), {})(x, batch_size)
    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    check_option("calibration method", method, ("percentile", "minmax"))
    exclude = [
        n.name
        for n in model.graph.node
        if n.op_type in set(exclude_ops) or (fp32_head and (n.name.startswith("/head/") or "classifier" in n.name))
    ]
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        # (the percentile calibrator prints its settings)
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(Path(tmp) / "int8.onnx"),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile if method == "percentile" else CalibrationMethod.MinMax,
            nodes_to_exclude=exclude,
        )
        out = onnx.load(str(Path(tmp) / "int8.onnx"))
    _set_metadata(out, {**{p.key: p.value for p in model.metadata_props}, "jnet.precision": "int8"})
    with atomic_write(dst) as tmp_dst:
        onnx.save(out, str(tmp_dst))
    return dst


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Convert the fp32 file ``src`` to float16 compute, float32 input and output, into ``dst``.

    Every node whose op is in :data:`FP16_OPS` reads and writes float16 (``Resize``: its data
    input; its ``roi`` and ``scales`` stay float32 as the ONNX standard wants); every other
    node keeps float32. A ``Cast`` is inserted wherever a value crosses between the two, and
    an initializer read only by float16 nodes is stored as float16.

    Raises:
        ValueError: if a weight is outside the float16 range.
    """
    onnx, _ = require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    src, dst = Path(src), Path(dst)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(src)))
    graph = model.graph
    f32, f16 = TensorProto.FLOAT, TensorProto.FLOAT16
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    inits = {t.name: t for t in graph.initializer}
    types.update({name: t.data_type for name, t in inits.items()})

    def half_inputs(node: Any) -> list[int]:
        if node.op_type not in FP16_OPS:
            return []
        slots = [0] if node.op_type == "Resize" else range(len(node.input))
        return [i for i in slots if node.input[i] and types.get(node.input[i]) == f32]

    # which precision each float value is produced in; an initializer read only by fp16 slots becomes fp16
    readers: dict[str, list[bool]] = {}
    for node in graph.node:
        wanted = set(half_inputs(node))
        for i, name in enumerate(node.input):
            readers.setdefault(name, []).append(i in wanted)
    produced: dict[str, int] = {}
    for name, init in inits.items():
        if init.data_type == f32 and readers.get(name) and all(readers[name]):
            array = numpy_helper.to_array(init)
            if array.size and float(np.abs(array).max()) > _FP16_MAX:
                raise ValueError(f"weight {name!r} exceeds the float16 range ({float(np.abs(array).max()):.3g})")
            init.CopyFrom(numpy_helper.from_array(array.astype(np.float16), name))
            produced[name] = f16
    for node in graph.node:
        if node.op_type in FP16_OPS:
            for out in node.output:
                if types.get(out) == f32:
                    produced[out] = f16

    casts: dict[tuple[str, int], str] = {}
    new_nodes = []

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}_as_{'fp16' if to == f16 else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=to, name=f"cast_{len(casts)}"))
        return casts[key]

    for node in graph.node:
        wanted = set(half_inputs(node))
        for i, name in enumerate(node.input):
            if not name or types.get(name) not in (f32, f16):
                continue
            have = produced.get(name, types.get(name))
            want = f16 if i in wanted else int(types[name])
            if have != want:
                node.input[i] = cast(name, want)
        new_nodes.append(node)
    for out in graph.output:
        if produced.get(out.name) == f16:  # keep the output float32 under its own name
            inner = f"{out.name}_fp16"
            for node in new_nodes:
                node.output[:] = [inner if o == out.name else o for o in node.output]
                node.input[:] = [inner if i == out.name else i for i in node.input]
            new_nodes.append(helper.make_node("Cast", [inner], [out.name], to=f32, name=f"cast_{out.name}"))
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]
    _set_metadata(model, {"jnet.precision": "fp16"})
    onnx.checker.check_model(model)
    with atomic_write(dst) as tmp:
        onnx.save(model, str(tmp))
    return dst


def evaluate_onnx(
    path: str | os.PathLike,
    inputs: torch.Tensor,
    masks: torch.Tensor,
    num_classes: int,
    batch_size: int = 32,
    threads: int | None = None,
) -> dict[str, Any]:
    """Dice and Jaccard of an ONNX file's predictions at the masks' full resolution.

    A prediction smaller than the masks (the ``none`` head) is up-sampled as bilinear logits,
    as :func:`jnet.train.evaluate` does, so the two are comparable.
    """
    session = ort_session(path, threads=threads)
    metrics = SegmentationMetrics(num_classes)
    size = tuple(masks.shape[-2:])
    for i in range(0, len(inputs), batch_size):
        logits = torch.from_numpy(run_onnx(session, inputs[i : i + batch_size], batch_size).astype(np.float32))
        if tuple(logits.shape[-2:]) != size:
            logits = upsample_logits(logits, size)
        metrics.update(logits, masks[i : i + batch_size].long())
    return metrics.compute()


def network_inputs(
    spec: str | os.PathLike,
    model: JNet,
    options: dict[str, Any] | None = None,
    limit: int | None = None,
    seed: int = 0,
    downsample_mode: str = "area",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs (N, C, h, w), masks (N, H, W))`` from a data spec, sized for ``model``.

    Args:
        spec: anything :func:`jnet.data.load_data` reads.
        model: gives the input size, the channels and the mask size (its ``output_size``).
        options: the reader's options (e.g. ``{"size": 256}``).
        limit: keep at most this many slices, drawn at random (seeded) from all of them.
        seed: the draw's seed.
        downsample_mode: how images become network inputs (:func:`jnet.data.downsample`).
    """
    data = load_data(spec, **(options or {}))
    c, want = in_channels(model), tuple(model.output_size)
    if data.images.shape[1] != c:
        raise ValueError(f"{spec}: slices have {data.images.shape[1]} channel(s), the model reads {c}")
    if tuple(data.masks.shape[-2:]) != want:
        raise ValueError(
            f"{spec}: masks are {data.masks.shape[-2]}x{data.masks.shape[-1]} but the model is scored at "
            f"{want[0]}x{want[1]} (set the reader's size, e.g. --option size={want[0]})"
        )
    index = np.arange(len(data))
    if limit is not None and limit < len(index):
        index = np.sort(np.random.default_rng(seed).choice(index, size=limit, replace=False))
    images = data.images[index]
    return downsample(images, model.image_size[0], downsample_mode), torch.from_numpy(data.masks[index])


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    precision: str = "fp32",
    calibration: torch.Tensor | None = None,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
    opset: int = DEFAULT_OPSET,
    speed_runs: int = 50,
    threads: int | None = None,
    exclude_ops: Sequence[str] = (),
    full_resolution_input: bool = True,
    compiled_head: bool = True,
) -> dict[str, Any]:
    """Export a checkpoint's model to ``out`` at ``precision`` and report what changed.

    By default the exported graph takes the full-resolution image ``(B, C, H, W)`` and
    down-samples it itself (an ``AveragePool`` for area down-sampling), exactly as the
    training pipeline did: a device feeds the scanner's image and gets the mask.

    Args:
        checkpoint: a file from :func:`jnet.checkpoint.save_checkpoint`.
        out: the ``.onnx`` file to write.
        precision: ``fp32``, ``fp16`` or ``int8`` (:data:`PRECISIONS`).
        calibration: network inputs for int8 calibration (required for int8).
        validation: ``(inputs, masks)`` to score PyTorch, the fp32 export and ``out`` on.
        opset: ONNX opset.
        speed_runs: batch-1 runs of fp32 against ``out`` with ONNX Runtime, alternated
            (0: skip; only for fp16 and int8).
        threads: ONNX Runtime intra-op threads (default: PyTorch's).
        exclude_ops: int8 only: op types kept in fp32.
        full_resolution_input: ``False`` exports the graph that reads the down-sampled
            ``(B, C, h, w)`` input instead (not possible for image-guided heads).
        compiled_head: a J-Net head in its compiled form (:mod:`jnet.compiled`: convs at the
            input resolution, a ``DepthToSpace``); ``False``: the cascade of stages.

    Returns:
        ``path``, ``precision``, ``opset``, ``size_bytes``, ``fp32_size_bytes``, ``ops``,
        ``batchnorm_nodes``, ``max_abs_diff`` (``out`` against PyTorch on 8 inputs), and when
        ``validation`` is given ``quality`` (``torch``, ``fp32`` and, unless fp32, ``out``:
        ``mean_dice``/``mean_jaccard`` at full resolution, and the changes
        ``delta_dice``/``delta_jaccard`` of ``out`` against PyTorch), and when measured
        ``speed`` (:func:`jnet.benchmark.compare` of fp32 against ``out``).
    """
    check_option("precision", precision, PRECISIONS)
    if precision == "int8" and calibration is None:
        raise ValueError("int8 export needs calibration inputs (jnet export --calibration DATA)")
    try:
        model, ckpt = load_checkpoint(Path(checkpoint), full_resolution_input, compiled_head)
    except ValueError as err:
        raise ValueError(f"{checkpoint}: {err}") from err
    want = _input_shape(model, None)[1:]
    for name, given in (("calibration", calibration), ("validation", None if validation is None else validation[0])):
        if given is not None and tuple(given.shape[1:]) != want:
            raise ValueError(
                f"the {name} inputs are (N, {', '.join(map(str, given.shape[1:]))}) but the exported model reads "
                f"(N, {', '.join(map(str, want))})"
                + ("" if full_resolution_input else " (full_resolution_input=False reads the down-sampled image)")
            )
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: no such folder for the exported file")
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; the export is written to a .onnx file")
    if out.resolve() == Path(checkpoint).resolve() or (out.exists() and out.samefile(checkpoint)):
        raise ValueError(f"{out}: is the checkpoint being exported; write the ONNX file beside it, not over it")
    report: dict[str, Any] = {"checkpoint": str(checkpoint), "path": str(out), "precision": precision, "opset": opset,
                              "input_shape": list(_input_shape(model, None)[1:])}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = out if precision == "fp32" else Path(tmp) / "fp32.onnx"
        names = checkpoint_class_names(ckpt, model.num_classes)
        export_onnx(model, fp32, opset=opset, train_config=ckpt.get("train_config"), class_names=names)
        report["fp32_size_bytes"] = fp32.stat().st_size
        if precision == "int8":
            quantize_int8(fp32, out, calibration, exclude_ops=exclude_ops)  # type: ignore[arg-type]
        elif precision == "fp16":
            convert_fp16(fp32, out)
        ops = op_counts(out)
        report.update(size_bytes=out.stat().st_size, ops=ops, batchnorm_nodes=ops.get("BatchNormalization", 0))
        probe = validation[0][:8] if validation is not None else torch.randn(8, *_input_shape(model, None)[1:])
        report["max_abs_diff"] = max_abs_diff(model, out, probe)
        if validation is not None:
            inputs, masks = validation
            quality: dict[str, Any] = {
                "torch": _scores(evaluate(model, inputs, masks)),
                "fp32": _scores(evaluate_onnx(fp32, inputs, masks, model.num_classes, threads=threads)),
            }
            if precision != "fp32":
                quality[precision] = _scores(evaluate_onnx(out, inputs, masks, model.num_classes, threads=threads))
            for metric in ("dice", "jaccard"):
                quality[f"delta_{metric}"] = quality[precision][f"mean_{metric}"] - quality["torch"][f"mean_{metric}"]
            report["quality"] = quality
        if precision != "fp32" and speed_runs > 0:
            report["speed"] = compare(
                OnnxRunner(fp32, threads=threads, spinning=False),
                OnnxRunner(out, threads=threads, spinning=False),
                runs=speed_runs,
                labels=("fp32", precision),
            )
    report["train_config"] = ckpt.get("train_config")
    return report


def _scores(metrics: dict[str, Any]) -> dict[str, float]:
    keys = ("mean_dice", "mean_jaccard", "mean_dice_global", "mean_jaccard_global")
    return {k: float(metrics[k]) for k in keys} | {"n_images": int(metrics["n_images"])}


def format_export_report(report: dict[str, Any], data: str | None = None) -> str:
    """:func:`export_checkpoint`'s report as text; ``data`` names the validation data in the quality lines."""
    p = report["precision"]
    quality = report.get("quality")
    probes = min(8, quality["torch"]["n_images"]) if quality else 8
    lines = [
        f"wrote {report['path']} ({p}, opset {report['opset']}, input (B, "
        f"{', '.join(map(str, report['input_shape']))})): {report['size_bytes'] / 2**20:.2f} MB "
        f"(fp32 {report['fp32_size_bytes'] / 2**20:.2f} MB); {report['batchnorm_nodes']} BatchNormalization nodes",
        "  ops: " + ", ".join(f"{op} {n}" for op, n in report["ops"].items()),
        f"  max |ONNX - PyTorch| on {probes} inputs: {report['max_abs_diff']:.3g}",
    ]
    if quality:
        n = quality["torch"]["n_images"]
        for metric in ("dice", "jaccard"):
            line = f"  {metric} on {data} ({n} slices, full resolution): torch {quality['torch'][f'mean_{metric}']:.4f}"
            line += f", fp32 ONNX {quality['fp32'][f'mean_{metric}']:.4f}"
            if p != "fp32":
                line += f", {p} {quality[p][f'mean_{metric}']:.4f} ({quality[f'delta_{metric}']:+.4f})"
            lines.append(line)
    if "speed" in report:
        s = report["speed"]
        lines.append(
            f"  speed (onnxruntime, batch 1, alternated): fp32 {s['fp32']['latency_ms_median']:.3f} ms -> "
            f"{p} {s[p]['latency_ms_median']:.3f} ms ({s['speedup']:.2f}x)"
        )
    return "\n".join(lines)
