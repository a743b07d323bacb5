"""Choosing a configuration for a latency budget: quality from a sweep, latency from benchmarks.

Inputs
------
``SWEEP_DIR/results.csv``, one row per training run, with at least the columns

    model, head, input_size, seed, mean_jaccard, mean_dice

(validation scores at full resolution) and optionally ``method``, ``width`` and
``latency_ms``. This is a subset of what ``jnet sweep`` writes, so a sweep folder can be
planned as it is. A configuration is ``(method, input_size)``, where ``method`` defaults to
``model+head`` (``jnet sweep`` names its methods ``model+head[+setting=value...]`` and its
variants ``model+head+name``); its runs with different seeds are aggregated into a mean and a
sample standard deviation (``None`` for a single seed). Two rows with the same configuration
and seed are an error. The backbone width is the ``width`` column, else a ``+width=N`` tag
in the method, else the backbone's default.

Latency comes from a JSON list of :func:`jnet.benchmark.benchmark` results (``jnet benchmark
--out BENCH.json`` appends to one), each with ``model``, ``head``, ``input_size`` and
``latency_ms_median`` (and ``width``: missing or ``None`` is the backbone's default), matched
on model, head, input size and width; it wins over a ``latency_ms`` column. Methods that
differ only in training settings (loss, schedule) share their model's latency. A model
benchmarked more than once (another runtime, precision, batch or thread count) must be
narrowed down with ``runtime`` / ``precision`` / ``batch_size`` / ``threads``, else it is an
error that lists the alternatives.

Decisions
---------
The Pareto front holds every configuration that no other one dominates: another with quality
at least as high *and* latency at least as low, better in one of them. Two configurations
with the same quality and latency do not dominate each other; both stay on the front.

The best configuration within a budget is the one with the highest mean quality among those
whose latency is at most the budget; ties go to the lower latency, then the smaller standard
deviation, then the name, so the choice is deterministic.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jnet._options import check_option
from jnet.models.registry import MODELS, model_defaults

REQUIRED_COLUMNS = ("model", "head", "input_size", "seed", "mean_jaccard", "mean_dice")
LatencyKey = tuple[str, str, int, "int | None"]
METRICS = ("mean_jaccard", "mean_dice")
RESULTS_FILE = "results.csv"


@dataclass
class Candidate:
    """One configuration, aggregated over its seeds."""

    method: str
    model: str
    head: str
    input_size: int
    width: int | None
    seeds: list[int]
    mean_jaccard: float
    std_jaccard: float | None
    mean_dice: float
    std_dice: float | None
    latency_ms: float | None = None
    latency_source: str | None = None
    output_size: int | None = None  # from results.csv's output_size column, where it has one

    @property
    def full_resolution(self) -> bool:
        """Whether the network reads its input at the output resolution (no up-scaling at all)."""
        return self.output_size is not None and self.input_size == self.output_size

    @property
    def name(self) -> str:
        """``method@input_size``."""
        return f"{self.method}@{self.input_size}"

    def quality(self, metric: str) -> float:
        """The mean of ``metric`` over the seeds."""
        return float(getattr(self, metric))

    def spread(self, metric: str) -> float | None:
        """The standard deviation of ``metric`` over the seeds."""
        return getattr(self, "std_" + metric.removeprefix("mean_"))


@dataclass
class Plan:
    """What :func:`make_plan` found."""

    metric: str
    budget_ms: float | None
    candidates: list[Candidate]
    front: list[Candidate]
    best: Candidate | None
    no_latency: list[Candidate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready), each candidate with its ``name``."""

        def one(c: Candidate | None) -> dict[str, Any] | None:
            return None if c is None else {"name": c.name, **asdict(c)}

        return {
            "metric": self.metric,
            "budget_ms": self.budget_ms,
            "best": one(self.best),
            "front": [one(c) for c in self.front],
            "candidates": [one(c) for c in self.candidates],
            "no_latency": [one(c) for c in self.no_latency],
        }


def _number(value: str, column: str, where: str, integer: bool = False) -> float:
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{where}: {column} must be {kind}, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: {column} must be finite, got {value!r}")
    return number


def read_results(sweep_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``SWEEP_DIR/results.csv``, typed and checked (see the module docstring)."""
    path = Path(sweep_dir)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (a sweep folder holds {RESULTS_FILE})")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; needs {', '.join(REQUIRED_COLUMNS)} "
                f"(and optionally latency_ms), has {', '.join(columns) or 'none'}"
            )
        rows = []
        for line, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"{path}:{line}"
            typed: dict[str, Any] = {
                "model": row["model"],
                "head": row["head"],
                "method": row.get("method") or f"{row['model']}+{row['head']}",
                "width": _width(row, where),
                "input_size": int(_number(row["input_size"], "input_size", where, integer=True)),
                "seed": int(_number(row["seed"], "seed", where, integer=True)),
                "line": line,
            }
            for metric in METRICS:
                typed[metric] = _number(row[metric], metric, where)
            if row.get("latency_ms"):
                typed["latency_ms"] = _number(row["latency_ms"], "latency_ms", where)
            if row.get("output_size"):
                typed["output_size"] = int(_number(row["output_size"], "output_size", where, integer=True))
            if not typed["model"] or not typed["head"]:
                raise ValueError(f"{where}: model and head must not be empty")
            rows.append(typed)
    if not rows:
        raise ValueError(f"{path}: no runs (only a header)")
    return rows


def _width(row: dict[str, str], where: str) -> int | None:
    if row.get("width"):
        return int(_number(row["width"], "width", where, integer=True))
    match = re.search(r"\+width=(\d+)(\+|$)", row.get("method") or "")
    return int(match.group(1)) if match else None


def default_width(model: str) -> int | None:
    """The ``width`` default of a registered backbone's builder (``None`` if it has none or is unknown)."""
    if model not in MODELS:
        return None
    width = model_defaults(model).get("width")
    return None if width is None else int(width)


def _resolved(model: str, width: int | None) -> int | None:
    return default_width(model) if width is None else int(width)


def read_benchmarks(
    path: str | os.PathLike,
    runtime: str | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    precision: str | None = None,
) -> dict[LatencyKey, float]:
    """``{(model, head, input_size, width): latency_ms_median}`` from a JSON list of benchmark results.

    ``width`` is resolved to the backbone's default where a result has none.

    Results are kept when they match ``runtime`` / ``batch_size`` / ``threads`` / ``precision``
    (each ``None``: any; a result without ``precision`` is fp32). Two kept results for one
    configuration are an error that names the alternatives.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such benchmark file")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of benchmark results")
    found: dict[LatencyKey, dict[str, Any]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {i} is not a benchmark result (a JSON object)")
        missing = [k for k in ("model", "head", "input_size", "latency_ms_median") if k not in entry]
        if missing:
            raise ValueError(f"{path}: entry {i} lacks {', '.join(missing)}")
        wanted = {"runtime": runtime, "batch_size": batch_size, "threads": threads, "precision": precision}
        if any(v is not None and entry.get(k, "fp32" if k == "precision" else None) != v for k, v in wanted.items()):
            continue
        size = entry["input_size"]
        if isinstance(size, list):
            if len(size) != 2 or size[0] != size[1]:
                raise ValueError(f"{path}: entry {i}: only square inputs can be planned, got {size}")
            size = size[0]
        model = str(entry["model"])
        key = (model, str(entry["head"]), int(size), _resolved(model, entry.get("width")))
        if key in found:
            a, b = found[key], entry
            describe = "; ".join(
                " ".join(f"{k}={e.get(k)}" for k in ("runtime", "precision", "batch_size", "threads")) for e in (a, b)
            )
            raise ValueError(
                f"{path}: {key[0]}+{key[1]}@{key[2]} was benchmarked more than once ({describe}); "
                "choose one with --runtime, --precision, --batch-size or --threads"
            )
        found[key] = entry
    return {k: float(v["latency_ms_median"]) for k, v in found.items()}


def aggregate(rows: list[dict[str, Any]], latencies: dict[LatencyKey, float] | None = None) -> list[Candidate]:
    """One :class:`Candidate` per ``(method, input_size)``: mean and std over seeds, and latency.

    Latency is ``latencies[(model, head, input_size, width)]`` when given, else the median of
    the rows' ``latency_ms``, else ``None``.
    """
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row.get("method") or f"{row['model']}+{row['head']}", row["input_size"])
        for other in groups.get(key, []):
            if (other["model"], other["head"], other.get("width")) != (row["model"], row["head"], row.get("width")):
                raise ValueError(
                    f"method {key[0]} holds runs of different models "
                    f"(lines {other.get('line', '?')} and {row.get('line', '?')})"
                )
            if other["seed"] == row["seed"]:
                raise ValueError(
                    f"two runs of {key[0]}@{key[1]} with seed {row['seed']} "
                    f"(lines {other.get('line', '?')} and {row.get('line', '?')})"
                )
        groups.setdefault(key, []).append(row)
    out = []
    for key, runs in groups.items():
        stats: dict[str, Any] = {}
        for metric in METRICS:
            values = [r[metric] for r in runs]
            stats[metric] = statistics.fmean(values)
            stats["std_" + metric.removeprefix("mean_")] = statistics.stdev(values) if len(values) > 1 else None
        first = runs[0]
        width = first.get("width")
        lat_key = (first["model"], first["head"], key[1], _resolved(first["model"], width))
        latency, source = None, None
        if latencies is not None and lat_key in latencies:
            latency, source = latencies[lat_key], "benchmark"
        else:
            own = [r["latency_ms"] for r in runs if "latency_ms" in r]
            if own:
                latency, source = statistics.median(own), "results.csv"
        out.append(
            Candidate(
                method=key[0],
                model=first["model"],
                head=first["head"],
                input_size=key[1],
                width=width,
                seeds=sorted(r["seed"] for r in runs),
                latency_ms=latency,
                latency_source=source,
                output_size=first.get("output_size"),
                **stats,
            )
        )
    return sorted(out, key=lambda c: (c.method, c.input_size))


def pareto_front(candidates: list[Candidate], metric: str = "mean_jaccard") -> list[Candidate]:
    """The candidates no other one dominates (see the module docstring), fastest first.

    Candidates without a latency are ignored.
    """
    check_option("metric", metric, METRICS)
    timed = [c for c in candidates if c.latency_ms is not None]

    def dominates(a: Candidate, b: Candidate) -> bool:
        qa, qb, la, lb = a.quality(metric), b.quality(metric), a.latency_ms, b.latency_ms
        return qa >= qb and la <= lb and (qa > qb or la < lb)  # type: ignore[operator]

    front = [c for c in timed if not any(dominates(o, c) for o in timed if o is not c)]
    return sorted(front, key=lambda c: (c.latency_ms, -c.quality(metric), c.name))


def _tie_break(metric: str):  # type: ignore[no-untyped-def]
    def key(c: Candidate) -> tuple[float, float, float, str]:
        spread = c.spread(metric)
        return (-c.quality(metric), c.latency_ms, math.inf if spread is None else spread, c.name)  # type: ignore[return-value]

    return key


def best_within_budget(candidates: list[Candidate], budget_ms: float, metric: str = "mean_jaccard") -> Candidate | None:
    """The highest-quality candidate whose latency is at most ``budget_ms``, or ``None`` if none is."""
    check_option("metric", metric, METRICS)
    if not budget_ms > 0:
        raise ValueError(f"the latency budget must be a positive number of ms, got {budget_ms}")
    fits = [c for c in candidates if c.latency_ms is not None and c.latency_ms <= budget_ms]
    return min(fits, key=_tie_break(metric)) if fits else None


def make_plan(
    sweep_dir: str | os.PathLike,
    budget_ms: float | None = None,
    benchmark: str | os.PathLike | None = None,
    metric: str = "mean_jaccard",
    runtime: str | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    precision: str | None = None,
) -> Plan:
    """Read a sweep (and benchmarks), build the Pareto front and pick the best configuration in budget.

    Raises:
        ValueError: bad files, or no configuration with a latency at all.
    """
    check_option("metric", metric, METRICS)
    latencies = None if benchmark is None else read_benchmarks(benchmark, runtime, batch_size, threads, precision)
    candidates = aggregate(read_results(sweep_dir), latencies)
    no_latency = [c for c in candidates if c.latency_ms is None]
    if len(no_latency) == len(candidates):
        raise ValueError(
            "no configuration has a latency: add a latency_ms column to results.csv or give "
            "--benchmark with results for " + ", ".join(c.name for c in candidates)
        )
    best = None if budget_ms is None else best_within_budget(candidates, budget_ms, metric)
    return Plan(metric, budget_ms, candidates, pareto_front(candidates, metric), best, no_latency)


def format_plan(plan: Plan) -> str:
    """The front and the decision as text."""
    metric = plan.metric
    short = metric.removeprefix("mean_")

    width = max([28] + [len(c.name) for c in plan.front])

    def row(c: Candidate, mark: str = " ") -> str:
        spread = c.spread(metric)
        q = f"{c.quality(metric):.4f}" + (f" +- {spread:.4f}" if spread is not None else "         ")
        return f"{mark} {c.name:<{width}} {q:<18} {len(c.seeds):>5} {c.latency_ms:>10.3f}"

    head = f"  {'configuration':<{width}} {short + ' (mean +- std)':<18} {'seeds':>5} {'latency ms':>10}"
    lines = [f"Pareto front ({metric} up, latency down):", head]
    lines += [row(c, "*" if c is plan.best else " ") for c in plan.front]
    if plan.no_latency:
        lines.append("no latency (left out): " + ", ".join(c.name for c in plan.no_latency))
    if plan.budget_ms is not None:
        if plan.best is None:
            lines.append(f"no configuration runs within {plan.budget_ms:g} ms")
        else:
            b = plan.best
            lines.append(
                f"best within {plan.budget_ms:g} ms: {b.name} ({short} {b.quality(metric):.4f}, {b.latency_ms:.3f} ms)"
            )
    return "\n".join(lines)


def fastest(candidates: list[Candidate]) -> Candidate | None:
    """The candidate with the lowest latency (``None`` if none has one)."""
    timed = [c for c in candidates if c.latency_ms is not None]
    return min(timed, key=lambda c: (c.latency_ms, c.name)) if timed else None
