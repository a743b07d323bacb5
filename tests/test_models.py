"""Backbones: registry, shapes, size errors, exact parameter counts and MACs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import jnet
from jnet.models.unet import UNet


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def double_conv(cin: int, cout: int) -> int:
    # two bias-free 3x3 convs, each followed by batch norm (weight + bias)
    return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout


def encoder(cin: int, c: list[int]) -> int:
    return sum(double_conv(cin if i == 0 else c[i - 1], c[i]) for i in range(len(c)))


def unet_params(cin: int, k: int, w: int, d: int = 4) -> int:
    c = [w * 2**i for i in range(d + 1)]
    ups = sum(4 * c[i + 1] * c[i] + c[i] for i in range(d))  # ConvT(c_{i+1} -> c_i, 2x2) + bias
    decs = sum(double_conv(2 * c[i], c[i]) for i in range(d))
    return encoder(cin, c) + ups + decs + c[0] * k + k


def elunet_params(cin: int, k: int, w: int, d: int = 4) -> int:
    c = [w * 2**i for i in range(d + 1)]

    def up_project(ci: int, co: int, steps: int) -> int:  # steps ConvT(ci -> ci) then 3x3 conv ci -> co
        return steps * (4 * ci * ci + ci) + 9 * ci * co + co

    total = encoder(cin, c) + c[0] * k + k
    for level in range(d):
        total += up_project(c[level + 1], c[level], 1)
        total += sum(up_project(c[j], c[level], j - level) for j in range(level, d))
        total += double_conv((d - level + 1) * c[level], c[level])
    return total


def test_list_models() -> None:
    assert {"unet", "elunet", "unet3plus"} <= set(jnet.list_models())
    assert jnet.list_models() == sorted(jnet.list_models())


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet'.*elunet.*unet"):
        jnet.create_model("resnet")


@pytest.mark.parametrize("name", ["unet", "elunet"])
@pytest.mark.parametrize("size", [(16, 16), (32, 32), (64, 64), (32, 64)])
@pytest.mark.parametrize("k", [1, 3])
def test_backbone_shapes(name: str, size: tuple[int, int], k: int) -> None:
    net = jnet.create_model(name, in_channels=2, num_classes=k, width=4)
    assert net(torch.zeros(2, 2, *size)).shape == (2, k, *size)


@pytest.mark.parametrize("name", ["unet", "elunet"])
@pytest.mark.parametrize("size", [(24, 24), (16, 8), (8, 8)])
def test_backbone_invalid_size(name: str, size: tuple[int, int]) -> None:
    net = jnet.create_model(name, width=4)
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.zeros(1, 1, *size))


def test_depth_changes_divisor() -> None:
    net = UNet(width=4, depth=2)
    assert net(torch.zeros(1, 1, 12, 12)).shape == (1, 1, 12, 12)
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.zeros(1, 1, 10, 10))


@pytest.mark.parametrize(("cin", "k", "w"), [(1, 1, 64), (1, 1, 4), (4, 3, 8)])
def test_unet_param_count(cin: int, k: int, w: int) -> None:
    assert n_params(jnet.create_model("unet", cin, k, width=w)) == unet_params(cin, k, w)


def test_unet_default_is_the_published_size() -> None:
    # 31.04 M parameters: the usual figure for the batch-norm U-Net at width 64
    assert n_params(jnet.create_model("unet")) == 31_036_481


@pytest.mark.parametrize(("cin", "k", "w"), [(1, 1, 16), (1, 1, 4), (4, 3, 8)])
def test_elunet_param_count(cin: int, k: int, w: int) -> None:
    assert n_params(jnet.create_model("elunet", cin, k, width=w)) == elunet_params(cin, k, w)


def macs(model: torch.nn.Module, size: int) -> float:
    with torch.device("meta"):
        x = torch.zeros(1, 1, size, size)
    with FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops() / 2


def unet_macs(h: int, w: int = 64, d: int = 4, cin: int = 1, k: int = 1) -> int:
    """Hand count: H*W*k*k*cin*cout per conv; a 2x2 stride-2 transposed conv costs out_pixels*cin*cout."""
    c = [w * 2**i for i in range(d + 1)]
    total = 0
    for i in range(d + 1):
        px = (h // 2**i) ** 2
        total += px * 9 * ((cin if i == 0 else c[i - 1]) * c[i] + c[i] * c[i])
    for i in range(d):
        px = (h // 2**i) ** 2
        total += px * c[i + 1] * c[i]  # transposed conv, output pixels * cin * cout
        total += px * 9 * (2 * c[i] * c[i] + c[i] * c[i])
    return total + h * h * c[0] * k


def test_macs_unet_by_hand_and_elunet_default_width() -> None:
    with torch.device("meta"):
        unet = jnet.create_model("unet").eval()
        elu = jnet.create_model("elunet").eval()
    assert macs(unet, 320) == unet_macs(320)
    assert unet_macs(320) / 1e9 == pytest.approx(75.14, abs=0.01)
    # The paper's Table 4: ELU-Net 29.98 GMac against U-Net 71.16 at 320x320; ours (width 16):
    assert macs(elu, 320) / 1e9 == pytest.approx(17.92, abs=0.01)
    assert macs(elu, 16) / 1e9 == pytest.approx(17.92 / 400, abs=1e-4)


@pytest.mark.parametrize("name", ["unet", "elunet"])
def test_backward_and_reload(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    net = jnet.create_model(name, 1, 2, width=4)
    x = torch.randn(2, 1, 32, 32)
    net(x).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    torch.save(net.state_dict(), tmp_path / "w.pt")
    other = jnet.create_model(name, 1, 2, width=4)
    other.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    net.eval()
    other.eval()
    assert torch.equal(net(x), other(x))


def test_bad_width() -> None:
    with pytest.raises(ValueError, match="width"):
        jnet.create_model("elunet", width=0)
