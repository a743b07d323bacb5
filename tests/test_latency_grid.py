"""The latency grid of a study file (``latency:``), as jnet benchmark --config and jnet plan --config read it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jnet.deploy import latency_grid as latency_grid_module
from jnet.deploy.latency_grid import latency_grid, load_latency_grid, run_latency_grid

ROOT = Path(__file__).resolve().parents[1]


def test_entries_expand_first_key_slowest_then_threads() -> None:
    grid = latency_grid(
        {
            "threads": [1, 2],
            "runs": 7,
            "configs": [{"model": "elunet", "input_size": [16, 32], "head": ["none", "jnet"]}, {"model": "unet"}],
            "plan": {"threads": 1, "budgets_ms": [3, 5]},
        }
    )
    assert grid.configs == [
        {"model": "elunet", "input_size": 16, "head": "none"},
        {"model": "elunet", "input_size": 16, "head": "jnet"},
        {"model": "elunet", "input_size": 32, "head": "none"},
        {"model": "elunet", "input_size": 32, "head": "jnet"},
        {"model": "unet"},
    ]
    assert grid.runs_to_time()[:3] == [
        ({"model": "elunet", "input_size": 16, "head": "none"}, 1),
        ({"model": "elunet", "input_size": 16, "head": "none"}, 2),
        ({"model": "elunet", "input_size": 16, "head": "jnet"}, 1),
    ]
    assert len(grid.runs_to_time()) == 10
    assert (grid.runs, grid.warmup, grid.runtime, grid.plan["budgets_ms"]) == (7, 10, "onnxruntime", [3, 5])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"configs": [{"model": "elunet"}], "thread": 1}, r"unknown key\(s\) thread"),
        ({"configs": []}, "configs must be a non-empty list"),
        ({"configs": [{"model": "elunet", "depth": 3}]}, r"configs\[0\]: unknown key\(s\) depth"),
        ({"configs": ["elunet"]}, r"configs\[0\]: each entry of configs is a mapping"),
        ({"configs": [{"model": "elunet"}], "plan": {"budget": 3}}, r"plan: unknown key\(s\) budget"),
        ({"configs": [{"model": "elunet"}], "passes": 0}, "passes must be an integer >= 1, got 0"),
        ({"configs": [{"model": "elunet", "cascade_head": "yes"}]}, "cascade_head is true or false, got 'yes'"),
    ],
)
def test_bad_grids_are_refused_naming_the_key(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match="study.yaml: latency: " + message):
        latency_grid(spec, "study.yaml: latency")


def test_the_study_grid_times_84_configurations_in_the_committed_order() -> None:
    """configs/study_lgg.yaml's grid is the one results/study_lgg/latency.json was measured on, in its order."""

    grid = load_latency_grid(ROOT / "configs" / "study_lgg.yaml")
    measured = json.loads((ROOT / "results" / "study_lgg" / "latency.json").read_text())
    timed = [(c["model"], c["head"], c["input_size"], c.get("width"), t) for c, t in grid.runs_to_time()]
    assert len(timed) == 84
    assert timed == [(r["model"], r["head"], r["input_size"], r["width"], r["threads"]) for r in measured]
    assert (grid.runtime, grid.runs, grid.full_resolution_input, grid.plan) == (
        "onnxruntime", 200, True, {"threads": 1, "budgets_ms": [3, 5, 10, 25]}
    )  # fmt: skip


def test_a_file_without_the_section_or_with_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("base: {epochs: 1}\n")
    with pytest.raises(ValueError, match=r"study.yaml: no 'latency:' section"):
        load_latency_grid(path)
    path.write_text("latency: [1, \n")
    with pytest.raises(ValueError, match=r"study\.yaml: not valid YAML"):
        load_latency_grid(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml: no such study file"):
        load_latency_grid(tmp_path / "missing.yaml")


def test_passes_keep_each_configurations_best_median_and_the_head_form(monkeypatch) -> None:
    """Two passes over the grid, one after the other; each configuration keeps its lowest median;
    ``cascade_head: true`` builds the J-Net head as its cascade."""
    medians = iter([5.0, 3.0, 2.0, 4.0, 6.0, 1.0])  # pass 1: a, b, c; pass 2: a, b, c
    timed: list[tuple[str, str]] = []

    def fake_benchmark(model, runtime, batch_size, threads, runs, warmup) -> dict:
        timed.append((model.head_name, model.head_form))
        return {"head": model.head_name, "head_form": model.head_form, "latency_ms_median": next(medians)}

    monkeypatch.setattr(latency_grid_module, "benchmark", fake_benchmark)
    unet = {"model": "unet", "width": 2, "input_size": 16}
    grid = latency_grid({"passes": 2, "configs": [{**unet, "head": ["none", "jnet"]}, {**unet, "cascade_head": True}]})
    kept_now: list[dict] = []
    passes: list[int] = []
    results = run_latency_grid(grid, on_result=kept_now.append, on_pass=lambda done, r: passes.append(done))
    forms = [("none", "modules"), ("jnet", "compiled"), ("jnet", "modules")]
    assert timed == forms * 2 and passes == [1, 1, 1, 2, 2, 2]
    assert [(r["head"], r["head_form"], r["latency_ms_median"]) for r in results] == [
        ("none", "modules", 4.0), ("jnet", "compiled", 3.0), ("jnet", "modules", 1.0)
    ]  # fmt: skip
    assert [r["latency_ms_medians"] for r in results] == [[5.0, 4.0], [3.0, 6.0], [2.0, 1.0]]
    assert all(r["passes"] == 2 for r in results) and kept_now == results


def test_latency_by_size_figure(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from jnet.study.figures import plot_latency_by_size

    rows = [
        {"model": "elunet", "head": h, "head_form": f, "input_size": s, "threads": t, "latency_ms_median": m,
         "runtime": "onnxruntime", "output_size": 256}
        for h, f, m in (("none", "modules", 1.0), ("jnet", "compiled", 1.1), ("jnet", "modules", 3.0))
        for s in (16, 32) for t in (1, 2)
    ]  # fmt: skip
    path = plot_latency_by_size(rows, tmp_path / "f.png", threads=1)
    assert path == tmp_path / "f.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no benchmark results at 4 thread"):
        plot_latency_by_size(rows, tmp_path / "g.png", threads=4)
