"""The numba backend's passes that do not train: the network's outputs for many rows, and
the loss and gradient over all rows (the gradient checks' ``loss_and_grads``).

Same arguments as the training loops (:mod:`kernels.numba.train`): ``layers``, ``net``
records, :class:`~kernels.numba.codes.Inputs` and :class:`~kernels.numba.codes.Targets`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.numba.codes import SOFTMAX, Inputs
from kernels.numba.heads import activation_forward, softmax
from kernels.numba.memory import at, vload, vstore
from kernels.numba.net import ONE, WIDE, ZERO, dense_forward, sparse_forward
from kernels.numba.passes import PRANGE_ONLY, row_scratch, rows_grad, scales
from kernels.numba.simd import LANES, fma, vadd, vmul, vsplat, vsum, vzero
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


@njit(cache=True)
def first_rows(out, o0, arow, n, cols, vals, starts, rowmap, r0, wt, w0, bias, b0, s, m):
    """Inference's first layer: out[b] = bias + sum_k vals[k] * wt[cols[k]] over row b's
    entries (batch row b is CSR row rowmap[r0 + b]), lanes 0..m-1 (m: the outputs rounded
    up to 16 lanes; the lanes m..s-1 that keep weight rows off multiples of 1 KB are zero
    and nothing reads them, so they are not computed: at 256 wide, a fifth of the work).

    As :func:`~kernels.numba.net.sparse_forward`, WIDE lanes at a time for every row, but
    two rows at once: eight independent add chains instead of four, so the multiply-adds
    wait less on each other (784-256-10 on one core: ~10% less time). Each lane adds its
    row's entries in the same order as training's forward: the same outputs, bit for bit.
    The last s % WIDE lanes go to sparse_forward's 16-lane loop. No prefetching: inference
    reads the rows in order.
    """
    wide = m - m % WIDE
    for q in range(0, wide, WIDE):
        b = 0
        while b < n:
            two = b + 1 < n
            ra = rowmap[r0 + b]
            rb = rowmap[r0 + b + 1] if two else ra
            ka, ka1 = starts[ra], starts[ra + 1]
            kb, kb1 = (starts[rb], starts[rb + 1]) if two else (ka1, ka1)
            a0 = vload(bias, b0 + q)
            a1 = vload(bias, b0 + q + 16)
            a2 = vload(bias, b0 + q + 32)
            a3 = vload(bias, b0 + q + 48)
            c0, c1, c2, c3 = a0, a1, a2, a3
            base = w0 + q
            both = min(ka1 - ka, kb1 - kb)  # entries both rows have
            for j in range(both):
                x = vsplat(at(vals, ka + j))
                row = base + at(cols, ka + j) * s
                y = vsplat(at(vals, kb + j))
                roy = base + at(cols, kb + j) * s
                a0 = fma(x, vload(wt, row), a0)
                a1 = fma(x, vload(wt, row + 16), a1)
                a2 = fma(x, vload(wt, row + 32), a2)
                a3 = fma(x, vload(wt, row + 48), a3)
                c0 = fma(y, vload(wt, roy), c0)
                c1 = fma(y, vload(wt, roy + 16), c1)
                c2 = fma(y, vload(wt, roy + 32), c2)
                c3 = fma(y, vload(wt, roy + 48), c3)
            for k in range(ka + both, ka1):
                x = vsplat(at(vals, k))
                row = base + at(cols, k) * s
                a0 = fma(x, vload(wt, row), a0)
                a1 = fma(x, vload(wt, row + 16), a1)
                a2 = fma(x, vload(wt, row + 32), a2)
                a3 = fma(x, vload(wt, row + 48), a3)
            for k in range(kb + both, kb1):
                y = vsplat(at(vals, k))
                roy = base + at(cols, k) * s
                c0 = fma(y, vload(wt, roy), c0)
                c1 = fma(y, vload(wt, roy + 16), c1)
                c2 = fma(y, vload(wt, roy + 32), c2)
                c3 = fma(y, vload(wt, roy + 48), c3)
            o = b * arow + o0 + q
            vstore(out, o, a0)
            vstore(out, o + 16, a1)
            vstore(out, o + 32, a2)
            vstore(out, o + 48, a3)
            if two:
                o += arow
                vstore(out, o, c0)
                vstore(out, o + 16, c1)
                vstore(out, o + 32, c2)
                vstore(out, o + 48, c3)
            b += 2
    if wide < m:
        sparse_forward(out, o0, arow, n, cols, vals, starts, rowmap, r0, wt, w0, bias, b0, s,
                       wide, m)  # fmt: skip


@njit(cache=True, inline="always")
def infer_block(pre, post, n, inputs, r0, work, layers, net):
    """pre/post of every layer for the n rows of a block (net_forward's arithmetic, with
    inference's first layer); the last layer's post left alone for a softmax output."""
    arow = net.arow
    n_layers = layers.shape[0]
    first = layers[0]
    lanes = (first.n_out + LANES - 1) // LANES * LANES
    first_rows(pre, first.aoff, arow, n, inputs.cols, inputs.vals, inputs.starts,
               inputs.rowmap, r0, work, first.woff, work, first.boff, first.stride,
               lanes)  # fmt: skip
    for k in range(n_layers):
        layer = layers[k]
        if k > 0:
            dense_forward(pre, layer.aoff, post, layers[k - 1].aoff, arow, n, layer.n_in, work,
                          layer.woff, work, layer.boff, layer.stride, layer.path)  # fmt: skip
        if k < n_layers - 1:
            activation_forward(post, pre, layer.aoff, arow, n, layer.n_out, layer.stride,
                               net.act)  # fmt: skip
        elif net.out_act != SOFTMAX:
            activation_forward(post, pre, layer.aoff, arow, n, layer.n_out, layer.stride,
                               net.out_act)  # fmt: skip


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
        infer_block(pre, post, n, inputs, start, work, layers, net)
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
        infer_block(pre, post, n, inputs, np.int64(0), work, layers, net)
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
