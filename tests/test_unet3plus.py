"""U-Net 3+: shapes, size errors, exact parameter counts, gradients and reloading."""

from __future__ import annotations

import pytest
import torch

import jnet
from jnet.models.unet3plus import UNet3Plus


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def conv_bn(cin: int, cout: int) -> int:
    # a bias-free 3x3 conv (9 * cin * cout weights), then batch norm (weight + bias: 2 * cout)
    return 9 * cin * cout + 2 * cout


def unet3plus_params(cin: int, k: int, w: int, d: int = 4, cat: int | None = None) -> int:
    """Parameter count derived by hand from the architecture."""
    cat = w if cat is None else cat
    up = (d + 1) * cat  # channels of every decoder level
    c = [w * 2**i for i in range(d + 1)]  # encoder channels; c[d] is the bottleneck
    # encoder: a double conv per level, (cin -> c0 -> c0), (c0 -> c1 -> c1), ...
    total = sum(conv_bn(cin if i == 0 else c[i - 1], c[i]) + conv_bn(c[i], c[i]) for i in range(d + 1))
    for level in range(d):
        # d + 1 skip paths, each a conv_bn to `cat` channels (pooling and up-sampling have no
        # parameters): encoder levels 0..level, decoder levels level+1..d-1, the bottleneck
        sources = c[: level + 1] + [up] * (d - 1 - level) + [c[d]]
        assert len(sources) == d + 1
        total += sum(conv_bn(s, cat) for s in sources)
        total += conv_bn(up, up)  # the fusion conv on the concatenation
    return total + 9 * up * k + k  # 3x3 classifier with bias


@pytest.mark.parametrize("size", [(16, 16), (32, 32), (64, 64), (32, 64)])
@pytest.mark.parametrize("k", [1, 3])
def test_shapes(size: tuple[int, int], k: int) -> None:
    net = jnet.create_model("unet3plus", in_channels=2, num_classes=k, width=4)
    assert net(torch.zeros(2, 2, *size)).shape == (2, k, *size)


def test_shapes_other_depth_and_cat_channels() -> None:
    net = UNet3Plus(in_channels=1, num_classes=2, width=4, depth=2, cat_channels=3)
    assert net.up_channels == 9
    assert net(torch.zeros(1, 1, 12, 20)).shape == (1, 2, 12, 20)
    assert UNet3Plus(width=4, depth=1)(torch.zeros(1, 1, 6, 6)).shape == (1, 1, 6, 6)


@pytest.mark.parametrize("size", [(24, 24), (16, 8), (8, 8)])
def test_invalid_size(size: tuple[int, int]) -> None:
    net = jnet.create_model("unet3plus", width=4)
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.zeros(1, 1, *size))


@pytest.mark.parametrize(
    ("cin", "k", "w", "d", "cat"),
    [(1, 1, 64, 4, None), (1, 1, 4, 4, None), (4, 3, 8, 4, 5), (2, 2, 4, 2, None), (1, 1, 4, 1, 2)],
)
def test_param_count(cin: int, k: int, w: int, d: int, cat: int | None) -> None:
    net = jnet.create_model("unet3plus", cin, k, width=w, depth=d, cat_channels=cat)
    assert n_params(net) == unet3plus_params(cin, k, w, d, cat)


def test_default_is_the_published_size() -> None:
    # The paper reports 26.97 M parameters for UNet 3+ without deep supervision (3 input
    # channels). Ours drops the biases of the convs followed by batch norm: the 5 x 2 encoder
    # convs (2 * (64 + ... + 1024) = 3968), 4 x 5 skip convs (20 * 64 = 1280) and 4 fusion
    # convs (4 * 320 = 1280); with them back the count rounds to the published figure.
    assert n_params(jnet.create_model("unet3plus", 3, 1)) == 26_965_249
    assert n_params(jnet.create_model("unet3plus")) == 26_964_097  # one input channel
    assert unet3plus_params(3, 1, 64) == 26_965_249
    assert round((26_965_249 + 3968 + 1280 + 1280) / 1e6, 2) == 26.97


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="width"):
        jnet.create_model("unet3plus", width=0)
    with pytest.raises(ValueError, match="depth"):
        jnet.create_model("unet3plus", depth=0)
    with pytest.raises(ValueError, match="cat_channels"):
        jnet.create_model("unet3plus", cat_channels=0)


def test_backward_and_reload(tmp_path) -> None:
    torch.manual_seed(0)
    net = jnet.create_model("unet3plus", 1, 2, width=4)
    x = torch.randn(2, 1, 32, 32)
    net(x).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    torch.save(net.state_dict(), tmp_path / "w.pt")
    other = jnet.create_model("unet3plus", 1, 2, width=4)
    other.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    net.eval()
    other.eval()
    assert torch.equal(net(x), other(x))


def test_in_jnet() -> None:
    net = jnet.JNet("unet3plus", 1, input_size=16, output_size=64, backbone_options={"width": 4}).eval()
    assert net(torch.zeros(1, 1, 16, 16)).shape == (1, 1, 64, 64)
