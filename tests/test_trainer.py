"""The Trainer: its steps are hooks a variant overrides, and every run ends with val_scores.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jnet.data.prepare import SliceData
from jnet.metrics import SegmentationMetrics
from jnet.study.compare import run_scores
from jnet.training import SCORES_FILE, TrainConfig, Trainer, fit, load_training_data, read_scores
from jnet.training.checkpoint import read_checkpoint
from jnet.training.scores import checkpoint_scores
from jnet.training.trainer import _in_slice_order


def small_config(**overrides) -> TrainConfig:
    """Two validation patients of three slices each; the best epoch is an early one (asserted where it matters)."""
    values = dict(
        data="synthetic", data_options={"num_patients": 6, "slices_per_patient": 3}, val_fraction=0.34,
        output_size=64, model="unet", width=4, batch_size=4, epochs=4, lr=0.01, augment=True, threads=1,
    )  # fmt: skip
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def data() -> SliceData:
    return load_training_data(small_config())


def check_scores(run: Path, data: SliceData) -> str:
    """Assert that ``run``'s val_scores.csv is its best epoch's, slice by slice; return its text."""
    split = json.loads((run / "split.json").read_text())
    val = data.subset(np.isin(data.patient_id, split["val"]))
    scores = read_scores(run / SCORES_FILE)
    with open(run / SCORES_FILE, newline="") as f:
        assert [int(row["image"]) for row in csv.DictReader(f)] == list(range(len(val)))
    assert list(scores.patient_id) == list(val.patient_id.astype(str))
    truth = (val.masks > 0).reshape(len(val), -1).sum(axis=1)  # a different number for each slice here
    np.testing.assert_array_equal(scores.truth_pixels, truth)  # the rows are in the slices' order
    best = json.loads((run / "metrics.json").read_text())["best"]
    assert best["n_images"] == len(val)
    assert scores.dice.mean() == pytest.approx(best["mean_dice"], abs=1e-6)
    assert scores.jaccard.mean() == pytest.approx(best["mean_jaccard"], abs=1e-6)
    run_scores(run)  # the study's own check passes
    return (run / SCORES_FILE).read_text()


def test_a_run_ends_with_the_best_epochs_scores(tmp_path, data, monkeypatch) -> None:
    config = small_config(epochs=2)
    result = fit(config, data, tmp_path / "run")
    check_scores(tmp_path / "run", data)
    assert 0 < result["best"]["mean_jaccard"] < 1  # scores that tell the slices apart, not all 0 or 1
    again = checkpoint_scores(tmp_path / "run" / "checkpoint_best.pt")  # the best checkpoint, scored afresh
    written = read_scores(tmp_path / "run" / SCORES_FILE)
    np.testing.assert_allclose(written.jaccard, again.jaccard, rtol=0, atol=1e-12)
    monkeypatch.chdir(tmp_path / "run")
    before = sorted(p.name for p in Path().iterdir())
    fit(config, data)  # no run directory: nothing written
    assert sorted(p.name for p in Path().iterdir()) == before


class _Stop(Exception):
    pass


def test_resumed_after_its_best_epoch_the_run_rescores_the_best_checkpoint(tmp_path, data) -> None:
    config = small_config()
    whole = fit(config, data, tmp_path / "whole")
    best_epoch = whole["best"]["epoch"]
    assert best_epoch <= 2, f"precondition: the best epoch ({best_epoch}) comes before the interruption"
    expected = check_scores(tmp_path / "whole", data)

    def stop_after_two(row: dict) -> None:
        if row["epoch"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        fit(config, data, tmp_path / "cut", on_epoch=stop_after_two)
    assert not (tmp_path / "cut" / SCORES_FILE).exists()
    resumed = fit(config, data, tmp_path / "cut", resume=True)
    assert resumed["best"]["epoch"] == best_epoch and [r["epoch"] for r in resumed["history"]] == [1, 2, 3, 4]
    assert check_scores(tmp_path / "cut", data) == expected  # the same file as the uninterrupted run's

    # lost after the last epoch: a resume runs no epoch and scores checkpoint_best.pt again
    (tmp_path / "cut" / SCORES_FILE).unlink()
    (tmp_path / "cut" / "metrics.json").unlink()
    again = fit(config, data, tmp_path / "cut", resume=True)
    assert again["history"] == resumed["history"]
    assert check_scores(tmp_path / "cut", data) == expected


class Frozen(Trainer):
    """A variant that validates but never trains."""

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.frozen_epochs = [*getattr(self, "frozen_epochs", []), epoch]
        return {"train_loss": -1.0, "epoch_seconds": 1.0, "images_per_second": 0.0}


def test_a_variant_overrides_one_step(tmp_path, data) -> None:
    config = small_config(epochs=3)
    trainer = Frozen(config, data, tmp_path / "run")
    result = trainer.run()
    assert trainer.frozen_epochs == [1, 2, 3]
    assert [row["train_loss"] for row in result["history"]] == [-1.0, -1.0, -1.0]
    torch.manual_seed(config.seed)
    built = config.build_model(in_channels=1, num_classes=1).state_dict()
    weights = read_checkpoint(tmp_path / "run" / "checkpoint_last.pt")["state_dict"]
    assert all(torch.equal(built[k], weights[k]) for k in built)  # never trained
    assert len({row["val_mean_jaccard"] for row in result["history"]}) == 1 and result["best"]["epoch"] == 1
    check_scores(tmp_path / "run", data)
    trained = fit(config, data)  # the default steps do train
    assert [row["train_loss"] for row in trained["history"]] != [-1.0, -1.0, -1.0]


def test_validation_counts_gathered_in_rank_order_are_put_back_in_slice_order() -> None:
    n, world = 5, 2  # rank 0 scored slices 0, 2, 4; rank 1 slices 1, 3
    gathered = SegmentationMetrics(1)
    for rank in range(world):
        tp = torch.arange(rank, n, world).reshape(-1, 1)  # each slice's tp is its index
        gathered.add_counts(tp, torch.zeros_like(tp), torch.zeros_like(tp))
    tp, fp, _ = _in_slice_order(gathered, world).counts()
    assert tp.flatten().tolist() == [0, 1, 2, 3, 4] and fp.sum() == 0
    assert _in_slice_order(gathered, 1).counts()[0].flatten().tolist() == [0, 2, 4, 1, 3]  # one rank: unchanged
