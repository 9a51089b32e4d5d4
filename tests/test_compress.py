"""The gather of a block's non-zero entries (kernels.numba.compress, tiles.gather_tiles,
work.compress_row) against NumPy's ``nonzero``, on the packing this CPU compiles (AVX-512's
compress, AVX2's table and permute, or LLVM's expansion: tests/test_portable_targets.py
runs the others in child processes)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from kernels.numba.compress import compress_nonzero
from kernels.numba.tiles import TILE, gather_tiles, n_tiles


@njit(cache=True)
def _compress_row(cols, vals, X, r, step, scale):
    k = 0
    for start in range(0, X.shape[1] - X.shape[1] % 16, 16):
        k = compress_nonzero(cols, vals, k, X, r, start, step, scale)
    return k


def _rows(dtype, density, seed, n=7, width=784):
    rng = np.random.default_rng(seed)
    X = (rng.random((n, width)) < density) * rng.integers(1, 256, (n, width))
    X = X.astype(np.float32) / np.float32(255) if dtype == "float32" else X.astype(np.uint8)
    if dtype == "float32":  # NaN and infinity are entries; -0.0 is not
        X[1, 3], X[2, 4], X[3, 5], X[4, 6] = np.nan, np.inf, -np.inf, -0.0
    X[5] = 0  # an empty row
    X[6, :-1] = X[6, 1:] = 1  # a full one
    return X


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
@pytest.mark.parametrize("cols_dtype", [np.uint16, np.uint32])
@pytest.mark.parametrize("step", [1, 3])
@pytest.mark.parametrize("density", [0.02, 0.2, 0.6])
def test_compress_keeps_the_nonzero_entries_in_order(dtype, cols_dtype, step, density):
    X = _rows(dtype, density, seed=int(density * 100) + step)
    scale = np.float32(0.5)
    for r in range(len(X)):
        cols = np.full(X.shape[1] + 16, 7777, cols_dtype)
        vals = np.full(X.shape[1] + 16, -1.0, np.float32)
        k = _compress_row(cols, vals, X, r, step, scale)
        (where,) = np.nonzero(X[r])
        assert k == len(where)
        np.testing.assert_array_equal(cols[:k], (where * step).astype(cols_dtype))
        expect = X[r, where].astype(np.float32) * scale
        np.testing.assert_array_equal(vals[:k], expect)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
@pytest.mark.parametrize("width", [784, 100, 17, 1030])
def test_gather_tiles_matches_nonzero(dtype, width):
    X = _rows(dtype, 0.2, seed=width, n=9, width=width)
    X[7] = X[8] = 0
    X[8, -1] = 9  # the only entry past the last whole vector
    nt = n_tiles(width)
    scale = np.float32(1 / 255) if dtype == "uint8" else np.float32(1)
    cols = np.zeros(len(X) * width + 64, np.uint16)
    vals = np.zeros(len(X) * width + 64, np.float32)
    starts = np.zeros(len(X) + 3, np.int64)
    tiles = np.zeros((len(X), nt + 1), np.int64)
    gather_tiles(cols, vals, starts, tiles, nt, X, 0, len(X), scale, TILE)
    for b in range(len(X)):
        (where,) = np.nonzero(X[b])
        got = slice(starts[b], tiles[b, nt])
        np.testing.assert_array_equal(cols[got], where)
        np.testing.assert_array_equal(vals[got], X[b, where].astype(np.float32) * scale)
        for t in range(nt):  # each tile's entries begin where its columns begin
            first = np.searchsorted(where, t * TILE)
            assert tiles[b, t] == starts[b] + first
    assert (starts[len(X) :] == tiles[len(X) - 1, nt]).all()
