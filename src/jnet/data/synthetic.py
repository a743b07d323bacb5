"""Seeded MRI-like phantoms: the built-in dataset for the demo and the tests.

Each synthetic *patient* is a short stack of axial slices through a head-like phantom:

* **Anatomy** -- an elliptical head whose shape, size, tilt and position vary between patients
  and shrink smoothly away from the middle slice: a bright scalp rim, a thin dark skull band,
  a grey-matter ribbon with a wavy (gyral) inner edge, two dark ventricles, a few deep grey
  nuclei and a thin midline line, all with a fine multiplicative tissue texture.
* **Acquisition** -- partial-volume blur of every edge, a smooth multiplicative bias field
  (varying across the stack), Rician noise (the magnitude of a complex signal with Gaussian
  noise on both channels) and a faintly textured, non-zero background.
* **Lesions** -- up to two per patient, so 0 to 2 per slice. Each is a 3D blob cut axially:
  its radius follows ``R * sqrt(1 - ((u - u_c) / h)^2)`` along the stack, so it grows and
  shrinks smoothly from slice to slice and about a quarter of the slices hold no lesion. Its
  outline is star-shaped, ``r(theta) = r0 * (1 + sum_k a_k cos(k theta + phi_k))`` with a few
  random harmonics whose phases drift slowly along the stack, plus thin, tapering, bent
  finger-like protrusions 3-9 px wide at 256 x 256 (so well under one 16-px block). With
  ``num_lesion_classes >= 2`` a darker core (label 2) sits inside the lesion (label 1); with
  3 the core carries a bright enhancing ring (label 3) around a darker centre.

Masks are evaluated analytically on the full ``size x size`` pixel grid (geometry in
normalised ``[-1, 1]`` coordinates, so the same seed gives the same shapes at any size), never
up-sampled from a coarse grid.

Why this is hard from a 16 x 16 input: one input pixel covers a 16 x 16 block of the 256 x 256
mask. Lesions are about 1 to 4 blocks across, their harmonics bend the boundary within a block,
the fingers and the enhancing ring are thinner than a block, and the lesion contrast is
moderate (the lesion grey levels overlap those of the grey matter and nuclei, the ring those of
the scalp; the best single intensity window reaches a Dice of only about 0.3) under noise and
bias. Even the true mask, reduced to 16 x 16 by block majority and enlarged back, keeps a mean
foreground Jaccard of only about 0.6 on lesion slices (0.75 at 32 x 32, 0.86 at 64 x 64; see
the tests), while the coarse position and extent stay learnable by a small U-Net.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jnet.io import atomic_write

__all__ = ["make_synthetic", "write_synthetic_npz"]

# Sizes below are in normalised image coordinates, where the image spans [-1, 1]:
# one pixel at 256 x 256 is PX = 2 / 256.
PX = 2.0 / 256.0
_BRAIN_EDGE = 0.82  # head-normalised radius where the brain ends (inside the skull band)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], sigma: float) -> np.ndarray:
    """Unit-variance Gaussian-smoothed noise ``(S, H, W)``, ``sigma`` in normalised units.

    Synthesised in the Fourier domain (random coefficients shaped by the Gaussian's transfer
    function), which costs one inverse FFT instead of a forward and an inverse one.
    """
    n, h, w = shape
    coef = rng.standard_normal((2, n, h, w // 2 + 1), dtype=np.float32)
    out = np.fft.irfft2((coef[0] + 1j * coef[1]) * _transfer(h, w, sigma), s=(h, w)).astype(np.float32)
    std = float(out.std())
    return out / std if std > 0 else out


def _transfer(h: int, w: int, sigma: float) -> np.ndarray:
    """The Gaussian's transfer function on the ``rfft2`` grid (sigma normalised: the image spans 2)."""
    sy, sx = sigma * h / 2.0, sigma * w / 2.0  # in pixels
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.exp(-2.0 * np.pi**2 * (sy**2 * fy**2 + sx**2 * fx**2)).astype(np.float32)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian blur of ``(S, H, W)`` over the last two axes via the FFT (sigma normalised)."""
    h, w = x.shape[-2:]
    if sigma * min(h, w) / 2.0 < 0.05:  # under 1/20 pixel: nothing to do
        return x.astype(np.float32, copy=False)
    return np.fft.irfft2(np.fft.rfft2(x) * _transfer(h, w, sigma), s=(h, w)).astype(np.float32)


def _harmonics(rng: np.random.Generator, orders: np.ndarray, total: float) -> dict[str, np.ndarray]:
    """Random Fourier terms for a star-shaped radius: amplitudes summing to at most ``total``."""
    amp = rng.uniform(0.3, 1.0, len(orders)) / orders**0.6
    amp *= total / amp.sum()
    return {
        "k": orders.astype(np.float64),
        "amp": amp,
        "phase": rng.uniform(0, 2 * np.pi, len(orders)),
        "drift": rng.normal(0, 1.2, len(orders)),  # phase change per unit of u along the stack
    }


def _radius_factor(h: dict[str, np.ndarray], theta: np.ndarray | float, du: float) -> np.ndarray:
    """``1 + sum_k a_k cos(k theta + phi_k + drift_k du)`` evaluated at ``theta``."""
    theta = np.asarray(theta, dtype=np.float32)
    out = np.ones_like(theta)
    for k, a, p, d in zip(h["k"], h["amp"], h["phase"], h["drift"], strict=True):
        out += np.float32(a) * np.cos(np.float32(k) * theta + np.float32(p + d * du))
    return out


def _draw_lesion(rng: np.random.Generator) -> dict:
    """Parameters of one 3D lesion (geometry drawn in full whatever the number of classes)."""
    radius = rng.uniform(0.12, 0.26)
    fingers = []
    for _ in range(rng.integers(2, 6)):
        half_width = rng.uniform(1.5, 4.5) * PX  # full width 3-9 px at 256: below one 16-px block
        fingers.append(
            {
                "angle": rng.uniform(0, 2 * np.pi),
                "angle_drift": rng.normal(0, 0.4),
                "length": rng.uniform(0.5, 1.3) * radius + rng.uniform(3, 8) * PX,
                "bend": rng.normal(0, 0.6),
                "w0": half_width,
                "w1": half_width * rng.uniform(0.35, 0.8),
                "u_offset": rng.uniform(-0.5, 0.5),  # window centre, in units of the lesion half-height
                "u_half": rng.uniform(0.35, 0.8),  # window half-width, same units
            }
        )
    return {
        "radius": radius,
        "u_center": rng.uniform(-0.65, 0.65),
        "u_half": rng.uniform(0.5, 1.0),
        "head_r": np.sqrt(rng.uniform(0, 1)) * 0.5,  # centre in head-normalised polar coordinates
        "head_theta": rng.uniform(0, 2 * np.pi),
        "drift": rng.normal(0, 0.03, 2),  # centre moves a little along the stack (tilted blob)
        "shape": _harmonics(rng, np.array([2, 3, 4, 5, 7]), rng.uniform(0.25, 0.45)),
        "fingers": fingers,
        "core_frac": rng.uniform(0.4, 0.6),
        "core_offset": rng.normal(0, 0.1, 2),  # in units of r0
        "core_shape": _harmonics(rng, np.array([2, 3, 5]), rng.uniform(0.15, 0.3)),
        "ring_frac": rng.uniform(0.55, 0.72),  # inner edge of the enhancing ring, fraction of core radius
    }


def _draw_patient(rng: np.random.Generator) -> dict:
    """Per-patient anatomy, contrast, bias-field and lesion parameters."""
    p = {
        "center": rng.uniform(-0.05, 0.05, 2),
        "tilt": rng.uniform(-0.3, 0.3),
        "axes": np.array([rng.uniform(0.66, 0.8), rng.uniform(0.8, 0.92)]),  # (x, y) semi-axes
        "head_shape": _harmonics(rng, np.array([2, 3, 4]), rng.uniform(0.02, 0.06)),
        "gyri": _harmonics(rng, rng.choice(np.arange(9, 24), 4, replace=False), 1.0),
        "gyri_depth": rng.uniform(0.04, 0.08),
        "cortex_inner": rng.uniform(0.64, 0.7),
        "ventricle": {
            "dx": rng.uniform(0.08, 0.14),
            "dy": rng.uniform(-0.12, 0.02),
            "ax": rng.uniform(0.05, 0.09),
            "ay": rng.uniform(0.16, 0.26),
            "tilt": rng.uniform(0.1, 0.35),
            "u_half": rng.uniform(0.7, 1.1),
        },
        "nuclei": [
            {
                "xy": np.array([rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35)]),
                "r": rng.uniform(0.05, 0.1),
                "level": rng.uniform(0.52, 0.66),
                "u_center": rng.uniform(-0.8, 0.8),
                "u_half": rng.uniform(0.5, 1.2),
            }
            for _ in range(rng.integers(2, 5))
        ],
        # grey levels (before bias, noise and scaling)
        "white": rng.uniform(0.42, 0.48),
        "grey": rng.uniform(0.53, 0.58),
        "csf": rng.uniform(0.12, 0.22),
        "scalp": rng.uniform(0.78, 0.88),
        "skull": rng.uniform(0.06, 0.12),
        "edema": rng.uniform(0.58, 0.66),
        "core": rng.uniform(0.36, 0.44),
        "ring": rng.uniform(0.76, 0.86),
        "texture": rng.uniform(0.03, 0.06),
        "bias": rng.normal(0, 0.09, 6),
        "noise": rng.uniform(0.02, 0.04),
        "background": rng.uniform(0.02, 0.05),
    }
    n_lesions = 1 + int(rng.random() < 0.55)
    lesions: list[dict] = []
    for _ in range(n_lesions):
        for _attempt in range(20):  # keep the lesions of one patient apart
            les = _draw_lesion(rng)
            les["xy"] = _lesion_center(p, les)
            if all(np.hypot(*(les["xy"] - o["xy"])) > 1.1 * (les["radius"] + o["radius"]) for o in lesions):
                break
        lesions.append(les)
    p["lesions"] = lesions
    return p


def _head_scale(u: float) -> float:
    """Head size along the stack: largest at the middle slice (u = 0), 80 % at the ends."""
    return float(np.sqrt(1.0 - (0.6 * u) ** 2))


def _to_image(p: dict, xh: float, yh: float, scale: float) -> np.ndarray:
    """Head-normalised coordinates to image coordinates."""
    x, y = xh * p["axes"][0] * scale, yh * p["axes"][1] * scale
    c, s = np.cos(p["tilt"]), np.sin(p["tilt"])
    return np.array([c * x - s * y, s * x + c * y]) + p["center"]


def _lesion_center(p: dict, les: dict) -> np.ndarray:
    t = les["head_theta"]
    return _to_image(p, les["head_r"] * np.cos(t), les["head_r"] * np.sin(t), _head_scale(les["u_center"]))


def _segment_inside(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray, wa: float, wb: float) -> np.ndarray:
    """Pixels within a tapering half-width (``wa`` at ``a`` to ``wb`` at ``b``) of the segment a-b."""
    d = b - a
    length2 = float(d @ d)
    if length2 == 0:
        return np.hypot(px - a[0], py - a[1]) <= wa
    t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / length2, 0.0, 1.0)
    dist = np.hypot(px - (a[0] + t * d[0]), py - (a[1] + t * d[1]))
    return dist <= wa + (wb - wa) * t


def _lesion_labels(les: dict, u: float, xs: np.ndarray, brain: np.ndarray) -> tuple[np.ndarray, slice, slice] | None:
    """Labels 0..3 of one lesion on one slice, on its bounding-box crop; ``None`` if absent.

    Label 1 is the whole lesion (star body and fingers), 2 the core, 3 the core's enhancing ring;
    the caller folds 2 and 3 down when fewer classes are asked for.
    """
    du = (u - les["u_center"]) / les["u_half"]
    if abs(du) >= 1:
        return None
    rel = float(np.sqrt(1.0 - du**2))
    if rel < 0.2:  # the very tip of the blob: skip rather than draw a speck
        return None
    r0 = les["radius"] * rel
    cx, cy = les["xy"] + les["drift"] * (u - les["u_center"])

    # finger polylines for this slice
    segments = []
    reach = r0 * (1 + les["shape"]["amp"].sum())
    for f in les["fingers"]:
        fu = (du - f["u_offset"]) / f["u_half"]
        if abs(fu) >= 1:
            continue
        grow = float(np.sqrt(1.0 - fu**2))
        length = f["length"] * grow
        if length < 2 * PX:
            continue
        angle = f["angle"] + f["angle_drift"] * (u - les["u_center"])
        r_edge = r0 * float(_radius_factor(les["shape"], angle, u - les["u_center"]))
        d1 = np.array([np.cos(angle), np.sin(angle)])
        d2 = np.array([np.cos(angle + f["bend"]), np.sin(angle + f["bend"])])
        p0 = np.array([cx, cy]) + 0.5 * r_edge * d1
        p1 = np.array([cx, cy]) + (r_edge + 0.6 * length) * d1
        p2 = p1 + 0.4 * length * d2
        w0, w1 = f["w0"] * (0.6 + 0.4 * grow), f["w1"] * (0.6 + 0.4 * grow)
        wm = w0 + 0.6 * (w1 - w0)
        segments.append((p0, p1, w0, wm))
        segments.append((p1, p2, wm, w1))
        reach = max(reach, r_edge + length + w0)

    # bounding-box crop in pixels
    size = len(xs)
    step = xs[1] - xs[0] if size > 1 else 2.0
    margin = reach + 2 * step
    lo_x, hi_x = np.searchsorted(xs, cx - margin), np.searchsorted(xs, cx + margin)
    lo_y, hi_y = np.searchsorted(xs, cy - margin), np.searchsorted(xs, cy + margin)
    if lo_x >= hi_x or lo_y >= hi_y:
        return None
    sy, sx = slice(lo_y, hi_y), slice(lo_x, hi_x)
    px, py = xs[None, sx], xs[sy, None]
    dx, dy = px - np.float32(cx), py - np.float32(cy)
    rho = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    inside = rho <= r0 * _radius_factor(les["shape"], theta, u - les["u_center"])
    for a, b, wa, wb in segments:
        inside |= _segment_inside(px, py, a, b, wa, wb)
    inside &= brain[sy, sx]
    if not inside.any():
        return None

    labels = inside.astype(np.uint8)
    off = les["core_offset"] * r0
    cdx, cdy = dx - np.float32(off[0]), dy - np.float32(off[1])
    crho = np.hypot(cdx, cdy)
    core_r = les["core_frac"] * r0 * _radius_factor(les["core_shape"], np.arctan2(cdy, cdx), u - les["u_center"])
    core = inside & (crho <= core_r)
    labels[core & (crho > les["ring_frac"] * core_r)] = 3
    labels[core & (crho <= les["ring_frac"] * core_r)] = 2
    return labels, sy, sx


def _patient_volume(
    p: dict, rng: np.random.Generator, n_slices: int, size: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images (float, before scaling) and masks ``(S, size, size)`` of one patient."""
    xs = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
    x, y = xs[None, :], xs[:, None]
    c, s = np.float32(np.cos(p["tilt"])), np.float32(np.sin(p["tilt"]))
    xr = c * (x - np.float32(p["center"][0])) + s * (y - np.float32(p["center"][1]))
    yr = -s * (x - np.float32(p["center"][0])) + c * (y - np.float32(p["center"][1]))
    xh0, yh0 = xr / np.float32(p["axes"][0]), yr / np.float32(p["axes"][1])
    theta = np.arctan2(yh0, xh0)
    rho0 = np.hypot(xh0, yh0)

    us = (2.0 * (np.arange(n_slices) + 0.5) / n_slices - 1.0) if n_slices > 1 else np.zeros(1)
    hard = np.zeros((n_slices, size, size), dtype=np.float32)
    masks = np.zeros((n_slices, size, size), dtype=np.uint8)
    head = np.zeros((n_slices, size, size), dtype=np.float32)
    lesion_level = {1: p["edema"], 2: p["core"] if num_classes >= 2 else p["edema"]}
    lesion_level[3] = p["ring"] if num_classes >= 3 else lesion_level[2]
    fold = np.array([0, 1, min(2, num_classes), min(3, num_classes)], dtype=np.uint8)  # merge unused classes

    for i, u in enumerate(us):
        scale = np.float32(_head_scale(u))
        rho = rho0 / (scale * _radius_factor(p["head_shape"], theta, u))
        xh, yh = xh0 / scale, yh0 / scale
        cortex_in = p["cortex_inner"] + p["gyri_depth"] * (_radius_factor(p["gyri"], theta, u) - 1.0)
        img = np.where(rho < 1.0, p["scalp"], 0.0).astype(np.float32)
        img[rho < 0.9] = p["skull"]
        brain = rho < _BRAIN_EDGE
        img[brain] = p["grey"]
        img[rho < cortex_in] = p["white"]
        # deep grey nuclei
        for nuc in p["nuclei"]:
            nu = (u - nuc["u_center"]) / nuc["u_half"]
            if abs(nu) < 1:
                r = nuc["r"] * np.sqrt(1 - nu**2)
                img[np.hypot(xh - nuc["xy"][0], yh - nuc["xy"][1]) < r] = nuc["level"]
        # ventricles: two mirrored tilted ellipses, largest mid-stack
        v = p["ventricle"]
        vu = u / v["u_half"]
        if abs(vu) < 1:
            vs = np.float32(np.sqrt(1 - vu**2))
            for side in (-1.0, 1.0):
                cv, sv = np.float32(np.cos(side * v["tilt"])), np.float32(np.sin(side * v["tilt"]))
                ex, ey = xh - np.float32(side * v["dx"]), yh - np.float32(v["dy"])
                ex, ey = cv * ex + sv * ey, -sv * ex + cv * ey
                img[(ex / (v["ax"] * vs)) ** 2 + (ey / (v["ay"] * vs)) ** 2 < 1] = p["csf"]
        # midline (falx): a thin line along the head's long axis
        img[brain & (np.abs(xr) < 0.7 * PX * 2) & (np.abs(yh) > 0.35) & (rho < cortex_in + 0.05)] = p["grey"]
        head[i] = np.clip((1.0 - rho) / 0.03 + 0.5, 0.0, 1.0)  # soft edge, about 3 px at 256

        for les in p["lesions"]:
            found = _lesion_labels(les, float(u), xs, brain)
            if found is None:
                continue
            labels, sy, sx = found
            labels = fold[labels]
            view_m, view_i = masks[i, sy, sx], img[sy, sx]
            for k in range(1, num_classes + 1):
                sel = labels == k
                view_i[sel] = lesion_level[k]
            np.maximum(view_m, labels, out=view_m)
        hard[i] = img

    # acquisition: partial volume, texture, background, bias field, Rician noise.
    # One smooth noise field serves the tissue texture (inside the head), the background
    # (outside it) and, flipped, the lesion texture.
    img = _blur(hard, 0.8 * PX)
    noise = _smooth_noise(rng, hard.shape, 3 * PX)
    img *= 1.0 + p["texture"] * noise
    lesion_any = masks > 0
    img[lesion_any] *= 1.0 + 0.08 * noise[:, ::-1, ::-1][lesion_any]
    img += (1.0 - head) * np.clip(p["background"] * (1.0 + 0.6 * noise), 0, None)
    b = p["bias"]
    bias = b[0] * x + b[1] * y + b[2] * x * x + b[3] * y * y + b[4] * x * y
    img *= np.exp(bias[None] + (b[5] * us)[:, None, None]).astype(np.float32)
    sigma = np.float32(p["noise"])
    real = img + sigma * rng.standard_normal(img.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(img.shape, dtype=np.float32)
    return np.hypot(real, imag), masks


def make_synthetic(
    num_patients: int = 8,
    slices_per_patient: int = 8,
    size: int = 256,
    num_lesion_classes: int = 1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded MRI-like phantom slices with lesion masks, in the slice-archive layout.

    Args:
        num_patients: number of synthetic patients (independent anatomies and lesions).
        slices_per_patient: axial slices per patient; lesions vary smoothly along them.
        size: image and mask side in pixels; at least 16 and a multiple of 16.
        num_lesion_classes: 1 (lesion), 2 (+ core inside it) or 3 (+ enhancing ring on the core).
        seed: everything is derived from it (one child seed per patient), so the same
            arguments give identical arrays. The geometry does not depend on ``size`` or
            ``num_lesion_classes``: the union of the lesion labels is the same shape at
            every size.

    Returns:
        ``images`` ``(N, size, size)`` uint8, ``masks`` ``(N, size, size)`` uint8 with labels
        ``0..num_lesion_classes``, ``patient_id`` ``(N,)`` str (``"synth_000"``, ...) and
        ``slice_index`` ``(N,)`` int16, with ``N = num_patients * slices_per_patient``,
        patient by patient, slices in order.
    """
    num_patients = _check_int("num_patients", num_patients, 1)
    slices_per_patient = _check_int("slices_per_patient", slices_per_patient, 1, np.iinfo(np.int16).max)
    num_lesion_classes = _check_int("num_lesion_classes", num_lesion_classes, 1, 3)
    size = _check_int("size", size, 0)
    if size < 16 or size % 16:
        raise ValueError(f"size must be a multiple of 16 and at least 16 (16, 32, ..., 256, ...), got {size}")
    seed = _check_int("seed", seed, 0)

    images, masks = [], []
    for child in np.random.SeedSequence(seed).spawn(num_patients):
        rng = np.random.default_rng(child)
        params = _draw_patient(rng)  # all geometry first: independent of size
        img, mask = _patient_volume(params, rng, slices_per_patient, size, num_lesion_classes)
        top = float(np.percentile(img, 99.8))
        images.append(np.clip(np.rint(img * (250.0 / max(top, 1e-6))), 0, 255).astype(np.uint8))
        masks.append(mask)

    width = max(3, len(str(num_patients - 1)))
    return {
        "images": np.concatenate(images),
        "masks": np.concatenate(masks),
        "patient_id": np.repeat(np.array([f"synth_{p:0{width}d}" for p in range(num_patients)]), slices_per_patient),
        "slice_index": np.tile(np.arange(slices_per_patient, dtype=np.int16), num_patients),
    }


def write_synthetic_npz(path: str | os.PathLike, **kwargs) -> Path:
    """Write :func:`make_synthetic` ``(**kwargs)`` to ``path`` with ``np.savez_compressed``, atomically.

    The archive is written to a temporary file in the same folder and renamed over ``path``,
    so readers never see a half-written file. Missing parent folders are created.

    Returns:
        ``path`` as a :class:`~pathlib.Path` (exactly as given: no ``.npz`` is appended).
    """
    path = Path(path)
    data = make_synthetic(**kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **data)
    return path
