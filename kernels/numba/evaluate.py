"""The numba backend's passes that do not train: the network's outputs for many rows, and
the loss and gradient over all rows (the gradient checks' ``loss_and_grads``).

Same arguments as the training loops (:mod:`kernels.numba.train`): ``layers``, ``net``
records, :class:`~kernels.numba.codes.Inputs` and :class:`~kernels.numba.codes.Targets`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.numba.codes import SOFTMAX, Inputs
from kernels.numba.heads import softmax
from kernels.numba.memory import vload
from kernels.numba.net import ONE, ZERO
from kernels.numba.passes import PRANGE_ONLY, net_forward, row_scratch, rows_grad, scales
from kernels.numba.simd import LANES, vadd, vmul, vsum, vzero
from kernels.numba.work import gather_rows


@njit(cache=True, inline="always")
def outputs(out, start, n, pre, post, lse, layers, net):
    """out[start:start+n] = the last layer's outputs of the block's n rows (softmax taken)."""
    last = layers[layers.shape[0] - 1]
    o0, m, arow = last.aoff, last.n_out, net.arow
    if net.out_act == SOFTMAX:
        softmax(post, pre, o0, arow, n, m, last.stride, lse)
    for b in range(n):
        for c in range(m):
            out[start + b, c] = post[b * arow + o0 + c]


@njit(cache=True, inline="always")
def first_lanes(layers):
    """The first layer's lanes forward computes: its outputs, rounded up to 16. The lanes
    past them that keep its weight rows off multiples of 1 KB are zero (row_scratch's
    zeros, never written) and nothing reads them (256 wide: 16 of 272 lanes, done 16 at a
    time, ~7% of the first layer's time on one core)."""
    return (layers[0].n_out + LANES - 1) // LANES * LANES


@njit(cache=True, nogil=True)
def forward_rows(out, work, inputs, layers, net, r0, r1, block):
    """out[r] = the network's output for batch position r of inputs, r0 <= r < r1, in
    blocks of `block` rows.

    Serial and without the GIL: forward() runs one call per thread on a slice of the rows
    (Python threads: a prange over blocks costs ~2.5 s more of first compile, its gufunc
    re-optimising and re-emitting all the code below). BLAS's sums depend on the block's
    rows, our kernels' do not: forward() cuts the slices at whole blocks, so the slicing
    does not change the output.
    """
    pre, post, _, lse, _, _, _ = row_scratch(block, net.arow, 0, 0)
    for start in range(r0, r1, block):
        n = min(block, r1 - start)
        net_forward(pre, post, n, inputs, start, work, layers, net, np.int64(0),
                    first_lanes(layers))  # fmt: skip
        outputs(out, start, n, pre, post, lse, layers, net)


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
def forward_dense_rows(out, work, X, scale, layers, net, r0, r1, block, cols, check):
    """forward_rows for the rows of an array X (uint8 or float32): each block's non-zero
    entries gathered into scratch first (cols: block * fan_in + 16 column numbers, of the
    type training uses), no pass over the whole array before.

    With `check` (a float X) each block's gathered entries are checked finite first:
    returns the first row of X holding NaN or infinity (its block and those after it not
    computed), else -1.
    """
    pre, post, _, lse, _, _, _ = row_scratch(block, net.arow, 0, 0)
    vals = np.empty(block * X.shape[1] + LANES, np.float32)
    starts = np.empty(block + 1, np.int64)
    rowmap = np.empty(block, np.int64)  # (np.arange would compile its own kernel: ~0.3 s)
    for b in range(block):
        rowmap[b] = b
    inputs = Inputs(cols, vals, starts, rowmap)
    for start in range(r0, r1, block):
        n = min(block, r1 - start)
        gather_rows(cols, vals, starts, X, start, n, scale)
        if check:
            bad = first_bad_row(vals, starts, n)
            if bad >= 0:
                return start + bad
        net_forward(pre, post, n, inputs, np.int64(0), work, layers, net, np.int64(0),
                    first_lanes(layers))  # fmt: skip
        outputs(out, start, n, pre, post, lse, layers, net)
    return -1


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
