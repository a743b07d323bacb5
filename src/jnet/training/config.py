"""The settings of a training run: one dataclass, read from YAML, overridden by flags, saved with the run."""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jnet._options import check_option
from jnet.io import read_yaml
from jnet.model import JNet

SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass
class TrainConfig:
    """Every setting of a training run; written to the run directory as ``config.yaml``.

    ``num_classes=None`` takes ``K`` from the data: 1 (sigmoid) for one foreground class,
    else the number of foreground classes + 1 (softmax with background). Every value is
    checked against its field's type when the config is built: ``epochs: "ten"`` or
    ``lr: [1]`` is a ValueError that names the setting (and, from a file, the file).
    """

    # data
    data: str = "synthetic"
    data_options: dict[str, Any] = field(default_factory=dict)
    cache_dir: str | None = None
    val_fraction: float = 0.2
    folds: int | None = None
    fold: int = 0
    split_file: str | None = None
    # model
    model: str = "elunet"
    width: int | None = None
    head: str = "jnet"
    head_options: dict[str, Any] = field(default_factory=dict)
    input_size: int = 16
    output_size: int = 256
    num_classes: int | None = None
    downsample_mode: str = "area"
    compiled_head: bool = True  # a J-Net head trains and evaluates in its compiled form (jnet.compiled)
    # loss
    loss: str = "dice_ce"
    loss_weights: str | list[float] | None = None
    target_resize: str = "nearest"
    # optimisation
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    augment: bool = False
    seed: int = 0
    # hardware
    device: str = "auto"
    threads: int | None = None
    amp: bool = True

    def __post_init__(self) -> None:
        _check_types(self)
        check_option("schedule", self.schedule, SCHEDULES)
        check_option("device", self.device, ("auto", "cpu", "cuda"))
        for name in ("epochs", "batch_size", "input_size", "output_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.output_size < self.input_size:
            raise ValueError(f"output_size {self.output_size} is smaller than input_size {self.input_size}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a dict (e.g. a YAML file); unknown keys raise a ValueError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{source}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a ``config.yaml`` (as written into every run directory)."""
        values = read_yaml(path, "config file") or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a config file must hold a mapping of settings")
        try:
            return cls.from_dict(values, str(path))
        except ValueError as err:
            if str(err).startswith(str(path)):
                raise
            raise ValueError(f"{path}: {err}") from None

    def to_yaml(self) -> str:
        """The config as YAML text."""
        return yaml.safe_dump(asdict(self), sort_keys=False)

    def model_num_classes(self, n_foreground: int) -> int:
        """``K`` for data with ``n_foreground`` foreground classes."""
        return self.num_classes if self.num_classes is not None else (1 if n_foreground == 1 else n_foreground + 1)

    def model_config(self, in_channels: int, num_classes: int) -> dict[str, Any]:
        """The :class:`jnet.JNet` arguments this config describes, for data with ``in_channels`` channels."""
        return {
            "backbone": self.model,
            "num_classes": num_classes,
            "input_size": self.input_size,
            "output_size": self.output_size,
            "head": self.head,
            "in_channels": in_channels,
            "backbone_options": {} if self.width is None else {"width": self.width},
            "head_options": dict(self.head_options),
            "downsample_mode": self.downsample_mode,
            "compiled_head": self.compiled_head,
            "compiled_training": self.compiled_head,
        }

    def build_model(self, in_channels: int, num_classes: int) -> JNet:
        """The model this config describes (:meth:`jnet.JNet.from_config` of :meth:`model_config`)."""
        return JNet.from_config(self.model_config(in_channels, num_classes))


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
               list: "a list of numbers", type(None): "null"}  # fmt: skip


def _check_types(config: TrainConfig) -> None:
    """Every field holds a value of its annotated type, or a ValueError names the field.

    Integers are accepted for float fields (``lr: 1``), and so are strings that read as a
    number: YAML 1.1 reads ``1e-3`` (no dot) as a string. Booleans are not integers here.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        value, allowed = getattr(config, f.name), typing.get_args(hint) if union else (hint,)
        for kind in allowed:
            ok, typed = _as_type(value, typing.get_origin(kind) or kind)
            if ok:
                setattr(config, f.name, typed)
                break
        else:
            wanted = " or ".join(_TYPE_NAMES[typing.get_origin(k) or k] for k in allowed)
            raise ValueError(f"setting {f.name} must be {wanted}, got {value!r}")


def _as_type(value: Any, kind: type) -> tuple[bool, Any]:
    """``(whether value is a kind, the value as that kind)``; see :func:`_check_types`."""
    if kind is bool or isinstance(value, bool):
        return (kind is bool and isinstance(value, bool)), value
    if kind is int:
        return isinstance(value, numbers.Integral), int(value) if isinstance(value, numbers.Integral) else value
    if kind is float:
        if isinstance(value, numbers.Real):
            return True, float(value)
        if not isinstance(value, str):
            return False, value
        try:
            return True, float(value)
        except ValueError:
            return False, value
    if kind is list:
        numeric = isinstance(value, list) and all(_as_type(v, float)[0] and not isinstance(v, str) for v in value)
        return numeric, [float(v) for v in value] if numeric else value
    return isinstance(value, kind), value
