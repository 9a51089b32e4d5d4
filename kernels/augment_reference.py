"""Distorted training images, plain NumPy: the reference the Numba kernels are tested against.

Four kinds (after Simard, Steinkraus and Platt 2003): ``shift`` moves an image by whole
pixels; ``affine`` rotates, scales, shears and shifts it about its centre; ``elastic`` moves
every pixel along a smooth random displacement field; ``affine+elastic`` does both. Each
output pixel is read from the source image at its moved position by bilinear sampling
(zero outside).

Simard's field is white noise smoothed by a Gaussian (sigma 4) and scaled by alpha (34):
per image, two blurs of 784-pixel noise, 100 times the cost of a plain training epoch of
784-16-16-10. This field is as strong (about the same root-mean-square displacement, 1.4
pixels) and smooth on the same scale, for a fraction of the work: uniform random
displacements at the points of a coarse grid (spacing 3 sigma: 4 x 4 points 12 pixels
apart over 28 x 28 images), bilinearly interpolated, with the root-mean-square
displacement and about the root-mean-square slope of Simard's field. It is piecewise
bilinear rather than Gaussian-smooth, which a digit moved by a pixel or two does not show.

All arithmetic after the random draws is integer: positions in 16.16 fixed point,
bilinear weights in 1/256, rounded half up. So the NumPy and Numba implementations give
the same bytes by construction, and the compiled kernel can step a position along a row
by adding a constant, exactly.

The randomness is a counter-based splitmix64 stream (kernels/INTERFACE.md section 3), so
an image's distortion depends only on (seed, counter, row), never on chunking or threads:
image ``row`` takes the key ``draw(seed, counter * 2**32 + row)`` and its ``d``-th number
is ``draw(key, d)``.
"""

from __future__ import annotations

import math

import numpy as np

KINDS = ("shift", "affine", "elastic", "affine+elastic")
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
TWO_TO_32 = 1 << 32
ONE = 1 << 16  # 1.0 in 16.16 fixed point
AFFINE_DRAWS = 5  # an affine+elastic image's grid draws follow its 5 affine draws

# Defaults: shifts of up to 2 pixels; rotations up to 12 degrees, scaling +-10%, shear
# 0.15 and shifts of 1.5 pixels; Simard's elastic alpha 34 with sigma 4 on 28x28 images.
_AFFINE = {"max_rotation": 12.0, "max_scale": 0.1, "max_shear": 0.15, "max_shift": 1.5}
_ELASTIC = {"alpha": 34.0, "sigma": 4.0}
DEFAULTS = {
    "shift": {"max_shift": 2},
    "affine": _AFFINE,
    "elastic": _ELASTIC,
    "affine+elastic": {**_AFFINE, **_ELASTIC},
}


def augment_params(kind: str, side: int = 28, **overrides: float) -> np.ndarray:
    """The float32 parameter vector of ``kind`` for ``side`` x ``side`` images.

    shift: ``[max_shift]``; affine: ``[tan(max_rotation / 2), max_scale, max_shear,
    max_shift]`` (the half-angle tangent: rotation without sin/cos, see below); elastic:
    ``[step, points, amplitude]``: the grid's spacing in pixels, its points per side
    (from the top left pixel to one past the last pixel's cell) and its largest
    displacement in 1/65536 pixel; affine+elastic: the affine four, then the elastic three.

    Each grid point takes a uniform displacement in [-amplitude, amplitude) per axis.
    Bilinear interpolation of such points has a mean square of amplitude**2 / 3 * (2/3)**2,
    set equal to that of Simard's field, alpha**2 / 3 times the sum of the squared taps
    of the 2-D Gaussian (about 1 / (4 pi sigma**2)): 1.38 pixels for alpha 34, sigma 4.
    A spacing of 3 sigma then also gives about the root-mean-square slope of Simard's
    field (its mean square is that of the field over 2 sigma**2). Measured on 28 x 28:
    displacement 1.43 pixels and slope 0.20 here, 1.28 and 0.22 for Simard's field
    blurred with zeros outside the image, so strokes are stretched and bent about as
    much, not more.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown augment {kind!r}; choose one of {', '.join(KINDS)}")
    unknown = set(overrides) - set(DEFAULTS[kind])
    if unknown:
        raise ValueError(f"augment {kind!r} takes {sorted(DEFAULTS[kind])}, not {sorted(unknown)}")
    p = {**DEFAULTS[kind], **overrides}
    if kind == "shift":
        return np.array([p["max_shift"]], np.float32)
    values = []
    if "max_rotation" in p:
        half = math.tan(math.radians(p["max_rotation"]) / 2)
        values += [half, p["max_scale"], p["max_shear"], p["max_shift"]]
    if "alpha" in p:
        sigma = float(p["sigma"])
        if sigma <= 0:
            raise ValueError(f"augment {kind!r} needs sigma > 0, got {sigma:g}")
        step = max(1, round(3 * sigma))
        points = (side - 1) // step + 2  # one past the last pixel's cell
        radius = max(1, math.ceil(3 * sigma))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        taps /= taps.sum()
        rms = abs(float(p["alpha"])) * math.sqrt(1 / 3) * float(np.square(taps).sum())
        amplitude = rms * math.sqrt(3) * 1.5
        values += [step, points, min(round(amplitude * ONE), side * ONE)]
    return np.array(values, np.float32)


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


def fixed(v: np.float32) -> int:
    """A float32 as 16.16 fixed point, rounded half up (float32 arithmetic)."""
    return int(np.floor(np.float32(v) * np.float32(ONE) + np.float32(0.5)))


def affine_coefficients(u: np.ndarray, params: np.ndarray, side: int) -> tuple[int, ...]:
    """(a, b, ox, c, d, oy) in 16.16: the source of output pixel (x, y) is
    ``(a x + b y + ox, c x + d y + oy)``, from the image's first five draws ``u``."""
    f32 = np.float32
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
    a, b = fixed(s * cos), fixed(h - s * sin)
    c, d = fixed(s * sin), fixed(s * cos)
    centre = (side - 1) * ONE // 2  # rotate and scale about the image's centre
    ox = centre + fixed(tx) - (a + b) * (side - 1) // 2
    oy = centre + fixed(ty) - (c + d) * (side - 1) // 2
    return a, b, ox, c, d, oy


def grid_values(u: np.ndarray, amplitude: int) -> np.ndarray:
    """Control displacements in 16.16 from uniforms: ``floor((2u - 1) * amplitude)``."""
    k = (u.astype(np.float64) * (1 << 24)).astype(np.int64)  # the draw's 24 bits, exactly
    return ((2 * k - (1 << 24)) * amplitude) >> 24


def field(values: np.ndarray, step: int, side: int) -> np.ndarray:
    """The (side, side) displacement in 16.16 of one axis: the grid ``values`` (points,
    points), ``step`` pixels apart, interpolated along y first (a row of the grid), then
    along x, each rounded down. The weight of a cell's far point at ``j`` pixels into the
    cell is ``j * (65536 // step)`` / 65536: a step of the weight is one integer, so the
    compiled kernel adds it along a row exactly."""
    coord = np.arange(side, dtype=np.int64)
    cell, w = coord // step, (coord % step) * (ONE // step)
    top, bottom = values[cell], values[cell + 1]  # (side, points): grid rows around each y
    rows = (top * (ONE - w)[:, None] + bottom * w[:, None]) >> 16
    left, right = rows[:, cell], rows[:, cell + 1]  # (side, side)
    return (left * (ONE - w)[None, :] + right * w[None, :]) >> 16


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
        :func:`kind_code` of one of :data:`KINDS`.
    params : ndarray, float32
        :func:`augment_params` of that kind (and side).
    seed, counter : int
        The stream: the trainer passes the model seed and the epoch.
    """
    y, x = np.divmod(np.arange(side * side, dtype=np.int64), side)
    for i, row in enumerate(rows):
        key = image_key(seed, counter, int(row))
        if kind == 0:
            u = draws(key, 2)
            m = int(params[0])
            dx = int(np.floor(u[0] * np.float32(2 * m + 1))) - m
            dy = int(np.floor(u[1] * np.float32(2 * m + 1))) - m
            sx, sy = (x - dx) * ONE, (y - dy) * ONE
        else:
            a, b, ox, c, d, oy = ONE, 0, 0, 0, ONE, 0
            first = 0
            if kind in (1, 3):
                a, b, ox, c, d, oy = affine_coefficients(draws(key, AFFINE_DRAWS), params, side)
                first = AFFINE_DRAWS
            sx, sy = a * x + b * y + ox, c * x + d * y + oy
            if kind in (2, 3):
                step, points, amplitude = (int(v) for v in params[-3:])
                u = draws(key, first + 2 * points * points)[first:]
                values = grid_values(u, amplitude).reshape(2, points, points)
                sx = sx + field(values[0], step, side).ravel()
                sy = sy + field(values[1], step, side).ravel()
        out[i] = _bilinear(X[row], side, sx, sy)


def _bilinear(image: np.ndarray, side: int, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """Sample at 16.16 positions: weights in 1/256 (the top 8 bits of the fraction),
    rounded half up; pixels outside the image read as 0."""
    x0, y0 = sx >> 16, sy >> 16
    wx, wy = (sx >> 8) & 255, (sy >> 8) & 255
    img = image.reshape(side, side).astype(np.int64)

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        inside = (xx >= 0) & (xx < side) & (yy >= 0) & (yy < side)
        return np.where(inside, img[np.clip(yy, 0, side - 1), np.clip(xx, 0, side - 1)], 0)

    top = at(y0, x0) * (256 - wx) + at(y0, x0 + 1) * wx
    bottom = at(y0 + 1, x0) * (256 - wx) + at(y0 + 1, x0 + 1) * wx
    return ((top * (256 - wy) + bottom * wy + 32768) >> 16).astype(np.uint8)
