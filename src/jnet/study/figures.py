"""The study's figures: quality against input size, quality against latency, example predictions.

Every function returns the file it wrote, or ``None`` when matplotlib is not installed
(``pip install 'jnet[plot]'``); figures are saved atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jnet.data.prepare import downsample
from jnet.deploy.benchmark import head_form_label
from jnet.deploy.plan import Plan
from jnet.io import atomic_write
from jnet.metrics import logits_to_labels, upsample_labels, upsample_logits
from jnet.training.checkpoint import load_checkpoint


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or ``None`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # optional: pip install 'jnet[plot]'
        return None
    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save ``fig`` to ``path`` atomically (its format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=80, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


_LINES = (("-", "o"), ("--", "s"), (":", "D"), ("-.", "^"))


def line_styles(n: int) -> list[tuple[str, str, str]]:
    """(colour, line style, marker) for ``n`` lines of a plot: tab10's ten colours, with a new line
    style and marker after every ten, so that up to 40 lines all look different (then they repeat)."""
    return [(f"C{i % 10}", *_LINES[(i // 10) % len(_LINES)]) for i in range(n)]


# points from the labelled point: right, left, then above and below it, nearer first
LABEL_OFFSETS = (
    (5, 3), (5, -9), (-5, 3), (-5, -9), (0, 8), (0, -14),
    (5, 10), (5, -16), (-5, 10), (-5, -16), (0, 16), (0, -22),
)  # fmt: skip


def place_labels(
    fig: Any,
    texts: Sequence[Any],
    offsets: Sequence[tuple[float, float]] = LABEL_OFFSETS,
    avoid: Sequence[Any] = (),
    keep: int = 0,
) -> list[Any]:
    """Place the annotations of a crowded plot where they overlap nothing; return those kept.

    Each text (from ``ax.annotate(..., textcoords="offset points")``) takes the first of ``offsets``
    where it stays inside its axes, clear of the display-space boxes in ``avoid`` (the markers,
    say) and of every text placed before it; a negative x offset puts it left of its point, a
    zero one centres it. A text with no such place is removed, except the first ``keep`` texts:
    they take the first place clear of the other texts (if none, the first offset). The caller
    passes the texts that matter most first.
    """
    renderer = fig.canvas.get_renderer()
    kept: list[Any] = []
    placed: list[Any] = []  # the kept texts' boxes

    def fits(text: Any, dx: float, dy: float, obstacles: Sequence[Any]) -> Any:
        text.xyann = (dx, dy)
        text.set_horizontalalignment("right" if dx < 0 else "left" if dx > 0 else "center")
        box = text.get_window_extent(renderer)
        frame = text.axes.bbox
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        return box if inside and not any(box.overlaps(other) for other in obstacles) else None

    for i, text in enumerate(texts):
        box = next((b for dx, dy in offsets if (b := fits(text, dx, dy, [*avoid, *placed])) is not None), None)
        if box is None and i < keep:
            box = next((b for dx, dy in offsets if (b := fits(text, dx, dy, placed)) is not None), None)
            if box is None:
                fits(text, *offsets[0], [])
                box = text.get_window_extent(renderer)
        if box is None:
            text.remove()
            continue
        kept.append(text)
        placed.append(box)
    return kept


@dataclass
class ExampleRow:
    """One row of :func:`example_figure`: a slice, the input size, and the models to show.

    Attributes:
        image: ``(C, H, W)`` full-resolution image (channel 0 is drawn).
        mask: ``(H, W)`` full-resolution labels.
        input_size: the side the networks read.
        predictions: column title -> ``checkpoint_*.pt`` (``None``: an empty panel).
        downsample_mode: how the image is brought to ``input_size``.
    """

    image: np.ndarray
    mask: np.ndarray
    input_size: int
    predictions: dict[str, Path | None]
    downsample_mode: str = "area"


def example_figure(rows: Sequence[ExampleRow], path: str | Path) -> Path | None:
    """The paper's Figs. 3 and 4: image and truth at full and input resolution, then predictions.

    Predictions are shown at full resolution, as they are scored (a ``none`` head's logits
    up-sampled bilinearly). Returns ``None`` without matplotlib.
    """
    plt = pyplot()
    if plt is None:
        return None
    titles = list(dict.fromkeys(t for row in rows for t in row.predictions))
    panels: list[list[tuple[np.ndarray | None, str]]] = []
    for row in rows:
        size = tuple(row.mask.shape)
        r = row.input_size
        x = downsample(row.image[None], r, row.downsample_mode)  # (1, C, r, r)
        low_mask = upsample_labels(torch.from_numpy(row.mask[None].astype(np.int64)), (r, r))[0].numpy()
        line: list[tuple[np.ndarray | None, str]] = [
            (row.image[0], "image"), (x[0, 0].numpy(), "image"), (row.mask, "labels"), (low_mask, "labels"),
        ]  # fmt: skip
        for title in titles:
            checkpoint = row.predictions.get(title)
            if checkpoint is None or not Path(checkpoint).is_file():
                line.append((None, "labels"))
                continue
            model, _ = load_checkpoint(checkpoint)
            with torch.no_grad():  # x, or the full-resolution image for a model that takes it
                y = model(downsample(row.image[None], model.image_size[0], row.downsample_mode))  # (1, K, *, *)
            if tuple(y.shape[-2:]) != size:
                y = upsample_logits(y, size)
            line.append((logits_to_labels(y)[0].numpy(), "labels"))
        panels.append(line)
    top = max([1] + [int(p.max()) for line in panels for p, kind in line if p is not None and kind == "labels"])
    full = rows[0].mask.shape[-1] if rows else 0
    columns = [f"image {full}", "image (input)", f"truth {full}", "truth (input)", *titles]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(2.1 * len(columns), 2.1 * len(rows)), squeeze=False)
    for i, (row, line) in enumerate(zip(rows, panels, strict=True)):
        for j, (ax, (img, kind)) in enumerate(zip(axes[i], line, strict=True)):
            ax.set_xticks([])
            ax.set_yticks([])
            if img is not None:
                style = {"cmap": "gray"} if kind == "image" else {"cmap": "magma", "vmin": 0, "vmax": top}
                ax.imshow(img, interpolation="nearest", **style)
            if j in (1, 3):
                ax.text(0.03, 0.97, f"{row.input_size}x{row.input_size}", transform=ax.transAxes, va="top",
                        fontsize=8, color="yellow")  # fmt: skip
            if i == 0:
                ax.set_title(columns[j], fontsize=8)
        axes[i][0].set_ylabel(f"input {row.input_size}x{row.input_size}", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, Path(path))


def plot_quality(summary: Sequence[Mapping[str, Any]], path: str | Path) -> Path | None:
    """Mean Jaccard at full resolution (± std over seeds) against input size, one line per method.

    Returns ``None`` without matplotlib.
    """
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(8.4, 4.6))
    sizes = sorted({row["input_size"] for row in summary})
    methods = list(dict.fromkeys(row["method"] for row in summary))
    for method, (color, linestyle, marker) in zip(methods, line_styles(len(methods)), strict=True):
        points = sorted((row["input_size"], row["stats"]["mean_jaccard"]) for row in summary if row["method"] == method)
        xs = [p[0] for p in points]
        ys = [100 * p[1][0] for p in points]
        err = [100 * (p[1][1] or 0.0) for p in points]
        ax.errorbar(xs, ys, yerr=err, color=color, linestyle=linestyle, marker=marker, capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{s}x{s}" for s in sizes])
    ax.set_xlabel("input size")
    ax.set_ylabel("mean Jaccard at full resolution (%)")
    ax.set_title("quality against input size (mean ± std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside the lines
    fig.tight_layout()
    return save_figure(fig, Path(path))


def plot_latency_by_size(results: Sequence[Mapping[str, Any]], path: str | Path, threads: int = 1) -> Path | None:
    """Median latency against input size, one line per backbone, head and head form (benchmark results
    at ``threads`` threads, as ``jnet benchmark --config`` writes them). ``None`` without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    rows = [r for r in results if r.get("threads") == threads]
    if not rows:
        raise ValueError(f"no benchmark results at {threads} thread(s) to plot")

    def label(r: Mapping[str, Any]) -> str:
        return f"{r['model']} + {r['head']}{head_form_label(r)}"

    fig, ax = plt.subplots(figsize=(8.4, 4.6))
    lines = list(dict.fromkeys(label(r) for r in rows))
    for name, (color, linestyle, marker) in zip(lines, line_styles(len(lines)), strict=True):
        points = sorted((int(r["input_size"]), float(r["latency_ms_median"])) for r in rows if label(r) == name)
        ax.plot(*zip(*points, strict=True), color=color, linestyle=linestyle, marker=marker, label=name)
    sizes = sorted({int(r["input_size"]) for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{s}x{s}" for s in sizes])
    ax.set_xlabel("network input size (the image in is full resolution)")
    ax.set_ylabel("median latency, batch 1 (ms)")
    first = rows[0]
    ax.set_title(f"{first.get('runtime')}, {threads} thread(s), output {first.get('output_size')}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return save_figure(fig, Path(path))


def plot_plan(plan: Plan, path: str | Path) -> Path | None:
    """Quality (mean +- std over seeds) against latency, one point per configuration, the front joined.

    The front's configurations are named first, the others where their names fit.

    Returns ``None`` without matplotlib (``pip install 'jnet[plot]'``).
    """
    plt = pyplot()
    if plt is None:
        return None
    from matplotlib.transforms import Bbox

    metric = plan.metric
    timed = [c for c in plan.candidates if c.latency_ms is not None]
    fig, ax = plt.subplots(figsize=(9.0, 5.6))
    labels = []  # (on the front, name at its point, error bar half-height)
    for c in timed:
        on_front = any(c is f for f in plan.front)
        spread = c.spread(metric)
        err = 0.0 if spread is None else 100 * spread
        # a network that reads the full-resolution image (no up-scaling) is a square, orange on the front
        marker = ("s" if c.full_resolution else "o") if on_front else ("s" if c.full_resolution else "x")
        colour = ("C1" if c.full_resolution else "C0") if on_front else "C7"
        ax.errorbar(
            c.latency_ms, 100 * c.quality(metric), yerr=None if spread is None else err,
            marker=marker, color=colour, capsize=3, markersize=5, fillstyle="full" if on_front else "none",
        )  # fmt: skip
        text = ax.annotate(c.name, (c.latency_ms, 100 * c.quality(metric)), fontsize=6, xytext=(5, 3),
                           textcoords="offset points", color="black" if on_front else "dimgray")  # fmt: skip
        labels.append((on_front, text, err))
    front = sorted((c for c in plan.front if c.latency_ms is not None), key=lambda c: c.latency_ms)
    ax.plot([c.latency_ms for c in front], [100 * c.quality(metric) for c in front], color="C0", alpha=0.5,
            label="Pareto front")  # fmt: skip
    if any(c.full_resolution for c in timed):
        ax.plot([], [], "s", color="C7", fillstyle="none", label="full-resolution input, no head")
    if plan.budget_ms is not None:
        ax.axvline(plan.budget_ms, color="C3", linestyle="--", label=f"budget {plan.budget_ms:g} ms")
    ax.set_xlabel("latency (ms, median)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} at full resolution (%)")
    ax.set_title("quality against latency (mean ± std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    # every name on the front, then the others where they fit (`jnet plan` prints them all)
    avoid = []
    for _, text, err in labels:  # each marker and its error bar, in pixels
        (x, y) = text.xy
        (x0, y0), (x1, y1) = ax.transData.transform([(x, y - err), (x, y + err)])
        avoid.append(Bbox.from_extents(x0 - 5, y0 - 4, x1 + 5, y1 + 4))
    ordered = [t for on_front, t, _ in labels if on_front] + [t for on_front, t, _ in labels if not on_front]
    place_labels(fig, ordered, avoid=avoid, keep=sum(on_front for on_front, _, _ in labels))
    return save_figure(fig, Path(path))
