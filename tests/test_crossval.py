"""jnet crossval: a cross-validation sweep's folds pooled into per-patient 3D Dice, by hand and end to end."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from jnet.cli import main
from jnet.study.crossval import bootstrap_mean, bootstrap_ratio, compare_pooled, configurations, pool_folds
from jnet.study.sweep import run_sweep
from jnet.training.scores import ImageScores, read_scores, write_scores

# Two folds: fold 0 validates patients a (two slices) and b, fold 1 patient c. Per slice (tp, fp, fn).
COUNTS = {
    "A": {0: [("a", 2, 0, 1), ("a", 2, 1, 0), ("b", 1, 0, 1)], 1: [("c", 3, 0, 0)]},
    "B": {0: [("a", 1, 0, 2), ("a", 1, 0, 1), ("b", 0, 0, 2)], 1: [("c", 3, 3, 0)]},
}
METHODS = {"A": "unet+jnet", "B": "unet+none"}


def write_run(run_dir: Path, rows: list[tuple[str, int, int, int]], fold: int, folds: int = 2) -> None:
    """A finished run folder as jnet train leaves it, as far as pooling reads it."""
    run_dir.mkdir(parents=True)
    tp, fp, fn = (np.array([[r[i]] for r in rows], dtype=np.int64) for i in (1, 2, 3))
    dice = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 1.0)[:, 0]  # empty: 1
    jaccard = np.where(tp + fp + fn > 0, tp / np.maximum(tp + fp + fn, 1), 1.0)[:, 0]
    pid = np.array([r[0] for r in rows])
    write_scores(ImageScores(pid, (tp + fn)[:, 0], dice, jaccard, tp, fp, fn, ["tumour"]), run_dir / "val_scores.csv")
    best = {"mean_dice": float(dice.mean()), "mean_jaccard": float(jaccard.mean()), "n_images": len(rows)}
    (run_dir / "metrics.json").write_text(json.dumps({"best": best}))
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"folds": folds, "fold": fold, "seed": 0}))


def write_sweep(root: Path, counts: dict = COUNTS, folds: int = 2) -> Path:
    """A cross-validation sweep folder: results.csv and one run folder per configuration and fold."""
    rows = []
    for key, by_fold in counts.items():
        model, head = METHODS[key].split("+")
        for fold, slices in by_fold.items():
            name = f"{model}_{head}_r16_s0_fold-{fold}"
            write_run(root / name, slices, fold, folds)
            rows.append({"run": name, "method": f"{METHODS[key]}+fold={fold}", "input_size": 16, "seed": 0})
    with open(root / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


# ------------------------------------------------------------------------------------------
# by hand
# ------------------------------------------------------------------------------------------


def test_pooled_scores_hand_computed(tmp_path) -> None:
    sweep = write_sweep(tmp_path)
    assert configurations(sweep) == ["unet+jnet@16", "unet+none@16"]
    a = pool_folds(sweep, "unet+jnet@16", n_boot=200)
    # a: tp 4, fp 1, fn 1 -> 8 / 10; b: 2 / 3; c: 6 / 6
    assert a.patient_id.tolist() == ["a", "b", "c"]
    assert a.volume_dice == pytest.approx([0.8, 2 / 3, 1.0])
    assert a.mean_volume_dice.mean == pytest.approx((0.8 + 2 / 3 + 1) / 3)
    # slice Dice: 0.8, 0.8, 2/3, 1 over four slices
    assert a.mean_dice.mean == pytest.approx((0.8 + 0.8 + 2 / 3 + 1) / 4)
    assert (a.n_patients, a.n_images, a.folds, a.n_folds, a.complete) == (3, 4, [0, 1], 2, True)
    assert a.fold_volume_dice == pytest.approx({0: (0.8 + 2 / 3) / 2, 1: 1.0})
    # every resample's mean lies between the smallest and the largest patient
    assert 2 / 3 - 1e-12 <= a.mean_volume_dice.ci_low <= a.mean_volume_dice.mean <= a.mean_volume_dice.ci_high <= 1
    b = pool_folds(sweep, "unet+none@16", n_boot=200)
    assert b.volume_dice == pytest.approx([4 / 7, 0.0, 2 / 3])
    c = compare_pooled(a, b, n_boot=200)
    assert c.result.difference == pytest.approx((0.8 - 4 / 7 + 2 / 3 + 1 / 3) / 3)
    assert (c.result.n_patients, c.result.patients_better, c.result.patients_worse) == (3, 3, 0)
    assert c.result.sign_test_p == pytest.approx(2 / 8)


def test_tumour_slices_only_and_the_false_positives_on_empty_slices(tmp_path, capsys) -> None:
    # patient a: a tumour slice and an empty one with 2 false-positive pixels; b: one empty slice, nothing drawn
    counts = {"A": {0: [("a", 2, 0, 1), ("a", 0, 2, 0), ("b", 0, 0, 0)], 1: [("c", 3, 1, 0)]}}
    sweep = write_sweep(tmp_path, counts)
    every = pool_folds(sweep, "unet+jnet@16", n_boot=50)
    # a: tp 2, fp 2, fn 1 -> 4 / 7; b: empty in truth and prediction -> 1; c: 6 / 7
    assert every.volume_dice == pytest.approx([4 / 7, 1.0, 6 / 7])
    assert every.empty_fp_share == pytest.approx(2 / 3)  # 2 of the 3 false-positive pixels lie on empty slices
    tumour = pool_folds(sweep, "unet+jnet@16", n_boot=50, slices="tumour")
    # b has no tumour slice and drops out; a keeps its first slice: 4 / 5
    assert tumour.patient_id.tolist() == ["a", "c"] and (tumour.n_patients, tumour.n_images) == (2, 2)
    assert tumour.volume_dice == pytest.approx([0.8, 6 / 7])
    assert tumour.mean_dice.mean == pytest.approx((0.8 + 6 / 7) / 2)
    assert tumour.fold_volume_dice == pytest.approx({0: 0.8, 1: 6 / 7})
    assert tumour.empty_fp_share == pytest.approx(2 / 3)  # counted over every slice, whatever is pooled
    with pytest.raises(ValueError, match=r"unet\+jnet@16 pooled tumour slices and unet\+jnet@16 all"):
        compare_pooled(tumour, every)
    scores = read_scores(sweep / "unet_jnet_r16_s0_fold-0" / "val_scores.csv")
    assert scores.subset(scores.truth_pixels > 0).tp.tolist() == [[2]]
    with pytest.raises(ValueError, match=r"keep must be a \(3,\) bool array, got int64"):
        scores.subset(np.array([1, 0, 1]))
    with pytest.raises(ValueError, match="unknown slices 'empty'"):
        pool_folds(sweep, "unet+jnet@16", slices="empty")
    assert main(["crossval", "--results", str(sweep), "--slices", "tumour", "--boot", "50", "--markdown"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Tumour slices only")
    assert "| `unet+jnet@16` | 2 | 2 | 2 | 82.9 |" in text and text.rstrip().endswith("| 66.7 % |")


def test_bootstrap_intervals_by_hand() -> None:
    # two patients, 0 and 1: a resample's mean is 0, 0.5 or 1 with chances 1/4, 1/2, 1/4
    i = bootstrap_mean(np.array([0.0, 1.0]), n_boot=4000, seed=3)
    assert (i.mean, i.ci_low, i.ci_high) == (0.5, 0.0, 1.0)
    assert math.isnan(bootstrap_mean(np.array([0.7])).ci_low)
    # a ratio: patient sums 3 over 4 slices and 1 over 1 -> 4 / 5; a resample of patient 1 twice -> 6 / 8
    r = bootstrap_ratio(np.array([3.0, 1.0]), np.array([4.0, 1.0]), n_boot=4000, seed=3)
    assert r.mean == pytest.approx(0.8) and (r.ci_low, r.ci_high) == pytest.approx((0.75, 1.0))
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ratio(np.array([1.0]), np.array([1.0, 2.0]))


def test_a_missing_fold_is_refused_or_marked(tmp_path) -> None:
    sweep = write_sweep(tmp_path, {"A": {0: COUNTS["A"][0]}, "B": COUNTS["B"]})
    with pytest.raises(ValueError, match=r"unet\+jnet@16: fold\(s\) 1 of 2 have no finished run"):
        pool_folds(sweep, "unet+jnet@16")
    part = pool_folds(sweep, "unet+jnet@16", n_boot=50, allow_incomplete=True)
    assert (part.complete, part.n_patients, part.folds) == (False, 2, [0])
    every = pool_folds(sweep, "unet+none@16", n_boot=50)
    with pytest.raises(ValueError, match="scored different patients"):
        compare_pooled(part, every)


def test_an_incomplete_pair_is_compared_on_the_patients_both_scored(tmp_path, capsys) -> None:
    sweep = write_sweep(tmp_path, {"A": {0: COUNTS["A"][0]}, "B": COUNTS["B"]})
    part = pool_folds(sweep, "unet+jnet@16", n_boot=50, allow_incomplete=True)
    every = pool_folds(sweep, "unet+none@16", n_boot=50)
    # patients a and b (fold 0): A 0.8 and 2/3, B 4/7 and 0; c (fold 1) has no A score and drops out
    c = compare_pooled(part, every, n_boot=50, shared_only=True)
    assert c.complete is False and c.to_dict()["complete"] is False
    assert (c.result.n_patients, c.result.patients_better, c.result.patients_worse) == (2, 2, 0)
    assert (c.result.mean_a, c.result.mean_b) == pytest.approx(((0.8 + 2 / 3) / 2, (4 / 7 + 0) / 2))
    assert c.result.difference == pytest.approx((0.8 - 4 / 7 + 2 / 3) / 2)
    assert compare_pooled(every, every, n_boot=50, shared_only=True).complete is True
    args = ["crossval", "--results", str(sweep), "--pair", "unet+jnet@16", "unet+none@16", "--boot", "50"]
    assert main([*args, "--incomplete", "--markdown"]) == 0
    text = capsys.readouterr().out
    assert "| `unet+jnet@16` | `unet+none@16` | 73.3 | 28.6 | +44.8 |" in text
    assert text.rstrip().endswith("INCOMPLETE: `unet+jnet@16` against `unet+none@16` on the 2 patients both scored.")
    assert main([*args, "--incomplete"]) == 0
    assert "unet+jnet@16 vs unet+none@16 (INCOMPLETE), 2 patients: 3D Dice 73.3 vs 28.6" in capsys.readouterr().out
    # folds that share no patient: nothing to compare
    sweep = write_sweep(tmp_path / "apart", {"A": {0: COUNTS["A"][0]}, "B": {1: COUNTS["B"][1]}})
    a, b = (pool_folds(sweep, s, n_boot=50, allow_incomplete=True) for s in ("unet+jnet@16", "unet+none@16"))
    with pytest.raises(ValueError, match=r"unet\+jnet@16 and unet\+none@16 share no scored patient"):
        compare_pooled(a, b, shared_only=True)


def test_a_patient_in_two_folds_is_refused(tmp_path) -> None:
    counts = {"A": {0: COUNTS["A"][0], 1: [("b", 1, 0, 0)]}}
    sweep = write_sweep(tmp_path, counts)
    with pytest.raises(ValueError, match="patient b is validated by fold 0 and fold 1"):
        pool_folds(sweep, "unet+jnet@16")


def test_unknown_configurations_and_plain_sweeps_are_named(tmp_path) -> None:
    sweep = write_sweep(tmp_path)
    with pytest.raises(ValueError, match=r"no fold runs of unet\+jnet@32; .* unet\+jnet@16, unet\+none@16"):
        pool_folds(sweep, "unet+jnet@32")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "results.csv").write_text("run,method,input_size,seed\nx,unet+jnet,16,0\n")
    with pytest.raises(ValueError, match="no runs with a fold"):
        configurations(plain)
    with pytest.raises(FileNotFoundError, match=r"results\.csv: no such file"):
        configurations(tmp_path / "nowhere")


def test_old_scores_without_counts_are_refused(tmp_path) -> None:
    sweep = write_sweep(tmp_path)
    path = sweep / "unet_jnet_r16_s0_fold-1" / "val_scores.csv"
    path.write_text("image,patient_id,truth_pixels,dice,jaccard\n0,c,3,1.0,1.0\n")
    with pytest.raises(ValueError, match="no per-slice tp/fp/fn counts"):
        pool_folds(sweep, "unet+jnet@16")


def test_another_scores_file_is_pooled_as_it_is(tmp_path) -> None:
    sweep = write_sweep(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"val_scores_lcc\.csv: no such file \(write it with jnet evaluate"):
        pool_folds(sweep, "unet+jnet@16", scores_file="val_scores_lcc.csv")
    # post-processing removed fold 1's false positives nowhere and fold 0's patient b's prediction entirely
    for fold, rows in {0: [("a", 2, 0, 1), ("a", 2, 1, 0), ("b", 0, 0, 2)], 1: [("c", 3, 0, 0)]}.items():
        other = tmp_path / "other" / str(fold)
        write_run(other, rows, fold)
        (other / "val_scores.csv").rename(sweep / f"unet_jnet_r16_s0_fold-{fold}" / "val_scores_lcc.csv")
    pooled = pool_folds(sweep, "unet+jnet@16", n_boot=50, scores_file="val_scores_lcc.csv")
    assert pooled.volume_dice == pytest.approx([0.8, 0.0, 1.0])


def test_cli_prints_tables_and_writes_json(tmp_path, capsys) -> None:
    sweep = write_sweep(tmp_path / "cv")
    out = tmp_path / "cv.json"
    args = ["crossval", "--results", str(sweep), "--pair", "unet+jnet@16", "unet+none@16", "--boot", "100"]
    assert main([*args, "--markdown", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| `unet+jnet@16` | 2 | 3 | 4 | 82.2 |" in text
    assert "| `unet+jnet@16` | `unet+none@16` | 82.2 | 41.3 | +41.0 |" in text
    document = json.loads(out.read_text())
    assert [c["config"] for c in document["configurations"]] == ["unet+jnet@16", "unet+none@16"]
    assert document["configurations"][0]["patients"] == pytest.approx({"a": 0.8, "b": 2 / 3, "c": 1.0})
    assert document["comparisons"][0]["patients_better"] == 3
    assert main([*args, "--out", str(out)]) == 2  # not replaced without --overwrite
    assert "exists" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# end to end: a two-fold sweep trained, then pooled
# ------------------------------------------------------------------------------------------


def test_two_fold_sweep_pools_every_patient_once(tmp_path) -> None:
    threads = torch.get_num_threads()
    spec = {
        "base": {
            "data": "synthetic",
            "data_options": {"num_patients": 4, "slices_per_patient": 3},
            "output_size": 32,
            "model": "unet",
            "width": 2,
            "epochs": 1,
            "batch_size": 4,
            "threads": 1,
            "folds": 2,
        },
        "grid": {"head": ["jnet"], "input_size": [16], "fold": [0, 1], "seed": [0]},
    }
    config = tmp_path / "cv.yaml"
    config.write_text(yaml.safe_dump(spec))
    run_sweep(config, tmp_path / "out")
    torch.set_num_threads(threads)
    pooled = pool_folds(tmp_path / "out", "unet+jnet@16", n_boot=100)
    assert (pooled.n_patients, pooled.n_images, pooled.complete) == (4, 12, True)
    runs = [tmp_path / "out" / f"unet_jnet_r16_s0_fold-{f}" for f in (0, 1)]
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    # each fold's own per-volume score is the mean of its patients' 3D Dice
    assert pooled.fold_volume_dice[0] == pytest.approx(metrics[0]["best"]["mean_volume_dice"])
    assert pooled.fold_volume_dice[1] == pytest.approx(metrics[1]["best"]["mean_volume_dice"])
    # the same after jnet evaluate --largest-component, pooled from the files it writes
    for run in runs:
        argv = ["evaluate", "--checkpoint", str(run / "checkpoint_best.pt"), "--largest-component"]
        assert main([*argv, "--out", str(run / "lcc.json"), "--scores", str(run / "val_scores_lcc.csv")]) == 0
    torch.set_num_threads(threads)
    lcc = pool_folds(tmp_path / "out", "unet+jnet@16", n_boot=100, scores_file="val_scores_lcc.csv")
    for fold, run in enumerate(runs):
        evaluated = json.loads((run / "lcc.json").read_text())
        assert evaluated["postprocessing"] == "largest_component_3d"
        assert lcc.fold_volume_dice[fold] == pytest.approx(evaluated["mean_volume_dice"])
    n = [m["best"]["n_volumes"] for m in metrics]
    assert sum(n) == 4
    assert pooled.mean_volume_dice.mean == pytest.approx(
        (n[0] * pooled.fold_volume_dice[0] + n[1] * pooled.fold_volume_dice[1]) / 4
    )
