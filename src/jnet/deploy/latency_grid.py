"""A latency grid: the configurations of a study timed as a device runs them, and the plan's budgets.

The ``latency:`` section of a study file (``configs/study_lgg.yaml``), read by ``jnet
benchmark --config`` and ``jnet plan --config``::

    latency:
      runtime: onnxruntime          # a name of jnet.deploy.benchmark.RUNTIMES
      threads: [1, 2]               # each configuration is timed at each thread count
      runs: 200                     # timed calls (after `warmup`, default 10)
      full_resolution_input: true   # the deployment shape: the full-resolution image in
      output_size: 256
      configs:                      # every combination of an entry's values, first key slowest
        - {model: elunet, input_size: [16, 32], head: [none, jnet]}
      plan: {threads: 1, budgets_ms: [3, 5, 10]}

Any other key is an error that names it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jnet.deploy.benchmark import benchmark, build_model
from jnet.io import read_yaml

SECTION = "latency"
_SETTINGS = ("runtime", "runs", "warmup", "batch_size", "full_resolution_input", "output_size")
_KEYS = (*_SETTINGS, "threads", "configs", "plan")
_CONFIG_KEYS = ("model", "head", "input_size", "width", "num_classes", "in_channels")
_PLAN_KEYS = ("threads", "budgets_ms", "runtime", "batch_size")


@dataclass
class LatencyGrid:
    """The configurations to time and how (see the module docstring)."""

    configs: list[dict[str, Any]]
    runtime: str = "onnxruntime"
    threads: list[int] = field(default_factory=lambda: [1])
    runs: int = 100
    warmup: int = 10
    batch_size: int = 1
    full_resolution_input: bool = True
    output_size: int = 256
    plan: dict[str, Any] = field(default_factory=dict)

    def runs_to_time(self) -> list[tuple[dict[str, Any], int]]:
        """``(model arguments, threads)`` in the order they are timed: each configuration at every thread count."""
        return [(config, threads) for config in self.configs for threads in self.threads]


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _expand(entry: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(entry, Mapping) or not entry:
        raise ValueError(f"{where}: each entry of configs is a mapping such as {{model: elunet, input_size: 16}}")
    unknown = sorted(set(entry) - set(_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(_CONFIG_KEYS)}")
    keys = list(entry)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(_as_list(entry[k]) for k in keys))]


def latency_grid(spec: Mapping[str, Any], source: str = "latency") -> LatencyGrid:
    """A :class:`LatencyGrid` from the ``latency:`` mapping; errors name ``source`` and the key."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{source}: must be a mapping of settings")
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(_KEYS)}")
    entries = spec.get("configs")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: configs must be a non-empty list of configurations")
    configs = [c for i, e in enumerate(entries) for c in _expand(e, f"{source}: configs[{i}]")]
    plan = dict(spec.get("plan") or {})
    unknown = sorted(set(plan) - set(_PLAN_KEYS))
    if unknown:
        raise ValueError(f"{source}: plan: unknown key(s) {', '.join(unknown)}; valid: {', '.join(_PLAN_KEYS)}")
    values = {k: spec[k] for k in _SETTINGS if k in spec}
    threads = [int(t) for t in _as_list(spec.get("threads", 1))]
    return LatencyGrid(configs=configs, threads=threads, plan=plan, **values)


def load_latency_grid(path: str | Path) -> LatencyGrid:
    """The ``latency:`` section of a study YAML file."""
    spec = read_yaml(path, "study file") or {}
    if not isinstance(spec, Mapping) or SECTION not in spec:
        raise ValueError(f"{path}: no '{SECTION}:' section (see jnet.deploy.latency_grid)")
    return latency_grid(spec[SECTION], f"{path}: {SECTION}")


def run_latency_grid(
    grid: LatencyGrid, on_result: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Time every configuration of ``grid`` at every thread count (:func:`jnet.deploy.benchmark.benchmark`).

    ``on_result`` is called with each result as soon as it is measured (to print it, or to
    append it to a file so that an interrupted grid keeps what it measured). Returns the
    results in :meth:`LatencyGrid.runs_to_time` order.
    """
    results = []
    for config, threads in grid.runs_to_time():
        full = True if grid.full_resolution_input else None
        model = build_model(**{"output_size": grid.output_size, **config}, full_resolution_input=full)
        result = benchmark(
            model, runtime=grid.runtime, batch_size=grid.batch_size, threads=threads, runs=grid.runs, warmup=grid.warmup
        )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
