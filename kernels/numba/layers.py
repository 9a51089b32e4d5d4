"""Layer kernels of INTERFACE.md section 1 for the numba backend: the training kernels, called
on one layer.

There is one Numba implementation. Training runs the batch kernels of :mod:`kernels.numba.net`
and the optimizer step of :mod:`kernels.numba.optim` on a padded work layout (weights
transposed, every width rounded up to 16 lanes, the activations of a row in one flat
vector); each function here copies its arguments into that layout, calls the very kernel
training calls, and copies the result into the caller's output. So the layer-level tests
test the code that trains. The copies make these functions slower than the fused epoch loop:
they are the checkable pieces, not the fast path.

A dense layer given ``dinp=None`` is a first layer, whose input training visits as its
non-zero entries (:func:`~kernels.numba.net.sparse_backward`); the other layers run the
dense kernel that training picks for their shape (:func:`~kernels.numba.net.dense_path`).
"""

from __future__ import annotations

import numpy as np

from kernels.numba import heads, net, work
from kernels.numba.codes import ACT_CODES, ADAM, IDENTITY, MOMENTUM, SGD, Optim
from kernels.numba.optim import update
from kernels.numba.simd import LANES

f32 = np.float32


def _lanes(n: int) -> int:
    return -(-n // LANES) * LANES


def _rows(arrays, widths):
    """One flat float32 buffer holding each (B, w) array side by side in a row of padded lanes.

    Returns (buffer, arow, offsets); the pads are zero."""
    n_rows = arrays[0].shape[0]
    offsets, arow = [], 0
    for w in widths:
        offsets.append(arow)
        arow += _lanes(w)
    buf = np.zeros(n_rows * arow + LANES, np.float32)
    rows = buf[: n_rows * arow].reshape(n_rows, arow)
    for a, o0, w in zip(arrays, offsets, widths, strict=True):
        if a is not None:
            rows[:, o0 : o0 + w] = a
    return buf, arow, offsets


def _view(buf, arow, o0, shape):
    n_rows, width = shape
    return buf[: n_rows * arow].reshape(n_rows, arow)[:, o0 : o0 + width]


def _work_weight(weight, bias):
    """(work vector holding wt = weight.T padded to (I, S) then the bias, S)."""
    n_out, n_in = weight.shape
    s = _lanes(n_out)
    work = np.zeros(n_in * s + s + LANES, np.float32)
    work[: n_in * s].reshape(n_in, s)[:, :n_out] = weight.T
    if bias is not None:
        work[n_in * s : n_in * s + n_out] = bias
    return work, s


def dense_forward(out, inp, weight, bias):
    """out (B,O) = inp (B,I) @ weight (O,I).T + bias (O,)."""
    n_rows, n_in = inp.shape
    n_out = weight.shape[0]
    buf, arow, (i0, o0) = _rows([inp, None], [n_in, n_out])
    work, s = _work_weight(weight, bias)
    path = net.dense_path(n_in, n_out, n_rows)
    net.dense_forward(buf, o0, buf, i0, arow, n_rows, n_in, n_out, work, 0, work, n_in * s, s, path)
    out[:] = _view(buf, arow, o0, out.shape)


def dense_backward(dinp, dweight, dbias, dout, inp, weight):
    """dweight = dout.T @ inp, dbias = dout.sum(0), dinp = dout @ weight (None: a first layer,
    whose input training reads as its non-zero entries)."""
    n_rows, n_in = inp.shape
    n_out = weight.shape[0]
    post, arow, (i0, o0) = _rows([inp, None], [n_in, n_out])
    delta, _, _ = _rows([np.zeros_like(inp), dout], [n_in, n_out])
    wt, s = _work_weight(weight, None)
    grad = np.zeros_like(wt)
    b0 = n_in * s
    if dinp is None:
        x = np.ascontiguousarray(inp, np.float32)
        cols, vals, starts = work.sparse_rows(x, np.arange(n_rows, dtype=np.int64), f32(1.0))
        rowmap = np.arange(n_rows, dtype=np.int64)
        net.bias_backward(grad, b0, delta, o0, arow, n_rows, s)
        entries = len(vals)
        t_starts = np.zeros(n_in + 2, np.int64)
        t_rows, t_vals = np.zeros(entries, np.int64), np.zeros(entries, np.float32)
        work.transpose_rows(t_starts, t_rows, t_vals, n_rows, cols, vals, starts, rowmap, 0,
                            f32(1.0), 0, n_in)  # fmt: skip
        net.sparse_backward(grad, 0, delta, o0, arow, n_rows, cols, vals, starts, rowmap, 0,
                            f32(1.0), s, 0, s, t_starts, t_rows, t_vals)  # fmt: skip
    else:
        path = net.dense_path(n_in, n_out, n_rows)
        wc = np.zeros(n_out * _lanes(n_in) + LANES, np.float32)
        wc[: n_out * _lanes(n_in)].reshape(n_out, -1)[:, :n_in] = weight
        net.dense_backward(delta, grad, 0, grad, b0, delta, o0, post, i0, arow, n_rows, n_in,
                           wt, wc, 0, n_out, s, _lanes(n_in), path)  # fmt: skip
        dinp[:] = _view(delta, arow, i0, dinp.shape)
    dweight[:] = grad[:b0].reshape(n_in, s)[:, :n_out].T
    dbias[:] = grad[b0 : b0 + n_out]


def activation_forward(out, inp, name):
    """out (B,N) = act(inp); out may be inp."""
    n_rows, n = inp.shape
    pre, arow, _ = _rows([inp], [n])
    post = np.zeros_like(pre)
    heads.activation_forward(post, pre, 0, arow, n_rows, n, arow, ACT_CODES[name])
    out[:] = _view(post, arow, 0, out.shape)


def activation_backward(dinp, dout, inp, out, name):
    """dinp (B,N) = dout * act'(inp), out = act(inp) given; dinp may be dout."""
    n_rows, n = inp.shape
    d, arow, _ = _rows([dout], [n])
    pre, _, _ = _rows([inp], [n])
    post, _, _ = _rows([out], [n])
    heads.activation_backward(d, pre, post, 0, arow, n_rows, n, arow, ACT_CODES[name])
    dinp[:] = _view(d, arow, 0, dinp.shape)


def softmax_forward(probs, logits):
    """probs (B,C) = row-wise softmax of logits, the row maximum subtracted."""
    n_rows, n = logits.shape
    lg, arow, _ = _rows([logits], [n])
    pr = np.zeros_like(lg)
    heads.softmax(pr, lg, 0, arow, n_rows, n, arow, np.zeros(n_rows, np.float32))
    probs[:] = _view(pr, arow, 0, probs.shape)


def _labels(labels):
    return np.ascontiguousarray(labels, np.int64)


def cross_entropy_forward(logits, labels):
    """Mean over rows of logsumexp(logits[b]) - logits[b, labels[b]], as a Python float."""
    n_rows, n = logits.shape
    lg, arow, _ = _rows([logits], [n])
    scratch = np.zeros_like(lg)
    order = np.arange(n_rows, dtype=np.int64)
    probs, lse = np.zeros_like(lg), np.zeros(n_rows, np.float32)
    heads.softmax(probs, lg, 0, arow, n_rows, n, arow, lse)
    loss, _ = heads.xent_grad(scratch, probs, lg, 0, arow, n_rows, n, arow, _labels(labels), order,
                              0, f32(1.0), lse)  # fmt: skip
    return float(loss / f32(n_rows))


def softmax_cross_entropy_backward(dlogits, probs, labels):
    """dlogits (B,C) = (probs - onehot(labels)) / B."""
    n_rows, n = probs.shape
    pr, arow, _ = _rows([probs], [n])
    d = np.zeros_like(pr)
    order = np.arange(n_rows, dtype=np.int64)
    # the loss this also returns reads logits and lse, not needed here: probs stand in
    heads.xent_grad(d, pr, pr, 0, arow, n_rows, n, arow, _labels(labels), order, 0,
                  f32(1.0) / f32(n_rows), np.zeros(n_rows, np.float32))  # fmt: skip
    dlogits[:] = _view(d, arow, 0, dlogits.shape)


def _mse(pred, target, scale):
    n_rows, n = pred.shape
    post, arow, _ = _rows([pred], [n])
    d = np.zeros_like(post)
    target = np.ascontiguousarray(target, np.float32)
    order = np.arange(n_rows, dtype=np.int64)
    loss, _ = heads.mse(d, post, post, 0, arow, n_rows, n, arow, target, order, 0, scale,
                      IDENTITY)  # fmt: skip
    return loss, _view(d, arow, 0, pred.shape)


def mse_forward(pred, target):
    """mean((pred - target)**2) over all B*O elements, as a Python float."""
    loss, _ = _mse(pred, target, f32(1.0))
    return float(loss / f32(pred.size))


def mse_backward(dpred, pred, target):
    """dpred (B,O) = 2 (pred - target) / (B*O)."""
    _, d = _mse(pred, target, f32(2.0) / f32(pred.size))
    dpred[:] = d


def _update(param, grad, velocity, m, v, lr, step, **optim):
    # update() zeroes the gradient it consumed (training reuses the buffer): give it a copy
    optim = Optim(**{name: value if name == "kind" else float(value) for name, value in optim.items()})
    update(param, grad.copy(), 0, param.shape[0], velocity, m, v, optim, f32(lr), step)


def sgd_update(param, grad, lr, weight_decay):
    """param (P,) -= lr * (grad + weight_decay * param)."""
    _update(param, grad, None, None, None, lr, 1, kind=SGD, weight_decay=weight_decay)


def momentum_update(param, grad, velocity, lr, momentum, weight_decay):
    """PyTorch SGD momentum: velocity = mu * velocity + g; param -= lr * velocity."""
    _update(param, grad, velocity, None, None, lr, 1, kind=MOMENTUM, momentum=momentum,
            weight_decay=weight_decay)  # fmt: skip


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """PyTorch Adam, step >= 1 (1 - beta and 1 - beta**step computed in float64)."""
    _update(param, grad, None, m, v, lr, int(step), kind=ADAM, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay)  # fmt: skip
