"""Checkpoints that hold only tensors and plain values, written atomically.

A checkpoint is a dict: ``format`` (an int), ``jnet_version``, ``model_config`` (the
arguments of :class:`jnet.JNet`), ``state_dict`` and whatever else the caller adds
(optimiser and scheduler states, RNG states, the training config, metrics). It is loaded with
``torch.load(..., weights_only=True)``, so a file from an untrusted source cannot run code:
anything but tensors and plain Python values is refused with a clear error.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from jnet._version import __version__
from jnet.io import atomic_write
from jnet.model import JNet

FORMAT = 1
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def save_checkpoint(path: str | Path, model: JNet, **extra: Any) -> Path:
    """Write ``model`` (weights and the arguments that rebuild it) and ``extra`` to ``path``.

    The file is written to a temporary name and renamed (:func:`jnet.io.atomic_write`), so a
    run killed at any moment leaves either the previous checkpoint or the new one, never half
    a file.
    """
    if model.config.get("backbone") is None:
        raise ValueError("only models with a registered backbone can be checkpointed and rebuilt by name")
    path = Path(path)
    payload = {
        "format": FORMAT,
        "jnet_version": __version__,
        "model_config": model.config,
        "state_dict": model.state_dict(),
        **extra,
    }
    with atomic_write(path) as tmp, tmp.open("wb") as f:
        try:
            torch.save(payload, f)  # through a Python file, so that a failed write shows as the OSError it is
        except RuntimeError as err:  # torch wraps it ("unexpected pos ..."): a full disk, a quota, an I/O error
            cause = err.__context__
            if isinstance(cause, KeyboardInterrupt):  # Ctrl-C inside torch.save: the interrupt, not torch's error
                raise cause from None
            if not isinstance(cause, OSError) or cause.errno is None:
                raise
            raise OSError(cause.errno, cause.strerror or os.strerror(cause.errno)) from err
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); errors name the file and the problem.

    A file whose pickle names a function or class is refused as one that could run code; any
    other file that fails to load is "not a checkpoint" when it does not start as the zip
    archive that ``torch.save`` writes (random bytes, text), else "truncated or corrupt".
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a checkpoint")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    with path.open("rb") as f:
        magic = f.read(4)
    if not magic:
        raise ValueError(f"{path}: an empty file, not a checkpoint")
    try:
        with warnings.catch_warnings(record=True) as caught:  # a file that fails is one error line, not warnings too
            warnings.simplefilter("always")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    except Exception as err:  # torch reports a damaged file in many ways (UnpicklingError, RuntimeError, KeyError ...)
        named = re.search(r"\bGLOBAL ([\w.]+)", str(err))  # the weights-only unpickler met a function or class
        if isinstance(err, pickle.UnpicklingError) and named is not None:
            raise ValueError(
                f"{path}: refused to load: the file holds objects other than tensors and plain values "
                f"({named.group(1)}: it could run code), so it is not a jnet checkpoint"
            ) from err
        if magic != _ZIP_MAGIC:
            raise ValueError(f"{path}: not a checkpoint (not a file that torch.save writes)") from err
        raise ValueError(f"{path}: not a readable checkpoint (truncated or corrupt: {_first_line(err)})") from err
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a jnet checkpoint (no model_config / state_dict)")
    if ckpt.get("format", 0) > FORMAT:
        raise ValueError(f"{path}: checkpoint format {ckpt['format']} is newer than this jnet ({__version__})")
    return ckpt


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0].split(". ")[0] if lines else type(err).__name__  # its first sentence


def load_checkpoint(
    path: str | Path, full_resolution_input: bool | None = None, compiled_head: bool | None = None
) -> tuple[JNet, dict[str, Any]]:
    """Rebuild the model from a checkpoint alone; returns ``(model in eval mode, checkpoint dict)``.

    ``full_resolution_input``: ``True`` gives the deployment-shaped model that takes the
    full-resolution image and down-samples it itself (as the training pipeline did);
    ``None`` keeps what the model was trained with. ``compiled_head``: whether a J-Net head
    runs in its compiled form (:mod:`jnet.compiled`); ``None`` keeps the checkpoint's setting
    (compiled, for checkpoints from before the option).
    """
    ckpt = read_checkpoint(path)
    config = dict(ckpt["model_config"])
    trained_mode = (ckpt.get("train_config") or {}).get("downsample_mode")
    if "downsample_mode" not in config and trained_mode is not None:  # checkpoints from before the option
        config["downsample_mode"] = trained_mode
    overrides: dict[str, Any] = {}
    if full_resolution_input is not None:
        overrides["full_resolution_input"] = full_resolution_input
    if compiled_head is not None:
        overrides["compiled_head"] = compiled_head
    try:
        model = JNet.from_config(config, **overrides)
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: the weights do not fit the model they describe ({err})") from err
    return model.eval(), ckpt
