"""jnet compare: per-image scores of sweep runs, paired differences, bootstrap over patients."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from jnet.cli import main
from jnet.data.sources import load_data
from jnet.study.compare import (
    compare,
    format_markdown,
    load_pairs,
    paired_difference,
    parse_spec,
    run_scores,
    sign_test,
    size_strata,
)
from jnet.study.sweep import run_sweep
from jnet.training import evaluate_checkpoint
from jnet.training.scores import SCORES_FILE, ImageScores, checkpoint_scores, read_scores, write_scores

# ------------------------------------------------------------------------------------------
# the statistics, by hand
# ------------------------------------------------------------------------------------------


def test_paired_difference_hand_computed() -> None:
    # patient p1: d = 0.5, 0 -> +0.25 (better); p2: d = 0 (tie); p3: d = -0.2 (worse)
    a = np.array([1.0, 1.0, 0.5, 0.2])
    b = np.array([0.5, 1.0, 0.5, 0.4])
    r = paired_difference(a, b, np.array(["p1", "p1", "p2", "p3"]), n_boot=200)
    assert r.mean_a == pytest.approx(0.675) and r.mean_b == pytest.approx(0.6)
    assert r.difference == pytest.approx(0.075)
    assert (r.n_images, r.n_patients) == (4, 3)
    assert (r.patients_better, r.patients_worse, r.sign_test_p) == (1, 1, 1.0)
    assert (r.images_better, r.images_worse) == (1, 1)
    # every resample's statistic is (sum of its patients' d) / (its images): between -0.2 and +0.25
    assert -0.2 - 1e-12 <= r.ci_low <= r.difference <= r.ci_high <= 0.25 + 1e-12


def test_sign_test_exact_values() -> None:
    assert sign_test(5, 0) == pytest.approx(2 / 32)
    assert sign_test(0, 5) == pytest.approx(2 / 32)
    assert sign_test(3, 1) == pytest.approx(2 * 5 / 16)  # P(X <= 1) = (1 + 4) / 16
    assert sign_test(16, 0) == pytest.approx(2 / 2**16)
    assert sign_test(2, 2) == 1.0 and sign_test(0, 0) == 1.0


def test_bootstrap_of_a_constant_difference_has_no_width() -> None:
    a = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    r = paired_difference(a, a - 0.1, np.array(["a", "a", "b", "c", "c"]), n_boot=500)
    assert r.difference == pytest.approx(0.1)
    assert r.ci_low == pytest.approx(0.1) and r.ci_high == pytest.approx(0.1)
    assert (r.patients_better, r.patients_worse, r.images_better) == (3, 0, 5)


def test_bootstrap_interval_of_two_patients() -> None:
    # one image each, d = 0 and 1: a resample's statistic is 0, 0.5 or 1 with chances 1/4, 1/2, 1/4
    r = paired_difference(np.array([0.5, 1.0]), np.array([0.5, 0.0]), np.array(["x", "y"]), n_boot=4000, seed=3)
    assert r.difference == 0.5
    assert (r.ci_low, r.ci_high) == (0.0, 1.0)
    narrow = paired_difference(
        np.array([0.5, 1.0]), np.array([0.5, 0.0]), np.array(["x", "y"]), n_boot=4000, seed=3, confidence=0.4
    )
    assert (narrow.ci_low, narrow.ci_high) == (0.5, 0.5)


def test_differences_of_an_ulp_are_ties() -> None:
    a = np.array([0.1 + 0.2, 0.5, 0.9])  # 0.30000000000000004
    r = paired_difference(a, np.array([0.3, 0.5, 0.8]), np.array(["x", "y", "z"]), n_boot=100)
    assert (r.patients_better, r.patients_worse, r.images_better, r.images_worse) == (1, 0, 1, 0)
    assert r.sign_test_p == 1.0


def test_one_patient_has_no_interval() -> None:
    r = paired_difference(np.array([0.5, 0.7]), np.array([0.4, 0.4]), np.array(["x", "x"]))
    assert r.difference == pytest.approx(0.2) and np.isnan(r.ci_low) and np.isnan(r.ci_high)
    assert (r.patients_better, r.sign_test_p) == (1, 1.0)


def test_size_strata() -> None:
    bands = size_strata(np.array([0, 1, 999, 1000, 2499, 2500, 9000]), [1000, 2500])
    assert list(bands) == ["empty", "1-999 px", "1000-2499 px", ">=2500 px"]
    assert [np.flatnonzero(m).tolist() for m in bands.values()] == [[0], [1, 2], [3, 4], [5, 6]]
    for bad in ([], [0, 10], [1, 10], [10, 10], [20, 10]):  # [1, ...] would make an empty "1-0 px" band
        with pytest.raises(ValueError, match="increasing pixel counts above 1"):
            size_strata(np.array([1]), bad)


def test_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(40), rng.random(40)
    pid = np.repeat(np.arange(8), 5).astype(str)
    r1, r2 = paired_difference(a, b, pid, seed=1), paired_difference(a, b, pid, seed=1)
    r3 = paired_difference(a, b, pid, seed=2)
    assert (r1.ci_low, r1.ci_high) == (r2.ci_low, r2.ci_high)
    assert (r1.ci_low, r1.ci_high) != (r3.ci_low, r3.ci_high)
    assert r1.ci_low < r1.difference < r1.ci_high


@pytest.mark.parametrize(
    ("a", "b", "pid", "kwargs", "message"),
    [
        ([0.1, 0.2], [0.1], ["x", "y"], {}, "one length"),
        ([], [], [], {}, "no images"),
        ([0.1, 0.2], [0.1, 0.3], ["x", "y"], {"confidence": 1.0}, "confidence"),
        ([0.1, 0.2], [0.1, 0.3], ["x", "y"], {"n_boot": 0}, "n_boot"),
    ],
)
def test_paired_difference_rejects_bad_input(a, b, pid, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        paired_difference(np.array(a), np.array(b), np.array(pid), **kwargs)


def test_parse_spec() -> None:
    assert parse_spec("elunet+jnet@16") == ("elunet+jnet", 16, None)
    assert parse_spec("elunet+jnet+final-loss@32") == ("elunet+jnet+final-loss", 32, None)
    assert parse_spec("elunet+jnet@32/s2") == ("elunet+jnet", 32, (2,))
    assert parse_spec("unet+jnet@16/s1+s2") == ("unet+jnet", 16, (1, 2))
    for bad in ("elunet+jnet", "elunet+jnet@32/2", "elunet+jnet@32/s", "elunet+jnet@32/s1+2", "elunet+jnet@32/s1+"):
        with pytest.raises(ValueError, match="METHOD@INPUT_SIZE"):
            parse_spec(bad)
    with pytest.raises(ValueError, match="a seed is named twice"):
        parse_spec("elunet+jnet@32/s1+s1")


# ------------------------------------------------------------------------------------------
# a hand-made sweep folder: per-image scores without checkpoints
# ------------------------------------------------------------------------------------------


def _fake_run(root: Path, name: str, pids: list[str], jaccard: list[float], truth: list[int] | None = None) -> None:
    run = root / name
    run.mkdir(parents=True)
    truth = TRUTH[: len(pids)] if truth is None else truth
    scores = ImageScores(np.array(pids), np.array(truth), np.array(jaccard), np.array(jaccard))
    write_scores(scores, run / SCORES_FILE)
    mean = float(np.mean(jaccard))
    (run / "metrics.json").write_text(json.dumps({"best": {"mean_dice": mean, "mean_jaccard": mean}}))


def _fake_sweep(root: Path, runs: dict[str, tuple[str, int, int, list[float]]], pids: list[str]) -> Path:
    with open(root / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "method", "input_size", "seed"])
        for name, (method, size, seed, jaccard) in runs.items():
            writer.writerow([name, method, size, seed])
            _fake_run(root, name, pids, jaccard)
    return root


PIDS = ["p1", "p1", "p2", "p3"]
TRUTH = [0, 900, 3000, 1200]


def test_compare_averages_seeds_then_pairs_images(tmp_path) -> None:
    sweep = _fake_sweep(
        tmp_path,
        {
            "a_s0": ("m+a", 16, 0, [1.0, 0.8, 0.5, 0.2]),
            "a_s1": ("m+a", 16, 1, [1.0, 0.6, 0.7, 0.2]),  # seed mean: 1.0, 0.7, 0.6, 0.2
            "b_s0": ("m+b", 32, 0, [0.5, 0.7, 0.6, 0.4]),
        },
        PIDS,
    )
    c = compare(sweep, "m+a@16", "m+b@32", n_boot=100)
    assert (c.seeds_a, c.seeds_b) == ([0, 1], [0])
    r = c.result
    assert r.mean_a == pytest.approx(0.625) and r.mean_b == pytest.approx(0.55)
    assert r.difference == pytest.approx(0.075)  # d = 0.5, 0, 0, -0.2
    assert (r.patients_better, r.patients_worse, r.images_better, r.images_worse) == (1, 1, 1, 1)
    same = compare(sweep, "m+a@16", "m+a@16", n_boot=100).result
    assert (same.difference, same.ci_low, same.ci_high, same.sign_test_p) == (0.0, 0.0, 0.0, 1.0)
    # by truth size (TRUTH = 0, 900, 3000, 1200): d = +0.5 empty, 0 small, 0 large, -0.2 medium
    strata = compare(sweep, "m+a@16", "m+b@32", n_boot=100, size_bins=[1000, 2500]).strata
    assert list(strata) == ["empty", "1-999 px", "1000-2499 px", ">=2500 px"]
    assert [strata[n].n_images for n in strata] == [1, 1, 1, 1]
    assert [round(strata[n].difference, 9) for n in strata] == [0.5, 0.0, -0.2, 0.0]
    assert np.isnan(strata["empty"].ci_low)  # one patient
    table = format_markdown([compare(sweep, "m+a@16", "m+b@32", n_boot=100, size_bins=[1000, 2500])])
    assert "| A | B | empty (n=1) | 1-999 px (n=1) | 1000-2499 px (n=1) | >=2500 px (n=1) |" in table
    assert "| `m+a@16` | `m+b@32` | +50.0 (one patient) | +0.0 (one patient) | -20.0 (one patient) |" in table


def test_compare_one_seed(tmp_path) -> None:
    sweep = _fake_sweep(
        tmp_path,
        {
            "a_s0": ("m+a", 16, 0, [1.0, 0.8, 0.5, 0.2]),
            "a_s1": ("m+a", 16, 1, [1.0, 0.6, 0.7, 0.6]),
            "b_s1": ("m+b", 16, 1, [0.5, 0.7, 0.6, 0.4]),
        },
        PIDS,
    )
    # means: a seed 0 0.625, a seed 1 0.725, a over both seeds 0.675; b 0.55
    c = compare(sweep, "m+a@16/s1", "m+b@16", n_boot=100)
    assert (c.a, c.seeds_a, c.seeds_b) == ("m+a@16/s1", [1], [1])
    assert c.result.mean_a == pytest.approx(0.725) and c.result.difference == pytest.approx(0.175)  # d = .5 -.1 .1 .2
    assert compare(sweep, "m+a@16/s0", "m+b@16", n_boot=100).result.difference == pytest.approx(0.075)
    assert compare(sweep, "m+a@16", "m+b@16", n_boot=100).result.difference == pytest.approx(0.125)
    s0_s1 = compare(sweep, "m+a@16/s0", "m+a@16/s1", n_boot=100).result  # d = 0, .2, -.2, -.4
    assert (s0_s1.images_better, s0_s1.images_worse) == (1, 2)
    with pytest.raises(ValueError, match=r"m\+b@16 has no run with seed 0; its seeds are 1"):
        compare(sweep, "m+a@16", "m+b@16/s0")
    both = compare(sweep, "m+a@16/s0+s1", "m+b@16", n_boot=100)  # the same as every seed of m+a
    assert both.seeds_a == [0, 1] and both.result.difference == pytest.approx(0.125)
    with pytest.raises(ValueError, match=r"m\+b@16 has no run with seed 0, 2; its seeds are 1"):
        compare(sweep, "m+a@16", "m+b@16/s0+s1+s2")


def test_compare_names_what_is_wrong(tmp_path) -> None:
    sweep = _fake_sweep(tmp_path, {"a_s0": ("m+a", 16, 0, [1.0, 0.8, 0.5, 0.2])}, PIDS)
    with pytest.raises(ValueError, match=r"no runs of m\+b@16; it has m\+a@16"):
        compare(sweep, "m+a@16", "m+b@16")
    with pytest.raises(ValueError, match="metric"):
        compare(sweep, "m+a@16", "m+a@16", metric="hausdorff")
    # a run validated on other slices cannot be paired
    with open(sweep / "results.csv", "a", newline="") as f:
        csv.writer(f).writerow(["c_s0", "m+c", 16, 0])
    _fake_run(sweep, "c_s0", ["p1", "p1", "p2", "p4"], [0.5, 0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"different slices.*patients in one only: p3, p4"):
        compare(sweep, "m+a@16", "m+c@16")
    with open(sweep / "results.csv", "a", newline="") as f:
        csv.writer(f).writerow(["d_s0", "m+d", 16, 0])
    _fake_run(sweep, "d_s0", ["p1", "p2", "p3"], [0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="the same patients, other slices"):
        compare(sweep, "m+a@16", "m+d@16")


def test_stale_scores_are_refused(tmp_path) -> None:
    sweep = _fake_sweep(tmp_path, {"a_s0": ("m+a", 16, 0, [1.0, 0.8, 0.5, 0.2])}, PIDS)
    metrics = json.loads((sweep / "a_s0" / "metrics.json").read_text())
    metrics["best"]["mean_jaccard"] += 0.01
    (sweep / "a_s0" / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match="stale"):
        run_scores(sweep / "a_s0")


def test_scores_of_another_image_count_are_refused(tmp_path) -> None:
    sweep = _fake_sweep(tmp_path, {"a_s0": ("m+a", 16, 0, [1.0, 0.8, 0.5, 0.2])}, PIDS)
    path = sweep / "a_s0" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["best"]["n_images"] = 5
    path.write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match=r"val_scores\.csv: 4 images, but metrics\.json's best was scored on 5"):
        run_scores(sweep / "a_s0")
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"metrics\.json: not valid JSON"):
        run_scores(sweep / "a_s0")


def test_bad_results_csv_is_named(tmp_path) -> None:
    sweep = _fake_sweep(tmp_path, {"a_s0": ("m+a", 16, 0, [1.0, 0.8, 0.5, 0.2])}, PIDS)
    (sweep / "results.csv").write_text("run,method,input_size,seed\na_s0,m+a,16,zero\n")
    with pytest.raises(ValueError, match=r"results\.csv: input_size and seed must be integers"):
        compare(sweep, "m+a@16", "m+a@16")


def test_bad_scores_file_names_the_line(tmp_path) -> None:
    path = tmp_path / SCORES_FILE
    header = "image,patient_id,truth_pixels,dice,jaccard\n"
    path.write_text(header + "0,p1,0,0.5,0.5\n1,p1,7,0.5,1.5\n")
    with pytest.raises(ValueError, match=r"val_scores.csv:3: scores must lie in \[0, 1\]"):
        read_scores(path)
    path.write_text(header + "0,p1,-1,0.5,0.5\n")
    with pytest.raises(ValueError, match=r"val_scores\.csv:2: truth_pixels must not be negative"):
        read_scores(path)
    path.write_text(header + "0,p1,x,0.5,0.5\n")
    with pytest.raises(ValueError, match=r"val_scores\.csv:2: truth_pixels must be an integer"):
        read_scores(path)
    path.write_text("image,patient_id,dice,jaccard\n0,p1,0.5,0.5\n")
    with pytest.raises(ValueError, match=r"missing column.*truth_pixels.*rescore"):
        read_scores(path)


def test_a_run_without_scores_or_checkpoint(tmp_path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"best": {"mean_dice": 0.5, "mean_jaccard": 0.5}}))
    with pytest.raises(FileNotFoundError, match=r"neither val_scores\.csv nor checkpoint_best\.pt"):
        run_scores(tmp_path / "run")


# ------------------------------------------------------------------------------------------
# real runs: scores from checkpoints
# ------------------------------------------------------------------------------------------

TINY = {
    "base": {
        "data": "synthetic",
        "data_options": {"num_patients": 5, "slices_per_patient": 4},
        "output_size": 64,
        "model": "unet",
        "width": 2,
        "epochs": 1,
        "batch_size": 4,
        "threads": 1,
    },
    "grid": {"head": ["none", "jnet"], "input_size": [16], "seed": [0, 1]},
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("compare")
    patients = sorted(set(load_data("synthetic", size=64, **TINY["base"]["data_options"]).patient_id.astype(str)))
    (root / "split.json").write_text(json.dumps({"train": patients[:3], "val": patients[3:]}))
    config = {"base": {**TINY["base"], "split_file": str(root / "split.json")}, "grid": TINY["grid"]}
    (root / "sweep.yaml").write_text(yaml.safe_dump(config))
    run_sweep(root / "sweep.yaml", root / "out")
    torch.set_num_threads(threads)
    return root / "out"


def test_checkpoint_scores_reproduce_the_run_metrics(swept) -> None:
    run = swept / "unet_jnet_r16_s0"
    scores = checkpoint_scores(run / "checkpoint_best.pt")
    assert len(scores.jaccard) == 8 and sorted(set(scores.patient_id)) == sorted(
        json.loads((run / "split.json").read_text())["val"]
    )
    evaluated = evaluate_checkpoint(run / "checkpoint_best.pt")
    assert scores.jaccard.mean() == pytest.approx(evaluated["mean_jaccard"], abs=1e-12)
    assert scores.dice.mean() == pytest.approx(evaluated["mean_dice"], abs=1e-12)


def test_run_scores_are_written_once_then_read(swept) -> None:
    run = swept / "unet_none_r16_s1"
    (run / SCORES_FILE).unlink(missing_ok=True)
    first = run_scores(run)
    assert (run / SCORES_FILE).is_file() and not list(run.glob("*.tmp"))
    (run / "checkpoint_best.pt").rename(run / "moved.pt")
    try:
        again = run_scores(run)  # from the file: no checkpoint needed
    finally:
        (run / "moved.pt").rename(run / "checkpoint_best.pt")
    np.testing.assert_array_equal(first.jaccard, again.jaccard)
    np.testing.assert_array_equal(first.patient_id, again.patient_id)


def test_cli_compare_prints_and_writes_json(swept, capsys, tmp_path) -> None:
    out = tmp_path / "cmp.json"
    pair = ["--pair", "unet+jnet@16", "unet+none@16"]
    code = main(["compare", "--results", str(swept), *pair, "--boot", "300", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "unet+jnet@16 (2 seed(s)) vs unet+none@16 (2), 8 images of 2 patients" in text
    saved = json.loads(out.read_text())
    with open(swept / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    mean = {m: np.mean([float(r["mean_jaccard"]) for r in rows if r["head"] == m]) for m in ("jnet", "none")}
    assert saved[0]["mean_a"] == pytest.approx(mean["jnet"]) and saved[0]["mean_b"] == pytest.approx(mean["none"])
    assert saved[0]["n_boot"] == 300 and saved[0]["seeds_a"] == [0, 1]


def test_cli_compare_error_is_one_line(swept, capsys) -> None:
    code = main(["compare", "--results", str(swept), "--pair", "unet+jnet@32", "unet+none@16"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no runs of unet+jnet@32" in err and "Traceback" not in err


def test_cli_compare_markdown_table(swept, capsys) -> None:
    code = main(["compare", "--results", str(swept), "--pair", "unet+jnet@16", "unet+jnet@16", "--markdown"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| A | B | seeds |") and len(lines) == 3
    assert lines[2].startswith("| `unet+jnet@16` | `unet+jnet@16` | 2 / 2 |")
    assert "| +0.0 | +0.0 .. +0.0 | 0 / 0 | 1 |" in lines[2]


def test_cli_compare_bad_size_bins(swept, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--results", str(swept), "--pair", "unet+jnet@16", "unet+none@16", "--size-bins", "1k"])
    assert "expected comma-separated integers, got '1k'" in capsys.readouterr().err
    code = main(["compare", "--results", str(swept), "--pair", "unet+jnet@16", "unet+none@16", "--size-bins", "9,3"])
    assert code == 2 and "size bins must be increasing" in capsys.readouterr().err


def test_cli_compare_json_or_markdown_not_both(swept, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--results", str(swept), "--pair", "unet+jnet@16", "unet+none@16", "--json", "--markdown"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_load_pairs_reads_the_compare_section(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("compare:\n  size_bins: [1000, 2500]\n  pairs:\n    - [elunet+jnet@16, elunet+none@16/s1+s2]\n")
    assert load_pairs(path) == ([("elunet+jnet@16", "elunet+none@16/s1+s2")], [1000, 2500])
    path.write_text("compare:\n  pairs: [[a@16, b@16]]\n")
    assert load_pairs(path) == ([("a@16", "b@16")], None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: {}\n", "no 'compare:' section"),
        ("compare: {pairs: [[a@16, b@16]], bins: [1]}\n", r"compare: unknown key\(s\) bins"),
        ("compare: {pairs: []}\n", "pairs must be a non-empty list"),
        ("compare: {pairs: [[a@16]]}\n", r"pairs\[0\] must be \[A, B\]"),
        ("compare: {pairs: [[a@16, b]]}\n", "b"),
        ("compare: {pairs: [[a@16, b@16]], size_bins: [0]}\n", "size_bins must be a list of positive pixel counts"),
    ],
)
def test_load_pairs_refuses_bad_sections(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_pairs(path)


def test_the_study_files_hold_their_pairs() -> None:
    root = Path(__file__).resolve().parents[1]
    pairs, bins = load_pairs(root / "configs" / "study_lgg.yaml")
    assert (len(pairs), bins, pairs[0]) == (57, [1000, 2500], ("elunet+jnet@16", "elunet+none@16"))
    assert pairs[28] == ("malunet+none@256", "elunet+jnet-guided+guided-cascade@32/s1+s2")
    assert pairs[-1] == ("unext+none@256", "malunet+none@256")
    pairs, bins = load_pairs(root / "configs" / "cv_lgg.yaml")  # jnet crossval's
    assert (len(pairs), bins, pairs[-1]) == (8, None, ("unext+none@256", "elunet+jnet+width=8@64"))


def test_cli_compare_config_takes_the_study_pairs_and_bins(swept, capsys, tmp_path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text("compare:\n  size_bins: [5]\n  pairs:\n    - [unet+jnet@16, unet+none@16]\n")
    by_config, by_flag = tmp_path / "a.json", tmp_path / "b.json"
    assert (
        main(["compare", "--results", str(swept), "--config", str(study), "--boot", "200", "--out", str(by_config)])
        == 0
    )
    pair = ["--pair", "unet+jnet@16", "unet+none@16", "--size-bins", "5"]
    assert main(["compare", "--results", str(swept), *pair, "--boot", "200", "--out", str(by_flag)]) == 0
    assert by_config.read_bytes() == by_flag.read_bytes()
    assert set(json.loads(by_config.read_text())[0]["strata"]) == {"empty", ">=5 px"}  # the study file's bins
    capsys.readouterr()
    assert main(["compare", "--results", str(swept)]) == 2
    assert "give --pair A B (repeatable) or --config STUDY.yaml" in capsys.readouterr().err
