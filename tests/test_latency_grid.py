"""The latency grid of a study file (``latency:``), as jnet benchmark --config and jnet plan --config read it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jnet.deploy.latency_grid import latency_grid, load_latency_grid

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
    ],
)
def test_bad_grids_are_refused_naming_the_key(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match="study.yaml: latency: " + message):
        latency_grid(spec, "study.yaml: latency")


def test_the_study_grid_times_42_configurations_in_the_committed_order() -> None:
    """configs/study_lgg.yaml's grid is the one results/study_lgg/latency.json was measured on, in its order."""

    grid = load_latency_grid(ROOT / "configs" / "study_lgg.yaml")
    measured = json.loads((ROOT / "results" / "study_lgg" / "latency.json").read_text())
    assert [(c["model"], c["head"], c["input_size"], t) for c, t in grid.runs_to_time()] == [
        (r["model"], r["head"], r["input_size"], r["threads"]) for r in measured
    ]
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
