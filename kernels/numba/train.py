"""The numba backend's training loops: every mini-batch of a ``train_steps`` call in one call.

No Python between batches. Per batch: forward through every layer, loss and output
gradient, backward into the gradient (:mod:`kernels.numba.passes`), one optimizer step on
the work vector (:mod:`kernels.numba.optim`), refresh of the small weight copies (see
:mod:`kernels.numba.net`).

For plain SGD without weight decay (the classic MNIST run) the first layer's weights
get no gradient buffer: once every row of the batch has gone forward, each row adds
``-lr * x * delta`` to the weight rows of its non-zero pixels, in place. That skips
zeroing, filling and sweeping 12,544 gradient floats per batch for the ~4,800 that
change.

``train_loop_threads`` splits each batch into ``shards`` contiguous slices of rows
(prange), each with its own gradient buffer (row ``s`` of ``(shards, PW)``) and
scratch; the partial gradients are then summed in shard order, so a run is repeatable
for a given thread count. No thread writes where another one does.
``train_loop_lanes`` splits a wide first layer by output lanes instead.

Every loop takes ``(work, wc, state, inputs, targets, totals, batch_size, lrs, step0, layers,
net, optim, losses, correct)``: the work vector and weight copies, the optimizer state
(:class:`~kernels.numba.codes.OptState`), the rows (:class:`~kernels.numba.codes.Inputs`,
:class:`~kernels.numba.codes.Targets`), each batch's total sample weight (float32, or None
without sample weights: a batch's loss is then the plain mean over its rows), batch j
being batch positions j*batch_size onwards
with rate lrs[j] and step number step0 + j + 1, the network's records (``layers``,
``net``, ``optim``), and the per-batch outputs (mean loss, rows classified right).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.numba.codes import SGD
from kernels.numba.net import ONE, WIDE, ZERO
from kernels.numba.optim import update
from kernels.numba.passes import (
    PRANGE_ONLY,
    batch_scales,
    first_backward,
    first_forward,
    first_tiles,
    first_width,
    net_backward,
    net_forward,
    net_head,
    refresh,
    row_scratch,
    rows_grad,
    transpose_first,
)
from kernels.numba.simd import LANES
from kernels.numba.tiles import n_tiles

f32 = np.float32


@njit(cache=True, inline="always")
def most_entries(inputs, n_rows, block):
    """The most input entries in any `block` consecutive rows of the first n_rows."""
    starts, rowmap = inputs.starts, inputs.rowmap
    top = 0
    for r0 in range(0, n_rows, block):
        total = 0
        for p in range(r0, min(n_rows, r0 + block)):
            total += starts[rowmap[p] + 1] - starts[rowmap[p]]
        top = max(top, total)
    return top


@njit(cache=True)
def loop_start(work, optim, layers, net, inputs, targets, batch_size):
    """What every training loop sets up once per call: (rows in the call, classes, gradient
    buffer, row scratch, in place?, where the first layer's weight gradient goes, where
    update() starts).

    For plain SGD without weight decay the first layer's weights (work[0:layers[0].boff])
    take their gradient times -lr straight away and update() skips them. Chosen once per
    call so that the inlined rows_grad has one call site, not two copies, and `lo` is an
    int64 either way (a literal 0 argument compiles a second specialisation of update).
    Not inlined: inlined into a parallel loop, its tuple of arrays defeats Numba's array
    analysis of the prange bodies ("Dimension mismatch").
    """
    n_rows = targets.order.shape[0]
    n_classes = layers[layers.shape[0] - 1].n_out
    grad = np.zeros(work.shape[0], np.float32)
    scratch = row_scratch(min(batch_size, n_rows), net.arow, layers[0].n_in,
                          most_entries(inputs, n_rows, batch_size))  # fmt: skip
    in_place = optim.kind == SGD and f32(optim.weight_decay) == ZERO
    w_first = work if in_place else grad
    lo = layers[0].boff if in_place else 0
    return n_rows, n_classes, grad, scratch, in_place, w_first, lo


@njit(cache=True, inline="always")
def lane_cut(s0, blocks, t, shards):
    """Thread t's lanes [qa, qb) of the first layer's s0: whole blocks of WIDE lanes."""
    return min(s0, blocks * t // shards * WIDE), min(s0, blocks * (t + 1) // shards * WIDE)


# nogil on every training loop: with --augment, the next chunk is distorted on a second
# Python thread, which needs the GIL between its pieces; a loop holding it idled that thread.
@njit(cache=True, nogil=True)
def train_loop(work, wc, state, inputs, targets, totals, batch_size, lrs, step0, layers, net,
               optim, losses, correct):  # fmt: skip
    """Every batch, one optimizer step each (see module doc); one thread (BLAS, where a
    layer uses it, may use its own threads)."""
    n_rows, n_classes, grad, scratch, in_place, w_first, lo = loop_start(
        work, optim, layers, net, inputs, targets, batch_size)  # fmt: skip
    pw = work.shape[0]
    for j in range(losses.shape[0]):
        r0 = j * batch_size
        n = min(batch_size, n_rows - r0)
        lr = lrs[j]
        alpha = -lr if in_place else ONE
        dscale, lscale = batch_scales(net, n, n_classes, totals, j)
        loss, hits = rows_grad(grad, w_first, alpha, scratch, inputs, targets, r0, n, work, wc,
                               layers, net, dscale)  # fmt: skip
        update(work, grad, lo, pw, state.velocity, state.m, state.v, optim, lr, step0 + j + 1)
        refresh(wc, work, layers)
        losses[j] = loss * lscale
        correct[j] = hits


@njit(cache=True, inline="always")
def add_parts(out, parts, a, b):
    """out[a:b] += parts[0, a:b] + parts[1, a:b] + ... added in that order (the same sums
    run after run, whatever slice a thread takes); those parts zeroed."""
    o = out[a:b]
    for s in range(parts.shape[0]):
        part = parts[s][a:b]
        for p in range(o.shape[0]):
            o[p] += part[p]
            part[p] = ZERO


@njit(cache=True, nogil=True, parallel=PRANGE_ONLY)
def train_loop_threads(work, wc, state, inputs, targets, totals, batch_size, lrs, step0, layers,
                       net, optim, losses, correct, shards):  # fmt: skip
    """train_loop with each batch split into `shards` slices of rows run in parallel, each
    into its own gradient, added in shard order (the same sums run after run); the sum and
    the step split between the threads by slices of the parameters."""
    n_classes = layers[layers.shape[0] - 1].n_out
    arow = net.arow
    n_rows = targets.order.shape[0]
    rows = -(-min(batch_size, n_rows) // shards)  # rows of the largest shard
    pw = work.shape[0]
    grads = np.zeros((shards, pw), np.float32)
    pre = np.zeros((shards, rows * arow + LANES), np.float32)
    post = np.zeros((shards, rows * arow + LANES), np.float32)
    delta = np.zeros((shards, rows * arow + LANES), np.float32)
    lse = np.zeros((shards, rows), np.float32)
    entries = most_entries(inputs, n_rows, batch_size)
    t_starts = np.zeros((shards, layers[0].n_in + 2), np.int64)
    t_rows = np.zeros((shards, entries), np.int64)
    t_vals = np.zeros((shards, entries), np.float32)
    tiles = np.zeros((shards, rows, n_tiles(layers[0].n_in) + 1), np.int64)
    shard_loss = np.zeros(shards, np.float32)
    shard_hits = np.zeros(shards, np.int64)
    grad = np.zeros(pw, np.float32)
    for j in range(losses.shape[0]):
        r0 = j * batch_size
        n = min(batch_size, n_rows - r0)
        dscale, lscale = batch_scales(net, n, n_classes, totals, j)
        for s in prange(shards):
            a = r0 + n * s // shards
            b = r0 + n * (s + 1) // shards
            g = grads[s]
            shard_loss[s], shard_hits[s] = rows_grad(
                g, g, ONE,
                (pre[s], post[s], delta[s], lse[s], t_starts[s], t_rows[s], t_vals[s], tiles[s]),
                inputs, targets, a, b - a, work, wc, layers, net, dscale,
            )
        loss = ZERO
        hits = 0
        for s in range(shards):
            loss += shard_loss[s]
            hits += shard_hits[s]
        for t in prange(shards):  # thread t sums and steps its slice of the parameters
            a, b = pw * t // shards, pw * (t + 1) // shards
            add_parts(grad, grads, a, b)
            update(work, grad, a, b, state.velocity, state.m, state.v, optim, lrs[j],
                   step0 + j + 1)  # fmt: skip
        refresh(wc, work, layers)
        losses[j] = loss * lscale
        correct[j] = hits


@njit(cache=True, nogil=True, parallel=PRANGE_ONLY)
def train_loop_lanes(work, wc, state, inputs, targets, totals, batch_size, lrs, step0, layers,
                     net, optim, losses, correct, shards):  # fmt: skip
    """train_loop with the wide first layer split between `shards` threads by output lanes
    (blocks of WIDE), forward and backward: a thread owns its lanes of the weights, so
    nothing is reduced and in-place SGD stays in place; the results do not depend on the
    number of threads. The other layers run on this thread (BLAS ones with BLAS's threads).
    """
    n_rows, n_classes, grad, scratch, in_place, w_first, lo = loop_start(
        work, optim, layers, net, inputs, targets, batch_size)  # fmt: skip
    pw = work.shape[0]
    pre, post, delta, lse = scratch[0], scratch[1], scratch[2], scratch[3]
    s0 = first_width(layers)
    blocks = -(-s0 // WIDE)
    zero = np.int64(0)
    for j in range(losses.shape[0]):
        r0 = j * batch_size
        n = min(batch_size, n_rows - r0)
        lr = lrs[j]
        alpha = -lr if in_place else ONE
        dscale, lscale = batch_scales(net, n, n_classes, totals, j)
        first_tiles(scratch[7], n, inputs, r0, layers)  # (read by every thread)
        for t in prange(shards):
            qa, qb = lane_cut(s0, blocks, t, shards)
            first_forward(pre, scratch[7], n, inputs, r0, work, layers, net, qa, qb)
        net_forward(pre, post, scratch[7], n, inputs, r0, work, layers, net, zero, zero)
        loss, hits = net_head(delta, pre, post, n, targets, r0, layers, net, dscale, lse)
        net_backward(grad, w_first, alpha, scratch, n, inputs, r0, work, wc, layers, net, zero,
                     zero)  # fmt: skip
        transpose_first(scratch, n, inputs, r0, alpha)
        for t in prange(shards):
            qa, qb = lane_cut(s0, blocks, t, shards)
            first_backward(w_first, alpha, scratch, n, inputs, r0, layers, net, qa, qb)
        update(work, grad, lo, pw, state.velocity, state.m, state.v, optim, lr, step0 + j + 1)
        refresh(wc, work, layers)
        losses[j] = loss * lscale
        correct[j] = hits
