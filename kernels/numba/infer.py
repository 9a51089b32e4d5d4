"""The numba backend's network outputs for many rows (``forward``): blocks of rows taken
by one or more threads from a shared counter, each block through the network and out.

Same arguments as the training loops (:mod:`kernels.numba.train`): ``layers``, ``net``
records, :class:`~kernels.numba.codes.Inputs`. Inference does not run the training glue
of :mod:`kernels.numba.passes` as is: its first layer goes by tiles of input columns two
rows at a time (:mod:`kernels.numba.tiles`, the same bits as training's kernel), a layer
after a ReLU that training would hand to BLAS reads its input as sparse rows, and the
softmax is written straight into the output rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.numba.codes import PATH_BLAS, RELU, SOFTMAX, Inputs
from kernels.numba.memory import fetch_add, vload, vstore, vstore_first
from kernels.numba.net import ONE, ZERO, dense_forward, live_lanes
from kernels.numba.passes import activate, first_forward, first_tiles, first_width
from kernels.numba.simd import (
    LANES,
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
from kernels.numba.tiles import TILE, gather_tiles, n_tiles, sparse_hidden

NEG_INF = np.float32(-np.inf)


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
def block_scratch(block, layers, net, fan_in):
    """(pre, post, post as (block + 1, arow) rows, rowmap 0..block-1, hidden: the scratch of
    a sparse layer's input (cols uint16, vals, starts), tiles (block, tiles + 1) for the
    widest layer): zeros where the kernels leave padding lanes alone."""
    arow = net.arow
    pre = np.zeros((block + 1) * arow, np.float32)
    post = np.zeros((block + 1) * arow, np.float32)
    rowmap = np.empty(block, np.int64)  # (np.arange would compile its own kernel: ~0.3 s)
    for b in range(block):
        rowmap[b] = b
    widest, most = 0, n_tiles(fan_in)
    for k in range(1, layers.shape[0]):
        widest = max(widest, layers[k].n_in)
        most = max(most, n_tiles(layers[k].n_in))
    hidden = (np.empty(block * widest + LANES, np.uint16), np.empty(block * widest + LANES,
              np.float32), np.empty(block + 1, np.int64))  # fmt: skip
    tiles = np.empty((block, most + 1), np.int64)
    return pre, post, post.reshape(block + 1, arow), rowmap, hidden, tiles


@njit(cache=True, inline="always")
def after_first(pre, post, act, n, work, layers, net, hidden, tiles, rowmap, sparse):
    """The layers of a block after the first (whose pre-activations are in pre), as
    passes.net_forward runs them, but with `sparse` (None or True) a layer on PATH_BLAS
    after a ReLU reads its input's non-zero entries instead (sparse_hidden). Numba prunes
    the branch of a None argument: a network without such a layer does not compile
    sparse_hidden. (Inlined: as a function of its own, forward's first compile for
    784-16-16-10 took ~0.4 s more CPU time; base 2.9-3.1 s, inlined 3.2-3.4 s.)"""
    arow = net.arow
    n_layers = layers.shape[0]
    for k in range(n_layers):
        layer = layers[k]
        if k > 0:
            below = layers[k - 1]
            if sparse is not None and layer.path == PATH_BLAS and net.act == RELU:
                sparse_hidden(pre, layer.aoff, arow, n, hidden[0], hidden[1], hidden[2], tiles,
                              rowmap, post, act, below.aoff, layer.n_in, work, layer.woff,
                              layer.boff, layer.stride, live_lanes(layer.n_out))  # fmt: skip
            else:
                dense_forward(pre, layer.aoff, post, below.aoff, arow, n, layer.n_in, layer.n_out,
                              work, layer.woff, work, layer.boff, layer.stride,
                              layer.path)  # fmt: skip
        activate(post, pre, 0, n, layers, net, k, 0, layer.stride)


@njit(cache=True, nogil=True)
def forward_rows(out, work, inputs, layers, net, claims, block, sparse):
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
    pre, post, act, rowmap, hidden, tiles = block_scratch(block, layers, net, layers[0].n_in)
    while True:
        start = fetch_add(claims, 0, 1) * block
        if start >= n_rows:
            return -1
        n = min(block, n_rows - start)
        first_tiles(tiles, n, inputs, start, layers)
        first_forward(pre, tiles, n, inputs, start, work, layers, net, np.int64(0),
                      first_width(layers))  # fmt: skip
        after_first(pre, post, act, n, work, layers, net, hidden, tiles, rowmap, sparse)
        outputs(out, start, n, pre, post, layers, net)
        fetch_add(claims, 1, 1)


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
def forward_dense_rows(out, work, X, scale, layers, net, claims, block, sparse, cols,
                       check):  # fmt: skip
    """forward_rows for the rows of an array X (uint8 or float32): each block's non-zero
    entries gathered into scratch first (cols: block * fan_in + 16 column numbers, of the
    type training uses), no pass over the whole array before.

    `sparse` as after_first. With `check` (a float X) each block's gathered entries are
    checked finite first:
    returns the first row of X holding NaN or infinity in the blocks this thread took (it
    takes no more blocks then, and that block is not counted done), else -1.
    """
    n_rows = X.shape[0]
    if claims[0] * block >= n_rows:  # all taken already (a thread that started late)
        return -1
    pre, post, act, rowmap, hidden, tiles = block_scratch(block, layers, net, X.shape[1])
    vals = np.empty(block * X.shape[1] + 4 * LANES, np.float32)  # (gather_tiles: 64 past)
    starts = np.empty(block + 1, np.int64)
    inputs = Inputs(cols, vals, starts, rowmap)
    nt = n_tiles(X.shape[1])
    qb = first_width(layers)
    while True:
        start = fetch_add(claims, 0, 1) * block
        if start >= n_rows:
            return -1
        n = min(block, n_rows - start)
        gather_tiles(cols, vals, starts, tiles, nt, X, start, n, scale, TILE)
        if check:
            bad = first_bad_row(vals, starts, n)
            if bad >= 0:
                return start + bad
        first_forward(pre, tiles, n, inputs, np.int64(0), work, layers, net, np.int64(0), qb)
        after_first(pre, post, act, n, work, layers, net, hidden, tiles, rowmap, sparse)
        outputs(out, start, n, pre, post, layers, net)
        fetch_add(claims, 1, 1)
