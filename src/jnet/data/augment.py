"""Training augmentation at full resolution, before the network input is down-sampled.

:func:`augment_batch` transforms a whole batch at once with torch: images ``(B, C, H, W)``
and their masks ``(B, H, W)`` go through the *same* random geometry (flips, a small rotation
and scaling: one :func:`~torch.nn.functional.affine_grid` per batch, sampled bilinearly for
the images and with NEAREST for the masks, so labels stay labels), then the images alone get
an intensity jitter (gamma, gain, bias). Augmenting the geometry at full resolution and
down-sampling afterwards keeps the low-resolution input consistent with the full-resolution
target, which augmenting the 16 x 16 input could not. With ``output_size`` the down-sampling
happens inside :func:`augment_batch`, and the intensity jitter, which does not move pixels, is
applied to the small images (16 x 16 = 1/256 of the work at 256 x 256).

Every random number comes from the ``generator`` passed in, so a seed gives the same batch
every time. Validation data is never augmented (``AugmentConfig(enabled=False)`` or no config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from jnet.data.prepare import downsample

__all__ = ["AugmentConfig", "augment_batch"]

_CPU_CHUNK = 16  # images augmented at a time on a CPU


@dataclass
class AugmentConfig:
    """Augmentation settings; the defaults are mild, for 2D MRI/CT slices.

    Attributes:
        enabled: ``False`` makes :func:`augment_batch` the identity (validation).
        flip_h: probability of a left-right flip, per image.
        flip_v: probability of an up-down flip, per image.
        rotate: largest rotation in degrees; the angle is uniform in ``[-rotate, rotate]``.
        scale: range of the zoom factor (``> 1`` enlarges the content), log-uniform.
        gamma: range of the gamma applied to each channel rescaled to ``[0, 1]`` (log-uniform);
            ``(1, 1)`` turns it off.
        gain: range of the multiplicative intensity factor, per image and channel.
        bias: largest additive shift, per image and channel, uniform in ``[-bias, bias]``
            (in the units of the normalised image: a z-scored slice's standard deviation).
    """

    enabled: bool = True
    flip_h: float = 0.5
    flip_v: float = 0.5
    rotate: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    gamma: tuple[float, float] = (0.8, 1.25)
    gain: tuple[float, float] = (0.9, 1.1)
    bias: float = 0.1

    def __post_init__(self) -> None:
        for name in ("flip_h", "flip_v"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.rotate <= 180.0:
            raise ValueError(f"rotate must be in [0, 180] degrees, got {self.rotate}")
        if self.bias < 0:
            raise ValueError(f"bias must be >= 0, got {self.bias}")
        for name in ("scale", "gamma", "gain"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a range (low, high) with 0 < low <= high, got {(lo, hi)}")

    @property
    def affine(self) -> bool:
        """Whether a rotation or scaling is drawn (otherwise flips are exact index reversals)."""
        return self.rotate > 0 or self.scale != (1.0, 1.0)


def _uniform(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * u


def _log_uniform(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return torch.exp(_uniform(u, math.log(lo), math.log(hi)))


def _affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, (B, 1, h, w), align_corners=False)``, in two broadcast passes (3x faster on CPU)."""
    xs = (torch.arange(w, dtype=theta.dtype, device=theta.device) * 2 + 1) / w - 1
    ys = ((torch.arange(h, dtype=theta.dtype, device=theta.device) * 2 + 1) / h - 1)[:, None]
    t = theta[:, :, :, None, None]
    grid = torch.empty(theta.shape[0], h, w, 2, dtype=theta.dtype, device=theta.device)
    grid[..., 0] = t[:, 0, 0] * xs + (t[:, 0, 1] * ys + t[:, 0, 2])
    grid[..., 1] = t[:, 1, 0] * xs + (t[:, 1, 1] * ys + t[:, 1, 2])
    return grid


def augment_batch(
    images: torch.Tensor,
    masks: torch.Tensor,
    config: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
    *,
    output_size: int | None = None,
    downsample_mode: str = "area",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch: the same random geometry for images and masks, intensity for images only.

    Args:
        images: ``(B, C, H, W)`` float.
        masks: ``(B, H, W)`` integer labels (any integer dtype; kept).
        config: the settings; ``None`` or ``enabled=False``: no augmentation.
        generator: the source of every random number (CPU); ``None`` uses torch's global one.
        output_size: also down-sample the images to ``output_size`` (the network input, with
            :func:`~jnet.data.prepare.downsample` and ``downsample_mode``) after the geometry;
            the intensity jitter is then applied to the small images, where it costs nothing
            (gain and bias commute with the down-sampling; gamma acts on the input the network
            sees). Masks stay at full resolution.

    Returns:
        ``(images, masks)``; the masks of the input shape and dtype, the images of the input
        shape or ``output_size``. The result does not depend on how the batch is split
        internally (on a CPU, 16 images at a time, for the cache). Pixels brought in from outside the image take each
        image channel's minimum (the background of a normalised slice) and mask label 0.
    """
    if config is None or not config.enabled:
        return (images if output_size is None else downsample(images, output_size, downsample_mode)), masks
    if images.ndim != 4 or masks.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"expected images (B, C, H, W) and masks (B, H, W), got {images.shape} and {masks.shape}")
    b, c = images.shape[:2]
    # every draw is made whatever the config, so changing one setting leaves the others' draws alone
    u = torch.rand(b, 4, generator=generator)
    uc = torch.rand(b, c, 3, generator=generator)
    # on a CPU, a few images at a time stay in the cache: 2.5x faster than 64 at once
    step = _CPU_CHUNK if images.device.type == "cpu" else b
    if b <= step:
        return _apply(images, masks, u, uc, config, output_size, downsample_mode)
    xs, ys = [], []
    for i in range(0, b, step):
        part = slice(i, i + step)
        x, y = _apply(images[part], masks[part], u[part], uc[part], config, output_size, downsample_mode)
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def _apply(
    images: torch.Tensor,
    masks: torch.Tensor,
    u: torch.Tensor,
    uc: torch.Tensor,
    config: AugmentConfig,
    output_size: int | None,
    downsample_mode: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`augment_batch` with its random numbers drawn: ``u`` ``(B, 4)``, ``uc`` ``(B, C, 3)``."""
    b, _, h, w = images.shape
    dev = images.device
    flip_x = u[:, 0] < config.flip_h
    flip_y = u[:, 1] < config.flip_v

    if config.affine:
        angle = _uniform(u[:, 2], -config.rotate, config.rotate) * (math.pi / 180.0)
        zoom = _log_uniform(u[:, 3], *config.scale)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        fx = 1.0 - 2.0 * flip_x.float()
        fy = 1.0 - 2.0 * flip_y.float()
        # output pixel -> input pixel: (rotation / zoom) @ flips, in pixel units, expressed in the
        # normalised [-1, 1] coordinates of the grid: theta = D^-1 A D with D = diag(W, H)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = cos * fx
        theta[:, 0, 1] = -sin * fy * (h / w)
        theta[:, 1, 0] = sin * fx * (w / h)
        theta[:, 1, 1] = cos * fy
        grid = _affine_grid(theta.to(dev, images.dtype), h, w)
        lo = images.amin(dim=(2, 3), keepdim=True)
        x = F.grid_sample(images - lo, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        m = F.grid_sample(masks[:, None].to(images.dtype), grid, mode="nearest", align_corners=False)
        y = m[:, 0].to(masks.dtype)  # nearest copies values: exact labels
        if output_size is not None:
            x = downsample(x, output_size, downsample_mode)
        x += lo  # (after the down-sampling, which commutes with adding a constant)
    else:
        x, y = images, masks
        if flip_x.any():
            sel = flip_x.nonzero()[:, 0].to(dev)
            x, y = x.clone(), y.clone()
            x[sel], y[sel] = x[sel].flip(-1), y[sel].flip(-1)
        if flip_y.any():
            sel = flip_y.nonzero()[:, 0].to(dev)
            x, y = (x, y) if flip_x.any() else (x.clone(), y.clone())
            x[sel], y[sel] = x[sel].flip(-2), y[sel].flip(-2)
        if output_size is not None:
            x = downsample(x, output_size, downsample_mode)

    if config.gamma != (1.0, 1.0):
        gamma = _log_uniform(uc[..., 0], *config.gamma).to(dev, x.dtype)[..., None, None]
        lo = x.amin(dim=(2, 3), keepdim=True)
        span = (x.amax(dim=(2, 3), keepdim=True) - lo).clamp_min(1e-6)
        x = ((x - lo) / span).clamp_(0.0, 1.0).pow_(gamma).mul_(span).add_(lo)
    if config.gain != (1.0, 1.0) or config.bias > 0:
        gain = _uniform(uc[..., 1], *config.gain).to(dev, x.dtype)[..., None, None]
        bias = _uniform(uc[..., 2], -config.bias, config.bias).to(dev, x.dtype)[..., None, None]
        x = x * gain + bias
    return x, y
