"""Down-sampling full-resolution images to the network input, shared by the data pipeline and the model.

One function, so that a model that down-samples its own input (``JNet(...,
full_resolution_input=True)``, what a device runs) computes exactly what the training data
pipeline fed it (:func:`jnet.data.prepare.downsample`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from jnet._options import check_option

DOWNSAMPLE_MODES = ("area", "bilinear")


def downsample_image(x: torch.Tensor, size: tuple[int, int], mode: str = "area") -> torch.Tensor:
    """``(B, C, H, W)`` images resized down to ``size = (h, w)``.

    ``mode="area"`` averages blocks (anti-aliased). When ``H, W`` are multiples of ``h, w`` it is
    an average pooling: the same numbers as ``F.interpolate(mode="area")`` (bit for bit on a
    CPU) and an ``AveragePool`` in ONNX; other sizes fall back to ``F.interpolate``.
    ``"bilinear"`` samples like OpenCV's ``INTER_LINEAR`` without anti-aliasing (the paper's).
    A tensor already at ``size`` is returned as a copy.
    """
    check_option("downsample mode", mode, DOWNSAMPLE_MODES)
    (big_h, big_w), (h, w) = (int(s) for s in x.shape[-2:]), size  # ints: constants when traced for export
    if (big_h, big_w) == (h, w):
        return x.clone()
    if big_h < h or big_w < w:
        raise ValueError(f"cannot down-sample {big_h}x{big_w} images to the larger size {h}x{w}")
    if mode == "bilinear":
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    if big_h % h == 0 and big_w % w == 0:
        return F.avg_pool2d(x, (big_h // h, big_w // w))  # (B, C, H, W) -> (B, C, h, w)
    return F.interpolate(x, size=(h, w), mode="area")
