"""jnet predict: NIfTI and PNG round trips keep the input's grid; the mask lands where the model says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from jnet.cli import main
from jnet.deploy.predict import predict_files
from jnet.model import JNet
from jnet.models import registry
from jnet.training.checkpoint import save_checkpoint

nib = pytest.importorskip("nibabel")


class _Identity(nn.Module):
    """Logit = the (normalised) first channel: a pixel is foreground where the image is above its mean."""

    def __init__(self, in_channels: int = 1, num_classes: int = 1) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x[:, :1]


@pytest.fixture
def identity_checkpoint(tmp_path):
    registry.MODELS.add("test_identity", _Identity)
    try:
        model = JNet("test_identity", 1, 64, 64, head="none")
        train_config = {"data": "somewhere/msd_task", "data_options": {"resize": "pad_crop"}}
        yield save_checkpoint(tmp_path / "identity.pt", model, train_config=train_config)
    finally:
        del registry.MODELS._items["test_identity"]


def block_volume(shape: tuple[int, int, int]) -> np.ndarray:
    vol = np.ones(shape, np.float32)  # non-zero background: z-scored to a negative value
    vol[5:15, 8:20, :] = 6.0  # bright block, the same on every slice ...
    vol[30:34, 2:6, 1] = 6.0  # ... and one that only slice 1 has
    return vol


def test_nifti_round_trip_keeps_shape_affine_and_places_the_mask(identity_checkpoint, tmp_path) -> None:
    vol = block_volume((40, 30, 3))
    affine = np.diag([0.8, 0.9, 3.0, 1.0])
    affine[:3, 3] = [-10, 20, 5]
    nib.save(nib.Nifti1Image(vol, affine), str(tmp_path / "case.nii.gz"))
    results = predict_files(identity_checkpoint, [tmp_path / "case.nii.gz"], tmp_path / "out")
    out = nib.load(str(tmp_path / "out" / "case.nii.gz"))
    assert out.shape == vol.shape and np.allclose(out.affine, affine)
    data = np.asarray(out.dataobj)
    assert data.dtype == np.uint8
    np.testing.assert_array_equal(data, (vol > 1).astype(np.uint8))  # pad_crop is exact
    assert results[0]["shape"] == [40, 30, 3]
    assert not list((tmp_path / "out").glob("*.tmp*"))


def test_resize_mode_and_4d_modalities(identity_checkpoint, tmp_path) -> None:
    vol = np.stack([np.full((32, 32, 2), 7.0, np.float32), block_volume((32, 32, 2))], axis=-1)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "mm.nii.gz"))
    predict_files(identity_checkpoint, [tmp_path / "mm.nii.gz"], tmp_path / "out", resize="resize", modalities=[1])
    data = np.asarray(nib.load(str(tmp_path / "out" / "mm.nii.gz")).dataobj)
    assert data.shape == (32, 32, 2)
    truth = block_volume((32, 32, 2)) > 1
    assert (data.astype(bool) == truth).mean() > 0.97  # bilinear 32 -> 64, nearest back: edges may move a pixel
    assert data[10, 14, 0] == 1 and data[25, 25, 0] == 0
    with pytest.raises(ValueError, match=r"mm\.nii\.gz: modalities \[2\] do not exist"):
        predict_files(identity_checkpoint, [tmp_path / "mm.nii.gz"], tmp_path / "o2", modalities=[2])


def test_png_round_trip(identity_checkpoint, tmp_path) -> None:
    from PIL import Image

    img = np.full((50, 70), 20, np.uint8)
    img[10:30, 40:60] = 200
    Image.fromarray(img).save(tmp_path / "slice.png")
    assert main(["predict", "--checkpoint", str(identity_checkpoint), str(tmp_path / "slice.png"),
                 "--out", str(tmp_path / "out")]) == 0  # fmt: skip
    mask = np.array(Image.open(tmp_path / "out" / "slice.png"))
    assert mask.shape == (50, 70) and set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(mask == 255, img == 200)


def test_bad_inputs(identity_checkpoint, tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("x")
    assert main(["predict", "--checkpoint", str(identity_checkpoint), str(tmp_path / "notes.txt"),
                 "--out", str(tmp_path)]) == 2  # fmt: skip
    assert "notes.txt: not a NIfTI" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(identity_checkpoint), str(tmp_path / "gone.nii.gz"),
                 "--out", str(tmp_path)]) == 2  # fmt: skip
    assert "gone.nii.gz: no such file" in capsys.readouterr().err
    nib.save(nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(ValueError, match=r"flat\.nii\.gz"):
        predict_files(identity_checkpoint, [tmp_path / "flat.nii.gz"], tmp_path / "o")
