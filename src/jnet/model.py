"""The J-Net composition: any backbone followed by an up-scaling head."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from jnet._options import check_option
from jnet.compiled import CompiledGuidedHead, CompiledHead, is_affine_head
from jnet.heads import GuidedJNetHead, Head, create_head, head_needs_image, to_size
from jnet.models.registry import create_model
from jnet.resize import DOWNSAMPLE_MODES, downsample_image


class JNet(nn.Module):
    """A backbone that predicts class logits at the input resolution, then an up-scaling head.

    The backbone can be a registered name (built with ``in_channels`` and
    ``backbone_options``) or any ``nn.Module`` that maps ``(B, C, h, w)`` to
    ``(B, num_classes, h, w)`` logits: the head only sees those ``K`` channels.

    In training mode ``forward`` returns the list of outputs at every scale (input
    resolution first, ``output_size`` last), which is what :class:`jnet.losses.MultiScaleLoss`
    consumes; in eval mode it returns the final output only. Set ``return_all`` to ``True``
    or ``False`` to override that. Every per-scale layer exists in both modes, so one
    state dict loads either way.

    ``output_size`` is the resolution the model is scored at (the ground truth's). With
    ``head="none"`` the prediction stays at ``input_size`` and is up-sampled for scoring.

    With ``full_resolution_input=True`` the model takes the full-resolution image
    ``(B, C, H, W)`` (``H, W = output_size``, what a scanner delivers) and down-samples it
    itself, with the data pipeline's function (:func:`jnet.resize.downsample_image`), before
    the backbone: the deployment shape, where a device feeds the image and gets the mask.
    The weights are the same either way; image-guided heads (``head.needs_image``) read the
    full-resolution image too, so they require it (``None``, the default, turns it on for
    them and off otherwise). :attr:`image_size` is the spatial size ``forward`` expects.

    Args:
        backbone: a name from :func:`jnet.list_models` or a module.
        num_classes: ``K``; 1 for binary segmentation (sigmoid), else softmax over ``K`` classes.
        input_size: the backbone's input resolution, ``int`` or ``(h, w)``.
        output_size: the mask resolution, ``int`` or ``(H, W)``.
        head: a name from :func:`jnet.heads.list_heads`.
        in_channels: image channels, used when ``backbone`` is a name.
        backbone_options: options of a named backbone, e.g. ``{"width": 16}``.
        return_all: ``None`` to follow ``self.training``, else always / never all scales.
        full_resolution_input: take ``output_size`` images and down-sample them inside (see
            above); ``None``: only when the head needs the image.
        downsample_mode: how the model down-samples its input, ``"area"`` or ``"bilinear"``
            (as the data pipeline's ``downsample_mode``).
        compiled_head: in eval mode, compute the head in its compiled form (:mod:`jnet.compiled`):
            ``jnet``, ``jnet-noskip`` and ``jnet-single`` as one conv at the input resolution and a
            pixel shuffle per scale, ``jnet-guided`` with one conv per stage below the stage's
            resolution; the same outputs as the cascade, faster. ``False`` runs the cascade. The
            kernels are derived from the head's parameters (not stored: the state dict is the
            same either way) when the model enters eval mode and again after any change.
        compiled_training: also in training mode, for ``jnet``, ``jnet-noskip`` and
            ``jnet-single`` (every scale; gradients reach the head's parameters through the
            kernels' derivation).

    Example:
        >>> import torch
        >>> net = JNet("elunet", num_classes=1, input_size=16, output_size=256, backbone_options={"width": 4})
        >>> [tuple(y.shape) for y in net(torch.zeros(2, 1, 16, 16))][-1]
        (2, 1, 256, 256)
        >>> net.eval()(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 1, 256, 256])
    """

    def __init__(
        self,
        backbone: str | nn.Module,
        num_classes: int,
        input_size: int | Sequence[int],
        output_size: int | Sequence[int],
        head: str = "jnet",
        in_channels: int = 1,
        backbone_options: dict[str, Any] | None = None,
        head_options: dict[str, Any] | None = None,
        return_all: bool | None = None,
        full_resolution_input: bool | None = None,
        downsample_mode: str = "area",
        compiled_head: bool = True,
        compiled_training: bool = True,
    ) -> None:
        super().__init__()
        self.input_size = to_size(input_size, "input_size")
        self.output_size = to_size(output_size, "output_size")
        if self.output_size[0] < self.input_size[0] or self.output_size[1] < self.input_size[1]:
            raise ValueError(
                f"output size {self.output_size[0]}x{self.output_size[1]} is smaller than "
                f"input size {self.input_size[0]}x{self.input_size[1]}; J-Net only up-scales"
            )
        if isinstance(backbone, str):
            self.backbone_name: str | None = backbone
            backbone = create_model(backbone, in_channels, num_classes, **(backbone_options or {}))
        else:
            if backbone_options:
                raise ValueError("backbone_options only apply when the backbone is given by name")
            self.backbone_name = None
        self.backbone = backbone
        self.head_name = head
        options = dict(head_options or {})
        if head_needs_image(head):
            options.setdefault("in_channels", in_channels)
        self.head: Head = create_head(head, num_classes, self.input_size, self.output_size, **options)
        self.num_classes = num_classes
        self.return_all = return_all
        self.downsample_mode = check_option("downsample mode", downsample_mode, DOWNSAMPLE_MODES)
        self.full_resolution_input = self.head.needs_image if full_resolution_input is None else full_resolution_input
        self._compiled_head, self._compiled_training = bool(compiled_head), bool(compiled_training)
        self.config = {
            "backbone": self.backbone_name,
            "num_classes": num_classes,
            "input_size": list(self.input_size),
            "output_size": list(self.output_size),
            "head": head,
            "in_channels": in_channels,
            "backbone_options": dict(backbone_options or {}),
            "head_options": dict(head_options or {}),
            "full_resolution_input": self.full_resolution_input,
            "downsample_mode": downsample_mode,
            "compiled_head": bool(compiled_head),
            "compiled_training": bool(compiled_training),
        }
        # derived from the head's parameters, not a submodule: the state dict stays the head's
        compiled: CompiledHead | CompiledGuidedHead | None = None
        if is_affine_head(self.head):
            compiled = CompiledHead(self.head)
        elif isinstance(self.head, GuidedJNetHead):
            compiled = CompiledGuidedHead(self.head)
        object.__setattr__(self, "_compiled", compiled)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> JNet:
        """The one way to rebuild a model from its description: :attr:`config` as saved in
        checkpoints, ONNX metadata and run directories, or as :meth:`TrainConfig.model_config
        <jnet.training.config.TrainConfig.model_config>` writes it.

        Args:
            config: the constructor's arguments (a registered backbone name, not a module).
            **overrides: values that replace the config's, e.g. ``full_resolution_input=True``.

        Example:
            >>> net = JNet("elunet", 1, 16, 64, backbone_options={"width": 4})
            >>> JNet.from_config(net.config).config == net.config
            True
        """
        values = {**config, **overrides}
        valid = list(inspect.signature(cls.__init__).parameters)[1:]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"unknown model setting(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        if not isinstance(values.get("backbone"), str):
            raise ValueError(f"a model config names its backbone (a registered model); got {values.get('backbone')!r}")
        return cls(**values)

    @property
    def compiled_head(self) -> bool:
        """Whether eval mode runs the head in its compiled form, where it has one (the constructor's argument)."""
        return self._compiled_head

    @compiled_head.setter
    def compiled_head(self, value: bool) -> None:
        self._compiled_head = self.config["compiled_head"] = bool(value)

    @property
    def head_form(self) -> str:
        """``"compiled"`` if eval mode runs the head in its compiled form (a J-Net head with
        ``compiled_head``), else ``"modules"`` (the head's modules as written)."""
        return "compiled" if self._compiled is not None and self._compiled_head else "modules"

    @property
    def compiled_training(self) -> bool:
        """Whether training mode runs an affine head in its compiled form (the constructor's argument)."""
        return self._compiled_training

    @compiled_training.setter
    def compiled_training(self, value: bool) -> None:
        self._compiled_training = self.config["compiled_training"] = bool(value)

    def train(self, mode: bool = True) -> JNet:
        """Set the mode; entering eval mode derives the compiled head's kernels (see ``compiled_head``),
        so that the first call, a profile or an export finds them ready."""
        super().train(mode)
        if not mode and self._compiled_head and self._compiled is not None:
            self._compiled.refresh(final_only=not self.return_all)
        return self

    @property
    def full_resolution_input(self) -> bool:
        """Whether ``forward`` takes full-resolution images and down-samples them itself."""
        return self._full_resolution_input

    @full_resolution_input.setter
    def full_resolution_input(self, value: bool) -> None:
        if not value and self.head.needs_image:
            raise ValueError(
                f"the {self.head_name!r} head reads the full-resolution image, so the model must take it: "
                "full_resolution_input cannot be False"
            )
        self._full_resolution_input = bool(value)
        if hasattr(self, "config"):
            self.config["full_resolution_input"] = self._full_resolution_input

    @property
    def image_size(self) -> tuple[int, int]:
        """The ``(h, w)`` of the images ``forward`` takes: ``output_size`` or ``input_size``."""
        return self.output_size if self.full_resolution_input else self.input_size

    @property
    def scales(self) -> list[tuple[int, int]]:
        """The ``(h, w)`` of every output, coarsest first."""
        return list(self.head.scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.ndim != 4 or tuple(x.shape[-2:]) != self.image_size:
            what = "full-resolution " if self.full_resolution_input else ""
            raise ValueError(
                f"JNet was built for {what}(B, C, {self.image_size[0]}, {self.image_size[1]}) inputs, "
                f"got shape {tuple(x.shape)}"
            )
        image = x  # (B, C, H, W) full resolution, or already (B, C, h, w)
        if self.full_resolution_input:
            x = downsample_image(image, self.input_size, self.downsample_mode)  # (B, C, H, W) -> (B, C, h, w)
        y0 = self.backbone(x)  # (B, C, h, w) -> (B, K, h, w)
        if not isinstance(y0, torch.Tensor) or y0.ndim != 4 or y0.shape[1] != self.num_classes:
            got = tuple(y0.shape) if isinstance(y0, torch.Tensor) else type(y0).__name__
            raise ValueError(
                f"the backbone must return (B, {self.num_classes}, h, w) logits at the input resolution, got {got}"
            )
        if tuple(y0.shape[-2:]) != self.input_size:
            raise ValueError(
                f"the backbone returned logits of size {tuple(y0.shape[-2:])}, "
                f"but the head expects the input resolution {self.input_size}"
            )
        want_all = self.training if self.return_all is None else self.return_all
        options = {}
        if self._compiled is not None and self._use_compiled():  # the same outputs, computed in the head
            options["compiled"] = functools.partial(self._compiled.forward, final_only=not want_all)
        # [(B, K, h, w), ..., (B, K, H, W)] (or [(B, K, H, W)] when compiled and not want_all);
        # an image-guided head also reads the (B, C, H, W) image
        outs = self.head(y0, image, **options) if self.head.needs_image else self.head(y0, **options)
        return outs if want_all else outs[-1]

    def _use_compiled(self) -> bool:
        if not self.training:
            return self._compiled_head
        return self._compiled_training and isinstance(self._compiled, CompiledHead)
