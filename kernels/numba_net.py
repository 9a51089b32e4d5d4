"""Layer kernels of the numba backend's network functions, on a fast work layout.

The network functions (``forward``, ``loss_and_grads``, ``train_steps``) do not work on
the flat ``params`` vector of :mod:`kernels.layout` but on a *work copy* made for
speed, written back at the end of a call:

* every layer's weight is kept transposed, ``wt`` (fan_in, S) with ``S`` the fan_out
  padded to a multiple of 16 lanes (zero columns): the forward pass is then
  ``out = bias + sum_i x_i * wt[i]``, one 16-lane multiply-add per input, accumulated
  in registers; for the first layer only the *non-zero* inputs are visited (about
  150 of the 784 pixels of an MNIST digit);
* layers after the first also keep a copy ``w`` (fan_out, S_in) in the usual
  orientation, refreshed after each step (a few hundred floats), so that the
  gradient of their input ``dinp = sum_o d_o * w[o]`` is multiply-adds too;
* activations of a row live in one flat vector, layer after layer, each padded to
  its ``S`` lanes. Padded lanes have zero weights in and out, so they carry zeros
  through backpropagation and their parameters stay zero under every optimizer.

Geometry (``int64`` vectors indexed by layer ``l``, computed once in Python by
:func:`kernels.numba_backend.Geometry`): ``sizes`` (L+1), ``stride`` = S, ``woff``/``boff``
offsets of ``wt``/bias in the work vector, ``coff`` offset of ``w`` in the copies,
``aoff`` offset of the layer in a row of activations (``arow`` floats per row).

Every layer is a pair of plain functions over the ``n`` rows of a batch (llm.c style:
outputs first, no allocation). Row ``b`` of a layer's activations is at
``b * arow + o0``; the first layer reads the batch's non-zero inputs, row ``b``'s at
``idx/val[rp[b]:rp[b+1]]``. One call per layer and batch: nothing happens per row
but arithmetic (a call per row costs more than its 16-lane work).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.numba_simd import (
    LANES,
    at,
    compress_nonzero,
    fma,
    prefetch,
    relu,
    vadd,
    vexp,
    vload,
    vmaxlane,
    vmul,
    vsplat,
    vstore,
    vsub,
    vsum,
    vzero,
    where_positive,
)

f32 = np.float32
ZERO = f32(0.0)
ONE = f32(1.0)
TWO = f32(2.0)
INV255 = f32(1.0 / 255.0)

# Codes of the strings of kernels/layout.py, for compiled code.
ACT_CODES = {"sigmoid": 0, "relu": 1, "tanh": 2, "silu": 3, "identity": 4, "softmax": 5}
SIGMOID, RELU, TANH, SILU, IDENTITY, SOFTMAX = range(6)
OPT_CODES = {"sgd": 0, "momentum": 1, "adam": 2}
SGD, MOMENTUM, ADAM = range(3)


# ---------------------------------------------------------------------------------------
# Work layout: params <-> work vector (transposed, padded weights).
# ---------------------------------------------------------------------------------------


@njit(cache=True)
def pack(work, flat, sizes, stride, woff, boff):
    """work (PW,) = flat (P,) in the work layout; padded lanes 0."""
    work[:] = ZERO
    p = 0
    for layer in range(sizes.shape[0] - 1):
        n_in, n_out, s = sizes[layer], sizes[layer + 1], stride[layer]
        w0, b0 = woff[layer], boff[layer]
        for o in range(n_out):
            for i in range(n_in):
                work[w0 + i * s + o] = flat[p + o * n_in + i]
        p += n_out * n_in
        for o in range(n_out):
            work[b0 + o] = flat[p + o]
        p += n_out


@njit(cache=True)
def unpack(flat, work, sizes, stride, woff, boff):
    """flat (P,) = work (PW,) back in the layout of kernels.layout."""
    p = 0
    for layer in range(sizes.shape[0] - 1):
        n_in, n_out, s = sizes[layer], sizes[layer + 1], stride[layer]
        w0, b0 = woff[layer], boff[layer]
        for o in range(n_out):
            for i in range(n_in):
                flat[p + o * n_in + i] = work[w0 + i * s + o]
        p += n_out * n_in
        for o in range(n_out):
            flat[p + o] = work[b0 + o]
        p += n_out


@njit(cache=True)
def refresh_copies(wc, work, sizes, stride, woff, coff):
    """wc: for layers l >= 1, w (fan_out, S_in) = wt.T of the work vector (pads stay 0)."""
    for layer in range(1, sizes.shape[0] - 1):
        n_in, n_out, s, s_in = sizes[layer], sizes[layer + 1], stride[layer], stride[layer - 1]
        w0, c0 = woff[layer], coff[layer]
        for o in range(n_out):
            for i in range(n_in):
                wc[c0 + o * s_in + i] = work[w0 + i * s + o]


# ---------------------------------------------------------------------------------------
# Input: the non-zero entries of the batch's rows.
# ---------------------------------------------------------------------------------------

AHEAD = 4  # rows of X prefetched ahead of the one being read (rows come in shuffled order)


@njit(cache=True)
def gather_nonzero(idx, val, rp, X, order, r0, n, step, scale):
    """idx/val[rp[b]:rp[b+1]] = columns times step (the offsets of their rows in the first
    layer's wt) and values (x * scale) of the non-zero X[order[r0+b]].

    Sixteen columns at a time with a branch-free vector compress (idx and val need 16
    entries of room past the last non-zero), the last fan_in % 16 one by one. The
    rows AHEAD positions on in ``order`` are prefetched: a shuffled row is not in cache.
    """
    n_in = X.shape[1]
    full = n_in - n_in % LANES
    line = 64 // X.itemsize
    k = 0
    for b in range(n):
        p = r0 + b
        if p + AHEAD < order.shape[0]:
            ahead = order[p + AHEAD]
            for col in range(0, n_in, line):
                prefetch(X, ahead, col)
        r = order[p]
        rp[b] = k
        for start in range(0, full, LANES):
            k = compress_nonzero(idx, val, k, X, r, start, step, scale)
        for i in range(full, n_in):
            x = X[r, i]
            idx[k] = i * step
            val[k] = f32(x) * scale
            k += x != 0
    rp[n] = k


# ---------------------------------------------------------------------------------------
# Dense layers. wt (fan_in, s) at w0 of the work vector, bias (s,) at b0.
# ---------------------------------------------------------------------------------------


@njit(cache=True)
def sparse_forward(out, o0, arow, n, idx, val, rp, wt, w0, bias, b0, s):
    """First layer: out[b] = bias + sum_k val[k] * wt[idx[k]] over row b's non-zeros
    (idx: offsets of the rows of wt, column * s)."""
    for b in range(n):
        k0, k1 = rp[b], rp[b + 1]
        for q in range(0, s, LANES):
            a0 = vload(bias, b0 + q)  # four accumulators: four independent add chains
            a1 = vzero()
            a2 = vzero()
            a3 = vzero()
            base = w0 + q
            k = k0
            while k + 4 <= k1:
                a0 = fma(vsplat(at(val, k)), vload(wt, base + at(idx, k)), a0)
                a1 = fma(vsplat(at(val, k + 1)), vload(wt, base + at(idx, k + 1)), a1)
                a2 = fma(vsplat(at(val, k + 2)), vload(wt, base + at(idx, k + 2)), a2)
                a3 = fma(vsplat(at(val, k + 3)), vload(wt, base + at(idx, k + 3)), a3)
                k += 4
            while k < k1:
                a0 = fma(vsplat(at(val, k)), vload(wt, base + at(idx, k)), a0)
                k += 1
            vstore(out, b * arow + o0 + q, vadd(vadd(a0, a1), vadd(a2, a3)))


@njit(cache=True)
def sparse_backward(gwt, w0, d, d0, arow, n, idx, val, rp, alpha, s):
    """First layer: gwt[idx[k]] += val[k] * alpha * d[b] over every row's non-zeros (idx:
    offsets of the rows of gwt).

    With gwt the weights themselves and alpha = -lr this is plain SGD, applied in place.
    """
    scale = vsplat(alpha)
    for b in range(n):
        for q in range(0, s, LANES):
            dq = vmul(scale, vload(d, b * arow + d0 + q))
            base = w0 + q
            for k in range(rp[b], rp[b + 1]):
                row = base + at(idx, k)
                vstore(gwt, row, fma(vsplat(at(val, k)), dq, vload(gwt, row)))


@njit(cache=True)
def dense_forward(out, o0, inp, i0, arow, n, n_in, wt, w0, bias, b0, s):
    """out[b] = bias + sum_{i<n_in} inp[b, i] * wt[i] (rows of the flat buffers).

    Four rows at a time: each 16-lane piece of wt is loaded once for four rows (a wide
    layer's weights would otherwise stream through the cache once per row).
    """
    b = 0
    while b + 4 <= n:
        r0, r1, r2, r3 = b * arow + i0, (b + 1) * arow + i0, (b + 2) * arow + i0, (b + 3) * arow + i0
        for q in range(0, s, LANES):
            a0 = vload(bias, b0 + q)
            a1 = a0
            a2 = a0
            a3 = a0
            base = w0 + q
            for i in range(n_in):
                w = vload(wt, base + i * s)
                a0 = fma(vsplat(at(inp, r0 + i)), w, a0)
                a1 = fma(vsplat(at(inp, r1 + i)), w, a1)
                a2 = fma(vsplat(at(inp, r2 + i)), w, a2)
                a3 = fma(vsplat(at(inp, r3 + i)), w, a3)
            vstore(out, b * arow + o0 + q, a0)
            vstore(out, (b + 1) * arow + o0 + q, a1)
            vstore(out, (b + 2) * arow + o0 + q, a2)
            vstore(out, (b + 3) * arow + o0 + q, a3)
        b += 4
    while b < n:
        r0 = b * arow + i0
        for q in range(0, s, LANES):
            a0 = vload(bias, b0 + q)
            base = w0 + q
            for i in range(n_in):
                a0 = fma(vsplat(at(inp, r0 + i)), vload(wt, base + i * s), a0)
            vstore(out, b * arow + o0 + q, a0)
        b += 1


@njit(cache=True)
def dense_backward(dinp, gwt, w0, gbias, b0, d, o0, inp, i0, arow, n, n_in, wc, c0, n_out, s,
                   s_in):  # fmt: skip
    """A layer after the first, over the n rows of the batch:

    gbias += sum_b d[b]; gwt[i] += sum_b inp[b, i] * d[b] (i < n_in), summed over the
    rows in registers, so the gradient is read and written once per batch;
    dinp[b] = sum_{o<n_out} d[b, o] * wc[o] for every row (wc (n_out, s_in) at c0), four
    rows at a time.
    """
    for q in range(0, s, LANES):
        a0 = vzero()
        for b in range(n):
            a0 = vadd(a0, vload(d, b * arow + o0 + q))
        vstore(gbias, b0 + q, vadd(vload(gbias, b0 + q), a0))
        for i in range(n_in):
            a0 = vzero()
            a1 = vzero()
            b = 0
            while b + 2 <= n:
                row = b * arow
                a0 = fma(vsplat(at(inp, row + i0 + i)), vload(d, row + o0 + q), a0)
                row += arow
                a1 = fma(vsplat(at(inp, row + i0 + i)), vload(d, row + o0 + q), a1)
                b += 2
            if b < n:
                row = b * arow
                a0 = fma(vsplat(at(inp, row + i0 + i)), vload(d, row + o0 + q), a0)
            w = w0 + q + i * s
            vstore(gwt, w, vadd(vload(gwt, w), vadd(a0, a1)))
    b = 0
    while b + 4 <= n:  # four rows at a time, as dense_forward
        r0, r1, r2, r3 = b * arow + o0, (b + 1) * arow + o0, (b + 2) * arow + o0, (b + 3) * arow + o0
        for q in range(0, s_in, LANES):
            a0 = vzero()
            a1 = vzero()
            a2 = vzero()
            a3 = vzero()
            base = c0 + q
            for o in range(n_out):
                w = vload(wc, base + o * s_in)
                a0 = fma(vsplat(at(d, r0 + o)), w, a0)
                a1 = fma(vsplat(at(d, r1 + o)), w, a1)
                a2 = fma(vsplat(at(d, r2 + o)), w, a2)
                a3 = fma(vsplat(at(d, r3 + o)), w, a3)
            vstore(dinp, b * arow + i0 + q, a0)
            vstore(dinp, (b + 1) * arow + i0 + q, a1)
            vstore(dinp, (b + 2) * arow + i0 + q, a2)
            vstore(dinp, (b + 3) * arow + i0 + q, a3)
        b += 4
    while b < n:
        r0 = b * arow + o0
        for q in range(0, s_in, LANES):
            a0 = vzero()
            base = c0 + q
            for o in range(n_out):
                a0 = fma(vsplat(at(d, r0 + o)), vload(wc, base + o * s_in), a0)
            vstore(dinp, b * arow + i0 + q, a0)
        b += 1


@njit(cache=True)
def bias_backward(gbias, b0, d, o0, arow, n, s):
    """gbias[b0:b0+s] += d[b] for every row b."""
    for b in range(n):
        for q in range(0, s, LANES):
            vstore(gbias, b0 + q, vadd(vload(gbias, b0 + q), vload(d, b * arow + o0 + q)))


# ---------------------------------------------------------------------------------------
# Activations (s lanes at o0 of each row, the first m real).
# ---------------------------------------------------------------------------------------


@njit(cache=True)
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
def softmax_xent(d, probs, logits, o0, arow, n, m, s, labels, order, r0, scale, lse):
    """probs = softmax(logits); d = (probs - onehot(label)) * scale (pads 0), every row.

    Returns (sum over rows of logsumexp(logits) - logits[label], rows whose argmax is right).
    """
    softmax(probs, logits, o0, arow, n, m, s, lse)
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


@njit(cache=True)
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


@njit(cache=True)
def argmax(a, at, m):
    """Index of the first largest of a[at:at+m]."""
    best = 0
    top = a[at]
    for j in range(1, m):
        if a[at + j] > top:
            top = a[at + j]
            best = j
    return best
