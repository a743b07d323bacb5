"""Model size and compute: parameters and multiply-accumulates (MACs) per image."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from jnet.model import JNet


def count_macs(model: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one eval-mode forward pass on an input of ``input_shape``.

    Counted by ``torch.utils.flop_counter`` (convolutions, transposed convolutions and matrix
    products; 1 MAC = 2 FLOPs; batch norm, activations and interpolation are not counted).
    The model is copied to the meta device, so nothing is computed.
    """
    import copy

    meta = copy.deepcopy(model).to("meta").eval()
    x = torch.zeros(input_shape, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(x)
    return counter.get_total_flops() // 2


def summarize(model: JNet, in_channels: int = 1) -> dict[str, Any]:
    """Parameters (total, backbone, head), GMACs per image (total and head) and output scales."""
    h, w = model.input_size
    macs = count_macs(model, (1, in_channels, h, w))
    backbone_macs = count_macs(model.backbone, (1, in_channels, h, w))
    return {
        "backbone": model.config["backbone"],
        "head": model.head_name,
        "input_size": list(model.input_size),
        "output_size": list(model.output_size),
        "num_classes": model.num_classes,
        "params": sum(p.numel() for p in model.parameters()),
        "head_params": sum(p.numel() for p in model.head.parameters()),
        "gmacs": macs / 1e9,
        "head_gmacs": (macs - backbone_macs) / 1e9,
        "scales": [list(s) for s in model.scales],
    }
