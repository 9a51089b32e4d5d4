"""The numba backend's threaded path runs when asked, and repeats itself exactly.

Two threads sum a batch's gradient in two halves and then add the halves: a different
order of float32 additions from one thread's. So the result of a 2-thread run differs
from the 1-thread run in the last bits (proof that the batch was really split) yet
agrees to rounding, and is bit for bit the same run after run. Were the threaded path
never taken, the two would be identical and the first assertion would say so.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import kernels
from fastmlp import MLP
from kernels import Net, Optimizer, optimizer_state

pytestmark = pytest.mark.skipif(
    numba.config.NUMBA_NUM_THREADS < 2,
    reason=f"numba may use only {numba.config.NUMBA_NUM_THREADS} thread here "
    "(NUMBA_NUM_THREADS): the threaded path cannot run",
)

BATCH = 256  # at or above the numba backend's threshold for splitting a batch
NET = Net((784, 16, 16, 10), "relu", "softmax", "cross_entropy")


def digits_like(n, seed):
    """MNIST-like uint8 rows (a fifth of the pixels lit) and labels."""
    rng = np.random.default_rng(seed)
    X = ((rng.random((n, 784)) < 0.2) * rng.integers(1, 256, (n, 784))).astype(np.uint8)
    return X, rng.integers(0, 10, n)


def train_steps(threads, optimizer):
    X, y = digits_like(4 * BATCH, 0)
    params = np.empty(NET.n_params, np.float32)
    kernels.backend("numpy").init_params(params, NET, "he_uniform", 0)
    state = optimizer_state(NET, optimizer.name)
    order = np.concatenate([np.random.default_rng(e).permutation(len(X)) for e in range(2)])
    n_batches = len(order) // BATCH
    lrs = np.full(n_batches, 0.003 if optimizer.name == "adam" else 0.1, np.float32)
    losses, correct = kernels.backend("numba").train_steps(
        params, state, NET, X, y, order, BATCH, lrs, optimizer, 0, threads=threads
    )
    return [params, losses, correct, *state.values()]


def assert_split_yet_same_math(one, two, two_again, what):
    assert not all(np.array_equal(a, b) for a, b in zip(one, two, strict=True)), (
        f"{what}: 2 threads gave the 1-thread result bit for bit: the threaded path did not run"
    )
    for a, b in zip(one, two, strict=True):
        scale = max(1.0, float(np.abs(a).max(initial=0.0)))
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * scale, err_msg=what)
    for a, b in zip(two, two_again, strict=True):
        np.testing.assert_array_equal(b, a, err_msg=f"{what}: 2-thread runs do not repeat")


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_train_steps_at_two_threads_splits_the_batch(name):
    optimizer = Optimizer(name, weight_decay=1e-3 if name != "sgd" else 0.0)
    one = train_steps(1, optimizer)
    two = train_steps(2, optimizer)
    two_again = train_steps(2, optimizer)
    assert_split_yet_same_math(one, two, two_again, f"train_steps {name}")


def test_fit_with_two_threads_splits_the_batch():
    X, y = digits_like(3 * BATCH + 40, 1)  # the last batch is partial

    def fit(threads):
        model = MLP([784, 16, 16, 10], seed=3)
        history = model.fit(X, y, epochs=2, batch_size=BATCH, lr=0.1, threads=threads,
                            progress=False)  # fmt: skip
        assert history.options["threads"] == threads
        return [model.params.copy(), np.array(history["loss"])]

    assert_split_yet_same_math(fit(1), fit(2), fit(2), "MLP.fit")


def mnist_like_inputs(n=512):
    from kernels.numba import network
    from kernels.numba.codes import Inputs

    X, _ = digits_like(n, 2)
    inputs = network.prepare_inputs(X)
    return Inputs(inputs.cols, inputs.vals, inputs.starts, np.arange(n, dtype=np.int64))


@pytest.mark.parametrize(
    ("sizes", "rows", "threads", "expected"),
    [
        ((784, 16, 16, 10), 32, 16, ("serial", 1)),  # a small batch: one thread
        ((784, 16, 16, 10), 128, 16, ("rows", 4)),  # at least 32 rows a thread
        ((784, 64, 64, 10), 128, 2, ("rows", 2)),
        ((784, 64, 64, 10), 512, 16, ("rows", 16)),
        ((784, 256, 256, 10), 128, 16, ("split_lanes", 4)),  # at least 64 lanes a thread
        ((784, 800, 10), 128, 16, ("lanes", 13)),  # at most one thread per 64 lanes
        ((784, 800, 10), 128, 1, ("serial", 1)),
        ((784, 1024, 1024, 10), 128, 16, ("split_lanes", 16)),
        ((784, 1024, 1024, 10), 128, 32, ("split_lanes", 16)),
        ((784, 1024, 1024, 10), 128, 1, ("serial", 1)),
    ],
)
def test_thread_plan_depends_on_the_shape_only(sizes, rows, threads, expected):
    """The loop and thread count train_steps picks: capped where more threads measured slower
    (rows a thread, lanes a thread), the same every time it is asked."""
    from kernels.numba import network, plan

    net = Net(sizes, "relu", "softmax", "cross_entropy")
    g = network.geometry(net, rows)
    if expected[0].startswith("split") and not g.uses_blas:
        pytest.skip("SciPy (BLAS for compiled code) is not installed")
    inputs = mnist_like_inputs()
    plans = {plan.plan_threads(g, net, inputs, rows, threads) for _ in range(3)}
    assert plans == {expected}


def fresh_steps(net, inputs, targets, name, batches, threads, weights, init_seed, order_seed):
    """(losses, hits, params, optimizer state) of `batches` batches of 50 rows from freshly
    initialised parameters, rows in a seeded order (the numba backend's train_steps)."""
    params = np.empty(net.n_params, np.float32)
    kernels.backend("numpy").init_params(params, net, "he_uniform", init_seed)
    state = optimizer_state(net, name)
    order = np.random.default_rng(order_seed).permutation(len(inputs))
    lrs = np.full(batches, 0.003 if name == "adam" else 0.1, np.float32)
    losses, hits = kernels.backend("numba").train_steps(
        params, state, net, inputs, targets, order, 50, lrs, Optimizer(name), 0, threads,
        sample_weight=weights)  # fmt: skip
    return losses, hits, params, state


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_split_loop_weighs_samples_as_one_thread(monkeypatch, name):
    """train_loop_split_lanes (BLAS layers, every layer split by lanes: 25 rows a thread)
    with sample weights, some zero: one thread's result to rounding, and the same floats
    run after run."""
    from kernels.numba import net as kn
    from kernels.numba import network, plan

    if not kn.HAVE_BLAS:
        pytest.skip("SciPy (BLAS for compiled code) is not installed")
    network.geometry.cache_clear()
    monkeypatch.setattr(kn, "BLAS_MIN_WEIGHTS", 1)
    monkeypatch.setattr(plan, "SPLIT_LANES_PER_THREAD", 1)
    net = Net((784, 48, 33, 10), "relu", "softmax", "cross_entropy")
    X, y = digits_like(200, 7)
    weights = np.random.default_rng(8).random(len(X)).astype(np.float32) * 2
    weights[::7] = 0
    nb = kernels.backend("numba")
    inputs = nb.prepare_inputs(X)
    assert plan.plan_threads(network.geometry(net, 50), net, mnist_like_inputs(), 50, 2)[0] == (
        "split_lanes")  # fmt: skip

    def run(threads):
        losses, hits, params, _ = fresh_steps(net, inputs, y, name, 4, threads, weights, 1, 9)
        return [losses, hits, params]

    try:
        one, two, again = run(1), run(2), run(2)
    finally:
        network.geometry.cache_clear()
    for a, b in zip(two, again, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(two[0], one[0], rtol=1e-5)
    np.testing.assert_allclose(two[2], one[2], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("sizes", "output", "name", "weighted", "min_weights"),
    [
        ((784, 80, 33, 10), "softmax", "sgd", False, 1),  # a WIDE block and a tail
        ((784, 80, 33, 10), "softmax", "adam", True, 1),
        # 64-40 on our kernels between the sparse layer and a BLAS layer, 200-10 after it
        ((784, 64, 40, 200, 10), "sigmoid", "momentum", False, 4000),
    ],
)
def test_lane_split_spread_gives_the_serial_loops_floats(monkeypatch, sizes, output, name,
                                                       weighted, min_weights):  # fmt: skip
    """train_loop_split_lanes with what it runs between its parallel loops spread over the
    threads (layers after the last BLAS layer and the loss by rows, bias gradients by
    slices, the inputs' transposition by columns; train_steps does so from
    plan.SPREAD_MIN_THREADS threads on) makes the very floats of the same loop with all of
    that on the calling thread: parameters, optimizer state and hits bit for bit, the
    losses (summed in per-thread parts) to rounding."""
    from kernels.numba import net as kn
    from kernels.numba import network, plan

    if not kn.HAVE_BLAS:
        pytest.skip("SciPy (BLAS for compiled code) is not installed")
    network.geometry.cache_clear()
    monkeypatch.setattr(kn, "BLAS_MIN_WEIGHTS", min_weights)
    monkeypatch.setattr(plan, "SPLIT_LANES_PER_THREAD", 1)
    monkeypatch.setattr(plan, "ROW_SPLIT_MAX_THREADS", 1)
    loss = "cross_entropy" if output == "softmax" else "mse"
    net = Net(sizes, "relu", output, loss)
    X, y = digits_like(230, 11)
    targets = y if loss == "cross_entropy" else np.eye(10, dtype=np.float32)[y]
    weights = None
    if weighted:
        weights = np.random.default_rng(12).random(len(X)).astype(np.float32)
        weights[::5] = 0
    nb = kernels.backend("numba")
    inputs = nb.prepare_inputs(X)
    flags = []
    loop = network.train_loop_split_lanes
    monkeypatch.setattr(network, "train_loop_split_lanes",
                        lambda *args: flags.append(args[-2:]) or loop(*args))  # fmt: skip

    def run(spread_from):
        monkeypatch.setattr(plan, "SPREAD_MIN_THREADS", spread_from)
        losses, hits, params, state = fresh_steps(net, inputs, targets, name, 5, 2, weights, 3,
                                                  13)  # fmt: skip
        return losses, [hits, params, *state.values()]

    try:
        spread, serial = run(2), run(3)
    finally:
        network.geometry.cache_clear()
    assert flags == [(True, None), (None, True)]
    for a, b in zip(spread[1], serial[1], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(spread[0], serial[0], rtol=1e-6)


def test_a_call_shorter_than_a_batch_plans_for_the_batch_size(monkeypatch):
    """The warm-up step on a small data set and an epoch's last chunk have fewer rows than
    a batch: they must run (and so compile) the loop and kernels of the batch size asked
    for, as the rest of the epoch does, not those of their own row count (which made a
    2,048-row fit of 784-256-256-10 at batch 128 compile both split loops)."""
    from kernels.numba import network, plan

    asked = []
    plan_threads, geometry = plan.plan_threads, network.geometry
    monkeypatch.setattr(plan, "plan_threads",
                        lambda g, net, inputs, rows, threads: asked.append(("plan", rows))
                        or plan_threads(g, net, inputs, rows, threads))  # fmt: skip
    monkeypatch.setattr(network, "geometry",
                        lambda net, rows: asked.append(("geometry", rows)) or geometry(net, rows))  # fmt: skip
    net = Net((784, 16, 16, 10), "relu", "softmax", "cross_entropy")
    X, y = digits_like(10, 3)
    params = np.empty(net.n_params, np.float32)
    kernels.backend("numpy").init_params(params, net, "he_uniform", 1)
    kernels.backend("numba").train_steps(
        params, optimizer_state(net, "sgd"), net, X, y, np.arange(10), 128,
        np.full(1, 0.1, np.float32), Optimizer("sgd"), 0, 2,
    )  # fmt: skip
    assert asked == [("geometry", 128), ("plan", 128)]


def test_train_steps_leaves_the_callers_thread_count_as_it_was():
    """The plan's thread count is Numba's for the call only: a forward after it takes what
    the caller allowed (set_num_threads is the calling thread's and would outlive the call)."""
    numba.set_num_threads(1)
    try:
        train_steps(2, Optimizer("sgd"))  # BATCH rows: the 2-thread row split
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(2)
    try:
        train_steps(1, Optimizer("sgd"))
        assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_profile_phases_times_every_phase_and_both_loops(mnist, tmp_path):
    """scripts/profile_phases.py (the lane split phase by phase, README's On 16 cores) runs
    on the kernels as they are now: every phase timed, the loop in both variants, and one
    clear line for a network the lane split never runs."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "profile_phases.py"
    out = tmp_path / "phases.json"
    done = subprocess.run([sys.executable, str(script), "--hidden", "256,256", "--threads", "2",
                           "--rows", "384", "--reps", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(out.read_text())
    phases = row["phases_ms"]
    assert {"first forward", "layer 1 forward (sgemm)", "layer 1 backward (sgemm)",
            "first backward", "update", "loss head (1 thread)"} <= set(phases)  # fmt: skip
    assert all(ms > 0 for ms in phases.values())
    assert set(row["loop_ms"]) == {"spread", "serial"} and min(row["loop_ms"].values()) > 0
    none = subprocess.run([sys.executable, str(script), "--hidden", "64,48", "--threads", "2"],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))  # fmt: skip
    assert none.returncode == 1
    assert none.stderr.strip().splitlines() == [
        "784-64-48-10 has no layer on BLAS: the lane split (train_loop_split_lanes) never runs it"
    ]


def test_threads_meeting_in_compiled_code_wait_for_the_last_and_see_its_writes():
    """kernels.numba.barrier.meet, as the two-loop split's threads use it: nobody leaves a
    meeting before the last thread has arrived, everything written before arriving is seen
    after it, and a thread kept waiting long past its spins (here 50 ms: it gives its core
    away at every round then) still leaves once the other arrives."""
    import threading
    import time

    from numba import njit

    from kernels.numba.barrier import meet

    @njit(nogil=True)
    def rounds(th, sync, board, seen, n):
        met = 0
        for j in range(n):
            board[th] = j * 10 + th  # written before arriving...
            met += 2
            meet(sync, met)
            seen[th, j] = board[1 - th]  # ...read by the other thread after leaving
            met += 2
            meet(sync, met)  # (nobody overwrites board before both have read it)

    n = 2000
    sync, board = np.zeros(8, np.int64), np.zeros(2, np.int64)
    seen = np.full((2, n), -1, np.int64)
    rounds(0, np.zeros(8, np.int64), np.zeros(2, np.int64), np.zeros((2, 1), np.int64), 0)
    other = threading.Thread(target=rounds, args=(1, sync, board, seen, n))
    other.start()
    rounds(0, sync, board, seen, n)
    other.join()
    steps = np.arange(n) * 10
    np.testing.assert_array_equal(seen[0], steps + 1)
    np.testing.assert_array_equal(seen[1], steps)

    @njit(nogil=True)
    def arrive(sync, target):
        meet(sync, target)

    sync = np.zeros(8, np.int64)
    waited = []

    def early():
        started = time.perf_counter()
        arrive(sync, 2)
        waited.append(time.perf_counter() - started)

    other = threading.Thread(target=early)
    other.start()
    time.sleep(0.05)
    arrive(sync, 2)
    other.join(timeout=10)
    assert not other.is_alive() and waited[0] >= 0.04
    assert sync[0] == 2


def test_fits_at_once_in_two_threads_train_what_they_train_alone():
    """BLAS's thread count is the process's: a kernel call that sets it must not have it
    restored under another call running at once (its sgemm then ran on every core, other
    floats). Two fits with BLAS layers on 2 threads each, at once in two Python threads,
    eight times: the parameters of the fits run alone. (A race: without the lock in
    kernels.numba.network._blas_limit, two runs of this test in four failed.)"""
    import threading

    rng = np.random.default_rng(5)
    X = ((rng.random((3000, 784)) < 0.2) * rng.integers(1, 256, (3000, 784))).astype(np.uint8)
    y = rng.integers(0, 10, 3000)

    def fit(seed, out):
        model = MLP([784, 256, 256, 10], seed=seed)
        model.fit(X, y, epochs=2, batch_size=128, threads=2, progress=False)
        out[seed] = model.params.copy()

    alone = {}
    for seed in (1, 2):
        fit(seed, alone)
    for _ in range(8):
        together = {}
        both = [threading.Thread(target=fit, args=(seed, together)) for seed in (1, 2)]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join()
        for seed in (1, 2):
            np.testing.assert_array_equal(together[seed], alone[seed])


def test_training_and_predicting_leave_blas_threads_as_they_were():
    """fastmlp sets BLAS's thread count only around its own calls: a fit of a network
    without BLAS layers used to set it to 1 and never restore it, so the user's NumPy ran
    every matrix product on one thread for the rest of the process (and the benchmark
    grid's NumPy loop with it, in every row after the first)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS the kernels call, loaded)

    rng = np.random.default_rng(2)
    X = ((rng.random((600, 784)) < 0.2) * 200).astype(np.uint8)
    y = rng.integers(0, 10, 600)

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]  # fmt: skip

    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        for sizes, batch, threads in (([784, 16, 16, 10], 128, 2), ([784, 16, 10], 32, 1),
                                      ([784, 128, 64, 10], 128, 2)):  # fmt: skip
            model = MLP(sizes)
            model.fit(X, y, epochs=1, batch_size=batch, threads=threads, progress=False)
            model.predict_proba(X)
            assert blas_threads() == [2] * len(blas_threads()), (sizes, threads)
