"""The first layer by tiles of input columns (training and inference), two rows at a time
with AVX-512, and the same for a ReLU layer's output read as sparse rows (inference:
:mod:`kernels.numba.infer`).

Where each row's entries of each tile of ``TILE`` input columns begin is ``tiles``
(rows, n_tiles + 1): noted while inference gathers a block's rows
(:func:`gather_tiles`), found in a batch's compressed rows for training
(:func:`row_tiles`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from kernels.numba.blas import bias_sgemm
from kernels.numba.compress import BYTE_COMPRESS, PAIRS, compress_bytes64, compress_nonzero
from kernels.numba.memory import at, vload, vstore
from kernels.numba.net import AHEAD, WIDE, prefetch_row, sparse_forward
from kernels.numba.simd import LANES, fma, vsplat

# Input columns per tile of sparse_forward_tiles (the last tile takes the rest: MNIST's 784
# in 256 + 256 + 272). Measured on one AMD EPYC (Zen 5) core, first layer of the 10,000
# test images, tiles of 128 / 192 / 256 / 400 / all 784 columns (two rows at a time in
# each), ms: 784-64 1.87 / 1.69 / 1.56 / 1.49 / 2.17, 784-256 6.90 / 6.20 / 6.24 / 6.10 /
# 8.82, 784-1024 27.7 / 28.6 / 28.9 / 29.0 / 34.4; untiled (each row reading all fan_in
# weight rows) 2.25, 8.88, 36.2. Training's first layer on one AMD EPYC (Zen 3) core:
# 256 best, 128 no better, 64 slower (README, "On a CPU without AVX-512").
TILE = 256


def compress64(cols, vals, k, X, r, c, scale):
    """compress_nonzero of X[r, c:c+64] (compiled code only)."""
    raise NotImplementedError


@overload(compress64, inline="always")
def _compress64(cols, vals, k, X, r, c, scale):
    """uint8 X into uint16 column numbers: one compress of 64 bytes (compress_bytes64;
    gather of the 10,000 test images, one AMD EPYC (Zen 5) core: 0.51 -> 0.34 ms) where the
    CPU has AVX512-VBMI2; else four of 16."""
    if BYTE_COMPRESS and X.dtype == types.uint8 and cols.dtype == types.uint16:
        return lambda cols, vals, k, X, r, c, scale: compress_bytes64(cols, vals, k, X, r, c,
                                                                      scale)  # fmt: skip

    def four(cols, vals, k, X, r, c, scale):
        for j in range(4):
            k = compress_nonzero(cols, vals, k, X, r, c + j * LANES, 1, scale)
        return k

    return four


@njit(cache=True, inline="always")
def n_tiles(n_in):
    """Tiles of a layer of n_in inputs."""
    return max(1, n_in // TILE)


@njit(cache=True, inline="always")
def gather_tiles(cols, vals, starts, tiles, n_tiles, X, r0, n, scale, tile):
    """gather_rows (64 columns at a time: cols and vals need 64 entries of room past the
    last), also noting where each row's entries of each `tile` columns begin:
    row b's entries of columns [t*tile, (t+1)*tile) at tiles[b, t]:tiles[b, t+1] (tiles
    (block, n_tiles + 1) or wider); the last tile takes every column from its start on."""
    full = X.shape[1] - X.shape[1] % LANES
    k = np.int64(0)
    for b in range(n):
        starts[b] = k
        r = r0 + b
        for t in range(n_tiles):
            tiles[b, t] = k
            last = full if t == n_tiles - 1 else min((t + 1) * tile, full)
            wide = last - (last - t * tile) % 64
            for c in range(t * tile, wide, 64):
                k = compress64(cols, vals, k, X, r, c, scale)
            for c in range(wide, last, LANES):
                k = compress_nonzero(cols, vals, k, X, r, c, 1, scale)
        for i in range(full, X.shape[1]):
            x = X[r, i]
            cols[k] = i
            vals[k] = np.float32(x) * scale
            k += x != 0
        tiles[b, n_tiles] = k
    for b in range(n, starts.shape[0]):  # rows past n empty (sparse_forward looks ahead)
        starts[b] = k


@njit(cache=True, inline="always")
def row_tiles(tiles, n_tiles, n, cols, vals, starts, rowmap, r0):
    """Where each of the n batch rows' entries (CSR row rowmap[r0 + b], columns ascending)
    of each tile of TILE columns begin, into tiles[b, :n_tiles + 1] (the last tile takes
    every column from its start on). The ranges cut each row's entries in their order,
    so the sums keep that order even were a row's columns not ascending. Rows AHEAD on
    are prefetched (rows come in shuffled order)."""
    for b in range(n):
        if r0 + b + AHEAD < rowmap.shape[0]:
            prefetch_row(cols, vals, starts, rowmap[r0 + b + AHEAD])
        r = rowmap[r0 + b]
        k, k1 = starts[r], starts[r + 1]
        tiles[b, 0] = k
        for t in range(1, n_tiles):
            end = t * TILE
            while k < k1 and cols[k] < end:
                k += 1
            tiles[b, t] = k
        tiles[b, n_tiles] = k1


@njit(cache=True, inline="always")
def gather_hidden(cols, vals, starts, tiles, nt, act, n, a0, n_in):
    """The non-zero entries of the n rows' activations act[b, a0:a0+n_in] (act: the post
    scratch as (rows, arow)), as gather_tiles gathers an input's: column numbers a0 + i
    (the caller offsets the weights by a0 rows), tiles of TILE columns from a0 (nt of
    them). Lanes past n_in are zero in act (padding), so whole vectors are taken."""
    k = np.int64(0)
    for b in range(n):
        starts[b] = k
        for t in range(nt):
            tiles[b, t] = k
            last = n_in if t == nt - 1 else (t + 1) * TILE
            for c in range(t * TILE, last, LANES):
                k = compress_nonzero(cols, vals, k, act, b, a0 + c, 1, np.float32(1.0))
        tiles[b, nt] = k
    for b in range(n, starts.shape[0]):
        starts[b] = k


@njit(cache=True, inline="always")
def sparse_hidden(pre, o0, arow, n, cols, vals, starts, tiles, rowmap, post, act, a0, n_in, wt,
                  w0, b0, s, width):  # fmt: skip
    """A layer after a ReLU, for inference: pre[b] = bias + sum over the non-zero inputs
    x_i of x_i * wt[i] (post/act: the activations, flat and as rows; about half of a
    trained ReLU layer's outputs are 0, and each one skipped saves a weight row), or
    sgemm (dense_forward's PATH_BLAS, the layer's path) for a block whose inputs are more
    than 7/8 non-zero. Inlined into forward (as a function of its own, and with
    dense_forward for the sgemm, a cold 784-256-256-10 forward compiled in ~3.4 s of CPU
    after a fit; inlined, sgemm here: ~2.9 s).

    One core, the 10,000 test images, predict_proba in all, this vs sgemm, by the share of
    non-zero inputs of the layer: 784-256-256-10 14.7 vs 19.4 ms (0.56 non-zero), 19.2 vs
    19.5 (0.86), 20.4 vs 19.3 (1.0); 784-1024-1024-10 146 vs 215 (0.52), 211 vs 218
    (0.88), 236 vs 219 (1.0)."""
    nt = n_tiles(n_in)
    gather_hidden(cols, vals, starts, tiles, nt, act, n, a0, n_in)
    if 8 * starts[n] > 7 * n * n_in:
        bias_sgemm(pre, o0, arow, n, post, a0, n_in, wt, w0, s, wt, b0, width)
        return
    base = w0 - a0 * s  # column numbers start at a0
    tiled_forward(pre, o0, arow, n, cols, vals, starts, rowmap, np.int64(0), tiles, nt, wt, base,
                  wt, b0, s, np.int64(0), width)  # fmt: skip


@njit(cache=True, inline="always")
def tiled_forward(out, o0, arow, n, cols, vals, starts, rowmap, r0, tiles, n_tiles, wt, w0, bias,
                  b0, s, qa, qb):  # fmt: skip
    """Lanes qa..qb-1 (multiples of 16) of a sparse layer: whole WIDE blocks by tiles
    (sparse_forward_tiles, ``tiles`` noting where the n rows' entries of each tile begin),
    the rest 16 lanes at a time (sparse_forward)."""
    wide = qb - (qb - qa) % WIDE
    if wide > qa:
        sparse_forward_tiles(out, o0, arow, n, cols, vals, tiles, n_tiles, wt, w0, bias, b0, s,
                             qa, wide)  # fmt: skip
    if qb > wide:
        sparse_forward(out, o0, arow, n, cols, vals, starts, rowmap, r0, wt, w0, bias, b0, s,
                       wide, qb)  # fmt: skip


@njit(cache=True)
def sparse_forward_tiles(out, o0, arow, n, cols, vals, tiles, n_tiles, wt, w0, bias, b0, s,
                         qa, qb):  # fmt: skip
    """The first layer's lanes qa..qb-1 (whole WIDE blocks) for n rows whose entries of each
    tile begin at ``tiles`` (row_tiles, gather_tiles or gather_hidden): out[b] = bias +
    sum_k vals[k] * wt[cols[k]], each lane's sum in the order of the row's entries, one
    chain from the bias, the same bits whatever the tiles; but

    - by tiles of input columns: WIDE lanes of a tile's weight rows (tile * 256 bytes)
      stay in the L1 cache while every row of the block adds its entries of that tile,
      the partial sums going through `out` (untiled, a pass reads each of the fan_in * 256
      bytes from L2 once per row: one 64-byte line per multiply-add);
    - two rows at a time where the CPU has 32 vector registers (PAIRS: AVX-512): eight
      independent chains of multiply-adds, not four. With 16 (AVX2: a 16-lane vector is
      two registers) the eight accumulators and two multipliers do not fit, and the
      spills made the pass slower than one row at a time.
    """
    for q in range(qa, qb, WIDE):
        for t in range(n_tiles):
            b = 0
            while b < n:
                if not PAIRS or b + 1 == n:
                    # Written out here, not a call to an inlined function: Numba counted
                    # references to its array arguments (and to a tuple choosing bias or
                    # out), ~11 calls with atomic adds per row and tile. One AMD EPYC (Zen
                    # 3) core, first layer of the 10,000 test images: 784-64 6.0-6.4 ms
                    # -> 4.5-5.2, 784-256 22.1-22.5 -> 17.0-18.8 (min of 20, 3 rounds).
                    oa = o0 + q + b * arow
                    if t == 0:
                        a0 = vload(bias, b0 + q)
                        a1 = vload(bias, b0 + q + 16)
                        a2 = vload(bias, b0 + q + 32)
                        a3 = vload(bias, b0 + q + 48)
                    else:
                        a0 = vload(out, oa)
                        a1 = vload(out, oa + 16)
                        a2 = vload(out, oa + 32)
                        a3 = vload(out, oa + 48)
                    for k in range(tiles[b, t], tiles[b, t + 1]):
                        x = vsplat(at(vals, k))
                        row = w0 + q + at(cols, k) * s
                        a0 = fma(x, vload(wt, row), a0)
                        a1 = fma(x, vload(wt, row + 16), a1)
                        a2 = fma(x, vload(wt, row + 32), a2)
                        a3 = fma(x, vload(wt, row + 48), a3)
                    vstore(out, oa, a0)
                    vstore(out, oa + 16, a1)
                    vstore(out, oa + 32, a2)
                    vstore(out, oa + 48, a3)
                    b += 1
                    continue
                c = b + 1
                ka, ka1 = tiles[b, t], tiles[b, t + 1]
                kc, kc1 = tiles[c, t], tiles[c, t + 1]
                oa = b * arow + o0 + q
                oc = c * arow + o0 + q
                src, stride_a, stride_c = (bias, b0 + q, b0 + q) if t == 0 else (out, oa, oc)
                a0 = vload(src, stride_a)
                a1 = vload(src, stride_a + 16)
                a2 = vload(src, stride_a + 32)
                a3 = vload(src, stride_a + 48)
                c0 = vload(src, stride_c)
                c1 = vload(src, stride_c + 16)
                c2 = vload(src, stride_c + 32)
                c3 = vload(src, stride_c + 48)
                common = min(ka1 - ka, kc1 - kc)
                for j in range(common):
                    x = vsplat(at(vals, ka + j))
                    row = w0 + q + at(cols, ka + j) * s
                    y = vsplat(at(vals, kc + j))
                    roc = w0 + q + at(cols, kc + j) * s
                    a0 = fma(x, vload(wt, row), a0)
                    c0 = fma(y, vload(wt, roc), c0)
                    a1 = fma(x, vload(wt, row + 16), a1)
                    c1 = fma(y, vload(wt, roc + 16), c1)
                    a2 = fma(x, vload(wt, row + 32), a2)
                    c2 = fma(y, vload(wt, roc + 32), c2)
                    a3 = fma(x, vload(wt, row + 48), a3)
                    c3 = fma(y, vload(wt, roc + 48), c3)
                for k in range(ka + common, ka1):
                    x = vsplat(at(vals, k))
                    row = w0 + q + at(cols, k) * s
                    a0 = fma(x, vload(wt, row), a0)
                    a1 = fma(x, vload(wt, row + 16), a1)
                    a2 = fma(x, vload(wt, row + 32), a2)
                    a3 = fma(x, vload(wt, row + 48), a3)
                for k in range(kc + common, kc1):
                    y = vsplat(at(vals, k))
                    roc = w0 + q + at(cols, k) * s
                    c0 = fma(y, vload(wt, roc), c0)
                    c1 = fma(y, vload(wt, roc + 16), c1)
                    c2 = fma(y, vload(wt, roc + 32), c2)
                    c3 = fma(y, vload(wt, roc + 48), c3)
                vstore(out, oc, c0)
                vstore(out, oc + 16, c1)
                vstore(out, oc + 32, c2)
                vstore(out, oc + 48, c3)
                vstore(out, oa, a0)
                vstore(out, oa + 16, a1)
                vstore(out, oa + 32, a2)
                vstore(out, oa + 48, a3)
                b += 2
