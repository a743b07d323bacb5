"""Paired comparison of two configurations of a sweep, with uncertainty over patients.

A sweep table gives each configuration's mean score and its spread over seeds. The spread over
seeds says nothing about the validation patients: with 16 of them, a 2-point difference can
come from two or three patients. This module scores both configurations on the *same*
validation slices and reports the difference with a bootstrap confidence interval over
patients and a sign test over patients.

Per-image scores
----------------
:func:`run_scores` reads a run's ``val_scores.csv``, which ``jnet train`` writes at the end
of every run (:mod:`jnet.training.scores`); for a run from before that, it scores the run's
``checkpoint_best.pt`` on its validation slices and writes the file, so later comparisons
need no checkpoint. Every read is checked against ``metrics.json``: the mean of the per-image
scores must equal the run's best mean score, else the file is stale or the checkpoint is not
the one the metrics came from, and it is an error.

The statistics
--------------
A configuration's per-image score is the mean over its seeds (runs of one configuration must
share the validation slices). For the paired differences ``d_i = a_i - b_i`` over ``N``
images of ``P`` patients:

- ``difference``: the mean of ``d_i`` over images, i.e. the difference of the two table means;
- ``ci_low``, ``ci_high``: the percentile interval of the same statistic over ``n_boot``
  bootstrap resamples of whole patients (with replacement; a resample's statistic is the sum
  of its patients' ``d_i`` over its number of images), seeded;
- ``patients_better`` / ``patients_worse``: patients whose mean ``d_i`` is above / below 0;
  ``sign_test_p``: the exact two-sided binomial sign test over the patients that differ;
- ``images_better`` / ``images_worse``: the same count over images.

With ``size_bins``, the same statistics are also given for the slices without foreground and
for each band of the truth's foreground area (e.g. ``(1000, 2500)``: 1-999, 1000-2499 and
2500 or more pixels), to show *where* one configuration wins; a band with fewer than two
patients gets no interval.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jnet.io import read_yaml
from jnet.training.scores import (
    SCORE_METRICS,
    SCORES_FILE,
    ImageScores,
    checkpoint_scores,
    read_scores,
    write_scores,
)

TIE = 1e-9  # |difference| at most this counts as a tie in the sign test and the better/worse counts
_SPEC = re.compile(r"^(?P<method>.+)@(?P<size>\d+)(?:/(?P<seeds>s\d+(?:\+s\d+)*))?$")


@dataclass
class PairedResult:
    """The paired comparison of configuration ``a`` against ``b`` (see the module docstring)."""

    metric: str
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    n_boot: int
    n_images: int
    n_patients: int
    patients_better: int
    patients_worse: int
    sign_test_p: float
    images_better: int
    images_worse: int


def _expected(run_dir: Path) -> tuple[dict[str, float], int | None]:
    """The best epoch's mean scores in ``metrics.json``, and its image count where recorded."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (is {run_dir} a finished training run?)")
    try:
        best = json.loads(path.read_text()).get("best") or {}
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    try:
        means = {m: float(best[f"mean_{m}"]) for m in SCORE_METRICS}
    except KeyError as err:
        raise ValueError(f"{path}: 'best' has no {err.args[0]}") from None
    return means, (int(best["n_images"]) if "n_images" in best else None)


def _check_against_metrics(scores: ImageScores, run_dir: Path, source: str) -> None:
    means, n = _expected(run_dir)
    advice = (
        f"the scores are stale (delete {SCORES_FILE} to rescore)"
        if Path(source).name == SCORES_FILE
        else "the checkpoint is not the run's best, or scoring here does not repeat the run's own validation"
    )
    if n is not None and len(scores.dice) != n:
        raise ValueError(f"{source}: {len(scores.dice)} images, but metrics.json's best was scored on {n}; {advice}")
    for metric, value in means.items():
        got = float(scores.metric(metric).mean())
        if not math.isclose(got, value, rel_tol=0, abs_tol=1e-6):
            raise ValueError(
                f"{source}: mean {metric} {got:.6f} differs from metrics.json's best {value:.6f}; {advice}"
            )


def run_scores(run_dir: str | Path, loaded: dict | None = None) -> ImageScores:
    """A run's per-image validation scores: its ``val_scores.csv``, made from ``checkpoint_best.pt`` if missing.

    Either way the scores are checked against the run's ``metrics.json``.
    """
    run_dir = Path(run_dir)
    cached = run_dir / SCORES_FILE
    if cached.is_file():
        scores = read_scores(cached)
        _check_against_metrics(scores, run_dir, str(cached))
        return scores
    checkpoint = run_dir / "checkpoint_best.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"{run_dir}: neither {SCORES_FILE} nor checkpoint_best.pt (rerun the sweep to recreate the checkpoint)"
        )
    scores = checkpoint_scores(checkpoint, loaded)
    _check_against_metrics(scores, run_dir, str(checkpoint))
    write_scores(scores, cached)
    return scores


def sign_test(better: int, worse: int) -> float:
    """Exact two-sided binomial sign test p-value for ``better`` against ``worse`` (ties dropped)."""
    n = better + worse
    if n == 0:
        return 1.0
    k = min(better, worse)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference(
    a: np.ndarray,
    b: np.ndarray,
    patient_id: np.ndarray,
    metric: str = "jaccard",
    n_boot: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedResult:
    """Compare per-image scores ``a`` and ``b`` of the same images (see the module docstring).

    Args:
        a, b: ``(N,)`` scores of the two configurations on the same images.
        patient_id: ``(N,)`` the patient of each image; the bootstrap resamples patients.
        metric: the name reported with the result.
        n_boot: bootstrap resamples.
        seed: the bootstrap's seed.
        confidence: the interval's coverage, in (0, 1).

    With a single patient there is nothing to resample: ``ci_low`` and ``ci_high`` are NaN.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pid = np.asarray(patient_id)
    if a.shape != b.shape or a.ndim != 1 or pid.shape != a.shape:
        raise ValueError(
            f"a, b and patient_id must be (N,) arrays of one length, got {a.shape}, {b.shape}, {pid.shape}"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if len(a) == 0:
        raise ValueError("no images to compare")
    patients, index = np.unique(pid, return_inverse=True)
    d = a - b
    sums = np.bincount(index, weights=d, minlength=len(patients))  # (P,)
    counts = np.bincount(index, minlength=len(patients)).astype(np.float64)  # (P,)
    per_patient = sums / counts
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(patients), size=(n_boot, len(patients)))  # (n_boot, P)
    stats = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha]) if len(patients) > 1 else (math.nan, math.nan)
    # a difference within TIE of zero is a tie: seed means summed in another order differ by an ulp
    better, worse = int((per_patient > TIE).sum()), int((per_patient < -TIE).sum())
    return PairedResult(
        metric=metric,
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        difference=float(d.mean()),
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        n_boot=n_boot,
        n_images=len(d),
        n_patients=len(patients),
        patients_better=better,
        patients_worse=worse,
        sign_test_p=sign_test(better, worse),
        images_better=int((d > TIE).sum()),
        images_worse=int((d < -TIE).sum()),
    )


def parse_spec(spec: str) -> tuple[str, int, tuple[int, ...] | None]:
    """``"METHOD@SIZE"`` or ``"METHOD@SIZE/sSEED[+sSEED...]"`` -> ``(method, input_size, seeds or None)``.

    ``elunet+jnet@16`` is every seed of the configuration; ``elunet+jnet@16/s0`` its seed 0 only,
    ``elunet+jnet@16/s1+s2`` its seeds 1 and 2 (to compare with the seeds another configuration
    has, or leave out a run whose per-image scores were not kept).
    """
    match = _SPEC.match(spec.strip())
    if not match:
        raise ValueError(
            f"{spec!r}: a configuration is METHOD@INPUT_SIZE or METHOD@INPUT_SIZE/sSEED[+sSEED...], "
            f"e.g. elunet+jnet@16, elunet+jnet@16/s0 or elunet+jnet@16/s1+s2"
        )
    if match["seeds"] is None:
        return match["method"], int(match["size"]), None
    seeds = tuple(int(part[1:]) for part in match["seeds"].split("+"))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{spec!r}: a seed is named twice")
    return match["method"], int(match["size"]), seeds


def sweep_rows(sweep_dir: str | Path) -> list[dict[str, str]]:
    """The rows of a sweep folder's ``results.csv``, checked for the columns that name its runs."""
    path = Path(sweep_dir) / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (a sweep folder holds results.csv)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in ("run", "method", "input_size", "seed") if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return rows


def _runs_of(sweep_dir: Path, method: str, size: int, seeds: tuple[int, ...] | None = None) -> list[tuple[int, Path]]:
    path = sweep_dir / "results.csv"
    rows = sweep_rows(sweep_dir)
    try:
        runs = sorted(
            (int(r["seed"]), sweep_dir / r["run"])
            for r in rows
            if r["method"] == method and int(r["input_size"]) == size
        )
    except ValueError as err:
        raise ValueError(f"{path}: input_size and seed must be integers ({err})") from None
    if not runs:
        known = sorted({f"{r['method']}@{r['input_size']}" for r in rows})
        raise ValueError(f"{path}: no runs of {method}@{size}; it has {', '.join(known)}")
    if seeds is not None:
        have = [s for s, _ in runs]
        absent = [s for s in seeds if s not in have]
        if absent:
            raise ValueError(
                f"{path}: {method}@{size} has no run with seed {', '.join(map(str, absent))}; "
                f"its seeds are {', '.join(map(str, have))}"
            )
        runs = [(s, d) for s, d in runs if s in seeds]
    return runs


@dataclass
class Comparison:
    """``a`` against ``b``: the configurations, their runs, the paired result and, by truth size, its strata."""

    a: str
    b: str
    seeds_a: list[int]
    seeds_b: list[int]
    result: PairedResult
    strata: dict[str, PairedResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        strata = {name: asdict(r) for name, r in self.strata.items()}
        out = {"a": self.a, "b": self.b, "seeds_a": self.seeds_a, "seeds_b": self.seeds_b, **asdict(self.result)}
        return {**out, "strata": strata} if strata else out


def size_strata(truth_pixels: np.ndarray, bins: Sequence[int]) -> dict[str, np.ndarray]:
    """Masks of the images with an empty truth and of each band of truth area (see the module docstring)."""
    edges = [int(b) for b in bins]
    if not edges or edges[0] < 2 or any(b >= c for b, c in itertools.pairwise(edges)):
        raise ValueError(f"size bins must be increasing pixel counts above 1, got {list(bins)}")
    t = np.asarray(truth_pixels)
    bands = {"empty": t == 0}
    lows = [1, *edges]
    for low, high in zip(lows, [*edges, None], strict=True):
        name = f"{low}-{high - 1} px" if high is not None else f">={low} px"
        bands[name] = (t >= low) & (t < high) if high is not None else t >= low
    return bands


def compare(
    sweep_dir: str | Path,
    a: str,
    b: str,
    metric: str = "jaccard",
    n_boot: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
    loaded: dict | None = None,
    size_bins: Sequence[int] | None = None,
) -> Comparison:
    """Compare configuration ``a`` with ``b`` (specs of :func:`parse_spec`) of the sweep in ``sweep_dir``.

    Each configuration's per-image scores are averaged over its seeds (or over the seeds the
    spec names); every run of both must have been validated on the same slices (the same patient
    split), else it is an error.
    ``size_bins`` adds the strata of :func:`size_strata`.
    """
    if metric not in SCORE_METRICS:
        raise ValueError(f"metric must be one of {', '.join(SCORE_METRICS)}, got {metric!r}")
    sweep_dir = Path(sweep_dir)
    loaded = {} if loaded is None else loaded
    means, seeds, reference = [], [], None
    for spec in (a, b):
        runs = _runs_of(sweep_dir, *parse_spec(spec))
        stack = []
        for _, run_dir in runs:
            scores = run_scores(run_dir, loaded)
            if reference is None:
                reference = (run_dir, scores.patient_id, scores.truth_pixels)
            elif not (
                np.array_equal(scores.patient_id, reference[1]) and np.array_equal(scores.truth_pixels, reference[2])
            ):
                only = sorted(set(scores.patient_id) ^ set(reference[1]))
                detail = f"patients in one only: {', '.join(only[:3])}" if only else "the same patients, other slices"
                raise ValueError(
                    f"{run_dir} and {reference[0]} were validated on different slices ({detail}); "
                    f"compare runs of one patient split"
                )
            stack.append(scores.metric(metric))
        means.append(np.mean(stack, axis=0))
        seeds.append([s for s, _ in runs])
    assert reference is not None
    result = paired_difference(means[0], means[1], reference[1], metric, n_boot, seed, confidence)
    strata = {}
    for name, keep in size_strata(reference[2], size_bins).items() if size_bins else ():
        if keep.any():
            strata[name] = paired_difference(
                means[0][keep], means[1][keep], reference[1][keep], metric, n_boot, seed, confidence
            )
    return Comparison(a, b, seeds[0], seeds[1], result, strata)


def format_comparison(c: Comparison) -> str:
    """Two lines for a terminal (and one per size band), scores in percent."""
    r = c.result
    pct = f"{100 * r.confidence:g}%"
    ci = format_interval(r)
    return (
        f"{c.a} ({len(c.seeds_a)} seed(s)) vs {c.b} ({len(c.seeds_b)}), {r.n_images} images of "
        f"{r.n_patients} patients: mean {r.metric} {100 * r.mean_a:.1f} vs {100 * r.mean_b:.1f}, "
        f"difference {100 * r.difference:+.1f} ({pct} CI over patients {ci})\n"
        f"  patients better / worse: {r.patients_better} / {r.patients_worse} (sign test p = {r.sign_test_p:.3g}); "
        f"images better / worse: {r.images_better} / {r.images_worse}"
    ) + "".join(
        f"\n  {name:<14} {s.n_images:>4} images: {100 * s.mean_a:5.1f} vs {100 * s.mean_b:5.1f}, "
        f"{100 * s.difference:+.1f} ({format_interval(s)}), "
        f"images better / worse {s.images_better} / {s.images_worse}"
        for name, s in c.strata.items()
    )


def format_interval(r: PairedResult) -> str:
    """A difference's interval in percent points (``"+0.4 .. +3.1"``), or ``"one patient"`` when it has none."""
    if math.isnan(r.ci_low):
        return "one patient"
    return f"{100 * r.ci_low:+.1f} .. {100 * r.ci_high:+.1f}"


def format_markdown(comparisons: list[Comparison]) -> str:
    """A markdown table of comparisons, scores in percent."""
    levels = sorted({f"{100 * c.result.confidence:g}%" for c in comparisons}) or ["95%"]
    lines = [
        f"| A | B | seeds | mean A | mean B | A - B | {' / '.join(levels)} CI (patients) "
        "| patients A better / worse | sign test p |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in comparisons:
        r = c.result
        lines.append(
            f"| `{c.a}` | `{c.b}` | {len(c.seeds_a)} / {len(c.seeds_b)} | {100 * r.mean_a:.1f} | {100 * r.mean_b:.1f} "
            f"| {100 * r.difference:+.1f} | {format_interval(r)} "
            f"| {r.patients_better} / {r.patients_worse} | {r.sign_test_p:.2g} |"
        )
    names = list(dict.fromkeys(name for c in comparisons for name in c.strata))
    if names:
        counts = {n: next(c.strata[n].n_images for c in comparisons if n in c.strata) for n in names}
        lines += ["", "A - B by the truth's foreground area, with the CI over patients:", ""]
        lines.append("| A | B | " + " | ".join(f"{n} (n={counts[n]})" for n in names) + " |")
        lines.append("| --- | --- |" + " ---: |" * len(names))
        for c in comparisons:
            cells = [
                "" if s is None else f"{100 * s.difference:+.1f} ({format_interval(s)})"
                for s in (c.strata.get(n) for n in names)
            ]
            lines.append(f"| `{c.a}` | `{c.b}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_pairs(path: str | Path) -> tuple[list[tuple[str, str]], list[int] | None]:
    """The ``compare:`` section of a study YAML file: its ``pairs`` (``[A, B]`` specs of
    :func:`parse_spec`) and ``size_bins`` (``None`` if absent)."""
    spec = read_yaml(path, "study file") or {}
    section = spec.get("compare") if isinstance(spec, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f"{path}: no 'compare:' section with pairs and size_bins")
    unknown = sorted(set(section) - {"pairs", "size_bins"})
    if unknown:
        raise ValueError(f"{path}: compare: unknown key(s) {', '.join(unknown)}; valid: pairs, size_bins")
    pairs = section.get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise ValueError(f"{path}: compare: pairs must be a non-empty list of [A, B]")
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
            raise ValueError(f"{path}: compare: pairs[{i}] must be [A, B], two configurations, got {pair!r}")
        for s in pair:
            parse_spec(s)
    bins = section.get("size_bins")
    if bins is not None and not (isinstance(bins, list) and all(isinstance(b, int) and b > 0 for b in bins)):
        raise ValueError(f"{path}: compare: size_bins must be a list of positive pixel counts, got {bins!r}")
    return [(a, b) for a, b in pairs], bins
