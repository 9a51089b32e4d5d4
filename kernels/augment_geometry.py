"""Where the distortion kernels need to look: each image's ink, and the output pixels that
can see it (:mod:`kernels.augment_numba`'s geometry, plain Numba)."""

from __future__ import annotations

import numpy as np
from numba import njit

import kernels.numba_cache  # noqa: F401 - keys the compiled cache before any @njit(cache=True)
from kernels.augment_reference import ONE

__all__ = ["bounding_boxes"]


def bounding_boxes(X: np.ndarray, side: int) -> np.ndarray:
    """(N, 4) int64: each image's non-zero pixels lie in columns [0]..[1] and rows [2]..[3]
    (an empty image: [side, -1, side, -1])."""
    boxes = np.empty((X.shape[0], 4), np.int64)
    _boxes(boxes, X, side)
    return boxes


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
def span(s0, a, inv, lo, hi, side):
    """The x in 0..side-1 (first, last) with lo <= s0 + a x <= hi, or a few more (first >
    last: none); inv is 1 / a (a != 0). In floating point: a pixel too many only costs
    its exact test."""
    if a == 0:
        if lo <= s0 <= hi:
            return 0, side - 1
        return 1, 0
    t1, t2 = (lo - s0) * inv, (hi - s0) * inv
    first = np.floor(max(min(t1, t2), -1.0)) - 1.0
    last = np.floor(min(max(t1, t2), float(side))) + 1.0
    return max(np.int64(first), 0), min(np.int64(last), side - 1)


@njit(cache=True, inline="always")
def reach(a, b, ox, c, d, oy, lo_x, hi_x, lo_y, hi_y, side):
    """(x0, x1, y0, y1): a rectangle of output pixels holding every (x, y) whose position
    (a x + b y + ox, c x + d y + oy) can lie in [lo_x, hi_x] x [lo_y, hi_y] (16.16), or
    a few more (x0 > x1 or y0 > y1: none): the box's corners mapped back, widened by a
    pixel for the floating point. A map that (nearly) flattens the plane: every pixel."""
    det = float(a) * float(d) - float(b) * float(c)
    if abs(det) < 1e-6 * ONE * ONE:
        return 0, side - 1, 0, side - 1
    x_min, x_max, y_min, y_max = np.inf, -np.inf, np.inf, -np.inf
    for k in range(4):
        u = float(lo_x if k % 2 == 0 else hi_x) - ox
        v = float(lo_y if k < 2 else hi_y) - oy
        x, y = (d * u - b * v) / det, (a * v - c * u) / det
        x_min, x_max = min(x_min, x), max(x_max, x)
        y_min, y_max = min(y_min, y), max(y_max, y)
    x0 = max(np.int64(np.floor(max(x_min, -2.0))) - 1, 0)
    x1 = min(np.int64(np.floor(min(x_max, side + 1.0))) + 1, side - 1)
    y0 = max(np.int64(np.floor(max(y_min, -2.0))) - 1, 0)
    y1 = min(np.int64(np.floor(min(y_max, side + 1.0))) + 1, side - 1)
    return x0, x1, y0, y1
