"""Checkpoints: round trip, atomic writes, and refusal of code-running pickles."""

from __future__ import annotations

import pickle

import pytest
import torch

import jnet
from jnet.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint


def test_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = jnet.JNet("elunet", 2, 16, 64, backbone_options={"width": 2}, head_options={"init": "default"})
    path = save_checkpoint(tmp_path / "c.pt", model, epoch=3, note="plain values only")
    assert not list(tmp_path.glob("*.tmp"))
    loaded, ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 3 and ckpt["model_config"] == model.config
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(model.eval()(x), loaded(x)) and not loaded.training


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_code_running_pickle_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model_config": {}, "state_dict": {}, "x": _Payload()}, f, protocol=2)
    with pytest.raises(ValueError, match=r"evil\.pt: refused to load.*could run code"):
        read_checkpoint(path)


def test_bad_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match=r"trunc\.pt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "trunc.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a jnet checkpoint"):
        read_checkpoint(tmp_path / "other.pt")


def test_weights_from_another_model(tmp_path) -> None:
    model = jnet.JNet("unet", 1, 16, 64, backbone_options={"width": 2})
    path = save_checkpoint(tmp_path / "c.pt", model)
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_config"]["backbone"] = "elunet"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="weights do not fit the model"):
        load_checkpoint(path)


def test_third_party_backbone_cannot_be_rebuilt(tmp_path) -> None:
    model = jnet.JNet(torch.nn.Conv2d(1, 1, 1), 1, 16, 64)
    with pytest.raises(ValueError, match="registered backbone"):
        save_checkpoint(tmp_path / "c.pt", model)
