"""Per-row sample weights in the numba backend's train_steps (scikit-learn's semantics).

A batch's loss is sum_i w_i l_i / sum_i w_i over its rows and its gradient likewise; weight
decay is unchanged; a batch whose weights sum to 0 takes no loss gradient and reports loss
0. Checked against NumPy computations written here: the weighted loss of one batch by
hand, its gradient as the weighted mean of per-row gradients from the NumPy backend, and
integer weights against repeated rows, at widths that are and are not multiples of 16, on
one thread and on the threaded paths (rows split between threads, a wide first layer split
by lanes).
"""

from __future__ import annotations

import numpy as np
import pytest

import kernels
from kernels import Net, Optimizer, optimizer_state

nb = kernels.backend("numba")
npb = kernels.backend("numpy")

N_IN = 40
WIDTHS = [5, 16, 37, 130]  # 130: past two blocks of 64 lanes (the wide first-layer kernels)
HEADS = [("softmax", "cross_entropy"), ("identity", "mse")]


def problem(width, output, loss, n=48, seed=0):
    """A sparse uint8 input (as MNIST's), targets for the loss, parameters, weights in
    [0, 3) with some exact zeros."""
    rng = np.random.default_rng(seed + width)
    net = Net((N_IN, width, 4), "relu", output, loss)
    X = rng.integers(1, 256, (n, N_IN)).astype(np.uint8)
    X[rng.random(X.shape) < 0.6] = 0
    if loss == "cross_entropy":
        y = rng.integers(0, 4, n)
    else:
        y = rng.standard_normal((n, 4)).astype(np.float32)
    params = (rng.standard_normal(net.n_params) * 0.3).astype(np.float32)
    w = (rng.random(n) * 3).astype(np.float32)
    w[rng.random(n) < 0.2] = 0
    return net, X, y, params, w


def run(net, X, y, params, w, order, batch_size, optimizer, threads=1, lr=0.1):
    p = params.copy()
    state = optimizer_state(net, optimizer.name)
    n_batches = -(-len(order) // batch_size)
    losses, correct = nb.train_steps(p, state, net, X, y, order, batch_size,
                                     np.full(n_batches, lr, np.float32), optimizer, 0, threads,
                                     sample_weight=w)  # fmt: skip
    return losses, correct, p


def row_losses(net, params, X, y):
    """Each row's loss, computed here in NumPy from the NumPy backend's outputs."""
    out = npb.forward(params, net, X).astype(np.float64)
    if net.loss == "cross_entropy":
        return -np.log(out[np.arange(len(X)), y])
    return ((out - y) ** 2).mean(axis=1)


def weighted_gradient(net, params, X, y, w):
    """sum_i w_i grad(l_i) / sum_i w_i, each row's gradient from the NumPy backend."""
    total = np.zeros(net.n_params)
    for i in range(len(X)):
        _, g = npb.loss_and_grads(params, net, X[i : i + 1], y[i : i + 1])
        total += w[i] * g.astype(np.float64)
    return total / w.astype(np.float64).sum()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("output, loss", HEADS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=["sgd-in-place", "sgd-wd"])
def test_one_batch_is_the_weighted_mean(width, output, loss, weight_decay):
    net, X, y, params, w = problem(width, output, loss)
    order = np.random.default_rng(1).permutation(len(X))
    lr = 0.1
    losses, _, p = run(net, X, y, params, w, order, len(X), Optimizer("sgd", weight_decay=weight_decay),
                       lr=lr)  # fmt: skip
    expected_loss = (w * row_losses(net, params, X, y)).sum() / w.astype(np.float64).sum()
    np.testing.assert_allclose(losses[0], expected_loss, rtol=2e-5)
    g = weighted_gradient(net, params, X, y, w) + weight_decay * params.astype(np.float64)
    np.testing.assert_allclose(p, params - lr * g, rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("output, loss", HEADS)
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_integer_weights_are_repeated_rows(width, output, loss, name):
    """Weights 0, 1, 2 on the whole data in one step == rows dropped, kept, repeated."""
    net, X, y, params, _ = problem(width, output, loss)
    w = np.random.default_rng(2).integers(0, 3, len(X)).astype(np.float32)
    w[:2] = 2, 1  # at least one row of weight 1 and one of 2
    optimizer = Optimizer(name, weight_decay=0.01)
    lr = 0.01 if name == "adam" else 0.1
    losses, _, p = run(net, X, y, params, w, np.arange(len(X)), len(X), optimizer, lr=lr)
    rows = np.repeat(np.arange(len(X)), w.astype(np.int64))
    losses_rep, _, p_rep = run(net, X[rows], y[rows], params, None, np.arange(len(rows)),
                               len(rows), optimizer, lr=lr)  # fmt: skip
    np.testing.assert_allclose(losses, losses_rep, rtol=1e-5)
    np.testing.assert_allclose(p, p_rep, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("width", WIDTHS)
def test_unit_weights_change_nothing(width):
    """Cross-entropy with every weight 1: exactly the unweighted run (the per-row scaling is
    by 1.0, the loss summed in the same order)."""
    net, X, y, params, _ = problem(width, "softmax", "cross_entropy")
    order = np.random.default_rng(3).permutation(len(X))
    ones = np.ones(len(X), np.float32)
    for name in ["sgd", "adam"]:
        a = run(net, X, y, params, ones, order, 10, Optimizer(name))
        b = run(net, X, y, params, None, order, 10, Optimizer(name))
        for got, want in zip(a, b, strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("output, loss", HEADS)
def test_a_batch_of_zero_weight_takes_no_loss_gradient(output, loss):
    net, X, y, params, _ = problem(16, output, loss)
    w = np.ones(len(X), np.float32)
    w[:16] = 0  # the first batch of 16 rows weighs nothing
    order = np.arange(len(X))
    losses, _, p = run(net, X, y, params, w, order[:16], 16, Optimizer("sgd"))
    assert losses[0] == 0
    np.testing.assert_array_equal(p, params)
    # weight decay still applies: g = wd * param
    losses, _, p = run(net, X, y, params, w, order[:16], 16, Optimizer("sgd", weight_decay=0.5))
    assert losses[0] == 0
    np.testing.assert_allclose(p, params - np.float32(0.1) * (np.float32(0.5) * params), rtol=1e-6)
    # and the next batch trains as the weighted mean of its own rows only
    losses, _, _ = run(net, X, y, params, w, order, 16, Optimizer("sgd"))
    assert losses[0] == 0 and losses[1] > 0


@pytest.mark.parametrize("width", [16, 130])
@pytest.mark.parametrize("output, loss", HEADS)
def test_threads_repeat_and_agree(width, output, loss):
    """Batches of 128+ rows split between threads (narrow networks) or a first layer of 128+
    lanes split by lanes (wide ones): the same result run after run, and the one thread's to
    rounding (by lanes: exactly)."""
    net, X, y, params, w = problem(width, output, loss, n=300)
    order = np.random.default_rng(4).permutation(len(X))
    one = run(net, X, y, params, w, order, 150, Optimizer("momentum"), threads=1)
    two = run(net, X, y, params, w, order, 150, Optimizer("momentum"), threads=2)
    again = run(net, X, y, params, w, order, 150, Optimizer("momentum"), threads=2)
    for a, b in zip(two, again, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(two[0], one[0], rtol=1e-5)
    np.testing.assert_allclose(two[2], one[2], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(two[1], one[1])
    expected = [
        (w[rows] * row_losses(net, params, X[rows], y[rows])).sum() / w[rows].astype(np.float64).sum()
        for rows in (order[:150],)
    ]  # the first batch starts from the given parameters
    np.testing.assert_allclose(two[0][0], expected[0], rtol=2e-5)


@pytest.mark.parametrize(
    "weight, error",
    [
        (np.ones(48, np.float64), TypeError),
        ([1.0] * 48, TypeError),
        (np.ones(47, np.float32), ValueError),
        (np.ones((48, 1), np.float32), ValueError),
        (np.full(48, -1.0, np.float32), ValueError),
        (np.full(48, np.nan, np.float32), ValueError),
        (np.full(48, np.inf, np.float32), ValueError),
    ],
    ids=["float64", "list", "short", "2-D", "negative", "nan", "inf"],
)
def test_bad_weights_are_refused_in_one_line(weight, error):
    net, X, y, params, _ = problem(16, "softmax", "cross_entropy")
    with pytest.raises(error, match="sample_weight") as caught:
        run(net, X, y, params, weight, np.arange(48), 16, Optimizer("sgd"))
    assert "\n" not in str(caught.value)
