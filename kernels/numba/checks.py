"""Checks of the numba backend's arguments, one clear error line each: compiled code would
read or write outside an array where NumPy raises, so indices and shapes are checked here.
"""

from __future__ import annotations

import numpy as np


def check_params(params, net):
    """params: a C-contiguous float32 vector of the network's n_params."""
    if not isinstance(params, np.ndarray) or params.dtype != np.float32:
        raise TypeError("params must be a float32 numpy array")
    if params.shape != (net.n_params,) or not params.flags.c_contiguous:
        raise ValueError(f"params must be C-contiguous of shape ({net.n_params},)")


def check_dense(X):
    """X: a C-contiguous 2-D uint8 or float32 array (returned as is)."""
    if not isinstance(X, np.ndarray) or X.dtype not in (np.uint8, np.float32):
        raise TypeError("X must be a uint8 or float32 numpy array")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if not X.flags.c_contiguous:
        raise ValueError("X must be C-contiguous")
    return X


def loss_targets(targets, net, n_rows):
    """(labels int64, None) for cross-entropy, (None, target float32 (N, C)) for MSE: the
    compiled loops then compile only the loss they are given (see heads.loss_head)."""
    n_classes = net.sizes[-1]
    targets = np.asarray(targets)
    if len(targets) != n_rows:
        raise ValueError(f"targets has {len(targets)} rows, X has {n_rows}")
    if net.loss == "cross_entropy":
        if targets.ndim != 1 or targets.dtype.kind not in "iu":
            raise TypeError("cross_entropy targets must be integer class ids of shape (N,)")
        if n_rows and (targets.min() < 0 or targets.max() >= n_classes):
            raise ValueError(f"class ids must be in [0, {n_classes})")
        return np.ascontiguousarray(targets, np.int64), None
    if targets.shape != (n_rows, n_classes):
        raise ValueError(f"mse targets must have shape (N, {n_classes})")
    return None, np.ascontiguousarray(targets, np.float32)


def check_sample_weight(sample_weight, n_rows):
    """None, or the weights as a C-contiguous float32 vector of one finite weight >= 0 a row."""
    if sample_weight is None:
        return None
    if not isinstance(sample_weight, np.ndarray) or sample_weight.dtype != np.float32:
        raise TypeError("sample_weight must be None or a float32 numpy array")
    if sample_weight.shape != (n_rows,):
        raise ValueError(f"sample_weight must have shape ({n_rows},), one weight per row of X, "
                         f"got {sample_weight.shape}")  # fmt: skip
    if not np.all(np.isfinite(sample_weight)) or (n_rows and sample_weight.min() < 0):
        raise ValueError("sample_weight must be finite and >= 0")
    return np.ascontiguousarray(sample_weight)


def batch_totals(sample_weight, order, batch_size):
    """Each batch's total weight (float32, summed in row order)."""
    return np.add.reduceat(sample_weight[order], np.arange(0, len(order), batch_size)).astype(
        np.float32
    )
