"""The numba backend's passes that do not train: the network's outputs for many rows, and
the loss and gradient over all rows (the gradient checks' ``loss_and_grads``).

Same arguments as the training loops (:mod:`kernels.numba.train`): ``layers``, ``net``
records, :class:`~kernels.numba.codes.Inputs` and :class:`~kernels.numba.codes.Targets`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.numba.codes import SOFTMAX, Inputs
from kernels.numba.memory import at, compress_nonzero, fetch_add, vload, vstore, vstore_first
from kernels.numba.net import ONE, WIDE, ZERO
from kernels.numba.passes import PRANGE_ONLY, net_forward, row_scratch, rows_grad, scales
from kernels.numba.simd import (
    LANES,
    fma,
    vadd,
    vexp,
    vfirst,
    vhsum,
    vmaxlane,
    vmul,
    vsplat,
    vsub,
    vsum,
    vzero,
)

NEG_INF = np.float32(-np.inf)
# Input columns per tile of sparse_forward_tiles (the last tile takes the rest: MNIST's 784
# in 256 + 256 + 272). Measured on one AMD EPYC (Zen 5) core, first layer of the 10,000
# test images, tiles of 128 / 192 / 256 / 400 / all 784 columns (two rows at a time in
# each), ms: 784-64 1.87 / 1.69 / 1.56 / 1.49 / 2.17, 784-256 6.90 / 6.20 / 6.24 / 6.10 /
# 8.82, 784-1024 27.7 / 28.6 / 28.9 / 29.0 / 34.4; sparse_forward 2.25, 8.88, 36.2.
TILE = 256


@njit(cache=True, inline="always")
def outputs(out, start, n, pre, post, layers, net):
    """out[start*m : (start+n)*m] = the last layer's m outputs of the block's n rows (flat
    (N, m) rows; softmax taken)."""
    last = layers[layers.shape[0] - 1]
    o0, m, arow = last.aoff, last.n_out, net.arow
    if net.out_act == SOFTMAX:
        softmax_out(out, start * m, n, pre, post, o0, arow, m)
        return
    for b in range(n):
        for q in range(0, m, LANES):
            vstore_first(out, (start + b) * m + q, vload(post, b * arow + o0 + q),
                         min(m - q, LANES))  # fmt: skip


@njit(cache=True)
def softmax_out(out, at, n, logits, buf, o0, arow, m):
    """out[at + b*m + c] = softmax(logits[b])[c], c < m, for n rows, the row maximum
    subtracted; buf: room for a row's exponentials when m > 16 (the post scratch).

    Inference's own softmax: no log-sum-exp (training's head needs it, this does not), the
    lanes past m masked rather than zeroed one by one, the sum a tree, and the outputs
    written straight into the (N, m) rows (masked stores): ~1/4 of softmax() + copy's time
    for 10 classes (784-16-16-10, ~0.3 ms of ~2 ms a pass on one core before).
    """
    for b in range(n):
        row = b * arow + o0
        top = vmaxlane(vfirst(vload(logits, row), m, NEG_INF))
        for q in range(LANES, m, LANES):
            top = max(top, vmaxlane(vfirst(vload(logits, row + q), m - q, NEG_INF)))
        shift = vsplat(top)
        if m <= LANES:  # one vector: the exponentials stay in a register
            e = vfirst(vexp(vsub(vload(logits, row), shift)), m, ZERO)
            vstore_first(out, at + b * m, vmul(vsplat(ONE / vhsum(e)), e), m)
            continue
        total = ZERO
        for q in range(0, m, LANES):
            e = vfirst(vexp(vsub(vload(logits, row + q), shift)), m - q, ZERO)
            vstore(buf, row + q, e)
            total += vhsum(e)
        inv = vsplat(ONE / total)
        for q in range(0, m, LANES):
            vstore_first(out, at + b * m + q, vmul(inv, vload(buf, row + q)), min(m - q, LANES))


@njit(cache=True, inline="always")
def first_lanes(layers):
    """The first layer's lanes forward computes: its outputs, rounded up to 16. The lanes
    past them that keep its weight rows off multiples of 1 KB are zero (row_scratch's
    zeros, never written) and nothing reads them (256 wide: 16 of 272 lanes, done 16 at a
    time, ~7% of the first layer's time on one core)."""
    return (layers[0].n_out + LANES - 1) // LANES * LANES


@njit(cache=True, nogil=True)
def forward_rows(out, work, inputs, layers, net, claims, block):
    """out = the network's outputs for the batch positions of inputs (flat (N, m) rows),
    in blocks of `block` rows taken from the counter claims[0] (claims[1] counts the blocks
    done); returns -1.

    Serial and without the GIL: forward() runs this in one or more threads at once, each
    taking the next block until none is left (Python threads: a prange over blocks costs
    ~2.5 s more of first compile, its gufunc re-optimising and re-emitting all the code
    below). A thread that starts late takes fewer blocks rather than holding the others up.
    A block's rows are the same whichever thread takes it (BLAS's sums depend on the
    block's rows, our kernels' do not): the output does not depend on the threads.
    """
    n_rows = inputs.rowmap.shape[0]
    if claims[0] * block >= n_rows:  # all taken already (a thread that started late)
        return -1
    pre, post, _, _, _, _, _ = row_scratch(block, net.arow, 0, 0)
    while True:
        start = fetch_add(claims, 0, 1) * block
        if start >= n_rows:
            return -1
        n = min(block, n_rows - start)
        net_forward(pre, post, n, inputs, start, work, layers, net, np.int64(0),
                    first_lanes(layers))  # fmt: skip
        outputs(out, start, n, pre, post, layers, net)
        fetch_add(claims, 1, 1)


@njit(cache=True, inline="always")
def gather_tiles(cols, vals, starts, tiles, X, r0, n, scale, tile):
    """gather_rows, also noting where each row's entries of each `tile` columns begin:
    row b's entries of columns [t*tile, (t+1)*tile) at tiles[b, t]:tiles[b, t+1] (tiles
    (block, n_tiles + 1)); the last tile takes every column from its start on."""
    n_tiles = tiles.shape[1] - 1
    full = X.shape[1] - X.shape[1] % LANES
    k = np.int64(0)
    for b in range(n):
        starts[b] = k
        r = r0 + b
        for t in range(n_tiles):
            tiles[b, t] = k
            last = full if t == n_tiles - 1 else min((t + 1) * tile, full)
            for c in range(t * tile, last, LANES):
                k = compress_nonzero(cols, vals, k, X, r, c, 1, scale)
        for i in range(full, X.shape[1]):
            x = X[r, i]
            cols[k] = i
            vals[k] = np.float32(x) * scale
            k += x != 0
        tiles[b, n_tiles] = k
    for b in range(n, starts.shape[0]):  # rows past n empty (sparse_forward looks ahead)
        starts[b] = k


@njit(cache=True)
def sparse_forward_tiles(out, o0, arow, n, cols, vals, tiles, wt, w0, bias, b0, s, wide):
    """The first layer's lanes 0..wide-1 (a multiple of WIDE) for the n rows of a block
    gathered by gather_tiles: out[b] = bias + sum_k vals[k] * wt[cols[k]], each lane's sum
    in the order sparse_forward adds it (the same bits), but

    - by tiles of input columns: WIDE lanes of a tile's weight rows (tile * 256 bytes)
      stay in the L1 cache while every row of the block adds its entries of that tile,
      the partial sums going through `out` (sparse_forward reads each of the fan_in * 256
      bytes of a pass from L2 once per row: one 64-byte line per multiply-add);
    - two rows at a time: eight independent chains of multiply-adds, not four.
    """
    n_tiles = tiles.shape[1] - 1
    for q in range(0, wide, WIDE):
        for t in range(n_tiles):
            b = 0
            while b < n:
                pair = b + 1 < n
                c = b + 1 if pair else b  # a lone last row runs as its own pair, twice
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


@njit(cache=True, inline="always")
def first_bad_row(vals, starts, n):
    """The first of the n gathered rows with an entry that is not finite, else -1. The
    entries are all a float input's non-zero values (NaN counts as non-zero), in cache
    just after the gather: x * 0 is 0 for a finite x, NaN for NaN and infinity."""
    end = starts[n]
    full = end - end % LANES
    zero = vzero()
    acc = zero
    for k in range(0, full, LANES):
        acc = vadd(acc, vmul(vload(vals, k), zero))
    bad = vsum(acc) != ZERO
    for k in range(full, end):
        bad = bad or vals[k] * ZERO != ZERO
    if not bad:
        return -1
    for b in range(n):
        for k in range(starts[b], starts[b + 1]):
            if vals[k] * ZERO != ZERO:
                return b
    return -1


@njit(cache=True, nogil=True)
def forward_dense_rows(out, work, X, scale, layers, net, claims, block, cols, check):
    """forward_rows for the rows of an array X (uint8 or float32): each block's non-zero
    entries gathered into scratch first (cols: block * fan_in + 16 column numbers, of the
    type training uses), no pass over the whole array before.

    With `check` (a float X) each block's gathered entries are checked finite first:
    returns the first row of X holding NaN or infinity in the blocks this thread took (it
    takes no more blocks then, and that block is not counted done), else -1.
    """
    n_rows = X.shape[0]
    if claims[0] * block >= n_rows:  # all taken already (a thread that started late)
        return -1
    pre, post, _, _, _, _, _ = row_scratch(block, net.arow, 0, 0)
    vals = np.empty(block * X.shape[1] + LANES, np.float32)
    starts = np.empty(block + 1, np.int64)
    rowmap = np.empty(block, np.int64)  # (np.arange would compile its own kernel: ~0.3 s)
    for b in range(block):
        rowmap[b] = b
    inputs = Inputs(cols, vals, starts, rowmap)
    tiles = np.empty((block, max(1, X.shape[1] // TILE) + 1), np.int64)
    first = layers[0]
    qb = first_lanes(layers)
    wide = qb - qb % WIDE  # lanes the tiles take; sparse_forward the rest, 16 at a time
    while True:
        start = fetch_add(claims, 0, 1) * block
        if start >= n_rows:
            return -1
        n = min(block, n_rows - start)
        gather_tiles(cols, vals, starts, tiles, X, start, n, scale, TILE)
        if check:
            bad = first_bad_row(vals, starts, n)
            if bad >= 0:
                return start + bad
        if wide > 0:
            sparse_forward_tiles(pre, first.aoff, net.arow, n, cols, vals, tiles, work,
                                 first.woff, work, first.boff, first.stride, wide)  # fmt: skip
        net_forward(pre, post, n, inputs, np.int64(0), work, layers, net, wide, qb)
        outputs(out, start, n, pre, post, layers, net)
        fetch_add(claims, 1, 1)


@njit(cache=True)
def sum_rows(out, parts):
    """out = parts[0] + parts[1] + ... in that order."""
    out[:] = ZERO
    for c in range(parts.shape[0]):
        part = parts[c]
        for p in range(out.shape[0]):
            out[p] += part[p]


@njit(cache=True)
def loss_and_grads_chunk(g, work, wc, inputs, targets, layers, net, r0, end, block, dscale):
    """g = gradient (summed, scaled by dscale) of batch positions r0 .. end-1, in blocks of
    rows; returns the sum of their losses."""
    n_in = layers[0].n_in
    scratch = row_scratch(block, net.arow, n_in, block * n_in)
    g[:] = ZERO
    total = ZERO
    for start in range(r0, end, block):
        loss, _ = rows_grad(g, g, ONE, scratch, inputs, targets, start, min(block, end - start),
                            work, wc, layers, net, dscale)  # fmt: skip
        total += loss
    return total


@njit(cache=True, parallel=PRANGE_ONLY)
def loss_and_grads_rows(partial, losses, work, wc, inputs, targets, layers, net, chunk, block):
    """Summed loss and gradient of the mean loss over every row of targets.order, by chunks.

    partial[c] and losses[c] get chunk c's share (the caller adds chunks in order); a
    chunk goes through in blocks of `block` rows. Depends on chunk and block, not threads.
    """
    n_rows = targets.order.shape[0]
    dscale, _ = scales(net, n_rows, layers[layers.shape[0] - 1].n_out)
    for c in prange(partial.shape[0]):
        losses[c] = loss_and_grads_chunk(partial[c], work, wc, inputs, targets, layers, net,
                                         c * chunk, min(n_rows, (c + 1) * chunk), block,
                                         dscale)  # fmt: skip
