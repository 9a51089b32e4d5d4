"""One block of rows through the network: forward, loss head and backward, for the loops.

The compiled loops (:mod:`kernels.numba.train`, :mod:`kernels.numba.evaluate`; the first
layer of :mod:`kernels.numba.infer`) run a batch or a block of rows through these. They are thin glue over the layer kernels of
:mod:`kernels.numba.net` and :mod:`kernels.numba.heads`, and ``inline="always"``: typed
straight into their caller, no compiled module of their own. Each compiled function has
its own LLVM module, into which the code of every function it calls is linked, then
optimised (O3) and emitted again: a chain train_loop -> rows_grad -> net_forward ->
dense_forward would pay for dense_forward at every level. The layer kernels stay separate
functions, compiled once each: inlining them too made train_loop slower to compile (one
huge function for LLVM); the epoch runs as fast either way. A literal argument (a ``0``
written in a call) compiles a kernel once more for its own type: pass an int64.

Arguments: ``layers`` (one :data:`~kernels.numba.codes.LAYER` record per layer), ``net`` (the
:data:`~kernels.numba.codes.NETWORK` record), ``inputs`` (:class:`~kernels.numba.codes.Inputs`),
``targets`` (:class:`~kernels.numba.codes.Targets`); ``scratch`` = (pre, post, delta, lse,
t_starts, t_rows, t_vals, tiles) from :func:`row_scratch`. Rows are batch positions r0 .. r0+n-1.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.core.cpu import ParallelOptions

from kernels.numba.codes import CROSS_ENTROPY, SOFTMAX
from kernels.numba.heads import activation_backward, activation_forward, loss_head
from kernels.numba.net import (
    ONE,
    TWO,
    WIDE,
    ZERO,
    bias_backward,
    dense_backward,
    dense_forward,
    sparse_backward,
)
from kernels.numba.simd import LANES
from kernels.numba.tiles import n_tiles, row_tiles, tiled_forward
from kernels.numba.work import refresh_copies, transpose_rows

f32 = np.float32
# parallel=True would also turn every np.zeros of a function into a parallel loop, each one
# a gufunc to compile (~1.2 s of train_loop_threads' first compile): only prange is wanted.
PRANGE_ONLY = ParallelOptions(
    {"prange": True, "comprehension": False, "reduction": False, "inplace_binop": False,
     "setitem": False, "numpy": False, "stencil": False, "fusion": False}
)  # fmt: skip


@njit(cache=True, inline="always")
def first_width(layers):
    """The first layer's lanes the passes compute, forward and back: its outputs, rounded up
    to 16. The lanes past them that keep its weight rows off multiples of 1 KB (16 of 272
    at 256 wide) stay zero, in the scratch (zeros, never written) as in the weights and
    their gradient, and nothing reads them: computing them cost ~7% of the first layer's
    time on one core, and on 2 threads all of it fell on the second."""
    return (layers[0].n_out + LANES - 1) // LANES * LANES


@njit(cache=True, inline="always")
def first_tiles(tiles, n, inputs, r0, layers):
    """Where each of the n rows' entries of each tile of input columns begin (row_tiles),
    for first_forward; nothing for a first layer under WIDE lanes (no tiles)."""
    if layers[0].stride >= WIDE:
        row_tiles(tiles, n_tiles(layers[0].n_in), n, inputs.cols, inputs.vals, inputs.starts,
                  inputs.rowmap, r0)  # fmt: skip


@njit(cache=True, inline="always")
def first_forward(pre, tiles, n, inputs, r0, work, layers, net, qa, qb):
    """Lanes qa..qb-1 of the first layer's pre-activations for n rows: whole WIDE blocks
    by tiles of input columns (``tiles``: first_tiles of these rows), the rest 16 lanes
    at a time."""
    first = layers[0]
    tiled_forward(pre, first.aoff, net.arow, n, inputs.cols, inputs.vals, inputs.starts,
                  inputs.rowmap, r0, tiles, n_tiles(first.n_in), work, first.woff, work,
                  first.boff, first.stride, qa, qb)  # fmt: skip


@njit(cache=True, inline="always")
def activate(post, pre, o, n, layers, net, k, q0, q1):
    """post = act(pre) on lanes q0..q1-1 of layer k for n rows, row b at o + b * arow (o: 0,
    or the first row of a thread's share times arow): the hidden layers' activation, the
    output's unless it is a softmax (which the loss head, or inference, computes)."""
    layer = layers[k]
    last = k == layers.shape[0] - 1
    act = net.out_act if last else net.act
    if last and act == SOFTMAX:
        return
    real = min(max(layer.n_out - q0, 0), q1 - q0)
    activation_forward(post, pre, layer.aoff + o + q0, net.arow, n, real, q1 - q0, act)


@njit(cache=True, inline="always")
def net_forward(pre, post, tiles, n, inputs, r0, work, layers, net, qa, qb):
    """pre/post = pre-activations and activations of every layer for n rows, the first
    layer's lanes qa..qb-1 computed here (0, 0: the caller has computed them; else
    ``tiles`` is scratch for first_tiles).

    The last layer's post is left alone for a softmax output (the head computes it).
    """
    arow = net.arow
    n_layers = layers.shape[0]
    if qb > qa:
        first_tiles(tiles, n, inputs, r0, layers)
        first_forward(pre, tiles, n, inputs, r0, work, layers, net, qa, qb)
    for k in range(n_layers):
        layer = layers[k]
        if k > 0:
            dense_forward(pre, layer.aoff, post, layers[k - 1].aoff, arow, n, layer.n_in,
                          layer.n_out, work, layer.woff, work, layer.boff, layer.stride,
                          layer.path)  # fmt: skip
        activate(post, pre, 0, n, layers, net, k, 0, layer.stride)


@njit(cache=True, inline="always")
def net_head(delta, pre, post, n, targets, r0, layers, net, scale, lse):
    """Loss of n rows into the output gradient delta (scaled by `scale`).

    Returns (sum of the rows' losses, rows classified right).
    """
    last = layers[layers.shape[0] - 1]
    return loss_head(delta, post, pre, last.aoff, net.arow, n, last.n_out, last.stride,
                     targets.labels, targets.target, targets.weight, targets.order, r0, scale, lse,
                     net.out_act)  # fmt: skip


@njit(cache=True, inline="always")
def net_backward(grad, w_first, alpha, scratch, n, inputs, r0, work, wc, layers, net, qa, qb):
    """Backpropagate the output gradient (in delta) of n rows, adding into grad; the first
    layer's weight gradient for lanes qa..qb-1 only (0, 0: the caller does it).

    The first layer's weight gradient goes into w_first scaled by alpha: grad and 1, or the
    weights themselves and -lr (in-place SGD).
    """
    pre, post, delta = scratch[0], scratch[1], scratch[2]
    arow = net.arow
    for k in range(layers.shape[0] - 1, 0, -1):
        layer, below = layers[k], layers[k - 1]
        dense_backward(delta, grad, layer.woff, grad, layer.boff, delta, layer.aoff, post,
                       below.aoff, arow, n, layer.n_in, work, wc, layer.coff, layer.n_out,
                       layer.stride, below.stride, layer.path)  # fmt: skip
        activation_backward(delta, pre, post, below.aoff, arow, n, layer.n_in, below.stride,
                            net.act)  # fmt: skip
    first = layers[0]
    bias_backward(grad, first.boff, delta, first.aoff, arow, n, first.stride)
    if qb - qa >= WIDE:
        transpose_first(scratch, n, inputs, r0, alpha)
    first_backward(w_first, alpha, scratch, n, inputs, r0, layers, net, qa, qb)


@njit(cache=True, inline="always")
def transpose_first(scratch, n, inputs, r0, alpha):
    """The batch's first-layer inputs by column, times alpha, into scratch (sparse_backward)."""
    transpose_rows(scratch[4], scratch[5], scratch[6], n, inputs.cols, inputs.vals,
                   inputs.starts, inputs.rowmap, r0, alpha, np.int64(0),
                   scratch[4].shape[0] - 2)  # fmt: skip


@njit(cache=True, inline="always")
def first_backward(w_first, alpha, scratch, n, inputs, r0, layers, net, qa, qb):
    """Lanes qa..qb-1 of the first layer's weight gradient, into w_first times alpha."""
    first = layers[0]
    sparse_backward(w_first, first.woff, scratch[2], first.aoff, net.arow, n, inputs.cols,
                    inputs.vals, inputs.starts, inputs.rowmap, r0, alpha, first.stride, qa, qb,
                    scratch[4], scratch[5], scratch[6])  # fmt: skip


@njit(cache=True, inline="always")
def rows_grad(grad, w_first, alpha, scratch, inputs, targets, r0, n, work, wc, layers, net,
              dscale):  # fmt: skip
    """Forward, loss and backward of n rows (scratch sized for n rows).

    Returns (sum of the rows' losses, rows classified right)."""
    pre, post, delta, lse = scratch[0], scratch[1], scratch[2], scratch[3]
    s0 = first_width(layers)
    net_forward(pre, post, scratch[7], n, inputs, r0, work, layers, net, np.int64(0), s0)
    loss, hits = net_head(delta, pre, post, n, targets, r0, layers, net, dscale, lse)
    net_backward(grad, w_first, alpha, scratch, n, inputs, r0, work, wc, layers, net,
                 np.int64(0), s0)  # fmt: skip
    return loss, hits


@njit(cache=True, inline="always")
def scales(net, rows, n_classes):
    """(factor of the output gradient, factor turning summed row losses into the mean)."""
    if net.loss == CROSS_ENTROPY:
        return ONE / f32(rows), ONE / f32(rows)
    return TWO / (f32(rows) * f32(n_classes)), ONE / (f32(rows) * f32(n_classes))


@njit(cache=True, inline="always")
def batch_scales(net, n, n_classes, totals, j):
    """scales() of batch j of n rows; with sample weights (totals: each batch's sum of
    weights, else None), the weighted mean's: divided by the batch's total weight, and
    (0, 0) where that is 0 (no loss gradient, loss 0)."""
    if totals is None:
        return scales(net, n, n_classes)
    total = totals[j]
    if total == ZERO:
        return ZERO, ZERO
    if net.loss == CROSS_ENTROPY:
        return ONE / total, ONE / total
    return TWO / (total * f32(n_classes)), ONE / (total * f32(n_classes))


@njit(cache=True, inline="always")
def row_scratch(rows, arow, n_in, entries):
    """Scratch for a block of `rows` rows: pre- and post-activations and deltas of every
    layer, each row's log-sum-exp, room for the block's `entries` input entries by
    column (sparse_backward), and where each row's entries of each tile begin
    (first_tiles). Allocated once per call, reused for every block."""
    pre = np.zeros(rows * arow + LANES, np.float32)
    post = np.zeros(rows * arow + LANES, np.float32)
    delta = np.zeros(rows * arow + LANES, np.float32)
    lse = np.zeros(rows, np.float32)
    t_starts = np.zeros(n_in + 2, np.int64)
    t_rows = np.zeros(entries, np.int64)
    t_vals = np.zeros(entries, np.float32)
    tiles = np.zeros((rows, n_tiles(n_in) + 1), np.int64)
    return pre, post, delta, lse, t_starts, t_rows, t_vals, tiles


@njit(cache=True, inline="always")
def refresh(wc, work, layers):
    """The weight copies of the layers after the first, after a step changed work."""
    refresh_copies(wc, work, layers)
