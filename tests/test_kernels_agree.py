"""The backends agree: one seed gives the same weights everywhere, and every kernel, network
function and training run of a float32 backend matches the pure-Python one (float64
arithmetic) to float32 precision.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from kernel_helpers import (
    BACKENDS,
    FAST_BACKENDS,
    empty,
    from_backend,
    lr_schedule,
    random_data,
    random_params,
    to_backend,
)

import kernels
from kernels import ACTIVATIONS, INITS, Net, Optimizer, optimizer_state
from kernels.layout import VALID_HEADS

REFERENCE = "python"
HEADS = [pytest.param(output, loss, id=f"{output}-{loss}") for output, loss in VALID_HEADS]


def assert_agree(got, reference, rtol=1e-5):
    """float32 results against the float64 reference: relative, or relative to the scale."""
    got, reference = np.asarray(got, np.float64), np.asarray(reference, np.float64)
    scale = max(1.0, float(np.abs(reference).max(initial=0.0)))
    np.testing.assert_allclose(got, reference, rtol=rtol, atol=rtol * 0.1 * scale)


# ---------------------------------------------------------------------------------------
# Initialisation: the shared splitmix64 stream.
# ---------------------------------------------------------------------------------------

# The first outputs of the reference splitmix64 generator seeded with 0 (Vigna's
# splitmix64.c): draw k of the stream is output k for seed 0.
SPLITMIX64_SEED0 = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
U = [(z >> 40) / 2**24 for z in SPLITMIX64_SEED0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_init_follows_the_reference_stream(backend):
    kb = kernels.backend(backend)
    # 3 -> 1 he_uniform: bound sqrt(6/3), draws 0, 1, 2; bias 0.
    params = np.full(4, np.nan, np.float32)
    kb.init_params(params, Net((3, 1)), "he_uniform", 0)
    expected = [(2 * u - 1) * math.sqrt(2) for u in U] + [0.0]
    np.testing.assert_array_equal(params, np.array(expected, np.float32))
    # 1 -> 1 -> 1 xavier_uniform: layer 2 starts where layer 1 ended, at draw 1.
    params = np.full(4, np.nan, np.float32)
    kb.init_params(params, Net((1, 1, 1)), "xavier_uniform", 0)
    expected = [(2 * U[0] - 1) * math.sqrt(3), 0.0, (2 * U[1] - 1) * math.sqrt(3), 0.0]
    np.testing.assert_array_equal(params, np.array(expected, np.float32))
    # 1 -> 1 he_normal: Box-Muller on draws 0 and 1 with std sqrt(2/1).
    params = np.full(2, np.nan, np.float32)
    kb.init_params(params, Net((1, 1)), "he_normal", 0)
    weight = math.sqrt(2) * math.sqrt(-2 * math.log(1 - U[0])) * math.cos(2 * math.pi * U[1])
    np.testing.assert_array_equal(params, np.array([weight, 0.0], np.float32))


INIT_CASES = [((784, 16, 16, 10), 0), ((784, 16, 16, 10), 2**64 - 1), ((5, 7, 7, 7, 3), 12345)]


@functools.cache
def reference_init(sizes, init, seed):
    params = np.full(Net(sizes).n_params, np.nan, np.float32)
    kernels.backend(REFERENCE).init_params(params, Net(sizes), init, seed)
    return params


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize(("sizes", "seed"), INIT_CASES)
def test_init_params_identical_on_every_backend(backend, init, sizes, seed):
    params = np.full(Net(sizes).n_params, np.nan, np.float32)
    kernels.backend(backend).init_params(params, Net(sizes), init, seed)
    np.testing.assert_array_equal(params, reference_init(sizes, init, seed))


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_is_read_modulo_2_64(backend):
    """All stream arithmetic is modulo 2**64: seed -1 is seed 2**64 - 1; NumPy ints work."""
    kb, net = kernels.backend(backend), Net((5, 4, 3))
    runs = []
    for seed in (2**64 - 1, -1, np.uint64(2**64 - 1), 2**65 - 1):
        params = np.full(net.n_params, np.nan, np.float32)
        kb.init_params(params, net, "he_normal", seed)
        runs.append(params)
    for params in runs[1:]:
        np.testing.assert_array_equal(params, runs[0])
    np.testing.assert_array_equal(runs[0], reference_init((5, 4, 3), "he_normal", 2**64 - 1))


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_init_seeds_differ(backend):
    kb, net = kernels.backend(backend), Net((20, 10, 3))
    a, b = np.empty(net.n_params, np.float32), np.empty(net.n_params, np.float32)
    kb.init_params(a, net, "he_uniform", 1)
    kb.init_params(b, net, "he_uniform", 2)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("init", INITS)
def test_init_scale(backend, init):
    """He/Xavier bounds and standard deviations on the 784 -> 16 layer; biases zero."""
    net = Net((784, 16, 16, 10))
    params = np.full(net.n_params, np.nan, np.float32)
    kernels.backend(backend).init_params(params, net, init, 7)
    (w0, b0, end), *_ = kernels.param_layout(net.sizes)
    weights = params[w0:b0].astype(np.float64)
    fans = 784 if init.startswith("he") else 784 + 16
    if init.endswith("uniform"):
        bound = math.sqrt(6 / fans)
        assert np.abs(weights).max() <= bound
        std = bound / math.sqrt(3)
    else:
        std = math.sqrt(2 / fans)
    assert weights.std() == pytest.approx(std, rel=0.03)
    assert abs(weights.mean()) < 4 * std / math.sqrt(weights.size)
    for _, bias_start, bias_end in kernels.param_layout(net.sizes):
        assert not params[bias_start:bias_end].any()
    assert np.isfinite(params).all()


# ---------------------------------------------------------------------------------------
# Layer kernels: float32 backends against the float64 pure-Python ones.
# ---------------------------------------------------------------------------------------


def run(backend, kernel, out_shapes, inputs, *extra):
    """Call ``kernel`` of ``backend`` on NaN-filled outputs; return (result, outputs as arrays)."""
    outs = [empty(backend, shape) for shape in out_shapes]
    result = getattr(kernels.backend(backend), kernel)(
        *outs, *(to_backend(backend, a) for a in inputs), *extra
    )
    return result, [from_backend(out) for out in outs]


def assert_kernel_agrees(backend, kernel, out_shapes, inputs, *extra):
    result, outs = run(backend, kernel, out_shapes, inputs, *extra)
    ref_result, ref_outs = run(REFERENCE, kernel, out_shapes, inputs, *extra)
    for out, ref in zip(outs, ref_outs, strict=True):
        assert_agree(out, ref)
    if ref_result is not None:
        assert isinstance(result, float)
        assert_agree(result, ref_result)


def f32(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_dense_kernels_agree(backend):
    rng = np.random.default_rng(0)
    inp, weight, bias, dout = f32(rng, 5, 7), f32(rng, 4, 7), f32(rng, 4), f32(rng, 5, 4)
    assert_kernel_agrees(backend, "dense_forward", [(5, 4)], [inp, weight, bias])
    assert_kernel_agrees(backend, "dense_backward", [(5, 7), (4, 7), (4,)], [dout, inp, weight])


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_kernels_agree(backend, name):
    rng = np.random.default_rng(1)
    x, dout = f32(rng, 6, 9, scale=4.0), f32(rng, 6, 9)
    x[0, :4] = [0.0, -50.0, 50.0, -20.0]
    _, (out,) = run(REFERENCE, "activation_forward", [x.shape], [x], name)
    assert_kernel_agrees(backend, "activation_forward", [x.shape], [x], name)
    assert_kernel_agrees(
        backend, "activation_backward", [x.shape], [dout, x, out.astype(np.float32)], name
    )


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_softmax_and_cross_entropy_kernels_agree(backend):
    rng = np.random.default_rng(2)
    logits, labels = f32(rng, 6, 10, scale=5.0), rng.integers(0, 10, 6)
    _, (probs,) = run(REFERENCE, "softmax_forward", [logits.shape], [logits])
    probs = probs.astype(np.float32)
    assert_kernel_agrees(backend, "softmax_forward", [logits.shape], [logits])
    assert_kernel_agrees(backend, "cross_entropy_forward", [], [logits, labels])
    assert_kernel_agrees(backend, "softmax_cross_entropy_backward", [logits.shape], [probs, labels])


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_mse_kernels_agree(backend):
    rng = np.random.default_rng(3)
    pred, target = f32(rng, 6, 3), f32(rng, 6, 3)
    assert_kernel_agrees(backend, "mse_forward", [], [pred, target])
    assert_kernel_agrees(backend, "mse_backward", [pred.shape], [pred, target])


def run_update(backend, kernel, states, grad, *extra):
    """Apply update ``kernel`` to copies of ``states`` (param first); return them as arrays."""
    containers = [to_backend(backend, s) for s in states]
    getattr(kernels.backend(backend), kernel)(
        containers[0], to_backend(backend, grad), *containers[1:], *extra
    )
    return [from_backend(c) for c in containers]


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize(
    ("kernel", "n_states", "extra"),
    [
        ("sgd_update", 0, ()),
        ("momentum_update", 1, (0.9,)),
        ("adam_update", 2, (0.9, 0.999, 1e-8)),
    ],
)
def test_update_kernels_agree(backend, weight_decay, kernel, n_states, extra):
    rng = np.random.default_rng(4)
    param, grad = f32(rng, 50), f32(rng, 50, scale=0.1)
    states = [param] + [np.abs(f32(rng, 50, scale=0.01)) for _ in range(n_states)]
    args = (0.05, *extra, weight_decay) + ((3,) if kernel == "adam_update" else ())
    got = run_update(backend, kernel, states, grad, *args)
    ref = run_update(REFERENCE, kernel, states, grad, *args)
    for g, r in zip(got, ref, strict=True):
        assert_agree(g, r)


# ---------------------------------------------------------------------------------------
# Network functions.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(("output", "loss"), HEADS)
def test_forward_and_loss_and_grads_agree(backend, activation, output, loss):
    net = Net((6, 5, 4, 3), activation, output, loss)
    params = random_params(net, seed=5)
    for uint8 in (False, True):
        X, targets = random_data(net, 9, seed=6, uint8=uint8)
        kb, ref = kernels.backend(backend), kernels.backend(REFERENCE)
        out = kb.forward(params, net, X)
        assert out.dtype == np.float32 and out.shape == (9, 3)
        assert_agree(out, ref.forward(params, net, X))
        value, grads = kb.loss_and_grads(params, net, X, targets)
        ref_value, ref_grads = ref.loss_and_grads(params, net, X, targets)
        assert isinstance(value, float)
        assert_agree(value, ref_value)
        assert_agree(grads, ref_grads)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_mnist_shaped_network_agrees(backend):
    net = Net((784, 16, 16, 10))
    params = np.empty(net.n_params, np.float32)
    kernels.backend("numpy").init_params(params, net, "he_normal", 3)
    X, labels = random_data(net, 12, seed=8, uint8=True)
    kb, ref = kernels.backend(backend), kernels.backend(REFERENCE)
    assert_agree(kb.forward(params, net, X), ref.forward(params, net, X))
    value, grads = kb.loss_and_grads(params, net, X, labels)
    ref_value, ref_grads = ref.loss_and_grads(params, net, X, labels)
    assert_agree(value, ref_value)
    assert_agree(grads, ref_grads)


OPTIMIZERS = [
    Optimizer("sgd"),
    Optimizer("sgd", weight_decay=0.05),
    Optimizer("momentum"),
    Optimizer("momentum", momentum=0.8, weight_decay=0.05),
    Optimizer("adam"),
    Optimizer("adam", beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.05),
]
OPTIMIZER_IDS = ["sgd", "sgd-wd", "momentum", "momentum-wd", "adam", "adam-wd"]


def train(backend, activation, output, loss, optimizer):
    """Five steps (the last on 5 rows) from the same start; (params, state, losses, correct)."""
    net = Net((12, 8, 8, 4), activation, output, loss)
    params = random_params(net, seed=9)
    state = optimizer_state(net, optimizer.name)
    for array in state.values():  # a run already under way: nonzero state
        array[:] = np.abs(random_params(net, seed=10, scale=0.01))
    X, targets = random_data(net, 40, seed=11, uint8=True)
    order = np.random.default_rng(12).permutation(40)[:37]
    losses, correct = kernels.backend(backend).train_steps(
        params, state, net, X, targets, order, 8, lr_schedule(5, 0.01, 0.05), optimizer, 7, 1
    )
    assert np.isfinite(params).all()
    return params, state, losses, correct


@functools.cache
def reference_training(activation, output, loss, optimizer):
    return train(REFERENCE, activation, output, loss, optimizer)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=OPTIMIZER_IDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(("output", "loss"), HEADS)
def test_train_steps_agree(backend, optimizer, activation, output, loss):
    params, state, losses, correct = train(backend, activation, output, loss, optimizer)
    ref_params, ref_state, ref_losses, ref_correct = reference_training(
        activation, output, loss, optimizer
    )
    assert losses.dtype == np.float32 and losses.shape == (5,)
    assert correct.dtype == np.int64 and correct.shape == (5,)
    assert_agree(losses, ref_losses)
    np.testing.assert_array_equal(correct, ref_correct)
    assert_agree(params, ref_params)
    assert state.keys() == ref_state.keys()
    for key in state:
        assert_agree(state[key], ref_state[key])


@pytest.mark.parametrize("backend", [b for b in FAST_BACKENDS if b != "numpy"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_mnist_shaped_training_agrees_with_numpy(backend, optimizer):
    """A compiled backend against NumPy on the real shapes: 784-16-16-10, batches of 32."""
    net = Net((784, 16, 16, 10))
    X, labels = random_data(net, 1000, seed=13, uint8=True)
    order = np.random.default_rng(14).permutation(1000)
    lrs = lr_schedule(32, 0.001, 0.01) if optimizer.name == "adam" else lr_schedule(32)
    results = {}
    for name in (backend, "numpy"):
        params = np.empty(net.n_params, np.float32)
        kernels.backend("numpy").init_params(params, net, "he_uniform", 15)
        state = optimizer_state(net, optimizer.name)
        losses, correct = kernels.backend(name).train_steps(
            params, state, net, X, labels, order, 32, lrs, optimizer, 0, 1
        )
        results[name] = params, state, losses, correct
    (params, state, losses, correct), (np_params, np_state, np_losses, np_correct) = (
        results[backend],
        results["numpy"],
    )
    assert_agree(losses, np_losses, rtol=1e-4)
    assert np.abs(correct - np_correct).sum() <= 2  # a near-tie may fall either way
    assert_agree(params, np_params, rtol=1e-3)
    for key in state:
        assert_agree(state[key], np_state[key], rtol=1e-3)
