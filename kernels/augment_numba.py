"""Distorted training images in compiled code: :mod:`kernels.augment_reference`, in Numba.

Same stream, same integer arithmetic, so the same bytes as the reference
(tests/test_augment.py checks it), with less work per image:

- 16 output pixels of a row at a time (:mod:`kernels.augment_simd`): their positions
  are the row's start plus multiples of the affine map's column (exact in fixed point),
  and each pixel's four source bytes are read at once (:mod:`kernels.augment_fetch`):
  by byte permutes from the image itself on AVX-512 VBMI hosts when its ink keeps a pixel
  from every border (98.6% of MNIST), else one 32-bit gather from a copy of the image
  with rows r and r + 1 interleaved;
- only output pixels that can see ink are sampled. The bounding box of each image's
  non-zero pixels is found once per fit (:func:`bounding_boxes`); a pixel whose bilinear
  footprint lies outside it is 0. Affine: along each output row the position is a line,
  so the span that can reach the box is solved for, and the pixels outside it are left
  at 0 (MNIST digits fill about a third of the image). Elastic: one rectangle of output
  pixels per image, the box widened by the grid's largest displacement and mapped back
  through the affine part, every row of it alike (per-row spans and maxima cost more in
  branches than the lanes they save);
- the elastic field is a 4 x 4 grid of draws, not two blurred 784-pixel noise images,
  and is computed in the sampling lanes themselves (:func:`kernels.augment_simd.sample16g`):
  the grid's rows around the output row interpolated down to it (once a row), then each
  lane's value picked by its grid column (variable permutes) and interpolated along x,
  in 32-bit lanes with the reference's integer rounding; no field is stored;
- the next images' bytes are prefetched: a chunk's rows are scattered over the data set;
- on request (``sparse``), each image's non-zero pixels are written as the compressed
  sparse rows the numba backend's first layer reads, right after the image, while it is
  in the cache: the trainer trains on them without scanning the chunk again (and with
  ``out=None`` no bytes are written at all: the image is made in the scratch).

Per image on real MNIST (CPU time, min of 60 rounds of 500 rows scattered over the data
set, with the sparse rows; 3 rounds interleaved with the previous kernel, loaded machine):
affine 0.73-0.76 us (was 0.79-0.82), elastic 0.84-0.86 us (was 0.95-0.99; 1.53 us with
the field interpolated per row into memory; 3.9 us before the vectors), shift 0.23 us.

Images are split into one contiguous block per thread; each block owns its output rows
and its slice of the scratch buffer, so no thread writes where another does and nothing is
allocated per image. The kernels release the GIL, so a chunk can be distorted on one
thread while the previous one trains on another.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

import kernels.numba_cache  # noqa: F401 - keys the compiled cache before any @njit(cache=True)
from kernels.augment_fetch import VBMI, WINDOWS, pair32
from kernels.augment_geometry import bounding_boxes, reach, span
from kernels.augment_reference import AFFINE_DRAWS, ONE, augment_params, kind_code
from kernels.augment_simd import LANES, ramp16, sample16, sample16e, sample16g
from kernels.numba.memory import prefetch
from kernels.numba.work import INV255, column_dtype, compress_row

__all__ = ["augment_params", "augment_rows", "bounding_boxes", "kind_code", "scratch_for"]

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
AHEAD = 2  # images: how far ahead their bytes are fetched into the cache
DIRECT = VBMI  # interior images are read in place by byte permutes (augment_fetch)


def scratch_for(side: int, blocks: int = 1) -> np.ndarray:
    """Scratch for :func:`augment_rows`: per block of images (one per thread), the elastic
    grid, then (as int32 and uint8 views) the field along a row, each column's grid cell
    and weight, the grid interpolated to a row, the image being sampled (padded, rows
    paired), the sampling box and the image being made when ``out`` is None. One block: a
    plain loop on the calling thread."""
    return np.zeros((blocks, sum(_scratch_words(side))), np.int64)


@njit(cache=True)
def _scratch_words(side):
    """int64 words of: the grid, the field along a row, the columns' cells and weights,
    the grid along a row (int32, two of each), the padded image's pairs of rows, the box,
    the image being made (without ``out``)."""
    padded = (2 * (side + 2) ** 2 + 7) // 8  # uint8: pairs of rows, interleaved
    image = (side * side + 7) // 8  # uint8: the image being made, when out is None
    # int32: 2 axes, at most side + 1 grid columns (or the grid itself, 16 lanes of room)
    columns = max((side + 1) * (side + LANES), 2 * (LANES + 1) * LANES)
    return 2 * (side + 1) ** 2, side + LANES, side + LANES, columns, padded, 4, image


def augment_rows(
    out: np.ndarray | None,
    X: np.ndarray,
    rows: np.ndarray,
    side: int,
    kind: int,
    params: np.ndarray,
    seed: int,
    counter: int,
    scratch: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
    sparse: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> None:
    """Write a distorted copy of ``X[rows[i]]`` into ``out[i]``; see the reference.

    ``boxes``: :func:`bounding_boxes` of X (computed here when not given: pass it when
    calling again on the same X).

    ``sparse``: ``(cols, vals, starts)``, also written: each image's non-zero pixels as
    the compressed sparse rows the numba backend's first layer reads
    (:func:`kernels.numba.work.sparse_rows` of ``out``, the same entries), made while the
    image is in the cache, so the trainer need not scan the chunk again. Image i's
    entries go to ``cols/vals[starts[i]:starts[i + 1]]``, from the ``starts[0]`` the
    caller sets; cols (uint16, or uint32 past 65,536 pixels) are pixel numbers, vals
    (float32) pixel / 255. cols and vals need room for ``starts[0] + len(rows) * side**2
    + 16`` entries (16 past the last, which the vector compress writes); starts has
    ``len(rows) + 1``. Only with a one-block scratch (one thread). With ``sparse``, out
    may be None: only the sparse rows are written (each image is made in the scratch,
    where it stays in the cache, and no chunk of bytes is written that no one reads).
    """
    if out is None and sparse is None:
        raise ValueError("augment_rows needs out, or sparse rows to write instead")
    for name, array in (("out", out), ("X", X)):
        if array is None:
            continue
        if not (array.ndim == 2 and array.flags.c_contiguous and array.dtype == np.uint8):
            raise ValueError(f"augment_rows needs {name} as a C-contiguous 2-D uint8 array")
    cols = vals = starts = None
    if sparse is not None:
        cols, vals, starts = sparse
        _check_sparse(cols, vals, starts, len(rows), side, scratch)
    if scratch is None:
        scratch = scratch_for(side)
    if boxes is None:
        boxes = bounding_boxes(X, side)
    seed64 = np.uint64(seed % (1 << 64))
    base = np.uint64((counter << 32) % (1 << 64))
    rows = rows.astype(np.int64, copy=False)
    # One block runs without a parallel region: on a busy machine, waking a second thread
    # for every chunk costs more than the chunk's distortions (measured: 15 ms a call).
    if scratch.shape[0] == 1:
        _augment_serial(out, X, rows, side, kind, params, seed64, base, scratch, boxes, cols,
                        vals, starts)  # fmt: skip
    else:
        _augment_parallel(out, X, rows, side, kind, params, seed64, base, scratch, boxes)


def _check_sparse(cols, vals, starts, n, side, scratch):
    """One line naming what is wrong with ``sparse`` (compiled code writes by index)."""
    if scratch is not None and scratch.shape[0] != 1:
        raise ValueError("augment_rows writes sparse rows with a one-block scratch only")
    wide = column_dtype(side * side)
    for name, array, dtype in (("cols", cols, wide), ("vals", vals, np.float32),
                               ("starts", starts, np.int64)):  # fmt: skip
        if not (isinstance(array, np.ndarray) and array.ndim == 1 and array.dtype == dtype
                and array.flags.c_contiguous):  # fmt: skip
            raise ValueError(
                f"augment_rows needs sparse {name} as a contiguous {np.dtype(dtype)} vector"
            )
    if len(starts) != n + 1:
        raise ValueError(f"augment_rows needs sparse starts of {n + 1} entries, got {len(starts)}")
    room = int(starts[0]) + n * side * side + 16
    if starts[0] < 0 or min(len(cols), len(vals)) < room:
        raise ValueError(f"augment_rows needs sparse cols and vals of at least {room} entries")


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
def _augment_block(out, X, rows, side, kind, params, seed, base, work, boxes, start, stop,
                   cols, vals, starts):  # fmt: skip
    """Images start..stop-1, one after another, with one block's scratch; with cols (not
    None), each image's non-zero pixels appended to cols/vals from starts[start]."""
    grid, field, table, along, padded, limits, image = _views(work, side)
    if out is None:  # only the sparse rows: each image made in the scratch, hot in the cache
        dst = image
    else:
        dst = out
    full = dst.shape[1] - dst.shape[1] % LANES  # columns the vector compress takes
    k = 0 if cols is None else starts[start]
    if kind == 1:  # no elastic field: the kernel adds zeros to the affine positions
        field[:] = 0
    elif kind >= 2:  # each column's grid cell, and the weight of the cell's far point there
        n = params.shape[0]
        step, points = np.int64(params[n - 3]), np.int64(params[n - 2])
        half = table.shape[0] // 2
        for x in range(half):
            cell = min(x // step, points - 2)
            table[x], table[half + x] = cell, (x - cell * step) * (ONE // step)
    for i in range(start, stop):
        row = rows[i]
        if i + AHEAD < stop:  # (measured: 0.4 us an image of waiting for memory without)
            ahead = rows[i + AHEAD]
            for col in range(0, X.shape[1] + 63, 64):
                prefetch(X, ahead, min(col, X.shape[1] - 1))
            prefetch(boxes, ahead, 0)
        key = _mix(seed + (base + np.uint64(row) + np.uint64(1)) * GOLDEN)
        at = i
        if out is None:
            at = 0
        if kind == 0:
            _shift(dst, at, X, row, key, side, params)
        else:
            _warp(dst, at, X, row, key, side, kind, params, boxes[row], grid, field, table,
                  along, padded, limits)  # fmt: skip
        if cols is not None:  # the image's entries, as the trainer's sparse_rows makes them
            k = compress_row(cols, vals, k, dst, at, full, INV255)
            starts[i + 1] = k


@njit(cache=True, inline="always")
def _direct_side(side):
    """Whether the windows fit in an image of this side (a row a window at least)."""
    return side <= 63 and side * side >= 128 + (127 - side) * (WINDOWS - 1)


@njit(cache=True, inline="always")
def _views(work, side):
    """One block's scratch (:func:`scratch_for`), cut into its parts."""
    a, b, c, d, e, f, _ = _scratch_words(side)
    grid, field = work[:a], work[a : a + b].view(np.int32)
    table = work[a + b : a + b + c].view(np.int32)
    along = work[a + b + c : a + b + c + d].view(np.int32)
    padded = work[a + b + c + d : a + b + c + d + e].view(np.uint8)
    limits = work[a + b + c + d + e : a + b + c + d + e + f]
    image = work[a + b + c + d + e + f :].view(np.uint8)[: side * side].reshape((1, side * side))
    return grid, field, table, along, padded, limits, image


@njit(cache=True, nogil=True)
def _augment_serial(out, X, rows, side, kind, params, seed, base, scratch, boxes, cols, vals,
                    starts):  # fmt: skip
    _augment_block(out, X, rows, side, kind, params, seed, base, scratch[0], boxes, 0,
                   rows.shape[0], cols, vals, starts)  # fmt: skip


@njit(cache=True, parallel=True)
def _augment_parallel(out, X, rows, side, kind, params, seed, base, scratch, boxes):
    n = rows.shape[0]
    blocks = scratch.shape[0]
    per = (n + blocks - 1) // blocks
    for b in prange(blocks):
        stop = min(n, (b + 1) * per)
        _augment_block(out, X, rows, side, kind, params, seed, base, scratch[b], boxes,
                       b * per, stop, None, None, None)  # fmt: skip


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
    cells, weights = table[: table.shape[0] // 2], table[table.shape[0] // 2 :]
    mx, my = np.int64(0), np.int64(0)  # the largest displacement of the grid, x and y
    grid_rows, g2 = False, np.int64(0)
    if elastic:  # the grid: x displacements at work[0:], y at work[gy:]
        step, points = np.int64(params[n - 3]), np.int64(params[n - 2])
        amplitude = np.int64(params[n - 1])
        size = points * points
        for axis in range(2):  # x components first, then y, as in the reference
            at0, d0 = axis * gy, first + axis * size
            for j in range(size):  # (branch-free: LLVM draws 8 at a time)
                k = np.int64(_draw(key, d0 + j) * np.float32(1 << 24))
                work[at0 + j] = ((2 * k - (1 << 24)) * amplitude) >> 24
        for j in range(size):
            mx, my = max(mx, abs(work[j])), max(my, abs(work[gy + j]))
        # Interpolating rounds down between two values: the field never passes the
        # grid's largest value (one more for safety; a wider span only costs tests).
        mx, my = mx + 1, my + 1
        # Up to 16 points a side, the lanes interpolate the grid's rows themselves
        # (sample16g): the grid as int32 rows in `along`, x then y from g2.
        grid_rows, g2 = points <= LANES, points * points + LANES
        if grid_rows:
            for j in range(size):
                along[j], along[g2 + j] = work[j], work[gy + j]
        # Else down each grid column, y first as in the reference: 16 rows of a cell a
        # step (a scalar loop over every row and column cost 0.4 us an image).
        for k in range(0 if grid_rows else points):
            for cy in range(points - 1):  # (cell points - 2 holds the last row)
                y0, up, down = cy * step, cy * points + k, (cy + 1) * points + k
                for j in range(y0, y0 + min(step, side - y0), LANES):
                    at = k * stride + j
                    ramp16(along, at, work[up], work[down] - work[up], weights, j)
                    top, bottom = work[gy + up], work[gy + down]
                    ramp16(along, ry + at, top, bottom - top, weights, j)
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
    # Ink a pixel away from every border: the samples read the image itself (negative
    # width), by byte permutes, no footprint that can see ink leaving it (augment_fetch).
    if DIRECT and min(x_lo, y_lo) >= 1 and max(x_hi, y_hi) <= side - 2 and _direct_side(side):
        width, padded = -side, source
    pairs = y_hi + 2 if width > 0 else y_lo  # (none for the image itself)
    for r in range(y_lo, pairs):  # padded rows r and r + 1: image rows r - 1 and r
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
    if elastic:  # every row alike: no per-row spans, no per-row branches
        x0, x1, y0, y1 = reach(a, b, ox, c, d, oy, lo_x - mx, hi_x + mx, lo_y - my,
                                hi_y + my, side)  # fmt: skip
        blocks = (x1 - x0 + LANES) // LANES
        for y in range(y0, y1 + 1):
            sx0, sy0 = b * y + ox, d * y + oy
            o = (i * side + y) * side
            top, wy = cells[y] * points, weights[y]  # the grid rows around y, and its weight
            if grid_rows:  # the field computed in the lanes, from the grid
                sample16g(out, o, padded, width, sx0, a, sy0, c, along, top, points, g2, wy,
                          cells, weights, x0, blocks, side, limits)  # fmt: skip
                continue
            for k in range(blocks):  # from the grid's columns interpolated down to every row
                x = x0 + k * LANES
                count = min(LANES, side - x)
                sample16e(out, o + x, padded, width, sx0, a, sy0, c, along, y, stride, ry,
                          cells, weights, x, cells[x], cells[x + count - 1], limits,
                          count)  # fmt: skip
        return
    # the affine map's column steps, inverted once (the spans below solve for x)
    inv_a, inv_c = 1.0 / a if a != 0 else 0.0, 1.0 / c if c != 0 else 0.0
    zeros = field[: side + LANES]  # no elastic field: its lanes add zeros
    _, _, y0, y1 = reach(a, b, ox, c, d, oy, lo_x, hi_x, lo_y, hi_y, side)  # (rows with spans)
    for y in range(y0, y1 + 1):
        sx0, sy0 = b * y + ox, d * y + oy
        f1, l1 = span(sx0, a, inv_a, lo_x, hi_x, side)
        f2, l2 = span(sy0, c, inv_c, lo_y, hi_y, side)
        start, last = max(f1, f2), min(l1, l2)
        # 16 pixels a step (lanes past the span: not stored), each gathered and weighed as
        # the reference's _bilinear does, 0 outside the box
        o = (i * side + y) * side
        for x in range(start, last + 1, LANES):
            count = min(LANES, last + 1 - x)
            sample16(out, o + x, padded, width, sx0, a, sy0, c, zeros, zeros, x, limits, count)
