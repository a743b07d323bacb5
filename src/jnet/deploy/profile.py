"""Model size, compute and memory: parameters, multiply-accumulates (MACs) and activation memory.

What each number counts
-----------------------
``count_macs``
    Multiply-accumulates of one eval-mode forward pass, counted by ``torch.utils.flop_counter``
    (convolutions, transposed convolutions and matrix products; 1 MAC = 2 FLOPs). Batch norm,
    activations, pooling, concatenation and interpolation are not counted. The model is copied
    to the meta device, so nothing is computed.

``measure_memory``
    The *measured* peak of the tensors created while the model runs, tracked op by op with a
    ``TorchDispatchMode``: every tensor an operator returns is attributed to its storage (so a
    view or an in-place result is counted once), added when it appears and removed when its
    storage is freed. The peak of that running total is the activation memory. Counted:
    intermediate and output activations, in training also the tensors autograd saves for the
    backward pass, the gradients and the parameters' ``.grad``. Not counted: the weights, the
    input, tensors that existed before the call, and scratch memory that kernels allocate
    internally without returning it as a tensor (e.g. oneDNN work buffers). The same count is
    obtained on the CPU and on the meta device (nothing computed), see the tests.

``summary_style_mb``
    The estimate the J-Net paper's Table 4 most likely reports (its numbers scale exactly with
    the pixel count, and match ours to within the backbones' MAC differences): the elements of
    the output of every leaf module, times 4 bytes, times 2 (forward and backward). Unlike the
    measured peak it adds up every layer's output as if all were alive at once.

Memory is given in MB of 2**20 bytes.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakIdKeyDictionary

from jnet.heads import Head
from jnet.losses import MultiScaleLoss
from jnet.model import JNet

MB = 2**20

#: The J-Net paper's Table 4 (K = 1, one input channel): GMac and memory (MB) at each input size.
PAPER_TABLE4: dict[str, dict[int, tuple[float, float]]] = {
    "U-Net": {320: (71.16, 1191.41), 160: (17.79, 297.85), 80: (4.45, 74.46), 32: (0.71, 11.91), 16: (0.18, 2.98)},
    "ELU-Net": {320: (29.98, 868.36), 160: (7.5, 217.09), 80: (1.87, 54.27), 32: (0.30, 8.68), 16: (0.07, 2.17)},
    "J-Net": {320: (29.98, 868.36), 160: (7.5, 219.43), 80: (1.88, 58.57), 32: (0.30, 13.68), 16: (0.08, 5.5)},
}
TABLE4_SIZES = (320, 160, 80, 32, 16)


def count_macs(model: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one eval-mode forward pass on an input of ``input_shape``.

    Counted by ``torch.utils.flop_counter`` (convolutions, transposed convolutions and matrix
    products; 1 MAC = 2 FLOPs; batch norm, activations and interpolation are not counted).
    The model is copied to the meta device, so nothing is computed.
    """
    meta = copy.deepcopy(model).to("meta").eval()
    x = torch.zeros(input_shape, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(x)
    return counter.get_total_flops() // 2


def summarize(model: JNet, in_channels: int = 1) -> dict[str, Any]:
    """Parameters (total, backbone, head), GMACs per image (total and head) and output scales.

    The MACs are those of the head's form the model runs in eval mode: a J-Net head's compiled
    form by default (``head_form: compiled``; its MACs are those of the convolutions at the input
    resolution), the modules as written with ``compiled_head=False`` (``head_form: modules``:
    the paper's count for the cascade).
    """
    macs = count_macs(model, (1, in_channels, *model.image_size))
    backbone_macs = count_macs(model.backbone, (1, in_channels, *model.input_size))
    return {
        "backbone": model.config["backbone"],
        "head": model.head_name,
        "input_size": list(model.input_size),
        "output_size": list(model.output_size),
        "num_classes": model.num_classes,
        "full_resolution_input": model.full_resolution_input,
        "params": sum(p.numel() for p in model.parameters()),
        "head_params": sum(p.numel() for p in model.head.parameters()),
        "gmacs": macs / 1e9,
        "head_gmacs": (macs - backbone_macs) / 1e9,
        "head_form": model.head_form,
        "scales": [list(s) for s in model.scales],
    }


class _LiveTensorBytes(TorchDispatchMode):
    """Running total and peak of the bytes held by storages that operators created under this mode.

    A storage first seen as an operator's *input* existed before (a weight, the input, a
    constant) and is never counted; one first seen as an *output* is counted until it is freed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._known: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.current = 0
        self.peak = 0
        self.allocated = 0  # every counted storage, freed or not

    def _released(self, nbytes: int) -> None:
        self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        for t in tree_flatten((args, kwargs))[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage not in self._known:
                    self._known[storage] = 0  # pre-existing: not ours
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage in self._known:
                    continue
                nbytes = storage.nbytes()
                self._known[storage] = nbytes
                weakref.finalize(storage, self._released, nbytes).atexit = False
                self.current += nbytes
                self.allocated += nbytes
                self.peak = max(self.peak, self.current)
        return out


def _train_step(model: JNet, x: torch.Tensor) -> None:
    outs = model(x)
    outs = outs if isinstance(outs, list) else [outs]
    target = torch.zeros((x.shape[0], *outs[-1].shape[-2:]), dtype=torch.long, device=x.device)
    MultiScaleLoss("dice_ce")(outs, target).backward()


def measure_memory(
    model: nn.Module, input_shape: Sequence[int], train: bool = False, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """Peak and total bytes of the tensors created by one forward pass (or one training step).

    See the module docstring for exactly what is counted. The model is copied first, so its
    weights, gradients and batch-norm statistics are left alone.

    Args:
        model: any module; a :class:`~jnet.model.JNet` in training mode returns every scale.
        input_shape: ``(B, C, h, w)``.
        train: ``False``: one eval-mode forward under ``torch.no_grad``; ``True``: one training
            step, forward in training mode + :class:`jnet.losses.MultiScaleLoss` (``dice_ce``,
            all-background target at the output size; a JNet only) + backward. Batch norm in
            training mode needs more than one value per channel, so a 16x16 input with four
            poolings needs ``B >= 2``.
        device: ``"cpu"`` computes; ``"meta"`` only allocates shapes (eval only: the loss
            checks label values, which meta tensors do not have). Both count the same.

    Returns:
        ``peak_mb`` (the peak of the running total), ``allocated_mb`` (every tensor created,
        freed or not) and ``peak_bytes``.
    """
    if str(device) != "meta" and any(t.is_meta for t in model.parameters()):
        raise ValueError("the model lives on the meta device: measure it with device='meta' (eval only)")
    net = copy.deepcopy(model).to(device)
    if train and str(device) == "meta":
        raise ValueError("the training step cannot run on the meta device (the loss reads label values); use cpu")
    if train and not isinstance(net, JNet):
        raise ValueError("measuring a training step needs a JNet (its loss needs the output scales)")
    x = torch.zeros(tuple(input_shape), device=device)
    tracker = _LiveTensorBytes()
    if train:
        net.train()
        for p in net.parameters():
            p.grad = None
        with tracker:
            _train_step(net, x)  # type: ignore[arg-type]
    else:
        net.eval()
        with torch.no_grad(), tracker:
            net(x)
    return {"peak_mb": tracker.peak / MB, "allocated_mb": tracker.allocated / MB, "peak_bytes": tracker.peak}


def weights_mb(model: nn.Module) -> float:
    """Size of the parameters and buffers (batch-norm statistics) in MB."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) / MB


def summary_style_mb(model: nn.Module, input_shape: Sequence[int]) -> float:
    """``2 x`` the bytes of every leaf module's output in one forward (the paper's likely estimate).

    Computed on the meta device (nothing is computed). See the module docstring.
    """
    net = copy.deepcopy(model).to("meta").eval()
    total = [0]

    def hook(module: nn.Module, args: Any, out: Any) -> None:
        total[0] += sum(t.numel() * t.element_size() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))

    # leaf modules, less a head without layers ("none", "interp"): it is no layer of its own
    leaves = [m for m in net.modules() if next(m.children(), None) is None and not isinstance(m, Head)]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            net(torch.zeros(tuple(input_shape), device="meta"))
    finally:
        for h in handles:
            h.remove()
    return 2 * total[0] / MB


def profile_model(
    model: JNet, in_channels: int = 1, batch_size: int = 1, train: bool = True, train_batch_size: int = 2
) -> dict[str, Any]:
    """:func:`summarize` plus weights, measured activation memory and the paper-style estimate.

    Args:
        model: the model to profile (left unchanged).
        in_channels: image channels.
        batch_size: batch of the eval forward whose peak is ``activation_mb``.
        train: also measure one training step (computed on the CPU: slow for large inputs).
        train_batch_size: batch of that step (2 by default: batch norm needs two values per
            channel at the 1x1 bottleneck of a 16x16 input).

    Returns:
        The keys of :func:`summarize` and ``weights_mb``, ``activation_mb`` (eval peak at
        ``batch_size``), ``summary_style_mb`` (per image), ``batch_size``, and when ``train``:
        ``train_step_mb`` and ``train_batch_size``.
    """
    h, w = model.image_size
    info = summarize(model, in_channels)
    info["weights_mb"] = weights_mb(model)
    info["batch_size"] = batch_size
    info["activation_mb"] = measure_memory(model, (batch_size, in_channels, h, w), device="meta")["peak_mb"]
    info["summary_style_mb"] = summary_style_mb(model, (1, in_channels, h, w))
    if train:
        info["train_batch_size"] = train_batch_size
        step = measure_memory(model, (train_batch_size, in_channels, h, w), train=True)
        info["train_step_mb"] = step["peak_mb"]
    return info


def table4_output_size(input_size: int, output_size: int = 320) -> int:
    """J-Net's output size in :func:`paper_table`: ``output_size`` where an x2 cascade reaches it
    from ``input_size`` (320, 160, 80 -> 320), else the largest ``input_size * 2**m`` below it
    (32 -> 256, 16 -> 256)."""
    out = input_size
    while out * 2 <= output_size:
        out *= 2
    return out


def paper_table(
    sizes: Sequence[int] = TABLE4_SIZES,
    output_size: int = 320,
    unet_width: int | None = None,
    elunet_width: int | None = None,
    train: bool = False,
) -> list[dict[str, Any]]:
    """The J-Net paper's Table 4 from our models: U-Net, ELU-Net and J-Net (ELU-Net + J-Net head).

    K = 1, one input channel, batch 1. J-Net's output size is :func:`table4_output_size`.

    Args:
        sizes: input sizes.
        output_size: J-Net's target output size.
        unet_width, elunet_width: backbone widths (``None``: the backbones' defaults, 64 and 16).
        train: also measure a training step per row (computed on the CPU; U-Net at 320x320 is slow).

    Returns:
        One row per network and size: ``network``, ``input_size``, ``output_size``, ``gmacs``,
        ``params``, ``weights_mb``, ``activation_mb``, ``summary_style_mb`` (the paper's way),
        ``paper_gmacs``, ``paper_mb`` and, with ``train``, ``train_step_mb``.
    """
    rows = []
    for network, backbone, width in (
        ("U-Net", "unet", unet_width),
        ("ELU-Net", "elunet", elunet_width),
        ("J-Net", "elunet", elunet_width),
    ):
        for size in sizes:
            out = table4_output_size(size, output_size) if network == "J-Net" else size
            with torch.device("cpu" if train else "meta"):  # meta: nothing to compute, instant
                model = JNet(
                    backbone,
                    1,
                    size,
                    out,
                    head="jnet" if network == "J-Net" else "none",
                    backbone_options={} if width is None else {"width": width},
                    compiled_head=False,  # the paper's network: the cascade as it counts it
                )
            info = profile_model(model, train=train)
            paper = PAPER_TABLE4[network].get(size, (None, None))
            row = {
                "network": network,
                "input_size": size,
                "output_size": out,
                "gmacs": info["gmacs"],
                "params": info["params"],
                "weights_mb": info["weights_mb"],
                "activation_mb": info["activation_mb"],
                "summary_style_mb": info["summary_style_mb"],
                "paper_gmacs": paper[0],
                "paper_mb": paper[1],
            }
            if train:
                row["train_step_mb"] = info["train_step_mb"]
            rows.append(row)
    return rows


def format_paper_table(rows: Sequence[dict[str, Any]]) -> str:
    """:func:`paper_table`'s rows as a text table, ours beside the paper's."""
    train = any("train_step_mb" in r for r in rows)
    head = (
        f"{'network':<8} {'input':>5} {'output':>6} {'GMac':>8} {'paper':>7} {'params':>11} {'weights':>8} "
        f"{'act. peak':>9} {'fwd/bwd est.':>12} {'paper MB':>9}" + (f" {'train step':>10}" if train else "")
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        paper_g = "" if r["paper_gmacs"] is None else f"{r['paper_gmacs']:.2f}"
        paper_m = "" if r["paper_mb"] is None else f"{r['paper_mb']:.2f}"
        line = (
            f"{r['network']:<8} {r['input_size']:>5} {r['output_size']:>6} {r['gmacs']:>8.2f} {paper_g:>7} "
            f"{r['params']:>11,} {r['weights_mb']:>8.2f} {r['activation_mb']:>9.2f} {r['summary_style_mb']:>12.2f} "
            f"{paper_m:>9}"
        )
        if train:
            line += f" {r['train_step_mb']:>10.2f}"
        lines.append(line)
    lines.append(
        "MB = 2**20 bytes. act. peak: measured peak of live activations, eval forward, batch 1; "
        "fwd/bwd est.: 2 x 4 bytes x every leaf module's output (the paper's way)"
        + ("; train step: measured peak, forward + loss + backward, batch 2" if train else "")
        + "."
    )
    return "\n".join(lines)


def format_profile(info: dict[str, Any], in_channels: int = 1) -> str:
    """:func:`profile_model`'s result as text (the training step only when it was measured)."""
    (h, w), (oh, ow) = info["input_size"], info["output_size"]
    full = " (takes the full-resolution image, down-samples it inside)" if info["full_resolution_input"] else ""
    lines = [
        f"{info['backbone']} + {info['head']} head, {h}x{w} -> {oh}x{ow}{full}, K={info['num_classes']}, "
        f"C={in_channels}",
        f"  parameters: {info['params']:,} (head {info['head_params']:,}); weights {info['weights_mb']:.2f} MB",
        f"  GMACs/image: {info['gmacs']:.4f} (head {info['head_gmacs']:.4f}"
        + (", compiled form; --cascade-head: the cascade's)" if info.get("head_form") == "compiled" else ")"),
        f"  activations, eval forward, batch {info['batch_size']}: {info['activation_mb']:.2f} MB measured peak "
        f"(paper-style forward/backward estimate {info['summary_style_mb']:.2f} MB per image)",
    ]
    if "train_step_mb" in info:
        lines.append(
            f"  training step (forward + loss + backward), batch {info['train_batch_size']}: "
            f"{info['train_step_mb']:.2f} MB measured peak"
        )
    lines.append("  (MB = 2**20 bytes; see jnet.profile for what is counted)")
    return "\n".join(lines)
