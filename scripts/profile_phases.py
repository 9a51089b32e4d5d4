"""Where a batch's time goes in the lane-split training loop, phase by phase, on T threads.

``train_loop_split_lanes`` (kernels/numba/split_lanes.py) runs each batch as a sequence of
phases, some split between the threads by lanes (a parallel loop each) and some on the
calling thread. This script runs the same phases, built from the same kernel functions,
one compiled call per phase, and times each call from Python; the phases' sum is checked
against the loop itself on the same batches (the difference is the calls' own cost), whose
two variants (``spread``: the serial part spread over the threads, and ``serial``) are
both timed; ``loop_spreads`` says which train_steps runs at that thread count. With
``--threads 1,4,16`` it shows which phase stops scaling. Not a test: it is for reading on a
many-core machine (``scripts/bench_cores.py`` has the epoch tables).

    FASTMLP_DATA=../shared/mnist python scripts/profile_phases.py --hidden 1024,1024 --threads 1,16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernels.numba.codes import PATH_BLAS, OptState, Targets  # noqa: E402
from kernels.numba.heads import activation_backward  # noqa: E402
from kernels.numba.net import WIDE, bias_backward, dense_backward, dense_forward  # noqa: E402
from kernels.numba.optim import update  # noqa: E402
from kernels.numba.passes import (  # noqa: E402
    PRANGE_ONLY,
    activate,
    batch_scales,
    first_backward,
    first_forward,
    first_tiles,
    net_head,
    refresh,
    transpose_first,
)
from kernels.numba.plan import lane_split_flags  # noqa: E402
from kernels.numba.split import slice_of  # noqa: E402
from kernels.numba.split_lanes import backward_lanes, forward_lanes  # noqa: E402
from kernels.numba.train import lane_cut, loop_start  # noqa: E402


@njit(inline="always")
def first_cut(s0, t, shards, fine):
    """Thread t's lanes of the first layer: whole WIDE blocks (the loop's cut) or, with
    ``fine``, 16-lane units (a variant)."""
    if fine:
        return slice_of(s0, t, shards)
    return lane_cut(s0, -(-s0 // WIDE), t, shards)


@njit(parallel=PRANGE_ONLY)
def first_forward_phase(pre, post, tiles, n, inputs, r0, work, layers, net, s0, shards, fine):
    first_tiles(tiles, n, inputs, r0, layers)
    for t in prange(shards):
        qa, qb = first_cut(s0, t, shards, fine)
        first_forward(pre, tiles, n, inputs, r0, work, layers, net, qa, qb)
        activate(post, pre, 0, n, layers, net, 0, qa, qb)


@njit(parallel=PRANGE_ONLY)
def blas_forward_phase(pre, post, n, work, layers, net, k, s, shards):
    for t in prange(shards):
        q0, q1 = slice_of(s, t, shards)
        forward_lanes(pre, post, n, work, layers, net, k, q0, q1)


@njit
def own_forward_phase(pre, post, n, work, layers, net, k):
    layer = layers[k]
    dense_forward(pre, layer.aoff, post, layers[k - 1].aoff, net.arow, n, layer.n_in,
                  layer.n_out, work, layer.woff, work, layer.boff, layer.stride,
                  layer.path)  # fmt: skip
    activate(post, pre, 0, n, layers, net, k, 0, layer.stride)


@njit
def head_phase(delta, pre, post, n, targets, r0, layers, net, n_classes, totals, j, lse):
    dscale, lscale = batch_scales(net, n, n_classes, totals, j)
    loss, hits = net_head(delta, pre, post, n, targets, r0, layers, net, dscale, lse)
    return loss * lscale, hits


@njit
def own_backward_phase(delta, grad, pre, post, n, work, wc, layers, net, k):
    layer, below = layers[k], layers[k - 1]
    dense_backward(delta, grad, layer.woff, grad, layer.boff, delta, layer.aoff, post,
                   below.aoff, net.arow, n, layer.n_in, work, wc, layer.coff, layer.n_out,
                   layer.stride, below.stride, layer.path)  # fmt: skip
    activation_backward(delta, pre, post, below.aoff, net.arow, n, layer.n_in, below.stride,
                        net.act)  # fmt: skip


@njit
def bias_phase(grad, delta, n, layers, net, k):
    layer = layers[k]
    bias_backward(grad, layer.boff, delta, layer.aoff, net.arow, n, layer.stride)


@njit(parallel=PRANGE_ONLY)
def blas_backward_phase(grad, delta, pre, post, n, work, layers, net, k, s, s_in, shards):
    for t in prange(shards):
        q0, q1 = slice_of(s, t, shards)
        j0, j1 = slice_of(s_in, t, shards)
        backward_lanes(grad, delta, pre, post, n, work, layers, net, k, q0, q1, j0, j1)


@njit
def transpose_phase(scratch, n, inputs, r0, alpha):
    transpose_first(scratch, n, inputs, r0, alpha)


@njit(parallel=PRANGE_ONLY)
def first_backward_phase(w_first, alpha, scratch, n, inputs, r0, layers, net, s0, shards, fine):
    for t in prange(shards):
        qa, qb = first_cut(s0, t, shards, fine)
        first_backward(w_first, alpha, scratch, n, inputs, r0, layers, net, qa, qb)


@njit(parallel=PRANGE_ONLY)
def update_phase(work, grad, lo, pw, state, optim, lr, step, shards):
    for t in prange(shards):
        a = lo + (pw - lo) * t // shards
        b = lo + (pw - lo) * (t + 1) // shards
        update(work, grad, a, b, state.velocity, state.m, state.v, optim, lr, step)


@njit
def refresh_phase(wc, work, layers):
    refresh(wc, work, layers)


@njit(parallel=PRANGE_ONLY)
def empty_phase(out, shards):  # what one parallel call costs with nothing in it
    for t in prange(shards):
        out[t] += 1


def setup(hidden, batch, rows, seed=0):
    """The arguments train_steps would hand the loop, for the first `rows` rows of MNIST."""
    from fastmlp import MLP
    from fastmlp.data import load_mnist
    from kernels.layout import Optimizer
    from kernels.numba import network as nw

    X, y, _, _ = load_mnist(download=False)
    X = X.reshape(len(X), -1)
    model = MLP((784, *hidden, 10), seed=seed)
    net = model.net
    g = nw.geometry(net, batch)
    work = g.pack(model.params)
    wc = g.copies(work)
    order = np.random.default_rng(seed).permutation(len(X))[:rows].astype(np.int64)
    _, csr = nw._inputs(nw.prepare_inputs(X), net)
    inputs = csr(order)
    labels, target = nw.loss_targets(y, net, len(X))
    targets = Targets(labels, target, None, order)
    optim = nw.optim_constants(Optimizer("sgd"))
    return g, work, wc, inputs, targets, optim


def profile(hidden, batch, rows, threads, fine, reps):
    """Per-phase milliseconds per batch (min over `reps` passes), the phases' sum and the
    loop's own time per batch on the same rows."""
    from kernels.numba.split_lanes import train_loop_split_lanes

    g, work0, wc0, inputs, targets, optim = setup(hidden, batch, rows)
    if not g.uses_blas:
        raise SystemExit(f"784-{'-'.join(map(str, hidden))}-10 has no layer on BLAS: the lane "
                         "split (train_loop_split_lanes) never runs it")  # fmt: skip
    layers, net = g.layers, g.net
    n_batches = -(-rows // batch)
    lrs = np.full(n_batches, 0.01, np.float32)  # small: the weights stay near where they start
    numba.set_num_threads(threads)
    shards = threads
    best: dict[str, float] = {}
    for _ in range(reps):
        work, wc = work0.copy(), wc0.copy()
        state = OptState(None, None, None)
        n_rows, n_classes, grad, scratch, in_place, w_first, lo = loop_start(
            work, optim, layers, net, inputs, targets, batch)  # fmt: skip
        pre, post, delta, lse = scratch[0], scratch[1], scratch[2], scratch[3]
        s0 = int(layers[0]["stride"])
        pw = work.shape[0]
        spent: dict[str, float] = {}

        def timed(name, fn, *args, spent=spent):
            start = time.perf_counter()
            out = fn(*args)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
            return out

        for j in range(n_batches):
            r0 = j * batch
            n = min(batch, n_rows - r0)
            lr = lrs[j]
            alpha = np.float32(-lr) if in_place else np.float32(1.0)
            timed("first forward", first_forward_phase, pre, post, scratch[7], n, inputs, r0, work, layers,
                  net, s0, shards, fine)  # fmt: skip
            for k in range(1, len(layers)):
                s = int(layers[k]["stride"])
                if layers[k]["path"] == PATH_BLAS:
                    timed(f"layer {k} forward (sgemm)", blas_forward_phase, pre, post, n, work,
                          layers, net, k, s, shards)  # fmt: skip
                else:
                    timed(f"layer {k} forward (own, 1 thread)", own_forward_phase, pre, post, n,
                          work, layers, net, k)  # fmt: skip
            timed("loss head (1 thread)", head_phase, delta, pre, post, n, targets, r0, layers,
                  net, n_classes, None, j, lse)  # fmt: skip
            for k in range(len(layers) - 1, 0, -1):
                s, s_in = int(layers[k]["stride"]), int(layers[k - 1]["stride"])
                if layers[k]["path"] == PATH_BLAS:
                    timed("biases (1 thread)", bias_phase, grad, delta, n, layers, net, k)
                    timed(f"layer {k} backward (sgemm)", blas_backward_phase, grad, delta, pre,
                          post, n, work, layers, net, k, s, s_in, shards)  # fmt: skip
                else:
                    timed(f"layer {k} backward (own, 1 thread)", own_backward_phase, delta, grad,
                          pre, post, n, work, wc, layers, net, k)  # fmt: skip
            timed("biases (1 thread)", bias_phase, grad, delta, n, layers, net, 0)
            timed("first transpose (1 thread)", transpose_phase, scratch, n, inputs, r0, alpha)
            timed("first backward", first_backward_phase, w_first, alpha, scratch, n, inputs, r0,
                  layers, net, s0, shards, fine)  # fmt: skip
            timed("update", update_phase, work, grad, lo, pw, state, optim, lr, j + 1, shards)
            timed("refresh (1 thread)", refresh_phase, wc, work, layers)
        for name, sec in spent.items():
            best[name] = min(best.get(name, np.inf), sec / n_batches * 1e3)
    # one parallel call with nothing in it, and the loop itself on the same rows
    counter = np.zeros(shards, np.int64)
    empty_phase(counter, shards)
    start = time.perf_counter()
    for _ in range(n_batches):
        empty_phase(counter, shards)
    empty = (time.perf_counter() - start) / n_batches * 1e3
    loops = {"spread": np.inf, "serial": np.inf}  # both variants of the loop, alternately
    for _ in range(reps):
        for name, flags in (("spread", (True, None)), ("serial", (None, True))):
            work, wc = work0.copy(), wc0.copy()
            losses = np.empty(n_batches, np.float32)
            correct = np.zeros(n_batches, np.int64)
            start = time.perf_counter()
            train_loop_split_lanes(work, wc, OptState(None, None, None), inputs, targets, None,
                                   batch, lrs, 0, layers, net, optim, losses, correct, shards,
                                   *flags)  # fmt: skip
            took = (time.perf_counter() - start) / n_batches * 1e3
            loops[name] = min(loops[name], took)
    return {"phases_ms": {k: round(v, 4) for k, v in best.items()},
            "sum_ms": round(sum(best.values()), 4), "empty_parallel_call_ms": round(empty, 4),
            "loop_ms": {name: round(ms, 4) for name, ms in loops.items()},
            "loop_spreads": lane_split_flags(shards)[0] is not None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", default="1024,1024")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rows", type=int, default=12_800)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--fine", action="store_true",
                        help="also cut the first layer in 16-lane units (variant)")  # fmt: skip
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    hidden = tuple(int(h) for h in args.hidden.split(","))
    from kernels.numba import network as nw

    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        for fine in (False, True) if args.fine else (False,):
            with nw._blas_limit(1):  # as train_steps: BLAS on one thread inside each slice
                result = profile(hidden, args.batch, args.rows, threads, fine, args.reps)
            row = {"hidden": list(hidden), "batch": args.batch, "threads": threads,
                   "first_cut": "16 lanes" if fine else "WIDE blocks", **result}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
