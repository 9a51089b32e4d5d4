"""Dense layers of the numba backend, batch at a time, on the work layout.

The network functions do not work on the flat ``params`` vector of :mod:`kernels.layout`
but on a *work copy* made for speed (:mod:`kernels.numba.work`), written back at the end
of a call:

* every layer's weight is kept transposed, ``wt`` (fan_in, S) with ``S`` the fan_out
  padded to a multiple of 16 lanes (zero columns): the forward pass is then
  ``out = bias + sum_i x_i * wt[i]``, vector multiply-adds accumulated in registers;
* the first layer reads its input as compressed sparse rows, only the non-zero entries
  (about 150 of the 784 pixels of an MNIST digit): batch row b is CSR row
  ``rowmap[r0 + b]``, its entries ``cols/vals[starts[r]:starts[r+1]]``;
* a layer after the first runs our 16-lane kernels (PATH_OWN: four rows per weight load,
  the gradient summed in registers, ``dinp`` from a copy ``w`` (fan_out, S_in) refreshed
  after each step) or, when its weights outgrow the L2 cache, three BLAS sgemm
  (PATH_BLAS) on ``wt`` itself: :func:`dense_path` decides from the shape;
* activations of a row live in one flat vector, layer after layer, each padded to
  its ``S`` lanes. Padded lanes have zero weights in and out, so they carry zeros
  through backpropagation and their parameters stay zero under every optimizer.

Geometry: one :data:`~kernels.numba.codes.LAYER` record per layer (widths, stride S, offsets
of ``wt``, bias, copy and activations, path), computed once in Python by
:class:`kernels.numba.network.Geometry`; the glue of :mod:`kernels.numba.passes` reads it
and hands these kernels plain offsets.

Every kernel is a plain function over the ``n`` rows of a batch (llm.c style: outputs
first, no allocation). Row ``b`` of a layer's activations is at ``b * arow + o0``. One
call per layer and batch: nothing happens per row but arithmetic.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.numba.blas import HAVE_BLAS, bias_sgemm, sgemm
from kernels.numba.codes import PATH_BLAS, PATH_OWN
from kernels.numba.compress import PAIRS
from kernels.numba.memory import at, prefetch_flat, vload, vstore
from kernels.numba.simd import LANES, fma, vadd, vmul, vsplat, vzero

f32 = np.float32
ZERO = f32(0.0)
ONE = f32(1.0)
TWO = f32(2.0)
AHEAD = 8  # rows prefetched ahead of the one being read (rows come in shuffled order)

# Lanes of output the first layer computes for every row of a batch before moving on.
WIDE = 4 * LANES
# Smallest weight matrix (fan_in x fan_out) whose dense products go to BLAS sgemm. Measured
# on one core of an AMD EPYC (AVX-512, OpenBLAS on one thread, OPENBLAS_CORETYPE unset), s per
# epoch of 784-H1-H2-10, own vs BLAS: 128-64 batch 32 0.131 vs 0.118; 128-128 batch 32 0.205
# vs 0.143, batch 128 0.182 vs 0.149; 256-256 batch 16 0.74 vs 0.46, batch 32 0.59 vs 0.45,
# batch 128 0.70 vs 0.29 (Haswell kernels, OPENBLAS_CORETYPE=Haswell: 0.76 vs 0.42); 64-64
# batch 128 0.066 vs 0.062, too close to call. Once at 2**17 (a measurement with BLAS on all
# cores against our threads). A layer with fewer than 32 inputs or outputs (the 10 classes)
# stays on our kernels: one or two vectors wide, sgemm's packing does not pay.
BLAS_MIN_WEIGHTS = 2**13
BLAS_MIN_WIDTH = 32


def dense_path(n_in: int, n_out: int, rows: int) -> int:
    """Which kernel runs the dense products of a layer after the first: PATH_BLAS where the
    weight matrix is large enough for sgemm's packing to pay, PATH_OWN below (and without
    SciPy, which Numba's BLAS helper needs)."""
    if (
        HAVE_BLAS and n_in * n_out >= BLAS_MIN_WEIGHTS and min(n_in, n_out) >= BLAS_MIN_WIDTH
        and rows >= 8
    ):  # fmt: skip
        return PATH_BLAS
    return PATH_OWN


# ---------------------------------------------------------------------------------------
# Dense layers. wt (fan_in, s) at w0 of the work vector, bias (s,) at b0. The first layer
# reads its input as CSR: batch row b is CSR row rowmap[r0 + b].
# ---------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def prefetch_row(cols, vals, starts, r):
    """Start loading CSR row r's entries (a shuffled row is not in cache)."""
    for k in range(starts[r], starts[r + 1], LANES):
        prefetch_flat(cols, k)
        prefetch_flat(vals, k)


@njit(cache=True)
def sparse_forward(out, o0, arow, n, cols, vals, starts, rowmap, r0, wt, w0, bias, b0, s, qa,
                   qb):  # fmt: skip
    """First layer, lanes qa..qb-1 (multiples of 16), 16 at a time:
    out[b] = bias + sum_k vals[k] * wt[cols[k]] over row b's entries.

    The lanes a layer's WIDE blocks leave (all of a layer under 64 lanes):
    :func:`kernels.numba.tiles.sparse_forward_tiles` takes the blocks. Four accumulators
    (four independent add chains) per 16 lanes; rows AHEAD on are prefetched.
    """
    for q in range(qa, qb, LANES):
        for b in range(n):
            if q == qa and r0 + b + AHEAD < rowmap.shape[0]:
                prefetch_row(cols, vals, starts, rowmap[r0 + b + AHEAD])
            r = rowmap[r0 + b]
            k0, k1 = starts[r], starts[r + 1]
            a0 = vload(bias, b0 + q)
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
def sparse_backward(gwt, w0, d, d0, arow, n, cols, vals, starts, rowmap, r0, alpha, s, qa, qb,
                    t_starts, t_rows, t_vals):  # fmt: skip
    """First layer, lanes qa..qb-1 (multiples of 16): gwt[cols[k]] += vals[k] * alpha * d[b]
    over every row's entries.

    With gwt the weights themselves and alpha = -lr this is plain SGD, applied in place.
    Full WIDE blocks go by input column, from the batch transposed into t_* (with alpha)
    by work.transpose_rows beforehand: WIDE lanes of a weight row stay in registers while every
    row of the batch that has that input adds to them (in row order), so a weight is read
    and written once per batch, not once per row. The last (qb - qa) % WIDE lanes go row
    by row, 16 at a time.
    """
    wide = qb - (qb - qa) % WIDE
    for q in range(qa, wide, WIDE):
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
    for q in range(wide, qb, LANES):
        for b in range(n):
            r = rowmap[r0 + b]
            dq = vmul(scale, vload(d, b * arow + d0 + q))
            base = w0 + q
            for k in range(starts[r], starts[r + 1]):
                row = base + at(cols, k) * s
                vstore(gwt, row, fma(vsplat(at(vals, k)), dq, vload(gwt, row)))


@njit(cache=True, inline="always")
def live_lanes(n_out):
    """A layer's outputs rounded up to 16: the lanes its BLAS products compute. The 16 lanes
    more that keep a multiple of 256 off 1 KB rows (network.padded: 272 at 256 wide) stay
    zero in the weights, their gradient and the scratch, and nothing reads them; as the
    M or K of an sgemm they were ~6% of a 256-wide layer's multiply-adds."""
    return (n_out + LANES - 1) // LANES * LANES


@njit(cache=True)
def dense_forward(out, o0, inp, i0, arow, n, n_in, n_out, wt, w0, bias, b0, s, path):
    """out[b] = bias + sum_{i<n_in} inp[b, i] * wt[i] (rows of the flat buffers).

    PATH_BLAS: the bias, then one sgemm (row-major out = inp @ wt, so column-major
    out^T = wt^T inp^T) on the live_lanes(n_out) lanes. PATH_OWN: four rows at a time,
    each 16-lane piece of wt loaded once for four rows, all s lanes.
    """
    if path == PATH_BLAS:
        bias_sgemm(out, o0, arow, n, inp, i0, n_in, wt, w0, s, bias, b0, live_lanes(n_out))
        return
    b = 0
    while b + 4 <= n:
        r0, r1, r2, r3 = b * arow + i0, (b + 1) * arow + i0, (b + 2) * arow + i0, (b + 3) * arow + i0
        # two vectors: eight add chains, not four, where they fit in registers (PAIRS)
        pairs = s - s % (2 * LANES) if PAIRS else 0
        for q in range(0, pairs, 2 * LANES):
            dense_rows4x2(out, b * arow + o0 + q, arow, inp, r0, r1, r2, r3, n_in, wt, w0 + q,
                          bias, b0 + q, s)  # fmt: skip
        for q in range(pairs, s, LANES):
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


@njit(cache=True, inline="always")
def dense_rows4x2(out, o, arow, inp, r0, r1, r2, r3, n_in, wt, base, bias, bq, s):
    """32 lanes of four rows of dense_forward (inputs at r0..r3, outputs from `o`, a row
    apart): eight accumulators, each one lane block's sum in the order the 16-lane loop
    adds it (the same bits), but eight chains of multiply-adds in flight rather than four
    (an FMA's latency is four of its issue slots: four chains kept two FMA units half
    idle). 784-64-64-10 inference, the 64-64 layer: ~0.9 -> ~0.5 ms a pass on one AMD
    EPYC Zen 5 core. Not on AVX2 (16 registers of 8 lanes: eight accumulators, two weight
    vectors and four multipliers spill): one Zen 3 core, 784-64-64-10, inference 8.5 ms
    against 9.1-9.3, an epoch at batch 32 0.155-0.165 s against 0.163-0.182 without it."""
    a0 = vload(bias, bq)
    a1, a2, a3 = a0, a0, a0
    c0 = vload(bias, bq + LANES)
    c1, c2, c3 = c0, c0, c0
    for i in range(n_in):
        row = base + i * s
        w = vload(wt, row)
        v = vload(wt, row + LANES)
        x0 = vsplat(at(inp, r0 + i))
        x1 = vsplat(at(inp, r1 + i))
        x2 = vsplat(at(inp, r2 + i))
        x3 = vsplat(at(inp, r3 + i))
        a0 = fma(x0, w, a0)
        a1 = fma(x1, w, a1)
        a2 = fma(x2, w, a2)
        a3 = fma(x3, w, a3)
        c0 = fma(x0, v, c0)
        c1 = fma(x1, v, c1)
        c2 = fma(x2, v, c2)
        c3 = fma(x3, v, c3)
    vstore(out, o, a0)
    vstore(out, o + arow, a1)
    vstore(out, o + 2 * arow, a2)
    vstore(out, o + 3 * arow, a3)
    vstore(out, o + LANES, c0)
    vstore(out, o + arow + LANES, c1)
    vstore(out, o + 2 * arow + LANES, c2)
    vstore(out, o + 3 * arow + LANES, c3)


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
    else:
        for q in range(0, s, LANES):
            a0 = vzero()
            for b in range(n):
                a0 = vadd(a0, vload(d, b * arow + o0 + q))
            vstore(gbias, b0 + q, vadd(vload(gbias, b0 + q), a0))
    dense_dweight(gwt, w0, d, o0, inp, i0, arow, n, n_out, s, 0, n_in, path)
    dense_dinp(dinp, i0, d, o0, arow, n, n_in, wt, w0, wc, c0, n_out, s, s_in, path)


@njit(cache=True, inline="always")
def dense_dweight(gwt, w0, d, o0, inp, i0, arow, n, n_out, s, j0, j1, path):
    """Rows j0..j1-1 of a layer's weight gradient: gwt[i] += sum_b inp[b, i] * d[b].

    PATH_BLAS: one sgemm (row-major gwt[j0:j1] += inp[:, j0:j1]^T d: column-major
    gwt^T += d^T inp) on the live_lanes(n_out) lanes. PATH_OWN: summed over the rows in
    registers, 16 lanes at a time, all s lanes.
    """
    if path == PATH_BLAS:
        if j1 > j0:
            sgemm(False, True, live_lanes(n_out), j1 - j0, n, ONE, d, o0, arow, inp, i0 + j0,
                  arow, ONE, gwt, w0 + j0 * s, s)  # fmt: skip
        return
    for q in range(0, s, LANES):
        for i in range(j0, j1):
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


@njit(cache=True, inline="always")
def dense_dinp(dinp, i0, d, o0, arow, n, n_in, wt, w0, wc, c0, n_out, s, s_in, path):
    """dinp[b] = sum_{o<n_out} d[b, o] * w[o] for the n rows, lanes n_in..s_in zero.

    PATH_BLAS: one sgemm on wt (row-major dinp = d wt^T: column-major dinp^T = wt d^T),
    summing over the live_lanes(n_out) lanes. PATH_OWN: from the copy wc (n_out, s_in) at
    c0, four rows at a time, as dense_forward.
    """
    if path == PATH_BLAS:
        sgemm(True, False, n_in, n, live_lanes(n_out), ONE, wt, w0, s, d, o0, arow, ZERO, dinp,
              i0, arow)  # fmt: skip
        for b in range(n):
            for j in range(n_in, s_in):
                dinp[b * arow + i0 + j] = ZERO
        return
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
