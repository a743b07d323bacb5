"""The ultra-light full-resolution backbones: EGE-UNet, MALUNet, UNeXt.

Parameter counts and MACs are pinned for the papers' setting (3 input channels, one class,
256x256) and ours (one input channel). The 3-channel counts equal those of the official
implementations (EGE-UNet and MALUNet: github.com/JCruan519, UNeXt:
github.com/jeya-maria-jose/UNeXt-pytorch), instantiated and counted with the same tools.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import jnet
from jnet.deploy.profile import count_macs
from jnet.losses import MultiScaleLoss
from jnet.models.registry import model_defaults
from jnet.models.unext import shift_groups

NAMES = ["egeunet", "malunet", "unext"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """These networks run hundreds of tiny ops: with several threads, OpenMP synchronisation
    dominates (100x slower on a busy 2-core machine). conftest restores the thread count."""
    torch.set_num_threads(1)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registered_with_paper_defaults() -> None:
    assert set(NAMES) <= set(jnet.list_models())
    assert model_defaults("egeunet") == {"width": 8}
    assert model_defaults("malunet") == {"width": 8}
    assert model_defaults("unext") == {"channels": (16, 32, 128, 160, 256)}


@pytest.mark.parametrize(
    ("name", "in_channels", "expected"),
    [
        ("egeunet", 3, 53_374),  # the paper's "50 KB" (0.053 M) parameters
        ("egeunet", 1, 53_230),
        ("malunet", 3, 177_943),  # the paper reports 0.175 M
        ("malunet", 1, 177_799),
        ("unext", 3, 1_471_921),  # the paper's 1.47 M
        ("unext", 1, 1_471_633),
    ],
)
def test_param_count(name: str, in_channels: int, expected: int) -> None:
    assert n_params(jnet.create_model(name, in_channels, 1)) == expected


@pytest.mark.parametrize(
    ("name", "in_channels", "expected"),
    [
        ("egeunet", 3, 72_096_256),  # the paper's 0.072 "GFLOPs" are MACs
        ("egeunet", 1, 62_659_072),
        ("malunet", 3, 82_740_224),  # paper: 0.083
        ("malunet", 1, 73_303_040),
        ("unext", 3, 562_003_968),  # paper: 0.57
        ("unext", 1, 543_129_600),
    ],
)
def test_macs_at_256(name: str, in_channels: int, expected: int) -> None:
    model = jnet.create_model(name, in_channels, 1)
    assert count_macs(model, (1, in_channels, 256, 256)) == expected


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [1, 3])
def test_shapes(name: str, k: int) -> None:
    torch.manual_seed(0)
    net = jnet.create_model(name, 2, k)
    for size in [(32, 32), (64, 64), (32, 96)]:
        with torch.no_grad():
            y = net(torch.randn(2, 2, *size))
        assert isinstance(y, torch.Tensor) and y.shape == (2, k, *size)  # one logit map, no side outputs
        assert torch.isfinite(y).all()
    assert (y < 0).any()  # logits, not sigmoid probabilities


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(48, 48), (16, 16), (32, 40)])
def test_invalid_size_names_divisor(name: str, size: tuple[int, int]) -> None:
    net = jnet.create_model(name)
    assert net.size_divisor == 32
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.zeros(1, 1, *size))


@pytest.mark.parametrize("name", ["egeunet", "malunet"])
def test_width_scales_the_channel_list(name: str) -> None:
    small = jnet.create_model(name, width=4)
    assert small(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 32, 32)
    assert n_params(small) < n_params(jnet.create_model(name)) < n_params(jnet.create_model(name, width=12))
    for bad in (0, 6, 10):
        with pytest.raises(ValueError, match="width must be a positive multiple of 4"):
            jnet.create_model(name, width=bad)


def test_unext_refuses_width_and_takes_channels() -> None:
    with pytest.raises(ValueError, match=r"unext has no option\(s\) width.*channels="):
        jnet.create_model("unext", width=16)
    with pytest.raises(ValueError, match="unext has no option"):
        jnet.JNet("unext", 1, 32, 64, backbone_options={"width": 8})  # as TrainConfig.width would pass it
    with pytest.raises(ValueError, match="five positive"):
        jnet.create_model("unext", channels=(16, 32, 128))
    # the official UNeXt-S: 253,561 parameters, 0.0992 GMACs at 256x256 with 3 input channels
    s = jnet.create_model("unext", 3, 1, channels=(8, 16, 32, 64, 128))
    assert n_params(s) == 253_561
    assert count_macs(s, (1, 3, 256, 256)) == 99_229_696


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("channels", [1, 3, 7, 10, 128, 256])
def test_unext_shift_is_a_zero_filled_roll(dim: int, channels: int) -> None:
    # the paper's formulation: zero-pad by 2, split into 5 channel chunks, roll chunk i by i - 2, crop
    x = torch.randn(2, channels, 6, 7)
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    rolled = [torch.roll(c, s, dim) for c, s in zip(torch.chunk(padded, 5, dim=1), range(-2, 3), strict=False)]
    expected = torch.cat(rolled, dim=1)[:, :, 2:-2, 2:-2]
    assert torch.equal(shift_groups(x, dim), expected)


def test_egeunet_bridges_read_the_mask_maps() -> None:
    # the deep-supervision convs stay: their maps feed the bridges, so they change the output
    torch.manual_seed(0)
    net = jnet.create_model("egeunet").eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        before = net(x)
        net.mask_heads[2].bias.add_(1.0)
        assert not torch.allclose(net(x), before)


@pytest.mark.filterwarnings("ignore:Constant folding")  # the exporter notes slices it does not fold (UNeXt's shift)
@pytest.mark.parametrize("name", NAMES)
def test_onnx_parity(name: str, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from jnet.deploy.export import export_onnx, max_abs_diff, op_counts

    torch.manual_seed(0)
    model = jnet.create_model(name, 1, 2)
    if name == "egeunet":
        # With the authors' initialisation (std sqrt(2 / fan_out): about 1.4 for the 1x1 mask and
        # logit convs) an untrained EGE-UNet has logits of 10-40 and amplifies float32 rounding in
        # its small layer-norm groups: PyTorch's own float32 forward is up to ~1e-3 from float64.
        # That is no export error, so the parity is checked on PyTorch's default conv init.
        for m in model.modules():
            if isinstance(m, nn.Conv1d | nn.Conv2d):
                m.reset_parameters()
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():  # non-trivial batch-norm statistics, so that folding them is tested
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    model.eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx", input_shape=(1, 1, 32, 64))  # not square: H, W axes
    assert "BatchNormalization" not in op_counts(path)
    x = torch.randn(3, 1, 32, 64, generator=gen)  # exported at batch 1: the batch axis is dynamic
    assert max_abs_diff(model, path, x) <= 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_jnet_composition_trains(name: str) -> None:
    torch.manual_seed(0)
    net = jnet.JNet(name, 1, 64, 256)
    x = torch.randn(2, 1, 64, 64)
    target = (torch.rand(2, 256, 256) > 0.5).long()
    outs = net(x)  # training mode: every scale, 64 ... 256
    assert outs[0].shape == (2, 1, 64, 64) and outs[-1].shape == (2, 1, 256, 256)
    loss = MultiScaleLoss("dice_ce")(outs, target)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    opt.zero_grad()
    loss.backward()
    grads = [p.grad for p in net.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    before = [p.detach().clone() for p in net.backbone.parameters()]
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, net.backbone.parameters(), strict=True))
    with torch.no_grad():
        assert net.eval()(x).shape == (2, 1, 256, 256)
    with pytest.raises(ValueError, match="multiples of 32"):
        jnet.JNet(name, 1, 48, 192).eval()(torch.zeros(1, 1, 48, 48))
