"""The network functions of the numba backend (INTERFACE.md section 2): checks, work layout,
and one compiled call per chunk of an epoch (:mod:`kernels.numba.train`).

How ``train_steps`` is fast: every batch of the call runs inside one compiled loop;
weights are kept transposed and padded to 16 lanes, so a narrow layer is one vector
multiply-add per input, accumulated in registers, and a wide one (BLAS_MIN_WEIGHTS
weights or more) is three sgemm calls; the first layer reads its input as compressed
sparse rows (about 150 entries of an MNIST row instead of 784 columns), built once per
fit by :func:`prepare_inputs` whatever the input dtype, and prefetched ahead of the
shuffled order; plain SGD updates the first layer's weights in place instead of through
a gradient buffer. How the threads share the work: :mod:`kernels.numba.plan`. ``forward``'s Python
threads, running compiled code without the GIL, take blocks of rows from one counter
(:mod:`kernels.numba.infer`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading

import numba
import numpy as np

from kernels.layout import LOSSES, OPTIMIZERS, Net, Optimizer
from kernels.numba import net as kn
from kernels.numba import plan
from kernels.numba import work as kw
from kernels.numba.checks import (
    batch_totals,
    check_params,
    check_sample_weight,
    loss_targets,
)
from kernels.numba.codes import (
    ACT_CODES,
    LAYER,
    OPT_CODES,
    PATH_BLAS,
    PATH_OWN,
    Network,
    Optim,
    OptState,
    Targets,
)
from kernels.numba.compress import PAIRS
from kernels.numba.evaluate import loss_and_grads_rows, sum_rows
from kernels.numba.infer import forward_dense_rows, forward_rows
from kernels.numba.inputs import (  # noqa: F401  (SparseInputs, prepare_inputs: this module's API)
    FORWARD_MIN_ROWS,
    SparseInputs,
    _forward_pool,
    _inputs,
    _scale,
    prepare_inputs,
)
from kernels.numba.simd import LANES
from kernels.numba.split import train_loop_split
from kernels.numba.split_lanes import train_loop_split_lanes
from kernels.numba.train import loop_start, train_loop, train_loop_lanes, train_loop_threads

BLOCK = 256  # rows per pass in forward and loss_and_grads
# forward: BLAS layers after a ReLU read their input as sparse rows (tiles.sparse_hidden),
# where the CPU has AVX-512. With AVX2 (AMD EPYC Zen 3, 2 threads, the 10,000 test images,
# interleaved) sgemm is faster: 784-1024-1024-10 213-220 ms against 287-305, 784-256-256-10
# 29-31 against 32-35: each multiply-add of the sparse kernel loads its weight, from L2,
# at 32 bytes a cycle.
SPARSE_HIDDEN = PAIRS


def init_params(params, net, init, seed):
    """Fill params: weights from the shared splitmix64 stream, biases zero (not hot: NumPy)."""
    from kernels import numpy_backend

    numpy_backend.init_params(params, net, init, seed)


def padded(n: int) -> int:
    """The lanes S kept for a layer of n outputs: n rounded up to 16 lanes, and 16 more where
    that is a multiple of 256 lanes (1 KB). A weight row of a power-of-two number of KB puts
    every row of a column block in the same cache sets: at 1024 wide the 784 rows of the 256
    bytes the first layer reads per pass fell into 64 of the 1,024 sets of a 1 MB L2 (784-1024-10
    inference of 10,000 images on one AMD EPYC core: 106 ms, with the 16 lanes more: 63 ms)."""
    s = -(-n // LANES) * LANES
    return s + LANES if s % 256 == 0 else s


class Geometry:
    """Where everything of a network lives in the work layout (see kernels/numba/net.py),
    and which kernel runs each layer's dense products for batches of ``rows`` rows."""

    def __init__(self, net: Net, rows: int) -> None:
        sizes = net.sizes
        n_layers = len(sizes) - 1
        stride = [padded(n) for n in sizes[1:]]
        path = [PATH_OWN] + [kn.dense_path(sizes[i], sizes[i + 1], rows)
                             for i in range(1, n_layers)]  # fmt: skip
        woff, boff, coff, aoff = [], [], [], []
        pw = pc = arow = 0
        for layer in range(n_layers):
            woff.append(pw)
            pw += sizes[layer] * stride[layer]
            boff.append(pw)
            pw += stride[layer]
            coff.append(pc)
            if layer > 0 and path[layer] == PATH_OWN:
                pc += sizes[layer + 1] * stride[layer - 1]
            aoff.append(arow)
            arow += stride[layer]
        layers = np.zeros(n_layers, LAYER)
        for name, values in (("n_in", sizes[:-1]), ("n_out", sizes[1:]), ("stride", stride),
                             ("woff", woff), ("boff", boff), ("coff", coff), ("aoff", aoff),
                             ("path", path)):  # fmt: skip
            layers[name] = values
        self.layers = layers  # one LAYER record per layer
        self.pw = pw  # floats in the work vector
        self.pc = max(pc, 1)  # floats in the weight copies
        self.arow = arow  # floats of activations per row
        self.net = Network(ACT_CODES[net.activation], ACT_CODES[net.output],
                           LOSSES.index(net.loss), arow)  # fmt: skip
        self.uses_blas = PATH_BLAS in path

    def pack(self, flat):
        """The work vector of a flat parameter-like vector (64-byte aligned)."""
        work = kw.aligned_empty(self.pw)
        kw.pack(work, flat, self.layers)
        return work

    def unpack(self, flat, work):
        kw.unpack(flat, work, self.layers)

    def copies(self, work):
        """The weight copies (fan_out, S_in) of layers after the first on PATH_OWN."""
        wc = kw.aligned_empty(self.pc)
        wc[:] = 0
        kw.refresh_copies(wc, work, self.layers)
        return wc


@functools.lru_cache(maxsize=64)
def geometry(net: Net, rows: int) -> Geometry:
    return Geometry(net, rows)


@functools.cache
def _blas_threads():
    """threadpoolctl's handle on the BLAS libraries, SciPy's loaded first (None without
    threadpoolctl: BLAS then uses its own default, all cores)."""
    import scipy.linalg.cython_blas  # noqa: F401  (the library numba_xxgemm calls)

    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


# BLAS's thread count belongs to the process: two calls running at once in two Python
# threads would share it, and the first to finish restored BLAS's default under the
# other, whose sgemm then ran on every core and gave other floats (two fits of
# 784-256-256-10 on 2 threads each, at once in two threads of one process: 3 runs of 5
# trained other parameters than the same fits alone). So the calls that set it run one
# at a time, each with its own setting.
_BLAS_CALLS = threading.Lock()


@contextlib.contextmanager
def _blas_limit(threads):
    controller = _blas_threads()
    with _BLAS_CALLS:
        if controller is None:
            yield
            return
        with controller.limit(limits=threads, user_api="blas"):
            yield


def forward(params, net: Net, X):
    """The outputs (N, sizes[-1]) float32 of the network for the rows of X (an array or
    :class:`SparseInputs`)."""
    return _forward(params, net, X, False)[0]


def forward_checked(params, net: Net, X):
    """(forward(params, net, X), the first row of a float32 X holding NaN or infinity, else
    -1): the check rides on the gather of each block's non-zero entries (which NaN and
    infinity are), so a float input costs no pass of its own (numba backend only; what
    :class:`fastmlp.MLP` calls in place of checking a float input itself). Rows from the
    bad row's block on are not computed then."""
    return _forward(params, net, X, isinstance(X, np.ndarray) and X.dtype == np.float32)


def _forward(params, net, X, check):
    check_params(params, net)
    n, csr = _inputs(X, net)
    g = geometry(net, BLOCK)
    m = net.sizes[-1]
    out = np.empty(n * m, np.float32)  # (N, m) rows, flat for the kernels' masked stores
    if n == 0:
        return out.reshape(n, m), -1
    work = g.pack(params)
    if isinstance(X, SparseInputs):
        kernel, args = forward_rows, (out, work, csr(np.arange(n, dtype=np.int64)), g.layers,
                                      g.net)  # fmt: skip
    else:  # an array: each block gathers its own rows' entries (no pass over X first)
        kernel, args = forward_dense_rows, (out, work, X, _scale(X), g.layers, g.net)
    # ReLU layers that training hands to BLAS read their input's non-zero entries instead
    # (infer.after_first): column numbers within a row of activations are uint16
    # (None rather than False: Numba prunes the branch, the kernel is not compiled)
    sparse = SPARSE_HIDDEN and net.activation == "relu" and g.uses_blas and g.arow + LANES < 2**16
    sparse = True if sparse else None
    # Every thread, this one too, takes blocks of BLOCK rows from one counter (claims[0];
    # claims[1] counts the blocks done) until none is left: the kernels run without the
    # GIL (Python threads rather than a prange, whose first compile costs ~2.5 s more), BLAS
    # on one thread within each. A thread that starts late (a busy core) takes fewer blocks
    # instead of holding the others up, and once every block is done this thread returns
    # without waiting for one that has not started. A block holds the same rows whatever
    # thread takes it (sgemm's sums depend on the block's rows): the outputs are the same
    # bits on any number of threads.
    threads = max(1, min(numba.get_num_threads(), n // FORWARD_MIN_ROWS))
    claims = np.zeros(2, np.int64)

    def extra():  # the block's column numbers and the check, for a dense X (one per thread)
        if kernel is forward_rows:
            return ()
        return (np.empty(BLOCK * X.shape[1] + 4 * LANES, kw.column_dtype(X.shape[1])), check)

    with _blas_limit(1) if g.uses_blas else contextlib.nullcontext():
        jobs = [_forward_pool(os.getpid()).submit(kernel, *args, claims, BLOCK, sparse, *extra())
                for _ in range(threads - 1)]  # fmt: skip
        bad = [kernel(*args, claims, BLOCK, sparse, *extra())]
        if claims[1] != -(-n // BLOCK):  # a block still running elsewhere, or a bad row
            bad += [job.result() for job in jobs]
    bad = [int(b) for b in bad if b >= 0]
    return out.reshape(n, m), min(bad, default=-1)


def loss_and_grads(params, net: Net, X, targets):
    """(mean loss over the N rows, its gradient (P,) float32 laid out like params)."""
    check_params(params, net)
    n, csr = _inputs(X, net)
    labels, target = loss_targets(targets, net, n)
    if n == 0:
        raise ValueError("loss_and_grads needs at least one row")
    g = geometry(net, BLOCK)
    work = g.pack(params)
    chunk = max(1024, -(-n // 64))  # at most 64 partial gradients; depends on n only
    n_chunks = -(-n // chunk)
    partial = np.empty((n_chunks, g.pw), np.float32)
    losses = np.empty(n_chunks, np.float32)
    order = np.arange(n, dtype=np.int64)
    with _blas_limit(1) if g.uses_blas else contextlib.nullcontext():
        loss_and_grads_rows(partial, losses, work, g.copies(work), csr(order),
                            Targets(labels, target, None, order), g.layers, g.net, chunk,
                            BLOCK)  # fmt: skip
    grad_work = np.empty(g.pw, np.float32)
    sum_rows(grad_work, partial)
    grads = np.empty(net.n_params, np.float32)
    g.unpack(grads, grad_work)
    per_row = n if net.loss == "cross_entropy" else n * net.sizes[-1]
    return float(np.float32(losses.sum(dtype=np.float32)) / np.float32(per_row)), grads


def optim_constants(optimizer: Optimizer) -> Optim:
    """The optimizer as compiled code reads it (floats as float64 whatever their Python type,
    so that every run shares one compiled signature)."""
    return Optim(OPT_CODES[optimizer.name], float(optimizer.momentum), float(optimizer.beta1),
                 float(optimizer.beta2), float(optimizer.eps), float(optimizer.weight_decay))  # fmt: skip


@contextlib.contextmanager
def _num_threads_restored(count):
    try:
        yield
    finally:
        numba.set_num_threads(count)


def _threads(threads):
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    return min(int(threads), numba.config.NUMBA_NUM_THREADS)


def _split_rows(args, threads):
    """train_loop_split on ``threads`` threads: this one and the forward pool's, each running
    the loop without the GIL (they meet inside it; see kernels.numba.barrier)."""
    work, _, _, inputs, targets, _, batch_size, _, _, layers, net, optim, _, _ = args
    _, _, grad, scratch, in_place, _, _ = loop_start(work, optim, layers, net, inputs, targets,
                                                     batch_size)  # fmt: skip
    # what the threads share besides (NumPy's zeros: no compiled kernel of their own to build)
    entries = scratch[5].shape[0]  # (loop_start's room for a batch's entries)
    parts = (np.zeros((threads, int(layers[0]["n_in"]) + 2), np.int64),
             np.zeros((threads, entries), np.int64), np.zeros((threads, entries), np.float32))  # fmt: skip
    tiles = np.zeros((threads, *scratch[7].shape), np.int64)
    shared = (grad, scratch, in_place, parts, np.zeros(threads, np.float32),
              np.zeros(threads, np.int64), tiles)  # fmt: skip
    sync = np.zeros(64, np.int64)[24:32]  # (in the middle: no other data on its cache lines)
    pool = _forward_pool(os.getpid())
    jobs = [pool.submit(train_loop_split, t, sync, *args, threads, *shared)
            for t in range(1, threads)]  # fmt: skip
    train_loop_split(0, sync, *args, threads, *shared)
    for job in jobs:
        job.result()


def train_steps(params, opt_state, net: Net, X, targets, order, batch_size, lrs,
                optimizer: Optimizer, step0, threads=1, sample_weight=None):  # fmt: skip
    """ceil(len(order) / batch_size) optimizer steps, batch j being X[order[j*bs:(j+1)*bs]].

    X is an array or :class:`SparseInputs` (the fast way to pass the same rows call after
    call). Returns (losses (n_batches,) float32, correct (n_batches,) int64); params and
    opt_state are updated in place. Up to ``threads`` threads (capped by NUMBA_NUM_THREADS)
    share the work: BLAS's for networks with a wide layer, else batches of at least
    PARALLEL_MIN_BATCH rows are split between them. The result is the same run after run
    for a given thread count.

    ``sample_weight`` (None, or float32 (N,) non-negative: row i of X weighs
    sample_weight[i]) makes each batch's loss the weighted mean sum w_i l_i / sum w_i over
    its rows (scikit-learn's), and its gradient likewise; weight decay is unchanged. A
    batch whose weights sum to 0 takes no loss gradient (weight decay still applies) and
    reports loss 0. None runs exactly the unweighted code.
    """
    check_params(params, net)
    n_x, csr = _inputs(X, net)
    labels, target = loss_targets(targets, net, n_x)
    sample_weight = check_sample_weight(sample_weight, n_x)
    if optimizer.name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer.name!r}")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = np.ascontiguousarray(order, np.int64)
    if order.ndim != 1:
        raise ValueError("order must be a vector of row indices")
    if len(order) and (order.min() < 0 or order.max() >= n_x):
        raise ValueError(f"order must index rows of X (0 .. {n_x - 1})")
    n_batches = math.ceil(len(order) / batch_size)
    lrs = np.ascontiguousarray(lrs, np.float32)
    if lrs.shape != (n_batches,):
        raise ValueError(f"lrs must have one rate per batch ({n_batches}), got {lrs.shape}")
    threads = threads_asked = _threads(threads)
    losses = np.empty(n_batches, np.float32)
    correct = np.zeros(n_batches, np.int64)
    if n_batches == 0:
        return losses, correct

    # Kernels and loop are chosen for the batch size asked for, not this call's rows: a
    # call with fewer (the warm-up on a small data set, an epoch's last chunk) then runs
    # and compiles the same loop as the rest of the epoch (a 2,048-row fit of
    # 784-256-256-10 at batch 128 compiled both split loops: +5.5 s), and its results stay
    # those of the loop its epoch runs.
    g = geometry(net, batch_size)
    work = g.pack(params)
    wc = g.copies(work)
    names = {"sgd": (), "momentum": ("velocity",), "adam": ("m", "v")}[optimizer.name]
    for name in names:
        state = opt_state[name]
        if state.dtype != np.float32 or state.shape != params.shape:
            raise ValueError(f"opt_state[{name!r}] must be float32 of shape {params.shape}")
    states = [g.pack(opt_state[name]) for name in names]
    # the state the optimizer does not use is None: update() compiles only the step it runs
    velocity = states[0] if optimizer.name == "momentum" else None
    m, v = states if optimizer.name == "adam" else (None, None)
    optim = optim_constants(optimizer)
    inputs = csr(order)
    targets = Targets(labels, target, sample_weight, order)
    totals = None if sample_weight is None else batch_totals(sample_weight, order, batch_size)
    args = (work, wc, OptState(velocity, m, v), inputs, targets, totals, batch_size, lrs,
            int(step0), g.layers, g.net, optim, losses, correct)  # fmt: skip
    loop, threads = plan.plan_threads(g, net, inputs, batch_size, threads)
    # Numba's thread count belongs to the calling thread and outlives the call: left at the
    # plan's count, a later forward (which takes every thread it is allowed) ran on the 4
    # threads a 784-256-256-10 fit planned on 16 cores, 10.6 ms a pass instead of 6.9.
    threads_before = numba.get_num_threads()
    if threads > 1:
        numba.set_num_threads(threads)
    # BLAS on one thread inside our threads (the split loops); all of them for train_loop
    blas = _blas_limit(1 if threads > 1 else threads_asked)
    with blas if g.uses_blas else contextlib.nullcontext(), _num_threads_restored(threads_before):
        if loop == "split_rows":
            _split_rows(args, threads)
        elif loop == "split_lanes":
            train_loop_split_lanes(*args, threads, *plan.lane_split_flags(threads))
        elif loop == "lanes":
            train_loop_lanes(*args, threads)
        elif loop == "rows":
            train_loop_threads(*args, threads)
        else:
            train_loop(*args)
    g.unpack(params, work)
    for name, state in zip(names, states, strict=True):
        g.unpack(opt_state[name], state)
    return losses, correct
