"""Planning: aggregation over seeds, the Pareto front, the best configuration in a budget, ties and errors."""

from __future__ import annotations

import json
import math
import re

import pytest

from jnet.cli import main
from jnet.deploy.plan import aggregate, best_within_budget, make_plan, pareto_front, read_benchmarks, read_results

# dyadic values, so that means are exact and ties really are ties
RESULTS = """model,head,input_size,seed,mean_jaccard,mean_dice
elunet,none,16,0,0.5,0.625
elunet,none,16,1,0.5625,0.6875
elunet,jnet,16,0,0.5625,0.6875
elunet,jnet,16,1,0.6875,0.75
unet,jnet,16,0,0.625,0.75
unet,jnet,16,1,0.625,0.75
elunet,interp,16,0,0.59375,0.8125
elunet,jnet,32,0,0.75,0.875
elunet,jnet,32,1,0.75,0.875
unet,jnet,32,0,0.6875,0.8125
"""
LATENCY = {
    ("elunet", "none", 16): 1.0,
    ("elunet", "interp", 16): 1.5,
    ("elunet", "jnet", 16): 2.0,
    ("unet", "jnet", 16): 2.0,  # same quality and latency as elunet+jnet@16
    ("elunet", "jnet", 32): 4.0,
    ("unet", "jnet", 32): 5.0,  # dominated by elunet+jnet@32
}


def write_sweep(tmp_path, text: str = RESULTS) -> tuple[str, str]:
    (tmp_path / "results.csv").write_text(text)
    bench = [
        {"model": m, "head": h, "input_size": s, "latency_ms_median": v, "runtime": "onnxruntime", "batch_size": 1}
        for (m, h, s), v in LATENCY.items()
    ]
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    return str(tmp_path), str(tmp_path / "bench.json")


def names(candidates) -> list[str]:
    return [c.name for c in candidates]


def test_aggregate_over_seeds(tmp_path) -> None:
    sweep, bench = write_sweep(tmp_path)
    cands = {c.name: c for c in aggregate(read_results(sweep), read_benchmarks(bench))}
    assert len(cands) == 6
    none = cands["elunet+none@16"]
    assert none.seeds == [0, 1] and none.mean_jaccard == 0.53125 and none.mean_dice == 0.65625
    assert none.std_jaccard == pytest.approx(0.0625 / math.sqrt(2))  # sample std of two values
    assert cands["unet+jnet@16"].std_jaccard == 0.0
    assert cands["elunet+interp@16"].std_jaccard is None  # one seed
    assert none.latency_ms == 1.0 and none.latency_source == "benchmark"


def test_pareto_front_keeps_ties_and_drops_dominated(tmp_path) -> None:
    sweep, bench = write_sweep(tmp_path)
    cands = aggregate(read_results(sweep), read_benchmarks(bench))
    assert names(pareto_front(cands)) == [
        "elunet+none@16",
        "elunet+interp@16",
        "elunet+jnet@16",  # tie with unet+jnet@16: neither dominates the other
        "unet+jnet@16",
        "elunet+jnet@32",
    ]
    # by Dice, interp (0.8125 at 1.5 ms) dominates both J-Net 16 models
    assert names(pareto_front(cands, "mean_dice")) == ["elunet+none@16", "elunet+interp@16", "elunet+jnet@32"]


@pytest.mark.parametrize(
    ("budget", "metric", "best"),
    [
        (10.0, "mean_jaccard", "elunet+jnet@32"),
        (4.0, "mean_jaccard", "elunet+jnet@32"),  # at the budget counts
        (3.9, "mean_jaccard", "unet+jnet@16"),  # tie in quality and latency: the smaller std (0 < 0.088)
        (1.75, "mean_jaccard", "elunet+interp@16"),
        (1.0, "mean_jaccard", "elunet+none@16"),
        (2.0, "mean_dice", "elunet+interp@16"),
        (0.5, "mean_jaccard", None),
    ],
)
def test_best_within_budget(budget: float, metric: str, best: str | None, tmp_path) -> None:
    sweep, bench = write_sweep(tmp_path)
    choice = best_within_budget(aggregate(read_results(sweep), read_benchmarks(bench)), budget, metric)
    assert (None if choice is None else choice.name) == best


def test_make_plan_and_latency_column(tmp_path) -> None:
    text = "model,head,input_size,seed,mean_jaccard,mean_dice,latency_ms\n"
    text += "a,jnet,16,0,0.5,0.6,3.0\na,jnet,16,1,0.5,0.6,1.0\na,jnet,16,2,0.5,0.6,2.0\nb,none,16,0,0.4,0.5,\n"
    sweep, _ = write_sweep(tmp_path, text)
    plan = make_plan(sweep, budget_ms=2.5)
    assert plan.best is not None and plan.best.name == "a+jnet@16"
    assert plan.best.latency_ms == 2.0 and plan.best.latency_source == "results.csv"  # median of the runs
    assert names(plan.no_latency) == ["b+none@16"]
    assert json.loads(json.dumps(plan.to_dict()))["best"]["name"] == "a+jnet@16"


def test_benchmark_filters_and_duplicates(tmp_path) -> None:
    entries = [
        {"model": "elunet", "head": "jnet", "input_size": 16, "latency_ms_median": 2.0, "runtime": "onnxruntime"},
        {"model": "elunet", "head": "jnet", "input_size": 16, "latency_ms_median": 6.0, "runtime": "torch"},
        {"model": "elunet", "head": "jnet", "input_size": [32, 32], "latency_ms_median": 3.0, "runtime": "torch"},
    ]
    (tmp_path / "b.json").write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=r"benchmarked more than once.*--runtime"):
        read_benchmarks(tmp_path / "b.json")
    # no width: the backbone's default (ELU-Net: 16)
    assert read_benchmarks(tmp_path / "b.json", runtime="torch") == {
        ("elunet", "jnet", 16, 16): 6.0,
        ("elunet", "jnet", 32, 16): 3.0,
    }
    assert read_benchmarks(tmp_path / "b.json", runtime="onnxruntime", precision="fp32") == {
        ("elunet", "jnet", 16, 16): 2.0
    }


def test_sweep_results_with_methods_variants_and_widths(tmp_path) -> None:
    # the columns jnet sweep writes (a subset): a variant shares model and head with a grid method
    text = "run,method,model,head,variant,input_size,seed,mean_dice,mean_jaccard\n"
    rows = [
        ("elunet+jnet", "", 0, 0.5),
        ("elunet+jnet", "", 1, 0.5),
        ("elunet+jnet+final-loss", "final-loss", 0, 0.625),
        ("elunet+jnet+width=8", "", 0, 0.25),
    ]
    for i, (method, variant, seed, q) in enumerate(rows):
        text += f"r{i},{method},elunet,jnet,{variant},16,{seed},{q},{q}\n"
    (tmp_path / "results.csv").write_text(text)
    bench = [
        {"model": "elunet", "head": "jnet", "input_size": 16, "width": None, "latency_ms_median": 2.0},
        {"model": "elunet", "head": "jnet", "input_size": 16, "width": 8, "latency_ms_median": 1.0},
    ]
    (tmp_path / "b.json").write_text(json.dumps(bench))
    plan = make_plan(tmp_path, budget_ms=1.5, benchmark=tmp_path / "b.json")
    cands = {c.name: c for c in plan.candidates}
    assert sorted(cands) == ["elunet+jnet+final-loss@16", "elunet+jnet+width=8@16", "elunet+jnet@16"]
    assert cands["elunet+jnet+width=8@16"].width == 8 and cands["elunet+jnet+width=8@16"].latency_ms == 1.0
    assert cands["elunet+jnet+final-loss@16"].latency_ms == 2.0  # same model: same latency
    assert names(plan.front) == ["elunet+jnet+width=8@16", "elunet+jnet+final-loss@16"]
    assert plan.best is not None and plan.best.name == "elunet+jnet+width=8@16"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model,head,seed,mean_dice\n", "missing column(s) input_size, mean_jaccard"),
        ("model,head,input_size,seed,mean_jaccard,mean_dice\n", "no runs (only a header)"),
        ("model,head,input_size,seed,mean_jaccard,mean_dice\na,b,16,0,high,0.5\n", ":2: mean_jaccard must be a number"),
        (
            "model,head,input_size,seed,mean_jaccard,mean_dice\na,b,16,0,0.5,0.5\na,b,16,0,0.6,0.6\n",
            "two runs of a+b@16 with seed 0 (lines 2 and 3)",
        ),
    ],
)
def test_bad_results(text: str, message: str, tmp_path) -> None:
    (tmp_path / "results.csv").write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        aggregate(read_results(tmp_path))


def test_bad_inputs(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"results\.csv"):
        read_results(tmp_path)
    sweep, bench = write_sweep(tmp_path)
    with pytest.raises(ValueError, match="no configuration has a latency"):
        make_plan(sweep)
    with pytest.raises(ValueError, match="positive"):
        make_plan(sweep, budget_ms=0, benchmark=bench)
    with pytest.raises(ValueError, match="unknown metric 'dice'"):
        make_plan(sweep, benchmark=bench, metric="dice")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_benchmarks(tmp_path / "bad.json")


def test_plan_cli(tmp_path, capsys) -> None:
    sweep, bench = write_sweep(tmp_path)
    assert main(["plan", "--results", sweep, "--benchmark", bench, "--budget-ms", "1.75"]) == 0
    out = capsys.readouterr().out
    assert "best within 1.75 ms: elunet+interp@16" in out
    assert "* elunet+interp@16" in out
    assert re.search(r"\bunet\+jnet@32", out) is None  # dominated: not on the front
    assert main(["plan", "--results", sweep, "--benchmark", bench, "--budget-ms", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["best"]["name"] == "unet+jnet@16"


def test_plan_plot(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    sweep, bench = write_sweep(tmp_path)
    png = tmp_path / "plan.png"
    assert main(["plan", "--results", sweep, "--benchmark", bench, "--budget-ms", "1.75", "--plot", str(png)]) == 0
    assert f"wrote {png}" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob("*.tmp*"))


def test_plan_plot_names_every_configuration_on_the_front(tmp_path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    import jnet.study.figures
    from jnet.study.figures import plot_plan

    # 12 configurations on the front, 11 of them so close that their names cannot all find a free place
    points = [(1 + i / 1024, 0.5 + i / 1024) for i in range(11)] + [(8.0, 0.9)]
    rows = [f"elunet,head-{i},16,0,{q},0.5" for i, (_, q) in enumerate(points)]
    (tmp_path / "results.csv").write_text("model,head,input_size,seed,mean_jaccard,mean_dice\n" + "\n".join(rows))
    bench = [
        {"model": "elunet", "head": f"head-{i}", "input_size": 16, "latency_ms_median": t, "runtime": "onnxruntime"}
        for i, (t, _) in enumerate(points)
    ]
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    plan = make_plan(tmp_path, budget_ms=3, benchmark=tmp_path / "bench.json")
    assert len(plan.front) == 12
    drawn = []

    def save(fig, path):
        drawn.append([t.get_text() for t in fig.axes[0].texts])
        plt.close(fig)
        return path

    monkeypatch.setattr(jnet.study.figures, "save_figure", save)
    plot_plan(plan, tmp_path / "plan.png")
    (texts,) = drawn
    assert sorted(texts) == sorted(names(plan.front))


def test_plan_cli_infeasible_budget(tmp_path, capsys) -> None:
    sweep, bench = write_sweep(tmp_path)
    assert main(["plan", "--results", sweep, "--benchmark", bench, "--budget-ms", "0.5"]) == 2
    captured = capsys.readouterr()
    assert "Pareto front" in captured.out
    assert captured.err.strip() == (
        "jnet plan: error: no configuration runs within 0.5 ms; the fastest, elunet+none@16, takes 1.000 ms"
    )
    assert main(["plan", "--results", str(tmp_path / "nowhere"), "--budget-ms", "1"]) == 2
    assert "jnet plan: error:" in capsys.readouterr().err


def test_full_resolution_networks_are_told_apart(tmp_path, monkeypatch) -> None:
    """With results.csv's output_size, a network read at its output resolution is drawn as a square."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    import jnet.study.figures
    from jnet.study.figures import plot_plan

    text = "model,head,input_size,output_size,seed,mean_jaccard,mean_dice\n"
    text += "elunet,jnet,16,256,0,0.5,0.5\nmalunet,none,256,256,0,0.75,0.75\nunet,jnet,32,256,0,0.25,0.25\n"
    (tmp_path / "results.csv").write_text(text)
    bench = [
        {"model": m, "head": h, "input_size": s, "latency_ms_median": t, "runtime": "onnxruntime"}
        for m, h, s, t in [("elunet", "jnet", 16, 1.0), ("malunet", "none", 256, 8.0), ("unet", "jnet", 32, 9.0)]
    ]
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    plan = make_plan(tmp_path, benchmark=tmp_path / "bench.json")
    full = {c.name: (c.output_size, c.full_resolution) for c in plan.candidates}
    assert full == {"elunet+jnet@16": (256, False), "malunet+none@256": (256, True), "unet+jnet@32": (256, False)}
    assert names(plan.front) == ["elunet+jnet@16", "malunet+none@256"]
    drawn = []

    def save(fig, path):
        ax = fig.axes[0]
        markers = {line.get_marker() for line in ax.lines if line.get_xdata().size}
        drawn.append((markers, [t.get_text() for t in ax.get_legend().get_texts()]))
        plt.close(fig)
        return path

    monkeypatch.setattr(jnet.study.figures, "save_figure", save)
    plot_plan(plan, tmp_path / "plan.png")
    ((markers, legend),) = drawn
    assert {"s", "o", "x"} <= markers and "full-resolution input, no head" in legend
    # without the column nothing is taken for full resolution
    (tmp_path / "results.csv").write_text(
        "model,head,input_size,seed,mean_jaccard,mean_dice\nmalunet,none,256,0,0.5,0.5\n"
    )
    assert not aggregate(read_results(tmp_path))[0].full_resolution
