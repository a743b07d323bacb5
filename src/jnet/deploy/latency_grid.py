"""A latency grid: the configurations of a study timed as a device runs them, and the plan's budgets.

The ``latency:`` section of a study file (``configs/study_lgg.yaml``), read by ``jnet
benchmark --config`` and ``jnet plan --config``::

    latency:
      runtime: onnxruntime          # a name of jnet.deploy.benchmark.RUNTIMES
      threads: [1, 2]               # each configuration is timed at each thread count
      runs: 200                     # timed calls (after `warmup`, default 10)
      passes: 2                     # time the whole grid this often; each configuration keeps its best median
      full_resolution_input: true   # the deployment shape: the full-resolution image in
      output_size: 256
      configs:                      # every combination of an entry's values, first key slowest
        - {model: elunet, input_size: [16, 32], head: [none, jnet]}
        - {model: elunet, input_size: 16, head: jnet, cascade_head: true}   # the J-Net head as its cascade
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
_SETTINGS = ("runtime", "runs", "warmup", "batch_size", "full_resolution_input", "output_size", "passes")
_KEYS = (*_SETTINGS, "threads", "configs", "plan")
_CONFIG_KEYS = ("model", "head", "input_size", "width", "num_classes", "in_channels", "cascade_head")
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
    passes: int = 1
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
    if (
        not isinstance(values.get("passes", 1), int)
        or isinstance(values.get("passes"), bool)
        or values.get("passes", 1) < 1
    ):
        raise ValueError(f"{source}: passes must be an integer >= 1, got {values['passes']!r}")
    bad = [c for c in configs if not isinstance(c.get("cascade_head", False), bool)]
    if bad:
        raise ValueError(f"{source}: cascade_head is true or false, got {bad[0]['cascade_head']!r}")
    threads = [int(t) for t in _as_list(spec.get("threads", 1))]
    return LatencyGrid(configs=configs, threads=threads, plan=plan, **values)


def load_latency_grid(path: str | Path) -> LatencyGrid:
    """The ``latency:`` section of a study YAML file."""
    spec = read_yaml(path, "study file") or {}
    if not isinstance(spec, Mapping) or SECTION not in spec:
        raise ValueError(f"{path}: no '{SECTION}:' section (see jnet.deploy.latency_grid)")
    return latency_grid(spec[SECTION], f"{path}: {SECTION}")


def run_latency_grid(
    grid: LatencyGrid,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_pass: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Time every configuration of ``grid`` at every thread count (:func:`jnet.deploy.benchmark.benchmark`).

    The whole grid is timed ``grid.passes`` times, one pass after the other (so that a
    configuration's passes are minutes apart, not back to back); each configuration keeps the
    result with the lowest median, with every pass's median in ``latency_ms_medians``.

    ``on_result`` is called with each configuration's kept result as soon as its last pass is
    measured (to print it, or to append it to a file so that an interrupted grid keeps what it
    measured); ``on_pass(pass, result)`` with every measurement. Returns the kept results in
    :meth:`LatencyGrid.runs_to_time` order.
    """
    todo = grid.runs_to_time()
    kept: list[dict[str, Any]] = [{} for _ in todo]
    for done in range(1, grid.passes + 1):
        for i, (config, threads) in enumerate(todo):
            full = True if grid.full_resolution_input else None
            options = {k: v for k, v in config.items() if k != "cascade_head"}
            model = build_model(
                **{"output_size": grid.output_size, **options},
                full_resolution_input=full,
                compiled_head=not config.get("cascade_head", False),
            )
            result = benchmark(
                model, grid.runtime, grid.batch_size, threads=threads, runs=grid.runs, warmup=grid.warmup
            )
            if on_pass is not None:
                on_pass(done, result)
            medians = [*kept[i].get("latency_ms_medians", []), result["latency_ms_median"]]
            if not kept[i] or result["latency_ms_median"] < kept[i]["latency_ms_median"]:
                kept[i] = result
            kept[i] = {**kept[i], "passes": done, "latency_ms_medians": medians}
            if done == grid.passes and on_result is not None:
                on_result(kept[i])
    return kept
