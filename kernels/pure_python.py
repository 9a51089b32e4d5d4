"""The multilayer perceptron in pure Python: lists of floats, loops, and nothing else.

This is the version to read while learning (in the spirit of micrograd, Nielsen's
``network.py`` and llm.c's ``train_gpt2.c``). A matrix of shape (B, N) is a list of B
rows, each a list of N floats; a vector is a list. Python floats are float64, so this
backend is also the most precise of the three, which is why the tests use it as the
referee for the others.

Part 1 holds the layer kernels, each a few loops; part 2 the network functions of
``kernels/INTERFACE.md``: they take NumPy arrays, turn them into lists with
``.tolist()`` on the way in and write lists back into NumPy arrays on the way out;
that conversion is the only use of NumPy in this file.
"""

from __future__ import annotations

import math

import numpy as np

from kernels.layout import INITS, Net, Optimizer, param_layout

# ---------------------------------------------------------------------------------------
# 1. Layer kernels: outputs first, written into the lists they are given.
# ---------------------------------------------------------------------------------------


def dense_forward(out, inp, weight, bias):
    """out (B,O) = inp (B,I) @ weight (O,I).T + bias (O,)."""
    for out_row, x in zip(out, inp, strict=True):
        for o, (w_row, b) in enumerate(zip(weight, bias, strict=True)):
            out_row[o] = b + sum(w * xi for w, xi in zip(w_row, x, strict=True))


def dense_backward(dinp, dweight, dbias, dout, inp, weight):
    """dweight (O,I) = dout.T @ inp; dbias (O,) = dout.sum(0); dinp (B,I) = dout @ weight.

    ``dinp`` is None for the first layer, whose input needs no gradient.
    """
    for o, dw_row in enumerate(dweight):
        d_col = [d_row[o] for d_row in dout]  # dL/dout[:, o], one number per row
        dbias[o] = sum(d_col)
        for i in range(len(dw_row)):
            dw_row[i] = sum(d * x[i] for d, x in zip(d_col, inp, strict=True))
    if dinp is not None:
        for dx, d_row in zip(dinp, dout, strict=True):
            for i in range(len(dx)):
                dx[i] = sum(d * w_row[i] for d, w_row in zip(d_row, weight, strict=True))


def _sigmoid(x):
    """1 / (1 + exp(-x)), written as exp(x) / (1 + exp(x)) for x < 0 so exp never overflows."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _act(x, name):
    """act(x) for one number."""
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "relu":
        return x if x > 0 else 0.0
    if name == "tanh":
        return math.tanh(x)
    if name == "silu":
        return x * _sigmoid(x)
    if name == "identity":
        return x
    raise ValueError(f"unknown activation {name!r}")


def _act_derivative(x, y, name):
    """act'(x) for one number, given y = act(x)."""
    if name == "sigmoid":
        return y * (1.0 - y)
    if name == "relu":
        return 1.0 if x > 0 else 0.0  # 0 at x = 0, as PyTorch
    if name == "tanh":
        return 1.0 - y * y
    if name == "silu":
        s = _sigmoid(x)
        return s * (1.0 + x * (1.0 - s))  # d/dx x s(x) = s + x s (1 - s)
    if name == "identity":
        return 1.0
    raise ValueError(f"unknown activation {name!r}")


def activation_forward(out, inp, name):
    """out (B,N) = act(inp) elementwise; ``out`` may be ``inp``."""
    for out_row, x_row in zip(out, inp, strict=True):
        for n, x in enumerate(x_row):
            out_row[n] = _act(x, name)


def activation_backward(dinp, dout, inp, out, name):
    """dinp (B,N) = dout * act'(inp), with out = act(inp); ``dinp`` may be ``dout``."""
    for dx_row, d_row, x_row, y_row in zip(dinp, dout, inp, out, strict=True):
        for n, (d, x, y) in enumerate(zip(d_row, x_row, y_row, strict=True)):
            dx_row[n] = d * _act_derivative(x, y, name)


def softmax_forward(probs, logits):
    """probs[b] (B,C) = exp(logits[b] - max) / sum(exp(logits[b] - max)), row by row."""
    for p_row, row in zip(probs, logits, strict=True):
        top = max(row)
        exps = [math.exp(v - top) for v in row]
        total = sum(exps)
        for c, e in enumerate(exps):
            p_row[c] = e / total


def cross_entropy_forward(logits, labels):
    """mean over rows b of logsumexp(logits[b]) - logits[b][labels[b]]; logits (B,C)."""
    total = 0.0
    for row, label in zip(logits, labels, strict=True):
        top = max(row)
        logsumexp = top + math.log(sum(math.exp(v - top) for v in row))
        total += logsumexp - row[label]
    return total / len(logits)


def softmax_cross_entropy_backward(dlogits, probs, labels):
    """dlogits (B,C) = (probs - onehot(labels)) / B."""
    batch = len(probs)
    for d_row, p_row, label in zip(dlogits, probs, labels, strict=True):
        for c, p in enumerate(p_row):
            d_row[c] = (p - (1.0 if c == label else 0.0)) / batch


def mse_forward(pred, target):
    """mean((pred - target)**2) over all B*O elements of pred, target (B,O)."""
    total = 0.0
    for p_row, t_row in zip(pred, target, strict=True):
        total += sum((p - t) ** 2 for p, t in zip(p_row, t_row, strict=True))
    return total / (len(pred) * len(pred[0]))


def mse_backward(dpred, pred, target):
    """dpred (B,O) = 2 (pred - target) / (B*O)."""
    count = len(pred) * len(pred[0])
    for d_row, p_row, t_row in zip(dpred, pred, target, strict=True):
        for o, (p, t) in enumerate(zip(p_row, t_row, strict=True)):
            d_row[o] = 2.0 * (p - t) / count


def sgd_update(param, grad, lr, weight_decay):
    """param (P,) -= lr * (grad + weight_decay * param)."""
    for i, g in enumerate(grad):
        g = g + weight_decay * param[i]
        param[i] -= lr * g


def momentum_update(param, grad, velocity, lr, momentum, weight_decay):
    """velocity (P,) = momentum * velocity + g; param -= lr * velocity (PyTorch SGD)."""
    for i, g in enumerate(grad):
        g = g + weight_decay * param[i]
        velocity[i] = momentum * velocity[i] + g
        param[i] -= lr * velocity[i]


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """PyTorch Adam, step >= 1: m, v (P,) running moments of g; param -= lr m^ / (sqrt(v^) + eps).

    m^ = m / (1 - beta1**step) and v^ = v / (1 - beta2**step) undo the zero start.
    """
    correction1 = 1.0 - beta1**step
    correction2 = 1.0 - beta2**step
    for i, g in enumerate(grad):
        g = g + weight_decay * param[i]
        m[i] = beta1 * m[i] + (1.0 - beta1) * g
        v[i] = beta2 * v[i] + (1.0 - beta2) * g * g
        param[i] -= lr * (m[i] / correction1) / (math.sqrt(v[i] / correction2) + eps)


# ---------------------------------------------------------------------------------------
# 2. Network functions: NumPy arrays in and out, lists inside.
# ---------------------------------------------------------------------------------------

MASK64 = (1 << 64) - 1


def _uniform(seed, k):
    """Draw k of the shared splitmix64 stream (INTERFACE.md section 3), a float in [0, 1)."""
    z = (seed + (k + 1) * 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    z = z ^ (z >> 31)
    return (z >> 40) / 2**24


def init_params(params, net, init, seed):
    """Fill params (P,): weights from the shared stream (He/Xavier, uniform/normal), biases 0."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    seed = int(seed) % 2**64  # any integer seed, read modulo 2**64 like the stream
    flat = []
    k = 0  # the next draw of the stream
    for fan_in, fan_out in zip(net.sizes[:-1], net.sizes[1:], strict=True):
        fans = fan_in if init.startswith("he") else fan_in + fan_out
        n = fan_out * fan_in
        if init.endswith("uniform"):
            bound = math.sqrt(6 / fans)
            weights = [(2 * _uniform(seed, k + j) - 1) * bound for j in range(n)]
            k += n
        else:  # Box-Muller: weight j uses draws 2j and 2j + 1 of the layer
            std = math.sqrt(2 / fans)
            weights = []
            for j in range(n):
                u1, u2 = _uniform(seed, k + 2 * j), _uniform(seed, k + 2 * j + 1)
                weights.append(std * math.sqrt(-2 * math.log(1 - u1)) * math.cos(2 * math.pi * u2))
            k += 2 * n
        flat += weights + [0.0] * fan_out
    params[:] = flat


def _zeros(rows, cols):
    return [[0.0] * cols for _ in range(rows)]


def _unflatten(flat, sizes):
    """The flat parameter list as [(weight (O,I), bias (O,)), ...], one pair per layer."""
    layers = []
    for (w0, b0, end), fan_in in zip(param_layout(sizes), sizes[:-1], strict=True):
        weight = [flat[start : start + fan_in] for start in range(w0, b0, fan_in)]
        layers.append((weight, flat[b0:end]))
    return layers


def _flatten(layers):
    """The inverse of _unflatten: weight rows then bias, layer after layer, in one list."""
    flat = []
    for weight, bias in layers:
        for row in weight:
            flat += row
        flat += bias
    return flat


def _input_rows(X):
    """Rows of X as lists of floats; uint8 pixels are read as x / 255."""
    if X.dtype not in (np.uint8, np.float32):
        raise TypeError(f"X must be uint8 or float32, not {X.dtype}")
    rows = X.tolist()
    if X.dtype == np.uint8:
        rows = [[v / 255 for v in row] for row in rows]
    return rows


def _forward(layers, net, x):
    """Push the batch x (B, sizes[0]) through every layer.

    Returns the pre-activations z and activations a of each layer; a[-1] is the output
    (probabilities for a softmax head).
    """
    zs, acts = [], []
    inp = x
    for i, (weight, bias) in enumerate(layers):
        z = _zeros(len(x), len(bias))
        a = _zeros(len(x), len(bias))
        dense_forward(z, inp, weight, bias)
        if i < len(layers) - 1:
            activation_forward(a, z, net.activation)
        elif net.output == "softmax":
            softmax_forward(a, z)
        else:
            activation_forward(a, z, net.output)
        zs.append(z)
        acts.append(a)
        inp = a
    return zs, acts


def _weighted_head(d, net, logits, out, target, weights):
    """Loss sum(w_i l_i) / sum(w) of a batch, and its gradient with respect to the last
    layer's pre-activation into d (B,O); a batch of weight 0 has loss and gradient 0.

    l_i is row i's loss as the unweighted kernels count it (cross entropy; for mse the mean
    over the O outputs), so weights of 1 give the same values up to rounding.
    """
    total = sum(weights)
    if total == 0.0:
        return 0.0  # d is all zeros
    loss = 0.0
    for d_row, z_row, p_row, t, w in zip(d, logits, out, target, weights, strict=True):
        share = w / total
        if net.loss == "cross_entropy":
            top = max(z_row)
            loss += share * (top + math.log(sum(math.exp(v - top) for v in z_row)) - z_row[t])
            for c, p in enumerate(p_row):
                d_row[c] = (p - (1.0 if c == t else 0.0)) * share
        else:
            loss += share * sum((p - q) ** 2 for p, q in zip(p_row, t, strict=True)) / len(p_row)
            for o, (p, q) in enumerate(zip(p_row, t, strict=True)):
                d_row[o] = 2.0 * (p - q) / len(p_row) * share
    if net.loss != "cross_entropy":
        activation_backward(d, d, logits, out, net.output)
    return loss


def _backward(layers, net, x, zs, acts, target, weights=None):
    """The loss of the batch and its gradient [(dweight, dbias), ...] by backpropagation.

    ``weights``: the rows' weights (see :func:`train_steps`); None: all equal.
    """
    out = acts[-1]
    d = _zeros(len(out), len(out[0]))  # dL/dz of the last layer
    if weights is not None:
        loss = _weighted_head(d, net, zs[-1], out, target, weights)
    elif net.loss == "cross_entropy":
        loss = cross_entropy_forward(zs[-1], target)
        softmax_cross_entropy_backward(d, out, target)
    else:
        loss = mse_forward(out, target)
        mse_backward(d, out, target)
        activation_backward(d, d, zs[-1], out, net.output)
    grads = []
    for i in reversed(range(len(layers))):
        weight, bias = layers[i]
        dweight, dbias = _zeros(len(weight), len(weight[0])), [0.0] * len(bias)
        if i == 0:
            dense_backward(None, dweight, dbias, d, x, weight)
        else:
            dinp = _zeros(len(x), len(weight[0]))  # dL/da of layer i - 1 ...
            dense_backward(dinp, dweight, dbias, d, acts[i - 1], weight)
            activation_backward(dinp, dinp, zs[i - 1], acts[i - 1], net.activation)
            d = dinp  # ... now dL/dz of layer i - 1
        grads.insert(0, (dweight, dbias))
    return loss, grads


def prepare_inputs(X):
    """X itself: this backend reads the rows as given (the numba backend makes a sparse copy)."""
    return X


def forward(params, net: Net, X):
    """The outputs (N, sizes[-1]) float32 of the network for the rows of X (N, sizes[0])."""
    layers = _unflatten(params.tolist(), net.sizes)
    _, acts = _forward(layers, net, _input_rows(X))
    return np.array(acts[-1], dtype=np.float32)


def loss_and_grads(params, net: Net, X, targets):
    """(mean loss over the N rows, its gradient (P,) float32 laid out like params)."""
    layers = _unflatten(params.tolist(), net.sizes)
    x = _input_rows(X)
    zs, acts = _forward(layers, net, x)
    loss, grads = _backward(layers, net, x, zs, acts, targets.tolist())
    return loss, np.array(_flatten(grads), dtype=np.float32)


def _argmax(row):
    return max(range(len(row)), key=row.__getitem__)  # the first of equal maxima


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
    opt_state in place. One thread: ``threads`` is ignored. ``sample_weight`` (len(X),)
    float32 >= 0, the weight of each row of X, makes a batch's loss and its gradient the
    weighted mean over its rows (kernels/INTERFACE.md).
    """
    flat = params.tolist()
    state = {key: value.tolist() for key, value in opt_state.items()}
    order, lrs = order.tolist(), lrs.tolist()
    n_batches = math.ceil(len(order) / batch_size)
    losses, correct = [], []
    for j in range(n_batches):
        rows = order[j * batch_size : (j + 1) * batch_size]
        x = _input_rows(X[rows])
        target = targets[rows].tolist()
        layers = _unflatten(flat, net.sizes)
        zs, acts = _forward(layers, net, x)
        w = None if sample_weight is None else sample_weight[rows].tolist()
        loss, grads = _backward(layers, net, x, zs, acts, target, w)
        labels = target if net.loss == "cross_entropy" else [_argmax(t) for t in target]
        losses.append(loss)
        predictions = [_argmax(out) for out in acts[-1]]
        correct.append(sum(p == label for p, label in zip(predictions, labels, strict=True)))

        _update(flat, _flatten(grads), state, lrs[j], optimizer, step0 + j + 1)
    params[:] = flat
    for key, value in state.items():
        opt_state[key][:] = value
    return np.array(losses, dtype=np.float32), np.array(correct, dtype=np.int64)
