"""The command line and the training loop behind ``jnet demo``, on tiny synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import jnet.study.demo
from jnet.cli import main
from jnet.data.prepare import SliceData, downsample, normalize_slices
from jnet.data.synthetic import make_synthetic
from jnet.model import JNet
from jnet.training import TrainConfig, evaluate, fit
from jnet.training.checkpoint import load_checkpoint


def test_models_command(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "backbones: elunet unet unet3plus" in out
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
