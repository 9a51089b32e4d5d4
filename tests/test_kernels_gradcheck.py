"""Finite-difference checks of every backward kernel and of the network's loss_and_grads.

Kernel checks run in float64 (Python floats for ``python``; float64 arrays for the array
backends, whose kernels work in any float dtype), so central differences are accurate to
~1e-10 and the tolerance is tight. A backend whose kernels take float32 only skips them:
``test_kernels_agree`` then holds its kernels to the python ones checked here.

The network check differentiates the float64 loss of the python backend at float32
points (parameters are float32, so the steps are exact float32 differences), and holds
every backend's gradient to it: python's to float32 rounding, the others to float32
arithmetic.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from kernel_helpers import BACKENDS, from_backend, random_data, random_params, to_backend

import kernels
from kernels import ACTIVATIONS, Net
from kernels.layout import VALID_HEADS


def float64_kernels(name):
    """Backend ``name``, or a skip if its layer kernels do not take float64 containers."""
    kb = kernels.backend(name)
    if name == "python":
        return kb
    out, third = np.zeros((1, 1)), np.full((1, 1), 1 / 3)
    try:
        kb.dense_forward(out, third, np.full((1, 1), 2.0), np.full(1, 0.5))
    except Exception as exc:  # any refusal means float32-only kernels
        pytest.skip(f"{name} kernels take float32 only ({type(exc).__name__}); see agree tests")
    if out[0, 0] != 1 / 3 * 2.0 + 0.5:
        pytest.skip(f"{name} kernels do not compute in float64; see agree tests")
    return kb


def numerical_gradient(f, x, h=1e-5):
    """Central differences of the scalar f() with respect to each element of x (float64).

    x is perturbed in place, one element at a time, and restored.
    """
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        plus = f()
        x[idx] = old - h
        minus = f()
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad


def assert_gradient(analytic, numeric):
    np.testing.assert_allclose(from_backend(analytic), numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_backward(backend):
    kb = float64_kernels(backend)
    rng = np.random.default_rng(0)
    inp, weight = rng.standard_normal((3, 5)), rng.standard_normal((4, 5))  # B=3, I=5, O=4
    bias, dout = rng.standard_normal(4), rng.standard_normal((3, 4))
    inputs = (dout, inp, weight)

    def loss():  # L = sum(dense(inp) * dout), so that dL/dout = dout
        out = to_backend(backend, np.zeros(dout.shape))
        kb.dense_forward(out, *(to_backend(backend, a) for a in (inp, weight, bias)))
        return float(np.sum(from_backend(out) * dout))

    dinp, dweight, dbias = (to_backend(backend, np.zeros_like(a)) for a in (inp, weight, bias))
    kb.dense_backward(dinp, dweight, dbias, *(to_backend(backend, a) for a in inputs))
    assert_gradient(dinp, numerical_gradient(loss, inp))
    assert_gradient(dweight, numerical_gradient(loss, weight))
    assert_gradient(dbias, numerical_gradient(loss, bias))

    # The first layer passes dinp=None and gets the same weight and bias gradients.
    dweight1, dbias1 = (to_backend(backend, np.zeros_like(a)) for a in (weight, bias))
    kb.dense_backward(None, dweight1, dbias1, *(to_backend(backend, a) for a in inputs))
    np.testing.assert_array_equal(from_backend(dweight1), from_backend(dweight))
    np.testing.assert_array_equal(from_backend(dbias1), from_backend(dbias))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward(backend, name):
    kb = float64_kernels(backend)
    rng = np.random.default_rng(1)
    # magnitudes in [0.05, 6] (kept off relu's kink) and both branches of sigmoid; two big ones
    x = rng.uniform(0.05, 6, (3, 6)) * rng.choice([-1, 1], (3, 6))
    x[0, :2] = [-30.0, 30.0]
    dout = rng.standard_normal(x.shape)

    def act(values):
        out = to_backend(backend, np.zeros(x.shape))
        kb.activation_forward(out, to_backend(backend, values), name)
        return from_backend(out)

    def loss():  # L = sum(act(x) * dout)
        return float(np.sum(act(x) * dout))

    dinp = to_backend(backend, np.zeros(x.shape))
    args = (to_backend(backend, a) for a in (dout, x, act(x)))
    kb.activation_backward(dinp, *args, name)
    assert_gradient(dinp, numerical_gradient(loss, x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_backward(backend):
    kb = float64_kernels(backend)
    rng = np.random.default_rng(2)
    logits = 3 * rng.standard_normal((4, 5))
    labels = np.array([0, 4, 2, 2])
    backend_labels = to_backend(backend, labels)

    def loss():
        return kb.cross_entropy_forward(to_backend(backend, logits), backend_labels)

    probs, dlogits = to_backend(backend, np.zeros((4, 5))), to_backend(backend, np.zeros((4, 5)))
    kb.softmax_forward(probs, to_backend(backend, logits))
    kb.softmax_cross_entropy_backward(dlogits, probs, backend_labels)
    assert_gradient(dlogits, numerical_gradient(loss, logits))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mse_backward(backend):
    kb = float64_kernels(backend)
    rng = np.random.default_rng(3)
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))

    def loss():
        return kb.mse_forward(to_backend(backend, pred), to_backend(backend, target))

    dpred = to_backend(backend, np.zeros((4, 3)))
    kb.mse_backward(dpred, to_backend(backend, pred), to_backend(backend, target))
    assert_gradient(dpred, numerical_gradient(loss, pred))


# ---------------------------------------------------------------------------------------
# The whole network.
# ---------------------------------------------------------------------------------------

NET_SIZES = (4, 5, 5, 3)  # two hidden layers, so gradients flow through a hidden activation
HEADS = [pytest.param(output, loss, id=f"{output}-{loss}") for output, loss in VALID_HEADS]


def problem(activation, output, loss):
    net = Net(NET_SIZES, activation, output, loss)
    X, targets = random_data(net, 6, seed=12)
    return net, random_params(net, seed=11), X, targets


@functools.cache
def numerical_network_gradient(activation, output, loss, h=1e-5):
    """Central differences of the python backend's float64 loss, one float32 parameter at a time."""
    net, params, X, targets = problem(activation, output, loss)
    reference = kernels.backend("python")
    grad = np.empty(net.n_params)
    for i in range(net.n_params):
        plus, minus = params.copy(), params.copy()
        plus[i] += np.float32(h)
        minus[i] -= np.float32(h)
        step = float(plus[i]) - float(minus[i])  # what float32 rounding made of 2h, exactly
        difference = reference.loss_and_grads(plus, net, X, targets)[0]
        difference -= reference.loss_and_grads(minus, net, X, targets)[0]
        grad[i] = difference / step
    return grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(("output", "loss"), HEADS)
def test_loss_and_grads(backend, activation, output, loss):
    net, params, X, targets = problem(activation, output, loss)
    _, grads = kernels.backend(backend).loss_and_grads(params, net, X, targets)
    assert grads.dtype == np.float32 and grads.shape == (net.n_params,)
    numeric = numerical_network_gradient(activation, output, loss)
    # python: float64 arithmetic rounded to float32 at the end; others: float32 arithmetic
    rtol, atol = (1e-6, 1e-8) if backend == "python" else (1e-4, 1e-6)
    np.testing.assert_allclose(grads, numeric, rtol=rtol, atol=atol * np.abs(numeric).max())
