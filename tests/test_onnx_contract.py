"""The ONNX file is the device's contract: its metadata says what to do before and after the graph,
and the torch-free runner (src/jnet_runner) that reads it gives jnet predict's masks, voxel for voxel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
nib = pytest.importorskip("nibabel")
Image = pytest.importorskip("PIL.Image")

from jnet.deploy.benchmark import model_from_onnx  # noqa: E402
from jnet.deploy.contract import prediction_settings  # noqa: E402
from jnet.deploy.export import convert_fp16, export_checkpoint, export_onnx, read_metadata  # noqa: E402
from jnet.deploy.predict import predict_files  # noqa: E402
from jnet.model import JNet  # noqa: E402
from jnet.models import registry  # noqa: E402
from jnet.training.checkpoint import save_checkpoint  # noqa: E402
from jnet_runner import main as runner_main  # noqa: E402
from jnet_runner import read_png  # noqa: E402

PRE_KEYS = {"format", "input", "channels", "modalities", "normalization", "orientation", "fit", "downsample", "order",
            "source"}  # fmt: skip
POST_KEYS = {"format", "output", "num_classes", "upsample_logits", "decision", "threshold", "threshold_rule",
             "argmax_ties", "class_names", "labels", "back_to_input", "nifti", "png"}  # fmt: skip
#: the runner as a device runs it: torch, Pillow and jnet cannot be imported
NO_TORCH = (
    "import sys; sys.modules['torch'] = None; sys.modules['PIL'] = None; sys.modules['jnet'] = None; "
    "from jnet_runner import main; sys.exit(main(sys.argv[1:]))"
)


class _Tiny(nn.Module):
    """Two seeded convs (with a batch norm to fold): logits that follow the image, so labels are mixed."""

    def __init__(self, in_channels: int = 1, num_classes: int = 1) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(2)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, num_classes, 3, padding=1),
        )
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, C, h, w) -> (B, K, h, w)


@pytest.fixture
def tiny():
    registry.MODELS.add("contract_tiny", _Tiny)
    try:
        yield "contract_tiny"
    finally:
        del registry.MODELS._items["contract_tiny"]


def _checkpoint(tmp: Path, k: int, train_config: dict[str, Any], names: list[str] | None = None) -> Path:
    torch.manual_seed(0)
    model = JNet("contract_tiny", k, 16, 64, head="jnet")  # the head starts as nearest up-sampling
    metrics = {"dice": dict.fromkeys(names, 0.5)} if names else {}
    return save_checkpoint(tmp / "model.pt", model, train_config=train_config, metrics=metrics)


def _msd_task(tmp: Path) -> Path:
    """A task folder as far as the source resolver and the modality names need it."""
    task = tmp / "Task05_Prostate"
    task.mkdir()
    meta = {"modality": {"0": "T2", "1": "ADC"}, "labels": {"0": "background", "1": "PZ", "2": "TZ"}, "training": []}
    (task / "dataset.json").write_text(json.dumps(meta))
    return task


def _brats_root(tmp: Path) -> Path:
    case = tmp / "BraTS2020" / "BraTS20_Training_001"
    case.mkdir(parents=True)
    (case / "BraTS20_Training_001_seg.nii.gz").write_bytes(b"")  # only resolved, never read
    return case.parent


def _scenario(name: str, tmp: Path) -> tuple[Path, list[Path]]:
    """A checkpoint and its input files: an MSD-trained, a BraTS-trained and a 2D-trained model."""
    rng = np.random.default_rng(0)
    affine = np.diag([0.7, 0.8, 3.0, 1.0])
    if name == "msd":  # percentile per volume, modality 1 of a 4D volume, stretched (non-square) to 64
        ckpt = _checkpoint(tmp, 3, {"data": str(_msd_task(tmp)), "data_options": {"normalize": "percentile",
                                    "modalities": [1]}}, ["PZ", "TZ"])  # fmt: skip
        vol = rng.normal(100.0, 30.0, (20, 26, 3, 2)).astype(np.float32)
        vol[:4] = 0  # background stays 0
        files = [tmp / "case.nii.gz"]
        nib.save(nib.Nifti1Image(vol, affine), str(files[0]))
    elif name == "brats":  # z-score per volume, padded in one axis and cropped in the other (the reader's default)
        ckpt = _checkpoint(tmp, 4, {"data": str(_brats_root(tmp)), "data_options": {"modalities": ["flair"]}})
        vol = rng.normal(50.0, 10.0, (70, 40, 2)).astype(np.float32)
        files = [tmp / "flair.nii"]
        nib.save(nib.Nifti1Image(vol, affine), str(files[0]))
    else:  # trained on 2D slices: per-slice z-score; a grey PNG, a colour PNG and a volume
        ckpt = _checkpoint(tmp, 1, {"data": "synthetic", "data_options": {"size": 64}})
        grey = rng.integers(0, 60, (50, 70)).astype(np.uint8)
        grey[10:30, 35:60] += 150  # a bright block on a noisy background
        colour = rng.integers(0, 60, (40, 40, 3)).astype(np.uint8)
        colour[5:20, 10:30] += np.array([150, 90, 30], np.uint8)
        files = [tmp / "slice.png", tmp / "colour.png", tmp / "vol.nii.gz"]
        Image.fromarray(grey).save(files[0])
        Image.fromarray(colour).save(files[1])
        vol = rng.normal(0.0, 1.0, (30, 30, 2)).astype(np.float32)
        vol[5:15, 8:20] += 6.0
        nib.save(nib.Nifti1Image(vol, affine), str(files[2]))
    return ckpt, files


def _read(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if path.suffix == ".png":
        return np.array(Image.open(path)), None
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


@pytest.mark.parametrize("name", ["msd", "brats", "2d"])
def test_the_torch_free_runner_equals_jnet_predict(name: str, tiny, tmp_path: Path) -> None:
    ckpt, files = _scenario(name, tmp_path)
    predict_files(ckpt, files, tmp_path / "predict")
    export_checkpoint(ckpt, tmp_path / "model.onnx")
    args = [str(tmp_path / "model.onnx"), *map(str, files), "--out", str(tmp_path / "run")]
    run = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    for f in files:
        out = f.name if f.suffix != ".png" else f.stem + ".png"
        (want, want_affine), (got, got_affine) = _read(tmp_path / "predict" / out), _read(tmp_path / "run" / out)
        assert got.dtype == want.dtype == np.uint8 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)  # voxel for voxel
        assert len(np.unique(want)) >= 2  # not a trivial all-background or all-foreground mask
        if want_affine is not None:
            np.testing.assert_array_equal(got_affine, want_affine)


def test_metadata_of_a_nifti_trained_checkpoint(tiny, tmp_path: Path) -> None:
    ckpt, _ = _scenario("msd", tmp_path)
    export_checkpoint(ckpt, tmp_path / "model.onnx")
    meta = read_metadata(tmp_path / "model.onnx")
    pre, post = meta["preprocessing"], meta["postprocessing"]
    assert set(pre) == PRE_KEYS and set(post) == POST_KEYS
    assert pre["input"] == {"name": "image", "layout": "NCHW", "dtype": "float32", "shape": ["batch", 1, 64, 64]}
    assert pre["channels"] == [{"index": 0, "name": "ADC", "modality": 1}] and pre["modalities"] == [1]
    norm = pre["normalization"]
    assert (norm["mode"], norm["scope"], norm["voxels"], norm["percentiles"]) == ("percentile", "volume", "nonzero",
                                                                                  [0.5, 99.5])  # fmt: skip
    assert pre["fit"]["mode"] == "resize" and pre["fit"]["size"] == [64, 64]
    assert pre["downsample"] == {"in_graph": True, "mode": "area", "from": [64, 64], "to": [16, 16]}
    assert pre["orientation"]["reorient"] is False and pre["orientation"]["slice_axis"] == 2
    assert pre["order"].index("normalise") < pre["order"].index("slice")
    assert pre["source"]["kind"] == "msd"
    assert post["num_classes"] == 3 and post["decision"] == "argmax" and post["threshold"] is None
    assert post["class_names"] == ["PZ", "TZ"]
    assert post["labels"] == [{"value": 0, "name": "background"}, {"value": 1, "name": "PZ"},
                              {"value": 2, "name": "TZ"}]  # fmt: skip
    assert post["upsample_logits"] is None and post["output"]["shape"] == ["batch", 3, 64, 64]
    assert post["png"]["scale"] == 1 and post["nifti"]["dtype"] == "uint8"
    assert meta["model_config"]["backbone"] == "contract_tiny"
    half = convert_fp16(tmp_path / "model.onnx", tmp_path / "half.onnx")  # other precisions keep the contract
    assert read_metadata(half)["preprocessing"] == pre and read_metadata(half)["postprocessing"] == post


def test_metadata_of_a_2d_trained_checkpoint(tiny, tmp_path: Path) -> None:
    ckpt, _ = _scenario("2d", tmp_path)
    export_checkpoint(ckpt, tmp_path / "model.onnx", full_resolution_input=False)
    meta = read_metadata(tmp_path / "model.onnx")
    pre, post = meta["preprocessing"], meta["postprocessing"]
    assert set(pre) == PRE_KEYS and set(post) == POST_KEYS
    assert pre["normalization"]["mode"] == "slice" and pre["normalization"]["scope"] == "slice"
    assert pre["order"].index("slice") < pre["order"].index("normalise")
    assert pre["fit"]["mode"] == "resize" and pre["modalities"] is None
    assert pre["channels"] == [{"index": 0, "name": "phantom MRI", "modality": None}]
    assert pre["input"]["shape"] == ["batch", 1, 16, 16]  # this graph reads the down-sampled image ...
    assert pre["downsample"]["in_graph"] is False and pre["downsample"]["mode"] == "area"  # ... made like this
    assert post["decision"] == "threshold" and post["threshold"] == 0.0 and post["argmax_ties"] is None
    assert post["class_names"] == ["lesion"] and post["png"]["scale"] == 255


def test_brats_defaults_are_the_readers(tmp_path: Path) -> None:
    root = _brats_root(tmp_path)
    settings = prediction_settings({"data": str(root), "data_options": {"modalities": ["flair", "t2"]}})
    assert settings == {"kind": "brats", "normalize": "zscore", "resize": "pad_crop", "modalities": None}
    assert prediction_settings(None)["normalize"] == "slice"
    assert prediction_settings({"data": "elsewhere/Task01"})["normalize"] == "zscore"  # not here: taken for volumes


def test_a_third_party_backbone_export_carries_the_metadata(tmp_path: Path) -> None:
    model = JNet(_Tiny(1, 2), 2, 16, 64, head="interp", full_resolution_input=True).eval()
    path = export_onnx(model, tmp_path / "third.onnx")
    meta = read_metadata(path)
    config = meta["model_config"]
    assert config["backbone"] == "_Tiny" and config["backbone_class"].endswith("test_onnx_contract._Tiny")
    assert config["rebuildable"] is False
    for key in ("num_classes", "input_size", "output_size", "head", "in_channels", "full_resolution_input",
                "downsample_mode"):  # fmt: skip
        assert config[key] == json.loads(json.dumps(model.config[key]))
    assert set(meta["preprocessing"]) == PRE_KEYS and meta["preprocessing"]["normalization"]["mode"] == "slice"
    assert meta["postprocessing"]["decision"] == "argmax" and meta["postprocessing"]["class_names"] == ["foreground"]
    with pytest.raises(ValueError, match=r"third-party module .*_Tiny\), which cannot be rebuilt by name"):
        model_from_onnx(path)


def test_the_runner_refuses_a_file_without_a_contract(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = export_onnx(nn.Conv2d(1, 1, 3, padding=1), tmp_path / "bare.onnx", input_shape=(1, 1, 8, 8))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    assert runner_main([str(path), str(tmp_path / "x.png"), "--out", str(tmp_path / "o")]) == 2
    assert "no jnet.preprocessing / jnet.postprocessing metadata" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "I;16"])
def test_the_runners_png_reader_equals_pillow(mode: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)  # noise: Pillow picks every PNG row filter
    bands = {"L": (), "RGB": (3,), "RGBA": (4,), "LA": (2,), "I;16": ()}[mode]
    dtype = np.uint16 if mode == "I;16" else np.uint8
    array = rng.integers(0, np.iinfo(dtype).max, (19, 23, *bands)).astype(dtype)
    (Image.fromarray(array, mode="LA") if mode == "LA" else Image.fromarray(array)).save(tmp_path / "x.png")
    np.testing.assert_array_equal(read_png(tmp_path / "x.png"), np.array(Image.open(tmp_path / "x.png")))
