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
The caller limits BLAS to one thread (``threadpoolctl``) around the call. Arguments as
the loops of :mod:`kernels.numba.train`.
"""

from __future__ import annotations

from numba import njit, prange

from kernels.numba.blas import sgemm
from kernels.numba.codes import PATH_BLAS
from kernels.numba.heads import activation_backward
from kernels.numba.memory import vload, vstore
from kernels.numba.net import ONE, WIDE, ZERO, bias_backward, dense_backward, dense_forward
from kernels.numba.optim import update
from kernels.numba.passes import (
    PRANGE_ONLY,
    activate,
    batch_scales,
    first_backward,
    first_forward,
    net_head,
    refresh,
    transpose_first,
)
from kernels.numba.simd import LANES
from kernels.numba.split import slice_of
from kernels.numba.train import lane_cut, loop_start


@njit(cache=True)
def forward_lanes(pre, post, n, work, layers, net, k, q0, q1):
    """Lanes q0..q1-1 of BLAS layer k's pre-activations (bias, then one sgemm of those columns
    of wt) and, below the last layer, of its activations."""
    if q1 <= q0:
        return
    layer, arow = layers[k], net.arow
    for b in range(n):
        for q in range(q0, q1, LANES):
            vstore(pre, b * arow + layer.aoff + q, vload(work, layer.boff + q))
    sgemm(False, False, q1 - q0, n, layer.n_in, ONE, work, layer.woff + q0, layer.stride,
          post, layers[k - 1].aoff, arow, ONE, pre, layer.aoff + q0, arow)  # fmt: skip
    activate(post, pre, 0, n, layers, net, k, q0, q1)


@njit(cache=True)
def backward_lanes(grad, delta, pre, post, n, work, layers, net, k, q0, q1, j0, j1):
    """BLAS layer k's weight gradient on its output lanes q0..q1-1 (sgemm into those columns
    of gwt) and dinp on input lanes j0..j1-1 (sgemm of those rows of wt) times the
    derivative of the layer below's activation."""
    layer, below, arow = layers[k], layers[k - 1], net.arow
    s = layer.stride
    if q1 > q0:
        # row-major gwt (n_in, s) += inp^T d on columns q0..q1: column-major, as net.py
        sgemm(False, True, q1 - q0, layer.n_in, n, ONE, delta, layer.aoff + q0, arow, post,
              below.aoff, arow, ONE, grad, layer.woff + q0, s)  # fmt: skip
    if j1 > j0:
        real = min(max(layer.n_in - j0, 0), j1 - j0)
        if real > 0:
            # row-major dinp (n, real) = d wt[j0:j0+real]^T: column-major dinp^T = wt d^T
            sgemm(True, False, real, n, s, ONE, work, layer.woff + j0 * s, s, delta,
                  layer.aoff, arow, ZERO, delta, below.aoff + j0, arow)  # fmt: skip
        for b in range(n):
            for j in range(j0 + real, j1):
                delta[b * arow + below.aoff + j] = ZERO
        activation_backward(delta, pre, post, below.aoff + j0, arow, n, real, j1 - j0, net.act)


@njit(cache=True, nogil=True, parallel=PRANGE_ONLY)
def train_loop_split_lanes(work, wc, state, inputs, targets, totals, batch_size, lrs, step0, layers,
                     net, optim, losses, correct, shards):  # fmt: skip
    """train_loop with every layer split between `shards` threads by lanes (module doc);
    BLAS must run on one thread inside them."""
    n_layers = layers.shape[0]
    arow = net.arow
    n_rows, n_classes, grad, scratch, in_place, w_first, lo = loop_start(
        work, optim, layers, net, inputs, targets, batch_size)  # fmt: skip
    pw = work.shape[0]
    pre, post, delta, lse = scratch[0], scratch[1], scratch[2], scratch[3]
    s0 = layers[0].stride
    blocks = -(-s0 // WIDE)
    for j in range(losses.shape[0]):
        r0 = j * batch_size
        n = min(batch_size, n_rows - r0)
        lr = lrs[j]
        alpha = -lr if in_place else ONE
        dscale, lscale = batch_scales(net, n, n_classes, totals, j)
        for t in prange(shards):
            qa, qb = lane_cut(s0, blocks, t, shards)
            first_forward(pre, n, inputs, r0, work, layers, net, qa, qb)
            activate(post, pre, 0, n, layers, net, 0, qa, qb)
        for k in range(1, n_layers):
            layer = layers[k]
            s = layer.stride  # (a record cannot go into a prange body in Numba 0.68)
            if layer.path == PATH_BLAS:
                for t in prange(shards):
                    q0, q1 = slice_of(s, t, shards)
                    forward_lanes(pre, post, n, work, layers, net, k, q0, q1)
            else:  # a small layer on our kernels: this thread
                dense_forward(pre, layer.aoff, post, layers[k - 1].aoff, arow, n, layer.n_in,
                              work, layer.woff, work, layer.boff, layer.stride,
                              layer.path)  # fmt: skip
                activate(post, pre, 0, n, layers, net, k, 0, layer.stride)
        loss, hits = net_head(delta, pre, post, n, targets, r0, layers, net, dscale, lse)
        for k in range(n_layers - 1, 0, -1):
            layer, below = layers[k], layers[k - 1]
            s, s_in = layer.stride, below.stride
            if layer.path == PATH_BLAS:
                bias_backward(grad, layer.boff, delta, layer.aoff, arow, n, s)
                for t in prange(shards):
                    q0, q1 = slice_of(s, t, shards)
                    j0, j1 = slice_of(s_in, t, shards)
                    backward_lanes(grad, delta, pre, post, n, work, layers, net, k, q0, q1, j0,
                                   j1)  # fmt: skip
            else:
                dense_backward(delta, grad, layer.woff, grad, layer.boff, delta, layer.aoff,
                               post, below.aoff, arow, n, layer.n_in, work, wc, layer.coff,
                               layer.n_out, layer.stride, below.stride,
                               layer.path)  # fmt: skip
                activation_backward(delta, pre, post, below.aoff, arow, n, layer.n_in,
                                    below.stride, net.act)  # fmt: skip
        bias_backward(grad, layers[0].boff, delta, layers[0].aoff, arow, n, s0)
        transpose_first(scratch, n, inputs, r0, alpha)
        for t in prange(shards):
            qa, qb = lane_cut(s0, blocks, t, shards)
            first_backward(w_first, alpha, scratch, n, inputs, r0, layers, net, qa, qb)
        for t in prange(shards):  # the step, elementwise: any slicing gives the same floats
            a = lo + (pw - lo) * t // shards
            b = lo + (pw - lo) * (t + 1) // shards
            update(work, grad, a, b, state.velocity, state.m, state.v, optim, lr, step0 + j + 1)
        refresh(wc, work, layers)
        losses[j] = loss * lscale
        correct[j] = hits
