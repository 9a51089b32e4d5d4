"""The numba backend's work layout and its view of the input rows.

``pack``/``unpack`` turn the flat ``params`` of :mod:`kernels.layout` into the work vector
the kernels of :mod:`kernels.numba.net` read (weights transposed, padded to 16 lanes) and
back; ``refresh_copies`` keeps the (fan_out, S_in) copies our dense backward reads;
``sparse_rows`` makes the compressed sparse rows the first layer reads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.numba.codes import PATH_OWN
from kernels.numba.compress import compress_nonzero
from kernels.numba.memory import at
from kernels.numba.simd import LANES

f32 = np.float32
ZERO = f32(0.0)
INV255 = f32(1.0 / 255.0)


# ---------------------------------------------------------------------------------------
# Work layout: params <-> work vector (transposed, padded weights).
# ---------------------------------------------------------------------------------------


def _pieces(layers):
    """(n_in, n_out, S, w0, b0) of each layer, as Python ints."""
    for layer in layers:
        yield tuple(int(layer[name]) for name in ("n_in", "n_out", "stride", "woff", "boff"))


def aligned_empty(n: int) -> np.ndarray:
    """np.empty(n, float32) starting on a 64-byte boundary (NumPy gives 16): every 16-lane
    weight row of the work layout is then one cache line, not two halves of two (NumPy's
    usual offset of 16 or 48 bytes split every vector load: 784-64-64-10 inference's first
    layer 2.95 -> 2.30 ms a pass, 784-256-256-10's 13.1 -> 9.0 ms, one core)."""
    buf = np.empty(n + LANES, np.float32)
    skip = (-buf.ctypes.data // 4) % LANES
    return buf[skip : skip + n]


def pack(work, flat, layers):
    """work (PW,) = flat (P,) in the work layout; padded lanes 0. NumPy (one compiled kernel
    fewer to build on a first run), transposing 16 outputs at a time: each strip's source
    stays in cache while every row of wt takes one cache line of it. Every train_steps call
    packs (7-20 a fit epoch): one 1024x1024 weight took 3.6 ms as one transposed copy, 0.56 ms
    by strips (AMD EPYC); unpack's direction is not slow (0.5 ms either way)."""
    work[:] = ZERO
    p = 0
    for n_in, n_out, s, w0, b0 in _pieces(layers):
        weight = flat[p : p + n_out * n_in].reshape(n_out, n_in)
        wt = work[w0 : w0 + n_in * s].reshape(n_in, s)
        for o in range(0, n_out, LANES):
            o1 = min(o + LANES, n_out)
            wt[:, o:o1] = weight[o:o1].T
        p += n_out * n_in
        work[b0 : b0 + n_out] = flat[p : p + n_out]
        p += n_out


def unpack(flat, work, layers):
    """flat (P,) = work (PW,) back in the layout of kernels.layout (NumPy, as pack)."""
    p = 0
    for n_in, n_out, s, w0, b0 in _pieces(layers):
        wt = work[w0 : w0 + n_in * s].reshape(n_in, s)
        flat[p : p + n_out * n_in].reshape(n_out, n_in)[...] = wt[:, :n_out].T
        p += n_out * n_in
        flat[p : p + n_out] = work[b0 : b0 + n_out]
        p += n_out


@njit(cache=True)
def refresh_copies(wc, work, layers):
    """wc: for layers k >= 1 on PATH_OWN, w (fan_out, S_in) = wt.T of the work vector (pads
    stay 0). BLAS reads wt transposed itself: its layers keep no copy."""
    for k in range(1, layers.shape[0]):
        layer = layers[k]
        if layer.path != PATH_OWN:
            continue
        n_in, n_out, s, s_in = layer.n_in, layer.n_out, layer.stride, layers[k - 1].stride
        w0, c0 = layer.woff, layer.coff
        for o in range(n_out):
            for i in range(n_in):
                wc[c0 + o * s_in + i] = work[w0 + i * s + o]


# ---------------------------------------------------------------------------------------
# Input: the non-zero entries of the rows, in compressed sparse rows (CSR).
# ---------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def sparse_rows_fill(cols, vals, starts, X, rows, j0, j1, scale):
    """Entries of X[rows[j]] for j0 <= j < j1 into cols/vals at starts[j] (counted before).
    Without the GIL: threads fill slices of the rows at once."""
    full = X.shape[1] - X.shape[1] % LANES
    k = starts[j0]
    # The vector compress writes 16 entries past a row's last: near the end of a slice that
    # is another thread's slice, so the rows there are written one entry at a time.
    limit = starts[j1] - LANES if j1 < rows.shape[0] else starts[j1] + LANES
    for j in range(j0, j1):
        if starts[j + 1] <= limit:
            k = compress_row(cols, vals, k, X, rows[j], full, scale)
        else:
            r = rows[j]
            for i in range(X.shape[1]):
                x = X[r, i]
                if x != 0:
                    cols[k] = i
                    vals[k] = f32(x) * scale
                    k += 1


def column_dtype(n_in: int):
    """16-bit column numbers where they fit (MNIST's 784): a shuffled row's entries are
    memory the epoch waits for, 6 bytes an entry rather than 8."""
    return np.uint16 if n_in <= 65536 else np.uint32


def sparse_rows(X, rows, scale):
    """CSR of X[rows] (uint8 or float32, any number of columns): (cols uint16 or uint32,
    vals float32 = x * scale, starts int64), row j's entries at starts[j]:starts[j+1];
    cols and vals have 16 entries of room past the last (the vector compress writes 16).

    Built once per fit (or per call for a plain array), so that an epoch reads about 150
    entries of an MNIST row instead of its 784 columns, whatever the input's dtype. Sixteen
    columns at a time with a branch-free vector compress, the last fan_in % 16 one by one.
    """
    cols, vals, starts = sparse_rows_alloc(X, rows)
    sparse_rows_fill(cols, vals, starts, X, rows, 0, len(rows), scale)
    return cols, vals, starts


def sparse_rows_alloc(X, rows):
    """(cols, vals, starts) for the CSR of X[rows]: starts counted, cols/vals to be filled."""
    starts = count_starts(X, rows)
    total = int(starts[-1])
    cols = np.empty(total + LANES, column_dtype(X.shape[1]))
    return cols, np.empty(total + LANES, np.float32), starts


@njit(cache=True, nogil=True)
def count_starts(X, rows):
    """Where each row of X[rows] starts in its CSR (len(rows) + 1 entries)."""
    starts = np.empty(rows.shape[0] + 1, np.int64)
    starts[0] = 0
    for j in range(rows.shape[0]):
        x = X[rows[j]]
        c = 0
        for i in range(x.shape[0]):
            c += x[i] != 0  # NaN counts: it is not 0
        starts[j + 1] = starts[j] + c
    return starts


@njit(cache=True, nogil=True, inline="always")
def compress_row(cols, vals, k, X, r, full, scale):
    """Append the non-zero entries of X[r] to cols/vals from k (16 entries of room past the
    last one); return the new k. full: the columns a vector compress takes, 16 at a time."""
    for start in range(0, full, LANES):
        k = compress_nonzero(cols, vals, k, X, r, start, 1, scale)
    for i in range(full, X.shape[1]):
        x = X[r, i]
        cols[k] = i
        vals[k] = f32(x) * scale
        k += x != 0
    return k


@njit(cache=True, inline="always")
def gather_rows(cols, vals, starts, X, r0, n, scale):
    """CSR of X[r0:r0+n] into scratch sized for n full rows (cols/vals n * fan_in + 16,
    starts n + 1): one pass, no counting (forward's blocks)."""
    full = X.shape[1] - X.shape[1] % LANES
    k = np.int64(0)
    for b in range(n):
        starts[b] = k
        k = compress_row(cols, vals, k, X, r0 + b, full, scale)
    for b in range(n, starts.shape[0]):  # rows past n empty (sparse_forward looks ahead)
        starts[b] = k


@njit(cache=True)
def transpose_rows(t_starts, t_rows, t_vals, n, cols, vals, starts, rowmap, r0, alpha, c0, c1):
    """The entries of the batch's n rows (batch row b is CSR row rowmap[r0 + b]) that fall
    in input columns c0..c1-1, by column (CSC): column i's at t_starts[i]:t_starts[i+1],
    t_rows = batch rows (ascending), t_vals = value * alpha; t_starts has fan_in + 2
    entries, the last two the total. Columns 0..fan_in do the whole batch; threads that
    split the columns each read every entry and write only their own columns', in the
    places the whole batch puts them (train_loop_split_lanes' spread variant)."""
    for c in range(c0, c1):
        t_starts[c] = 0
    base = 0  # entries of the columns below c0: where column c0 starts
    for b in range(n):
        r = rowmap[r0 + b]
        for k in range(starts[r], starts[r + 1]):
            c = at(cols, k)
            if c < c0:
                base += 1
            elif c < c1:
                t_starts[c] += 1
    end = base
    for c in range(c0, c1):  # counts to starts (each the column's cursor while filling)
        count = t_starts[c]
        t_starts[c] = end
        end += count
    for b in range(n):
        r = rowmap[r0 + b]
        for k in range(starts[r], starts[r + 1]):
            c = at(cols, k)
            if c0 <= c < c1:
                e = t_starts[c]
                t_rows[e] = b
                t_vals[e] = at(vals, k) * alpha
                t_starts[c] = e + 1
    for c in range(c1 - 1, c0, -1):  # a cursor ends where the next column starts
        t_starts[c] = t_starts[c - 1]
    if c1 > c0:
        t_starts[c0] = base
    if c1 == t_starts.shape[0] - 2:  # the last columns: the end, twice
        t_starts[c1] = end
        t_starts[c1 + 1] = end
