"""Distorted training images in compiled code: :mod:`kernels.augment_reference`, in Numba.

Same stream, same float32 arithmetic in the same order, so the same bytes as the
reference (tests/test_augment.py checks it). Images are split into one contiguous block
per thread; each block owns its output rows and its slice of the scratch buffer, so no
thread writes where another does and nothing is allocated per image.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

import kernels.numba_cache  # noqa: F401 - keys the compiled cache before any @njit(cache=True)
from kernels.augment_reference import augment_params, kind_code

__all__ = ["augment_params", "augment_rows", "kind_code", "scratch_for"]

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


def scratch_for(side: int, blocks: int = 1) -> np.ndarray:
    """Scratch for :func:`augment_rows`: per block of images (one per thread), the
    coordinates and the blur passes. One block: a plain loop on the calling thread."""
    return np.zeros((blocks, 4, side * side), np.float32)


def augment_rows(
    out: np.ndarray,
    X: np.ndarray,
    rows: np.ndarray,
    side: int,
    kind: int,
    params: np.ndarray,
    seed: int,
    counter: int,
    scratch: np.ndarray | None = None,
) -> None:
    """Write a distorted copy of ``X[rows[i]]`` into ``out[i]``; see the reference."""
    if scratch is None:
        scratch = scratch_for(side)
    seed64 = np.uint64(seed % (1 << 64))
    base = np.uint64((counter << 32) % (1 << 64))
    rows = rows.astype(np.int64, copy=False)
    # One block runs without a parallel region: on a busy machine, waking a second thread
    # for every chunk costs more than the chunk's distortions (measured: 15 ms a call).
    run = _augment_serial if scratch.shape[0] == 1 else _augment_parallel
    run(out, X, rows, side, kind, params, seed64, base, scratch)


@njit(cache=True, inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _draw(key, d):
    z = _mix(key + np.uint64(d + 1) * GOLDEN)
    return np.float32(z >> np.uint64(40)) * np.float32(1.0 / (1 << 24))


@njit(cache=True)
def _augment_block(out, X, rows, side, kind, params, seed, base, work, start, stop):
    """Images start..stop-1, one after another, with one block's scratch."""
    for i in range(start, stop):
        row = rows[i]
        key = _mix(seed + (base + np.uint64(row) + np.uint64(1)) * GOLDEN)
        if kind == 0:
            _shift(out, i, X, row, key, side, params)
        else:
            _coordinates(work, key, side, kind, params)
            _bilinear(out, i, X, row, side, work[0], work[1])


@njit(cache=True)
def _augment_serial(out, X, rows, side, kind, params, seed, base, scratch):
    _augment_block(out, X, rows, side, kind, params, seed, base, scratch[0], 0, rows.shape[0])


@njit(cache=True, parallel=True)
def _augment_parallel(out, X, rows, side, kind, params, seed, base, scratch):
    n = rows.shape[0]
    blocks = scratch.shape[0]
    per = (n + blocks - 1) // blocks
    for b in prange(blocks):
        stop = min(n, (b + 1) * per)
        _augment_block(out, X, rows, side, kind, params, seed, base, scratch[b], b * per, stop)


@njit(cache=True)
def _shift(out, i, X, row, key, side, params):
    """Whole-pixel shifts copy bytes: bilinear weights of exactly 1 and 0 give the same."""
    m = int(params[0])
    dx = int(math.floor(_draw(key, 0) * np.float32(2 * m + 1))) - m
    dy = int(math.floor(_draw(key, 1) * np.float32(2 * m + 1))) - m
    for y in range(side):
        for x in range(side):
            sx, sy = x - dx, y - dy
            inside = 0 <= sx < side and 0 <= sy < side
            out[i, y * side + x] = X[row, sy * side + sx] if inside else np.uint8(0)


@njit(cache=True)
def _coordinates(work, key, side, kind, params):
    """Source coordinates of every output pixel into work[0] (x) and work[1] (y)."""
    one, two = np.float32(1), np.float32(2)
    c = np.float32((side - 1) / 2)
    sx, sy = work[0], work[1]
    if kind == 1:
        t = (two * _draw(key, 0) - one) * params[0]
        s = one + (two * _draw(key, 1) - one) * params[1]
        h = (two * _draw(key, 2) - one) * params[2]
        tx = (two * _draw(key, 3) - one) * params[3]
        ty = (two * _draw(key, 4) - one) * params[3]
        cos = (one - t * t) / (one + t * t)
        sin = (two * t) / (one + t * t)
        a, b = s * cos, h - s * sin
        cc, d = s * sin, s * cos
        for y in range(side):  # nested loops: no integer division per pixel
            ry = np.float32(y) - c
            for x in range(side):
                rx = np.float32(x) - c
                sx[y * side + x] = ((c + a * rx) + b * ry) + tx
                sy[y * side + x] = ((c + cc * rx) + d * ry) + ty
    else:
        pix = side * side
        raw_x, raw_y = work[2], work[3]
        for p in range(pix):  # the field: x components first, then y, as in the reference
            raw_x[p] = two * _draw(key, p) - one
            raw_y[p] = two * _draw(key, pix + p) - one
        alpha, radius = params[0], int(params[1])
        _blur(sx, raw_x, side, params, radius, 1)  # along x, then along y
        _blur(raw_x, sx, side, params, radius, side)
        _blur(sy, raw_y, side, params, radius, 1)
        _blur(raw_y, sy, side, params, radius, side)
        for y in range(side):
            for x in range(side):
                p = y * side + x
                sx[p] = np.float32(x) + alpha * raw_x[p]
                sy[p] = np.float32(y) + alpha * raw_y[p]


@njit(cache=True)
def _blur(dst, src, side, params, radius, stride):
    """Gaussian along one axis (stride 1: x, stride side: y), zero outside, taps from -radius.

    Tap by tap over the whole image: each pixel still adds its taps in the reference's
    order (the skipped ones would add exactly +0), and the inner loop runs along a row.
    """
    for p in range(side * side):
        dst[p] = np.float32(0)
    for k in range(-radius, radius + 1):
        w = params[2 + abs(k)]
        for y in range(side):
            lo, hi = 0, side  # the x whose neighbour (x + k or y + k) is inside
            if stride == 1:
                lo, hi = max(0, -k), min(side, side - k)
            elif not 0 <= y + k < side:
                continue
            row = y * side
            for x in range(lo, hi):
                dst[row + x] = dst[row + x] + w * src[row + x + k * stride]


@njit(cache=True)
def _bilinear(out, i, X, row, side, sx, sy):
    one, zero, half = np.float32(1), np.float32(0), np.float32(0.5)
    top = np.float32(255)
    for p in range(side * side):
        fx0, fy0 = np.floor(sx[p]), np.floor(sy[p])  # float32 floors: no libm call
        fx, fy = sx[p] - fx0, sy[p] - fy0
        x0, y0 = int(fx0), int(fy0)
        if x0 < -1 or x0 >= side or y0 < -1 or y0 >= side:  # all four neighbours outside
            out[i, p] = 0
            continue
        p00, p01, p10, p11 = zero, zero, zero, zero
        if 0 <= y0:
            if 0 <= x0:
                p00 = np.float32(X[row, y0 * side + x0])
            if x0 + 1 < side:
                p01 = np.float32(X[row, y0 * side + x0 + 1])
        if y0 + 1 < side:
            if 0 <= x0:
                p10 = np.float32(X[row, (y0 + 1) * side + x0])
            if x0 + 1 < side:
                p11 = np.float32(X[row, (y0 + 1) * side + x0 + 1])
        v = ((one - fx) * (one - fy)) * p00
        v = v + (fx * (one - fy)) * p01
        v = v + ((one - fx) * fy) * p10
        v = v + (fx * fy) * p11
        v = np.floor(v + half)
        out[i, p] = np.uint8(min(max(v, zero), top))
