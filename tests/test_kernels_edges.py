"""Edge cases every backend must survive: odd batch sizes, extreme values, zero input,
uint8 pixels, aliasing, and the interface itself.
"""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kernel_helpers import (
    BACKENDS,
    empty,
    from_backend,
    lr_schedule,
    no_warnings,
    numba_import_error,
    random_data,
    random_params,
    to_backend,
)

import kernels
from kernels import ACTIVATIONS, Net, Optimizer, optimizer_state
from kernels.layout import VALID_HEADS

ROOT = Path(__file__).resolve().parents[1]
HEADS = [pytest.param(output, loss, id=f"{output}-{loss}") for output, loss in VALID_HEADS]
SGD = Optimizer("sgd")

# ---------------------------------------------------------------------------------------
# The interface.
# ---------------------------------------------------------------------------------------


def test_import_kernels_lists_the_backends():
    result = subprocess.run(
        [sys.executable, "-c", "import kernels; print(kernels.BACKENDS)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "('python', 'numpy', 'numba')"


def test_numba_backend_imports_when_present():
    error = numba_import_error()
    if error is None and "numba" not in BACKENDS:
        pytest.skip("kernels/numba/ is not written yet")
    assert error is None, f"kernels/numba/ exists but does not import: {error!r}"


INTERFACE = {  # every function of kernels/INTERFACE.md and its arguments
    "dense_forward": "out inp weight bias",
    "dense_backward": "dinp dweight dbias dout inp weight",
    "activation_forward": "out inp name",
    "activation_backward": "dinp dout inp out name",
    "softmax_forward": "probs logits",
    "cross_entropy_forward": "logits labels",
    "softmax_cross_entropy_backward": "dlogits probs labels",
    "mse_forward": "pred target",
    "mse_backward": "dpred pred target",
    "sgd_update": "param grad lr weight_decay",
    "momentum_update": "param grad velocity lr momentum weight_decay",
    "adam_update": "param grad m v lr beta1 beta2 eps weight_decay step",
    "init_params": "params net init seed",
    "forward": "params net X",
    "loss_and_grads": "params net X targets",
    "train_steps": "params opt_state net X targets order batch_size lrs optimizer step0 threads "
    "sample_weight",
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_has_the_interface(backend):
    kb = kernels.backend(backend)
    for name, arguments in INTERFACE.items():
        function = getattr(kb, name)
        function = getattr(function, "py_func", function)  # a Numba dispatcher's Python source
        expected, given = arguments.split(), list(inspect.signature(function).parameters)
        assert given == expected, name


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown backend"):
        kernels.backend("fortran")
    for backend in BACKENDS:
        params = np.empty(Net((2, 2)).n_params, np.float32)
        with pytest.raises(ValueError, match="init"):
            kernels.backend(backend).init_params(params, Net((2, 2)), "lecun_normal", 0)


# ---------------------------------------------------------------------------------------
# Batches: of one row, and a last batch smaller than the others.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("n_rows", "batch_size"),
    [(3, 1), (10, 4), (8, 4), (5, 32)],
    ids=["batches-of-one", "last-batch-smaller", "exact-batches", "one-short-batch"],
)
def test_train_steps_are_sgd_on_the_batches_of_order(backend, n_rows, batch_size):
    """Batch j is X[order[j*bs:(j+1)*bs]]: the same as loss_and_grads and a step by hand."""
    kb, net = kernels.backend(backend), Net((6, 5, 3), "tanh")
    params = random_params(net, seed=30)
    X, labels = random_data(net, 12, seed=31, uint8=True)
    order = np.random.default_rng(32).permutation(12)[:n_rows]
    n_batches = math.ceil(n_rows / batch_size)
    lrs = lr_schedule(n_batches)

    expected = params.copy()
    expected_losses, expected_correct = [], []
    for j in range(n_batches):
        rows = order[j * batch_size : (j + 1) * batch_size]
        predictions = kb.forward(expected, net, X[rows]).argmax(axis=1)
        expected_correct.append(np.count_nonzero(predictions == labels[rows]))
        loss, grads = kb.loss_and_grads(expected, net, X[rows], labels[rows])
        expected_losses.append(loss)
        expected -= lrs[j] * grads

    losses, correct = kb.train_steps(params, {}, net, X, labels, order, batch_size, lrs, SGD, 0, 1)
    assert losses.shape == correct.shape == (n_batches,)
    assert losses.dtype == np.float32 and correct.dtype == np.int64
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-6)
    np.testing.assert_array_equal(correct, expected_correct)
    np.testing.assert_allclose(params, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_row(backend):
    kb, net = kernels.backend(backend), Net((6, 5, 3), "silu")
    params = random_params(net, seed=33)
    X, labels = random_data(net, 4, seed=34)
    all_rows = kb.forward(params, net, X)
    for i in range(len(X)):
        one = kb.forward(params, net, X[i : i + 1])
        assert one.shape == (1, 3)
        np.testing.assert_allclose(one[0], all_rows[i], rtol=1e-6, atol=1e-7)
    loss, grads = kb.loss_and_grads(params, net, X[:1], labels[:1])
    assert np.isfinite(loss) and np.isfinite(grads).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_order_takes_no_step(backend):
    net = Net((6, 5, 3))
    params = random_params(net, seed=35)
    before = params.copy()
    X, labels = random_data(net, 4, seed=36)
    losses, correct = kernels.backend(backend).train_steps(
        params, {}, net, X, labels, np.arange(0), 32, np.zeros(0, np.float32), SGD, 0, 1
    )
    assert losses.shape == correct.shape == (0,)
    np.testing.assert_array_equal(params, before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_rows(backend):
    """forward and loss_and_grads over more rows than any chunk, against the python backend."""
    net = Net((6, 5, 3), "sigmoid")
    params = random_params(net, seed=37)
    X, labels = random_data(net, 2500, seed=38, uint8=True)
    kb, ref = kernels.backend(backend), kernels.backend("python")
    np.testing.assert_allclose(kb.forward(params, net, X), ref.forward(params, net, X), rtol=1e-5)
    loss, grads = kb.loss_and_grads(params, net, X, labels)
    ref_loss, ref_grads = ref.loss_and_grads(params, net, X, labels)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(grads, ref_grads, rtol=1e-4, atol=1e-6 * np.abs(ref_grads).max())


# ---------------------------------------------------------------------------------------
# Extreme values: no NaN, no warning.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_logits_of_1000(backend):
    kb = kernels.backend(backend)
    logits = np.array([[1000, -1000, 0], [-1000, 1000, 1000], [1000, 1000, 1000]], np.float32)
    labels = np.array([1, 0, 2])
    probs, dlogits = empty(backend, logits.shape), empty(backend, logits.shape)
    with no_warnings():
        kb.softmax_forward(probs, to_backend(backend, logits))
        loss = kb.cross_entropy_forward(to_backend(backend, logits), to_backend(backend, labels))
        kb.softmax_cross_entropy_backward(dlogits, probs, to_backend(backend, labels))
    third = 1 / 3
    expected_probs = [[1, 0, 0], [0, 0.5, 0.5], [third, third, third]]
    np.testing.assert_allclose(from_backend(probs), expected_probs, rtol=1e-6, atol=1e-30)
    # losses per row: 2000, 2000 + log 2, log 3
    assert loss == pytest.approx((4000 + math.log(2) + math.log(3)) / 3, rel=1e-6)
    onehot = np.eye(3)[labels]
    np.testing.assert_allclose(from_backend(dlogits), (expected_probs - onehot) / 3, atol=1e-7)


def reference_activation(x, name):
    """act(x) and act'(x) in float64, written independently of the backends."""
    with np.errstate(under="ignore"):
        s = np.exp(-np.logaddexp(0.0, -x))  # sigmoid without overflow
    value = {"sigmoid": s, "relu": np.maximum(x, 0), "tanh": np.tanh(x), "silu": x * s}
    slope = {
        "sigmoid": s * (1 - s),
        "relu": (x > 0).astype(float),
        "tanh": 1 - np.tanh(x) ** 2,
        "silu": s * (1 + x * (1 - s)),
    }
    return value.get(name, x), slope.get(name, np.ones_like(x))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_at_extreme_inputs(backend, name):
    kb = kernels.backend(backend)
    x = np.array([[-1000, -100, -89, -20, -1e-3, 0, 1e-3, 20, 89, 100, 1000]], np.float32)
    out, dinp = empty(backend, x.shape), empty(backend, x.shape)
    with no_warnings():
        kb.activation_forward(out, to_backend(backend, x), name)
        dout = to_backend(backend, np.ones_like(x))
        kb.activation_backward(dinp, dout, to_backend(backend, x), out, name)
    value, slope = reference_activation(x.astype(np.float64), name)
    # values: relative accuracy down to float32's smallest normal number (sigmoid(-20) = 2e-9
    # included); slopes come from out (sigmoid: out (1 - out), 0 once out rounds to 1)
    np.testing.assert_allclose(from_backend(out), value, rtol=1e-6, atol=1e-37)
    np.testing.assert_allclose(from_backend(dinp), slope, rtol=1e-5, atol=1e-7)


def huge_network(activation, output, loss):
    """One hidden layer; inputs of +-2 make pre-activations of +-1000 in both layers."""
    net = Net((2, 3, 3), activation, output, loss)
    w1 = [[500, 0], [-500, 0], [0, 500]]
    w2 = [[1, 0, 0], [0, 1, 0], [-1, -1, 0]]
    params = np.array(sum(w1, []) + [0, 0, 0] + sum(w2, []) + [0, 0, 0], np.float32)
    X = np.array([[2, 0], [-2, 0], [0, 2], [0, -2]], np.float32)
    if loss == "cross_entropy":
        return net, params, X, np.array([1, 0, 2, 1])
    return net, params, X, np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(("output", "loss"), HEADS)
def test_network_with_huge_pre_activations(backend, activation, output, loss):
    kb = kernels.backend(backend)
    net, params, X, targets = huge_network(activation, output, loss)
    with no_warnings():
        out = kb.forward(params, net, X)
        value, grads = kb.loss_and_grads(params, net, X, targets)
        losses, correct = kb.train_steps(
            params, {}, net, X, targets, np.arange(4), 2, np.full(2, 1e-6, np.float32), SGD, 0, 1
        )
    assert np.isfinite(out).all() and np.isfinite(value) and np.isfinite(grads).all()
    assert np.isfinite(losses).all() and np.isfinite(params).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_head_at_1000(backend):
    """Logits (1000, -1000, 0): exact loss and gradient."""
    net = Net((2, 3), output="softmax", loss="cross_entropy")
    params = np.array([500, 0, -500, 0, 0, 0, 0, 0, 0], np.float32)
    X, labels = np.array([[2, 0], [-2, 0]], np.float32), np.array([1, 0])
    with no_warnings():
        value, grads = kernels.backend(backend).loss_and_grads(params, net, X, labels)
    assert value == pytest.approx(2000, rel=1e-6)
    # dlogits = [[.5, -.5, 0], [-.5, .5, 0]]; dW = dlogits.T @ X; db = dlogits.sum(0)
    np.testing.assert_allclose(grads, [2, 0, -2, 0, 0, 0, 0, 0, 0], atol=1e-6)


# ---------------------------------------------------------------------------------------
# Inputs: all zeros, uint8 pixels, uint8 labels.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_zero_input(backend):
    kb, net = kernels.backend(backend), Net((6, 5, 4), "relu")
    params = np.empty(net.n_params, np.float32)
    kb.init_params(params, net, "he_uniform", 40)  # biases 0: every pre-activation is 0
    X, labels = np.zeros((3, 6), np.uint8), np.array([0, 1, 1])
    with no_warnings():
        out = kb.forward(params, net, X)
        loss, grads = kb.loss_and_grads(params, net, X, labels)
    np.testing.assert_allclose(out, 0.25, rtol=1e-6)
    assert loss == pytest.approx(math.log(4), rel=1e-6)
    # relu'(0) = 0 and x = 0: only the output bias learns, by mean(probs - onehot)
    expected = np.zeros(net.n_params)
    expected[-4:] = [0.25 - 1 / 3, 0.25 - 2 / 3, 0.25, 0.25]
    np.testing.assert_allclose(grads, expected, atol=1e-7)

    # With nonzero biases the first layer's weights still get exactly zero gradient.
    params = random_params(net, seed=41)
    _, grads = kb.loss_and_grads(params, net, X.astype(np.float32), labels)
    w0, b0, _ = kernels.param_layout(net.sizes)[0]
    assert not grads[w0:b0].any() and np.isfinite(grads).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("output", "loss"), HEADS)
def test_uint8_input_is_float32_input_over_255(backend, output, loss):
    kb, net = kernels.backend(backend), Net((6, 5, 4), "tanh", output, loss)
    params = random_params(net, seed=42)
    pixels, targets = random_data(net, 20, seed=43, uint8=True)
    floats = pixels.astype(np.float32) / np.float32(255)

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    close(kb.forward(params, net, pixels), kb.forward(params, net, floats))
    loss8, grads8 = kb.loss_and_grads(params, net, pixels, targets)
    loss32, grads32 = kb.loss_and_grads(params, net, floats, targets)
    close(loss8, loss32)
    close(grads8, grads32)
    order, lrs = np.random.default_rng(44).permutation(20), lr_schedule(3)
    momentum = Optimizer("momentum")
    trained = []
    for X in (pixels, floats):
        p, state = params.copy(), optimizer_state(net, "momentum")
        losses, correct = kb.train_steps(p, state, net, X, targets, order, 8, lrs, momentum, 0, 1)
        trained.append((p, state["velocity"], losses, correct))
    (p8, v8, losses8, correct8), (p32, v32, losses32, correct32) = trained
    close(p8, p32)
    close(v8, v32)
    close(losses8, losses32)
    np.testing.assert_array_equal(correct8, correct32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_label_dtypes(backend):
    """Class ids may come as uint8 (as in the MNIST files), int32 or int64."""
    kb, net = kernels.backend(backend), Net((6, 5, 4))
    params = random_params(net, seed=45)
    X, labels = random_data(net, 10, seed=46, uint8=True)
    results = []
    for dtype in (np.int64, np.int32, np.uint8):
        p = params.copy()
        loss, grads = kb.loss_and_grads(p, net, X, labels.astype(dtype))
        losses, correct = kb.train_steps(
            p, {}, net, X, labels.astype(dtype), np.arange(10), 4, lr_schedule(3), SGD, 0, 1
        )
        results.append((loss, grads, losses, correct, p))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------
# Buffers: aliasing allowed by the interface, and the same result run after run.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_kernels_in_place(backend, name):
    """activation_forward may write over its input, activation_backward over dout."""
    kb = kernels.backend(backend)
    rng = np.random.default_rng(47)
    x, dout = (3 * rng.standard_normal((4, 5))).astype(np.float32), rng.standard_normal((4, 5))
    dout = dout.astype(np.float32)
    out, dinp = empty(backend, x.shape), empty(backend, x.shape)
    kb.activation_forward(out, to_backend(backend, x), name)
    kb.activation_backward(dinp, to_backend(backend, dout), to_backend(backend, x), out, name)

    inplace = to_backend(backend, x)
    kb.activation_forward(inplace, inplace, name)
    np.testing.assert_array_equal(from_backend(inplace), from_backend(out))
    grad = to_backend(backend, dout)
    kb.activation_backward(grad, grad, to_backend(backend, x), out, name)
    np.testing.assert_array_equal(from_backend(grad), from_backend(dinp))


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_result_run_after_run(backend):
    kb, net = kernels.backend(backend), Net((6, 8, 4), "relu")
    X, labels = random_data(net, 64, seed=48, uint8=True)
    order = np.random.default_rng(49).permutation(64)
    runs = []
    for threads in (2, 2, 1):
        params, state = random_params(net, seed=50), optimizer_state(net, "adam")
        lrs, adam = lr_schedule(8, 0.01, 0.02), Optimizer("adam")
        losses, correct = kb.train_steps(
            params, state, net, X, labels, order, 8, lrs, adam, 0, threads
        )
        runs.append((params, state["m"], state["v"], losses, correct))
    for a, b in zip(runs[0], runs[1], strict=True):  # same thread count: identical
        np.testing.assert_array_equal(a, b)
    for a, b in zip(runs[0], runs[2], strict=True):  # another thread count: same to rounding
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------
# The NumPy backend stays in float32.
# ---------------------------------------------------------------------------------------


class Float64Alarm(np.ndarray):
    """An ndarray that notes every float64 array derived from it (0-d ones aside: NumPy's
    own mean divides a float32 sum by the count in float64 before casting back)."""

    created: list[tuple[int, ...]] = []

    def __array_finalize__(self, obj):
        if self.dtype == np.float64 and self.ndim > 0:
            Float64Alarm.created.append(self.shape)


class WatchedNumpy:
    """``numpy`` for the numpy backend, with every new buffer a Float64Alarm."""

    def __getattr__(self, name):
        value = getattr(np, name)
        if name in ("empty", "zeros", "full", "empty_like", "zeros_like"):
            return lambda *args, **kwargs: value(*args, **kwargs).view(Float64Alarm)
        return value


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(("output", "loss"), HEADS)
def test_numpy_backend_never_computes_in_float64(monkeypatch, activation, output, loss):
    """No temporary of forward, loss_and_grads or train_steps is float64 (an upcast)."""
    numpy_backend = kernels.backend("numpy")
    monkeypatch.setattr(numpy_backend, "np", WatchedNumpy())
    Float64Alarm.created.clear()
    net = Net((6, 5, 4, 3), activation, output, loss)
    X, targets = random_data(net, 20, seed=51, uint8=True)
    X, targets = X.view(Float64Alarm), targets.view(Float64Alarm)
    order, lrs = np.random.default_rng(52).permutation(20), lr_schedule(3)
    optimizers = [Optimizer(name, weight_decay=0.1) for name in ("sgd", "momentum", "adam")]
    for optimizer in [*optimizers, Optimizer("adam")]:
        params = random_params(net, seed=53).view(Float64Alarm)
        state = {k: v.view(Float64Alarm) for k, v in optimizer_state(net, optimizer.name).items()}
        numpy_backend.train_steps(params, state, net, X, targets, order, 8, lrs, optimizer, 0, 1)
        numpy_backend.forward(params, net, X)
        numpy_backend.loss_and_grads(params, net, X, targets)
    assert Float64Alarm.created == []
    # and the alarm works:
    (np.ones(2, np.float32).view(Float64Alarm) * np.float64(2)).sum()
    assert Float64Alarm.created
