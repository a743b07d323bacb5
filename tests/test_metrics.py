"""Metrics: hand-computed Dice/Jaccard, empty-slice rules, aggregation, resizing, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from jnet.metrics import (
    SegmentationMetrics,
    confusion_counts,
    dice_score,
    jaccard_score,
    logits_to_labels,
    upsample_labels,
    upsample_logits,
)


def t(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


# Binary 3x3 pair. Truth = the top-left 2x2 block (4 pixels); prediction = the top row (3 pixels).
# TP = (0,0),(0,1) = 2; FP = (0,2) = 1; FN = (1,0),(1,1) = 2.
# dice = 2*2 / (2*2 + 1 + 2) = 4/7; jaccard = 2 / (2 + 1 + 2) = 2/5.
TARGET_A = [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
PRED_A = [[1, 1, 1], [0, 0, 0], [0, 0, 0]]
# Image B: everything foreground, predicted perfectly: TP = 9, FP = FN = 0 -> dice = jaccard = 1.
TARGET_B = [[1] * 3] * 3
PRED_B = [[1] * 3] * 3
EMPTY = [[0] * 3] * 3


def test_binary_single_image_hand_computed() -> None:
    pred, target = t([PRED_A]), t([TARGET_A])
    tp, fp, fn = confusion_counts(pred, target, 1)
    assert tp.tolist() == [[2]] and fp.tolist() == [[1]] and fn.tolist() == [[2]]
    assert tp.dtype == torch.long
    d = dice_score(pred, target, 1)
    assert d.shape == (1,) and d.dtype == torch.float64
    assert d.item() == pytest.approx(4 / 7, abs=1e-15)
    assert jaccard_score(pred, target, 1).item() == pytest.approx(2 / 5, abs=1e-15)


def test_mean_image_differs_from_global() -> None:
    pred, target = t([PRED_A, PRED_B]), t([TARGET_A, TARGET_B])
    # mean_image: dice (4/7 + 1) / 2 = 11/14; jaccard (2/5 + 1) / 2 = 7/10
    assert dice_score(pred, target, 1).item() == pytest.approx(11 / 14)
    assert jaccard_score(pred, target, 1).item() == pytest.approx(7 / 10)
    # global: TP = 2 + 9 = 11, FP = 1, FN = 2 -> dice 22 / (22 + 3) = 22/25; jaccard 11 / (11 + 3) = 11/14
    assert dice_score(pred, target, 1, reduction="global").item() == pytest.approx(22 / 25)
    assert jaccard_score(pred, target, 1, reduction="global").item() == pytest.approx(11 / 14)


def test_multiclass_k3_per_class() -> None:
    target = t([[[0, 1, 1], [2, 2, 0]]])
    pred = t([[[0, 1, 2], [2, 2, 1]]])
    # class 1: truth (0,1),(0,2); pred (0,1),(1,2) -> TP 1, FP 1, FN 1: dice 2/4 = 1/2, jaccard 1/3
    # class 2: truth (1,0),(1,1); pred (0,2),(1,0),(1,1) -> TP 2, FP 1, FN 0: dice 4/5, jaccard 2/3
    tp, fp, fn = confusion_counts(pred, target, 3)
    assert tp.tolist() == [[1, 2]] and fp.tolist() == [[1, 1]] and fn.tolist() == [[1, 0]]
    torch.testing.assert_close(dice_score(pred, target, 3), torch.tensor([1 / 2, 4 / 5], dtype=torch.float64))
    torch.testing.assert_close(jaccard_score(pred, target, 3), torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))

    m = SegmentationMetrics(3, class_names=["liver", "tumour"])
    m.update(pred, target)
    r = m.compute()
    assert r["dice"] == pytest.approx({"liver": 1 / 2, "tumour": 4 / 5})
    assert r["jaccard"] == pytest.approx({"liver": 1 / 3, "tumour": 2 / 3})
    assert r["mean_dice"] == pytest.approx((1 / 2 + 4 / 5) / 2)  # 0.65
    assert r["mean_jaccard"] == pytest.approx((1 / 3 + 2 / 3) / 2)  # 0.5
    # one image: global == per-image mean
    assert r["dice_global"] == r["dice"] and r["mean_jaccard_global"] == r["mean_jaccard"]
    assert r["n_images"] == 1


def test_empty_slices() -> None:
    empty = t([EMPTY])
    # both empty: denominator 0 -> 1.0 with "one", NaN with "nan"
    assert dice_score(empty, empty, 1).item() == 1.0
    assert jaccard_score(empty, empty, 1, empty="one").item() == 1.0
    assert math.isnan(dice_score(empty, empty, 1, empty="nan").item())
    assert math.isnan(jaccard_score(empty, empty, 1, reduction="global", empty="nan").item())
    # empty truth, non-empty prediction: TP 0, FP 3 -> 0 whatever `empty` is
    for mode in ("one", "nan"):
        assert dice_score(t([PRED_A]), empty, 1, empty=mode).item() == 0.0
        assert jaccard_score(t([PRED_A]), empty, 1, empty=mode).item() == 0.0

    # image A (dice 4/7) + an empty/empty image
    pred, target = t([PRED_A, EMPTY]), t([TARGET_A, EMPTY])
    assert dice_score(pred, target, 1).item() == pytest.approx((4 / 7 + 1) / 2)  # "one": 11/14
    assert dice_score(pred, target, 1, empty="nan").item() == pytest.approx(4 / 7)  # the empty image is ignored
    assert jaccard_score(pred, target, 1, empty="nan").item() == pytest.approx(2 / 5)
    # global: the empty image adds no counts -> image A's scores, for both modes
    assert dice_score(pred, target, 1, reduction="global").item() == pytest.approx(4 / 7)
    assert dice_score(pred, target, 1, reduction="global", empty="nan").item() == pytest.approx(4 / 7)


def test_empty_nan_in_accumulator_class_means() -> None:
    # K = 3, class 2 never appears (neither truth nor prediction): NaN, ignored by the class means
    target = t([[[0, 1], [1, 1]]])
    pred = t([[[0, 1], [0, 1]]])  # class 1: TP 2, FP 0, FN 1 -> dice 4/5, jaccard 2/3
    m = SegmentationMetrics(3, empty="nan")
    m.update(pred, target)
    r = m.compute()
    assert r["dice"]["class_1"] == pytest.approx(4 / 5)
    assert math.isnan(r["dice"]["class_2"]) and math.isnan(r["jaccard_global"]["class_2"])
    assert r["mean_dice"] == pytest.approx(4 / 5) and r["mean_jaccard_global"] == pytest.approx(2 / 3)
    # with "one" the empty class scores 1: mean dice (4/5 + 1) / 2 = 9/10
    m1 = SegmentationMetrics(3)
    m1.update(pred, target)
    assert m1.compute()["mean_dice"] == pytest.approx(9 / 10)
    # all empty -> NaN everywhere
    m2 = SegmentationMetrics(1, empty="nan")
    m2.update(t([EMPTY]), t([EMPTY]))
    assert math.isnan(m2.compute()["mean_dice"])


def test_logits_to_labels() -> None:
    # K = 1: strictly greater than 0 is foreground (0 itself is background)
    logits = torch.tensor([[[[-1.0, 0.0], [0.5, 2.0]]]])
    assert logits_to_labels(logits).tolist() == [[[0, 0], [1, 1]]]
    assert logits_to_labels(logits).dtype == torch.long
    # K = 3: argmax over channels, pixel by pixel
    c0 = [[5.0, 0.0], [0.0, 1.0]]
    c1 = [[1.0, 3.0], [0.0, 2.0]]
    c2 = [[0.0, 1.0], [4.0, 3.0]]
    assert logits_to_labels(torch.tensor([[c0, c1, c2]])).tolist() == [[[0, 1], [2, 2]]]
    with pytest.raises(ValueError, match="B, K, h, w"):
        logits_to_labels(torch.zeros(1, 2, 2))


def test_accumulation_equals_one_shot() -> None:
    g = torch.Generator().manual_seed(0)
    k, sizes = 3, (2, 5, 1)
    preds = [torch.randint(0, k, (b, 8, 8), generator=g) for b in sizes]
    targets = [torch.randint(0, k, (b, 8, 8), generator=g) for b in sizes]
    targets[1][0] = 0  # an empty/empty image, to exercise the empty rule
    preds[1][0] = 0
    logits = torch.randn(sizes[2], k, 8, 8, generator=g)  # the last batch arrives as logits
    preds[2] = logits_to_labels(logits)

    m = SegmentationMetrics(k)
    for i, (p, y) in enumerate(zip(preds, targets, strict=True)):
        m.update(logits if i == 2 else p, y)
    got = m.compute()

    pred, target = torch.cat(preds), torch.cat(targets)
    names = ["class_1", "class_2"]
    want: dict = {"n_images": 8}
    for name, fn in (("dice", dice_score), ("jaccard", jaccard_score)):
        for reduction, suffix in (("mean_image", ""), ("global", "_global")):
            s = fn(pred, target, k, reduction=reduction)
            want[name + suffix] = {n: float(v) for n, v in zip(names, s, strict=True)}
            want[f"mean_{name}{suffix}"] = float(s.mean())
    assert got == want  # exact
    json.dumps(got)  # plain floats
    assert all(type(v) is float for v in got["dice"].values())

    m.reset()
    with pytest.raises(ValueError, match="no images were seen"):
        m.compute()


def test_default_class_names() -> None:
    assert SegmentationMetrics(1).class_names == ["foreground"]
    assert SegmentationMetrics(4).class_names == ["class_1", "class_2", "class_3"]
    m = SegmentationMetrics(1)
    m.update(t([PRED_A]), t([TARGET_A]))
    r = m.compute()
    assert set(r) == {
        "dice",
        "jaccard",
        "dice_global",
        "jaccard_global",
        "mean_dice",
        "mean_jaccard",
        "mean_dice_global",
        "mean_jaccard_global",
        "n_images",
    }
    assert r["dice"] == {"foreground": pytest.approx(4 / 7)}


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"\(1, 4, 4\).*\(1, 8, 8\).*full resolution"):
        confusion_counts(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 8, 8, dtype=torch.long), 2)
    m = SegmentationMetrics(2)
    with pytest.raises(ValueError, match="full resolution"):
        m.update(torch.zeros(1, 2, 4, 4), torch.zeros(1, 8, 8, dtype=torch.long))  # low-res logits
    with pytest.raises(ValueError, match="K=2"):
        m.update(torch.zeros(1, 3, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))  # wrong channel count
    with pytest.raises(ValueError, match="label 3"):
        dice_score(t([[[0, 1], [2, 3]]]), t([[[0, 1], [2, 2]]]), 3)  # K=3: labels 0..2
    with pytest.raises(ValueError, match="target contains label -1"):
        dice_score(t([[[0, 1]]]), t([[[0, -1]]]), 3)
    with pytest.raises(ValueError, match="label 2"):
        jaccard_score(t([[[0, 2]]]), t([[[0, 1]]]), 1)  # binary: labels {0, 1}
    with pytest.raises(ValueError, match="class_names has 1 name"):
        SegmentationMetrics(3, class_names=["liver"])
    with pytest.raises(ValueError, match="no images were seen"):
        SegmentationMetrics(1).compute()
    with pytest.raises(ValueError, match="reduction"):
        dice_score(t([PRED_A]), t([TARGET_A]), 1, reduction="micro")
    with pytest.raises(ValueError, match="empty"):
        SegmentationMetrics(1, empty="zero")
    with pytest.raises(TypeError, match="logits_to_labels"):
        confusion_counts(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), 1)


def test_upsample_labels_blocks() -> None:
    small = torch.tensor([[[1, 2], [3, 4]]], dtype=torch.uint8)
    big = upsample_labels(small, (4, 4))
    expected = [[[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]]
    assert big.tolist() == expected and big.dtype == torch.uint8
    assert upsample_labels(small, 4).tolist() == expected
    # down again (nearest, pixel-centre aligned) gives the original back
    assert torch.equal(upsample_labels(big, (2, 2)), small)
    # non-square: 2x2 -> 2x6 repeats each column 3 times
    assert upsample_labels(small, (2, 6)).tolist() == [[[1, 1, 1, 2, 2, 2], [3, 3, 3, 4, 4, 4]]]


def test_upsample_logits_bilinear() -> None:
    # one row [0, 4] to width 4, align_corners=False: source x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25,
    # clamped to [0, 1] -> 0, 0.25, 0.75, 1 -> values 0, 1, 3, 4
    x = torch.tensor([[[[0.0, 4.0]]]])
    y = upsample_logits(x, (1, 4))
    torch.testing.assert_close(y, torch.tensor([[[[0.0, 1.0, 3.0, 4.0]]]]))
    # full-resolution scoring path: bilinear logits, then labels, shape (B, H, W)
    logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    labels = logits_to_labels(upsample_logits(logits, 16))
    assert labels.shape == (2, 16, 16)
    with pytest.raises(ValueError, match="upsample mode"):
        upsample_logits(logits, 16, mode="area")


def test_merging_counts_equals_one_accumulator() -> None:
    gen = torch.Generator().manual_seed(3)
    preds = torch.randint(0, 3, (6, 8, 8), generator=gen)
    target = torch.randint(0, 3, (6, 8, 8), generator=gen)
    whole = SegmentationMetrics(3)
    whole.update(preds, target)
    a, b = SegmentationMetrics(3), SegmentationMetrics(3)
    a.update(preds[:4], target[:4])
    b.update(preds[4:], target[4:])
    merged = SegmentationMetrics(3)
    merged.add_counts(*a.counts())
    merged.add_counts(*b.counts())
    assert merged.compute() == whole.compute()
    with pytest.raises(ValueError, match=r"three \(N, 2\) tensors"):
        merged.add_counts(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3))


def test_low_resolution_oracle_hand_cases() -> None:
    from jnet.metrics import low_resolution_oracle

    band = torch.zeros(1, 256, 256, dtype=torch.long)
    band[:, :128] = 1  # a step on the 16-pixel grid: bilinear crosses 0.5 exactly between rows 127 and 128
    assert low_resolution_oracle(band, 16, 1)["mean_jaccard"] == 1.0
    dot = torch.zeros(2, 256, 256, dtype=torch.long)
    dot[0, 100, 100] = 1  # covers 1/256 of its 16x16 cell: lost at 16x16 (Jaccard 0); slice 1 empty-empty (1)
    r = low_resolution_oracle(dot, 16, 1)
    assert r["jaccard"]["foreground"] == 0.5 and r["mean_jaccard_global"] == 0.0
    assert low_resolution_oracle(dot, 256, 1)["mean_jaccard"] == 1.0  # no squeeze, nothing lost
    three = torch.zeros(1, 64, 64, dtype=torch.long)
    three[:, :32] = 1
    three[:, 32:48] = 2  # K = 3 bands aligned with the 8x8 grid of 8-pixel cells
    assert low_resolution_oracle(three, 8, 3, ["a", "b"])["mean_jaccard"] == 1.0


def test_data_cli_oracle(tmp_path, capsys) -> None:
    from jnet.cli import main
    from jnet.data import load_data
    from jnet.data.prepare import patient_split, save_split

    data = load_data("synthetic", num_patients=4, slices_per_patient=3, size=64)
    save_split(patient_split(data.patient_id, 0.5, seed=0), tmp_path / "split.json")
    options = ["--option", "num_patients=4", "--option", "slices_per_patient=3", "--option", "size=64"]
    argv = ["data", "--data", "synthetic", *options, "--oracle", "16", "--oracle", "64",
            "--split-file", str(tmp_path / "split.json")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "the 2 validation patients of" in out and "6 slices" in out
    assert "64x64 -> 64x64: mean Dice 1.0000, mean Jaccard 1.0000" in out
