"""Cross-validation: pool the folds of a sweep into per-patient 3D Dice over every patient.

A sweep with a ``fold`` axis (``configs/cv_lgg.yaml``: ``folds: 5``, ``fold: [0, 1, 2, 3, 4]``)
trains each configuration once per fold; every patient is in exactly one fold's validation set.
Each run keeps its validation slices' per-class pixel counts in ``val_scores.csv``
(:mod:`jnet.training.scores`), so the union of a configuration's folds scores every patient of
the data once, without a checkpoint. This module pools them and reports, per configuration:

- ``mean_volume_dice``: each patient's 3D Dice (its counts summed over its slices, averaged over
  the foreground classes), averaged over the patients, as the literature on LGG reports it
  (Buda et al. 2019), with a percentile bootstrap interval over patients;
- ``mean_dice``: the mean per-slice Dice over all pooled slices, with its interval over patients;
- ``fold_volume_dice``: the same 3D Dice averaged within each fold, to show the spread of folds;
- ``empty_fp_share``: the share of the false-positive pixels that lie on slices whose ground truth
  is empty (a volume's false positives can come from its tumour-free slices or from outlines).

``slices="tumour"`` pools only the slices whose ground truth has foreground: the 3D Dice a model
would have if it drew nothing on the tumour-free slices, and the slice Dice on the tumour slices.
Set beside the default (``"all"``), it says whether a gap between two configurations comes from
false positives on empty slices or from the tumour slices themselves.

Two configurations are compared patient by patient on their 3D Dice (:func:`compare_pooled`):
the mean difference with a bootstrap interval over patients and a sign test
(:func:`jnet.study.compare.paired_difference`, one value per patient).

A configuration is ``METHOD@INPUT_SIZE`` as :mod:`jnet.study.compare` names it, with the
``+fold=N`` part of the sweep's method left out: ``elunet+jnet@16`` pools the runs
``elunet+jnet+fold=0`` ... ``+fold=4``. ``/sSEED`` picks one seed; runs of several seeds are
averaged per patient. A configuration with a fold missing (not trained yet, or a run without
``val_scores.csv``) is an error that names the folds, unless ``allow_incomplete`` is given:
then it is pooled over the folds it has and marked incomplete, and :func:`compare_pooled` with
``shared_only`` compares it with another on the patients both scored (a cross-validation still
training: the folds finished so far), marked incomplete too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jnet._options import check_option
from jnet.io import read_yaml
from jnet.study.compare import (
    PairedResult,
    format_interval,
    paired_difference,
    parse_spec,
    run_scores,
    sweep_rows,
)
from jnet.training.scores import SCORES_FILE, ImageScores, read_scores

_FOLD = re.compile(r"\+fold=(\d+)")
SLICE_SETS = ("all", "tumour")
"""What ``pool_folds`` pools: every validation slice, or those whose ground truth has foreground."""


@dataclass
class Interval:
    """A mean over patients with its percentile bootstrap interval (``NaN`` with one patient)."""

    mean: float
    ci_low: float
    ci_high: float


@dataclass
class PooledConfig:
    """One configuration's folds pooled (see the module docstring)."""

    config: str
    seeds: list[int]
    folds: list[int]
    n_folds: int
    n_patients: int
    n_images: int
    mean_volume_dice: Interval
    mean_dice: Interval
    fold_volume_dice: dict[int, float]
    empty_fp_share: float  # of the false-positive pixels, the share on slices with an empty ground truth
    slices: str  # one of SLICE_SETS
    runs: list[str]
    patient_id: np.ndarray = field(repr=False)  # (P,) str, sorted
    volume_dice: np.ndarray = field(repr=False)  # (P,) the patients' 3D Dice, mean over classes and seeds

    @property
    def complete(self) -> bool:
        """Whether every fold of the split has a run (so every patient is scored)."""
        return self.folds == list(range(self.n_folds))

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("patient_id", "volume_dice")}
        out["complete"] = self.complete
        out["patients"] = {str(p): float(v) for p, v in zip(self.patient_id, self.volume_dice, strict=True)}
        return out


@dataclass
class PooledComparison:
    """``a`` against ``b`` on the patients' 3D Dice; ``complete`` unless compared on part of the patients only."""

    a: str
    b: str
    result: PairedResult
    complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "complete": self.complete, **asdict(self.result)}


def bootstrap_mean(values: np.ndarray, n_boot: int = 10000, seed: int = 0, confidence: float = 0.95) -> Interval:
    """The mean of per-patient ``values`` ``(P,)`` and its percentile bootstrap interval over patients."""
    v = np.asarray(values, dtype=np.float64)
    return bootstrap_ratio(v, np.ones_like(v), n_boot, seed, confidence)


def bootstrap_ratio(
    sums: np.ndarray, counts: np.ndarray, n_boot: int = 10000, seed: int = 0, confidence: float = 0.95
) -> Interval:
    """``sums.sum() / counts.sum()`` (a mean over slices from per-patient sums and slice counts, ``(P,)`` each)
    and its percentile bootstrap interval over patients (a resample's statistic: its sums over its counts)."""
    s, c = np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    if s.shape != c.shape or s.ndim != 1 or len(s) == 0:
        raise ValueError(f"sums and counts must be non-empty (P,) arrays, got shapes {s.shape} and {c.shape}")
    if len(s) == 1:
        return Interval(float(s[0] / c[0]), math.nan, math.nan)
    draws = np.random.default_rng(seed).integers(0, len(s), size=(n_boot, len(s)))  # (n_boot, P)
    stats = s[draws].sum(axis=1) / c[draws].sum(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return Interval(float(s.sum() / c.sum()), float(low), float(high))


def _fold_runs(sweep_dir: Path, method: str, size: int) -> dict[int, list[tuple[int, Path]]]:
    """seed -> ``[(fold, run folder)]`` of the runs of ``method`` (without ``+fold=N``) at ``size``."""
    path = sweep_dir / "results.csv"
    rows = sweep_rows(sweep_dir)
    runs: dict[int, list[tuple[int, Path]]] = {}
    for r in rows:
        match = _FOLD.search(r["method"])
        if match is None or _FOLD.sub("", r["method"]) != method or int(r["input_size"]) != size:
            continue
        runs.setdefault(int(r["seed"]), []).append((int(match[1]), sweep_dir / r["run"]))
    if not runs:
        known = sorted({f"{_FOLD.sub('', r['method'])}@{r['input_size']}" for r in rows if _FOLD.search(r["method"])})
        have = f"its cross-validated configurations are {', '.join(known)}" if known else "it has no fold runs"
        raise ValueError(f"{path}: no fold runs of {method}@{size}; {have}")
    return {seed: sorted(folds) for seed, folds in sorted(runs.items())}


def _n_folds(run_dir: Path) -> int:
    config = read_yaml(run_dir / "config.yaml", "run configuration") or {}
    folds = config.get("folds") if isinstance(config, dict) else None
    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"{run_dir / 'config.yaml'}: not a cross-validation run (folds: {folds!r})")
    return folds


def configurations(sweep_dir: str | Path) -> list[str]:
    """The cross-validated configurations of a sweep folder (``METHOD@INPUT_SIZE``), in results.csv's order."""
    path = Path(sweep_dir) / "results.csv"
    rows = sweep_rows(sweep_dir)
    specs = [f"{_FOLD.sub('', r['method'])}@{r['input_size']}" for r in rows if _FOLD.search(r["method"])]
    if not specs:
        raise ValueError(f"{path}: no runs with a fold (method ...+fold=N); is it a cross-validation sweep?")
    return list(dict.fromkeys(specs))


def pool_folds(
    sweep_dir: str | Path,
    spec: str,
    n_boot: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
    allow_incomplete: bool = False,
    scores_file: str = SCORES_FILE,
    slices: str = "all",
) -> PooledConfig:
    """Pool the folds of configuration ``spec`` of the sweep in ``sweep_dir`` (see the module docstring).

    ``scores_file`` names another per-slice file in each run folder, such as the one ``jnet evaluate
    --checkpoint RUN/checkpoint_best.pt --largest-component --scores RUN/val_scores_lcc.csv`` writes
    (scores after post-processing); the training's own ``val_scores.csv`` is checked against the run's
    ``metrics.json``, another file is taken as it is. ``slices`` (:data:`SLICE_SETS`): every slice, or
    those whose truth has foreground (a patient without one drops out).

    Raises:
        ValueError: a fold missing (unless ``allow_incomplete``), a seed missing a fold another
            seed has, a patient validated by two folds, runs of one configuration split into
            different numbers of folds, or a ``val_scores.csv`` without per-slice counts.
    """
    sweep_dir = Path(sweep_dir)
    check_option("slices", slices, SLICE_SETS)
    method, size, seeds = parse_spec(spec)
    by_seed = _fold_runs(sweep_dir, method, size)
    if seeds is not None:
        absent = [s for s in seeds if s not in by_seed]
        if absent:
            raise ValueError(
                f"{spec}: no fold runs with seed {', '.join(map(str, absent))}; its seeds are "
                f"{', '.join(map(str, by_seed))}"
            )
        by_seed = {s: by_seed[s] for s in seeds}
    fold_sets = {s: [f for f, _ in runs] for s, runs in by_seed.items()}
    folds = next(iter(fold_sets.values()))
    if any(f != folds for f in fold_sets.values()):
        detail = "; ".join(f"seed {s}: folds {', '.join(map(str, f))}" for s, f in fold_sets.items())
        raise ValueError(f"{spec}: its seeds have different folds ({detail}); name one seed (/sN)")
    n_folds = {_n_folds(run_dir) for runs in by_seed.values() for _, run_dir in runs}
    if len(n_folds) != 1:
        raise ValueError(f"{spec}: its runs split the patients into different numbers of folds ({sorted(n_folds)})")
    k = n_folds.pop()
    absent = [f for f in range(k) if f not in folds]
    if absent and not allow_incomplete:
        raise ValueError(
            f"{spec}: fold(s) {', '.join(map(str, absent))} of {k} have no finished run in {sweep_dir} "
            "(train them, or allow incomplete configurations)"
        )
    per_seed, per_fold, patient_fold = [], {}, {}
    slice_sum: dict[str, float] = {}  # patient -> its slices' Dice summed, averaged over the seeds
    slice_count: dict[str, int] = {}  # patient -> its slices (of one seed)
    fp_empty = fp_total = 0
    for s, runs in by_seed.items():
        values: dict[str, float] = {}
        for fold, run_dir in runs:
            scores = run_scores(run_dir) if scores_file == SCORES_FILE else _scores_file(run_dir, scores_file)
            volumes, tumour = scores.volume_scores(), scores.truth_pixels > 0  # the counts are there: (N, C), (N,)
            fp_empty, fp_total = fp_empty + int(scores.fp[~tumour].sum()), fp_total + int(scores.fp.sum())  # type: ignore[index, union-attr]
            if slices == "tumour":
                scores = scores.subset(tumour)
                volumes = scores.volume_scores()
            fold_values = volumes.dice.mean(axis=1)  # (P_fold,) mean over the foreground classes
            for pid, v in zip(volumes.patient_id, fold_values, strict=True):
                if patient_fold.setdefault(str(pid), fold) != fold:
                    raise ValueError(
                        f"{spec}: patient {pid} is validated by fold {patient_fold[str(pid)]} and fold {fold} "
                        f"({run_dir}); the folds of a cross-validation must not share patients"
                    )
                values[str(pid)] = float(v)
            for pid, d in zip(scores.patient_id, scores.dice, strict=True):
                slice_sum[str(pid)] = slice_sum.get(str(pid), 0.0) + float(d) / len(by_seed)
                if s == next(iter(by_seed)):
                    slice_count[str(pid)] = slice_count.get(str(pid), 0) + 1
            if len(fold_values):
                per_fold.setdefault(fold, []).append(float(fold_values.mean()))
        per_seed.append(values)
    if not per_seed[0]:
        raise ValueError(f"{spec}: no validation slice has foreground in its ground truth, so nothing to pool")
    patients = np.array(sorted(per_seed[0]))
    volume_dice = np.array([np.mean([v[p] for v in per_seed]) for p in patients])  # (P,)
    sums = np.array([slice_sum[p] for p in patients])  # (P,)
    counts = np.array([slice_count[p] for p in patients], dtype=np.float64)  # (P,)
    return PooledConfig(
        config=spec,
        seeds=list(by_seed),
        folds=folds,
        n_folds=k,
        n_patients=len(patients),
        n_images=int(counts.sum()),
        mean_volume_dice=bootstrap_mean(volume_dice, n_boot, seed, confidence),
        mean_dice=bootstrap_ratio(sums, counts, n_boot, seed, confidence),
        fold_volume_dice={f: float(np.mean(v)) for f, v in sorted(per_fold.items())},
        empty_fp_share=fp_empty / fp_total if fp_total else math.nan,
        slices=slices,
        runs=[str(run_dir) for runs in by_seed.values() for _, run_dir in runs],
        patient_id=patients,
        volume_dice=volume_dice,
    )


def _scores_file(run_dir: Path, name: str) -> ImageScores:
    path = run_dir / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file (write it with jnet evaluate --checkpoint {run_dir / 'checkpoint_best.pt'} "
            f"--scores {path}, adding the evaluation's options such as --largest-component)"
        )
    return read_scores(path)


def compare_pooled(
    a: PooledConfig,
    b: PooledConfig,
    n_boot: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
    shared_only: bool = False,
) -> PooledComparison:
    """``a`` against ``b`` on the patients' 3D Dice, patient by patient.

    Both must have scored the same patients (every patient, when both are complete), unless
    ``shared_only``: then they are compared on the patients both scored, and the comparison is
    marked incomplete when that leaves out a patient of either.

    Raises:
        ValueError: if the two scored different patients (e.g. one is incomplete) and not
            ``shared_only``, if they share no patient, or if they pooled different slices.
    """
    if a.slices != b.slices:
        raise ValueError(f"{a.config} pooled {a.slices} slices and {b.config} {b.slices}; pool both the same way")
    shared, ia, ib = np.intersect1d(a.patient_id, b.patient_id, assume_unique=True, return_indices=True)  # (P_shared,)
    complete = len(shared) == a.n_patients == b.n_patients
    if not complete and not shared_only:
        only = np.setxor1d(a.patient_id, b.patient_id).tolist()
        raise ValueError(
            f"{a.config} ({a.n_patients} patients) and {b.config} ({b.n_patients}) scored different patients "
            f"(in one only: {', '.join(only[:3])}{' ...' if len(only) > 3 else ''}); compare complete configurations, "
            "or allow incomplete ones to compare the patients both scored"
        )
    if not len(shared):
        raise ValueError(f"{a.config} and {b.config} share no scored patient (different folds?); nothing to compare")
    result = paired_difference(a.volume_dice[ia], b.volume_dice[ib], shared, "volume_dice", n_boot, seed, confidence)
    return PooledComparison(a.config, b.config, result, complete)


def format_markdown(pooled: Sequence[PooledConfig], comparisons: Sequence[PooledComparison] = ()) -> str:
    """Markdown tables of the pooled configurations and the comparisons, scores in percent.

    Configurations pooled over the tumour slices only (``slices="tumour"``) are preceded by a line
    that says so.
    """
    level = f"{100 * (comparisons[0].result.confidence if comparisons else 0.95):g}%"
    lines = []
    if any(p.slices == "tumour" for p in pooled):
        lines += ["Tumour slices only: the slices whose ground truth has foreground.", ""]
    lines += [
        "| configuration | folds | patients | slices | 3D Dice per patient (mean) | CI | slice Dice (mean) | CI "
        "| 3D Dice by fold | false positives on empty slices |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for p in pooled:
        folds = f"{len(p.folds)} of {p.n_folds}" if not p.complete else str(p.n_folds)
        by_fold = " / ".join(f"{100 * v:.1f}" for v in p.fold_volume_dice.values())
        lines.append(
            f"| `{p.config}` | {folds} | {p.n_patients} | {p.n_images} | {100 * p.mean_volume_dice.mean:.1f} "
            f"| {_ci(p.mean_volume_dice)} | {100 * p.mean_dice.mean:.1f} | {_ci(p.mean_dice)} | {by_fold} "
            f"| {_share(p.empty_fp_share)} |"
        )
    if comparisons:
        lines += [
            "",
            f"| A | B | 3D Dice A | 3D Dice B | A - B | {level} CI (patients) | patients A better / worse "
            "| sign test p |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for c in comparisons:
            r = c.result
            lines.append(
                f"| `{c.a}` | `{c.b}` | {100 * r.mean_a:.1f} | {100 * r.mean_b:.1f} | {100 * r.difference:+.1f} "
                f"| {format_interval(r)} | {r.patients_better} / {r.patients_worse} | {r.sign_test_p:.2g} |"
            )
        for c in comparisons:
            if not c.complete:
                lines += ["", f"INCOMPLETE: `{c.a}` against `{c.b}` on the {c.result.n_patients} patients both scored."]
    return "\n".join(lines)


def format_pooled(p: PooledConfig) -> str:
    """One line for a terminal, scores in percent."""
    state = "" if p.complete else f" (INCOMPLETE: folds {', '.join(map(str, p.folds))} of {p.n_folds})"
    which = " tumour" if p.slices == "tumour" else ""
    return (
        f"{p.config}{state}: {p.n_patients} patients, {p.n_images}{which} slices: 3D Dice per patient "
        f"{100 * p.mean_volume_dice.mean:.1f} ({_ci(p.mean_volume_dice)}), slice Dice {100 * p.mean_dice.mean:.1f} "
        f"({_ci(p.mean_dice)}); by fold "
        + " / ".join(f"{100 * v:.1f}" for v in p.fold_volume_dice.values())
        + f"; false positives on empty slices {_share(p.empty_fp_share)}"
    )


def _share(x: float) -> str:
    return "none" if math.isnan(x) else f"{100 * x:.1f} %"


def _ci(i: Interval) -> str:
    return "one patient" if math.isnan(i.ci_low) else f"{100 * i.ci_low:.1f} .. {100 * i.ci_high:.1f}"
