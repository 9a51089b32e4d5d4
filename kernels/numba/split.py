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

Every float is written by exactly one thread, by the same arithmetic whatever the slices
(no partial sums to reduce): a run repeats exactly for a given thread count. The small
layers on our own kernels (the 10-wide output) and the loss run on the calling thread.
The caller limits BLAS to one thread (``threadpoolctl``) around the call.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.numba.blas import sgemm
from kernels.numba.codes import (
    ACT,
    AOFF,
    AROW,
    BOFF,
    COFF,
    OPT,
    OUT_ACT,
    PATH,
    PATH_BLAS,
    SIZES,
    SOFTMAX,
    STRIDE,
    WOFF,
)
from kernels.numba.heads import activation_backward, activation_forward
from kernels.numba.net import ONE, WIDE, ZERO, bias_backward, dense_backward, dense_forward
from kernels.numba.simd import LANES, vload, vstore
from kernels.numba.train import (
    PRANGE_ONLY,
    first_backward,
    first_forward,
    first_layer_target,
    lane_cut,
    most_entries,
    net_head,
    refresh,
    row_scratch,
    scales,
    transpose_first,
    update,
)


@njit(cache=True, inline="always")
def slice_of(s, t, shards):
    """Thread t's lanes [q0, q1) of s lanes (a multiple of 16): whole vectors."""
    units = s // LANES
    return units * t // shards * LANES, units * (t + 1) // shards * LANES


@njit(cache=True)
def forward_lanes(pre, post, n, work, geo, codes, layer, q0, q1):
    """Lanes q0..q1-1 of a BLAS layer's pre-activations (bias, then one sgemm of those columns
    of wt) and, below the last layer, of its activations."""
    arow = codes[AROW]
    o0, s = geo[AOFF, layer], geo[STRIDE, layer]
    if q1 <= q0:
        return
    b0 = geo[BOFF, layer]
    for b in range(n):
        for q in range(q0, q1, LANES):
            vstore(pre, b * arow + o0 + q, vload(work, b0 + q))
    sgemm(False, False, q1 - q0, n, geo[SIZES, layer], ONE, work, geo[WOFF, layer] + q0, s,
          post, geo[AOFF, layer - 1], arow, ONE, pre, o0 + q0, arow)  # fmt: skip
    activate_lanes(pre, post, n, geo, codes, layer, q0, q1)


@njit(cache=True, inline="always")
def activate_lanes(pre, post, n, geo, codes, layer, q0, q1):
    """post = act(pre) on lanes q0..q1-1 of a layer (the last: unless its output is a softmax,
    which the head computes)."""
    arow = codes[AROW]
    o0, m = geo[AOFF, layer], geo[SIZES, layer + 1]
    act = codes[ACT] if layer < geo.shape[1] - 2 else codes[OUT_ACT]
    if layer == geo.shape[1] - 2 and act == SOFTMAX:
        return
    real = min(max(m - q0, 0), q1 - q0)
    activation_forward(post, pre, o0 + q0, arow, n, real, q1 - q0, act)


@njit(cache=True)
def backward_lanes(grad, delta, pre, post, n, work, geo, codes, layer, q0, q1, j0, j1):
    """A BLAS layer's weight gradient on its output lanes q0..q1-1 (sgemm into those columns of
    gwt) and dinp on input lanes j0..j1-1 (sgemm of those rows of wt) times the derivative
    of the layer below's activation."""
    arow = codes[AROW]
    o0, i0 = geo[AOFF, layer], geo[AOFF, layer - 1]
    n_in, s = geo[SIZES, layer], geo[STRIDE, layer]
    w0 = geo[WOFF, layer]
    if q1 > q0:
        # row-major gwt (n_in, s) += inp^T d on columns q0..q1: column-major, as net.py
        sgemm(False, True, q1 - q0, n_in, n, ONE, delta, o0 + q0, arow, post, i0, arow, ONE,
              grad, w0 + q0, s)  # fmt: skip
    if j1 > j0:
        real = min(max(n_in - j0, 0), j1 - j0)
        if real > 0:
            # row-major dinp (n, real) = d wt[j0:j0+real]^T: column-major dinp^T = wt d^T
            sgemm(True, False, real, n, s, ONE, work, w0 + j0 * s, s, delta, o0, arow, ZERO,
                  delta, i0 + j0, arow)  # fmt: skip
        for b in range(n):
            for j in range(j0 + real, j1):
                delta[b * arow + i0 + j] = ZERO
        activation_backward(delta, pre, post, i0 + j0, arow, n, real, j1 - j0, codes[ACT])


@njit(cache=True, parallel=PRANGE_ONLY)
def train_loop_split(work, wc, velocity, m, v, inputs, labels, target, order, batch_size, lrs,
                     step0, geo, codes, hyper, losses, correct, shards):  # fmt: skip
    """train_loop (same arguments, and `shards` threads) with every layer split between the
    threads by lanes (module doc); BLAS must run on one thread inside them."""
    n_layers = geo.shape[1] - 1
    n_classes = geo[SIZES, n_layers]
    opt, arow = codes[OPT], codes[AROW]
    n_rows = order.shape[0]
    rows = min(batch_size, n_rows)
    pw = work.shape[0]
    grad = np.zeros(pw, np.float32)
    scratch = row_scratch(rows, arow, geo[SIZES, 0], most_entries(inputs, n_rows, batch_size))
    pre, post, delta, lse = scratch[0], scratch[1], scratch[2], scratch[3]
    in_place, w_first, lo = first_layer_target(work, grad, opt, hyper, geo)
    s0 = geo[STRIDE, 0]
    blocks = -(-s0 // WIDE)
    for j in range(losses.shape[0]):
        r0 = j * batch_size
        n = min(batch_size, n_rows - r0)
        lr = lrs[j]
        alpha = -lr if in_place else ONE
        dscale, lscale = scales(codes, n, n_classes)
        for t in prange(shards):
            qa, qb = lane_cut(s0, blocks, t, shards)
            first_forward(pre, n, inputs, r0, work, geo, codes, qa, qb)
            activate_lanes(pre, post, n, geo, codes, 0, qa, qb)
        for layer in range(1, n_layers):
            if geo[PATH, layer] == PATH_BLAS:
                s = geo[STRIDE, layer]
                for t in prange(shards):
                    q0, q1 = slice_of(s, t, shards)
                    forward_lanes(pre, post, n, work, geo, codes, layer, q0, q1)
            else:  # a small layer on our kernels: this thread
                dense_forward(pre, geo[AOFF, layer], post, geo[AOFF, layer - 1], arow, n,
                              geo[SIZES, layer], work, geo[WOFF, layer], work, geo[BOFF, layer],
                              geo[STRIDE, layer], geo[PATH, layer])  # fmt: skip
                activate_lanes(pre, post, n, geo, codes, layer, 0, geo[STRIDE, layer])
        loss, hits = net_head(delta, pre, post, n, labels, target, order, r0, geo, codes, dscale,
                              lse)  # fmt: skip
        for layer in range(n_layers - 1, 0, -1):
            o0, i0 = geo[AOFF, layer], geo[AOFF, layer - 1]
            s, s_in = geo[STRIDE, layer], geo[STRIDE, layer - 1]
            if geo[PATH, layer] == PATH_BLAS:
                bias_backward(grad, geo[BOFF, layer], delta, o0, arow, n, s)
                for t in prange(shards):
                    q0, q1 = slice_of(s, t, shards)
                    j0, j1 = slice_of(s_in, t, shards)
                    backward_lanes(grad, delta, pre, post, n, work, geo, codes, layer, q0, q1,
                                   j0, j1)  # fmt: skip
            else:
                dense_backward(delta, grad, geo[WOFF, layer], grad, geo[BOFF, layer], delta, o0,
                               post, i0, arow, n, geo[SIZES, layer], work, wc, geo[COFF, layer],
                               geo[SIZES, layer + 1], s, s_in, geo[PATH, layer])  # fmt: skip
                activation_backward(delta, pre, post, i0, arow, n, geo[SIZES, layer], s_in,
                                    codes[ACT])  # fmt: skip
        bias_backward(grad, geo[BOFF, 0], delta, geo[AOFF, 0], arow, n, s0)
        transpose_first(scratch, n, inputs, r0, alpha)
        for t in prange(shards):
            qa, qb = lane_cut(s0, blocks, t, shards)
            first_backward(w_first, alpha, scratch, n, inputs, r0, geo, codes, qa, qb)
        for t in prange(shards):  # the step, elementwise: any slicing gives the same floats
            a = lo + (pw - lo) * t // shards
            b = lo + (pw - lo) * (t + 1) // shards
            update(work, grad, a, b, velocity, m, v, opt, lr, hyper, step0 + j + 1)
        refresh(wc, work, geo)
        losses[j] = loss * lscale
        correct[j] = hits
