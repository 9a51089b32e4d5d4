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
