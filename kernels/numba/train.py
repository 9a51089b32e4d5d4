"""The numba backend's network functions, compiled: whole passes over many rows per call.

``train_loop`` runs every mini-batch of a ``train_steps`` call inside one compiled call:
no Python between batches. Per batch: gather the rows' non-zero inputs, forward through
every layer, loss and output gradient, backward into the gradient, one optimizer step
on the work vector, refresh of the small weight copies (see :mod:`kernels.numba.net`).

For plain SGD without weight decay (the classic MNIST run) the first layer's weights
get no gradient buffer: once every row of the batch has gone forward, each row adds
``-lr * x * delta`` to the weight rows of its non-zero pixels, in place. That skips
zeroing, filling and sweeping 12,544 gradient floats per batch for the ~4,800 that
change.

``train_loop_threads`` splits each batch into ``shards`` contiguous slices of rows
(prange), each with its own gradient buffer (row ``s`` of ``(shards, PW)``) and
scratch; the partial gradients are then summed in shard order, so a run is repeatable
for a given thread count. No thread writes where another one does.

First compile (a first run's cold cache; the default run on 2 cores: train_loop ~4.8 s
and forward_rows ~1 s, against 7.2 s and 3.6 s before these measures). Each compiled
function has its own LLVM module, into which the code of every function it calls is
linked, then optimised (O3) and emitted again: a chain train_loop -> rows_grad ->
net_forward -> dense_forward paid for dense_forward at every level. So the thin glue
(``rows_grad``, ``net_forward``, ``net_head``, ``net_backward``) is ``inline="always"``:
typed straight into its caller, no module of its own (~2.8 s less). The layer kernels of
:mod:`kernels.numba.net` stay separate functions, compiled once each: inlining them too
made train_loop slower to compile (7.6 s: one huge function for LLVM). The epoch runs
as fast either way. A literal argument (a ``0`` written in a call) compiles a kernel
once more for its own type: pass an int64.

Geometry ``geo`` (int64, rows SIZES .. PATH), ``codes`` (int64: ACT .. AROW) and ``hyper``
(float64, as given: MU .. WEIGHT_DECAY) are indexed by the names of :mod:`kernels.numba.codes`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from numba.core.cpu import ParallelOptions

from kernels.numba.codes import (
    ACT,
    AOFF,
    AROW,
    BETA1,
    BETA2,
    BOFF,
    COFF,
    CROSS_ENTROPY,
    EPS,
    LOSS,
    MOMENTUM,
    MU,
    OPT,
    OUT_ACT,
    PATH,
    SGD,
    SIZES,
    SOFTMAX,
    STRIDE,
    WEIGHT_DECAY,
    WOFF,
)
from kernels.numba.heads import (
    activation_backward,
    activation_forward,
    mse,
    softmax,
    softmax_xent,
)
from kernels.numba.net import (
    ONE,
    TWO,
    WIDE,
    ZERO,
    bias_backward,
    dense_backward,
    dense_forward,
    sparse_backward,
    sparse_forward,
    transpose_rows,
)
from kernels.numba.simd import LANES
from kernels.numba.work import gather_rows, refresh_copies

f32 = np.float32
# parallel=True would also turn every np.zeros of a function into a parallel loop, each one
# a gufunc to compile (~1.2 s of train_loop_threads' first compile): only prange is wanted.
PRANGE_ONLY = ParallelOptions(
    {"prange": True, "comprehension": False, "reduction": False, "inplace_binop": False,
     "setitem": False, "numpy": False, "stencil": False, "fusion": False}
)  # fmt: skip


@njit(cache=True, inline="always")
def first_forward(pre, n, inputs, r0, work, geo, codes, qa, qb):
    """Lanes qa..qb-1 of the first layer's pre-activations for n rows (batch row b is CSR
    row rowmap[r0 + b] of inputs = (cols, vals, starts, rowmap))."""
    cols, vals, starts, rowmap = inputs
    sparse_forward(pre, geo[AOFF, 0], codes[AROW], n, cols, vals, starts, rowmap, r0, work,
                   geo[WOFF, 0], work, geo[BOFF, 0], geo[STRIDE, 0], qa, qb)  # fmt: skip


@njit(cache=True, inline="always")
def net_forward(pre, post, n, inputs, r0, work, geo, codes, qa, qb):
    """pre/post = pre-activations and activations of every layer for n rows, the first
    layer's lanes qa..qb-1 computed here (0, 0: the caller has computed them).

    The last layer's post is left alone for a softmax output (the head computes it).
    """
    act, out_act, arow = codes[ACT], codes[OUT_ACT], codes[AROW]
    n_layers = geo.shape[1] - 1
    first_forward(pre, n, inputs, r0, work, geo, codes, qa, qb)
    for layer in range(n_layers):
        o0, s, m = geo[AOFF, layer], geo[STRIDE, layer], geo[SIZES, layer + 1]
        if layer > 0:
            dense_forward(pre, o0, post, geo[AOFF, layer - 1], arow, n, geo[SIZES, layer], work,
                          geo[WOFF, layer], work, geo[BOFF, layer], s,
                          geo[PATH, layer])  # fmt: skip
        if layer < n_layers - 1:
            activation_forward(post, pre, o0, arow, n, m, s, act)
        elif out_act != SOFTMAX:
            activation_forward(post, pre, o0, arow, n, m, s, out_act)


@njit(cache=True, inline="always")
def net_head(delta, pre, post, n, labels, target, order, r0, geo, codes, scale, lse):
    """Loss of n rows into the output gradient delta (scaled by `scale`).

    Returns (sum of the rows' losses, rows classified right).
    """
    arow = codes[AROW]
    last = geo.shape[1] - 2
    o0, m, s = geo[AOFF, last], geo[SIZES, last + 1], geo[STRIDE, last]
    if codes[LOSS] == CROSS_ENTROPY:
        return softmax_xent(delta, post, pre, o0, arow, n, m, s, labels, order, r0, scale, lse)
    return mse(delta, post, pre, o0, arow, n, m, s, target, order, r0, scale, codes[OUT_ACT])


@njit(cache=True, inline="always")
def net_backward(grad, w_first, alpha, scratch, n, inputs, r0, work, wc, geo, codes, qa, qb):
    """Backpropagate the output gradient (in delta) of n rows, adding into grad; the first
    layer's weight gradient for lanes qa..qb-1 only (0, 0: the caller does it).

    The first layer's weight gradient goes into w_first scaled by alpha: grad and 1, or the
    weights themselves and -lr (in-place SGD).
    """
    pre, post, delta = scratch[0], scratch[1], scratch[2]
    act, arow = codes[ACT], codes[AROW]
    n_layers = geo.shape[1] - 1
    for layer in range(n_layers - 1, 0, -1):
        o0, i0 = geo[AOFF, layer], geo[AOFF, layer - 1]
        m, s_in = geo[SIZES, layer], geo[STRIDE, layer - 1]
        dense_backward(delta, grad, geo[WOFF, layer], grad, geo[BOFF, layer], delta, o0, post,
                       i0, arow, n, m, work, wc, geo[COFF, layer], geo[SIZES, layer + 1],
                       geo[STRIDE, layer], s_in, geo[PATH, layer])  # fmt: skip
        activation_backward(delta, pre, post, i0, arow, n, m, s_in, act)
    bias_backward(grad, geo[BOFF, 0], delta, geo[AOFF, 0], arow, n, geo[STRIDE, 0])
    if qb - qa >= WIDE:
        transpose_first(scratch, n, inputs, r0, alpha)
    first_backward(w_first, alpha, scratch, n, inputs, r0, geo, codes, qa, qb)


@njit(cache=True, inline="always")
def transpose_first(scratch, n, inputs, r0, alpha):
    """The batch's first-layer inputs by column, times alpha, into scratch (sparse_backward)."""
    cols, vals, starts, rowmap = inputs
    transpose_rows(scratch[4], scratch[5], scratch[6], n, cols, vals, starts, rowmap, r0, alpha)


@njit(cache=True, inline="always")
def first_backward(w_first, alpha, scratch, n, inputs, r0, geo, codes, qa, qb):
    """Lanes qa..qb-1 of the first layer's weight gradient, into w_first times alpha."""
    cols, vals, starts, rowmap = inputs
    sparse_backward(w_first, geo[WOFF, 0], scratch[2], geo[AOFF, 0], codes[AROW], n, cols, vals,
                    starts, rowmap, r0, alpha, geo[STRIDE, 0], qa, qb, scratch[4], scratch[5],
                    scratch[6])  # fmt: skip


# error_model="numpy": a float division by zero gives inf as in NumPy (the trainer
# watches for divergence) instead of raising, and without that check in the loop
# LLVM vectorises Adam's update: 146 ms -> 12 ms per 1,875 steps of 12,730 parameters.
@njit(cache=True, error_model="numpy")
def update(work, grad, lo, hi, velocity, m, v, opt, lr, hyper, step):
    """One optimizer step on work[lo:hi] with grad[lo:hi], which is then zeroed.

    The arithmetic is float32 except Adam's 1 - beta and bias corrections 1 - beta**step,
    computed once per step in float64 from the hyper-parameters as given (as PyTorch does).
    The loops run over views starting at lo: an index from 0 is never negative, so LLVM
    drops Numba's negative-index wraparound, which keeps ``range(lo, hi)`` from being
    vectorised (14 ms more per epoch at batch 32 when every parameter is updated).
    """
    mu, wd = f32(hyper[MU]), f32(hyper[WEIGHT_DECAY])
    w, gr = work[lo:hi], grad[lo:hi]
    if opt == SGD:
        for p in range(w.shape[0]):
            g = gr[p] + wd * w[p]
            w[p] -= lr * g
            gr[p] = ZERO
    elif opt == MOMENTUM:
        vel = velocity[lo:hi]
        for p in range(w.shape[0]):
            g = gr[p] + wd * w[p]
            vel[p] = mu * vel[p] + g
            w[p] -= lr * vel[p]
            gr[p] = ZERO
    else:
        beta1, beta2, eps = f32(hyper[BETA1]), f32(hyper[BETA2]), f32(hyper[EPS])
        # 1 - beta in float64 first: 1 - float32(0.999) is 1.3e-5 away from 0.001
        rest1, rest2 = f32(1.0 - hyper[BETA1]), f32(1.0 - hyper[BETA2])
        c1 = f32(1.0 - hyper[BETA1] ** step)
        c2 = f32(1.0 - hyper[BETA2] ** step)
        m1, v1 = m[lo:hi], v[lo:hi]
        for p in range(w.shape[0]):
            g = gr[p] + wd * w[p]
            m1[p] = beta1 * m1[p] + rest1 * g
            v1[p] = beta2 * v1[p] + rest2 * g * g
            w[p] -= lr * (m1[p] / c1) / (np.sqrt(v1[p] / c2) + eps)
            gr[p] = ZERO


@njit(cache=True)
def scales(codes, rows, n_classes):
    """(factor of the output gradient, factor turning summed row losses into the mean)."""
    if codes[LOSS] == CROSS_ENTROPY:
        return ONE / f32(rows), ONE / f32(rows)
    return TWO / (f32(rows) * f32(n_classes)), ONE / (f32(rows) * f32(n_classes))


@njit(cache=True, inline="always")
def rows_grad(grad, w_first, alpha, scratch, inputs, labels, target, order, r0, n, work, wc,
              geo, codes, dscale):  # fmt: skip
    """Forward, loss and backward of rows order[r0:r0+n] (scratch = (pre, post, delta, lse)
    sized for n rows). Returns (sum of the rows' losses, rows classified right)."""
    pre, post, delta, lse = scratch[0], scratch[1], scratch[2], scratch[3]
    s0 = geo[STRIDE, 0]
    net_forward(pre, post, n, inputs, r0, work, geo, codes, np.int64(0), s0)
    loss, hits = net_head(delta, pre, post, n, labels, target, order, r0, geo, codes, dscale,
                          lse)  # fmt: skip
    net_backward(grad, w_first, alpha, scratch, n, inputs, r0, work, wc, geo, codes, np.int64(0),
                 s0)
    return loss, hits


@njit(cache=True, inline="always")
def row_scratch(rows, arow, n_in, entries):
    """Scratch for a block of `rows` rows: pre- and post-activations and deltas of every
    layer, each row's log-sum-exp, and room for the block's `entries` input entries by
    column (sparse_backward). Allocated once per call, reused for every block."""
    pre = np.zeros(rows * arow + LANES, np.float32)
    post = np.zeros(rows * arow + LANES, np.float32)
    delta = np.zeros(rows * arow + LANES, np.float32)
    lse = np.zeros(rows, np.float32)
    t_starts = np.zeros(n_in + 2, np.int64)
    t_rows = np.zeros(entries, np.int64)
    t_vals = np.zeros(entries, np.float32)
    return pre, post, delta, lse, t_starts, t_rows, t_vals


@njit(cache=True)
def most_entries(inputs, n_rows, block):
    """The most input entries in any `block` consecutive rows of the first n_rows."""
    _, _, starts, rowmap = inputs
    top = 0
    for r0 in range(0, n_rows, block):
        total = 0
        for p in range(r0, min(n_rows, r0 + block)):
            total += starts[rowmap[p] + 1] - starts[rowmap[p]]
        top = max(top, total)
    return top


@njit(cache=True, inline="always")
def refresh(wc, work, geo):
    refresh_copies(wc, work, geo[SIZES], geo[STRIDE], geo[WOFF], geo[COFF], geo[PATH])


@njit(cache=True, inline="always")
def first_layer_target(work, grad, opt, hyper, geo):
    """(in place?, where the first layer's weight gradient goes, where update() starts).

    For plain SGD without weight decay the first layer's weights (work[0:geo[BOFF, 0]]) take
    their gradient times -lr straight away and update() skips them. Chosen once per call so
    that the inlined rows_grad has one call site, not two copies, and `lo` is an int64
    either way (a literal 0 argument compiles a second specialisation of update).
    """
    in_place = opt == SGD and f32(hyper[WEIGHT_DECAY]) == ZERO
    w_first = work if in_place else grad
    lo = geo[BOFF, 0] if in_place else 0
    return in_place, w_first, lo


@njit(cache=True, inline="always")
def lane_cut(s0, blocks, t, shards):
    """Thread t's lanes [qa, qb) of the first layer's s0: whole blocks of WIDE lanes."""
    return min(s0, blocks * t // shards * WIDE), min(s0, blocks * (t + 1) // shards * WIDE)


@njit(cache=True)
def train_loop(work, wc, velocity, m, v, inputs, labels, target, order, batch_size, lrs,
               step0, geo, codes, hyper, losses, correct):  # fmt: skip
    """Every batch of order, one optimizer step each (see module doc); one thread (BLAS,
    where a layer uses it, may use its own threads)."""
    n_classes = geo[SIZES, geo.shape[1] - 1]
    opt = codes[OPT]
    n_rows = order.shape[0]
    rows = min(batch_size, n_rows)
    pw = work.shape[0]
    grad = np.zeros(pw, np.float32)
    scratch = row_scratch(rows, codes[AROW], geo[SIZES, 0],
                          most_entries(inputs, n_rows, batch_size))
    in_place, w_first, lo = first_layer_target(work, grad, opt, hyper, geo)
    for j in range(losses.shape[0]):
        r0 = j * batch_size
        n = min(batch_size, n_rows - r0)
        lr = lrs[j]
        alpha = -lr if in_place else ONE
        dscale, lscale = scales(codes, n, n_classes)
        loss, hits = rows_grad(grad, w_first, alpha, scratch, inputs, labels, target, order, r0,
                               n, work, wc, geo, codes, dscale)  # fmt: skip
        update(work, grad, lo, pw, velocity, m, v, opt, lr, hyper, step0 + j + 1)
        refresh(wc, work, geo)
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


@njit(cache=True, parallel=PRANGE_ONLY)
def train_loop_threads(work, wc, velocity, m, v, inputs, labels, target, order, batch_size,
                       lrs, step0, geo, codes, hyper, losses, correct, shards):  # fmt: skip
    """train_loop with each batch split into `shards` slices of rows run in parallel, each
    into its own gradient, added in shard order (the same sums run after run); the sum and
    the step split between the threads by slices of the parameters."""
    n_classes = geo[SIZES, geo.shape[1] - 1]
    opt, arow = codes[OPT], codes[AROW]
    n_rows = order.shape[0]
    rows = -(-min(batch_size, n_rows) // shards)  # rows of the largest shard
    pw = work.shape[0]
    grads = np.zeros((shards, pw), np.float32)
    pre = np.zeros((shards, rows * arow + LANES), np.float32)
    post = np.zeros((shards, rows * arow + LANES), np.float32)
    delta = np.zeros((shards, rows * arow + LANES), np.float32)
    lse = np.zeros((shards, rows), np.float32)
    entries = most_entries(inputs, n_rows, batch_size)
    t_starts = np.zeros((shards, geo[SIZES, 0] + 2), np.int64)
    t_rows = np.zeros((shards, entries), np.int64)
    t_vals = np.zeros((shards, entries), np.float32)
    shard_loss = np.zeros(shards, np.float32)
    shard_hits = np.zeros(shards, np.int64)
    grad = np.zeros(pw, np.float32)
    for j in range(losses.shape[0]):
        r0 = j * batch_size
        n = min(batch_size, n_rows - r0)
        dscale, lscale = scales(codes, n, n_classes)
        for s in prange(shards):
            a = r0 + n * s // shards
            b = r0 + n * (s + 1) // shards
            g = grads[s]
            shard_loss[s], shard_hits[s] = rows_grad(
                g, g, ONE, (pre[s], post[s], delta[s], lse[s], t_starts[s], t_rows[s], t_vals[s]),
                inputs, labels, target, order,
                a, b - a, work, wc, geo, codes, dscale,
            )
        loss = ZERO
        hits = 0
        for s in range(shards):
            loss += shard_loss[s]
            hits += shard_hits[s]
        for t in prange(shards):  # thread t sums and steps its slice of the parameters
            a, b = pw * t // shards, pw * (t + 1) // shards
            add_parts(grad, grads, a, b)
            update(work, grad, a, b, velocity, m, v, opt, lrs[j], hyper, step0 + j + 1)
        refresh(wc, work, geo)
        losses[j] = loss * lscale
        correct[j] = hits


@njit(cache=True, parallel=PRANGE_ONLY)
def train_loop_lanes(work, wc, velocity, m, v, inputs, labels, target, order, batch_size, lrs,
                     step0, geo, codes, hyper, losses, correct, shards):  # fmt: skip
    """train_loop with the wide first layer split between `shards` threads by output lanes
    (blocks of WIDE), forward and backward: a thread owns its lanes of the weights, so
    nothing is reduced and in-place SGD stays in place; the results do not depend on the
    number of threads. The other layers run on this thread (BLAS ones with BLAS's threads).
    """
    n_classes = geo[SIZES, geo.shape[1] - 1]
    opt = codes[OPT]
    n_rows = order.shape[0]
    rows = min(batch_size, n_rows)
    pw = work.shape[0]
    grad = np.zeros(pw, np.float32)
    scratch = row_scratch(rows, codes[AROW], geo[SIZES, 0],
                          most_entries(inputs, n_rows, batch_size))  # fmt: skip
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
        net_forward(pre, post, n, inputs, r0, work, geo, codes, np.int64(0), np.int64(0))
        loss, hits = net_head(delta, pre, post, n, labels, target, order, r0, geo, codes, dscale,
                              lse)  # fmt: skip
        net_backward(grad, w_first, alpha, scratch, n, inputs, r0, work, wc, geo, codes, np.int64(0),
                     np.int64(0))  # fmt: skip
        transpose_first(scratch, n, inputs, r0, alpha)
        for t in prange(shards):
            qa, qb = lane_cut(s0, blocks, t, shards)
            first_backward(w_first, alpha, scratch, n, inputs, r0, geo, codes, qa, qb)
        update(work, grad, lo, pw, velocity, m, v, opt, lr, hyper, step0 + j + 1)
        refresh(wc, work, geo)
        losses[j] = loss * lscale
        correct[j] = hits


@njit(cache=True, nogil=True)
def forward_rows(out, work, inputs, geo, codes, r0, r1, block):
    """out[r] = the network's output for CSR row rowmap[r] of inputs, r0 <= r < r1, in
    blocks of `block` rows.

    Serial and without the GIL: forward() runs one call per thread on a slice of the rows
    (Python threads: a prange over blocks costs ~2.5 s more of first compile, its gufunc
    re-optimising and re-emitting all the code below). A row's arithmetic does not depend
    on its block, so the slicing does not change the output.
    """
    last = geo.shape[1] - 2
    o0, m, s = geo[AOFF, last], geo[SIZES, last + 1], geo[STRIDE, last]
    arow = codes[AROW]
    pre, post, _, lse, _, _, _ = row_scratch(block, arow, 0, 0)
    for start in range(r0, r1, block):
        n = min(block, r1 - start)
        net_forward(pre, post, n, inputs, start, work, geo, codes, np.int64(0), geo[STRIDE, 0])
        if codes[OUT_ACT] == SOFTMAX:
            softmax(post, pre, o0, arow, n, m, s, lse)
        for b in range(n):
            for c in range(m):
                out[start + b, c] = post[b * arow + o0 + c]


@njit(cache=True, nogil=True)
def forward_dense_rows(out, work, X, scale, geo, codes, r0, r1, block, cols):
    """forward_rows for the rows of an array X (uint8 or float32): each block's non-zero
    entries gathered into scratch first (cols: block * fan_in + 16 column numbers, of the
    type training uses), no pass over the whole array before."""
    last = geo.shape[1] - 2
    o0, m, s = geo[AOFF, last], geo[SIZES, last + 1], geo[STRIDE, last]
    arow = codes[AROW]
    pre, post, _, lse, _, _, _ = row_scratch(block, arow, 0, 0)
    vals = np.empty(block * X.shape[1] + LANES, np.float32)
    starts = np.empty(block + 1, np.int64)
    inputs = (cols, vals, starts, np.arange(block))
    for start in range(r0, r1, block):
        n = min(block, r1 - start)
        gather_rows(cols, vals, starts, X, start, n, scale)
        net_forward(pre, post, n, inputs, np.int64(0), work, geo, codes, np.int64(0),
                    geo[STRIDE, 0])  # fmt: skip
        if codes[OUT_ACT] == SOFTMAX:
            softmax(post, pre, o0, arow, n, m, s, lse)
        for b in range(n):
            for c in range(m):
                out[start + b, c] = post[b * arow + o0 + c]


@njit(cache=True)
def sum_rows(out, parts):
    """out = parts[0] + parts[1] + ... in that order."""
    out[:] = ZERO
    for c in range(parts.shape[0]):
        part = parts[c]
        for p in range(out.shape[0]):
            out[p] += part[p]


@njit(cache=True)
def loss_and_grads_chunk(g, work, wc, inputs, labels, target, order, geo, codes, r0, end,
                         block, dscale):  # fmt: skip
    """g = gradient (summed, scaled by dscale) of rows order[r0:end], in blocks of rows;
    returns the sum of their losses."""
    scratch = row_scratch(block, codes[AROW], geo[SIZES, 0], block * geo[SIZES, 0])
    g[:] = ZERO
    total = ZERO
    for start in range(r0, end, block):
        loss, _ = rows_grad(g, g, ONE, scratch, inputs, labels, target, order, start,
                            min(block, end - start), work, wc, geo, codes, dscale)  # fmt: skip
        total += loss
    return total


@njit(cache=True, parallel=PRANGE_ONLY)
def loss_and_grads_rows(partial, losses, work, wc, inputs, labels, target, order, geo, codes,
                        chunk, block):  # fmt: skip
    """Summed loss and gradient of the mean loss over the rows order (all of X), by chunks.

    partial[c] and losses[c] get chunk c's share (the caller adds chunks in order); a
    chunk goes through in blocks of `block` rows. Depends on chunk and block, not threads.
    """
    n_rows = order.shape[0]
    dscale, _ = scales(codes, n_rows, geo[SIZES, geo.shape[1] - 1])
    for c in prange(partial.shape[0]):
        losses[c] = loss_and_grads_chunk(partial[c], work, wc, inputs, labels, target, order,
                                         geo, codes, c * chunk, min(n_rows, (c + 1) * chunk),
                                         block, dscale)  # fmt: skip
