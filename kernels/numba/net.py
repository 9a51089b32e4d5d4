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
:func:`kernels.numba.Geometry`): ``sizes`` (L+1), ``stride`` = S, ``woff``/``boff``
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

from kernels.numba.blas import HAVE_BLAS, sgemm
from kernels.numba.codes import (
    IDENTITY,
    PATH_BLAS,
    PATH_OWN,
    RELU,
    SIGMOID,
    SILU,
    TANH,
)
from kernels.numba.simd import (
    LANES,
    at,
    compress_nonzero,
    fma,
    prefetch_flat,
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

# Lanes of output the first layer computes for every row of a batch before moving on.
WIDE = 4 * LANES
# Smallest weight matrix (fan_in x fan_out) whose dense products go to BLAS sgemm. Measured
# on one core of an AMD EPYC (AVX-512, 1 MB L2), s per epoch of 784-H-H-10, own vs BLAS:
# H=64 batch 32 0.085 vs 0.096, batch 128 0.073 vs 0.126; H=128 batch 32 0.20 vs 0.24;
# H=256 batch 32 0.61 vs 0.54, batch 128 0.66 vs 0.80; H=512 batch 128 4.7 vs 2.2;
# H=1024 batch 128 23.2 vs 8.3. Our kernels win while the weights (1 MB at 512 x 512)
# fit in L2, and our threads split the batch; BLAS wins beyond.
BLAS_MIN_WEIGHTS = 2**17


def dense_path(n_in: int, n_out: int, rows: int) -> int:
    """Which kernel runs the dense products of a layer after the first: PATH_BLAS where the
    weight matrix is large enough for sgemm's packing to pay, PATH_OWN below (and without
    SciPy, which Numba's BLAS helper needs)."""
    if HAVE_BLAS and n_in * n_out >= BLAS_MIN_WEIGHTS and rows >= 8:
        return PATH_BLAS
    return PATH_OWN


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
def refresh_copies(wc, work, sizes, stride, woff, coff, path):
    """wc: for layers l >= 1 on PATH_OWN, w (fan_out, S_in) = wt.T of the work vector (pads
    stay 0). BLAS reads wt transposed itself: its layers keep no copy."""
    for layer in range(1, sizes.shape[0] - 1):
        if path[layer] != PATH_OWN:
            continue
        n_in, n_out, s, s_in = sizes[layer], sizes[layer + 1], stride[layer], stride[layer - 1]
        w0, c0 = woff[layer], coff[layer]
        for o in range(n_out):
            for i in range(n_in):
                wc[c0 + o * s_in + i] = work[w0 + i * s + o]


# ---------------------------------------------------------------------------------------
# Input: the non-zero entries of the rows, in compressed sparse rows (CSR).
# ---------------------------------------------------------------------------------------

AHEAD = 4  # rows prefetched ahead of the one being read (rows come in shuffled order)


@njit(cache=True)
def count_nonzero(X, rows):
    """Non-zero entries (NaN included) of each X[rows[j]]."""
    counts = np.empty(rows.shape[0], np.int64)
    for j in range(rows.shape[0]):
        x = X[rows[j]]
        c = 0
        for i in range(x.shape[0]):
            c += x[i] != 0
        counts[j] = c
    return counts


@njit(cache=True)
def sparse_rows(X, rows, scale):
    """CSR of X[rows] (uint8 or float32, any number of columns): (cols uint32, vals float32
    = x * scale, starts int64), row j's entries at starts[j]:starts[j+1].

    Built once per fit (or per call for a plain array), so that an epoch reads about 150
    entries of an MNIST row instead of its 784 columns, whatever the input's dtype. Sixteen
    columns at a time with a branch-free vector compress (16 entries of room at the end),
    the last fan_in % 16 one by one.
    """
    n_in = X.shape[1]
    full = n_in - n_in % LANES
    counts = count_nonzero(X, rows)
    starts = np.empty(rows.shape[0] + 1, np.int64)
    starts[0] = 0
    for j in range(rows.shape[0]):
        starts[j + 1] = starts[j] + counts[j]
    total = starts[rows.shape[0]]
    cols = np.empty(total + LANES, np.uint32)
    vals = np.empty(total + LANES, np.float32)
    k = 0
    for j in range(rows.shape[0]):
        r = rows[j]
        for start in range(0, full, LANES):
            k = compress_nonzero(cols, vals, k, X, r, start, 1, scale)
        for i in range(full, n_in):
            x = X[r, i]
            cols[k] = i
            vals[k] = f32(x) * scale
            k += x != 0
    return cols, vals, starts


# ---------------------------------------------------------------------------------------
# Dense layers. wt (fan_in, s) at w0 of the work vector, bias (s,) at b0. The first layer
# reads its input as CSR: batch row b is CSR row rowmap[r0 + b].
# ---------------------------------------------------------------------------------------


@njit(cache=True)
def sparse_forward(out, o0, arow, n, cols, vals, starts, rowmap, r0, wt, w0, bias, b0, s):
    """First layer: out[b] = bias + sum_k vals[k] * wt[cols[k]] over row b's entries.

    WIDE lanes (four vectors) at a time, held in registers, for every row of the batch
    before the next four: one broadcast of an entry serves four weight loads, and the
    weight columns a pass reads (fan_in x 256 bytes) stay in cache for all the rows. The
    last s % WIDE lanes go 16 at a time. Rows AHEAD on are prefetched.
    """
    wide = s - s % WIDE
    for q in range(0, wide, WIDE):
        for b in range(n):
            if q == 0 and r0 + b + AHEAD < rowmap.shape[0]:
                ahead = starts[rowmap[r0 + b + AHEAD]]
                prefetch_flat(cols, ahead)
                prefetch_flat(vals, ahead)
                prefetch_flat(vals, ahead + 16)
            r = rowmap[r0 + b]
            a0 = vload(bias, b0 + q)
            a1 = vload(bias, b0 + q + 16)
            a2 = vload(bias, b0 + q + 32)
            a3 = vload(bias, b0 + q + 48)
            for k in range(starts[r], starts[r + 1]):
                x = vsplat(at(vals, k))
                row = w0 + q + at(cols, k) * s
                a0 = fma(x, vload(wt, row), a0)
                a1 = fma(x, vload(wt, row + 16), a1)
                a2 = fma(x, vload(wt, row + 32), a2)
                a3 = fma(x, vload(wt, row + 48), a3)
            at_out = b * arow + o0 + q
            vstore(out, at_out, a0)
            vstore(out, at_out + 16, a1)
            vstore(out, at_out + 32, a2)
            vstore(out, at_out + 48, a3)
    for q in range(wide, s, LANES):
        for b in range(n):
            if wide == 0 and q == 0 and r0 + b + AHEAD < rowmap.shape[0]:
                ahead = starts[rowmap[r0 + b + AHEAD]]
                prefetch_flat(cols, ahead)
                prefetch_flat(vals, ahead)
                prefetch_flat(vals, ahead + 16)
            r = rowmap[r0 + b]
            k0, k1 = starts[r], starts[r + 1]
            a0 = vload(bias, b0 + q)  # four accumulators: four independent add chains
            a1 = vzero()
            a2 = vzero()
            a3 = vzero()
            base = w0 + q
            k = k0
            while k + 4 <= k1:
                a0 = fma(vsplat(at(vals, k)), vload(wt, base + at(cols, k) * s), a0)
                a1 = fma(vsplat(at(vals, k + 1)), vload(wt, base + at(cols, k + 1) * s), a1)
                a2 = fma(vsplat(at(vals, k + 2)), vload(wt, base + at(cols, k + 2) * s), a2)
                a3 = fma(vsplat(at(vals, k + 3)), vload(wt, base + at(cols, k + 3) * s), a3)
                k += 4
            while k < k1:
                a0 = fma(vsplat(at(vals, k)), vload(wt, base + at(cols, k) * s), a0)
                k += 1
            vstore(out, b * arow + o0 + q, vadd(vadd(a0, a1), vadd(a2, a3)))


@njit(cache=True)
def transpose_rows(t_starts, t_rows, t_vals, n, cols, vals, starts, rowmap, r0, alpha):
    """The batch's entries by input column (CSC): column i's at t_starts[i]:t_starts[i+1],
    t_rows = batch rows (ascending), t_vals = value * alpha. t_starts has fan_in + 2 entries."""
    t_starts[:] = 0
    for b in range(n):
        r = rowmap[r0 + b]
        for k in range(starts[r], starts[r + 1]):
            t_starts[at(cols, k) + 2] += 1
    for i in range(2, t_starts.shape[0]):
        t_starts[i] += t_starts[i - 1]
    for b in range(n):  # t_starts[i + 1] is the cursor of column i while filling
        r = rowmap[r0 + b]
        for k in range(starts[r], starts[r + 1]):
            c = at(cols, k) + 1
            e = t_starts[c]
            t_rows[e] = b
            t_vals[e] = at(vals, k) * alpha
            t_starts[c] = e + 1


@njit(cache=True)
def sparse_backward(gwt, w0, d, d0, arow, n, cols, vals, starts, rowmap, r0, alpha, s, t_starts,
                    t_rows, t_vals):  # fmt: skip
    """First layer: gwt[cols[k]] += vals[k] * alpha * d[b] over every row's entries.

    With gwt the weights themselves and alpha = -lr this is plain SGD, applied in place.
    Wide layers go by input column (the batch transposed into t_*, see transpose_rows):
    WIDE lanes of a weight row stay in registers while every row of the batch that has
    that input adds to them (in row order), so a weight is read and written once per
    batch, not once per row. The last s % WIDE lanes go row by row, 16 at a time.
    """
    wide = s - s % WIDE
    if wide > 0:
        transpose_rows(t_starts, t_rows, t_vals, n, cols, vals, starts, rowmap, r0, alpha)
        for q in range(0, wide, WIDE):
            for i in range(t_starts.shape[0] - 2):
                e0, e1 = t_starts[i], t_starts[i + 1]
                if e0 == e1:
                    continue
                row = w0 + q + i * s
                a0 = vload(gwt, row)
                a1 = vload(gwt, row + 16)
                a2 = vload(gwt, row + 32)
                a3 = vload(gwt, row + 48)
                for e in range(e0, e1):
                    x = vsplat(at(t_vals, e))
                    at_d = at(t_rows, e) * arow + d0 + q
                    a0 = fma(x, vload(d, at_d), a0)
                    a1 = fma(x, vload(d, at_d + 16), a1)
                    a2 = fma(x, vload(d, at_d + 32), a2)
                    a3 = fma(x, vload(d, at_d + 48), a3)
                vstore(gwt, row, a0)
                vstore(gwt, row + 16, a1)
                vstore(gwt, row + 32, a2)
                vstore(gwt, row + 48, a3)
    scale = vsplat(alpha)
    for q in range(wide, s, LANES):
        for b in range(n):
            r = rowmap[r0 + b]
            dq = vmul(scale, vload(d, b * arow + d0 + q))
            base = w0 + q
            for k in range(starts[r], starts[r + 1]):
                row = base + at(cols, k) * s
                vstore(gwt, row, fma(vsplat(at(vals, k)), dq, vload(gwt, row)))


@njit(cache=True)
def dense_forward(out, o0, inp, i0, arow, n, n_in, wt, w0, bias, b0, s, path):
    """out[b] = bias + sum_{i<n_in} inp[b, i] * wt[i] (rows of the flat buffers).

    PATH_BLAS: the bias, then one sgemm (row-major out = inp @ wt, so column-major
    out^T = wt^T inp^T). PATH_OWN: four rows at a time, each 16-lane piece of wt loaded once
    for four rows.
    """
    if path == PATH_BLAS:
        for b in range(n):
            for q in range(0, s, LANES):
                vstore(out, b * arow + o0 + q, vload(bias, b0 + q))
        sgemm(False, False, s, n, n_in, ONE, wt, w0, s, inp, i0, arow, ONE, out, o0, arow)
        return
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
def dense_backward(dinp, gwt, w0, gbias, b0, d, o0, inp, i0, arow, n, n_in, wt, wc, c0, n_out,
                   s, s_in, path):  # fmt: skip
    """A layer after the first, over the n rows of the batch:

    gbias += sum_b d[b]; gwt[i] += sum_b inp[b, i] * d[b] (i < n_in);
    dinp[b] = sum_{o<n_out} d[b, o] * w[o] for every row, lanes n_in..s_in zero.

    PATH_BLAS: two sgemm on wt (at w0) itself. PATH_OWN: the gradient summed over the rows
    in registers, so it is read and written once per batch; dinp from the copy wc
    (n_out, s_in) at c0, four rows at a time.
    """
    if path == PATH_BLAS:
        bias_backward(gbias, b0, d, o0, arow, n, s)
        # row-major gwt (n_in, s) += inp^T d: column-major gwt^T += d^T inp
        sgemm(False, True, s, n_in, n, ONE, d, o0, arow, inp, i0, arow, ONE, gwt, w0, s)
        # row-major dinp (n, n_in) = d wt^T: column-major dinp^T = wt d^T
        sgemm(True, False, n_in, n, s, ONE, wt, w0, s, d, o0, arow, ZERO, dinp, i0, arow)
        for b in range(n):
            for j in range(n_in, s_in):
                dinp[b * arow + i0 + j] = ZERO
        return
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
    return xent_grad(d, probs, logits, o0, arow, n, m, s, labels, order, r0, scale, lse)


@njit(cache=True)
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
