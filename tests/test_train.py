"""jnet train / evaluate: config precedence, resume (exact on CPU), SIGKILL, distributed on gloo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from jnet.cli import main
from jnet.training import SCORES_FILE, TrainConfig, fit, load_training_data, read_scores
from jnet.training.checkpoint import load_checkpoint, read_checkpoint

TINY = ["--data", "synthetic", "--option", "num_patients=4", "--option", "slices_per_patient=4",
        "--output-size", "64", "--model", "unet", "--width", "2", "--batch-size", "4"]  # fmt: skip


def tiny_config(**overrides) -> TrainConfig:
    values = dict(
        data="synthetic", data_options={"num_patients": 4, "slices_per_patient": 4}, output_size=64,
        model="unet", width=2, batch_size=4, epochs=4, augment=True,
    )  # fmt: skip
    return TrainConfig(**{**values, **overrides})


def test_config_file_then_flags(tmp_path, capsys) -> None:
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"epochs": 1, "lr": 0.01, "head": "interp"}))
    assert main(["train", "--config", str(tmp_path / "run.yaml"), *TINY, "--lr", "0.005", "--out",
                 str(tmp_path / "run")]) == 0  # fmt: skip
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["head"] == "interp"  # from the file
    assert saved["lr"] == 0.005 and saved["width"] == 2  # flags win
    assert "epoch 1/1" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "checkpoint_best.pt"),
                 "--out", str(tmp_path / "m.json")]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {"dice", "jaccard", "mean_dice", "mean_jaccard", "resolution", "n_images"} <= set(metrics)
    assert metrics["resolution"] == [64, 64] and list(metrics["dice"]) == ["lesion"]
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert metrics["n_images"] == 4 * len(split["val"])
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "checkpoint_best.pt"), "--split", "all"]) == 0
    assert "16 images (all)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", *TINY], "give --out RUN_DIR"),
        (["train", *TINY, "--model", "vnet", "--out", "X"], "unknown model 'vnet'"),
        (["train", *TINY, "--input-size", "128", "--out", "X"], "output_size 64 is smaller than input_size 128"),
        (["train", *TINY, "--input-size", "24", "--out", "X"], "output size 64x64 is not input size 24x24"),
        (["train", "--config", "missing.yaml", "--out", "X"], "missing.yaml: no such config file"),
        (["evaluate", "--checkpoint", "nothing.pt"], "nothing.pt: no such checkpoint"),
        (["train", "--data", "nowhere/", "--out", "X"], "nowhere/: no such file or folder"),
    ],
)
def test_bad_arguments(argv: list[str], message: str, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_config_key(tmp_path) -> None:
    (tmp_path / "bad.yaml").write_text("epochz: 3\n")
    with pytest.raises(ValueError, match=r"unknown setting.*epochz"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")


class _Stop(Exception):
    pass


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path) -> None:
    config = tiny_config()
    data = load_training_data(config)
    whole = fit(config, data, tmp_path / "whole")

    def stop_after_two(row: dict) -> None:
        if row["epoch"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        fit(config, data, tmp_path / "cut", on_epoch=stop_after_two)
    assert read_checkpoint(tmp_path / "cut" / "checkpoint_last.pt")["epoch"] == 2
    resumed = fit(config, data, tmp_path / "cut", resume=True)
    assert resumed["epochs_run"] == 4 and [r["epoch"] for r in resumed["history"]] == [1, 2, 3, 4]
    a = read_checkpoint(tmp_path / "whole" / "checkpoint_last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "cut" / "checkpoint_last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["final"] == whole["final"]
    csv_rows = (tmp_path / "cut" / "history.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 5


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path) -> None:
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "jnet", "train", *TINY, "--epochs", "200", "--out", str(run)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (run / "checkpoint_last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere inside a later epoch, possibly mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    epoch = read_checkpoint(run / "checkpoint_last.pt")["epoch"]
    assert 1 <= epoch < 200
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["epochs"] = epoch + 2  # finish quickly: resume, two more epochs
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--resume", str(run)]) == 0
    assert read_checkpoint(run / "checkpoint_last.pt")["epoch"] == epoch + 2
    model, _ = load_checkpoint(run / "checkpoint_best.pt")
    assert model(torch.zeros(1, 1, 16, 16)).shape == (1, 1, 64, 64)


@pytest.mark.slow
def test_torchrun_two_processes_on_gloo(tmp_path) -> None:
    run, seen_dir = tmp_path / "ddp", tmp_path / "seen"
    worker = Path(__file__).with_name("ddp_worker.py")
    done = _torchrun(worker, seen_dir, "train", *TINY, "--epochs", "2", "--threads", "1", "--out", str(run))
    assert done.stdout.count("best epoch") == 1  # only rank 0 reports
    seen = [json.loads((seen_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    split = json.loads((run / "split.json").read_text())
    n_train = 4 * len(split["train"])
    for epoch in ("1", "2"):
        a, b = set(seen[0][epoch]), set(seen[1][epoch])
        per_rank = n_train // 2 // 4 * 4  # each rank's half, in whole batches of 4
        assert len(a) == len(b) == per_rank and not a & b  # the ranks load disjoint slices
    assert seen[0]["1"] != seen[0]["2"]  # reshuffled every epoch
    # only rank 0 wrote, and the checkpoint loads like a single-process one
    model, ckpt = load_checkpoint(run / "checkpoint_best.pt")
    single = tiny_config(epochs=1).build_model(in_channels=1, num_classes=1)
    assert list(ckpt["state_dict"]) == list(single.state_dict())
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 1, 64, 64)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["final"]["n_images"] == metrics["n_val"] == 4 * len(split["val"])  # gathered from both ranks
    data = load_training_data(tiny_config())
    val = data.subset(np.isin(data.patient_id, split["val"]))
    written = _check_scores(run, val, metrics["best"])
    # lost after the last epoch: the resume runs no epoch, both ranks score checkpoint_best.pt again
    (run / SCORES_FILE).unlink()
    (run / "metrics.json").unlink()
    _torchrun(worker, seen_dir, "train", "--resume", str(run))
    assert _check_scores(run, val, json.loads((run / "metrics.json").read_text())["best"]) == written


def _torchrun(worker: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _check_scores(run: Path, val, best: dict) -> str:
    """val_scores.csv holds every validation slice, in the slices' order, and averages to the best metrics."""
    scores = read_scores(run / SCORES_FILE)
    assert list(scores.patient_id) == list(val.patient_id.astype(str))
    truth = (val.masks > 0).reshape(len(val), -1).sum(axis=1)  # not in the ranks' order (0, 2, 1, 3)
    np.testing.assert_array_equal(scores.truth_pixels, truth)
    assert scores.dice.mean() == pytest.approx(best["mean_dice"], abs=1e-6)
    assert scores.jaccard.mean() == pytest.approx(best["mean_jaccard"], abs=1e-6)
    return (run / SCORES_FILE).read_text()


def test_split_file(tmp_path) -> None:
    from jnet.training import make_split

    pid = np.repeat(["a", "b", "c", "d"], 3)
    (tmp_path / "s.json").write_text(json.dumps({"train": ["a", "b", "c"], "val": ["d"]}))
    assert make_split(TrainConfig(split_file=str(tmp_path / "s.json")), pid)["val"] == ["d"]
    (tmp_path / "x.json").write_text(json.dumps({"train": ["a", "zz"], "val": ["d"]}))
    with pytest.raises(ValueError, match=r"x\.json: patients not in the data: zz"):
        make_split(TrainConfig(split_file=str(tmp_path / "x.json")), pid)
    (tmp_path / "o.json").write_text(json.dumps({"train": ["a", "d"], "val": ["d"]}))
    with pytest.raises(ValueError, match="share patients"):
        make_split(TrainConfig(split_file=str(tmp_path / "o.json")), pid)
    config = TrainConfig(folds=4, fold=1)
    folds = make_split(config, pid)
    assert len(folds["val"]) == 1 and folds["k"] == 4


def test_too_few_slices_for_a_batch() -> None:
    config = tiny_config(batch_size=64)
    with pytest.raises(ValueError, match="fewer than one batch of 64"):
        fit(config, load_training_data(config))
