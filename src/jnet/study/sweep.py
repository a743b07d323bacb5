"""``jnet sweep``: a grid of training runs, summarised like the paper's Tables 2 and 3.

The sweep file
--------------
A YAML mapping with up to six keys; any other key is an error.

``base``
    :class:`jnet.train.TrainConfig` settings shared by every run; the others keep their
    defaults.
``grid``
    ``setting: [value, ...]``: every combination of the values is one run, its values set over
    ``base``. Each value must be a non-empty list (``head: [jnet]`` for one value; a setting
    that is itself a list, such as ``loss_weights``, is written as a list of lists). ``grid``
    may also be a list of such mappings, whose runs are taken one mapping after the other
    (e.g. a second backbone at fewer input sizes). Without ``grid``, ``base`` is one run.
``variants``
    Named extra runs such as ablations: ``name: {setting: value, ...}``, set over ``base``
    (not over the grid) and crossed with every ``input_size`` and every ``seed`` that the grid
    runs use. A variant may give its own ``input_size`` and ``seed``, as one value or a list.
``compare``, ``latency``
    A study's paired comparisons and latency grid, read by ``jnet compare --config`` and
    ``jnet benchmark --config`` (:func:`jnet.study.compare.load_pairs`,
    :mod:`jnet.deploy.latency_grid`); the sweep ignores them.
``figure``
    The qualitative figure: ``methods`` (the methods drawn, named as in the tables; default:
    the grid's methods, per backbone the ``none`` head first, then ``jnet``, then the rest)
    and ``seed`` (whose runs are drawn; default: the smallest).

Example (``configs/sweep_demo.yaml`` is a complete one)::

    base: {data: synthetic, output_size: 256, epochs: 20}
    grid: {model: [elunet], head: [none, interp, jnet], input_size: [16, 32], seed: [0, 1, 2]}
    variants:
      jnet-final-loss: {head: jnet, loss_weights: final}

Every run is checked before anything trains: unknown settings, empty or non-list grid axes,
unknown backbones, heads, head options, losses, and input/output sizes a head cannot join
raise a ValueError that names the file and the run. Relative paths in the settings (``data``,
``split_file``, ``cache_dir``) are used as written: run from the folder they are relative to
(the repository root for the files in ``configs/``).

Names
-----
A grid run's folder is ``{model}_{head}_r{input_size}_s{seed}``, followed by
``_{setting}-{value}`` for each other grid axis; a variant's is
``{model}_{name}_r{input_size}_s{seed}``.
A method, one row of the tables, is ``model+head`` (plus ``+setting=value`` per other grid
axis) or ``model+head+name`` for a variant; its seeds are aggregated.

The sweep folder
----------------
::

    OUT/sweep.yaml                   the sweep, as read
    OUT/<run>/                       one run directory per run, as jnet train writes it
    OUT/results.csv                  one row per run (columns: RESULT_COLUMNS + per-class ones)
    OUT/results.md                   per input size: mean +- std over seeds of every method
    OUT/examples.png                 one row per input size: image, truth, each method's prediction
    OUT/jaccard_vs_input_size.png    mean Jaccard at full resolution against input size

A run whose ``metrics.json`` exists is finished and skipped, so running the same sweep again
resumes it; an interrupted run (``checkpoint_last.pt`` but no ``metrics.json``) continues from
its last finished epoch. A run folder whose ``config.yaml`` no longer matches the sweep (in
anything but ``device``, ``threads`` and ``cache_dir``) is an error rather than a silent mix.
Each distinct data set (``data``, ``data_options``, ``output_size``, ``cache_dir``) is loaded
once per sweep. Results are rewritten after every run, so a long sweep can be watched;
every file is written to a temporary name and renamed. Figures need matplotlib
(``pip install 'jnet[plot]'``); without it they are skipped with a warning.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import itertools
import json
import logging
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from jnet._options import check_option
from jnet.data.prepare import SliceData
from jnet.heads import create_head
from jnet.io import read_yaml, write_text
from jnet.losses import MultiScaleLoss
from jnet.models import list_models
from jnet.study.figures import ExampleRow, example_figure, plot_quality, pyplot
from jnet.training.config import TrainConfig
from jnet.training.scores import SCORES_FILE, ImageScores, read_scores
from jnet.training.splits import load_training_data
from jnet.training.trainer import fit

__all__ = [
    "RESULT_COLUMNS",
    "Sweep",
    "SweepRun",
    "format_markdown",
    "load_sweep",
    "median_epoch_seconds",
    "result_row",
    "run_status",
    "run_sweep",
    "summarize",
    "write_figures",
    "write_results",
]

log = logging.getLogger(__name__)

SWEEP_KEYS = ("base", "grid", "variants", "figure", "compare", "latency")
FIGURE_KEYS = ("methods", "seed")
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
EXAMPLES_PNG = "examples.png"
QUALITY_PNG = "jaccard_vs_input_size.png"
# results.csv: these columns, with dice_<class> / jaccard_<class> after mean_jaccard_global;
# mean_volume_dice (per-patient 3D Dice, averaged) is blank for runs that kept no per-slice counts;
# epoch_seconds is the median over the run's epochs after the first (history.csv), blank without one
RESULT_COLUMNS = (
    "run", "method", "model", "head", "variant", "input_size", "output_size", "seed",
    "mean_dice", "mean_jaccard", "mean_dice_global", "mean_jaccard_global", "mean_volume_dice",
    "input_res_mean_dice", "input_res_mean_jaccard", "best_epoch", "final_mean_jaccard", "train_seconds",
    "epoch_seconds", "params", "head_params",
)  # fmt: skip
_NAMED_AXES = ("model", "head", "input_size", "seed")
_NOT_COMPARED = ("device", "threads", "cache_dir")  # may change when a run is resumed
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class SweepRun:
    """One training run of a sweep: its folder ``name``, table row ``method``, ``variant`` ("" for grid runs)."""

    name: str
    method: str
    variant: str
    config: TrainConfig


@dataclass
class Sweep:
    """A parsed sweep file: the runs, in order, and the qualitative figure's settings.

    Example:
        >>> sweep = load_sweep({"grid": {"head": ["none", "jnet"], "input_size": [16, 32]}})
        >>> [run.name for run in sweep.runs]
        ['elunet_none_r16_s0', 'elunet_none_r32_s0', 'elunet_jnet_r16_s0', 'elunet_jnet_r32_s0']
    """

    runs: list[SweepRun]
    figure_methods: list[str]
    figure_seed: int | None
    spec: dict[str, Any]

    @property
    def methods(self) -> list[str]:
        """The methods (table rows), in order of first appearance."""
        return list(dict.fromkeys(run.method for run in self.runs))


# ------------------------------------------------------------------------------------------
# reading and expanding a sweep file
# ------------------------------------------------------------------------------------------


def load_sweep(config: str | Path | Mapping[str, Any]) -> Sweep:
    """Read and check a sweep file (or the same as a dict) and expand it into runs.

    Args:
        config: the path of a sweep YAML file, or its content as a mapping.

    Raises:
        ValueError: anything wrong in the file (see the module docstring), naming it.
        FileNotFoundError: no such file.
    """
    spec, src = _read_spec(config)
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        raise ValueError(f"{src}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(SWEEP_KEYS)}")
    base = spec.get("base") or {}
    if not isinstance(base, Mapping):
        raise ValueError(f"{src}: base must be a mapping of settings, got {base!r}")
    base = dict(base)
    TrainConfig.from_dict(base, f"{src}: base")

    runs: list[SweepRun] = []
    for block in _grid_blocks(spec.get("grid"), src):
        extra = [axis for axis in block if axis not in _NAMED_AXES]
        TrainConfig.from_dict({**base, **{axis: values[0] for axis, values in block.items()}}, f"{src}: grid")
        for combo in itertools.product(*block.values()):
            values = dict(zip(block, combo, strict=True))
            config = TrainConfig.from_dict({**base, **values}, f"{src}: grid")
            tags = [(axis, _tag(values[axis])) for axis in extra]
            name = "_".join(
                [config.model, config.head, f"r{config.input_size}", f"s{config.seed}"]
                + [f"{axis}-{tag}" for axis, tag in tags]
            )
            method = "+".join([config.model, config.head] + [f"{axis}={tag}" for axis, tag in tags])
            runs.append(SweepRun(name, method, "", config))

    # the grid has at least one run (without a grid: base), so variants always have sizes and seeds
    sizes = list(dict.fromkeys(run.config.input_size for run in runs))
    seeds = list(dict.fromkeys(run.config.seed for run in runs))
    variants = spec.get("variants") or {}
    if not isinstance(variants, Mapping):
        raise ValueError(f"{src}: variants must be a mapping of name: {{setting: value}}, got {variants!r}")
    for key, overrides in variants.items():
        where = f"{src}: variant {key!r}"
        if not isinstance(key, str) or not _NAME.fullmatch(key):
            raise ValueError(f"{where}: a variant name must be letters, digits, '.', '_' or '-'")
        if not isinstance(overrides, Mapping):
            raise ValueError(f"{where}: must be a mapping of settings, got {overrides!r}")
        overrides = dict(overrides)
        own_sizes = _axis_values(overrides.pop("input_size", sizes), "input_size", where)
        own_seeds = _axis_values(overrides.pop("seed", seeds), "seed", where)
        for size, seed in itertools.product(own_sizes, own_seeds):
            config = TrainConfig.from_dict({**base, **overrides, "input_size": size, "seed": seed}, where)
            name = f"{config.model}_{key}_r{size}_s{seed}"
            runs.append(SweepRun(name, f"{config.model}+{config.head}+{key}", key, config))

    seen: dict[str, int] = {}
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
        _check_run(run, src)
    repeated = [name for name, count in seen.items() if count > 1]
    if repeated:
        raise ValueError(
            f"{src}: more than one run is named {', '.join(repeated)}; remove repeated grid values "
            "or rename the variant"
        )
    methods, seed = _figure_settings(spec.get("figure"), runs, src)
    return Sweep(runs, methods, seed, spec)


def _read_spec(config: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(config, Mapping):
        return dict(config), "sweep config"
    path = Path(config)
    spec = read_yaml(path, "sweep file")
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a sweep file must hold a mapping with {', '.join(SWEEP_KEYS)}")
    return spec, str(path)


def _grid_blocks(grid: Any, src: str) -> list[dict[str, list[Any]]]:
    if grid is None:
        return [{}]
    if isinstance(grid, Mapping):
        grid = [grid]
    if not isinstance(grid, list) or not grid:
        raise ValueError(f"{src}: grid must be a mapping of setting: [values] or a non-empty list of them")
    blocks = []
    for i, block in enumerate(grid):
        where = f"{src}: grid" + (f" {i}" if len(grid) > 1 else "")
        if not isinstance(block, Mapping):
            raise ValueError(f"{where}: must be a mapping of setting: [values], got {block!r}")
        for axis, values in block.items():
            if not isinstance(values, list):
                raise ValueError(f"{where}: axis {axis!r} must be a list of values (write {axis}: [{values}])")
            if not values:
                raise ValueError(f"{where}: axis {axis!r} is empty; give at least one value")
        blocks.append(dict(block))
    return blocks


def _axis_values(values: Any, name: str, where: str) -> list[Any]:
    values = values if isinstance(values, list) else [values]
    if not values:
        raise ValueError(f"{where}: {name} is empty; give at least one value")
    return values


def _tag(value: Any) -> str:
    """A value as a piece of a folder name: ``{"init": "default"}`` -> ``init=default``."""
    if isinstance(value, Mapping):
        text = ",".join(f"{k}={_tag(v)}" for k, v in value.items()) or "default"
    elif isinstance(value, (list, tuple)):
        text = ",".join(_tag(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.,=+-]+", "-", text)


def _check_run(run: SweepRun, src: str) -> None:
    """The choices TrainConfig leaves to training time, checked now: model, head and loss."""
    c = run.config
    try:
        check_option("model", c.model, list_models())
        create_head(c.head, 1, c.input_size, c.output_size, **c.head_options)
        MultiScaleLoss(c.loss, weights=c.loss_weights, target_resize=c.target_resize)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{src}: run {run.name}: {err}") from err


def _figure_settings(figure: Any, runs: list[SweepRun], src: str) -> tuple[list[str], int | None]:
    figure = figure or {}
    if not isinstance(figure, Mapping):
        raise ValueError(f"{src}: figure must be a mapping with {' and/or '.join(FIGURE_KEYS)}")
    unknown = sorted(set(figure) - set(FIGURE_KEYS))
    if unknown:
        raise ValueError(f"{src}: figure: unknown key(s) {', '.join(unknown)}; valid: {', '.join(FIGURE_KEYS)}")
    all_methods = list(dict.fromkeys(run.method for run in runs))
    methods = figure.get("methods")
    if methods is None:
        grid = [run for run in runs if not run.variant] or runs
        models = list(dict.fromkeys(run.config.model for run in grid))
        order = {"none": 0, "jnet": 1}
        rank = {run.method: (models.index(run.config.model), order.get(run.config.head, 2)) for run in grid}
        methods = sorted(rank, key=rank.__getitem__)  # stable: otherwise in order of appearance
    else:
        if not isinstance(methods, list) or not methods:
            raise ValueError(f"{src}: figure: methods must be a non-empty list of method names")
        for method in methods:
            try:
                check_option("method", method, all_methods)
            except ValueError as err:
                raise ValueError(f"{src}: figure: {err}") from err
    seed = figure.get("seed")
    if seed is not None and not any(run.config.seed == seed and run.method in methods for run in runs):
        raise ValueError(f"{src}: figure: no run of the figure's methods has seed {seed!r}")
    return list(methods), seed


# ------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------

RunCallback = Callable[[dict[str, Any]], None]
SweepEpochCallback = Callable[[str, dict[str, Any]], None]


def run_status(run_dir: str | Path) -> str:
    """``"skip"`` (finished: ``metrics.json``), ``"resume"`` (``checkpoint_last.pt``) or ``"train"``."""
    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").is_file():
        return "skip"
    return "resume" if (run_dir / "checkpoint_last.pt").is_file() else "train"


def run_sweep(
    config: str | Path | Mapping[str, Any],
    out_dir: str | Path,
    *,
    on_run: RunCallback | None = None,
    on_epoch: SweepEpochCallback | None = None,
    only: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Train every run of a sweep that is not finished yet, then write the tables and figures.

    Args:
        config: a sweep file or its content (see the module docstring).
        out_dir: the sweep folder; one run directory per run goes into it.
        on_run: called before each run with ``{"run", "method", "index", "total", "dir",
            "status"}``, ``status`` being ``"skip"``, ``"train"`` or ``"resume"``, and after a run
            that trained with ``status="done"`` and its results row as ``"row"``.
        on_epoch: called with ``(run name, history row)`` after every epoch.
        only: glob patterns (``fnmatch``) of run names: train only the unfinished runs that
            match one (finished runs still count in the tables), to split a long sweep.

    Returns:
        One results row per finished run (the rows of ``results.csv``), in the sweep's order.
    """
    sweep = load_sweep(config)
    out = Path(out_dir)
    _check_existing(sweep, out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "sweep.yaml", yaml.safe_dump(sweep.spec, sort_keys=False))
    cache: dict[str, SliceData] = {}
    rows: list[dict[str, Any]] = []
    total = len(sweep.runs)
    for index, run in enumerate(sweep.runs, start=1):
        run_dir = out / run.name
        event = {"run": run.name, "method": run.method, "index": index, "total": total, "dir": run_dir}
        status = run_status(run_dir)
        if only and status != "skip" and not any(fnmatch.fnmatch(run.name, pattern) for pattern in only):
            continue
        if on_run is not None:
            on_run({**event, "status": status})
        if status != "skip":
            epoch_cb = None if on_epoch is None else (lambda row, name=run.name: on_epoch(name, row))
            fit(run.config, _data(run.config, cache), run_dir, resume=True, on_epoch=epoch_cb)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        row = result_row(run, metrics, _saved_scores(run_dir), epoch_seconds=median_epoch_seconds(run_dir))
        rows.append(row)
        if status != "skip":
            write_results(out, rows)
            if on_run is not None:
                on_run({**event, "status": "done", "row": row})
    write_results(out, rows)
    write_figures(sweep, out, rows, cache)
    return rows


def _check_existing(sweep: Sweep, out: Path) -> None:
    """Refuse run folders written with other settings than the sweep now gives them, and variant
    folders named as before jnet 0.1 put the backbone in their names."""
    for run in sweep.runs:
        legacy = out / run.name.removeprefix(f"{run.config.model}_")
        if run.variant and legacy.is_dir() and not (out / run.name).exists():
            raise ValueError(
                f"{legacy} is a variant run named without its backbone; "
                f"rename it to keep it: mv {legacy} {out / run.name}"
            )
        path = out / run.name / "config.yaml"
        if not path.is_file():
            continue
        saved, wanted = asdict(TrainConfig.from_yaml(path)), asdict(run.config)
        changed = [k for k in wanted if k not in _NOT_COMPARED and saved[k] != wanted[k]]
        if changed:
            diff = ", ".join(f"{k}: {saved[k]!r} -> {wanted[k]!r}" for k in changed)
            raise ValueError(
                f"{out / run.name} was run with other settings ({diff}); delete that folder to rerun it, "
                "or use another --out"
            )


def _data(config: TrainConfig, cache: dict[str, SliceData]) -> SliceData:
    """The slices of ``config``, loaded once per distinct data set."""
    key = json.dumps([config.data, config.data_options, config.output_size, config.cache_dir], sort_keys=True,
                     default=str)  # fmt: skip
    if key not in cache:
        log.info("loading %s at %d", config.data, config.output_size)
        cache[key] = load_training_data(config)
    return cache[key]


def _column(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "class"


def _saved_scores(run_dir: Path) -> ImageScores | None:
    """The run's ``val_scores.csv`` if it has per-slice counts (``None`` if not, or with a warning if unreadable)."""
    path = run_dir / SCORES_FILE
    if not path.is_file():
        return None
    try:
        scores = read_scores(path)
    except ValueError as err:
        log.warning("no mean_volume_dice for %s: %s", run_dir.name, err)
        return None
    return scores if scores.has_counts else None


def median_epoch_seconds(run_dir: str | Path) -> float | None:
    """The median ``epoch_seconds`` of a run's ``history.csv``, the first epoch (warm-up) left out
    when there are more; ``None`` without a history.

    A cost per epoch that a pause or a resumed run does not skew, unlike ``train_seconds``.

    Raises:
        ValueError: a ``history.csv`` without an ``epoch_seconds`` column, or with a value that is
            not a number, naming the file.
    """
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        seconds = [float(row["epoch_seconds"]) for row in rows]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: no readable epoch_seconds column ({err!r})") from None
    if not seconds:
        return None
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


def result_row(
    run: SweepRun,
    metrics: dict[str, Any],
    scores: ImageScores | None = None,
    *,
    epoch_seconds: float | None = None,
) -> dict[str, Any]:
    """The ``results.csv`` row of a run from its ``metrics.json`` (scores of the best epoch).

    ``mean_volume_dice`` comes from ``metrics.json``, else from ``scores`` (the run's
    ``val_scores.csv``) when they hold per-slice counts; it is ``""`` (blank) for a run that
    kept neither (runs of an older jnet). ``epoch_seconds`` (see :func:`median_epoch_seconds`)
    is ``""`` when not given.
    """
    c, best = run.config, metrics["best"]
    row: dict[str, Any] = {
        "run": run.name, "method": run.method, "model": c.model, "head": c.head, "variant": run.variant,
        "input_size": c.input_size, "output_size": c.output_size, "seed": c.seed,
    }  # fmt: skip
    for key in ("mean_dice", "mean_jaccard", "mean_dice_global", "mean_jaccard_global"):
        row[key] = best[key]
    for name in best["dice"]:
        row[f"dice_{_column(name)}"] = best["dice"][name]
        row[f"jaccard_{_column(name)}"] = best["jaccard"][name]
    row["mean_volume_dice"] = best.get("mean_volume_dice", "")
    if row["mean_volume_dice"] == "" and scores is not None and scores.has_counts:
        row["mean_volume_dice"] = scores.volume_scores().mean_volume_dice
    row["input_res_mean_dice"] = best["input_resolution"]["mean_dice"]
    row["input_res_mean_jaccard"] = best["input_resolution"]["mean_jaccard"]
    row["best_epoch"] = best.get("epoch")
    if "final" not in metrics:
        raise ValueError(f"{run.name}/metrics.json: no 'final' scores (an older jnet's); retrain the run to add them")
    row["final_mean_jaccard"] = metrics["final"]["mean_jaccard"]  # the last epoch: no choice on val
    row["train_seconds"] = metrics["train_seconds"]
    row["epoch_seconds"] = "" if epoch_seconds is None else epoch_seconds
    row["params"], row["head_params"] = metrics["params"], metrics["head_params"]
    return row


# ------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------


def _class_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key.startswith("dice_") and f"jaccard_{key[5:]}" in row:
                names[key[5:]] = None
    return list(names)


def _stat_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    classes = [f"{m}_{c}" for c in _class_names(rows) for m in ("dice", "jaccard")]
    return [
        "mean_dice", "mean_jaccard", "mean_dice_global", "mean_jaccard_global", *classes, "mean_volume_dice",
        "input_res_mean_dice", "input_res_mean_jaccard", "best_epoch", "final_mean_jaccard", "train_seconds",
        "epoch_seconds",
    ]  # fmt: skip


def summarize(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate the runs of each (input size, method) over their seeds.

    Args:
        results: results rows (as :func:`run_sweep` returns them or ``results.csv`` holds them).

    Returns:
        One row per (input size, method), input sizes from the largest, methods in order of
        first appearance: ``input_size``, ``output_size``, ``method``, ``model``, ``head``,
        ``variant``, ``seeds``, ``params``, ``head_params`` and ``stats``, which maps every
        score column (:data:`RESULT_COLUMNS` and per class) to ``(mean, std)``; ``std`` is the
        sample standard deviation, ``None`` for one seed.
    """
    groups: dict[tuple[int, str], list[Mapping[str, Any]]] = {}
    for row in results:
        key = (int(row["input_size"]), str(row["method"]))
        if any(int(other["seed"]) == int(row["seed"]) for other in groups.get(key, [])):
            raise ValueError(f"two runs of {key[1]} at input {key[0]} with seed {row['seed']}")
        groups.setdefault(key, []).append(row)
    columns = _stat_columns(results)
    summary = []
    for (size, method), runs in sorted(groups.items(), key=lambda item: -item[0][0]):
        stats = {}
        for column in columns:
            values = [float(r[column]) for r in runs if r.get(column) not in (None, "")]
            if values:
                stats[column] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None)
        first = runs[0]
        summary.append(
            {
                "input_size": size,
                "output_size": int(first["output_size"]),
                "method": method,
                "model": first["model"],
                "head": first["head"],
                "variant": first.get("variant") or "",
                "seeds": sorted(int(r["seed"]) for r in runs),
                "params": int(first["params"]),
                "head_params": int(first["head_params"]),
                "stats": stats,
            }
        )
    return summary


def _cell(stat: tuple[float, float | None] | None, scale: float = 100.0, digits: int = 1) -> str:
    if stat is None:
        return "-"
    mean, std = stat
    text = f"{mean * scale:.{digits}f}"
    return text if std is None else f"{text} ± {std * scale:.{digits}f}"


def format_markdown(summary: Sequence[Mapping[str, Any]]) -> str:
    """The tables of ``results.md``: per input size, one row per method, mean ± std over seeds.

    Dice and Jaccard in percent at full resolution (per class when there are several), the
    paper-style input-resolution scores in their own labelled columns, training time and
    parameters; the best mean of each score column is bold, as in the paper.
    """
    classes = list(dict.fromkeys(c[5:] for row in summary for c in row["stats"] if c.startswith("dice_")))
    per_class = len(classes) > 1
    volume = any("mean_volume_dice" in row["stats"] for row in summary)  # runs that kept per-slice counts
    lines = [
        "# Sweep results",
        "",
        "Validation patients, at the epoch with the best mean Jaccard at full resolution; mean ± sample "
        "standard deviation over the seeds, in percent.",
        "",
        "- **Dice**, **Jaccard**: hard predictions scored at the masks' full resolution (a `none` head's "
        "low-resolution logits are up-sampled bilinearly first), mean over images"
        + (" and classes; then per class." if per_class else "."),
        "- **@ input (paper-style)**: the base prediction at the input resolution against nearest-down-sampled "
        "masks, the way the paper appears to score its baselines. Not comparable with the full-resolution "
        "columns, nor across input sizes.",
        "- **Jacc. last epoch**: Jaccard at full resolution of the last epoch's weights, chosen without looking "
        "at the validation scores (the other columns pick the best epoch on them, a slightly optimistic choice).",
        "- **Train s**: seconds of training (validation excluded); **Epoch s**: the median seconds of a training "
        "epoch after the first (a pause or a resumed run does not skew it; `-` without history.csv); "
        "**Params**: of the whole model (head).",
    ]
    if volume:
        lines.insert(
            -1,
            "- **Dice per patient (3D)**: each validation patient's Dice over all its slices together, then the "
            "mean over patients (runs that kept no per-slice counts show `-`).",
        )
    for size in sorted({row["input_size"] for row in summary}, reverse=True):
        rows = [row for row in summary if row["input_size"] == size]
        full = sorted({row["output_size"] for row in rows})
        score_cols = [("mean_dice", "Dice"), ("mean_jaccard", "Jaccard"), ("final_mean_jaccard", "Jacc. last epoch")]
        if volume:
            score_cols.insert(2, ("mean_volume_dice", "Dice per patient (3D)"))
        if per_class:
            score_cols += [
                (f"{m}_{c}", f"{c} {label}") for c in classes for m, label in (("dice", "Dice"), ("jaccard", "Jacc."))
            ]
        low_cols = [("input_res_mean_dice", f"Dice @ {size}x{size} (paper-style)"),
                    ("input_res_mean_jaccard", f"Jacc. @ {size}x{size} (paper-style)")]  # fmt: skip
        costs = ["Train s", "Epoch s", "Params (head)"]
        header = ["Method", "Seeds", *[t for _, t in score_cols], *[t for _, t in low_cols], *costs]
        best = {}
        for col, _ in score_cols + low_cols:
            shown = [_cell(row["stats"].get(col)).split(" ")[0] for row in rows if col in row["stats"]]
            if len(rows) > 1 and shown:
                best[col] = max(float(s) for s in shown)
        lines += ["", f"## Input {size}x{size}, scored at {', '.join(f'{s}x{s}' for s in full)}", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
        for row in rows:
            cells = [row["method"], str(len(row["seeds"]))]
            for col, _ in score_cols + low_cols:
                text = _cell(row["stats"].get(col))
                if col in best and text != "-" and float(text.split(" ")[0]) == best[col]:
                    text = f"**{text}**"
                cells.append(text)
            cells.append(_cell(row["stats"].get("train_seconds"), scale=1.0))
            cells.append(_cell(row["stats"].get("epoch_seconds"), scale=1.0))
            cells.append(f"{row['params']:,} ({row['head_params']:,})")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(out_dir: str | Path, results: Sequence[Mapping[str, Any]]) -> list[Path]:
    """Write ``results.csv`` (one row per run) and ``results.md`` (:func:`format_markdown`)."""
    out = Path(out_dir)
    classes = [f"{m}_{c}" for c in _class_names(results) for m in ("dice", "jaccard")]
    at = RESULT_COLUMNS.index("mean_jaccard_global") + 1
    columns = [*RESULT_COLUMNS[:at], *classes, *RESULT_COLUMNS[at:]]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(results)
    write_text(out / RESULTS_CSV, buf.getvalue())
    write_text(out / RESULTS_MD, format_markdown(summarize(results)))
    return [out / RESULTS_CSV, out / RESULTS_MD]


def _example_slice(data: SliceData, val_patients: Sequence[str]) -> int:
    """A validation slice with a median-sized structure (the first validation slice if none has one)."""
    index = np.flatnonzero(np.isin(data.patient_id, list(val_patients)))
    if len(index) == 0:
        raise ValueError("none of the validation patients are in the data")
    area = (data.masks[index] > 0).reshape(len(index), -1).sum(axis=1)
    lesion = index[area > 0]
    if len(lesion) == 0:
        return int(index[0])
    order = lesion[np.argsort(area[area > 0], kind="stable")]
    return int(order[len(order) // 2])


def write_figures(
    sweep: Sweep, out_dir: str | Path, results: Sequence[Mapping[str, Any]], cache: dict[str, SliceData] | None = None
) -> list[Path]:
    """Draw ``examples.png`` and ``jaccard_vs_input_size.png`` of a finished sweep.

    Without matplotlib nothing is drawn and a warning says so. ``examples.png`` is left as it
    is, with a warning, when a finished run it shows has lost its ``checkpoint_best.pt``.
    Returns the files written.
    """
    if pyplot() is None:
        log.warning("no figures: matplotlib is not installed (pip install 'jnet[plot]')")
        return []
    out = Path(out_dir)
    cache = {} if cache is None else cache
    written = []
    quality = plot_quality(summarize(results), out / QUALITY_PNG)
    if quality is not None:
        written.append(quality)
    seeds = [run.config.seed for run in sweep.runs if run.method in sweep.figure_methods]
    seed = sweep.figure_seed if sweep.figure_seed is not None else min(seeds)
    by_key = {(run.method, run.config.input_size, run.config.seed): run for run in sweep.runs}
    sizes = sorted({run.config.input_size for run in sweep.runs if run.method in sweep.figure_methods}, reverse=True)
    found = []  # (size, the figure runs of that size, the first one present)
    for size in sizes:
        # finished runs only: an unfinished run's checkpoint_best.pt is not its result
        runs = {
            m: run
            for m in sweep.figure_methods
            if (run := by_key.get((m, size, seed))) is not None and run_status(out / run.name) == "skip"
        }
        present = [run for run in runs.values() if (out / run.name / "split.json").is_file()]
        if present:
            found.append((size, runs, present[0]))
    missing = [
        str(out / run.name / "checkpoint_best.pt")
        for _, runs, _ in found
        for run in runs.values()
        if not (out / run.name / "checkpoint_best.pt").is_file()
    ]
    if missing:
        # checkpoints are not committed: a clone has the runs' results but not their weights (nor,
        # maybe, the data), and a figure with empty panels would silently replace the one drawn from them
        log.warning(
            "%s not redrawn: %d finished run(s) have no checkpoint_best.pt (%s); retrain them to redraw it",
            out / EXAMPLES_PNG,
            len(missing),
            ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else ""),
        )
        return written
    rows = []
    for size, runs, first in found:
        data = _data(first.config, cache)
        split = json.loads((out / first.name / "split.json").read_text())
        i = _example_slice(data, split["val"])
        checkpoints = {
            m: out / runs[m].name / "checkpoint_best.pt" if m in runs else None for m in sweep.figure_methods
        }
        rows.append(ExampleRow(data.images[i], data.masks[i], size, checkpoints, first.config.downsample_mode))
    if rows:
        examples = example_figure(rows, out / EXAMPLES_PNG)
        if examples is not None:
            written.append(examples)
    return written
