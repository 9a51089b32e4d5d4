"""Networks with BLAS layers on several threads: every layer split between Numba's threads
by output lanes, BLAS on one thread inside each (``train_loop_split``).

Giving the threads to BLAS (``train_loop`` with BLAS's own threads) leaves everything
between the sgemm calls on one thread: the sparse first layer, activations, the optimizer
step. On 16 cores that serial part was ~4.6 s of a 5 s epoch of 784-1024-1024-10 at batch
128. Running the sparse first layer on Numba's threads between BLAS's calls instead made
two pools spin against each other (7.0 s against 2.1 s on 2 cores). So here there is one
pool, Numba's: each phase of a batch is one parallel loop over the threads, and thread t
owns a slice of lanes in every phase:

* forward: the first layer's lanes (whole WIDE blocks, as ``train_loop_lanes``), then for
  each later layer the output lanes of ``pre`` (one sgemm of those columns of ``wt``)
  with their activation;
* backward, per BLAS layer: the output lanes of the weight gradient (sgemm into those
  columns of ``gwt``) and the input lanes of ``dinp`` with their activation's derivative;
  the first layer's weight gradient by lanes (in place for plain SGD);
* the optimizer step on a slice of the work vector.

What no lane split fits (the layers on our own kernels after the last BLAS layer, such
as the 10-wide output, and the loss need whole rows; the bias gradients; the batch's
inputs by column for the first layer's weight gradient) runs on the calling thread between
the parallel loops, or with ``spread`` (``plan.SPREAD_MIN_THREADS`` threads or more) inside
them: the tail by rows in a loop of its own (:func:`tail_rows`), its weight gradients by
input rows and every bias by lanes in the backward loops, the transposition by columns
in the first loop. On 16 cores (Intel Xeon, 784-1024-1024-10, batch 128) the calling
thread's part was 0.65 ms of a 2.2 ms batch; spread, a batch took 1.85 ms
(``scripts/profile_phases.py``). The same floats either way.

Every float is written by exactly one thread, by the same arithmetic whatever the slices
(no partial sums to reduce but the loss, summed in thread order): a run repeats exactly
for a given thread count. The caller limits BLAS to one thread (``threadpoolctl``) around
the call. Arguments as the loops of :mod:`kernels.numba.train`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.numba.blas import bias_sgemm, sgemm
from kernels.numba.codes import PATH_BLAS, PATH_OWN
from kernels.numba.heads import activation_backward
from kernels.numba.net import (
    ONE,
    WIDE,
    ZERO,
    bias_backward,
    dense_backward,
    dense_dweight,
    dense_forward,
    live_lanes,
)
from kernels.numba.optim import update
from kernels.numba.passes import (
    PRANGE_ONLY,
    activate,
    batch_scales,
    first_backward,
    first_forward,
    first_tiles,
    first_width,
    net_head,
    refresh,
    transpose_first,
)
from kernels.numba.split import rows_back, slice_of
from kernels.numba.train import lane_cut, loop_start
from kernels.numba.work import transpose_rows


@njit(cache=True)
def forward_lanes(pre, post, n, work, layers, net, k, q0, q1):
    """Lanes q0..q1-1 of BLAS layer k's pre-activations (bias, then one sgemm of those columns
    of wt; lanes past live_lanes(n_out) left alone, zero) and, below the last layer, of its
    activations."""
    layer = layers[k]
    live = min(q1, live_lanes(layer.n_out))
    if live > q0:
        bias_sgemm(pre, layer.aoff + q0, net.arow, n, post, layers[k - 1].aoff, layer.n_in,
                   work, layer.woff + q0, layer.stride, work, layer.boff + q0,
                   live - q0)  # fmt: skip
    if q1 <= q0:
        return
    activate(post, pre, 0, n, layers, net, k, q0, q1)


@njit(cache=True)
def backward_lanes(grad, delta, pre, post, n, work, layers, net, k, q0, q1, j0, j1):
    """BLAS layer k's weight gradient on its output lanes q0..q1-1 (sgemm into those columns
    of gwt) and dinp on input lanes j0..j1-1 (sgemm of those rows of wt) times the
    derivative of the layer below's activation."""
    layer, below, arow = layers[k], layers[k - 1], net.arow
    s = layer.stride
    live = live_lanes(layer.n_out)
    if min(q1, live) > q0:
        # row-major gwt (n_in, s) += inp^T d on columns q0..q1: column-major, as net.py
        sgemm(False, True, min(q1, live) - q0, layer.n_in, n, ONE, delta, layer.aoff + q0,
              arow, post, below.aoff, arow, ONE, grad, layer.woff + q0, s)  # fmt: skip
    if j1 > j0:
        real = min(max(layer.n_in - j0, 0), j1 - j0)
        if real > 0:
            # row-major dinp (n, real) = d wt[j0:j0+real]^T: column-major dinp^T = wt d^T
            sgemm(True, False, real, n, live, ONE, work, layer.woff + j0 * s, s, delta,
                  layer.aoff, arow, ZERO, delta, below.aoff + j0, arow)  # fmt: skip
        for b in range(n):
            for j in range(j0 + real, j1):
                delta[b * arow + below.aoff + j] = ZERO
        activation_backward(delta, pre, post, below.aoff + j0, arow, n, real, j1 - j0, net.act)


@njit(cache=True, inline="always")
def tail_rows(pre, post, delta, lse, b0, b1, targets, r0, work, wc, layers, net, dscale, tail):
    """Rows b0..b1-1 of the batch through the layers from ``tail`` on (on our kernels, the
    narrow layers after the last BLAS layer: PATH_OWN written in, so that the BLAS branches
    are not compiled into a parallel loop's body, 1.8 s of first compile), the loss head
    (output gradient times dscale) and back to layer tail-1's output gradient times its
    activation's derivative: none of it needs another row. Returns (sum of the rows'
    losses, rows classified right)."""
    m = b1 - b0
    if m <= 0:
        return ZERO, 0
    arow = net.arow
    o = b0 * arow
    n_layers = layers.shape[0]
    for k in range(tail, n_layers):
        layer = layers[k]
        dense_forward(pre, layer.aoff + o, post, layers[k - 1].aoff + o, arow, m, layer.n_in,
                      layer.n_out, work, layer.woff, work, layer.boff, layer.stride,
                      PATH_OWN)  # fmt: skip
        activate(post, pre, o, m, layers, net, k, 0, layer.stride)
    return rows_back(pre, post, delta, lse, b0, m, targets, r0, work, wc, layers, net, dscale,
                     tail, PATH_OWN)  # fmt: skip


@njit(cache=True, inline="always")
def tail_weights(grad, delta, post, n, layers, net, tail, t, shards):
    """Thread t's share of the weight and bias gradients of the layers from ``tail`` on:
    rows j0..j1-1 of each weight (its inputs j0..j1-1, summed over the batch's rows in
    order) and a slice of each bias's lanes: the floats dense_backward makes."""
    arow = net.arow
    for k in range(tail, layers.shape[0]):
        layer, below = layers[k], layers[k - 1]
        s = layer.stride
        j0, j1 = layer.n_in * t // shards, layer.n_in * (t + 1) // shards
        dense_dweight(grad, layer.woff, delta, layer.aoff, post, below.aoff, arow, n,
                      layer.n_out, s, j0, j1, PATH_OWN)  # fmt: skip
        q0, q1 = slice_of(s, t, shards)
        bias_backward(grad, layer.boff + q0, delta, layer.aoff + q0, arow, n, q1 - q0)


@njit(cache=True, nogil=True, parallel=PRANGE_ONLY)
def train_loop_split_lanes(work, wc, state, inputs, targets, totals, batch_size, lrs, step0, layers,
                     net, optim, losses, correct, shards, spread, serial):  # fmt: skip
    """train_loop with every layer split between `shards` threads by lanes (module doc);
    BLAS must run on one thread inside them.

    Exactly one of ``spread`` and ``serial`` is True, the other None (Numba prunes the
    branches of an argument that is None, so each variant compiles only its own code:
    spread, the loop's first compile took 15.3 s against 10.4 s serial for 784-256-256-10
    on an AMD EPYC core; 23.5 s against 12.4 s for 784-1024-1024-10 on the 16-core Xeon,
    before the tail's paths were written in as PATH_OWN). ``spread``: the layers after the
    last BLAS layer and the loss go by rows (:func:`tail_rows`), the biases' and those
    layers' weight gradients by slices, the inputs' transposition by columns, each inside
    the parallel loops. ``serial``: all of that on this thread, between them. The same
    floats either way."""
    n_layers = layers.shape[0]
    arow = net.arow
    n_rows, n_classes, grad, scratch, in_place, w_first, lo = loop_start(
        work, optim, layers, net, inputs, targets, batch_size)  # fmt: skip
    pw = work.shape[0]
    pre, post, delta, lse = scratch[0], scratch[1], scratch[2], scratch[3]
    s0, n_in0 = layers[0].stride, layers[0].n_in
    boff0, aoff0 = layers[0].boff, layers[0].aoff
    width0 = first_width(layers)  # (lanes past it: zero, left alone)
    blocks = -(-width0 // WIDE)
    tail = n_layers  # spread: the layers from `tail` on go by rows (after the last BLAS
    if spread is not None:  # layer: plan_threads picks this loop only where there is one)
        while tail > 2 and layers[tail - 1].path != PATH_BLAS:
            tail -= 1
    part_loss = np.zeros(shards, np.float32)
    part_hits = np.zeros(shards, np.int64)
    for j in range(losses.shape[0]):
        r0 = j * batch_size
        n = min(batch_size, n_rows - r0)
        lr = lrs[j]
        alpha = -lr if in_place else ONE
        dscale, lscale = batch_scales(net, n, n_classes, totals, j)
        first_tiles(scratch[7], n, inputs, r0, layers)  # (read by every thread)
        for t in prange(shards):
            th = np.int64(t)
            qa, qb = lane_cut(width0, blocks, th, shards)
            first_forward(pre, scratch[7], n, inputs, r0, work, layers, net, qa, qb)
            activate(post, pre, 0, n, layers, net, 0, qa, qb)
            if spread is not None:  # the inputs by column, for the first layer's gradient
                transpose_rows(scratch[4], scratch[5], scratch[6], n, inputs.cols, inputs.vals,
                               inputs.starts, inputs.rowmap, r0, alpha, n_in0 * th // shards,
                               n_in0 * (th + 1) // shards)  # fmt: skip
        for k in range(1, tail):
            layer = layers[k]
            s = layer.stride  # (a record cannot go into a prange body in Numba 0.68)
            if layer.path == PATH_BLAS:
                for t in prange(shards):
                    q0, q1 = slice_of(s, t, shards)
                    forward_lanes(pre, post, n, work, layers, net, k, q0, q1)
            else:  # a small layer on our kernels: this thread
                dense_forward(pre, layer.aoff, post, layers[k - 1].aoff, arow, n, layer.n_in,
                              layer.n_out, work, layer.woff, work, layer.boff, layer.stride,
                              layer.path)  # fmt: skip
                activate(post, pre, 0, n, layers, net, k, 0, layer.stride)
        loss, hits = ZERO, 0
        if spread is not None:
            for t in prange(shards):
                th = np.int64(t)
                b0, b1 = n * th // shards, n * (th + 1) // shards
                part_loss[t], part_hits[t] = tail_rows(pre, post, delta, lse, b0, b1, targets,
                                                       r0, work, wc, layers, net, dscale,
                                                       tail)  # fmt: skip
            for t in range(shards):  # in thread order: the same sum run after run
                loss += part_loss[t]
                hits += part_hits[t]
        if serial is not None:
            loss, hits = net_head(delta, pre, post, n, targets, r0, layers, net, dscale, lse)
        for k in range(tail - 1, 0, -1):
            layer, below = layers[k], layers[k - 1]
            s, s_in = layer.stride, below.stride
            boff, aoff = layer.boff, layer.aoff  # (scalars: no record into the prange)
            if layer.path == PATH_BLAS:
                if serial is not None:
                    bias_backward(grad, boff, delta, aoff, arow, n, s)
                for t in prange(shards):
                    th = np.int64(t)
                    q0, q1 = slice_of(s, th, shards)
                    j0, j1 = slice_of(s_in, th, shards)
                    if spread is not None:
                        if k == tail - 1:
                            tail_weights(grad, delta, post, n, layers, net, tail, th, shards)
                        bias_backward(grad, boff + q0, delta, aoff + q0, arow, n, q1 - q0)
                    backward_lanes(grad, delta, pre, post, n, work, layers, net, k, q0, q1, j0,
                                   j1)  # fmt: skip
            else:
                dense_backward(delta, grad, layer.woff, grad, layer.boff, delta, layer.aoff,
                               post, below.aoff, arow, n, layer.n_in, work, wc, layer.coff,
                               layer.n_out, layer.stride, below.stride,
                               layer.path)  # fmt: skip
                activation_backward(delta, pre, post, below.aoff, arow, n, layer.n_in,
                                    below.stride, net.act)  # fmt: skip
        if serial is not None:
            bias_backward(grad, boff0, delta, aoff0, arow, n, s0)
            transpose_first(scratch, n, inputs, r0, alpha)
        for t in prange(shards):
            qa, qb = lane_cut(width0, blocks, t, shards)
            if spread is not None:
                bias_backward(grad, boff0 + qa, delta, aoff0 + qa, arow, n, qb - qa)
            first_backward(w_first, alpha, scratch, n, inputs, r0, layers, net, qa, qb)
        for t in prange(shards):  # the step, elementwise: any slicing gives the same floats
            a = lo + (pw - lo) * t // shards
            b = lo + (pw - lo) * (t + 1) // shards
            update(work, grad, a, b, state.velocity, state.m, state.v, optim, lr, step0 + j + 1)
        refresh(wc, work, layers)
        losses[j] = loss * lscale
        correct[j] = hits
