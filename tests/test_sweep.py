"""jnet sweep: expanding a sweep file, running it, resuming it, its tables and figures."""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from jnet.cli import main
from jnet.study.sweep import (
    RESULT_COLUMNS,
    format_markdown,
    load_sweep,
    median_epoch_seconds,
    result_row,
    run_sweep,
    summarize,
    write_figures,
)

REPO = Path(__file__).resolve().parents[1]
TINY_BASE = {
    "data": "synthetic",
    "data_options": {"num_patients": 3, "slices_per_patient": 4},
    "output_size": 64,
    "model": "unet",
    "width": 2,
    "epochs": 1,
    "batch_size": 4,
    "threads": 1,  # far faster than 2 on a shared 2-core machine
}
TINY = {"base": TINY_BASE, "grid": {"head": ["none", "jnet"], "input_size": [16, 32], "seed": [0, 1]}}
NAMES = [f"unet_{h}_r{r}_s{s}" for h in ("none", "jnet") for r in (16, 32) for s in (0, 1)]


@pytest.fixture(autouse=True)
def _keep_threads():
    """fit() sets torch's thread count for the process; put it back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    """The tiny sweep (2 heads x 2 input sizes x 2 seeds), run once: (sweep file, folder, rows)."""
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("sweep")
    config = root / "sweep.yaml"
    config.write_text(yaml.safe_dump(TINY))
    rows = run_sweep(config, root / "out")
    torch.set_num_threads(threads)
    return config, root / "out", rows


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def md_cell(markdown: str, section: str, method: str, column: str) -> str:
    """The cell of ``method``'s row and ``column`` in the table under ``## {section}``."""
    block = markdown.split(f"## {section}")[1].split("\n## ")[0]
    table = [line for line in block.splitlines() if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == method:
            return cells[header.index(column)]
    raise AssertionError(f"no row {method} in {section}")


# ------------------------------------------------------------------------------------------
# a sweep end to end
# ------------------------------------------------------------------------------------------


def test_sweep_writes_one_csv_row_per_run(swept) -> None:
    _, out, rows = swept
    columns, table = read_csv(out / "results.csv")
    at = columns.index("mean_jaccard_global") + 1
    assert columns == [*RESULT_COLUMNS[:at], "dice_lesion", "jaccard_lesion", *RESULT_COLUMNS[at:]]
    assert [r["run"] for r in table] == NAMES == [r["run"] for r in rows]
    assert {(r["model"], r["head"], r["input_size"], r["seed"], r["variant"]) for r in table} == {
        ("unet", h, str(s), str(seed), "") for h in ("none", "jnet") for s in (16, 32) for seed in (0, 1)
    }
    metrics = json.loads((out / "unet_jnet_r16_s1" / "metrics.json").read_text())
    row = next(r for r in table if r["run"] == "unet_jnet_r16_s1")
    assert float(row["mean_jaccard"]) == metrics["best"]["mean_jaccard"]
    assert float(row["input_res_mean_dice"]) == metrics["best"]["input_resolution"]["mean_dice"]
    assert int(row["best_epoch"]) == metrics["best"]["epoch"] == 1
    assert int(row["head_params"]) == metrics["head_params"] > 0
    assert float(row["final_mean_jaccard"]) == metrics["final"]["mean_jaccard"]
    _, history = read_csv(out / "unet_jnet_r16_s1" / "history.csv")
    assert len(history) == 1 and float(row["epoch_seconds"]) == float(history[0]["epoch_seconds"]) > 0
    for name in NAMES:  # the same layout as jnet train's
        files = {p.name for p in (out / name).iterdir()}
        assert {"config.yaml", "split.json", "history.csv", "checkpoint_last.pt", "metrics.json"} <= files


def test_results_md_holds_mean_and_std_over_seeds(swept) -> None:
    _, out, _ = swept
    _, table = read_csv(out / "results.csv")
    markdown = (out / "results.md").read_text()
    for method, size, column, key in [
        ("unet+jnet", 16, "Jaccard", "mean_jaccard"),
        ("unet+none", 32, "Dice", "mean_dice"),
        ("unet+jnet", 32, "Jacc. @ 32x32 (paper-style)", "input_res_mean_jaccard"),
    ]:
        values = [float(r[key]) for r in table if r["method"] == method and r["input_size"] == str(size)]
        assert len(values) == 2
        expected = f"{100 * statistics.fmean(values):.1f} ± {100 * statistics.stdev(values):.1f}"
        cell = md_cell(markdown, f"Input {size}x{size}", method, column)
        assert cell.strip("*") == expected
    assert markdown.index("## Input 32x32") < markdown.index("## Input 16x16")  # largest first, as in the paper


def test_median_epoch_seconds_leaves_out_the_first_epoch(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert median_epoch_seconds(run) is None  # no history.csv: a blank cell
    history = run / "history.csv"
    history.write_text("epoch,train_loss,epoch_seconds\n1,0.9,30.0\n2,0.8,2.0\n3,0.7,400.0\n4,0.6,3.0\n")
    assert median_epoch_seconds(run) == 3.0  # median of 2, 400 (a pause), 3; the warm-up 30 left out
    history.write_text("epoch,train_loss,epoch_seconds\n1,0.9,7.5\n")
    assert median_epoch_seconds(run) == 7.5  # one epoch: itself
    history.write_text("epoch,train_loss\n1,0.9\n")
    with pytest.raises(ValueError, match=r"run/history\.csv: no readable epoch_seconds column"):
        median_epoch_seconds(run)
    markdown = format_markdown(
        summarize([{"run": f"r{s}", "method": "unet+jnet", "model": "unet", "head": "jnet", "input_size": 16,
                    "output_size": 64, "seed": s, "mean_jaccard": 0.5, "train_seconds": 60.0, "epoch_seconds": e,
                    "params": 10, "head_params": 2} for s, e in ((0, 2.0), (1, 4.0))])
    )  # fmt: skip
    assert md_cell(markdown, "Input 16x16", "unet+jnet", "Epoch s") == "3.0 ± 1.4"
    assert md_cell(markdown, "Input 16x16", "unet+jnet", "Train s") == "60.0 ± 0.0"


def test_figures_are_drawn(swept) -> None:
    _, out, _ = swept
    for name in ("examples.png", "jaccard_vs_input_size.png"):
        assert (out / name).stat().st_size > 5000
    assert not list(out.glob("*.tmp*"))


def test_examples_show_finished_runs_only(swept, tmp_path, monkeypatch) -> None:
    import shutil

    import jnet.study.sweep as sweep_module

    config, out, rows = swept
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (copy / "unet_jnet_r32_s0" / "metrics.json").unlink()  # as if still training: checkpoint_best.pt is there
    seen = []
    monkeypatch.setattr(sweep_module, "example_figure", lambda rows, path: seen.extend(rows))
    sweep_module.write_figures(load_sweep(config), copy, rows)
    by_size = {row.input_size: row.predictions for row in seen}
    assert by_size[32] == {"unet+none": copy / "unet_none_r32_s0" / "checkpoint_best.pt", "unet+jnet": None}
    assert by_size[16]["unet+jnet"] == copy / "unet_jnet_r16_s0" / "checkpoint_best.pt"


def test_examples_are_kept_when_a_finished_run_lost_its_checkpoint(swept, tmp_path, caplog) -> None:
    import shutil

    config, out, rows = swept
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (copy / "unet_jnet_r16_s0" / "checkpoint_best.pt").unlink()  # a clone: results without weights
    before = (copy / "examples.png").read_bytes()
    written = write_figures(load_sweep(config), copy, rows)
    assert written == [copy / "jaccard_vs_input_size.png"]
    assert (copy / "examples.png").read_bytes() == before
    assert "examples.png not redrawn: 1 finished run(s) have no checkpoint_best.pt" in caplog.text
    assert "unet_jnet_r16_s0" in caplog.text


def test_metrics_without_final_scores_are_refused(swept) -> None:
    config, out, _ = swept
    run = load_sweep(config).runs[0]
    metrics = json.loads((out / run.name / "metrics.json").read_text())
    del metrics["final"]  # the last-epoch column must not silently show the best epoch's score
    with pytest.raises(ValueError, match=rf"{run.name}/metrics\.json: no 'final' scores"):
        result_row(run, metrics)


def test_rerun_skips_finished_runs(swept) -> None:
    config, out, rows = swept
    before = {name: (out / name / "metrics.json").stat().st_mtime_ns for name in NAMES}
    events: list[dict] = []
    again = run_sweep(config, out, on_run=events.append)
    assert [(e["run"], e["status"]) for e in events] == [(name, "skip") for name in NAMES]
    assert {name: (out / name / "metrics.json").stat().st_mtime_ns for name in NAMES} == before
    assert again == rows


def test_interrupted_run_is_resumed_not_restarted(tmp_path) -> None:
    spec = {"base": {**TINY_BASE, "epochs": 2}, "grid": {"head": ["jnet"], "input_size": [16]}}
    run = tmp_path / "unet_jnet_r16_s0"

    class Stop(Exception):
        pass

    def stop_after_first(name: str, row: dict) -> None:
        raise Stop

    with pytest.raises(Stop):
        run_sweep(spec, tmp_path, on_epoch=stop_after_first)
    assert (run / "checkpoint_last.pt").is_file() and not (run / "metrics.json").exists()
    first = (run / "history.csv").read_text().splitlines()
    assert len(first) == 2  # header + epoch 1

    events: list[dict] = []
    run_sweep(spec, tmp_path, on_run=events.append)
    assert [e["status"] for e in events] == ["resume", "done"]
    history = (run / "history.csv").read_text().splitlines()
    assert history[:2] == first and history[2].startswith("2,")  # epoch 1 kept as it was, epoch 2 added
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2

    # metrics.json lost after the last epoch: resumed from checkpoint_last, nothing retrained
    (run / "metrics.json").unlink()
    events.clear()
    run_sweep(spec, tmp_path, on_run=events.append)
    assert [e["status"] for e in events] == ["resume", "done"]
    assert (run / "history.csv").read_text().splitlines() == history

    # a run folder made with other settings is refused, not silently mixed in
    with pytest.raises(ValueError, match=r"unet_jnet_r16_s0 was run with other settings \(epochs: 2 -> 3\)"):
        run_sweep({**spec, "base": {**spec["base"], "epochs": 3}}, tmp_path)


def test_a_split_file_gives_every_run_the_same_patients(tmp_path) -> None:
    split = {"train": ["synth_000", "synth_001"], "val": ["synth_002"]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    spec = {
        "base": {**TINY_BASE, "split_file": str(tmp_path / "split.json")},
        "grid": {"head": ["jnet"], "input_size": [16], "seed": [0, 1]},
    }
    run_sweep(spec, tmp_path / "out")
    for seed in (0, 1):
        assert json.loads((tmp_path / "out" / f"unet_jnet_r16_s{seed}" / "split.json").read_text()) == split


def test_figures_are_skipped_with_a_warning_without_matplotlib(swept, monkeypatch, caplog) -> None:
    config, out, rows = swept
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert write_figures(load_sweep(config), out, rows) == []
    assert "no figures: matplotlib is not installed" in caplog.text


def test_cli_prints_each_run_and_the_table(swept, capsys) -> None:
    config, out, _ = swept
    assert main(["sweep", "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[1/8] unet_none_r16_s0: finished before, skipped" in printed
    assert "| unet+jnet | 2 |" in printed and "## Input 16x16" in printed
    assert main(["sweep", "--config", str(config), "--out", str(out), "--dry-run"]) == 0
    assert "[8/8] unet_jnet_r32_s1 (unet+jnet): skip\n8 runs" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------
# the sweep file
# ------------------------------------------------------------------------------------------


def test_grid_lists_variants_and_names() -> None:
    sweep = load_sweep(
        {
            "base": {"head": "jnet", "output_size": 64},
            "grid": [
                {"model": ["elunet"], "head": ["none", "jnet"], "input_size": [16, 32], "seed": [0, 1]},
                {"model": ["unet"], "head": ["jnet"], "input_size": [16], "head_options": [{"init": "default"}]},
            ],
            "variants": {
                "final-loss": {"loss_weights": "final"},
                "area": {"target_resize": "area", "input_size": 16, "seed": [5]},
            },
        }
    )
    names = [run.name for run in sweep.runs]
    assert names[:4] == ["elunet_none_r16_s0", "elunet_none_r16_s1", "elunet_none_r32_s0", "elunet_none_r32_s1"]
    assert "unet_jnet_r16_s0_head_options-init=default" in names
    # a variant crosses every input size and seed the grid uses, unless it gives its own
    assert [n for n in names if "final-loss" in n] == [f"elunet_final-loss_r{r}_s{s}" for r in (16, 32) for s in (0, 1)]
    assert [n for n in names if "_area_" in n] == ["elunet_area_r16_s5"]
    area = sweep.runs[names.index("elunet_area_r16_s5")]
    assert (area.variant, area.method, area.config.target_resize, area.config.head) == (
        "area", "elunet+jnet+area", "area", "jnet"
    )  # fmt: skip
    grid_methods = ["elunet+none", "elunet+jnet", "unet+jnet+head_options=init=default"]
    assert sweep.methods == [*grid_methods, "elunet+jnet+final-loss", "elunet+jnet+area"]
    assert sweep.figure_methods == grid_methods


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"base": {"epoch": 3}}, r"base: unknown setting\(s\) epoch; valid: "),
        ({"grid": {"heads": ["jnet"]}}, r"grid: unknown setting\(s\) heads"),
        ({"grid": {"head": []}}, "axis 'head' is empty"),
        ({"grid": {"head": "jnet"}}, r"axis 'head' must be a list of values \(write head: \[jnet\]\)"),
        ({"grid": []}, "grid must be a mapping"),
        ({"grid": {"head": ["jnet", "bogus"]}}, "run elunet_bogus_r16_s0: unknown head 'bogus'; valid choices"),
        ({"grid": {"model": ["vnet"]}}, "run vnet_jnet_r16_s0: unknown model 'vnet'"),
        ({"grid": {"head": ["jnet"], "input_size": [24]}, "base": {"output_size": 64}}, "run elunet_jnet_r24_s0"),
        ({"grid": {"loss": ["l2"]}}, "run elunet_jnet_r16_s0_loss-l2: "),
        ({"grid": {"head": ["jnet", "jnet"]}}, "more than one run is named elunet_jnet_r16_s0"),
        ({"variants": {"a b": {}}}, "variant 'a b': a variant name must be"),
        ({"variants": {"x": {"lr": 1e-3, "depth": 3}}}, r"variant 'x': unknown setting\(s\) depth"),
        ({"variants": {"x": {"input_size": []}}}, "variant 'x': input_size is empty"),
        (
            {"figure": {"methods": ["elunet+bogus"]}},
            r"figure: unknown method 'elunet\+bogus'; valid choices: 'elunet\+jnet'",
        ),
        ({"figure": {"rows": 3}}, r"figure: unknown key\(s\) rows"),
        ({"runs": 3}, r"sweep config: unknown key\(s\) runs; valid: base, grid, variants, figure, compare, latency"),
    ],
)
def test_bad_sweep_files_name_the_problem(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_sweep(spec)


def test_cli_bad_sweep_gives_one_line_and_exit_2(tmp_path, capsys) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"base": TINY_BASE, "grid": {"head": ["none", "bogus"]}}))
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "jnet sweep: error:" in err and "unknown head 'bogus'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # checked before anything is written
    assert main(["sweep", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "no such sweep file" in capsys.readouterr().err


def test_summarize_mean_and_sample_std() -> None:
    rows = [
        {"method": "m", "model": "unet", "head": "jnet", "input_size": 16, "output_size": 64, "seed": s,
         "mean_dice": d, "mean_jaccard": d / 2, "params": 10, "head_params": 2}
        for s, d in ((0, 0.5), (1, 0.7), (2, 0.9))
    ]  # fmt: skip
    (row,) = summarize(rows)
    mean, std = row["stats"]["mean_dice"]
    assert mean == pytest.approx(0.7) and std == pytest.approx(0.2)
    assert row["seeds"] == [0, 1, 2]
    with pytest.raises(ValueError, match="two runs of m at input 16 with seed 2"):
        summarize([*rows, rows[-1]])


def test_markdown_has_per_class_columns_for_several_classes() -> None:
    rows = [
        {"method": "m", "model": "unet", "head": "jnet", "input_size": 16, "output_size": 64, "seed": s,
         "mean_dice": 0.5, "mean_jaccard": 0.4, "dice_lesion": 0.6, "jaccard_lesion": 0.5, "dice_core": c,
         "jaccard_core": c / 2, "input_res_mean_dice": 0.3, "input_res_mean_jaccard": 0.2, "train_seconds": 10.0,
         "params": 1000, "head_params": 59}
        for s, c in ((0, 0.2), (1, 0.4))
    ]  # fmt: skip
    markdown = format_markdown(summarize(rows))
    header = next(line for line in markdown.splitlines() if line.startswith("| Method"))
    assert header.index("lesion Dice") < header.index("core Dice") < header.index("Dice @ 16x16 (paper-style)")
    assert md_cell(markdown, "Input 16x16", "m", "core Dice") == "30.0 ± 14.1"
    assert md_cell(markdown, "Input 16x16", "m", "Train s") == "10.0 ± 0.0"
    assert md_cell(markdown, "Input 16x16", "m", "Params (head)") == "1,000 (59)"


def test_shipped_sweep_files_expand() -> None:
    demo = load_sweep(REPO / "configs" / "sweep_demo.yaml")
    assert len(demo.runs) == 14
    study = load_sweep(REPO / "configs" / "study_lgg.yaml")
    runs = study.runs
    # ELU-Net none/interp/jnet at 16, 32, 64 + U-Net none/jnet at 16, 32 + 5 ablations and 2 guided heads
    # at 16, 32 + the ungated guided cascade at 16; 3 seeds each
    paper = 3 * 3 * 3 + 2 * 2 * 3 + 7 * 2 * 3 + 3
    # issue 24: 3 ultra-light networks at 256; EGE-UNet, MALUNet x interp, jnet x 64, 128; ELU-Net widths 4, 8
    # x 16, 32, 64 with jnet and x 32, 64 with interp; 3 seeds each
    light = 3 * 3 + 2 * 2 * 2 * 3 + 2 * 3 * 3 + 2 * 2 * 3
    assert (paper, light) == (84, 63) and len(runs) == len({run.name for run in runs}) == paper + light
    assert {run.config.seed for run in runs} == {0, 1, 2}
    assert {run.config.input_size for run in runs if run.variant or run.config.model == "unet"} == {16, 32}
    light_models = ("egeunet", "malunet", "unext")
    assert {(r.config.model, r.config.input_size) for r in runs if r.config.model in light_models} == {
        ("egeunet", 256), ("malunet", 256), ("unext", 256), ("egeunet", 64), ("egeunet", 128), ("malunet", 64),
        ("malunet", 128)}  # fmt: skip
    assert {"elunet_jnet_r16_s0_width-4", "elunet_jnet_r64_s2_width-8"} <= {run.name for run in runs}
    assert all(run.config.split_file == "configs/lgg_split.json" and run.config.epochs == 30 for run in runs)
    assert all(run.config.batch_size == 16 and run.config.augment for run in runs)
    by_variant = {run.variant: run.config for run in runs if run.variant}
    assert by_variant["final-loss"].loss_weights == "final"
    assert by_variant["no-skip"].head == "jnet-noskip" and by_variant["single-step"].head == "jnet-single"
    assert by_variant["area-target"].target_resize == "area"
    assert by_variant["default-init"].head_options == {"init": "default"}
    assert runs[0].config.target_resize == "nearest"

    split = json.loads((REPO / "configs" / "lgg_split.json").read_text())
    assert not set(split["train"]) & set(split["val"]) and len(split["val"]) == 16
    archive = REPO / runs[0].config.data
    if archive.is_file():  # the shared data is not everywhere
        from jnet.data.prepare import patient_split

        with np.load(archive) as data:
            expected = patient_split(data["patient_id"], 0.2, 0)
        assert split == expected


def test_the_cross_validation_file_validates_every_patient_once() -> None:
    from jnet.data.prepare import kfold_split

    runs = load_sweep(REPO / "configs" / "cv_lgg.yaml").runs
    assert len(runs) == 8 * 5 and len({run.name for run in runs}) == 40
    assert {(r.config.model, r.config.head, r.config.input_size, r.config.width) for r in runs} == {
        ("elunet", "none", 16, None), ("elunet", "interp", 16, None), ("elunet", "jnet", 16, None),
        ("elunet", "jnet-guided", 16, None), ("elunet", "jnet", 32, None), ("malunet", "none", 256, None),
        ("unext", "none", 256, None), ("elunet", "jnet", 64, 8)}  # fmt: skip
    assert all(r.config.folds == 5 and r.config.seed == 0 and r.config.split_file is None for r in runs)
    assert sorted(r.config.fold for r in runs if r.config.head == "jnet-guided") == [0, 1, 2, 3, 4]
    archive = REPO / runs[0].config.data
    if archive.is_file():  # the shared data is not everywhere
        with np.load(archive) as data:
            patients = data["patient_id"]
        vals = [kfold_split(patients, 5, fold, 0)["val"] for fold in range(5)]
        assert sorted(p for v in vals for p in v) == sorted(set(patients.astype(str))) and len(vals[0]) == 17


def test_only_trains_the_matching_runs(tmp_path) -> None:
    spec = {"base": TINY_BASE, "grid": {"model": ["unet"], "head": ["none", "jnet"], "input_size": [16], "seed": [0]}}
    rows = run_sweep(spec, tmp_path, only=["*_jnet_*"])
    assert [r["run"] for r in rows] == ["unet_jnet_r16_s0"]
    assert not (tmp_path / "unet_none_r16_s0").exists()
    rows = run_sweep(spec, tmp_path)  # the rest later; the finished one is skipped
    assert [r["run"] for r in rows] == ["unet_none_r16_s0", "unet_jnet_r16_s0"]


def test_last_epoch_score_is_the_final_not_the_best(swept) -> None:
    config, out, _ = swept
    run = next(r for r in load_sweep(config).runs if r.name == "unet_jnet_r16_s1")
    metrics = json.loads((out / run.name / "metrics.json").read_text())
    metrics["final"] = {**metrics["final"], "mean_jaccard": 0.125}
    row = result_row(run, metrics)
    assert row["final_mean_jaccard"] == 0.125 and row["mean_jaccard"] == metrics["best"]["mean_jaccard"]
    assert "| Jacc. last epoch |" in format_markdown(summarize([row]))


def test_variant_folder_without_the_backbone_is_refused_not_retrained(tmp_path) -> None:
    """Variant folders were once named without their backbone; such a folder must not be silently trained again."""
    spec = {"base": {"epochs": 1}, "grid": {"head": ["jnet"]}, "variants": {"final-loss": {"loss_weights": "final"}}}
    (tmp_path / "final-loss_r16_s0").mkdir()
    with pytest.raises(ValueError, match=r"final-loss_r16_s0 is a variant run named without its backbone.*mv .*"
                       r"elunet_final-loss_r16_s0"):  # fmt: skip
        run_sweep(spec, tmp_path)
