"""Prediction on files: a NIfTI volume in, a NIfTI label volume out; a PNG/TIFF slice in, a PNG out.

The input is prepared the way the checkpoint's training data was. A volume is cut into axial
slices as the NIfTI readers do (:mod:`jnet.data.nifti`) and normalised like the training
data: per volume over its non-zero voxels (``zscore`` or ``percentile``, as the MSD and BraTS
readers) or, for a model trained on 2D slices (synthetic, ``.npz``, image folders), per slice
(``slice``, :func:`jnet.data.prepare.normalize_slices`). A 2D image is z-scored per slice. Each slice
is brought to the model's full resolution ``S`` (``resize``: ``"resize"`` stretches, the MSD
reader's default; ``"pad_crop"`` centre-pads or crops, the BraTS reader's), down-sampled to the
network input (area averaging), and predicted at ``S``. The mask is then put back on the
input's own grid (nearest neighbour, or the inverse padding/cropping), so a NIfTI output has
the input's shape and affine, and a PNG output the input's size.

Output values are the model's class indices: 0 = background and 1..K-1 (1 for a binary
model). Binary PNGs are written as 0/255, like the masks the image reader accepts.

The defaults come from :func:`jnet.deploy.contract.prediction_settings`, which also writes
them into an export's metadata (``jnet.preprocessing``, ``jnet.postprocessing``): the
torch-free runner ``python -m jnet_runner`` reads them there and gives the same masks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jnet._options import check_option
from jnet.data.images import read_grey
from jnet.data.nifti import fit_to_size, normalize_volume, read_volume, volume_to_slices
from jnet.data.prepare import downsample, normalize_slices
from jnet.deploy.contract import prediction_settings
from jnet.io import atomic_write
from jnet.metrics import logits_to_labels, upsample_logits
from jnet.model import JNet
from jnet.training.checkpoint import load_checkpoint

NIFTI_SUFFIXES = (".nii.gz", ".nii")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (*NIFTI_SUFFIXES, *IMAGE_SUFFIXES):
        if name.endswith(suffix):
            return suffix
    return ""


def _report(path: Path, out_path: Path, labels: np.ndarray) -> dict[str, Any]:
    return {
        "input": str(path),
        "output": str(out_path),
        "shape": list(labels.shape),
        "foreground": float((labels > 0).mean()),
    }


@torch.no_grad()
def predict_slices(model: JNet, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Labels ``(N, S, S)`` uint8 for normalised full-resolution slices ``(N, C, S, S)``."""
    model.eval()
    size = model.output_size
    labels = []
    for i in range(0, len(images), batch_size):
        x = downsample(images[i : i + batch_size], model.image_size[0], model.downsample_mode)
        y = model(x)  # (B, K, S, S), or (B, K, r, r) for the "none" head
        if tuple(y.shape[-2:]) != size:
            y = upsample_logits(y, size)
        labels.append(logits_to_labels(y).to(torch.uint8).numpy())
    return np.concatenate(labels) if labels else np.zeros((0, *size), np.uint8)


def _to_model_grid(slices: np.ndarray, size: int, resize: str) -> np.ndarray:
    dummy = np.zeros((slices.shape[0], *slices.shape[2:]), np.uint8)
    return fit_to_size(slices, dummy, size, resize)[0]


def _back_to_input_grid(labels: np.ndarray, shape: tuple[int, int], resize: str) -> np.ndarray:
    """Inverse of the slice fitting for ``(N, S, S)`` labels -> ``(N, H, W)``."""
    n, s, _ = labels.shape
    h, w = shape
    if (h, w) == (s, s):
        return labels
    if resize == "resize":
        rows = np.minimum(((np.arange(h) + 0.5) * (s / h)).astype(np.int64), s - 1)
        cols = np.minimum(((np.arange(w) + 0.5) * (s / w)).astype(np.int64), s - 1)
        return np.ascontiguousarray(labels[:, rows][:, :, cols])
    out = np.zeros((n, h, w), labels.dtype)

    def window(length: int) -> tuple[slice, slice]:  # (in the S grid, in the input grid)
        if length <= s:
            start = (s - length) // 2
            return slice(start, start + length), slice(0, length)
        start = (length - s) // 2
        return slice(0, s), slice(start, start + s)

    (src_r, dst_r), (src_c, dst_c) = window(h), window(w)
    out[:, dst_r, dst_c] = labels[:, src_r, src_c]
    return out


def predict_volume(
    model: JNet,
    path: str | Path,
    out_path: str | Path,
    *,
    normalize: str = "zscore",
    resize: str = "resize",
    modalities: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Segment a 3D (or 4D, modalities last) NIfTI volume slice by slice; write a label volume.

    The output has the input's spatial shape, affine and header (data type uint8).
    """
    import nibabel as nib

    path, out_path = Path(path), Path(out_path)
    volume, affine = read_volume(path)
    check_option("normalize", normalize, ("zscore", "percentile", "slice"))
    per_volume = normalize != "slice"

    def norm(v: np.ndarray, name: str) -> np.ndarray:
        return normalize_volume(v, normalize, name=name) if per_volume else v.astype(np.float32)

    if volume.ndim == 4:
        m = volume.shape[3]
        chosen = list(modalities) if modalities is not None else list(range(m))
        if any(not 0 <= i < m for i in chosen):
            raise ValueError(f"{path}: modalities {chosen} do not exist (the volume has {m}: 0..{m - 1})")
        volume = np.stack([norm(volume[..., i], f"{path} modality {i}") for i in chosen], -1)
    elif volume.ndim == 3:
        volume = norm(volume, str(path))[..., None]
    else:
        raise ValueError(f"{path}: expected a 3D volume (or 4D with modalities last), got shape {volume.shape}")
    want = model.config["in_channels"]
    if volume.shape[3] != want:
        raise ValueError(f"{path}: {volume.shape[3]} channel(s) after modality selection; the model expects {want}")
    slices, _ = volume_to_slices(volume)  # (Z, C, Y, X)
    if not per_volume:
        slices = normalize_slices(slices)
    grid = _to_model_grid(slices, model.output_size[0], resize)
    labels = _back_to_input_grid(predict_slices(model, grid), slices.shape[2:], resize)  # (Z, Y, X)
    data = np.ascontiguousarray(labels.transpose(2, 1, 0))  # back to (X, Y, Z)
    header = nib.load(str(path)).header.copy()
    header.set_data_dtype(np.uint8)
    image = nib.Nifti1Image(data, affine, header)
    with atomic_write(out_path, suffix=_suffix(out_path) or ".nii.gz") as tmp:
        nib.save(image, str(tmp))
    return {
        "input": str(path),
        "output": str(out_path),
        "shape": list(data.shape),
        "foreground": float((data > 0).mean()),
    }


def predict_image(model: JNet, path: str | Path, out_path: str | Path, *, resize: str = "resize") -> dict[str, Any]:
    """Segment one 2D PNG/TIFF (grey or colour, read as grey); write the mask as a PNG of the same size."""
    from PIL import Image

    path, out_path = Path(path), Path(out_path)
    if model.config["in_channels"] != 1:
        raise ValueError(f"{path}: 2D images give one channel; the model expects {model.config['in_channels']}")
    grey = read_grey(path)  # (H, W)
    x = normalize_slices(grey[None])  # (1, 1, H, W)
    labels = _back_to_input_grid(predict_slices(model, _to_model_grid(x, model.output_size[0], resize)),
                                 grey.shape, resize)[0]  # fmt: skip
    if model.num_classes == 1:
        labels = labels * 255
    with atomic_write(out_path) as tmp:
        Image.fromarray(labels.astype(np.uint8)).save(tmp, format="PNG")
    return {
        "input": str(path),
        "output": str(out_path),
        "shape": list(labels.shape),
        "foreground": float((labels > 0).mean()),
    }


def predict_files(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    resize: str | None = None,
    normalize: str | None = None,
    modalities: Sequence[int] | None = None,
    on_file: Callable[[int, int, dict[str, Any]], None] | None = None,
    overwrite: bool = False,
    compiled_head: bool = True,
) -> list[dict[str, Any]]:
    """Predict every input file into ``out_dir`` (same file name; PNG for 2D images).

    ``resize``, ``normalize`` and ``modalities`` default to the training run's reader options.
    Every input and every output is checked before any prediction is made: each input exists
    and has a known type; no mask would replace an input (``out_dir`` the inputs' folder), no
    two inputs give one mask (``a/x.png`` and ``b/x.png``, or ``x.png`` and ``x.tif``), and a mask
    that exists already is replaced only with ``overwrite``. ``compiled_head=False`` runs a J-Net
    head as its cascade (:mod:`jnet.compiled`).
    """
    model, ckpt = load_checkpoint(checkpoint, True, compiled_head)  # the model down-samples its input
    settings = prediction_settings(ckpt.get("train_config"))  # also what an export's metadata says
    resize = check_option("resize", resize or settings["resize"], ("resize", "pad_crop"))
    normalize = normalize or settings["normalize"]
    modalities = modalities if modalities is not None else settings["modalities"]
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("no input files given")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
        if not _suffix(p):
            raise ValueError(f"{p}: not a NIfTI (.nii, .nii.gz) or image (.png, .tif, .tiff) file")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file; the masks go into a folder")
    targets = mask_paths(paths, out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for i, (p, target) in enumerate(zip(paths, targets, strict=True), start=1):
        if _suffix(p) in NIFTI_SUFFIXES:
            r = predict_volume(model, p, target, normalize=normalize, resize=resize, modalities=modalities)
        else:
            r = predict_image(model, p, target, resize=resize)
        results.append(r)
        if on_file is not None:
            on_file(i, len(paths), r)
    return results


def mask_paths(inputs: Sequence[Path], out_dir: Path, overwrite: bool = False) -> list[Path]:
    """The mask file of each input in ``out_dir`` (its name; ``.png`` for 2D images), checked.

    Refused: a mask that would replace an input (always), two inputs with one mask (always),
    and a mask file that exists already (unless ``overwrite``).
    """
    targets: list[Path] = []
    taken: dict[Path, Path] = {}
    resolved = {p.resolve(): p for p in inputs}
    for p in inputs:
        suffix = _suffix(p)
        target = out_dir / (p.name if suffix in NIFTI_SUFFIXES else p.name[: -len(suffix)] + ".png")
        key = target.resolve()
        if key in resolved or (target.exists() and any(target.samefile(q) for q in inputs)):
            victim = resolved.get(key, target)
            what = "the input itself" if victim == p else f"the input {victim}"
            raise ValueError(f"{p}: its mask {target} would replace {what}; give another --out folder")
        if key in taken:
            raise ValueError(f"{taken[key]} and {p} would both be written to {target}; predict them into separate "
                             "--out folders")  # fmt: skip
        if target.is_dir():
            raise ValueError(f"{target}: is a folder where the mask of {p} would go")
        if target.exists() and not overwrite:
            raise ValueError(f"{target}: already exists; give --overwrite to replace it")
        taken[key] = p
        targets.append(target)
    return targets
