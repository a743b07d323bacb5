"""The J-Net composition and its heads: shape tables, exact parameter counts, modes, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import jnet
from jnet.heads import JNetHead, create_head, num_upscaling_stages

BACKBONES = ["unet", "elunet", "unet3plus"]
HEADS = ["jnet", "jnet-noskip", "jnet-single", "interp", "none"]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("r", [16, 32, 64])
@pytest.mark.parametrize("k", [1, 3])
def test_shape_table(backbone: str, head: str, r: int, k: int) -> None:
    net = jnet.JNet(backbone, k, r, 256, head=head, backbone_options={"width": 2})
    outs = net.train()(torch.randn(2, 1, r, r))
    m = {16: 4, 32: 3, 64: 2}[r]
    expected = {
        "jnet": [r * 2**i for i in range(m + 1)],
        "jnet-noskip": [r * 2**i for i in range(m + 1)],
        "jnet-single": [r, 256],
        "interp": [r, 256],
        "none": [r],
    }[head]
    assert [tuple(o.shape) for o in outs] == [(2, k, s, s) for s in expected]
    assert net.scales == [(s, s) for s in expected]
    final = net.eval()(torch.randn(2, 1, r, r))
    assert final.shape == (2, k, expected[-1], expected[-1])


def stretch_and_stage_counts(k: int, m: int, skips: tuple[int, ...]) -> int:
    # every layer counted individually: weights + biases
    convt = 2 * 2 * k * k + k
    conv = 3 * 3 * k * k + k
    conv_cat = 3 * 3 * (2 * k) * k + k
    total = m * convt
    for i in range(1, m + 1):
        total += conv_cat if i in skips else conv
        if i in skips:
            total += i * convt + conv  # the stretched copy of y0: i transposed convs + one conv
    return total


@pytest.mark.parametrize(
    ("k", "r", "skips", "expected"),
    [
        (1, 16, (3, 4), 133),  # the paper's worked example (which claims 159, see JNetHead's docstring)
        (1, 32, (2, 3), 15 + 24 + 24 + 2 * 5 + 10 + 3 * 5 + 10),  # m = 3: 108
        (1, 64, (2,), 15 + 24 + 2 * 5 + 10),  # m = 2: 59
        (1, 128, (), 15),  # m = 1: a single plain stage
        (3, 16, (3, 4), None),
        (4, 32, (2, 3), None),
    ],
)
def test_jnet_head_parameter_count(k: int, r: int, skips: tuple[int, ...], expected: int | None) -> None:
    head = create_head("jnet", k, r, 256)
    m = num_upscaling_stages(r, 256)
    assert head.skip_stages == skips
    count = n_params(head)
    assert count == JNetHead.count_parameters(k, m, skips) == stretch_and_stage_counts(k, m, skips)
    if expected is not None:
        assert count == expected
    if k == 1 and r == 16:
        assert count < 200


def test_closed_form_for_k3_m4() -> None:
    # 4(4*9+3) + 2(81+3) + 2(162+3) + 7(39) + 2(84) = 156 + 168 + 330 + 273 + 168
    assert JNetHead.count_parameters(3, 4, (3, 4)) == 1095
    assert n_params(create_head("jnet", 3, 16, 256)) == 1095


def test_variant_parameter_counts() -> None:
    assert n_params(create_head("jnet-noskip", 1, 16, 256)) == 4 * (5 + 10)
    # one 16x16 stride-16 transposed conv (256 + 1) and a 3x3 conv (9 + 1)
    assert n_params(create_head("jnet-single", 1, 16, 256)) == 257 + 10
    assert n_params(create_head("jnet-single", 2, 32, 256)) == (64 * 2 + 1) * 2 + (18 + 1) * 2
    assert n_params(create_head("interp", 3, 16, 256)) == 0
    assert n_params(create_head("none", 3, 16, 256)) == 0


def test_custom_skip_stages() -> None:
    head = JNetHead(1, 16, 256, skip_stages=[2, 3, 4])
    assert head.skip_stages == (2, 3, 4)
    assert n_params(head) == JNetHead.count_parameters(1, 4, (2, 3, 4))
    with pytest.raises(ValueError, match=r"skip_stages must lie in 2\.\.4"):
        JNetHead(1, 16, 256, skip_stages=[1])


@pytest.mark.parametrize("head", ["jnet", "jnet-noskip", "jnet-single"])
def test_gradients_reach_every_head_stage(head: str) -> None:
    torch.manual_seed(0)
    net = jnet.JNet("elunet", 2, 16, 256, head=head, backbone_options={"width": 2})
    outs = net.train()(torch.randn(2, 1, 16, 16))
    sum(o.square().mean() for o in outs).backward()
    for name, p in net.head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in net.backbone.parameters())


def test_skip_changes_the_output() -> None:
    # the stretched copy of y0 really enters stage 4: perturbing its weights moves the final output
    torch.manual_seed(0)
    head = create_head("jnet", 1, 16, 256).eval()
    y0 = torch.randn(1, 1, 16, 16)
    before = head(y0)
    with torch.no_grad():
        head.stretch["4"][-1].bias += 1.0
    after = head(y0)
    assert torch.equal(before[3], after[3]) and not torch.equal(before[4], after[4])


def test_interp_is_bilinear_of_base_logits() -> None:
    head = create_head("interp", 1, 16, 256)
    y0 = torch.randn(2, 1, 16, 16)
    outs = head(y0)
    assert torch.equal(outs[0], y0)
    ref = nn.functional.interpolate(y0, size=(256, 256), mode="bilinear", align_corners=False)
    assert torch.equal(outs[1], ref)


def test_interp_accepts_any_larger_size() -> None:
    net = jnet.JNet("unet", 1, 16, 250, head="interp", backbone_options={"width": 2}).eval()
    assert net(torch.zeros(1, 1, 16, 16)).shape == (1, 1, 250, 250)


def test_return_all_flag_overrides_mode() -> None:
    net = jnet.JNet("unet", 1, 16, 64, backbone_options={"width": 2}, return_all=True).eval()
    assert isinstance(net(torch.zeros(2, 1, 16, 16)), list)
    net.return_all = False
    net.train()
    assert net(torch.zeros(2, 1, 16, 16)).shape == (2, 1, 64, 64)


def test_one_state_dict_loads_in_both_modes(tmp_path) -> None:
    torch.manual_seed(0)
    net = jnet.JNet("elunet", 3, 32, 256, backbone_options={"width": 2})
    x = torch.randn(2, 1, 32, 32)
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    other = jnet.JNet("elunet", 3, 32, 256, backbone_options={"width": 2}, return_all=True)
    other.load_state_dict(torch.load(path, weights_only=True))
    net.eval()
    other.eval()
    assert torch.equal(net(x), other(x)[-1])
    assert len(other(x)) == 4


class ThirdPartyNet(nn.Module):
    """A backbone that knows nothing of jnet: a few plain convs, any input size."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, k, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize("head", HEADS)
def test_any_backbone_module(head: str) -> None:
    net = jnet.JNet(ThirdPartyNet(2), 2, 16, 128, head=head)
    outs = net.train()(torch.randn(3, 1, 16, 16))
    assert outs[-1].shape == (3, 2, *net.scales[-1])
    assert n_params(net) == n_params(net.backbone) + n_params(net.head)


def test_backbone_with_wrong_channels() -> None:
    net = jnet.JNet(ThirdPartyNet(3), 2, 16, 64)
    with pytest.raises(ValueError, match=r"must return \(B, 2, h, w\) logits"):
        net(torch.zeros(1, 1, 16, 16))


def test_backbone_that_changes_resolution() -> None:
    net = jnet.JNet(nn.Conv2d(1, 1, 2, stride=2), 1, 16, 64)
    with pytest.raises(ValueError, match="expects the input resolution"):
        net(torch.zeros(1, 1, 16, 16))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"output_size": 250}, "not input size 16x16 times a power of two.*32x32, 64x64"),
        ({"output_size": 8}, "smaller than input size"),
        ({"output_size": (256, 128)}, "not input size 16x16 times a power of two"),
        ({"head": "bicubic"}, "unknown head 'bicubic'.*'jnet'.*'interp'"),
        ({"backbone": "vnet"}, "unknown model 'vnet'"),
        ({"input_size": (16, 16, 1)}, "input_size must be an int or"),
    ],
)
def test_clear_errors(kwargs: dict, match: str) -> None:
    args = {"backbone": "unet", "num_classes": 1, "input_size": 16, "output_size": 256} | kwargs
    with pytest.raises(ValueError, match=match):
        jnet.JNet(**args)


def test_wrong_input_size_at_call() -> None:
    net = jnet.JNet("unet", 1, 16, 256, backbone_options={"width": 2})
    with pytest.raises(ValueError, match=r"built for \(B, C, 16, 16\) inputs, got shape \(1, 1, 32, 32\)"):
        net(torch.zeros(1, 1, 32, 32))


def test_non_square_sizes() -> None:
    net = jnet.JNet("unet", 1, (16, 32), (64, 128), backbone_options={"width": 2}).train()
    assert [tuple(o.shape[-2:]) for o in net(torch.zeros(2, 1, 16, 32))] == [(16, 32), (32, 64), (64, 128)]


def test_list_heads() -> None:
    assert jnet.list_heads() == [*HEADS, "jnet-guided", "guided"]  # the image-guided heads: tests/test_guided.py


@pytest.mark.parametrize("head", ["jnet", "jnet-noskip", "jnet-single"])
@pytest.mark.parametrize("k", [1, 3])
def test_nearest_init_starts_as_nearest_upsampling(head: str, k: int) -> None:
    y0 = torch.randn(2, k, 16, 16)
    outs = create_head(head, k, 16, 128).eval()(y0)
    for out in outs:
        factor = out.shape[-1] // 16
        expected = y0.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_default_init_is_random() -> None:
    torch.manual_seed(0)
    head = create_head("jnet", 1, 16, 64, init="default")
    y0 = torch.randn(1, 1, 16, 16)
    assert not torch.allclose(head(y0)[-1], y0.repeat_interleave(4, 2).repeat_interleave(4, 3))
    with pytest.raises(ValueError, match="unknown init 'zeros'"):
        create_head("jnet", 1, 16, 64, init="zeros")


@pytest.mark.parametrize("head", ["jnet", "jnet-noskip", "jnet-single"])
def test_batch_folded_fast_path_equals_the_modules(head: str, monkeypatch) -> None:
    """The depthwise kernels used in training (K = 1, CPU, batch > 1) give the modules' outputs and gradients."""
    import jnet.heads

    torch.manual_seed(0)
    h = create_head(head, 1, 16, 128, init="default")
    y0 = torch.randn(4, 1, 16, 16)
    weights = [torch.rand(o.shape, generator=torch.Generator().manual_seed(1)) for o in h(y0)]

    def run() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        h.zero_grad()
        outs = h(y0)
        sum((o * w).sum() for o, w in zip(outs, weights, strict=True)).backward()
        return [o.detach() for o in outs], [p.grad.clone() for p in h.parameters()]

    fast_outs, fast_grads = run()
    monkeypatch.setattr(jnet.heads, "_fast_path", lambda x: False)
    ref_outs, ref_grads = run()
    for a, b in zip(fast_outs + fast_grads, ref_outs + ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
