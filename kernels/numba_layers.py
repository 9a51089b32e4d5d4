"""Layer kernels of the numba backend (kernels/INTERFACE.md section 1), one @njit each.

float32 C-contiguous arrays in, outputs first, written with ``=`` and never allocated.
Every literal and accumulator is float32 (Numba would otherwise promote to float64).
These are the readable building blocks; the network functions (``numba_train``) use
fused row kernels over a transposed, padded work layout instead.

Reductions over a row (``dense_forward``, ``dense_backward``'s ``dinp``) are compiled
with ``fastmath={"reassoc", "contract"}`` only: LLVM may then add a dot product in
16-lane pieces and fuse multiply-adds (summation order differs from NumPy's at float32
rounding level), while NaN and infinity keep their meaning (no ``nnan``/``ninf``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

f32 = np.float32
ZERO = f32(0.0)
ONE = f32(1.0)
TWO = f32(2.0)
_REDUCE = {"reassoc", "contract"}


@njit(cache=True, fastmath=_REDUCE)
def dense_forward(out, inp, weight, bias):
    """out (B,O) = inp (B,I) @ weight (O,I).T + bias (O,)."""
    n_rows, n_in = inp.shape
    n_out = weight.shape[0]
    for b in range(n_rows):
        x = inp[b]
        for o in range(n_out):
            w = weight[o]
            acc = ZERO
            for i in range(n_in):
                acc += x[i] * w[i]
            out[b, o] = acc + bias[o]


@njit(cache=True, fastmath=_REDUCE)
def _dense_dinp(dinp, dout, weight):
    """dinp (B,I) = dout (B,O) @ weight (O,I)."""
    n_rows, n_out = dout.shape
    n_in = weight.shape[1]
    for b in range(n_rows):
        row = dinp[b]
        row[:] = ZERO
        for o in range(n_out):
            g = dout[b, o]
            w = weight[o]
            for i in range(n_in):
                row[i] += g * w[i]


@njit(cache=True)
def _dense_dweight(dweight, dbias, dout, inp):
    """dweight (O,I) = dout.T @ inp; dbias (O,) = dout.sum(0)."""
    n_rows, n_out = dout.shape
    n_in = inp.shape[1]
    dweight[:] = ZERO
    dbias[:] = ZERO
    for b in range(n_rows):
        x = inp[b]
        for o in range(n_out):
            g = dout[b, o]
            dbias[o] += g
            w = dweight[o]
            for i in range(n_in):
                w[i] += g * x[i]


def dense_backward(dinp, dweight, dbias, dout, inp, weight):
    """dweight = dout.T @ inp, dbias = dout.sum(0), dinp = dout @ weight (None: skipped)."""
    _dense_dweight(dweight, dbias, dout, inp)
    if dinp is not None:
        _dense_dinp(dinp, dout, weight)


@njit(cache=True)
def _sigmoid(x):
    if x >= ZERO:
        return ONE / (ONE + np.exp(-x))
    e = np.exp(x)
    return e / (ONE + e)


@njit(cache=True)
def activation_forward(out, inp, name):
    """out (B,N) = act(inp); out may be inp."""
    n_rows, n = inp.shape
    if name == "relu":
        for b in range(n_rows):
            for j in range(n):
                x = inp[b, j]
                out[b, j] = ZERO if x < ZERO else x
    elif name == "sigmoid":
        for b in range(n_rows):
            for j in range(n):
                out[b, j] = _sigmoid(inp[b, j])
    elif name == "tanh":
        for b in range(n_rows):
            for j in range(n):
                out[b, j] = np.tanh(inp[b, j])
    elif name == "silu":
        for b in range(n_rows):
            for j in range(n):
                x = inp[b, j]
                out[b, j] = x * _sigmoid(x)
    elif name == "identity":
        for b in range(n_rows):
            for j in range(n):
                out[b, j] = inp[b, j]
    else:
        raise ValueError("unknown activation")


@njit(cache=True)
def activation_backward(dinp, dout, inp, out, name):
    """dinp (B,N) = dout * act'(inp), out = act(inp) given; dinp may be dout."""
    n_rows, n = inp.shape
    if name == "relu":
        for b in range(n_rows):
            for j in range(n):
                dinp[b, j] = dout[b, j] if inp[b, j] > ZERO else ZERO
    elif name == "sigmoid":
        for b in range(n_rows):
            for j in range(n):
                y = out[b, j]
                dinp[b, j] = dout[b, j] * y * (ONE - y)
    elif name == "tanh":
        for b in range(n_rows):
            for j in range(n):
                y = out[b, j]
                dinp[b, j] = dout[b, j] * (ONE - y * y)
    elif name == "silu":
        for b in range(n_rows):
            for j in range(n):
                x = inp[b, j]
                s = _sigmoid(x)
                dinp[b, j] = dout[b, j] * s * (ONE + x * (ONE - s))
    elif name == "identity":
        for b in range(n_rows):
            for j in range(n):
                dinp[b, j] = dout[b, j]
    else:
        raise ValueError("unknown activation")


@njit(cache=True)
def softmax_forward(probs, logits):
    """probs (B,C) = row-wise softmax of logits, the row maximum subtracted."""
    n_rows, n = logits.shape
    for b in range(n_rows):
        top = logits[b, 0]
        for j in range(1, n):
            if logits[b, j] > top:
                top = logits[b, j]
        total = ZERO
        for j in range(n):
            e = np.exp(logits[b, j] - top)
            probs[b, j] = e
            total += e
        inv = ONE / total
        for j in range(n):
            probs[b, j] *= inv


@njit(cache=True)
def _cross_entropy(logits, labels):
    n_rows, n = logits.shape
    total = ZERO
    for b in range(n_rows):
        top = logits[b, 0]
        for j in range(1, n):
            if logits[b, j] > top:
                top = logits[b, j]
        s = ZERO
        for j in range(n):
            s += np.exp(logits[b, j] - top)
        total += (top + np.log(s)) - logits[b, labels[b]]
    return total / f32(n_rows)


def cross_entropy_forward(logits, labels):
    """Mean over rows of logsumexp(logits[b]) - logits[b, labels[b]], as a Python float."""
    return float(_cross_entropy(logits, labels))


@njit(cache=True)
def softmax_cross_entropy_backward(dlogits, probs, labels):
    """dlogits (B,C) = (probs - onehot(labels)) / B."""
    n_rows, n = probs.shape
    inv = ONE / f32(n_rows)
    for b in range(n_rows):
        for j in range(n):
            dlogits[b, j] = probs[b, j] * inv
        dlogits[b, labels[b]] -= inv


@njit(cache=True)
def _mse(pred, target):
    n_rows, n = pred.shape
    total = ZERO
    for b in range(n_rows):
        for j in range(n):
            diff = pred[b, j] - target[b, j]
            total += diff * diff
    return total / f32(n_rows * n)


def mse_forward(pred, target):
    """mean((pred - target)**2) over all B*O elements, as a Python float."""
    return float(_mse(pred, target))


@njit(cache=True)
def mse_backward(dpred, pred, target):
    """dpred (B,O) = 2 (pred - target) / (B*O)."""
    n_rows, n = pred.shape
    scale = TWO / f32(n_rows * n)
    for b in range(n_rows):
        for j in range(n):
            dpred[b, j] = scale * (pred[b, j] - target[b, j])


@njit(cache=True)
def _sgd(param, grad, lr, weight_decay):
    for p in range(param.shape[0]):
        g = grad[p] + weight_decay * param[p]
        param[p] -= lr * g


def sgd_update(param, grad, lr, weight_decay):
    """param (P,) -= lr * (grad + weight_decay * param)."""
    _sgd(param, grad, f32(lr), f32(weight_decay))


@njit(cache=True)
def _momentum(param, grad, velocity, lr, momentum, weight_decay):
    for p in range(param.shape[0]):
        g = grad[p] + weight_decay * param[p]
        velocity[p] = momentum * velocity[p] + g
        param[p] -= lr * velocity[p]


def momentum_update(param, grad, velocity, lr, momentum, weight_decay):
    """PyTorch SGD momentum: velocity = mu * velocity + g; param -= lr * velocity."""
    _momentum(param, grad, velocity, f32(lr), f32(momentum), f32(weight_decay))


@njit(cache=True)
def _adam(param, grad, m, v, lr, beta1, beta2, rest1, rest2, eps, weight_decay, c1, c2):
    for p in range(param.shape[0]):
        g = grad[p] + weight_decay * param[p]
        m[p] = beta1 * m[p] + rest1 * g
        v[p] = beta2 * v[p] + rest2 * g * g
        param[p] -= lr * (m[p] / c1) / (np.sqrt(v[p] / c2) + eps)


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """PyTorch Adam, step >= 1.

    1 - beta and the bias corrections 1 - beta**step are computed in float64 (in float32,
    1 - 0.999 would be 1.3e-5 off), the rest in float32.
    """
    beta1, beta2 = float(beta1), float(beta2)
    c1 = 1.0 - beta1 ** int(step)
    c2 = 1.0 - beta2 ** int(step)
    _adam(param, grad, m, v, f32(lr), f32(beta1), f32(beta2), f32(1.0 - beta1), f32(1.0 - beta2),
          f32(eps), f32(weight_decay), f32(c1), f32(c2))  # fmt: skip
