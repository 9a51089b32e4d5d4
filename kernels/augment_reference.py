"""Distorted training images, plain NumPy: the reference the Numba kernels are tested against.

Three kinds (Simard, Steinkraus and Platt 2003): ``shift`` moves an image by whole pixels,
``affine`` rotates, scales, shears and shifts it about its centre, ``elastic`` moves every
pixel along a random displacement field smoothed by a Gaussian and scaled by alpha. Each
output pixel is read from the source image at its moved position by bilinear sampling
(zero outside), rounded half up and clipped to 0..255.

The randomness is a counter-based splitmix64 stream (kernels/INTERFACE.md section 3), so
an image's distortion depends only on (seed, counter, row), never on chunking or threads:
image ``row`` takes the key ``draw(seed, counter * 2**32 + row)`` and its ``d``-th number
is ``draw(key, d)``. All arithmetic after the draws is float32 in one fixed order, the
same as in :mod:`kernels.augment_numba`, so both give the same bytes.
"""

from __future__ import annotations

import math

import numpy as np

KINDS = ("shift", "affine", "elastic")
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
TWO_TO_32 = 1 << 32

# Defaults: shifts of up to 2 pixels; rotations up to 12 degrees, scaling +-10%, shear
# 0.15 and shifts of 1.5 pixels; Simard's elastic alpha 34 with sigma 4 on 28x28 images.
DEFAULTS = {
    "shift": {"max_shift": 2},
    "affine": {"max_rotation": 12.0, "max_scale": 0.1, "max_shear": 0.15, "max_shift": 1.5},
    "elastic": {"alpha": 34.0, "sigma": 4.0},
}


def augment_params(kind: str, **overrides: float) -> np.ndarray:
    """The float32 parameter vector of ``kind`` both implementations read.

    shift: ``[max_shift]``; affine: ``[tan(max_rotation / 2), max_scale, max_shear,
    max_shift]`` (the half-angle tangent: rotation without sin/cos, see below); elastic:
    ``[alpha, radius, w_0, ..., w_radius]``, the Gaussian's normalised taps, computed here
    once so both implementations use the same float32 weights.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown augment {kind!r}; choose one of {', '.join(KINDS)}")
    unknown = set(overrides) - set(DEFAULTS[kind])
    if unknown:
        raise ValueError(f"augment {kind!r} takes {sorted(DEFAULTS[kind])}, not {sorted(unknown)}")
    p = {**DEFAULTS[kind], **overrides}
    if kind == "shift":
        return np.array([p["max_shift"]], np.float32)
    if kind == "affine":
        half = math.tan(math.radians(p["max_rotation"]) / 2)
        return np.array([half, p["max_scale"], p["max_shear"], p["max_shift"]], np.float32)
    sigma = float(p["sigma"])
    radius = max(1, math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(radius + 1) / sigma) ** 2)
    taps /= taps[0] + 2 * taps[1:].sum()
    return np.concatenate([[p["alpha"], radius], taps]).astype(np.float32)


def kind_code(kind: str) -> int:
    """The integer the kernels take for ``kind``."""
    return KINDS.index(kind)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


def draws(key: np.uint64, count: int) -> np.ndarray:
    """Numbers 0..count-1 of the stream ``key``: float32 uniforms in [0, 1)."""
    k = np.arange(1, count + 1, dtype=np.uint64)
    z = _mix(np.uint64(key) + k * GOLDEN)
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def image_key(seed: int, counter: int, row: int) -> np.uint64:
    """The stream key of image ``row`` for pass ``counter``."""
    index = np.array([(counter * TWO_TO_32 + row + 1) % (1 << 64)], np.uint64)
    return _mix(np.uint64(seed % (1 << 64)) + index * GOLDEN)[0]


def augment_rows(
    out: np.ndarray,
    X: np.ndarray,
    rows: np.ndarray,
    side: int,
    kind: int,
    params: np.ndarray,
    seed: int,
    counter: int,
) -> None:
    """Write a distorted copy of ``X[rows[i]]`` into ``out[i]`` (uint8, side*side pixels).

    Parameters
    ----------
    out : ndarray, uint8 (len(rows), side * side)
        Written in full.
    X : ndarray, uint8 (N, side * side)
        The images, never modified.
    rows : ndarray of int
        Which images; ``rows[i]`` also picks image i's random numbers.
    side : int
        Image width and height.
    kind : int
        :func:`kind_code` of ``"shift"``, ``"affine"`` or ``"elastic"``.
    params : ndarray, float32
        :func:`augment_params` of that kind.
    seed, counter : int
        The stream: the trainer passes the model seed and the epoch.
    """
    f32 = np.float32
    pix = side * side
    c = f32((side - 1) / 2)
    y, x = np.divmod(np.arange(pix), side)
    xf, yf = x.astype(f32), y.astype(f32)
    for i, row in enumerate(rows):
        key = image_key(seed, counter, int(row))
        if kind == 0:
            u = draws(key, 2)
            m = int(params[0])
            dx = f32(math.floor(u[0] * f32(2 * m + 1)) - m)
            dy = f32(math.floor(u[1] * f32(2 * m + 1)) - m)
            sx, sy = xf - dx, yf - dy
        elif kind == 1:
            u = draws(key, 5)
            one, two = f32(1), f32(2)
            t = (two * u[0] - one) * params[0]
            s = one + (two * u[1] - one) * params[1]
            h = (two * u[2] - one) * params[2]
            tx = (two * u[3] - one) * params[3]
            ty = (two * u[4] - one) * params[3]
            # Rotation from the half-angle tangent t: exact float32 arithmetic, no sin/cos
            # whose last bit could differ between NumPy and LLVM.
            cos = (one - t * t) / (one + t * t)
            sin = (two * t) / (one + t * t)
            a, b = s * cos, h - s * sin
            cc, d = s * sin, s * cos
            rx, ry = xf - c, yf - c
            sx = ((c + a * rx) + b * ry) + tx
            sy = ((c + cc * rx) + d * ry) + ty
        else:
            u = draws(key, 2 * pix)
            field = (f32(2) * u - f32(1)).reshape(2, side, side)
            alpha, radius, taps = params[0], int(params[1]), params[2:]
            smooth = _blur(_blur(field, taps, radius, 2), taps, radius, 1)
            sx = xf + alpha * smooth[0].ravel()
            sy = yf + alpha * smooth[1].ravel()
        out[i] = _bilinear(X[row], side, sx, sy)


def _blur(field: np.ndarray, taps: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Gaussian along ``axis``, zero outside the image, taps added from -radius up."""
    side = field.shape[axis]
    acc = np.zeros_like(field)
    for k in range(-radius, radius + 1):
        shifted = np.zeros_like(field)
        lo, hi = max(0, -k), min(side, side - k)  # positions whose neighbour j+k is inside
        if lo < hi:
            src = [slice(None)] * 3
            dst = [slice(None)] * 3
            dst[axis], src[axis] = slice(lo, hi), slice(lo + k, hi + k)
            shifted[tuple(dst)] = field[tuple(src)]
        acc = acc + taps[abs(k)] * shifted
    return acc


def _bilinear(image: np.ndarray, side: int, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    f32 = np.float32
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0).astype(f32), (sy - y0).astype(f32)
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    img = image.reshape(side, side).astype(f32)

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        inside = (xx >= 0) & (xx < side) & (yy >= 0) & (yy < side)
        return np.where(inside, img[np.clip(yy, 0, side - 1), np.clip(xx, 0, side - 1)], f32(0))

    one = f32(1)
    v = ((one - fx) * (one - fy)) * at(y0, x0)
    v = v + (fx * (one - fy)) * at(y0, x0 + 1)
    v = v + ((one - fx) * fy) * at(y0 + 1, x0)
    v = v + (fx * fy) * at(y0 + 1, x0 + 1)
    return np.clip(np.floor(v + f32(0.5)), 0, 255).astype(np.uint8)
