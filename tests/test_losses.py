"""Losses: hand-computed values, target pyramids, multi-scale weighting, errors, gradients."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import jnet
import jnet.losses
from jnet.losses import (
    BCELoss,
    CrossEntropyLoss,
    DiceCELoss,
    MultiScaleLoss,
    SoftDiceLoss,
    build_loss,
    list_losses,
    target_pyramid,
)

LN3 = math.log(3.0)
SMOOTH = 1e-5


def t4(values: list[list[float]]) -> torch.Tensor:
    """A 2-D list as a (1, 1, h, w) float tensor."""
    return torch.tensor(values, dtype=torch.float32)[None, None]


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def onehot_ref(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Independent reference one-hot (B, K, H, W) built with F.one_hot."""
    if k == 1:
        return labels[:, None].float()
    return F.one_hot(labels.long(), k).permute(0, 3, 1, 2).float()


# ------------------------------------------------------------------------------------------
# Base losses, by hand
# ------------------------------------------------------------------------------------------


def test_bce_hand_computed() -> None:
    # per pixel: bce(z, t) = log(1 + e^z) - t z
    #   z=0,  t=0: log 2
    #   z=1,  t=1: log(1 + e) - 1
    #   z=-2, t=1: log(1 + e^-2) + 2
    #   z=3,  t=0: log(1 + e^3)
    logits = t4([[0.0, 1.0], [-2.0, 3.0]])
    target = t4([[0.0, 1.0], [1.0, 0.0]])
    expected = (
        math.log(2) + (math.log(1 + math.e) - 1) + (math.log(1 + math.exp(-2)) + 2) + math.log(1 + math.exp(3))
    ) / 4
    assert BCELoss()(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_bce_soft_target_hand_computed() -> None:
    # z = 1 everywhere, t = 0.25 (a quarter-covered pixel):
    # bce = -(0.25 log sigmoid(1) + 0.75 log(1 - sigmoid(1)))
    logits = torch.ones(1, 1, 2, 2)
    target = torch.full((1, 1, 2, 2), 0.25)
    s = sigmoid(1.0)
    expected = -(0.25 * math.log(s) + 0.75 * math.log(1 - s))
    assert BCELoss()(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_ce_hand_computed() -> None:
    # K = 3, one image of 1x2 pixels.
    # pixel 0: z = (1, 2, 3), label 2: ce = log(e + e^2 + e^3) - 3
    # pixel 1: z = (0, 0, 0), label 0: ce = log 3
    logits = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])[None, :, None, :]  # (1, 3, 1, 2)
    labels = torch.tensor([[[2, 0]]])  # (1, 1, 2)
    target = onehot_ref(labels, 3)
    lse = math.log(math.e + math.e**2 + math.e**3)
    expected = ((lse - 3) + math.log(3)) / 2
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # soft target at pixel 0, t = (0.5, 0, 0.5): 0.5 (lse - 1) + 0.5 (lse - 3)
    soft = target.clone()
    soft[0, :, 0, 0] = torch.tensor([0.5, 0.0, 0.5])
    expected_soft = ((0.5 * (lse - 1) + 0.5 * (lse - 3)) + math.log(3)) / 2
    assert CrossEntropyLoss()(logits, soft).item() == pytest.approx(expected_soft, rel=1e-6)


@pytest.mark.parametrize("k", [2, 4])
def test_ce_one_hot_equals_torch_hard_labels(k: int) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, k, 5, 7, generator=g)
    labels = torch.randint(0, k, (3, 5, 7), generator=g)
    ours = CrossEntropyLoss()(logits, onehot_ref(labels, k))
    torch.testing.assert_close(ours, F.cross_entropy(logits, labels))


def test_soft_dice_binary_hand_computed() -> None:
    # p = sigmoid(z) = (0.5, 0.75, 0.25, 0.5), t = (1, 1, 0, 0)
    # sum p t = 0.5 + 0.75 = 1.25, sum p = 2, sum t = 2
    # dice = (2.5 + s) / (4 + s) ~= 0.625, loss ~= 0.375
    logits = t4([[0.0, LN3], [-LN3, 0.0]])
    target = t4([[1.0, 1.0], [0.0, 0.0]])
    expected = 1 - (2 * 1.25 + SMOOTH) / (4 + SMOOTH)
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.375, abs=1e-5)


def test_soft_dice_multiclass_background_hand_computed() -> None:
    # K = 2, channel-0 logits 0, channel-1 logits as above: softmax fg = sigmoid(z1 - z0)
    # p_fg = (0.5, 0.75, 0.25, 0.5), t_fg = (1, 0, 0, 0): inter 0.5, sum p 2, sum t 1 -> dice 1/3
    # p_bg = (0.5, 0.25, 0.75, 0.5), t_bg = (0, 1, 1, 1): inter 1.5, sum p 2, sum t 3 -> dice 3/5
    z1 = torch.tensor([[0.0, LN3], [-LN3, 0.0]])
    logits = torch.stack([torch.zeros(2, 2), z1])[None]  # (1, 2, 2, 2)
    labels = torch.tensor([[[1, 0], [0, 0]]])
    target = onehot_ref(labels, 2)
    dice_fg = (2 * 0.5 + SMOOTH) / (2 + 1 + SMOOTH)
    dice_bg = (2 * 1.5 + SMOOTH) / (2 + 3 + SMOOTH)
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(1 - dice_fg, rel=1e-6)  # ~ 2/3
    with_bg = SoftDiceLoss(include_background=True)(logits, target).item()
    assert with_bg == pytest.approx(1 - (dice_fg + dice_bg) / 2, rel=1e-6)  # ~ 1 - (1/3 + 3/5)/2
    # the binary (K == 1) form of the same foreground gives the same foreground Dice
    assert SoftDiceLoss()(z1[None, None], target[:, 1:]).item() == pytest.approx(1 - dice_fg, rel=1e-6)


def test_soft_dice_batch_vs_per_image_hand_computed() -> None:
    # image A: p = (0.5, 0.75, 0.25, 0.5), t = (1, 1, 0, 0): inter 1.25, sum p 2, sum t 2
    # image B: p = 0.5 everywhere (sum 2), t = 0:            inter 0,    sum p 2, sum t 0
    # batch dice:     (2 * 1.25 + s) / (2 + 2 + 2 + 0 + s) ~= 2.5 / 6
    # per-image dice: mean((2.5 + s) / (4 + s), s / (2 + s)) ~= 0.3125
    logits = torch.cat([t4([[0.0, LN3], [-LN3, 0.0]]), torch.zeros(1, 1, 2, 2)])
    target = torch.cat([t4([[1.0, 1.0], [0.0, 0.0]]), torch.zeros(1, 1, 2, 2)])
    batch = 1 - (2.5 + SMOOTH) / (6 + SMOOTH)
    per_image = 1 - ((2.5 + SMOOTH) / (4 + SMOOTH) + SMOOTH / (2 + SMOOTH)) / 2
    assert SoftDiceLoss(batch_dice=True)(logits, target).item() == pytest.approx(batch, rel=1e-6)
    assert SoftDiceLoss(batch_dice=False)(logits, target).item() == pytest.approx(per_image, rel=1e-6)


def test_dice_ce_is_weighted_sum() -> None:
    # binary: dice 0.375 (above) + bce; multi-class: dice + ce
    logits = t4([[0.0, LN3], [-LN3, 0.0]])
    target = t4([[1.0, 1.0], [0.0, 0.0]])
    dice = 1 - (2.5 + SMOOTH) / (4 + SMOOTH)
    # bce per pixel: log(1 + e^z) - t z
    bce = (math.log(2) + (math.log(4) - LN3) + math.log(4 / 3) + math.log(2)) / 4
    assert DiceCELoss()(logits, target).item() == pytest.approx(dice + bce, rel=1e-6)
    weighted = DiceCELoss(lambda_dice=2.0, lambda_ce=0.5)(logits, target).item()
    assert weighted == pytest.approx(2 * dice + 0.5 * bce, rel=1e-6)

    g = torch.Generator().manual_seed(1)
    logits3 = torch.randn(2, 3, 4, 4, generator=g)
    target3 = onehot_ref(torch.randint(0, 3, (2, 4, 4), generator=g), 3)
    expected = SoftDiceLoss()(logits3, target3) + CrossEntropyLoss()(logits3, target3)
    torch.testing.assert_close(DiceCELoss()(logits3, target3), expected)


def test_build_loss_names_and_options() -> None:
    assert list_losses() == ["ce", "bce", "dice", "dice_ce"]
    assert isinstance(build_loss("ce"), CrossEntropyLoss)
    assert isinstance(build_loss("bce"), BCELoss)
    assert isinstance(build_loss("dice_ce"), DiceCELoss)
    dice = build_loss("dice", batch_dice=False)
    assert isinstance(dice, SoftDiceLoss) and dice.batch_dice is False


def test_perfect_prediction_has_near_zero_loss() -> None:
    labels = torch.tensor([[[0, 1], [2, 1]]])
    target = onehot_ref(labels, 3)
    logits = 40 * (2 * target - 1)  # huge margin towards the right class
    assert build_loss("dice_ce")(logits, target).item() == pytest.approx(0.0, abs=1e-4)


# ------------------------------------------------------------------------------------------
# Target pyramid
# ------------------------------------------------------------------------------------------


def test_area_keeps_single_pixel_lesion_nearest_does_not() -> None:
    # 4x4 mask, one foreground pixel at (row 1, col 1). 4x4 -> 2x2:
    # area: cell (0, 0) averages pixels rows 0-1, cols 0-1 -> 1/4 = 0.25, other cells 0.
    # nearest (PyTorch "nearest": source index = floor(2 * dst)) samples pixels (0,0), (0,2),
    # (2,0), (2,2) -> misses (1, 1): all zeros, the lesion vanishes.
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 1, 1] = 1
    (area,) = target_pyramid(labels, [(2, 2)], num_classes=1, mode="area")
    (near,) = target_pyramid(labels, [(2, 2)], num_classes=1, mode="nearest")
    assert area[0, 0].tolist() == [[0.25, 0.0], [0.0, 0.0]]
    assert near[0, 0].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    # a lesion at (0, 0) is sampled by nearest, which then inflates it to the whole cell: 1.0
    labels2 = torch.zeros(1, 4, 4, dtype=torch.long)
    labels2[0, 0, 0] = 1
    (near2,) = target_pyramid(labels2, [2], num_classes=1, mode="nearest")
    assert near2[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    # multi-class (K = 2): background 0.75 and foreground 0.25 in that cell, summing to 1
    (area2,) = target_pyramid(labels, [(2, 2)], num_classes=2, mode="area")
    assert area2[0, :, 0, 0].tolist() == [0.75, 0.25]


@pytest.mark.parametrize("k", [1, 3])
def test_area_pyramid_equals_direct_area_resize(k: int) -> None:
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, max(k, 2), (2, 64, 64), generator=g)
    onehot = onehot_ref(labels, k)
    # dividing sizes (cascaded internally), non-dividing ones (from full), non-square, duplicates
    sizes = [(8, 8), (16, 16), (32, 32), (64, 64), (24, 24), (12, 12), (16, 32), (4, 2), (16, 16)]
    pyramid = target_pyramid(labels, sizes, num_classes=k, mode="area")
    assert len(pyramid) == len(sizes)
    for size, got in zip(sizes, pyramid, strict=True):
        direct = F.interpolate(onehot, size=size, mode="area")
        assert got.shape == (2, k, *size)
        torch.testing.assert_close(got, direct, rtol=0, atol=0)  # exact: dyadic averages
        if k > 1:
            torch.testing.assert_close(got.sum(1), torch.ones(2, *size))


@pytest.mark.parametrize("k", [1, 3])
def test_nearest_pyramid_is_one_hot_of_nearest_labels(k: int) -> None:
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, max(k, 2), (2, 32, 32), generator=g)
    sizes = [(4, 4), (8, 8), (16, 16), (32, 32), (10, 6)]
    for size, got in zip(sizes, target_pyramid(labels, sizes, k, "nearest"), strict=True):
        resized = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
        assert torch.equal(got, onehot_ref(resized, k))  # hard 0/1 maps


def test_full_size_returns_exact_one_hot_for_any_int_dtype() -> None:
    labels = torch.tensor([[[0, 2], [1, 2]]], dtype=torch.uint8)
    for mode in ("nearest", "area"):
        (full,) = target_pyramid(labels, [(2, 2)], 3, mode)
        assert full.dtype == torch.float32
        assert torch.equal(full, onehot_ref(labels, 3))
    mask = torch.tensor([[[True, False], [False, True]]])
    (fg,) = target_pyramid(mask, [2], 1, "area")
    assert fg.tolist() == [[[[1.0, 0.0], [0.0, 1.0]]]]


# ------------------------------------------------------------------------------------------
# Multi-scale loss
# ------------------------------------------------------------------------------------------


def make_outputs(k: int, sizes: tuple[int, ...] = (4, 8, 16), seed: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, k, s, s, generator=g, requires_grad=True) for s in sizes]


@pytest.mark.parametrize(("k", "base", "mode"), [(1, "dice_ce", "nearest"), (3, "dice_ce", "area"), (3, "ce", "area")])
def test_multiscale_weighted_sum(k: int, base: str, mode: str) -> None:
    outs = make_outputs(k)
    labels = torch.randint(0, max(k, 2), (2, 16, 16), generator=torch.Generator().manual_seed(5))
    onehot = onehot_ref(labels, k)
    base_fn = build_loss(base)
    per_scale = [base_fn(o, F.interpolate(onehot, size=o.shape[-2:], mode=mode)) for o in outs]
    w = [0.25, 0.5, 2.0]
    got = MultiScaleLoss(base, weights=w, target_resize=mode)(outs, labels)
    torch.testing.assert_close(got, 0.25 * per_scale[0] + 0.5 * per_scale[1] + 2.0 * per_scale[2])
    # weights=None: the plain (un-normalised) sum
    plain = MultiScaleLoss(base, target_resize=mode)(outs, labels)
    torch.testing.assert_close(plain, per_scale[0] + per_scale[1] + per_scale[2])


class Recorder(nn.Module):
    """A custom base loss that records what it was called with: mean |logits - target|."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls.append((tuple(logits.shape), tuple(target.shape)))
        return (logits - target).abs().mean()


def test_final_weights_use_only_last_output() -> None:
    outs = make_outputs(1)
    labels = torch.randint(0, 2, (2, 16, 16), generator=torch.Generator().manual_seed(6))
    got = MultiScaleLoss("dice_ce", weights="final")(outs, labels)
    expected = build_loss("dice_ce")(outs[-1], onehot_ref(labels, 1))
    torch.testing.assert_close(got, expected)
    got.backward()
    assert outs[0].grad is None and outs[1].grad is None and outs[2].grad is not None
    # the coarser outputs are not even evaluated
    rec = Recorder()
    MultiScaleLoss(rec, weights="final")(outs, labels)
    assert rec.calls == [((2, 1, 16, 16), (2, 1, 16, 16))]


def test_custom_module_and_single_tensor_and_zero_weight() -> None:
    outs = make_outputs(3, sizes=(8, 16))
    labels = torch.randint(0, 3, (2, 16, 16), generator=torch.Generator().manual_seed(7))
    rec = Recorder()
    MultiScaleLoss(rec, weights=[0.0, 1.0])(outs, labels)
    assert rec.calls == [((2, 3, 16, 16), (2, 3, 16, 16))]  # zero weight: skipped
    single = MultiScaleLoss("dice")(outs[0], labels)  # a bare tensor is one output
    expected = SoftDiceLoss()(outs[0], F.interpolate(onehot_ref(labels, 3), size=(8, 8), mode="nearest"))
    torch.testing.assert_close(single, expected)


def test_precomputed_targets_match() -> None:
    outs = make_outputs(3)
    labels = torch.randint(0, 3, (2, 16, 16), generator=torch.Generator().manual_seed(8))
    loss = MultiScaleLoss("dice_ce", weights=[1.0, 2.0, 3.0], target_resize="area")
    cached = target_pyramid(labels, [o.shape[-2:] for o in outs], 3, loss.target_resize)
    torch.testing.assert_close(loss(outs, targets=cached), loss(outs, labels))


@pytest.mark.parametrize("k", [1, 3])
def test_gradients_finite_and_nonzero_for_every_output(k: int) -> None:
    outs = make_outputs(k)
    labels = torch.randint(0, max(k, 2), (2, 16, 16), generator=torch.Generator().manual_seed(9))
    MultiScaleLoss("dice_ce", target_resize="area")(outs, labels).backward()
    for o in outs:
        assert o.grad is not None
        assert torch.isfinite(o.grad).all()
        assert o.grad.abs().sum() > 0


def test_with_jnet_training_outputs() -> None:
    net = jnet.JNet("unet", 1, 16, 64, head="jnet", backbone_options={"width": 2}).train()
    outs = net(torch.randn(2, 1, 16, 16))
    labels = torch.randint(0, 2, (2, 64, 64), generator=torch.Generator().manual_seed(10))
    loss = MultiScaleLoss()(outs, labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_docstring_example_runs() -> None:
    result = doctest.testmod(jnet.losses, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


def test_error_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"unknown loss 'focal'.*'dice_ce'"):
        MultiScaleLoss("focal")
    with pytest.raises(ValueError, match=r"unknown loss 'focal'"):
        build_loss("focal")
    with pytest.raises(ValueError, match=r"unknown target_resize 'bilinear'.*'nearest', 'area'"):
        MultiScaleLoss(target_resize="bilinear")
    with pytest.raises(ValueError, match=r"unknown weights 'last'.*'final'"):
        MultiScaleLoss(weights="last")
    with pytest.raises(ValueError, match=r"unknown target resize mode 'bicubic'"):
        target_pyramid(torch.zeros(1, 4, 4, dtype=torch.long), [2], 1, "bicubic")
    with pytest.raises(TypeError, match="base_loss"):
        MultiScaleLoss(42)  # type: ignore[arg-type]


def test_error_bad_weights() -> None:
    outs = make_outputs(1)
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    with pytest.raises(ValueError, match=r"3 output\(s\) but 2 loss weight\(s\)"):
        MultiScaleLoss(weights=[1.0, 1.0])(outs, labels)
    with pytest.raises(ValueError, match=">= 0"):
        MultiScaleLoss(weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="at least one weight must be positive"):
        MultiScaleLoss(weights=[0.0, 0.0])


def test_error_labels_out_of_range() -> None:
    labels = torch.tensor([[[0, 1], [3, 2]]])
    with pytest.raises(ValueError, match=r"label 3 is out of range.*K == 3: labels 0\.\.2"):
        target_pyramid(labels, [2], 3)
    with pytest.raises(ValueError, match=r"label 2 is out of range.*binary \(K == 1\): labels 0 and 1"):
        MultiScaleLoss()(torch.zeros(1, 1, 2, 2), torch.tensor([[[0, 2], [1, 1]]]))
    with pytest.raises(ValueError, match=r"label -1 is out of range"):
        target_pyramid(torch.tensor([[[0, -1]]]), [(1, 2)], 2)
    with pytest.raises(ValueError, match=r"label 255 .*divide it by 255"):
        target_pyramid(torch.tensor([[[0, 255]]], dtype=torch.uint8), [(1, 2)], 1)
    with pytest.raises(TypeError, match="integer label map"):
        target_pyramid(torch.zeros(1, 2, 2), [2], 1)
    with pytest.raises(ValueError, match=r"\(B, H, W\).*squeeze"):
        target_pyramid(torch.zeros(1, 1, 2, 2, dtype=torch.long), [2], 1)


def test_error_ce_bce_channel_mismatch() -> None:
    one = torch.zeros(1, 1, 2, 2)
    two = torch.zeros(1, 2, 2, 2)
    with pytest.raises(ValueError, match=r"K >= 2.*use the 'bce' loss"):
        build_loss("ce")(one, one)
    with pytest.raises(ValueError, match=r"K == 2.*use the 'ce' loss"):
        build_loss("bce")(two, two)
    with pytest.raises(ValueError, match="use the 'bce' loss"):
        MultiScaleLoss("ce")(one, torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="differ in shape"):
        SoftDiceLoss()(two, one)


def test_error_target_smaller_than_output() -> None:
    outs = make_outputs(1, sizes=(4, 8))
    with pytest.raises(ValueError, match=r"cannot resize the target up: it is 4x4.*8x8"):
        MultiScaleLoss()(outs, torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="cannot resize the target up"):
        target_pyramid(torch.zeros(1, 4, 4, dtype=torch.long), [(2, 5)], 1)


def test_error_missing_or_mismatched_targets() -> None:
    outs = make_outputs(1, sizes=(4, 8))
    with pytest.raises(ValueError, match="give the ground truth"):
        MultiScaleLoss()(outs)
    with pytest.raises(ValueError, match=r"2 output\(s\) but 1 precomputed"):
        MultiScaleLoss()(outs, targets=[torch.zeros(2, 1, 8, 8)])
    with pytest.raises(ValueError, match="outputs is empty"):
        MultiScaleLoss()([], torch.zeros(1, 4, 4, dtype=torch.long))
