"""The command line used as a hostile new user would (issue 25).

Every refused input ends in one line, ``jnet CMD: error: ...``, and exit code 2 (Ctrl-C: 130), and
no file that was there before changes: each case snapshots every file's bytes and modification
time under its folder before and after the command. No command overwrites a file it did not
write in this invocation unless ``--overwrite`` asks it to, and even then never an input.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import jnet.cli.models
from jnet.cli import main, one_line
from jnet.io import atomic_write, read_json
from jnet.training import TrainConfig, Trainer, read_checkpoint

Image = pytest.importorskip("PIL.Image")
nib = pytest.importorskip("nibabel")

#: A run of a second or two on one thread: 3 patients x 2 slices at 32x32, U-Net of width 2.
TINY = ["--data", "synthetic", "--option", "num_patients=3", "--option", "slices_per_patient=2",
        "--output-size", "32", "--model", "unet", "--width", "2", "--batch-size", "2", "--threads", "1"]  # fmt: skip

#: The commands that write files; each has at least one case below.
WRITING_COMMANDS = {"train", "evaluate", "predict", "export", "sweep", "compare", "benchmark", "plan", "demo", "data"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One finished run of one epoch (the inputs the cases copy)."""
    run, threads = tmp_path_factory.mktemp("tiny") / "run", torch.get_num_threads()
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run)]) == 0
    torch.set_num_threads(threads)  # --threads 1 sets the process's; the other test modules keep theirs
    return run


@pytest.fixture
def world(tmp_path: Path, tiny_run: Path) -> Path:
    """A folder of what a user has: runs, a checkpoint, scans, their own notes, broken files."""
    t = tmp_path
    shutil.copytree(tiny_run, t / "run")
    shutil.copyfile(tiny_run / "checkpoint_best.pt", t / "c.pt")
    (shutil.copytree(tiny_run, t / "stopped") / "checkpoint_last.pt").unlink()  # killed in epoch 1
    (shutil.copytree(tiny_run, t / "broken") / "config.yaml").write_text("epochs: [1,\n")
    for folder in ("img", "other", "vol", "notes", "emptydir"):
        (t / folder).mkdir()
    image = np.zeros((32, 32), np.uint8)
    image[8:20, 8:20] = 200
    for path in (t / "img" / "a.png", t / "other" / "a.png", t / "img" / "a.tif"):
        Image.fromarray(image).save(path)
    volume = np.random.default_rng(0).random((32, 32, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(t / "vol" / "a.nii.gz"))
    (t / "notes" / "config.yaml").write_text("my notes: keep them\n")
    (t / "notes" / "readme.txt").write_text("mine\n")
    (t / "bad.yaml").write_text("epochs: [1,\n")
    (t / "ten.yaml").write_text("epochs: ten\n")
    (t / "lr.yaml").write_text("lr: [1]\n")
    (t / "file.txt").write_text("a file\n")
    (t / "m.json").write_text('{"mine": 1}\n')
    (t / "rand.pt").write_bytes(np.random.default_rng(1).bytes(4096))
    (t / "split.txt").write_text("train: [a]\n")
    return t


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: its bytes and modification time (ns)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


R = "{t}/c.pt"  # the checkpoint
CASES = [
    # --- data loss: predict writes over its inputs, or two inputs onto one mask
    ("predict-png-into-its-folder", ["predict", "--checkpoint", R, "{t}/img/a.png", "--out", "{t}/img"],
     "a.png: its mask {t}/img/a.png would replace the input itself"),
    ("predict-nifti-into-its-folder", ["predict", "--checkpoint", R, "{t}/vol/a.nii.gz", "--out", "{t}/vol"],
     "its mask {t}/vol/a.nii.gz would replace the input itself"),
    ("predict-overwrite-never-an-input",
     ["predict", "--checkpoint", R, "{t}/img/a.png", "--out", "{t}/img", "--overwrite"],
     "would replace the input itself"),
    ("predict-out-is-the-input-file", ["predict", "--checkpoint", R, "{t}/img/a.png", "--out", "{t}/img/a.png"],
     "is a file; --out names a folder"),
    ("predict-same-name-two-folders",
     ["predict", "--checkpoint", R, "{t}/img/a.png", "{t}/other/a.png", "--out", "{t}/masks"],
     "would both be written to"),
    ("predict-png-and-tif-one-mask",
     ["predict", "--checkpoint", R, "{t}/img/a.png", "{t}/img/a.tif", "--out", "{t}/masks"],
     "would both be written to"),
    ("predict-existing-mask", ["predict", "--checkpoint", R, "{t}/img/a.png", "--out", "{t}/other"],
     "other/a.png: already exists; give --overwrite"),
    # --- data loss: export over its checkpoint or another file
    ("export-over-its-checkpoint", ["export", "--checkpoint", R, "--out", R], "c.pt: is an input of this command"),
    ("export-over-its-checkpoint-overwrite", ["export", "--checkpoint", R, "--out", R, "--overwrite"],
     "c.pt: is an input of this command"),
    ("export-existing-file", ["export", "--checkpoint", R, "--out", "{t}/m.json"], "m.json: already exists"),
    ("export-out-is-a-folder", ["export", "--checkpoint", R, "--out", "{t}/emptydir"], "emptydir: is a folder"),
    # --- data loss: train over a folder that is not a resumable run
    ("train-over-run-stopped-in-epoch-1", ["train", *TINY, "--out", "{t}/stopped"], "stopped in its first epoch"),
    ("train-over-users-folder", ["train", *TINY, "--out", "{t}/notes"], "is not empty (config.yaml, readme.txt)"),
    ("train-over-finished-run", ["train", *TINY, "--out", "{t}/run"], "already holds a run; continue it with"),
    ("train-out-is-a-file", ["train", *TINY, "--out", "{t}/file.txt"], "file.txt: is a file; --out names a folder"),
    # --- malformed YAML, on every path that reads one
    ("train-config-bad-yaml", ["train", "--config", "{t}/bad.yaml", "--out", "{t}/new"], "bad.yaml: not valid YAML"),
    ("resume-config-bad-yaml", ["train", "--resume", "{t}/broken"], "config.yaml: not valid YAML"),
    ("sweep-bad-yaml", ["sweep", "--config", "{t}/bad.yaml", "--out", "{t}/sw"], "bad.yaml: not valid YAML"),
    ("compare-bad-yaml", ["compare", "--results", "{t}/run", "--config", "{t}/bad.yaml"], "bad.yaml: not valid YAML"),
    ("benchmark-bad-yaml", ["benchmark", "--config", "{t}/bad.yaml"], "bad.yaml: not valid YAML"),
    ("plan-bad-yaml", ["plan", "--results", "{t}/run", "--config", "{t}/bad.yaml"], "bad.yaml: not valid YAML"),
    ("data-option-bad-yaml", ["data", "--option", "size=[1"], "data option 'size=[1': the value is not valid YAML"),
    # --- --cache-dir names a file
    ("train-cache-dir-is-a-file", ["train", *TINY, "--cache-dir", "{t}/file.txt", "--out", "{t}/new"],
     "file.txt: is a file"),
    ("data-cache-dir-is-a-file", ["data", "--cache-dir", "{t}/file.txt"], "file.txt: is a file; --cache-dir"),
    # --- output files checked before the work
    ("evaluate-out-is-a-folder", ["evaluate", "--checkpoint", R, "--out", "{t}/emptydir"], "emptydir: is a folder"),
    ("evaluate-out-in-missing-folder", ["evaluate", "--checkpoint", R, "--out", "{t}/missing/m.json"],
     "missing: no such folder"),
    ("evaluate-out-exists", ["evaluate", "--checkpoint", R, "--out", "{t}/m.json"], "m.json: already exists"),
    ("evaluate-scores-exists", ["evaluate", "--checkpoint", R, "--scores", "{t}/m.json"], "m.json: already exists"),
    ("evaluate-out-is-the-checkpoint", ["evaluate", "--checkpoint", R, "--out", R, "--overwrite"],
     "c.pt: is an input of this command"),
    ("compare-out-exists", ["compare", "--results", "{t}/run", "--pair", "a@16", "b@16", "--out", "{t}/m.json"],
     "m.json: already exists"),
    ("plan-plot-exists", ["plan", "--results", "{t}/run", "--plot", "{t}/img/a.png"], "a.png: already exists"),
    ("benchmark-out-not-a-results-list", ["benchmark", "--out", "{t}/m.json"],
     "m.json: exists but is not a JSON list of jnet benchmark results"),
    ("benchmark-train-out", ["benchmark", "--train", "--out", "{t}/x.json"], "--train does not write it"),
    ("demo-out-not-empty", ["demo", "--out", "{t}/notes"], "notes: is not empty; give --overwrite"),
    ("sweep-out-not-a-sweep", ["sweep", "--config", "{t}/any.yaml", "--out", "{t}/notes"], "holds no sweep"),
    ("sweep-out-is-a-file", ["sweep", "--config", "{t}/any.yaml", "--out", "{t}/file.txt"], "file.txt: is a file"),
    # --- --resume: flags it would ignore, folders it cannot resume
    ("resume-more-epochs-onecycle", ["train", "--resume", "{t}/run", "--epochs", "5"],
     "the onecycle learning-rate schedule"),
    ("resume-other-model", ["train", "--resume", "{t}/run", "--model", "elunet", "--lr", "0.1"],
     "--model ('unet' -> 'elunet'), --lr (0.002 -> 0.1)"),
    ("resume-with-config", ["train", "--resume", "{t}/run", "--config", "{t}/ten.yaml"], "leave out --config"),
    ("resume-with-overwrite", ["train", "--resume", "{t}/run", "--overwrite"], "--resume continues the run"),
    ("resume-users-folder", ["train", "--resume", "{t}/notes"], "notes: not a jnet run"),
    ("resume-missing-folder", ["train", "--resume", "{t}/nowhere"], "nowhere: no such run folder"),
    # --- misleading messages
    ("random-bytes-checkpoint", ["evaluate", "--checkpoint", "{t}/rand.pt"],
     "rand.pt: not a checkpoint (not a file that torch.save writes)"),
    ("train-split-file-not-json", ["train", *TINY, "--split-file", "{t}/split.txt", "--out", "{t}/new"],
     "split.txt: not valid JSON"),
    ("evaluate-split-file-not-json", ["evaluate", "--checkpoint", R, "--split-file", "{t}/split.txt"],
     "split.txt: not valid JSON"),
    ("config-epochs-ten", ["train", "--config", "{t}/ten.yaml", "--out", "{t}/new"],
     "ten.yaml: setting epochs must be an integer, got 'ten'"),
    ("config-lr-list", ["train", "--config", "{t}/lr.yaml", "--out", "{t}/new"],
     "lr.yaml: setting lr must be a number, got [1]"),
    ("train-loss-weights-not-numbers", ["train", *TINY, "--loss-weights", "a,b", "--out", "{t}/new"],
     "--loss-weights takes all, final or numbers"),
    ("predict-modalities-not-numbers",
     ["predict", "--checkpoint", R, "{t}/vol/a.nii.gz", "--out", "{t}/masks", "--modalities", "first"],
     "--modalities takes channel numbers"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_refused_in_one_line_and_nothing_changes(argv: list[str], message: str, world: Path, capsys) -> None:
    before = snapshot(world)
    assert main([a.replace("{t}", str(world)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"jnet {argv[0]}: error: "), err
    assert message.replace("{t}", str(world)) in err and "Traceback" not in err, err
    assert snapshot(world) == before  # nothing changed, nothing added (no .tmp file either)


@pytest.mark.parametrize(
    ("argv", "folder"),
    [
        (["train", *TINY, "--out", "{t}/ro/run"], "ro"),
        (["predict", "--checkpoint", R, "{t}/img/a.png", "--out", "{t}/ro"], "ro"),
        (["evaluate", "--checkpoint", R, "--out", "{t}/ro/m.json"], "ro"),
        (["export", "--checkpoint", R, "--out", "{t}/ro/m.onnx"], "ro"),
        (["train", "--resume", "{t}/run"], "run"),
    ],
    ids=["train", "predict", "evaluate", "export", "resume"],
)
def test_read_only_folder(argv: list[str], folder: str, world: Path, monkeypatch, capsys) -> None:
    """A folder that cannot take files, checked first (as root, chmod does not stop writes: os.access is faked)."""
    (world / "ro").mkdir()
    denied, real_access = world / folder, os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != denied and real_access(path, mode, **kw))
    before = snapshot(world)
    assert main([a.replace("{t}", str(world)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{denied}: folder is not writable" in err, err
    assert snapshot(world) == before


def test_every_writing_command_has_cases() -> None:
    assert {argv[0] for _, argv, _ in CASES} >= WRITING_COMMANDS
    assert len(CASES) >= 20


def test_overwrite_replaces_only_what_it_names(world: Path, capsys) -> None:
    """--overwrite lets a command replace its own kind of output; the user's other files stay."""
    t = str(world)
    assert main(["predict", "--checkpoint", R.format(t=t), f"{t}/img/a.png", "--out", f"{t}/other", "--overwrite"]) == 0
    assert (world / "other" / "a.png").read_bytes() != (world / "img" / "a.png").read_bytes()  # now a mask
    assert main(["evaluate", "--checkpoint", f"{t}/c.pt", "--split", "all", "--out", f"{t}/m.json", "--overwrite"]) == 0
    assert "mean_jaccard" in json.loads((world / "m.json").read_text())
    readme = (world / "notes" / "readme.txt").stat().st_mtime_ns
    assert main(["train", *TINY, "--epochs", "1", "--out", f"{t}/notes", "--overwrite"]) == 0
    assert (world / "notes" / "readme.txt").stat().st_mtime_ns == readme  # not a file of a run: left alone
    assert yaml.safe_load((world / "notes" / "config.yaml").read_text())["width"] == 2  # the run's, not the notes
    capsys.readouterr()


def test_full_disk_is_one_line_leaves_no_tmp_file_and_the_run_resumes(tmp_path: Path, monkeypatch, capsys) -> None:
    """ENOSPC while checkpoint_last.pt of epoch 2 is written: torch's own error becomes the OSError it wraps."""
    run, real_save, calls = tmp_path / "run", torch.save, []

    def full_disk(obj, f, *args, **kwargs):
        if "checkpoint_last" in getattr(f, "name", ""):
            calls.append(f.name)
            if len(calls) == 2:
                f.write(b"PK\x03\x04 half a checkpoint")
                try:
                    raise OSError(errno.ENOSPC, "No space left on device")
                except OSError:  # what torch does: its writer fails on the next position check
                    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    assert main(["train", *TINY, "--epochs", "2", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err == (f"jnet train: error: {run / 'checkpoint_last.pt'}: No space left on device; the run in {run} "
                   f"resumes with: jnet train --resume {run}\n")  # fmt: skip
    assert not list(run.glob("*.tmp*")) and read_checkpoint(run / "checkpoint_last.pt")["epoch"] == 1
    monkeypatch.setattr(torch, "save", real_save)
    assert main(["train", "--resume", str(run)]) == 0
    assert read_checkpoint(run / "checkpoint_last.pt")["epoch"] == 2


def test_full_disk_in_epoch_1_then_resume_starts_again_and_says_so(tmp_path: Path, monkeypatch, capsys) -> None:
    run, real_save = tmp_path / "run", torch.save

    def full_disk(obj, f, *args, **kwargs):
        if "checkpoint_last" in getattr(f, "name", ""):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run)]) == 2
    assert "checkpoint_last.pt: No space left on device; the run in" in capsys.readouterr().err
    assert (run / "checkpoint_best.pt").is_file() and not (run / "checkpoint_last.pt").exists()
    monkeypatch.setattr(torch, "save", real_save)
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run)]) == 2  # not silently over it ...
    assert "stopped in its first epoch (no checkpoint_last.pt); start it again with --resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(run)]) == 0  # ... but --resume starts it again, and says so
    assert "no checkpoint_last.pt (the run stopped in its first epoch): it starts again at epoch 1" in (
        capsys.readouterr().out
    )
    assert read_checkpoint(run / "checkpoint_last.pt")["epoch"] == 1


def test_ctrl_c_in_training_says_where_and_how_to_resume(tmp_path: Path, monkeypatch, capsys) -> None:
    run, real_epoch = tmp_path / "run", Trainer.train_epoch

    def interrupted_in_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted_in_2)
    assert main(["train", *TINY, "--epochs", "3", "--out", str(run)]) == 130
    assert capsys.readouterr().err == (
        f"jnet train: interrupted in epoch 2 of 3 (1 finished and saved); the run in {run} resumes with: "
        f"jnet train --resume {run}\n"
    )
    monkeypatch.setattr(Trainer, "train_epoch", real_epoch)
    assert main(["train", "--resume", str(run)]) == 0
    assert read_checkpoint(run / "checkpoint_last.pt")["epoch"] == 3


def test_sigint_to_a_training_process(tmp_path: Path) -> None:
    """A real Ctrl-C (SIGINT) to ``python -m jnet train``: exit 130 and one line, no traceback."""
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "jnet", "train", *TINY, "--epochs", "20000", "--out", str(run)]  # never ends alone
    # a background job inherits SIGINT ignored (and Python then never raises KeyboardInterrupt): restore it
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=restore)
    deadline = time.time() + 60
    while not (run / "checkpoint_last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and err.startswith("jnet train: interrupted in epoch "), err
    assert err.endswith(f"the run in {run} resumes with: jnet train --resume {run}\n")
    assert not list(run.glob("*.tmp*"))


def test_ctrl_c_in_any_command_is_one_line_and_130(monkeypatch, capsys) -> None:
    def interrupted() -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(jnet.cli.models, "list_models", interrupted)
    assert main(["models"]) == 130
    assert capsys.readouterr().err == "jnet models: interrupted\n"


def test_resume_extends_a_constant_schedule_exactly(tmp_path: Path, capsys) -> None:
    """More epochs on --resume are honoured where the schedule does not depend on them; the result is the run
    that asked for them from the start. --threads and --device may change; config.yaml records the change."""
    constant = [*TINY, "--schedule", "constant"]
    assert main(["train", *constant, "--epochs", "1", "--out", str(tmp_path / "short")]) == 0
    assert main(["train", "--resume", str(tmp_path / "short"), "--epochs", "2", "--device", "cpu"]) == 0
    assert "resuming with epochs 2 (was 1), device 'cpu' (was 'auto')" in capsys.readouterr().out
    assert main(["train", *constant, "--epochs", "2", "--device", "cpu", "--out", str(tmp_path / "whole")]) == 0
    a = read_checkpoint(tmp_path / "short" / "checkpoint_last.pt")
    b = read_checkpoint(tmp_path / "whole" / "checkpoint_last.pt")
    assert a["epoch"] == b["epoch"] == 2 and all(
        torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]
    )
    assert (tmp_path / "short" / "config.yaml").read_text() == (tmp_path / "whole" / "config.yaml").read_text()
    assert main(["train", "--resume", str(tmp_path / "short"), "--epochs", "1"]) == 2
    assert "has already finished 2 epochs" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": "ten"}, "setting epochs must be an integer, got 'ten'"),
        ({"lr": [1]}, "setting lr must be a number, got [1]"),
        ({"epochs": True}, "setting epochs must be an integer, got True"),
        ({"augment": "yes"}, "setting augment must be true or false, got 'yes'"),
        ({"width": 2.5}, "setting width must be an integer or null, got 2.5"),
        ({"data_options": [1]}, "setting data_options must be a mapping, got [1]"),
        ({"loss_weights": ["a"]}, "setting loss_weights must be a string or a list of numbers or null"),
        ({"head": None}, "setting head must be a string, got None"),
    ],
)
def test_config_types_name_the_setting(values: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"^{message}".replace("[", r"\[").replace("]", r"\]")):
        TrainConfig.from_dict(values)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match=r"run\.yaml: setting "):
        TrainConfig.from_yaml(tmp_path / "run.yaml")


def test_config_types_accept_what_yaml_gives() -> None:
    config = TrainConfig.from_dict({"lr": "1e-3", "val_fraction": 0, "loss_weights": [1, 0.5], "epochs": np.int64(3)})
    assert (config.lr, config.val_fraction, config.loss_weights) == (0.001, 0.0, [1.0, 0.5])
    assert type(config.epochs) is int and config.epochs == 3


def test_checkpoint_messages(tmp_path: Path) -> None:
    """Random bytes or text are "not a checkpoint", not a file that "could run code"; a pickled function is."""
    (tmp_path / "rand.pt").write_bytes(np.random.default_rng(0).bytes(2000))
    (tmp_path / "text.pt").write_text("hello\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"model_config": {}, "state_dict": {}, "hook": print}, tmp_path / "code.pt")
    for name in ("rand", "text"):
        with pytest.raises(ValueError, match=rf"{name}\.pt: not a checkpoint \(not a file that torch\.save writes\)$"):
            read_checkpoint(tmp_path / f"{name}.pt")
    with pytest.raises(ValueError, match=r"empty\.pt: an empty file, not a checkpoint"):
        read_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(ValueError, match=r"code\.pt: refused to load: .*\((builtins\.)?print: it could run code\)"):
        read_checkpoint(tmp_path / "code.pt")
    with pytest.raises(ValueError, match=r"is a folder, not a checkpoint"):
        read_checkpoint(tmp_path)


def test_a_failed_write_names_the_target_and_leaves_no_tmp_file(tmp_path: Path) -> None:
    target = tmp_path / "c.pt"
    with pytest.raises(OSError, match="No space left") as info, atomic_write(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert one_line(info.value) == f"{target}: No space left on device"
    assert not list(tmp_path.iterdir())


def test_read_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text("{'train': }")
    with pytest.raises(ValueError, match=r"s\.json: not valid JSON \(Expecting"):
        read_json(tmp_path / "s.json")
    with pytest.raises(FileNotFoundError, match=r"gone\.json: no such split file"):
        read_json(tmp_path / "gone.json", "split file")
    (tmp_path / "b.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"b\.json: not a text file"):
        read_json(tmp_path / "b.json")


def test_mask_paths_see_through_links(tmp_path: Path) -> None:
    """A mask whose file is a link to an input would write through it: refused like the input itself."""
    from jnet.deploy.predict import mask_paths

    (tmp_path / "scans").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "scans" / "x.png").write_bytes(b"scan")
    (tmp_path / "masks" / "x.png").symlink_to(tmp_path / "scans" / "x.png")
    with pytest.raises(ValueError, match=r"scans/x\.png: its mask .*masks/x\.png would replace the input itself"):
        mask_paths([tmp_path / "scans" / "x.png"], tmp_path / "masks", overwrite=True)
    assert mask_paths([tmp_path / "scans" / "x.png"], tmp_path / "new") == [tmp_path / "new" / "x.png"]
