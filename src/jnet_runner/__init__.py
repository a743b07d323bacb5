"""A reference runner for jnet's ONNX exports that needs only numpy, onnxruntime and (for NIfTI) nibabel.

It reads the device's contract from the file's metadata (``jnet.preprocessing``,
``jnet.postprocessing``; every key is documented in jnet's ``docs/performance.md``) and does
what ``jnet predict`` does with the checkpoint, without torch and without the jnet package
(whose ``__init__`` imports torch): copy this folder to a device, or run it where jnet is
installed::

    python -m jnet_runner model.onnx case.nii.gz slice.png --out masks/

A NIfTI volume ``(X, Y, Z)`` (or ``(X, Y, Z, M)``, modalities last) gives a uint8 label volume
with the input's shape, affine and header; a PNG slice gives a PNG mask of the same size
(0/255 for a binary model, class indices otherwise). PNG files are read and written here
(8- and 16-bit grey, 8-bit colour, palette; zlib from the standard library); other PNGs and
TIFF files need Pillow. ``tests/test_onnx_contract.py`` runs this file where ``import torch``
fails and checks that its masks equal ``jnet predict``'s, voxel for voxel.

The numerical steps copy jnet's: :func:`normalize_volume` (``jnet.data.nifti``),
:func:`normalize_slices` (``jnet.data.prepare``), :func:`fit_to_size` (``jnet.data.nifti``,
torch's antialiased bilinear resize written out in numpy) and :func:`back_to_input_grid`
(``jnet.deploy.predict``).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Runner",
    "back_to_input_grid",
    "fit_to_size",
    "main",
    "normalize_slices",
    "normalize_volume",
    "read_png",
    "write_png",
]

SUPPORTED_FORMAT = 1
NIFTI_SUFFIXES = (".nii.gz", ".nii")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Normalisation (jnet.data.nifti.normalize_volume, jnet.data.prepare.normalize_slices)
# ----------------------------------------------------------------------------------------------


def normalize_volume(volume: np.ndarray, normalization: dict[str, Any], name: str = "volume") -> np.ndarray:
    """One channel of one volume, normalised over its non-zero voxels (``zscore`` or ``percentile``)."""
    x = np.asarray(volume, dtype=np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        raise ValueError(f"{name}: contains {int((~finite).sum())} NaN or infinite voxels")
    nonzero = x != 0
    values = x[nonzero].astype(np.float64)
    if values.size == 0:
        raise ValueError(f"{name}: constant volume (every voxel is 0), cannot normalise")
    out = np.zeros_like(x)
    if normalization["mode"] == "zscore":
        mean, std = values.mean(), values.std()
        if std == 0:
            raise ValueError(f"{name}: constant volume (every non-zero voxel is {values[0]:g}), cannot normalise")
        out[nonzero] = (values - mean) / std
    elif normalization["mode"] == "percentile":
        lo, hi = np.percentile(values, normalization["percentiles"])
        if hi <= lo:
            raise ValueError(f"{name}: constant volume (percentiles both {lo:g}), cannot normalise")
        out[nonzero] = (np.clip(values, lo, hi) - lo) / (hi - lo)
    else:
        raise ValueError(f"unknown per-volume normalisation {normalization['mode']!r}")
    return out


def normalize_slices(slices: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` z-scored per slice and channel (float32); a constant slice becomes 0."""
    x = np.asarray(slices, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("the image contains NaN or infinite values")
    mean = x.mean(axis=(2, 3), keepdims=True)
    std = x.std(axis=(2, 3), keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Resampling
# ----------------------------------------------------------------------------------------------


def _aa_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of torch's antialiased bilinear resize (``antialias=True``) along one axis."""
    scale = n_in / n_out
    support = scale if scale >= 1.0 else 1.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    w = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        x = (np.arange(lo, hi) - center + 0.5) * invscale
        taps = np.maximum(0.0, 1.0 - np.abs(x))
        total = taps.sum()
        w[i, lo:hi] = taps / total if total != 0 else taps
    return w


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of bilinear interpolation, ``align_corners=False``, no antialiasing."""
    w = np.zeros((n_out, n_in), dtype=np.float64)
    scale = np.float32(n_in / n_out)  # torch computes the source index in float32
    src = np.maximum((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0.astype(np.float32)).astype(np.float64)
    rows = np.arange(n_out)
    np.add.at(w, (rows, i0), 1.0 - frac)
    np.add.at(w, (rows, i1), frac)
    return w


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of area (adaptive average) down-sampling."""
    w = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        w[i, lo:hi] = 1.0 / (hi - lo)
    return w


def _separable(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``rows @ x @ cols.T`` over the last two axes, in float64, returned as float32."""
    y = np.einsum("oh,...hw->...ow", rows, x.astype(np.float64))
    return np.einsum("...hw,pw->...hp", y, cols).astype(np.float32)


def _centre_window(n: int, size: int) -> tuple[slice, slice]:
    """Source and destination ranges of centre padding / cropping ``n`` to ``size``."""
    if n >= size:
        start = (n - size) // 2
        return slice(start, start + size), slice(0, size)
    start = (size - n) // 2
    return slice(0, n), slice(start, start + n)


def fit_to_size(slices: np.ndarray, size: int, mode: str) -> np.ndarray:
    """``(N, C, H, W)`` slices to ``(N, C, size, size)``: ``"resize"`` (antialiased bilinear) or ``"pad_crop"``."""
    n, c, h, w = slices.shape
    if (h, w) == (size, size):
        return slices.astype(np.float32, copy=False)
    if mode == "pad_crop":
        (src_r, dst_r), (src_c, dst_c) = _centre_window(h, size), _centre_window(w, size)
        out = np.zeros((n, c, size, size), dtype=np.float32)
        out[:, :, dst_r, dst_c] = slices[:, :, src_r, src_c]
        return out
    if mode != "resize":
        raise ValueError(f"unknown fit mode {mode!r}")
    return _separable(slices, _aa_weights(h, size), _aa_weights(w, size))


def back_to_input_grid(labels: np.ndarray, shape: tuple[int, int], mode: str) -> np.ndarray:
    """``(N, S, S)`` labels back to the input's ``(N, H, W)`` (nearest, or the inverse pad/crop)."""
    n, s, _ = labels.shape
    h, w = shape
    if (h, w) == (s, s):
        return labels
    if mode == "resize":
        rows = np.minimum(((np.arange(h) + 0.5) * (s / h)).astype(np.int64), s - 1)
        cols = np.minimum(((np.arange(w) + 0.5) * (s / w)).astype(np.int64), s - 1)
        return np.ascontiguousarray(labels[:, rows][:, :, cols])
    out = np.zeros((n, h, w), labels.dtype)
    (dst_r, src_r), (dst_c, src_c) = _centre_window(h, s), _centre_window(w, s)  # input <-> model window
    out[:, dst_r, dst_c] = labels[:, src_r, src_c]
    return out


# ----------------------------------------------------------------------------------------------
# PNG without Pillow
# ----------------------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    pos = 0
    for r in range(height):
        kind, line = raw[pos], np.frombuffer(raw, np.uint8, stride, pos + 1).astype(np.int32)
        pos += stride + 1
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 0xFF
        else:  # 1 (sub), 3 (average), 4 (Paeth) depend on the pixel to the left: one pass per byte
            cur = np.zeros(stride, dtype=np.int32)
            for i in range(stride):
                a = int(cur[i - bpp]) if i >= bpp else 0
                b = int(prev[i])
                c = int(prev[i - bpp]) if i >= bpp else 0
                if kind == 1:
                    pred = a
                elif kind == 3:
                    pred = (a + b) >> 1
                elif kind == 4:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                else:
                    raise ValueError(f"PNG filter type {kind} does not exist")
                cur[i] = (int(line[i]) + pred) & 0xFF
        out[r] = cur
        prev = cur
    return out


def read_png(path: str | Path) -> np.ndarray:
    """The pixel array of a PNG as Pillow gives it (2D grey or palette indices, 3D colour), any of
    8-bit grey, grey + alpha, RGB, RGBA, palette or 16-bit grey, not interlaced; else Pillow is used."""
    data = Path(path).read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{path}: not a PNG file")
    pos, chunks, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path}: a PNG without IHDR")
    width, height, depth, colour, _, _, interlace = header
    simple = interlace == 0 and colour in _PNG_CHANNELS and (depth == 8 or (depth == 16 and colour == 0))
    if not simple:
        return _read_with_pillow(path)
    channels = _PNG_CHANNELS[colour]
    bpp = channels * depth // 8
    rows = _unfilter(zlib.decompress(b"".join(chunks)), height, width * bpp, bpp)
    if depth == 16:
        return rows.view(">u2").reshape(height, width).astype(np.uint16)
    return rows.reshape(height, width, channels) if channels > 1 else rows.reshape(height, width)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a 2D uint8 array as an 8-bit grey PNG."""
    a = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = a.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(h))
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw, 6))
    Path(path).write_bytes(_PNG_SIGNATURE + body + chunk(b"IEND", b""))


def _read_with_pillow(path: str | Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError(f"{path}: this image type needs Pillow (pip install pillow)") from err
    with Image.open(path) as im:
        im.load()
        return np.array(im.convert("L") if im.mode == "1" else im)


def read_grey(path: str | Path) -> np.ndarray:
    """A 2D image file as float32 grey (colour: ``0.299 R + 0.587 G + 0.114 B``), as jnet reads it."""
    arr = read_png(path) if str(path).lower().endswith(".png") else _read_with_pillow(path)
    if arr.ndim == 2:
        return arr.astype(np.float32)
    if arr.shape[2] in (1, 2):
        return arr[..., 0].astype(np.float32)
    return arr[..., :3].astype(np.float32) @ _GREY_WEIGHTS


# ----------------------------------------------------------------------------------------------
# The runner
# ----------------------------------------------------------------------------------------------


class Runner:
    """An exported file and its contract: ``predict_slices``, ``predict_volume``, ``predict_image``, ``predict_file``.

    Args:
        path: a ``.onnx`` file written by ``jnet export`` (with ``jnet.preprocessing`` and
            ``jnet.postprocessing`` in its metadata).
        threads: ONNX Runtime intra-op threads (default: its own choice).
        batch_size: slices per graph call.
    """

    def __init__(self, path: str | Path, threads: int | None = None, batch_size: int = 32) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        if "jnet.preprocessing" not in props or "jnet.postprocessing" not in props:
            raise ValueError(f"{path}: no jnet.preprocessing / jnet.postprocessing metadata (export it again)")
        self.pre: dict[str, Any] = json.loads(props["jnet.preprocessing"])
        self.post: dict[str, Any] = json.loads(props["jnet.postprocessing"])
        for entry in (self.pre, self.post):
            if entry.get("format", 0) > SUPPORTED_FORMAT:
                raise ValueError(f"{path}: contract format {entry['format']} is newer than this runner")
        self.batch_size = batch_size
        self.size = int(self.pre["fit"]["size"][0])
        self.channels = int(self.pre["input"]["shape"][1])

    def _graph_input(self, x: np.ndarray) -> np.ndarray:
        """Full-resolution slices ``(B, C, S, S)`` as the graph takes them (down-sampled unless it does so)."""
        down = self.pre["downsample"]
        if down["in_graph"] or list(down["to"]) == list(down["from"]):
            return x
        (h, w), (sh, sw) = down["to"], x.shape[-2:]
        if down["mode"] == "area":
            return _separable(x, _area_weights(sh, h), _area_weights(sw, w))
        return _separable(x, _bilinear_weights(sh, h), _bilinear_weights(sw, w))

    def _labels(self, logits: np.ndarray) -> np.ndarray:
        up = self.post["upsample_logits"]
        if up is not None:
            h, w = up["size"]
            logits = _separable(logits, _bilinear_weights(logits.shape[-2], h), _bilinear_weights(logits.shape[-1], w))
        if self.post["decision"] == "threshold":
            return (logits[:, 0] > self.post["threshold"]).astype(np.uint8)
        return logits.argmax(axis=1).astype(np.uint8)

    def predict_slices(self, slices: np.ndarray) -> np.ndarray:
        """Labels ``(N, S, S)`` uint8 for normalised slices ``(N, C, S, S)`` already fitted to the model's size."""
        name = self.session.get_inputs()[0].name
        out = []
        for i in range(0, len(slices), self.batch_size):
            x = self._graph_input(np.ascontiguousarray(slices[i : i + self.batch_size], dtype=np.float32))
            out.append(self._labels(self.session.run(None, {name: x})[0]))
        return np.concatenate(out) if out else np.zeros((0, self.size, self.size), np.uint8)

    def predict_volume(
        self, volume: np.ndarray, modalities: list[int] | None = None, name: str = "volume"
    ) -> np.ndarray:
        """Labels ``(X, Y, Z)`` uint8 of a volume ``(X, Y, Z)`` or ``(X, Y, Z, M)``, on its own grid."""
        norm = self.pre["normalization"]
        per_volume = norm["scope"] == "volume"

        def prepare(v: np.ndarray, what: str) -> np.ndarray:
            return normalize_volume(v, norm, what) if per_volume else v.astype(np.float32)

        if volume.ndim == 4:
            m = volume.shape[3]
            chosen = modalities if modalities is not None else self.pre.get("modalities")
            chosen = list(range(m)) if chosen is None else list(chosen)
            if any(not 0 <= i < m for i in chosen):
                raise ValueError(f"{name}: modalities {chosen} do not exist (the volume has {m}: 0..{m - 1})")
            volume = np.stack([prepare(volume[..., i], f"{name} modality {i}") for i in chosen], -1)
        elif volume.ndim == 3:
            volume = prepare(volume, name)[..., None]
        else:
            raise ValueError(f"{name}: expected a 3D volume (or 4D with modalities last), got shape {volume.shape}")
        if volume.shape[3] != self.channels:
            raise ValueError(f"{name}: {volume.shape[3]} channel(s); the model expects {self.channels}")
        slices = np.ascontiguousarray(volume.transpose(2, 3, 1, 0))  # (Z, C, Y, X)
        if not per_volume:
            slices = normalize_slices(slices)
        mode = self.pre["fit"]["mode"]
        labels = self.predict_slices(fit_to_size(slices, self.size, mode))
        labels = back_to_input_grid(labels, slices.shape[2:], mode)  # (Z, Y, X)
        return np.ascontiguousarray(labels.transpose(2, 1, 0))

    def predict_image(self, grey: np.ndarray) -> np.ndarray:
        """Labels ``(H, W)`` uint8 (class indices) of a 2D grey image."""
        if self.channels != 1:
            raise ValueError(f"2D images give one channel; the model expects {self.channels}")
        mode = self.pre["fit"]["mode"]
        x = normalize_slices(np.asarray(grey, np.float32)[None, None])
        return back_to_input_grid(self.predict_slices(fit_to_size(x, self.size, mode)), grey.shape, mode)[0]

    def predict_file(self, path: str | Path, out_dir: str | Path, modalities: list[int] | None = None) -> Path:
        """Segment one NIfTI or image file into ``out_dir`` (same name; ``.png`` for 2D images)."""
        path, out_dir = Path(path), Path(out_dir)
        name = path.name.lower()
        if name.endswith(NIFTI_SUFFIXES):
            import nibabel as nib

            img = nib.load(str(path), mmap=False)
            volume = np.asanyarray(img.dataobj).astype(np.float32, copy=False)
            labels = self.predict_volume(volume, modalities, str(path))
            header = img.header.copy()
            header.set_data_dtype(np.uint8)
            out = out_dir / path.name
            nib.save(nib.Nifti1Image(labels, np.array(img.affine, dtype=np.float64), header), str(out))
            return out
        if name.endswith(IMAGE_SUFFIXES):
            labels = self.predict_image(read_grey(path)) * np.uint8(self.post["png"]["scale"])
            out = out_dir / (path.name[: -len(path.suffix)] + ".png")
            write_png(out, labels)
            return out
        raise ValueError(f"{path}: not a NIfTI (.nii, .nii.gz) or image (.png, .tif, .tiff) file")


def main(argv: list[str] | None = None) -> int:
    """``python -m jnet_runner MODEL INPUT... --out DIR [--modalities 0,1] [--threads N]``."""
    parser = argparse.ArgumentParser(prog="jnet_runner", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .onnx file written by jnet export")
    parser.add_argument("inputs", nargs="+", help=".nii/.nii.gz volumes or .png/.tif slices")
    parser.add_argument("--out", required=True, help="output folder (same file names; PNG for 2D inputs)")
    parser.add_argument("--modalities", default=None, help="for 4D volumes, e.g. 0 or 0,1 (default: the contract's)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        runner = Runner(args.model, threads=args.threads)
        modalities = [int(m) for m in args.modalities.split(",")] if args.modalities else None
        Path(args.out).mkdir(parents=True, exist_ok=True)
        for item in args.inputs:
            print(f"{item} -> {runner.predict_file(item, args.out, modalities)}")
    except (ValueError, OSError, ImportError) as err:
        print(f"jnet_runner: error: {err}", file=sys.stderr)
        return 2
    return 0
