"""Activations, output heads and losses of the numba backend, batch at a time.

The activations of n rows live in flat buffers, row b's ``s`` lanes at ``b * arow + o0``
(the first m real, the rest padding kept at zero), as in :mod:`kernels.numba.net`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.numba.codes import IDENTITY, RELU, SIGMOID, SILU, TANH
from kernels.numba.memory import vload, vstore
from kernels.numba.simd import (
    LANES,
    relu,
    vexp,
    vmaxlane,
    vmul,
    vsplat,
    vsub,
    vsum,
    where_positive,
)

f32 = np.float32
ZERO = f32(0.0)
ONE = f32(1.0)


# ---------------------------------------------------------------------------------------
# Activations (s lanes at o0 of each row, the first m real).
# ---------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow (float32)."""
    if x >= ZERO:
        return ONE / (ONE + np.exp(-x))
    e = np.exp(x)
    return e / (ONE + e)


@njit(cache=True)
def activation_forward(post, pre, o0, arow, n, m, s, act):
    """post[b] = act(pre[b]); lanes m..s-1 are set to 0."""
    for b in range(n):
        row = b * arow + o0
        if act == RELU:
            for q in range(0, s, LANES):
                vstore(post, row + q, relu(vload(pre, row + q)))
            continue
        for j in range(m):
            x = pre[row + j]
            if act == SIGMOID:
                y = sigmoid(x)
            elif act == TANH:
                y = np.tanh(x)
            elif act == SILU:
                y = x * sigmoid(x)
            else:
                y = x
            post[row + j] = y
        for j in range(m, s):
            post[row + j] = ZERO


@njit(cache=True)
def activation_backward(d, pre, post, o0, arow, n, m, s, act):
    """d[b] *= act'(pre[b]) in place (post = act(pre) is given for sigmoid and tanh)."""
    if act == IDENTITY:
        return
    for b in range(n):
        row = b * arow + o0
        if act == RELU:
            for q in range(0, s, LANES):
                vstore(d, row + q, where_positive(vload(pre, row + q), vload(d, row + q)))
            continue
        for j in range(m):
            g = d[row + j]
            if act == SIGMOID:
                y = post[row + j]
                g = g * y * (ONE - y)
            elif act == TANH:
                y = post[row + j]
                g = g * (ONE - y * y)
            else:  # silu
                x = pre[row + j]
                sg = sigmoid(x)
                g = g * sg * (ONE + x * (ONE - sg))
            d[row + j] = g


# ---------------------------------------------------------------------------------------
# Heads: output, loss and the gradient of the last pre-activation (scaled by `scale`).
# ---------------------------------------------------------------------------------------


@njit(cache=True)
def softmax(probs, logits, o0, arow, n, m, s, lse):
    """probs[b] = softmax(logits[b]) over m lanes (pads 0); lse[b] = logsumexp(logits[b]).

    16 lanes at a time with a vector exp; lanes past m are masked out.
    """
    for b in range(n):
        row = b * arow + o0
        top = logits[row]
        full = m - m % LANES
        for q in range(0, full, LANES):
            top = max(top, vmaxlane(vload(logits, row + q)))
        for j in range(full, m):
            top = max(top, logits[row + j])
        total = ZERO
        shift = vsplat(top)
        for q in range(0, s, LANES):
            e = vexp(vsub(vload(logits, row + q), shift))
            vstore(probs, row + q, e)
        for j in range(m, s):
            probs[row + j] = ZERO
        for q in range(0, s, LANES):
            total += vsum(vload(probs, row + q))
        inv = vsplat(ONE / total)
        for q in range(0, s, LANES):
            vstore(probs, row + q, vmul(inv, vload(probs, row + q)))
        lse[b] = top + np.log(total)


@njit(cache=True)
def loss_head(d, post, pre, o0, arow, n, m, s, labels, target, weight, order, r0, scale, lse,
              out_act):  # fmt: skip
    """The loss of n rows and its gradient d (scaled by `scale`): softmax and cross-entropy
    where labels are given (target None), MSE through the output activation out_act where
    target is given (labels None); each row's share times its weight where weight is given.

    Returns (sum of the rows' (weighted) losses, rows classified right). Numba prunes the
    branch of an argument that is None before typing it, so a network compiles only its own
    loss, and the weighting only where there are weights.
    """
    loss, hits = ZERO, 0
    if labels is not None:  # (`x is not None` is pruned where x is None, not where it is not)
        softmax(post, pre, o0, arow, n, m, s, lse)
        loss, hits = xent_grad(d, post, pre, o0, arow, n, m, s, labels, order, r0, scale, lse)
    if target is not None:
        loss, hits = mse(d, post, pre, o0, arow, n, m, s, target, order, r0, scale, out_act)
    if weight is not None:
        loss = weigh_rows(d, post, pre, o0, arow, n, m, s, labels, target, weight, order, r0,
                          lse)  # fmt: skip
    return loss, hits


@njit(cache=True)
def weigh_rows(d, post, pre, o0, arow, n, m, s, labels, target, weight, order, r0, lse):
    """Row b of the output gradient d times its weight w = weight[order[r0 + b]]; returns
    sum_b w * loss_b, loss_b the row's cross-entropy (from lse and the logits pre) or squared
    error (from post and target), whichever of labels and target is given."""
    total = ZERO
    for b in range(n):
        r = order[r0 + b]
        w = weight[r]
        row = b * arow + o0
        scale = vsplat(w)
        for q in range(0, s, LANES):
            vstore(d, row + q, vmul(scale, vload(d, row + q)))
        loss = ZERO
        if labels is not None:
            loss = lse[b] - pre[row + labels[r]]
        if target is not None:
            for j in range(m):
                diff = post[row + j] - target[r, j]
                loss += diff * diff
        total += w * loss
    return total


@njit(cache=True, inline="always")
def xent_grad(d, probs, logits, o0, arow, n, m, s, labels, order, r0, scale, lse):
    """d = (probs - onehot(label)) * scale (pads 0) for probs = softmax(logits), lse[b] =
    logsumexp(logits[b]) already computed. Returns (sum of the rows' cross-entropy, hits)."""
    loss = ZERO
    hits = 0
    sc = vsplat(scale)
    for b in range(n):
        row = b * arow + o0
        label = labels[order[r0 + b]]
        for q in range(0, s, LANES):
            vstore(d, row + q, vmul(sc, vload(probs, row + q)))
        d[row + label] -= scale
        loss += lse[b] - logits[row + label]
        hits += argmax(probs, row, m) == label
    return loss, hits


@njit(cache=True, inline="always")
def mse(d, post, pre, o0, arow, n, m, s, target, order, r0, scale, act):
    """d = scale * (post - target) * act'(pre) over m lanes (pads 0), every row.

    Returns (sum of squared errors, rows whose argmax is the target's argmax).
    """
    loss = ZERO
    hits = 0
    for b in range(n):
        row = b * arow + o0
        r = order[r0 + b]
        for j in range(m):
            diff = post[row + j] - target[r, j]
            loss += diff * diff
            d[row + j] = scale * diff
        for j in range(m, s):
            d[row + j] = ZERO
        best = 0
        for j in range(1, m):
            if target[r, j] > target[r, best]:
                best = j
        hits += argmax(post, row, m) == best
    activation_backward(d, pre, post, o0, arow, n, m, s, act)
    return loss, hits


@njit(cache=True, inline="always")
def argmax(a, at, m):
    """Index of the first largest of a[at:at+m]."""
    best = 0
    top = a[at]
    for j in range(1, m):
        if a[at + j] > top:
            top = a[at + j]
            best = j
    return best
