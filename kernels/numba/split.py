"""Networks with BLAS layers on 2 threads and batches of 64 rows a thread or more
(``train_loop_split``, plan "split_rows" in ``plan.plan_threads``): each thread runs the
whole loop on its share, and the threads meet twice a batch; BLAS on one thread inside
each.

Giving the threads to BLAS (``train_loop`` with BLAS's own threads) leaves everything
between the sgemm calls on one thread: the sparse first layer, activations, the optimizer
step. On 16 cores that serial part was ~4.6 s of a 5 s epoch of 784-1024-1024-10 at batch
128. Running the sparse first layer on Numba's threads between BLAS's calls instead made
two pools spin against each other (7.0 s against 2.1 s on 2 cores). So here there is one
set of threads, ours, and each batch is two passes with a meeting after each
(:func:`kernels.numba.barrier.meet`), where the lane split has five parallel loops for
784-256-256-10 and runs the loss, the bias gradients and the 10-wide layer on one thread:

* weights of the batch before, then this batch's first layer (:func:`weights_pass`,
  :func:`first_lanes`): thread t owns a slice of every layer's parameters: whole WIDE
  blocks of the first layer's lanes (its weight gradient in place for plain SGD, else
  stepped row by row), a slice of the input rows of each later layer's weight (one sgemm
  over the whole batch; for the second layer the same lanes of the first layer's
  activations) and a slice of every bias; it takes the optimizer step on exactly what it
  owns, then computes its lanes of the next batch's first layer from the weights it has
  just stepped, so each core reads only its half of the first layer's weights (784 x 272
  floats are 853 KB; L2 is 1 MB);
* rows (:func:`rows_pass`): thread t owns a slice of the batch's rows and takes them
  through every later layer forward (one sgemm per layer on its rows), the loss head,
  and back down to the first layer's output gradient (dinp of each layer, times the
  activation's derivative): none of it needs another row.

Nothing runs on one thread between them: each thread also puts its rows' inputs by column
(:func:`transpose_part`, for the first layer's weight gradient) in the rows pass, where
one thread transposed the whole batch before (69 us a batch of 128, 32 ms an epoch of
784-wide MNIST, measured alone; the other thread waited). Every float is written by
exactly one thread; the rows' losses are summed in thread order: a run repeats exactly
for a given thread count.

The threads are started from Python (``network._split_rows``: this one and the forward
pool's, each running :func:`train_loop_split` without the GIL) rather than by a Numba
parallel loop: Numba compiles a ``prange`` body again as a function of its own, with two
wrappers, each optimising and emitting everything the body inlines. First ``fit`` of
784-256-256-10 at batch 128 on 2 threads from an empty cache: 10.1 s with the two
parallel loops, 5.7-5.8 s this way (the same floats, checked bit for bit; epochs as fast,
interleaved A/B on 2 cores). The passes are ``inline="always"``, typed into the loop, and
every layer after the first runs on sgemm here, whatever its path (the 10-wide output
layer too): our own kernels for it (dense_forward, the own paths of dense_dinp and
dense_dweight) cost ~3 s of first compile for ~9 us a batch on each thread at 64 rows
(own vs sgemm, us per call: forward 4.0 vs 6.6, dinp 1.8 vs 6.4, half the weight
gradient 2.4 vs 4.1); no weight copy (``wc``) to refresh then.

The caller limits BLAS to one thread (``threadpoolctl``) around the call. Arguments as the
loops of :mod:`kernels.numba.train`. Up to ``plan.ROW_SPLIT_MAX_THREADS`` threads; above,
:mod:`kernels.numba.split_lanes` (a few rows a thread make an sgemm repack all the weights).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.numba.barrier import meet
from kernels.numba.blas import bias_sgemm
from kernels.numba.codes import PATH_BLAS
from kernels.numba.heads import activation_backward, loss_head
from kernels.numba.net import (
    ONE,
    WIDE,
    ZERO,
    bias_backward,
    dense_dinp,
    dense_dweight,
    live_lanes,
    sparse_backward,
)
from kernels.numba.optim import update, update_rows
from kernels.numba.passes import activate, batch_scales, first_forward, first_tiles, first_width
from kernels.numba.simd import LANES
from kernels.numba.train import lane_cut
from kernels.numba.work import transpose_rows


@njit(cache=True, inline="always")
def slice_of(s, t, shards):
    """Thread t's lanes [q0, q1) of s lanes (a multiple of 16): whole vectors."""
    units = s // LANES
    return units * t // shards * LANES, units * (t + 1) // shards * LANES


@njit(cache=True, inline="always")
def first_lanes(pre, post, tiles, n, inputs, r0, work, layers, net, qa, qb):
    """Lanes qa..qb-1 of the first layer's pre-activations and activations, n rows (tiles:
    this thread's scratch for first_tiles: every thread finds the rows' tiles itself, no
    serial step or meeting for it)."""
    first_tiles(tiles, n, inputs, r0, layers)
    first_forward(pre, tiles, n, inputs, r0, work, layers, net, qa, qb)
    activate(post, pre, 0, n, layers, net, 0, qa, qb)


@njit(cache=True, inline="always")
def rows_pass(pre, post, delta, lse, b0, b1, inputs, targets, r0, work, wc, layers, net,
              dscale):  # fmt: skip
    """Rows b0..b1-1 of the batch at r0 forward through every layer, through the loss head
    (output gradient times dscale) and back to the first layer's output gradient, times
    its activation's derivative. Returns (sum of the rows' losses, rows classified right).

    Row b of a layer's buffers is at b * arow + its offset: the rows' own slice of the
    batch's buffers, so the kernels run as for a batch of b1 - b0 rows.
    """
    m = b1 - b0
    if m <= 0:
        return ZERO, 0
    arow = net.arow
    o = b0 * arow
    for k in range(1, layers.shape[0]):  # (the first layer: first_lanes, before)
        layer = layers[k]
        bias_sgemm(pre, layer.aoff + o, arow, m, post, layers[k - 1].aoff + o, layer.n_in, work,
                   layer.woff, layer.stride, work, layer.boff, live_lanes(layer.n_out))  # fmt: skip
        activate(post, pre, o, m, layers, net, k, 0, layer.stride)
    return rows_back(pre, post, delta, lse, b0, m, targets, r0, work, wc, layers, net, dscale,
                     1, PATH_BLAS)  # fmt: skip


@njit(cache=True, inline="always")
def rows_back(pre, post, delta, lse, b0, m, targets, r0, work, wc, layers, net, dscale, stop,
              path):  # fmt: skip
    """The loss head of the m rows from b0 (their forward pass done; output gradient times
    dscale) and their way back down to layer `stop`: each layer's dinp, on ``path``'s
    kernels (a constant in every caller, so the other path is not compiled), times the
    derivative of the activation below. Returns (sum of the rows' losses, rows classified
    right)."""
    arow = net.arow
    o = b0 * arow
    n_layers = layers.shape[0]
    last = layers[n_layers - 1]
    loss, hits = loss_head(delta, post, pre, last.aoff + o, arow, m, last.n_out, last.stride,
                           targets.labels, targets.target, targets.weight, targets.order,
                           r0 + b0, dscale, lse[b0:], net.out_act)  # fmt: skip
    for k in range(n_layers - 1, stop - 1, -1):
        layer, below = layers[k], layers[k - 1]
        dense_dinp(delta, below.aoff + o, delta, layer.aoff + o, arow, m, layer.n_in, work,
                   layer.woff, wc, layer.coff, layer.n_out, layer.stride, below.stride,
                   path)  # fmt: skip
        activation_backward(delta, pre, post, below.aoff + o, arow, m, layer.n_in, below.stride,
                            net.act)  # fmt: skip
    return loss, hits


@njit(cache=True, inline="always")
def transpose_part(parts, t, n, inputs, r0, alpha):
    """Rows r0..r0+n-1 of the batch by input column, values times alpha, into part t
    (transpose_rows): each thread its own rows, no serial transposition between loops."""
    t_starts, t_rows, t_vals = parts
    transpose_rows(t_starts[t], t_rows[t], t_vals[t], n, inputs.cols, inputs.vals, inputs.starts,
                   inputs.rowmap, r0, alpha, np.int64(0), t_starts.shape[1] - 2)  # fmt: skip


@njit(cache=True, inline="always")
def weights_pass(work, grad, w_first, alpha, scratch, parts, n, inputs, r0, layers, net, qa, qb,
                 t, shards, state, optim, in_place, lr, step):  # fmt: skip
    """Thread t's share of the batch's weight gradients, and the step on it: the first
    layer's lanes qa..qb-1 (whole WIDE blocks) of its weights (into w_first times alpha;
    stepped here row by row unless in place) and bias, then for each later layer rows
    j0..j1-1 of its weight (inputs j0..j1-1: for the second layer the lanes qa..qb-1 of
    the first layer's activations, which this thread overwrites next) and its lanes of
    the bias. The first layer's gradient reads the batch's inputs by column in `shards`
    parts (``parts``, one per slice of rows, by :func:`transpose_part`), part after part:
    each weight takes its rows' terms in row order, the same floats as from one part."""
    post, delta = scratch[1], scratch[2]
    arow = net.arow
    first = layers[0]
    s0 = first.stride
    t_starts, t_rows, t_vals = parts
    for p in range(shards):
        b0, b1 = n * p // shards, n * (p + 1) // shards
        if b1 > b0:
            sparse_backward(w_first, first.woff, delta, first.aoff + b0 * arow, arow, b1 - b0,
                            inputs.cols, inputs.vals, inputs.starts, inputs.rowmap, r0 + b0,
                            alpha, s0, qa, qb, t_starts[p], t_rows[p], t_vals[p])  # fmt: skip
    if not in_place:  # elementwise: any slicing gives the same floats
        update_rows(work, grad, first.woff, first.n_in, s0, qa, qb, state.velocity, state.m,
                    state.v, optim, lr, step)  # fmt: skip
    bias_backward(grad, first.boff + qa, delta, first.aoff + qa, arow, n, qb - qa)
    update(work, grad, first.boff + qa, first.boff + qb, state.velocity, state.m, state.v,
           optim, lr, step)  # fmt: skip
    for k in range(1, layers.shape[0]):
        layer, below = layers[k], layers[k - 1]
        s = layer.stride
        if k == 1:
            j0, j1 = min(qa, layer.n_in), min(qb, layer.n_in)
        else:
            j0, j1 = layer.n_in * t // shards, layer.n_in * (t + 1) // shards
        dense_dweight(grad, layer.woff, delta, layer.aoff, post, below.aoff, arow, n,
                      layer.n_out, s, j0, j1, PATH_BLAS)  # fmt: skip
        update(work, grad, layer.woff + j0 * s, layer.woff + j1 * s, state.velocity, state.m,
               state.v, optim, lr, step)  # fmt: skip
        q0, q1 = slice_of(s, t, shards)
        bias_backward(grad, layer.boff + q0, delta, layer.aoff + q0, arow, n, q1 - q0)
        update(work, grad, layer.boff + q0, layer.boff + q1, state.velocity, state.m, state.v,
               optim, lr, step)  # fmt: skip


@njit(cache=True, nogil=True)
def train_loop_split(th, sync, work, wc, state, inputs, targets, totals, batch_size, lrs, step0,
                     layers, net, optim, losses, correct, shards, grad, scratch, in_place, parts,
                     part_loss, part_hits, tiles):  # fmt: skip
    """Thread th's part of train_loop on `shards` threads (module doc); every thread runs
    this at once, on the gradient buffer and row scratch of one ``loop_start``, the batch's
    inputs by column in `shards` parts (``parts``: (shards, fan_in + 2) int64, (shards,
    entries) int64 and float32), each thread's loss and hits of its rows (zeros) and its
    scratch for the rows' tiles (``tiles``: (shards, batch rows, tiles + 1) int64), and
    they meet (``sync``, zeros) after each of a batch's two passes and after the last
    batch's weights. BLAS must run on one thread."""
    n_rows = targets.order.shape[0]
    n_classes = layers[layers.shape[0] - 1].n_out
    w_first = work if in_place else grad
    pre, post, delta, lse = scratch[0], scratch[1], scratch[2], scratch[3]
    s0 = first_width(layers)
    qa, qb = lane_cut(s0, -(-s0 // WIDE), th, shards)
    n_batches = losses.shape[0]
    met = np.int64(0)
    # batch j - 1's weights (the step) and batch j's first layer in one pass: each thread
    # reads only the first-layer weights it has just stepped
    n_done, r0_done, lr_done, alpha_done = np.int64(0), np.int64(0), ZERO, ONE  # (not a literal 0)
    for j in range(n_batches + 1):
        r0 = j * batch_size
        n = min(batch_size, n_rows - r0) if j < n_batches else 0
        if j > 0:
            weights_pass(work, grad, w_first, alpha_done, scratch, parts, n_done, inputs,
                         r0_done, layers, net, qa, qb, th, shards, state, optim, in_place,
                         lr_done, step0 + j)  # fmt: skip
        if n > 0:
            first_lanes(pre, post, tiles[th], n, inputs, r0, work, layers, net, qa, qb)
        met += shards
        meet(sync, met)
        if j == n_batches:
            break
        lr = lrs[j]
        alpha = -lr if in_place else ONE
        dscale, lscale = batch_scales(net, n, n_classes, totals, j)
        b0, b1 = n * th // shards, n * (th + 1) // shards
        transpose_part(parts, th, b1 - b0, inputs, r0 + b0, alpha)
        part_loss[th], part_hits[th] = rows_pass(pre, post, delta, lse, b0, b1, inputs, targets,
                                                 r0, work, wc, layers, net, dscale)  # fmt: skip
        met += shards
        meet(sync, met)
        if th == 0:  # (the parts are rewritten only after the next meeting, this thread's too)
            loss = ZERO
            hits = 0
            for t in range(shards):  # in thread order: the same sum run after run
                loss += part_loss[t]
                hits += part_hits[t]
            losses[j] = loss * lscale
            correct[j] = hits
        n_done, r0_done, lr_done, alpha_done = n, r0, lr, alpha
