"""Distorted training images in compiled code: :mod:`kernels.augment_reference`, in Numba.

Same stream, same integer arithmetic, so the same bytes as the reference
(tests/test_augment.py checks it), with less work per image:

- 16 output pixels of a row at a time (:mod:`kernels.augment_simd`): their positions
  are the row's start plus multiples of the affine map's column (exact in fixed point),
  and each pixel's four source bytes are one 32-bit gather from a copy of the image with
  rows r and r + 1 interleaved;
- only output pixels that can see ink are sampled. The bounding box of each image's
  non-zero pixels is found once per fit (:func:`bounding_boxes`); a pixel whose bilinear
  footprint lies outside it is 0. Along each output row the affine part of the position
  is a line, so the span that can reach the box (widened by the largest elastic
  displacement) is solved for in integers, and the pixels outside it are left at 0.
  MNIST digits fill about a third of the image.
- the elastic field is a 4 x 4 grid of draws, not two blurred 784-pixel noise images,
  and is interpolated down the grid's columns, then along a row, 16 pixels of a grid
  cell at a time;
- the next images' bytes are prefetched: a chunk's rows are scattered over the data set.

Per image on real MNIST (CPU time, rows scattered over the data set): shift 0.16 us,
affine 0.75 us, elastic 1.7 us (before the vectors: 0.5, 2.4 and 3.9 us).

Images are split into one contiguous block per thread; each block owns its output rows
and its slice of the scratch buffer, so no thread writes where another does and nothing is
allocated per image. The kernels release the GIL, so a chunk can be distorted on one
thread while the previous one trains on another.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

import kernels.numba_cache  # noqa: F401 - keys the compiled cache before any @njit(cache=True)
from kernels.augment_reference import AFFINE_DRAWS, ONE, augment_params, kind_code
from kernels.augment_simd import LANES, pair32, ramp16, sample16
from kernels.numba.memory import prefetch

__all__ = ["augment_params", "augment_rows", "bounding_boxes", "kind_code", "scratch_for"]

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
AHEAD = 2  # images: how far ahead their bytes are fetched into the cache


def scratch_for(side: int, blocks: int = 1) -> np.ndarray:
    """Scratch for :func:`augment_rows`: per block of images (one per thread), the elastic
    grid, then (as int32 and uint8 views) the field along a row, each column's grid cell
    and weight, the grid interpolated to a row, the image being sampled (padded, rows
    paired) and the sampling box. One block: a plain loop on the calling thread."""
    return np.zeros((blocks, sum(_scratch_words(side))), np.int64)


@njit(cache=True)
def _scratch_words(side):
    """int64 words of: the grid, the field along a row, the columns' cells and weights,
    the grid along a row (int32, two of each), the padded image's pairs of rows, the box."""
    padded = (2 * (side + 2) ** 2 + 7) // 8  # uint8: pairs of rows, interleaved
    columns = (side + 1) * (side + LANES)  # int32: 2 axes, at most side + 1 grid columns
    return 2 * (side + 1) ** 2, side + LANES, side + LANES, columns, padded, 4


def bounding_boxes(X: np.ndarray, side: int) -> np.ndarray:
    """(N, 4) int64: each image's non-zero pixels lie in columns [0]..[1] and rows [2]..[3]
    (an empty image: [side, -1, side, -1])."""
    boxes = np.empty((X.shape[0], 4), np.int64)
    _boxes(boxes, X, side)
    return boxes


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
    boxes: np.ndarray | None = None,
) -> None:
    """Write a distorted copy of ``X[rows[i]]`` into ``out[i]``; see the reference.

    ``boxes``: :func:`bounding_boxes` of X (computed here when not given: pass it when
    calling again on the same X).
    """
    for name, array in (("out", out), ("X", X)):
        if not (array.ndim == 2 and array.flags.c_contiguous and array.dtype == np.uint8):
            raise ValueError(f"augment_rows needs {name} as a C-contiguous 2-D uint8 array")
    if scratch is None:
        scratch = scratch_for(side)
    if boxes is None:
        boxes = bounding_boxes(X, side)
    seed64 = np.uint64(seed % (1 << 64))
    base = np.uint64((counter << 32) % (1 << 64))
    rows = rows.astype(np.int64, copy=False)
    # One block runs without a parallel region: on a busy machine, waking a second thread
    # for every chunk costs more than the chunk's distortions (measured: 15 ms a call).
    run = _augment_serial if scratch.shape[0] == 1 else _augment_parallel
    run(out, X, rows, side, kind, params, seed64, base, scratch, boxes)


@njit(cache=True, nogil=True)
def _boxes(boxes, X, side):
    for r in range(X.shape[0]):
        x_lo, x_hi, y_lo, y_hi = side, -1, side, -1
        for y in range(side):
            first, last = side, -1
            for x in range(side):
                if X[r, y * side + x] != 0:
                    first = min(first, x)
                    last = x
            if last >= 0:
                x_lo, x_hi = min(x_lo, first), max(x_hi, last)
                y_lo, y_hi = min(y_lo, y), y
        boxes[r, 0], boxes[r, 1], boxes[r, 2], boxes[r, 3] = x_lo, x_hi, y_lo, y_hi


@njit(cache=True, inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _draw(key, d):
    z = _mix(key + np.uint64(d + 1) * GOLDEN)
    return np.float32(z >> np.uint64(40)) * np.float32(1.0 / (1 << 24))


@njit(cache=True, inline="always")
def _fixed(v):
    return np.int64(np.floor(v * np.float32(ONE) + np.float32(0.5)))


@njit(cache=True, nogil=True)
def _augment_block(out, X, rows, side, kind, params, seed, base, work, boxes, start, stop):
    """Images start..stop-1, one after another, with one block's scratch."""
    grid, field, table, along, padded, limits = _views(work, side)
    if kind == 1:  # no elastic field: the kernel adds zeros to the affine positions
        field[:] = 0
    elif kind >= 2:  # each column's grid cell, and the far point's weight x columns into one
        n = params.shape[0]
        step, points = np.int64(params[n - 3]), np.int64(params[n - 2])
        half = table.shape[0] // 2
        for x in range(half):
            cell = min(x // step, points - 2)
            table[x], table[half + x] = cell, x * (ONE // step)
    for i in range(start, stop):
        row = rows[i]
        if i + AHEAD < stop:  # (measured: 0.4 us an image of waiting for memory without)
            ahead = rows[i + AHEAD]
            for col in range(0, X.shape[1] + 63, 64):
                prefetch(X, ahead, min(col, X.shape[1] - 1))
            prefetch(boxes, ahead, 0)
        key = _mix(seed + (base + np.uint64(row) + np.uint64(1)) * GOLDEN)
        if kind == 0:
            _shift(out, i, X, row, key, side, params)
        else:
            _warp(out, i, X, row, key, side, kind, params, boxes[row], grid, field, table,
                  along, padded, limits)  # fmt: skip


@njit(cache=True, inline="always")
def _views(work, side):
    """One block's scratch (:func:`scratch_for`), cut into its parts."""
    a, b, c, d, e, _ = _scratch_words(side)
    grid, field = work[:a], work[a : a + b].view(np.int32)
    table = work[a + b : a + b + c].view(np.int32)
    along = work[a + b + c : a + b + c + d].view(np.int32)
    padded = work[a + b + c + d : a + b + c + d + e].view(np.uint8)
    return grid, field, table, along, padded, work[a + b + c + d + e :]


@njit(cache=True, nogil=True)
def _augment_serial(out, X, rows, side, kind, params, seed, base, scratch, boxes):
    _augment_block(
        out, X, rows, side, kind, params, seed, base, scratch[0], boxes, 0, rows.shape[0]
    )


@njit(cache=True, parallel=True)
def _augment_parallel(out, X, rows, side, kind, params, seed, base, scratch, boxes):
    n = rows.shape[0]
    blocks = scratch.shape[0]
    per = (n + blocks - 1) // blocks
    for b in prange(blocks):
        stop = min(n, (b + 1) * per)
        _augment_block(
            out, X, rows, side, kind, params, seed, base, scratch[b], boxes, b * per, stop
        )


@njit(cache=True)
def _shift(out, i, X, row, key, side, params):
    """Whole-pixel shifts copy bytes: bilinear weights of exactly 1 and 0 give the same."""
    m = int(params[0])
    dx = int(np.floor(_draw(key, 0) * np.float32(2 * m + 1))) - m
    dy = int(np.floor(_draw(key, 1) * np.float32(2 * m + 1))) - m
    for y in range(side):  # one write per pixel (measured: faster than zeroing, then copying)
        for x in range(side):
            sx, sy = x - dx, y - dy
            inside = 0 <= sx < side and 0 <= sy < side
            out[i, y * side + x] = X[row, sy * side + sx] if inside else np.uint8(0)


@njit(cache=True, inline="always")
def _span(s0, a, lo, hi, side):
    """The x in 0..side-1 (first, last) with lo <= s0 + a x <= hi, or a few more (first >
    last: none). In floating point: a pixel too many only costs its exact test."""
    if a == 0:
        if lo <= s0 <= hi:
            return 0, side - 1
        return 1, 0
    inv = 1.0 / a
    t1, t2 = (lo - s0) * inv, (hi - s0) * inv
    first = np.floor(max(min(t1, t2), -1.0)) - 1.0
    last = np.floor(min(max(t1, t2), float(side))) + 1.0
    return max(np.int64(first), 0), min(np.int64(last), side - 1)


@njit(cache=True)
def _warp(out, i, X, row, key, side, kind, params, box, work, field, table, along, padded,
          limits):  # fmt: skip
    """Affine and/or elastic: out[i] sampled from X[row] at the moved positions."""
    a, b, ox, c, d, oy = ONE, 0, 0, 0, ONE, 0
    first = 0
    if kind == 1 or kind == 3:
        one, two = np.float32(1), np.float32(2)
        t = (two * _draw(key, 0) - one) * params[0]
        s = one + (two * _draw(key, 1) - one) * params[1]
        h = (two * _draw(key, 2) - one) * params[2]
        tx = (two * _draw(key, 3) - one) * params[3]
        ty = (two * _draw(key, 4) - one) * params[3]
        cos = (one - t * t) / (one + t * t)
        sin = (two * t) / (one + t * t)
        a, b = _fixed(s * cos), _fixed(h - s * sin)
        c, d = _fixed(s * sin), _fixed(s * cos)
        centre = (side - 1) * ONE // 2
        ox = centre + _fixed(tx) - (a + b) * (side - 1) // 2
        oy = centre + _fixed(ty) - (c + d) * (side - 1) // 2
        first = AFFINE_DRAWS
    elastic = kind >= 2
    n = params.shape[0]
    step, points = np.int64(1), np.int64(0)
    # work: the grid's x displacements, its y ones (at most side + 1 points a side); along:
    # each column of the grid interpolated down to every row, x then y
    gy, ry, stride = (side + 1) ** 2, along.shape[0] // 2, side + LANES
    weights = table[table.shape[0] // 2 :]
    if elastic:  # the grid: x displacements at work[0:], y at work[gy:]
        step, points = np.int64(params[n - 3]), np.int64(params[n - 2])
        amplitude = np.int64(params[n - 1])
        size = points * points
        for j in range(2 * size):  # x components first, then y, as in the reference
            k = np.int64(_draw(key, first + j) * np.float32(1 << 24))
            work[j if j < size else gy + j - size] = ((2 * k - (1 << 24)) * amplitude) >> 24
        # Down each grid column, y first as in the reference: 16 rows of a cell a step
        # (a scalar loop over every row and column cost 0.4 us an image).
        for k in range(points):
            for cy in range(points - 1):  # (cell points - 2 holds the last row)
                y0, up, down = cy * step, cy * points + k, (cy + 1) * points + k
                for j in range(y0, y0 + min(step, side - y0), LANES):
                    at = k * stride + j
                    ramp16(along, at, work[up], work[down] - work[up], weights, j - y0)
                    top, bottom = work[gy + up], work[gy + down]
                    ramp16(along, ry + at, top, bottom - top, weights, j - y0)
    x_lo, x_hi, y_lo, y_hi = box[0], box[1], box[2], box[3]
    image, source = out[i], X[row]  # flat views (the loop below becomes a memset)
    for p in range(side * side):  # 0 outside the spans sampled below
        image[p] = 0
    if x_lo > x_hi:  # a blank image stays blank
        return
    # What the samples gather from: the image with a border of zeros, its rows r and r + 1
    # interleaved as row r (pixel (x, y) of the image at padded (x + 1, y + 1)), for the
    # rows a footprint inside the box can touch. Columns 0 and side + 1 stay 0.
    width = 2 * (side + 2)  # bytes a row of pairs
    for r in range(y_lo, y_hi + 2):  # padded rows r and r + 1: image rows r - 1 and r
        up = side if r >= 1 else 0  # an image row, or none
        down = side if r < side else 0
        for x in range(0, side, 32):
            count = min(32, side - x)
            pair32(padded, r * width + 2 * (x + 1), source, max(r - 1, 0) * side + x,
                   min(up, count), min(r, side - 1) * side + x, min(down, count), count)  # fmt: skip
    # Pixels whose footprint (x0..x0+1, y0..y0+1) misses the box read 0: sample those with
    # x_lo - 1 <= x0 <= x_hi and y_lo - 1 <= y0 <= y_hi only.
    lo_x, hi_x = (x_lo - 1) * ONE, (x_hi + 1) * ONE - 1
    lo_y, hi_y = (y_lo - 1) * ONE, (y_hi + 1) * ONE - 1
    limits[0], limits[1], limits[2], limits[3] = lo_x, hi_x, lo_y, hi_y
    # the elastic field along a row (zeros when there is none), int32
    xs, ys = field[: side + LANES], field[side + LANES :]
    mx, my = np.int64(0), np.int64(0)
    for y in range(side):
        if elastic:  # the largest value of the grid interpolated to this row
            mx, my = np.int64(0), np.int64(0)
            for k in range(points):
                at = k * stride + y
                mx, my = max(mx, abs(along[at])), max(my, abs(along[ry + at]))
            mx, my = mx + 1, my + 1  # interpolating rounds down: at most 1 past the grid's
        sx0, sy0 = b * y + ox, d * y + oy
        f1, l1 = _span(sx0, a, lo_x - mx, hi_x + mx, side)
        f2, l2 = _span(sy0, c, lo_y - my, hi_y + my, side)
        start, last = max(f1, f2), min(l1, l2)
        if start > last:
            continue
        if elastic:  # the field along the row: a grid cell at a time, 16 columns a step
            for cx in range(table[start], table[last] + 1):
                at = cx * stride + y
                left_x, left_y = np.int64(along[at]), np.int64(along[ry + at])
                slope_x = along[at + stride] - left_x
                slope_y = along[ry + at + stride] - left_y
                x0 = cx * step
                for j in range(x0, x0 + min(step, last + 1 - x0), LANES):
                    ramp16(xs, j, left_x, slope_x, weights, j - x0)
                    ramp16(ys, j, left_y, slope_y, weights, j - x0)
        # 16 pixels a step (lanes past the span: not stored), each gathered and weighed as
        # the reference's _bilinear does, 0 outside the box
        o = (i * side + y) * side
        for x in range(start, last + 1, LANES):
            count = min(LANES, last + 1 - x)
            sample16(out, o + x, padded, width, sx0, a, sy0, c, xs, ys, x, limits, count)
