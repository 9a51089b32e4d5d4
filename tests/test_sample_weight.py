"""sample_weight: the weighted batch loss of every backend's train_steps, and MLP.fit's.

Semantics (kernels/INTERFACE.md, scikit-learn's MLP): a batch's loss is
sum w_i l_i / sum w_i and its gradient the same weighted mean; weight decay is unchanged;
a batch of weight 0 has loss 0 and no loss gradient. The numba backend is tested as soon
as its train_steps takes the keyword (until then it must refuse weights in one line).
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import kernels
from fastmlp import MLP
from fastmlp.datasets import holdout_indices
from fastmlp.sample_weights import takes_sample_weight
from kernels.layout import Net, Optimizer, optimizer_state
from tests.kernel_helpers import BACKENDS

NETS = {
    "softmax": Net((7, 5, 3), "tanh", "softmax", "cross_entropy"),
    "identity": Net((7, 6, 2), "relu", "identity", "mse"),
    "sigmoid": Net((7, 17, 2), "sigmoid", "sigmoid", "mse"),
}


def weighted_backends():
    """Every backend; one whose train_steps has no sample_weight yet is skipped."""
    params = []
    for name in BACKENDS:
        ready = takes_sample_weight(kernels.backend(name))
        reason = f"the {name} backend's train_steps has no sample_weight yet"
        params.append(pytest.param(name, marks=pytest.mark.skipif(not ready, reason=reason)))
    return params


def problem(net: Net, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, net.sizes[0])).astype(np.float32)
    params = (0.5 * rng.standard_normal(net.n_params)).astype(np.float32)
    if net.loss == "cross_entropy":
        targets = rng.integers(0, net.sizes[-1], n).astype(np.int32)
    else:
        targets = rng.random((n, net.sizes[-1])).astype(np.float32)
    return X, targets, params


def steps(backend, net, params, X, targets, order, batch_size, lr=1.0, name="sgd", decay=0.0,
          sample_weight=None, opt_state=None):  # fmt: skip
    """Run train_steps on a copy of params; (new params, losses, opt_state)."""
    params = params.copy()
    state = optimizer_state(net, name) if opt_state is None else opt_state
    n_batches = -(-len(order) // batch_size)
    rule = Optimizer(name, momentum=0.9, weight_decay=decay)
    extra = {} if sample_weight is None else {"sample_weight": sample_weight}
    losses, _ = kernels.backend(backend).train_steps(
        params, state, net, X, targets, np.asarray(order, np.int64), batch_size,
        np.full(n_batches, lr, np.float32), rule, 0, 1, **extra)  # fmt: skip
    return params, losses, state


def hand_weighted(net, params, X, targets, w):
    """Weighted mean of the rows' losses and gradients, each from the numpy reference's
    one-row loss_and_grads, summed here in float64."""
    ref = kernels.backend("numpy")
    total, loss, grad = float(w.sum()), 0.0, np.zeros(net.n_params)
    for i in range(len(X)):
        l_i, g_i = ref.loss_and_grads(params, net, X[i : i + 1], targets[i : i + 1])
        loss += w[i] * l_i / total
        grad += w[i] * g_i.astype(np.float64) / total
    return loss, grad


@pytest.mark.parametrize("head", list(NETS))
@pytest.mark.parametrize("backend", weighted_backends())
def test_weighted_batches_match_a_hand_computation(backend, head):
    net = NETS[head]
    X, targets, params = problem(net, 10)
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.5, 0.25, 1.0, 0.0, 4.0, 1.5], np.float32)
    order = [3, 1, 4, 0, 9, 2, 8, 5, 7, 6]
    # Two batches (6 and 4 rows) at lr 1 with plain SGD: the step is minus the gradient.
    new, losses, _ = steps(backend, net, params, X, targets, order, 6, sample_weight=w)
    first = order[:6]
    loss, grad = hand_weighted(net, params, X[first], targets[first], w[first])
    np.testing.assert_allclose(losses[0], loss, rtol=1e-5, atol=1e-6)
    after_first, _, _ = steps(backend, net, params, X, targets, first, 6, sample_weight=w)
    np.testing.assert_allclose(params - after_first, grad, rtol=1e-4, atol=1e-6)
    second = order[6:]
    loss, grad = hand_weighted(net, after_first, X[second], targets[second], w[second])
    np.testing.assert_allclose(losses[1], loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(after_first - new, grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("head", list(NETS))
@pytest.mark.parametrize("backend", weighted_backends())
def test_whole_number_weights_are_repeated_rows(backend, head):
    """One full-batch step (momentum, weight decay): weight k == the row k times."""
    net = NETS[head]
    X, targets, params = problem(net, 8, seed=1)
    counts = np.array([2, 0, 1, 3, 1, 0, 4, 1])
    w = counts.astype(np.float32)
    weighted, loss_w, state_w = steps(backend, net, params, X, targets, range(8), 8,
                                      lr=0.3, name="momentum", decay=0.01, sample_weight=w)  # fmt: skip
    rows = np.repeat(np.arange(8), counts)
    repeated, loss_r, state_r = steps(backend, net, params, X[rows], targets[rows],
                                      range(len(rows)), len(rows), lr=0.3, name="momentum",
                                      decay=0.01)  # fmt: skip
    np.testing.assert_allclose(loss_w, loss_r, rtol=1e-5)
    np.testing.assert_allclose(weighted, repeated, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state_w["velocity"], state_r["velocity"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", weighted_backends())
def test_zero_weight_rows_have_no_effect(backend):
    net = NETS["softmax"]
    X, targets, params = problem(net, 12, seed=2)
    w = np.ones(12, np.float32)
    w[[1, 5, 6, 11]] = 0
    X_noise = X.copy()
    X_noise[[1, 5, 6, 11]] = 1e3  # whatever the zero-weight rows hold
    order = list(range(12))
    with_zeros, loss_z, _ = steps(backend, net, params, X_noise, targets, order, 12,
                                  name="adam", decay=0.01, sample_weight=w)  # fmt: skip
    kept = [i for i in order if w[i]]
    without, loss_k, _ = steps(backend, net, params, X, targets, kept, len(kept), name="adam",
                               decay=0.01)  # fmt: skip
    np.testing.assert_allclose(loss_z, loss_k, rtol=1e-5)
    np.testing.assert_allclose(with_zeros, without, rtol=1e-5, atol=1e-6)
    # A batch of weight 0: loss 0, and only the weight decay moves the parameters.
    w[:4] = 0
    decayed, losses, _ = steps(backend, net, params, X, targets, order, 4, lr=0.5, decay=0.1,
                               sample_weight=w)  # fmt: skip
    assert losses[0] == 0
    only_first, _, _ = steps(backend, net, params, X, targets, order[:4], 4, lr=0.5, decay=0.1,
                             sample_weight=w)  # fmt: skip
    np.testing.assert_allclose(only_first, params * np.float32(1 - 0.5 * 0.1), rtol=1e-6)
    assert np.isfinite(decayed).all()


@pytest.mark.parametrize("backend", weighted_backends())
def test_equal_weights_train_like_no_weights(backend):
    """Any constant weight is the unweighted mean (to rounding); None is the old call."""
    net = NETS["identity"]
    X, targets, params = problem(net, 20, seed=3)
    order = np.random.default_rng(0).permutation(20)
    plain, loss_p, _ = steps(backend, net, params, X, targets, order, 6)
    for weight in (1.0, 0.125, 40.0):
        w = np.full(20, weight, np.float32)
        new, loss_w, _ = steps(backend, net, params, X, targets, order, 6, sample_weight=w)
        np.testing.assert_allclose(loss_w, loss_p, rtol=1e-5)
        np.testing.assert_allclose(new, plain, rtol=1e-4, atol=1e-6)


def test_none_is_bit_identical_to_the_unweighted_fit():
    X, y, _ = problem(NETS["softmax"], 60, seed=4)
    for backend in ("numpy", "python"):
        a, b = (MLP([7, 5, 3], seed=1, backend=backend) for _ in range(2))
        a.fit(X, y, epochs=2, batch_size=8, progress=False)
        b.fit(X, y, epochs=2, batch_size=8, progress=False, sample_weight=None)
        assert np.array_equal(a.params, b.params)
        assert a.history["loss"] == b.history["loss"]


@pytest.mark.parametrize("backend", weighted_backends())
def test_fit_with_weights_and_validation_split(backend):
    X, y, _ = problem(NETS["softmax"], 90, seed=5)
    w = np.random.default_rng(0).random(90).astype(np.float32) * 3
    fitted = MLP([7, 5, 3], seed=2, backend=backend)
    history = fitted.fit(X, y, epochs=3, batch_size=10, progress=False, validation_split=30,
                         sample_weight=w)  # fmt: skip
    # The same as training on the rows left, with their weights, scored on the held out.
    rest, held = holdout_indices(90, 30, seed=2, classes=y)
    by_hand = MLP([7, 5, 3], seed=2, backend=backend)
    by_hand.fit(X[rest], y[rest], epochs=3, batch_size=10, progress=False,
                validation_data=(X[held], y[held]), sample_weight=w[rest])  # fmt: skip
    np.testing.assert_array_equal(fitted.params, by_hand.params)
    assert history["loss"] == by_hand.history["loss"]
    assert history["val_loss"] == by_hand.history["val_loss"]


def test_epoch_loss_is_the_weighted_mean():
    """With one batch per epoch and lr tiny, the epoch's loss is sum w l / sum w."""
    net = NETS["softmax"]
    X, y, _ = problem(net, 16, seed=6)
    w = np.linspace(0, 2, 16).astype(np.float32)
    model = MLP([7, 5, 3], seed=3, backend="numpy")
    start = model.params.copy()
    history = model.fit(X, y, epochs=1, batch_size=16, lr=1e-9, progress=False, sample_weight=w)
    loss, _ = hand_weighted(model.net, start, X, y, w)
    assert history["loss"][0] == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.array([1.0, np.nan, 1.0, 1.0]), r"sample_weight must be finite, got nan at row 1"),
        (np.array([1.0, 1.0, np.inf, 1.0]), r"must be finite, got inf at row 2"),
        (np.array([1.0, -0.5, 1.0, 1.0]), r"must be >= 0, got -0.5 at row 1"),
        (np.ones(3), r"must have shape \(4,\), one weight per row of X, got \(3,\)"),
        (np.ones((4, 1)), r"must have shape \(4,\)"),
        (np.zeros(4), "zero everywhere: nothing to train on"),
        (np.array([1.0, 1e39, 1.0, 1.0]), "does not fit in float32"),
        ("heavy", "must be an array of numbers, got str"),
        (np.array(["a", "b", "c", "d"]), "must be an array of numbers"),
    ],
)
def test_bad_weights_are_refused_in_one_line(weights, message):
    X, y, _ = problem(NETS["softmax"], 4)
    model = MLP([7, 5, 3], backend="numpy")
    before = model.params.copy()
    with pytest.raises(ValueError, match=message) as caught:
        model.fit(X, y, epochs=1, progress=False, sample_weight=weights)
    assert "\n" not in str(caught.value)
    assert np.array_equal(model.params, before)  # refused before any training


def test_weights_left_after_the_split_must_not_all_be_zero():
    X, y, _ = problem(NETS["softmax"], 30)
    rest, held = holdout_indices(30, 10, seed=0, classes=y)
    w = np.zeros(30, np.float32)
    w[held] = 1
    with pytest.raises(ValueError, match="rows left after validation_split is zero"):
        MLP([7, 5, 3], backend="numpy").fit(X, y, validation_split=10, sample_weight=w)


def test_a_backend_without_weights_is_refused_by_its_signature(monkeypatch):
    """Read from train_steps's signature (no trial call): a clear line, before training."""
    reference = kernels.backend("numpy")
    old = types.ModuleType("kernels.unweighted")
    vars(old).update({k: v for k, v in vars(reference).items() if not k.startswith("__")})

    def train_steps(params, opt_state, net, X, targets, order, batch_size, lrs, optimizer,
                    step0, threads):  # fmt: skip
        raise AssertionError("must not be called with weights")

    old.train_steps = train_steps
    X, y, _ = problem(NETS["softmax"], 20)
    model = MLP([7, 5, 3], backend="numpy")
    monkeypatch.setattr(model, "kernels", old)
    with pytest.raises(ValueError, match="numpy backend cannot train with sample_weight yet"):
        model.fit(X, y, epochs=1, progress=False, sample_weight=np.ones(20))


def test_numba_refuses_weights_until_its_kernels_take_them():
    if "numba" not in BACKENDS:
        pytest.skip("no numba backend")
    X, y, _ = problem(NETS["softmax"], 20)
    model = MLP([7, 5, 3], backend="numba")
    if takes_sample_weight(model.kernels):
        model.fit(X, y, epochs=1, progress=False, sample_weight=np.full(20, 0.5))
        assert np.isfinite(model.params).all()
    else:
        with pytest.raises(ValueError, match="numba backend cannot train with sample_weight"):
            model.fit(X, y, epochs=1, progress=False, sample_weight=np.full(20, 0.5))


def test_augmented_chunks_get_their_rows_weights(monkeypatch):
    """With --augment each chunk is new rows 0..k-1: the weights must follow its rows."""
    from fastmlp import training

    monkeypatch.setattr(training, "MIN_CHUNK_ROWS", 1)  # a chunk per batch here
    reference = kernels.backend("numpy")
    seen = []

    def train_steps(*args, sample_weight=None, **kwargs):
        targets, order = args[4], args[5]
        seen.append((targets[order], sample_weight[order]))
        return reference.train_steps(*args, sample_weight=sample_weight, **kwargs)

    spy = types.ModuleType("kernels.spy")
    vars(spy).update({k: v for k, v in vars(reference).items() if not k.startswith("__")})
    spy.train_steps = train_steps
    rng = np.random.default_rng(7)
    X = (rng.random((64, 784)) < 0.2).astype(np.uint8) * 200
    y = np.arange(64) % 10
    model = MLP([784, 8, 10], backend="numpy")
    monkeypatch.setattr(model, "kernels", spy)
    model.fit(X, y, epochs=2, batch_size=8, augment="shift", progress=False,
              sample_weight=(y + 1) / 4)  # fmt: skip
    assert len(seen) > 4
    for labels, weights in seen:  # each row's weight is its label's: (label + 1) / 4
        np.testing.assert_array_equal(weights, ((labels + 1) / 4).astype(np.float32))
