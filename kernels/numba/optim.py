"""The optimizer step of the numba backend, on a slice of the work vector."""

from __future__ import annotations

import numpy as np
from numba import njit

f32 = np.float32
ZERO = f32(0.0)


# error_model="numpy": a float division by zero gives inf as in NumPy (the trainer
# watches for divergence) instead of raising, and without that check in the loop
# LLVM vectorises Adam's update: 146 ms -> 12 ms per 1,875 steps of 12,730 parameters.
@njit(cache=True, error_model="numpy")
def update(work, grad, lo, hi, velocity, m, v, optim, lr, step):
    """One optimizer step on work[lo:hi] with grad[lo:hi], which is then zeroed.

    The state says which step: Adam with m and v, momentum with velocity, plain SGD with
    all three None (``optim``: the :class:`~kernels.numba.codes.Optim` constants). Numba
    prunes the branches of arguments that are None before typing, so a run compiles only
    its own optimizer's loop (and SGD's). The arithmetic is float32 except Adam's
    1 - beta and bias corrections 1 - beta**step, computed once per step in float64 from the
    constants as given (as PyTorch does). See :func:`update_rows`.
    """
    # int64, not literals: one compiled update_rows for this and the callers of update_rows
    one, zero = np.int64(1), np.int64(0)
    update_rows(work, grad, lo, one, zero, zero, hi - lo, velocity, m, v, optim, lr, step)


@njit(cache=True, error_model="numpy")
def update_rows(work, grad, lo, rows, stride, q0, q1, velocity, m, v, optim, lr, step):
    """:func:`update` on work[a + q0:a + q1] for a = lo + i * stride, i < rows (lanes q0..q1-1
    of the rows of a matrix), the step's constants computed once: element by element the
    same floats as update() on each piece.

    The loops run over views starting at each piece: an index from 0 is never negative, so
    LLVM drops Numba's negative-index wraparound, which keeps ``range(lo, hi)`` from being
    vectorised (14 ms more per epoch at batch 32 when every parameter is updated).
    """
    wd = f32(optim.weight_decay)
    if m is not None:
        beta1, beta2, eps = f32(optim.beta1), f32(optim.beta2), f32(optim.eps)
        # 1 - beta in float64 first: 1 - float32(0.999) is 1.3e-5 away from 0.001
        rest1, rest2 = f32(1.0 - optim.beta1), f32(1.0 - optim.beta2)
        c1 = f32(1.0 - optim.beta1**step)
        c2 = f32(1.0 - optim.beta2**step)
        for i in range(rows):
            a = lo + i * stride
            w, gr = work[a + q0 : a + q1], grad[a + q0 : a + q1]
            m1, v1 = m[a + q0 : a + q1], v[a + q0 : a + q1]
            for p in range(w.shape[0]):
                g = gr[p] + wd * w[p]
                m1[p] = beta1 * m1[p] + rest1 * g
                v1[p] = beta2 * v1[p] + rest2 * g * g
                w[p] -= lr * (m1[p] / c1) / (np.sqrt(v1[p] / c2) + eps)
                gr[p] = ZERO
    elif velocity is not None:
        mu = f32(optim.momentum)
        for i in range(rows):
            a = lo + i * stride
            w, gr = work[a + q0 : a + q1], grad[a + q0 : a + q1]
            vel = velocity[a + q0 : a + q1]
            for p in range(w.shape[0]):
                g = gr[p] + wd * w[p]
                vel[p] = mu * vel[p] + g
                w[p] -= lr * vel[p]
                gr[p] = ZERO
    else:
        for i in range(rows):
            a = lo + i * stride
            w, gr = work[a + q0 : a + q1], grad[a + q0 : a + q1]
            for p in range(w.shape[0]):
                g = gr[p] + wd * w[p]
                w[p] -= lr * g
                gr[p] = ZERO
