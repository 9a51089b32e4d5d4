"""The numba backend's loss and gradient over all rows (the gradient checks'
``loss_and_grads``); the network's outputs for many rows are :mod:`kernels.numba.infer`.

Same arguments as the training loops (:mod:`kernels.numba.train`): ``layers``, ``net``
records, :class:`~kernels.numba.codes.Inputs` and :class:`~kernels.numba.codes.Targets`.
"""

from __future__ import annotations

from numba import njit, prange

from kernels.numba.net import ONE, ZERO
from kernels.numba.passes import PRANGE_ONLY, row_scratch, rows_grad, scales


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
