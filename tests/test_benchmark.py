"""Benchmarks: statistics by hand, short real runs of both runtimes, alternation, the CLI and its JSON."""

from __future__ import annotations

import json
import math
import shutil
import time

import pytest
import torch

from jnet.cli import main
from jnet.deploy.benchmark import TorchRunner, benchmark, build_model, model_from_onnx
from jnet.deploy.onnxrt import OnnxRunner
from jnet.deploy.timing import compare, cpu_model, environment, latency_stats, matmul_peak, time_calls
from jnet.model import JNet

TINY = ["--model", "unet", "--width", "2", "--input-size", "16", "--output-size", "64"]


def tiny() -> JNet:
    return build_model(model="unet", width=2, input_size=16, output_size=64)


def test_latency_stats_by_hand() -> None:
    stats = latency_stats([0.004, 0.001, 0.003, 0.002], batch_size=2)
    assert stats["latency_ms_median"] == pytest.approx(2.5)
    assert stats["latency_ms_p90"] == pytest.approx(3.7)  # linear interpolation between 3 and 4
    assert stats["latency_ms_mean"] == pytest.approx(2.5)
    assert stats["latency_ms_min"] == pytest.approx(1.0)
    assert stats["images_per_second"] == pytest.approx(800.0)
    with pytest.raises(ValueError, match="no timings"):
        latency_stats([])


def test_time_calls_warms_up_then_times() -> None:
    calls = []
    times = time_calls(lambda: calls.append(1), runs=5, warmup=2)
    assert len(calls) == 7 and len(times) == 5 and all(t >= 0 for t in times)
    with pytest.raises(ValueError, match="runs must be >= 1"):
        time_calls(lambda: None, runs=0)


def test_compare_alternates_and_gives_the_ratio() -> None:
    order: list[str] = []

    def a() -> None:
        order.append("a")
        time.sleep(0.001)

    def b() -> None:
        order.append("b")
        time.sleep(0.02)

    result = compare(a, b, runs=6, warmup=1, labels=("one", "three"))
    assert order[:2] == ["a", "b"]  # warm-up: both
    timed = order[2:]
    assert timed == ["a", "b", "b", "a"] * 3  # alternated, the first switching every round
    assert result["ratio"] == pytest.approx(result["three"]["latency_ms_median"] / result["one"]["latency_ms_median"])
    assert result["speedup"] == pytest.approx(1 / result["ratio"])
    assert result["ratio"] > 2  # 20 ms against 1 ms of sleep: robust to a loaded machine


def test_matmul_peak() -> None:
    peak = matmul_peak(threads=1, n=128, runs=3, warmup=1)
    assert peak["n"] == 128 and peak["threads"] == 1
    assert peak["gmacs_per_second"] == pytest.approx(128**3 / (peak["time_ms_median"] / 1e3) / 1e9)
    assert peak["gmacs_per_second"] > 0.1


def test_environment() -> None:
    env = environment(threads=1)
    for key in ("torch", "onnxruntime", "numpy", "python", "cpu", "cpu_count", "threads", "date", "load_average"):
        assert key in env
    assert env["threads"] == 1 and env["torch"] == torch.__version__ and env["cpu"] == cpu_model()


@pytest.mark.parametrize(
    "runtime",
    [
        "torch",
        "torchscript",
        "onnxruntime",
        pytest.param(
            "compile",
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile needs a C++ compiler"),
            ],
        ),
    ],
)
def test_benchmark_short_run(runtime: str) -> None:
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    threads = torch.get_num_threads()
    r = benchmark(tiny(), runtime=runtime, runs=5, warmup=1, threads=1, peak=True, peak_size=128, head_share=True)
    assert torch.get_num_threads() == threads  # restored
    assert (r["model"], r["head"], r["input_size"], r["output_size"], r["width"]) == ("unet", "jnet", 16, 64, 2)
    assert (r["runtime"], r["batch_size"], r["threads"], r["runs"], r["precision"]) == (runtime, 1, 1, 5, "fp32")
    assert 0 < r["latency_ms_min"] <= r["latency_ms_median"] <= r["latency_ms_p90"]
    assert r["latency_ms_median"] < 5_000
    assert r["gmacs_per_image"] == pytest.approx(222_272 / 1e9)  # the compiled head (tests/test_profile.py)
    assert r["gmacs_per_second"] == pytest.approx(r["gmacs_per_image"] * r["images_per_second"])
    assert r["fraction_of_peak"] == pytest.approx(r["gmacs_per_second"] / r["peak_gmacs_per_second"])
    # the share is 1 - (alternated backbone / full) ratio; its sign is left to timing (noisy under load)
    assert r["backbone_latency_ms_median"] > 0 and r["head_share"] < 1 and math.isfinite(r["head_share"])
    assert r["environment"]["threads"] == 1
    json.dumps(r)  # plain values only


def test_runners(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from jnet.deploy.export import export_onnx

    model = tiny()
    runner = TorchRunner(model, (2, 1, 16, 16), threads=1)
    runner()
    path = export_onnx(model, tmp_path / "m.onnx")
    onnx_runner = OnnxRunner(path, batch_size=4, threads=1)
    assert onnx_runner.input_shape == (4, 1, 16, 16)
    onnx_runner()
    assert model_from_onnx(path).config == model.config
    fixed = export_onnx(model, tmp_path / "fixed.onnx", dynamic_batch=False)
    with pytest.raises(ValueError, match="batch axis is fixed to 1"):
        OnnxRunner(fixed, batch_size=2)


def test_benchmark_errors() -> None:
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        benchmark(tiny(), runtime="tensorrt", runs=1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        benchmark(tiny(), batch_size=0, runs=1)


def test_benchmark_cli_appends_json(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    argv = ["benchmark", *TINY, "--runs", "3", "--warmup", "1", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "latency: median" in text and "machine:" in text
    assert main([*argv, "--runtime", "onnxruntime", "--input-size", "32", "--output-size", "64"]) == 0
    entries = json.loads(out.read_text())
    assert [(e["runtime"], e["input_size"]) for e in entries] == [("torch", 16), ("onnxruntime", 32)]
    assert all(e["latency_ms_median"] > 0 for e in entries)


def test_benchmark_cli_compare(tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "bench.json"
    argv = ["benchmark", *TINY, "--runs", "3", "--warmup", "1", "--threads", "1", "--compare", "runtime=onnxruntime"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ratio b/a" in text and "a: unet + jnet" in text and "onnxruntime" in text
    entries = json.loads(out.read_text())
    assert [e["runtime"] for e in entries] == ["torch", "onnxruntime"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ratio"] == pytest.approx(result["b"]["latency_ms_median"] / result["a"]["latency_ms_median"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--runtime", "tensorrt"], "unknown runtime 'tensorrt'"),
        (["--compare", "colour=red"], "--compare takes KEY=VALUE pairs"),
        (["--compare", "threads=two"], "--compare threads must be an integer"),
        (["--onnx", "missing.onnx"], "missing.onnx: no such ONNX file"),
        (["--onnx", "m.onnx", "--runtime", "torch"], "--onnx runs with --runtime onnxruntime"),
        (["--checkpoint", "missing.pt"], "missing.pt: no such checkpoint"),
    ],
)
def test_benchmark_cli_errors(extra: list[str], message: str, capsys) -> None:
    assert main(["benchmark", *TINY, "--runs", "1", *extra]) == 2
    err = capsys.readouterr().err
    assert "jnet benchmark: error:" in err and message in err and len(err.strip().splitlines()) == 1


def test_onnx_op_profile(tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    from jnet.deploy.benchmark import onnx_op_profile
    from jnet.deploy.export import export_onnx

    path = export_onnx(tiny(), tmp_path / "m.onnx")
    prof = onnx_op_profile(path, batch_size=2, threads=1, runs=3, top=4)
    assert len(prof["top"]) == 4 and prof["total_us"] > 0
    assert "Conv" in prof["by_op"] or "FusedConv" in prof["by_op"]
    assert sum(prof["by_op"].values()) == pytest.approx(prof["total_us"])
    assert prof["top"][0]["us"] >= prof["top"][-1]["us"]
    assert main(["benchmark", *TINY, "--runs", "2", "--runtime", "onnxruntime", "--ops", "3"]) == 0
    assert "ONNX Runtime nodes" in capsys.readouterr().out
    assert main(["benchmark", *TINY, "--runs", "2", "--ops", "3"]) == 2
    assert "--ops profiles ONNX Runtime's nodes" in capsys.readouterr().err


def test_compiled_runners_compute_the_same() -> None:
    from jnet.deploy.benchmark import CompiledTorchRunner

    model = tiny().eval()
    runner = CompiledTorchRunner(model, (2, 1, 16, 16), threads=1, runtime="torchscript")
    with torch.no_grad():
        torch.testing.assert_close(runner.model(runner.x), model(runner.x), rtol=1e-5, atol=1e-5)


def test_benchmark_cli_config_times_the_study_grid(tmp_path, capsys) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(
        "latency:\n  runtime: torch\n  threads: [1]\n  runs: 2\n  warmup: 0\n  output_size: 32\n"
        "  configs:\n    - {model: elunet, width: 4, input_size: 16, head: [none, jnet]}\n"
    )
    out = tmp_path / "latency.json"
    assert main(["benchmark", "--config", str(study), "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [(r["head"], r["input_size"], r["output_size"], r["threads"], r["runs"]) for r in results] == [
        ("none", 16, 32, 1, 2),
        ("jnet", 16, 32, 1, 2),
    ]
    assert all(r["full_resolution_input"] and r["width"] == 4 and r["runtime"] == "torch" for r in results)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[1/2] elunet + none @16, 1 thread(s): median ") and lines[1].startswith("[2/2]")
