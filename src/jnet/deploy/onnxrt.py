"""ONNX Runtime on the CPU: a session tuned for latency, batched runs, and a timing runner."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jnet._options import check_option

GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")


def require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"ONNX export needs onnx and onnxruntime: pip install 'jnet[onnx]' ({err})") from err
    return onnx, onnxruntime


def ort_session(
    path: str | os.PathLike,
    threads: int | None = None,
    optimization: str = "all",
    profile_prefix: str | None = None,
    spinning: bool = True,
) -> Any:
    """An ONNX Runtime CPU session tuned for latency: ``threads`` intra-op threads, one inter-op
    thread, sequential execution, graph optimisation ``optimization`` (one of
    :data:`GRAPH_OPTIMIZATIONS`); ``profile_prefix`` turns on ORT's per-node profiling.
    ``spinning=False`` makes idle pool threads sleep instead of spinning (ORT's default is to
    spin): needed when something else must run on the same cores between calls."""
    _, ort = require_onnx()
    check_option("graph optimization", optimization, GRAPH_OPTIMIZATIONS)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types
        raise ValueError(f"{path}: ONNX Runtime cannot load it ({err})") from err


def run_onnx(session: Any, inputs: torch.Tensor | np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The session's output on ``inputs`` ``(N, C, h, w)``, in batches of ``batch_size``."""
    x = inputs.numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    x = np.ascontiguousarray(x, dtype=np.float32)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)])


class OnnxRunner:
    """ONNX Runtime (CPU) on a fixed random batch of ``batch_size``; ``spinning`` as in
    :func:`ort_session` (off when alternated with another runner)."""

    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike,
        batch_size: int = 1,
        threads: int | None = None,
        optimization: str = "all",
        spinning: bool = True,
    ) -> None:
        self.path = Path(path)
        self.threads = threads or torch.get_num_threads()
        self.session = ort_session(self.path, threads=self.threads, optimization=optimization, spinning=spinning)
        spec = self.session.get_inputs()[0]
        dims = [batch_size if not isinstance(d, int) or i == 0 else d for i, d in enumerate(spec.shape)]
        if isinstance(spec.shape[0], int) and spec.shape[0] != batch_size:
            raise ValueError(f"{self.path}: the batch axis is fixed to {spec.shape[0]}, cannot run batch {batch_size}")
        self.input_shape = tuple(dims)
        self.name = spec.name
        self.x = np.random.default_rng(0).standard_normal(self.input_shape).astype(np.float32)

    def __call__(self) -> None:
        self.session.run(None, {self.name: self.x})
