"""A registry of backbones: a name maps to a builder ``(in_channels, num_classes, **options)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[F], F]:
    """Decorator that registers a backbone builder under ``name`` (one name per model)."""

    def wrap(fn: F) -> F:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Names of every registered backbone, sorted."""
    return sorted(_MODELS)


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
        >>> net(torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 2, 16, 16])
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(list_models())}")
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels} and {num_classes}")
    return _MODELS[name](in_channels=in_channels, num_classes=num_classes, **options)
