"""The multilayer perceptron in vectorised NumPy: pure_python.py with one array operation
where that file has a loop.

This is the honest reference the Numba backend has to beat, written the way a careful
NumPy user would write it: float32 throughout (Python scalars only, so nothing is
promoted to float64), matrix products with ``np.matmul`` (BLAS), every buffer of a
batch allocated once per call and reused for each batch (``out=``), and uint8 pixels
converted to float32 one batch at a time. Besides the outputs they are given, kernels
only create the small temporaries NumPy expressions need (row maxima, masks).

Part 1 holds the layer kernels, part 2 the network functions of ``kernels/INTERFACE.md``.
The kernels are written for float32 but work on any float dtype (the gradient checks run
them in float64).
"""

from __future__ import annotations

import math

import numpy as np

from kernels.layout import INITS, Net, Optimizer, param_layout

# ---------------------------------------------------------------------------------------
# 1. Layer kernels: outputs first, written into the arrays they are given.
# ---------------------------------------------------------------------------------------


def dense_forward(out, inp, weight, bias):
    """out (B,O) = inp (B,I) @ weight (O,I).T + bias (O,)."""
    np.matmul(inp, weight.T, out=out)
    out += bias


def dense_backward(dinp, dweight, dbias, dout, inp, weight):
    """dweight (O,I) = dout.T @ inp; dbias (O,) = dout.sum(0); dinp (B,I) = dout @ weight.

    ``dinp`` is None for the first layer, whose input needs no gradient.
    """
    np.matmul(dout.T, inp, out=dweight)
    np.sum(dout, axis=0, out=dbias)
    if dinp is not None:
        np.matmul(dout, weight, out=dinp)


def _sigmoid(out, x):
    """out = 1 / (1 + exp(-x)) computed as exp(min(x, 0)) / (1 + exp(-|x|)).

    That is 1 / (1 + exp(-x)) for x >= 0 and exp(x) / (1 + exp(x)) for x < 0, the two
    branches of pure_python._sigmoid: exp only ever sees numbers <= 0, so never overflows.
    """
    denominator = np.exp(-np.abs(x))
    denominator += 1
    np.minimum(x, 0, out=out)
    np.exp(out, out=out)
    out /= denominator


def activation_forward(out, inp, name):
    """out (B,N) = act(inp) elementwise; ``out`` may be ``inp``."""
    if name == "sigmoid":
        _sigmoid(out, inp)
    elif name == "relu":
        np.maximum(inp, 0, out=out)
    elif name == "tanh":
        np.tanh(inp, out=out)
    elif name == "silu":
        s = np.empty_like(inp)
        _sigmoid(s, inp)
        np.multiply(inp, s, out=out)
    elif name == "identity":
        np.copyto(out, inp)
    else:
        raise ValueError(f"unknown activation {name!r}")


def activation_backward(dinp, dout, inp, out, name):
    """dinp (B,N) = dout * act'(inp), with out = act(inp); ``dinp`` may be ``dout``."""
    if name == "sigmoid":
        np.multiply(dout, out * (1 - out), out=dinp)
    elif name == "relu":
        np.multiply(dout, inp > 0, out=dinp)  # 0 at x = 0, as PyTorch
    elif name == "tanh":
        np.multiply(dout, 1 - out * out, out=dinp)
    elif name == "silu":
        s = np.empty_like(inp)
        _sigmoid(s, inp)
        np.multiply(dout, s * (1 + inp * (1 - s)), out=dinp)  # d/dx x s(x) = s + x s (1 - s)
    elif name == "identity":
        np.copyto(dinp, dout)
    else:
        raise ValueError(f"unknown activation {name!r}")


def softmax_forward(probs, logits):
    """probs (B,C) = exp(logits - rowmax) / rowsum(exp(logits - rowmax))."""
    np.subtract(logits, logits.max(axis=1, keepdims=True), out=probs)
    np.exp(probs, out=probs)
    probs /= probs.sum(axis=1, keepdims=True)


def cross_entropy_forward(logits, labels):
    """mean over rows b of logsumexp(logits[b]) - logits[b, labels[b]]; logits (B,C)."""
    top = logits.max(axis=1)
    logsumexp = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    return float(np.mean(logsumexp - logits[np.arange(len(logits)), labels]))


def softmax_cross_entropy_backward(dlogits, probs, labels):
    """dlogits (B,C) = (probs - onehot(labels)) / B."""
    np.copyto(dlogits, probs)
    dlogits[np.arange(len(probs)), labels] -= 1
    dlogits /= len(probs)


def mse_forward(pred, target):
    """mean((pred - target)**2) over all B*O elements of pred, target (B,O)."""
    diff = pred - target
    return float(np.mean(diff * diff))


def mse_backward(dpred, pred, target):
    """dpred (B,O) = 2 (pred - target) / (B*O)."""
    np.subtract(pred, target, out=dpred)
    dpred *= 2.0 / pred.size


# The update rules turn their scalars into Python floats: NumPy treats those as "weak",
# so float32 arrays stay float32 (an np.float64 scalar would promote them to float64).


def sgd_update(param, grad, lr, weight_decay):
    """param (P,) -= lr * (grad + weight_decay * param)."""
    lr, weight_decay = float(lr), float(weight_decay)
    g = grad + weight_decay * param if weight_decay else grad
    param -= lr * g


def momentum_update(param, grad, velocity, lr, momentum, weight_decay):
    """velocity (P,) = momentum * velocity + g; param -= lr * velocity (PyTorch SGD)."""
    lr, momentum, weight_decay = float(lr), float(momentum), float(weight_decay)
    g = grad + weight_decay * param if weight_decay else grad
    velocity *= momentum
    velocity += g
    param -= lr * velocity


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """PyTorch Adam, step >= 1: m, v (P,) running moments of g; param -= lr m^ / (sqrt(v^) + eps).

    m^ = m / (1 - beta1**step) and v^ = v / (1 - beta2**step) undo the zero start.
    """
    lr, beta1, beta2 = float(lr), float(beta1), float(beta2)
    eps, weight_decay = float(eps), float(weight_decay)
    correction1 = 1.0 - beta1 ** int(step)
    correction2 = 1.0 - beta2 ** int(step)
    g = grad + weight_decay * param if weight_decay else grad
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * g * g
    param -= lr * (m / correction1) / (np.sqrt(v / correction2) + eps)


# ---------------------------------------------------------------------------------------
# 2. Network functions.
# ---------------------------------------------------------------------------------------

CHUNK = 1024  # rows per pass in forward and loss_and_grads, so a uint8 X is never converted whole


def _uniforms(seed, start, count):
    """Draws start .. start + count - 1 of the shared splitmix64 stream, floats in [0, 1).

    uint64 arrays wrap modulo 2**64 silently, which is the arithmetic the stream wants.
    """
    k = np.arange(start + 1, start + count + 1, dtype=np.uint64)  # k + 1
    z = np.uint64(int(seed) % 2**64) + k * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(40)).astype(np.float64) / 2**24


def init_params(params, net, init, seed):
    """Fill params (P,): weights from the shared stream (He/Xavier, uniform/normal), biases 0."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    params[:] = 0
    k = 0  # the next draw of the stream
    layout = param_layout(net.sizes)
    for (w0, b0, _), fan_in, fan_out in zip(layout, net.sizes[:-1], net.sizes[1:], strict=True):
        fans = fan_in if init.startswith("he") else fan_in + fan_out
        n = fan_out * fan_in
        if init.endswith("uniform"):
            bound = math.sqrt(6 / fans)
            weights = (2 * _uniforms(seed, k, n) - 1) * bound
            k += n
        else:  # Box-Muller: weight j uses draws 2j and 2j + 1 of the layer
            std = math.sqrt(2 / fans)
            u = _uniforms(seed, k, 2 * n)
            u1, u2 = u[0::2], u[1::2]
            weights = std * np.sqrt(-2 * np.log(1 - u1)) * np.cos(2 * math.pi * u2)
            k += 2 * n
        params[w0:b0] = weights


def _views(flat, sizes):
    """Per-layer weight (O,I) and bias (O,) views of a flat vector: writing them writes it."""
    weights, biases = [], []
    layout = param_layout(sizes)
    for (w0, b0, end), fan_in, fan_out in zip(layout, sizes[:-1], sizes[1:], strict=True):
        weights.append(flat[w0:b0].reshape(fan_out, fan_in))
        biases.append(flat[b0:end])
    return weights, biases


class _Workspace:
    """Every buffer a batch of up to ``rows`` rows needs, allocated once, reused per batch."""

    def __init__(self, net, rows):
        widths = net.sizes[1:]
        self.x = np.empty((rows, net.sizes[0]), np.float32)  # the input, when converted
        self.z = [np.empty((rows, w), np.float32) for w in widths]  # pre-activations
        self.a = [np.empty((rows, w), np.float32) for w in widths]  # activations
        self.d = [np.empty((rows, w), np.float32) for w in widths]  # dL/dz
        self.grads = np.empty(net.n_params, np.float32)
        self.dweights, self.dbiases = _views(self.grads, net.sizes)

    def rows(self, n):
        """(x, z, a, d) for a batch of n rows: the first n rows of each buffer."""
        if n == len(self.x):
            return self.x, self.z, self.a, self.d
        return self.x[:n], [z[:n] for z in self.z], [a[:n] for a in self.a], [d[:n] for d in self.d]


def _input(x, X, rows):
    """The float32 input X[rows] of a batch; uint8 pixels are read as x / 255 into x."""
    if X.dtype == np.uint8:
        return np.divide(X[rows], np.float32(255), out=x)
    if X.dtype != np.float32:
        raise TypeError(f"X must be uint8 or float32, not {X.dtype}")
    if isinstance(rows, slice):
        return X[rows]  # a view: float32 input is used as given
    return np.take(X, rows, axis=0, out=x)


def _forward(weights, biases, net, x, z, a):
    """Push the batch x (B, sizes[0]) through every layer, filling z and a of each layer.

    a[-1] is the output (probabilities for a softmax head).
    """
    inp = x
    for i in range(net.n_layers):
        dense_forward(z[i], inp, weights[i], biases[i])
        if i < net.n_layers - 1:
            activation_forward(a[i], z[i], net.activation)
        elif net.output == "softmax":
            softmax_forward(a[i], z[i])
        else:
            activation_forward(a[i], z[i], net.output)
        inp = a[i]


def _weighted_head(dlast, net, logits, out, target, w):
    """Loss sum(w_i l_i) / sum(w) of a batch, and its gradient with respect to the last
    layer's pre-activation into dlast (B,O); a batch of weight 0 has loss and gradient 0.

    l_i is row i's loss as the unweighted kernels count it (cross entropy; for mse the mean
    over the O outputs), so weights of 1 give the same values up to rounding.
    """
    total = float(w.sum(dtype=np.float64))
    if total == 0.0:
        dlast[:] = 0
        return 0.0
    share = (w / total).astype(np.float32)[:, None]  # (B, 1): row i's part of the mean
    rows = np.arange(len(out))
    if net.loss == "cross_entropy":
        top = logits.max(axis=1)
        per_row = top + np.log(np.exp(logits - top[:, None]).sum(axis=1)) - logits[rows, target]
        np.copyto(dlast, out)
        dlast[rows, target] -= 1
        dlast *= share
    else:
        diff = out - target
        per_row = (diff * diff).mean(axis=1)
        np.multiply(diff, share * np.float32(2.0 / out.shape[1]), out=dlast)
        activation_backward(dlast, dlast, logits, out, net.output)
    return float(np.dot(w.astype(np.float64), per_row.astype(np.float64)) / total)


def _backward(weights, net, x, z, a, d, dweights, dbiases, target, w=None):
    """The loss of the batch; its gradient goes into dweights, dbiases by backpropagation.

    ``w`` (B,) float32: the rows' weights (see :func:`train_steps`); None: all equal.
    """
    if w is not None:
        loss = _weighted_head(d[-1], net, z[-1], a[-1], target, w)
    elif net.loss == "cross_entropy":
        loss = cross_entropy_forward(z[-1], target)
        softmax_cross_entropy_backward(d[-1], a[-1], target)
    else:
        loss = mse_forward(a[-1], target)
        mse_backward(d[-1], a[-1], target)
        activation_backward(d[-1], d[-1], z[-1], a[-1], net.output)
    for i in reversed(range(net.n_layers)):
        if i == 0:
            dense_backward(None, dweights[0], dbiases[0], d[0], x, weights[0])
        else:
            dense_backward(d[i - 1], dweights[i], dbiases[i], d[i], a[i - 1], weights[i])
            activation_backward(d[i - 1], d[i - 1], z[i - 1], a[i - 1], net.activation)
    return loss


def prepare_inputs(X):
    """X itself: this backend reads the rows as given (the numba backend makes a sparse copy)."""
    return X


def forward(params, net: Net, X):
    """The outputs (N, sizes[-1]) float32 of the network for the rows of X (N, sizes[0])."""
    weights, biases = _views(params, net.sizes)
    out = np.empty((len(X), net.sizes[-1]), np.float32)
    ws = _Workspace(net, min(CHUNK, len(X)))
    for start in range(0, len(X), CHUNK):
        rows = slice(start, min(start + CHUNK, len(X)))
        x, z, a, _ = ws.rows(rows.stop - start)
        _forward(weights, biases, net, _input(x, X, rows), z, a)
        out[rows] = a[-1]
    return out


def loss_and_grads(params, net: Net, X, targets):
    """(mean loss over the N rows, its gradient (P,) float32 laid out like params)."""
    weights, biases = _views(params, net.sizes)
    n = len(X)
    ws = _Workspace(net, min(CHUNK, n))
    loss, grads = 0.0, np.zeros(net.n_params, np.float32)
    for start in range(0, n, CHUNK):
        rows = slice(start, min(start + CHUNK, n))
        x, z, a, d = ws.rows(rows.stop - start)
        x = _input(x, X, rows)
        _forward(weights, biases, net, x, z, a)
        chunk_loss = _backward(weights, net, x, z, a, d, ws.dweights, ws.dbiases, targets[rows])
        share = len(x) / n  # the chunk's weight in the mean over all n rows
        loss += chunk_loss * share
        grads += ws.grads * share
    return loss, grads


def _update(params, grads, opt_state, lr, optimizer, step):
    """One step of ``optimizer`` on the flat params."""
    wd = optimizer.weight_decay
    if optimizer.name == "sgd":
        sgd_update(params, grads, lr, wd)
    elif optimizer.name == "momentum":
        momentum_update(params, grads, opt_state["velocity"], lr, optimizer.momentum, wd)
    else:
        b1, b2, eps = optimizer.beta1, optimizer.beta2, optimizer.eps
        adam_update(params, grads, opt_state["m"], opt_state["v"], lr, b1, b2, eps, wd, step)


def train_steps(
    params,
    opt_state,
    net: Net,
    X,
    targets,
    order,
    batch_size,
    lrs,
    optimizer: Optimizer,
    step0,
    threads=1,
    sample_weight=None,
):
    """ceil(len(order) / batch_size) optimizer steps, batch j being X[order[j*bs:(j+1)*bs]].

    Returns (losses (n_batches,) float32, correct (n_batches,) int64); updates params and
    opt_state in place. NumPy decides its own threading (BLAS): ``threads`` is ignored.
    ``sample_weight`` (len(X),) float32 >= 0, the weight of each row of X, makes a batch's
    loss and its gradient the weighted mean over its rows (kernels/INTERFACE.md).
    """
    if params.dtype != np.float32 or not params.flags.c_contiguous:
        raise TypeError("params must be a C-contiguous float32 vector")
    weights, biases = _views(params, net.sizes)
    ws = _Workspace(net, min(batch_size, len(order)))
    n_batches = math.ceil(len(order) / batch_size)
    losses = np.empty(n_batches, np.float32)
    correct = np.empty(n_batches, np.int64)
    for j in range(n_batches):
        rows = order[j * batch_size : (j + 1) * batch_size]
        x, z, a, d = ws.rows(len(rows))
        x = _input(x, X, rows)
        target = targets[rows]
        _forward(weights, biases, net, x, z, a)
        w = None if sample_weight is None else sample_weight[rows]
        losses[j] = _backward(weights, net, x, z, a, d, ws.dweights, ws.dbiases, target, w)
        labels = target if net.loss == "cross_entropy" else target.argmax(axis=1)
        correct[j] = np.count_nonzero(a[-1].argmax(axis=1) == labels)
        _update(params, ws.grads, opt_state, lrs[j], optimizer, int(step0) + j + 1)
    return losses, correct
