"""The command line and the training loop behind ``jnet demo``, on tiny synthetic data."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys

import numpy as np
import pytest
import torch
from tqdm import tqdm

import jnet.cli.train
import jnet.study.demo
from jnet.cli import COMMANDS, build_parser, main
from jnet.cli.train import NOT_FLAGS, field_help, train_config_from_args
from jnet.data.prepare import SliceData, downsample, normalize_slices
from jnet.data.synthetic import make_synthetic
from jnet.deploy.benchmark import format_comparison_of_settings
from jnet.heads import list_heads
from jnet.model import JNet
from jnet.training import TrainConfig, evaluate, fit
from jnet.training.checkpoint import load_checkpoint, save_checkpoint
from jnet.training.evaluate import format_evaluation


def test_models_command(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "backbones: egeunet elunet malunet unet unet3plus unext" in out
    assert "heads:     jnet jnet-noskip jnet-single interp none" in out


def test_profile_json(capsys) -> None:
    assert main(["profile", "--model", "elunet", "--width", "4", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["head_params"] == 133
    model = JNet("elunet", 1, 16, 256, backbone_options={"width": 4})
    assert info["params"] == sum(p.numel() for p in model.parameters())
    assert info["scales"] == [[16, 16], [32, 32], [64, 64], [128, 128], [256, 256]]
    assert 0 < info["head_gmacs"] < info["gmacs"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "--head", "bicubic"], "jnet profile: error: unknown head 'bicubic'"),
        (["profile", "--model", "vnet"], "jnet profile: error: unknown model 'vnet'"),
        (["profile", "--input-size", "16", "--output-size", "200"], "not input size 16x16 times a power of two"),
        (["demo", "--heads", "none,bogus"], "jnet demo: error: unknown head 'bogus'"),
    ],
)
def test_bad_arguments_give_one_line(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def tiny_data(size: int = 64) -> SliceData:
    raw = make_synthetic(num_patients=4, slices_per_patient=4, size=size, seed=1)
    return SliceData(normalize_slices(raw["images"]), raw["masks"], raw["patient_id"])


def test_fit_writes_a_reproducible_run(tmp_path) -> None:
    data = tiny_data()
    config = TrainConfig(model="unet", width=2, head="jnet", input_size=16, output_size=64, epochs=2, batch_size=4)
    result = fit(config, data, tmp_path / "run")
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == [
        "checkpoint_best.pt", "checkpoint_last.pt", "config.yaml", "history.csv", "metrics.json", "split.json",
        "val_scores.csv",
    ]  # fmt: skip
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert not set(split["train"]) & set(split["val"])
    assert result["n_train"] + result["n_val"] == len(data) and result["head_params"] == 59
    assert 0 <= result["best"]["mean_jaccard"] <= 1
    # same seed, same numbers
    again = fit(config, data)
    assert again["final"]["mean_dice"] == result["final"]["mean_dice"]
    # the best checkpoint rebuilds the model alone and reproduces the best validation score
    model, _ = load_checkpoint(tmp_path / "run" / "checkpoint_best.pt")
    val = data.subset(np.isin(data.patient_id, split["val"]))
    scores = evaluate(model, downsample(val.images, 16), torch.from_numpy(val.masks))
    assert scores["mean_jaccard"] == pytest.approx(result["best"]["mean_jaccard"], abs=1e-12)
    assert scores["resolution"] == [64, 64] and scores["input_resolution"]["resolution"] == [16, 16]


def test_fit_rejects_mismatched_output_size() -> None:
    with pytest.raises(ValueError, match="masks are 64x64 but output_size is 256"):
        fit(TrainConfig(model="unet", width=2, epochs=1), tiny_data())


def test_demo_end_to_end(tmp_path, monkeypatch, capsys) -> None:
    tiny = {"num_patients": 4, "slices_per_patient": 6, "epochs": 1, "width": 2}
    monkeypatch.setattr(jnet.study.demo, "demo_settings", lambda quick: tiny)
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for head in ("none", "interp", "jnet"):
        assert f"\n{head} " in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"none", "interp", "jnet"}
    assert results["jnet"]["head_params"] == 133
    assert (tmp_path / "figure.png").stat().st_size > 1000


@pytest.mark.slow
def test_quick_demo_as_shipped(tmp_path, capsys) -> None:
    """`jnet demo --quick` itself (about a minute on 2 cores): J-Net beats the paper's baseline at 256x256."""
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    none, jnet_ = results["none"]["best"], results["jnet"]["best"]
    assert jnet_["mean_jaccard_global"] > none["mean_jaccard_global"]
    assert (tmp_path / "figure.png").is_file()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_module_adds_its_parser_and_runs(capsys) -> None:
    names = [module.__name__.rsplit(".", 1)[1] for module in COMMANDS]
    assert len(set(names)) == len(COMMANDS) == 13
    parsers = _subparsers(build_parser())
    assert list(parsers) == names  # one subcommand per module, in the loop's order
    for module, name in zip(COMMANDS, names, strict=True):
        assert callable(module.add_parser) and callable(module.run)
        assert parsers[name].get_default("func") is module.run
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    listed = capsys.readouterr().out
    assert all(f"\n    {name} " in listed for name in names)


#: TrainConfig fields that are not ``--field-name`` flags; the reason is in jnet.cli.train.NOT_FLAGS.
TRAIN_FLAG_EXCEPTIONS = {"data_options", "head_options", "loss_weights", "downsample_mode", "amp", "compiled_head"}
#: ``jnet train`` options that are not TrainConfig fields (or set one in their own way).
TRAIN_OWN_OPTIONS = {
    "--help", "--config", "--out", "--resume", "--overwrite", "--option", "--head-init", "--loss-weights",
    "--cascade-head",
}  # fmt: skip


def test_train_flags_are_the_train_config_fields() -> None:
    """A new TrainConfig field needs a decision: a help text (it becomes a flag) or an entry in NOT_FLAGS."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(NOT_FLAGS) == TRAIN_FLAG_EXCEPTIONS
    assert set(field_help()) == fields - TRAIN_FLAG_EXCEPTIONS
    train_parser = _subparsers(build_parser())["train"]
    flags = {s for a in train_parser._actions for s in a.option_strings if s.startswith("--")}
    flags -= {s for s in flags if s.startswith("--no-")}  # --no-augment
    assert flags - TRAIN_OWN_OPTIONS == {"--" + name.replace("_", "-") for name in fields - TRAIN_FLAG_EXCEPTIONS}
    head = next(a for a in train_parser._actions if "--head" in a.option_strings)
    assert all(name in head.help for name in list_heads())


def test_train_flags_set_the_config(tmp_path) -> None:
    argv = ["train", "--out", str(tmp_path), "--batch-size", "4", "--lr", "0.01", "--no-augment", "--folds", "3",
            "--head", "interp", "--option", "size=64", "--loss-weights", "0.5,1", "--head-init", "default"]  # fmt: skip
    config = train_config_from_args(build_parser().parse_args(argv))
    assert (config.batch_size, config.lr, config.augment, config.folds, config.head) == (4, 0.01, False, 3, "interp")
    assert config.data_options == {"size": 64} and config.head_options == {"init": "default"}
    assert config.compiled_head is True
    config = train_config_from_args(build_parser().parse_args([*argv, "--cascade-head"]))
    assert config.compiled_head is False and config.model_config(1, 1)["compiled_head"] is False
    assert config.loss_weights == [0.5, 1.0]
    assert config.epochs == TrainConfig().epochs  # not given: the config's default
    assert train_config_from_args(build_parser().parse_args([*argv, "--augment"])).augment is True


def test_format_evaluation() -> None:
    result = {
        "n_images": 12,
        "resolution": [64, 64],
        "dice": {"liver": 0.9, "tumour": 0.5},
        "jaccard": {"liver": 0.81818, "tumour": 1 / 3},
        "mean_dice": 0.7,
        "mean_jaccard": 0.575757,
        "mean_dice_global": 0.75,
        "mean_jaccard_global": 0.6,
        "input_resolution": {"resolution": [16, 16], "mean_dice": 0.65, "mean_jaccard": 0.5},
        "split": "val",
    }
    assert format_evaluation(result).splitlines() == [
        "12 images (val) at 64x64:",
        "  liver            Dice 0.9000  Jaccard 0.8182",
        "  tumour           Dice 0.5000  Jaccard 0.3333",
        "  mean             Dice 0.7000  Jaccard 0.5758  (global: 0.7500 / 0.6000)",
        "  at input resolution 16x16 against down-sampled truth (paper-style, not comparable): "
        "Dice 0.6500  Jaccard 0.5000",
    ]
    assert format_evaluation(result, "all").startswith("12 images (all) at 64x64:")


def test_format_comparison_of_settings() -> None:
    config = {"model": "elunet", "head": "jnet", "input_size": 16, "output_size": 256, "batch_size": 1}
    result = {
        "config_a": {**config, "runtime": "torch", "threads": None},
        "config_b": {**config, "runtime": "onnxruntime", "threads": 2, "onnx_path": "m.onnx", "head_form": "compiled"},
        "a": {"latency_ms_median": 4.0, "latency_ms_p90": 4.5},
        "b": {"latency_ms_median": 2.0, "latency_ms_p90": 2.25},
        "ratio": 0.5,
        "speedup": 2.0,
        "runs": 100,
        "warmup": 10,
        "environment": {"cpu": "Some CPU", "cpu_flags": ["avx2", "fma"], "cpu_count": 2, "torch": "2.4.0",
                        "onnxruntime": "1.19.0", "load_average": [0.5, 0.25, 0.125], "date": "2024-01-01"},
    }  # fmt: skip
    assert format_comparison_of_settings(result).splitlines() == [
        "a: elunet + jnet, 16 -> 256, torch, batch 1, threads default: median 4.000 ms, p90 4.500 ms",
        "b: elunet + jnet (compiled), 16 -> 256, onnxruntime m.onnx, batch 1, threads 2: median 2.000 ms, p90 2.250 ms",
        "ratio b/a 0.500 (b is 2.00x as fast as a); 100 alternated runs each after 10 warm-up",
        "  machine: Some CPU (avx2 fma), 2 cores; torch 2.4.0, onnxruntime 1.19.0; load average 0.50 0.25 0.12; "
        "2024-01-01",
    ]


def test_train_progress_bar_on_a_terminal(tmp_path, monkeypatch, capsys) -> None:
    """On a terminal a tqdm bar per epoch goes to stderr; the epoch lines go to stdout either way."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(jnet.cli.train, "tqdm", functools.partial(tqdm, mininterval=0))  # draw every batch
    argv = ["train", "--data", "synthetic", "--option", "num_patients=3", "--option", "slices_per_patient=4",
            "--output-size", "32", "--model", "unet", "--width", "2", "--batch-size", "2", "--epochs", "2",
            "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "epoch 1/2 loss" in out and "epoch 2/2 loss" in out
    assert "epoch 1/2" in err and "epoch 2/2" in err and "img/s=" in err and "loss=" in err
    assert "epoch 1/2 loss" not in err


def test_predict_progress_bar_on_a_terminal(tmp_path, monkeypatch, capsys) -> None:
    image = pytest.importorskip("PIL.Image")
    checkpoint = save_checkpoint(tmp_path / "m.pt", JNet("unet", 1, 16, 32, backbone_options={"width": 2}))
    for i in range(2):
        image.fromarray(np.full((32, 32), 50 * i, np.uint8)).save(tmp_path / f"s{i}.png")
    argv = ["predict", "--checkpoint", str(checkpoint), str(tmp_path / "s0.png"), str(tmp_path / "s1.png"),
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "1/2 " in out and "2/2 " in out and "s1.png" in out and not err  # not a terminal: a line per file
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([*argv, "--overwrite"]) == 0  # the masks of the first run are replaced only when asked
    out, err = capsys.readouterr()
    assert out == f"2 mask(s) written to {tmp_path / 'out'}\n"
    assert "2/2" in err and "s1.png" in err
