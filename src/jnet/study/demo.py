"""``jnet demo``: the paper's comparison on the built-in synthetic phantoms, end to end.

Trains ELU-Net at 16x16 input three ways (the paper's baseline ``none`` trained on
down-sampled masks, the parameter-free ``interp`` head, and the J-Net head with the
multi-scale loss), scores all three on the same held-out patients at 256x256, and writes
a table, ``results.json`` and a qualitative figure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jnet._options import check_option
from jnet.data.prepare import SliceData, normalize_slices
from jnet.data.synthetic import make_synthetic
from jnet.heads import list_heads
from jnet.io import write_text
from jnet.study.figures import ExampleRow, example_figure
from jnet.training.config import TrainConfig
from jnet.training.trainer import fit

HEADS = ("none", "interp", "jnet")
log = logging.getLogger(__name__)


def demo_settings(quick: bool) -> dict[str, Any]:
    """Data and training sizes of the demo (``quick``: under 2 minutes on 2 CPU cores)."""
    if quick:
        return {"num_patients": 10, "slices_per_patient": 8, "epochs": 20, "width": 8}
    return {"num_patients": 24, "slices_per_patient": 12, "epochs": 30, "width": 16}


def run_demo(
    quick: bool = False,
    out_dir: str | Path | None = None,
    seed: int = 0,
    heads: Sequence[str] = HEADS,
    head_init: str = "nearest",
) -> dict[str, Any]:
    """Run the demo; returns ``{head: fit() result}`` and writes into ``out_dir`` if given.

    Args:
        quick: the small setting of :func:`demo_settings`.
        out_dir: folder for one run directory per head, ``results.json`` and ``figure.png``.
        seed: data, split and training seed.
        heads: the heads to train (default: ``none``, ``interp``, ``jnet``).
        head_init: ``init`` of the transposed-conv heads (``"nearest"`` or ``"default"``).
    """
    for head in heads:
        check_option("head", head, list_heads())
    s = demo_settings(quick)
    raw = make_synthetic(s["num_patients"], s["slices_per_patient"], size=256, num_lesion_classes=1, seed=seed)
    data = SliceData(normalize_slices(raw["images"]), raw["masks"], raw["patient_id"])
    out = Path(out_dir) if out_dir is not None else None
    results: dict[str, Any] = {}
    for head in heads:
        config = TrainConfig(
            model="elunet", head=head, width=s["width"], input_size=16, output_size=256,
            epochs=s["epochs"], batch_size=16, seed=seed,
            head_options={"init": head_init} if head.startswith("jnet") else {},
        )  # fmt: skip
        run_dir = None if out is None else out / f"elunet_{head}_16"
        results[head] = fit(config, data, run_dir)
    if out is not None:
        write_text(out / "results.json", json.dumps(results, indent=1))
        figure = _figure(data, results, out, list(heads))
        if figure is None:
            log.warning("no figure: matplotlib is not installed (pip install 'jnet[plot]')")
    return results


def format_table(results: dict[str, Any]) -> str:
    """The comparison as a text table (validation patients, best epoch)."""
    lines = [
        "ELU-Net, 16x16 input, validation patients; Dice/Jaccard at 256x256 (mean over images, global)",
        f"{'head':<8} {'params':>10} {'head':>5} {'Dice':>6} {'Jacc.':>6} {'Dice(g)':>8} {'Jacc.(g)':>8} "
        f"{'Jacc.@16':>8} {'train s':>8}",
    ]
    for head, r in results.items():
        b = r["best"]
        lines.append(
            f"{head:<8} {r['params']:>10,} {r['head_params']:>5} {b['mean_dice']:>6.3f} {b['mean_jaccard']:>6.3f} "
            f"{b['mean_dice_global']:>8.3f} {b['mean_jaccard_global']:>8.3f} "
            f"{b['input_resolution']['mean_jaccard']:>8.3f} {r['train_seconds']:>8.1f}"
        )
    lines.append("Jacc.@16: base prediction against 16x16 nearest-down-sampled masks (paper-style, not comparable)")
    return "\n".join(lines)


def _figure(data: SliceData, results: dict[str, Any], out: Path, heads: list[str]) -> Path | None:
    """Image and truth at 256 and 16, and each head's prediction, for three validation slices."""
    split = json.loads((out / f"elunet_{heads[0]}_16" / "split.json").read_text())
    val = data.subset(np.isin(data.patient_id, split["val"]))
    lesion = np.flatnonzero(val.masks.reshape(len(val), -1).sum(1) > 0)
    pick = lesion[np.linspace(0, len(lesion) - 1, 3).astype(int)] if len(lesion) else np.arange(min(3, len(val)))
    checkpoints = {f"{h} head": out / f"elunet_{h}_16" / "checkpoint_best.pt" for h in heads}
    rows = [ExampleRow(val.images[i], val.masks[i], 16, checkpoints) for i in pick]
    return example_figure(rows, out / "figure.png")
