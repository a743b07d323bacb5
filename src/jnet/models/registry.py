"""The backbones' registry: a name maps to a builder ``(in_channels, num_classes, **options)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from jnet.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(name: str) -> Callable[[Any], Any]:
    """Decorator that registers a backbone builder under ``name`` (one name per model)."""
    return MODELS.register(name)


def list_models() -> list[str]:
    """Names of every registered backbone, sorted."""
    return sorted(MODELS)


def model_defaults(name: str) -> dict[str, Any]:
    """The options of a registered backbone's builder and their defaults, e.g. ``{"width": 16}``."""
    params = list(inspect.signature(MODELS.get(name)).parameters.values())
    return {
        p.name: p.default
        for p in params
        if p.name not in ("in_channels", "num_classes") and p.default is not inspect.Parameter.empty
    }


def create_model(name: str, in_channels: int = 1, num_classes: int = 1, **options: object) -> nn.Module:
    """Build a registered backbone.

    Every backbone maps an image ``(B, in_channels, h, w)`` to class logits
    ``(B, num_classes, h, w)`` at the input resolution.

    Args:
        name: a name from :func:`list_models`.
        in_channels: channels of the input image (1 for a single MRI modality).
        num_classes: output channels ``K`` (1 for binary segmentation with a sigmoid).
        **options: backbone-specific options such as ``width``.

    Example:
        >>> import torch, jnet
        >>> net = jnet.create_model("unet", in_channels=1, num_classes=2, width=8)
        >>> net.eval()(torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 2, 16, 16])
    """
    builder = MODELS.get(name)
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels} and {num_classes}")
    return builder(in_channels=in_channels, num_classes=num_classes, **options)
