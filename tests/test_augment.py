"""Full-resolution augmentation: images and masks stay aligned, labels stay labels, seeded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jnet.data.augment import AugmentConfig, _affine_grid, augment_batch
from jnet.data.prepare import downsample

GEOMETRY_ONLY = AugmentConfig(gamma=(1.0, 1.0), gain=(1.0, 1.0), bias=0.0)
FLIPS_ONLY = AugmentConfig(rotate=0.0, scale=(1.0, 1.0), gamma=(1.0, 1.0), gain=(1.0, 1.0), bias=0.0)


def blobs(b: int = 8, h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Masks ``(B, H, W)`` uint8 with a disc (label 1) and a rectangle (label 3) placed at random."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks = torch.zeros(b, h, w, dtype=torch.uint8)
    for i in range(b):
        cy, cx = torch.randint(h // 4, 3 * h // 4, (2,), generator=g).tolist()
        r = int(torch.randint(max(2, h // 12), max(3, h // 5), (1,), generator=g))
        masks[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        y0, x0 = torch.randint(1, h // 2, (2,), generator=g).tolist()
        masks[i, y0 : y0 + h // 8 + 1, x0 : x0 + h // 6 + 1] = 3
    return masks


def test_images_and_masks_stay_aligned() -> None:
    masks = blobs(16, 64, 96)
    images = 100.0 * (masks > 0).float()[:, None]
    x, y = augment_batch(images, masks, GEOMETRY_ONLY, torch.Generator().manual_seed(3))
    assert x.shape == images.shape and y.shape == masks.shape and y.dtype == torch.uint8
    assert not torch.equal(y, masks)  # something happened
    agree = ((x[:, 0] > 50) == (y > 0)).float().mean(dim=(1, 2))
    assert agree.min() > 0.99, agree
    # the whole default config too: the intensity jitter is monotone, so bright is still the mask
    x, y = augment_batch(images, masks, AugmentConfig(), torch.Generator().manual_seed(4))
    for xi, yi in zip(x[:, 0], y, strict=True):
        mid = (xi.max() + xi.min()) / 2
        assert ((xi > mid) == (yi > 0)).float().mean() > 0.99


def test_masks_keep_their_labels() -> None:
    masks = blobs(8)
    for dtype in (torch.uint8, torch.int64):
        _, y = augment_batch(torch.randn(8, 2, 64, 64), masks.to(dtype), AugmentConfig(), torch.Generator())
        assert y.dtype == dtype
        assert set(torch.unique(y).tolist()) <= {0, 1, 3}


def test_flips_are_exact() -> None:
    images, masks = torch.randn(4, 2, 8, 12), blobs(4, 8, 12)
    cfg = AugmentConfig(**{**FLIPS_ONLY.__dict__, "flip_h": 1.0, "flip_v": 0.0})
    x, y = augment_batch(images, masks, cfg)
    assert torch.equal(x, images.flip(-1)) and torch.equal(y, masks.flip(-1))
    cfg = AugmentConfig(**{**FLIPS_ONLY.__dict__, "flip_h": 1.0, "flip_v": 1.0})
    x, y = augment_batch(images, masks, cfg)
    assert torch.equal(x, images.flip(-1, -2)) and torch.equal(y, masks.flip(-1, -2))
    # with p = 0.5 each image is either itself or its mirror, its mask the same way
    x, y = augment_batch(images, masks, FLIPS_ONLY, torch.Generator().manual_seed(0))
    for i in range(4):
        options = [(images[i], masks[i]), (images[i].flip(-1), masks[i].flip(-1))]
        options += [(a.flip(-2), m.flip(-2)) for a, m in options]
        assert any(torch.equal(x[i], a) and torch.equal(y[i], m) for a, m in options)


def test_seeded_and_deterministic() -> None:
    images, masks = torch.randn(6, 1, 32, 32), blobs(6, 32, 32)
    a = augment_batch(images, masks, AugmentConfig(), torch.Generator().manual_seed(7))
    b = augment_batch(images, masks, AugmentConfig(), torch.Generator().manual_seed(7))
    c = augment_batch(images, masks, AugmentConfig(), torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_disabled_is_the_identity() -> None:
    images, masks = torch.randn(3, 1, 16, 16), blobs(3, 16, 16)
    for cfg in (None, AugmentConfig(enabled=False)):
        x, y = augment_batch(images, masks, cfg, torch.Generator())
        assert x is images and y is masks
        x, y = augment_batch(images, masks, cfg, output_size=4)
        assert torch.equal(x, downsample(images, 4)) and y is masks


def test_intensity_touches_images_only() -> None:
    images, masks = torch.randn(4, 3, 16, 16), blobs(4, 16, 16)
    cfg = AugmentConfig(flip_h=0.0, flip_v=0.0, rotate=0.0, scale=(1.0, 1.0))
    x, y = augment_batch(images, masks, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(y, masks) and not torch.allclose(x, images)
    # gain and bias per image and channel, nothing else, when gamma is off
    cfg = AugmentConfig(flip_h=0.0, flip_v=0.0, rotate=0.0, scale=(1.0, 1.0), gamma=(1.0, 1.0))
    x, _ = augment_batch(images, masks, cfg, torch.Generator().manual_seed(1))
    for i in range(4):
        for c in range(3):
            slope = torch.linalg.lstsq(
                torch.stack([images[i, c].flatten(), torch.ones(256)], 1), x[i, c].flatten()[:, None]
            ).solution
            gain, bias = slope[:, 0].tolist()
            assert 0.9 <= gain <= 1.1 and abs(bias) <= 0.1 + 1e-6
            torch.testing.assert_close(x[i, c], images[i, c] * gain + bias, rtol=1e-5, atol=1e-5)


def test_output_size_matches_augment_then_downsample() -> None:
    images, masks = torch.randn(5, 2, 32, 32), blobs(5, 32, 32)
    cfg = AugmentConfig(gamma=(1.0, 1.0))  # gain and bias commute with the area mean
    x_full, y_full = augment_batch(images, masks, cfg, torch.Generator().manual_seed(2))
    x_low, y_low = augment_batch(images, masks, cfg, torch.Generator().manual_seed(2), output_size=8)
    assert x_low.shape == (5, 2, 8, 8) and torch.equal(y_low, y_full)
    torch.testing.assert_close(x_low, downsample(x_full, 8), rtol=1e-5, atol=1e-5)
    for flips in (FLIPS_ONLY, AugmentConfig(rotate=0.0, scale=(1.0, 1.0))):  # the exact-flip path too
        x_full, _ = augment_batch(images, masks, flips, torch.Generator().manual_seed(5))
        x_low, _ = augment_batch(images, masks, flips, torch.Generator().manual_seed(5), output_size=8)
        if flips.gamma == (1.0, 1.0):
            torch.testing.assert_close(x_low, downsample(x_full, 8), rtol=1e-5, atol=1e-5)
        assert x_low.shape == (5, 2, 8, 8)


def test_rotation_keeps_shapes_on_non_square_images() -> None:
    """A centred disc stays a disc (no shear from the aspect ratio) and keeps its area."""
    h, w, r = 64, 128, 20
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= r * r).to(torch.uint8)
    masks = disc.expand(8, h, w).clone()
    cfg = AugmentConfig(flip_h=0.0, flip_v=0.0, rotate=15.0, scale=(1.0, 1.0))
    _, y = augment_batch(torch.zeros(8, 1, h, w), masks, cfg, torch.Generator().manual_seed(0))
    for m in y.float():
        area = m.sum()
        assert abs(area / disc.sum() - 1) < 0.03
        var_y = (m * (yy - (m * yy).sum() / area) ** 2).sum() / area
        var_x = (m * (xx - (m * xx).sum() / area) ** 2).sum() / area
        assert abs(var_x / var_y - 1) < 0.05


def test_scaling_changes_size() -> None:
    masks = torch.zeros(4, 64, 64, dtype=torch.uint8)
    masks[:, 16:48, 16:48] = 1
    cfg = AugmentConfig(flip_h=0.0, flip_v=0.0, rotate=0.0, scale=(1.2, 1.2))
    _, y = augment_batch(torch.zeros(4, 1, 64, 64), masks, cfg, torch.Generator())
    assert torch.allclose(y.float().sum(dim=(1, 2)), torch.full((4,), 32 * 32 * 1.44), rtol=0.03)


def test_affine_grid_equals_torch() -> None:
    theta = torch.randn(3, 2, 3)
    for h, w in ((16, 16), (12, 20)):
        torch.testing.assert_close(_affine_grid(theta, h, w), F.affine_grid(theta, [3, 1, h, w], align_corners=False))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="flip_h is a probability"):
        AugmentConfig(flip_h=1.5)
    with pytest.raises(ValueError, match="scale must be a range"):
        AugmentConfig(scale=(1.1, 0.9))
    with pytest.raises(ValueError, match="rotate must be"):
        AugmentConfig(rotate=-1)
    with pytest.raises(ValueError, match=r"expected images \(B, C, H, W\)"):
        augment_batch(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8), AugmentConfig())


def test_result_does_not_depend_on_the_internal_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import jnet.data.augment as augment

    images, masks = torch.randn(40, 1, 16, 16), blobs(40, 16, 16)
    whole = augment_batch(images, masks, AugmentConfig(), torch.Generator().manual_seed(9), output_size=4)
    monkeypatch.setattr(augment, "_CPU_CHUNK", 7)
    parts = augment_batch(images, masks, AugmentConfig(), torch.Generator().manual_seed(9), output_size=4)
    assert whole[0].shape == (40, 1, 4, 4)
    torch.testing.assert_close(parts[0], whole[0])
    assert torch.equal(parts[1], whole[1])
