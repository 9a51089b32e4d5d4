"""Examples and labels as the kernels read them, checked once where they come in.

:class:`fastmlp.MLP` calls these for ``fit``, ``predict`` and ``evaluate``: anything
wrong (a shape that does not fit, NaN or infinity, labels out of range) is one
``ValueError`` naming it, before any arithmetic.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_inputs(X: Any, width: int, finite: bool = True) -> np.ndarray:
    """Rows of ``width`` features: uint8 stays uint8 (read as x/255), the rest float32.

    Images (N, 28, 28) become rows of 784; one row of ``width`` values becomes (1, width).
    Float inputs are checked for NaN and infinity (uint8 cannot hold them), unless
    ``finite`` is False: the caller checks them then (see :func:`non_finite_row`).
    """
    X = np.asarray(X)
    if X.dtype == np.bool_ or not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"inputs must be numeric, got dtype {X.dtype}")
    if X.ndim == 1 and width == X.shape[0]:
        X = X[None, :]
    if X.ndim < 2:
        raise ValueError(f"inputs must have one row per example, got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("inputs are empty: no examples given")
    X = X.reshape(X.shape[0], -1)  # images (N, 28, 28) become rows of 784
    if X.shape[1] != width:
        raise ValueError(
            f"inputs have {X.shape[1]} features per example but the model's first layer "
            f"takes {width}"
        )
    if X.dtype != np.uint8:
        X = X.astype(np.float32, copy=False)
        if finite:
            _check_finite(X, "inputs")
    return np.ascontiguousarray(X)


def as_targets(y: Any, n_rows: int, n_outputs: int, loss: str) -> np.ndarray:
    """Class ids (int32) for cross-entropy; float32 (N, n_outputs) targets for MSE.

    For MSE, class ids (N,) become one-hot rows, and with one output (N,) values
    become a column.
    """
    y = np.asarray(y)
    if y.ndim == 0 or y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"labels must be an array of numbers, one per example, got {_short(y)}")
    if y.shape[0] != n_rows:
        raise ValueError(f"got {n_rows} inputs but {y.shape[0]} labels")
    if loss == "cross_entropy":
        if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or _all_whole(y)):
            raise ValueError(
                f"labels must be a 1-D array of class ids, got shape {y.shape} {y.dtype}"
            )
        # Range first: a cast would wrap a huge id into range.
        if y.size and (y.min() < 0 or y.max() >= n_outputs):
            raise ValueError(
                f"labels must lie in 0..{n_outputs - 1} for {n_outputs} outputs, "
                f"got {int(y.min())}..{int(y.max())}"
            )
        return y.astype(np.int32)
    if y.ndim == 1 and n_outputs == 1:
        y = y.reshape(-1, 1)
    if y.ndim == 1:  # class ids for an MSE classifier: one-hot targets
        if not _all_whole(y) or y.min() < 0 or y.max() >= n_outputs:
            raise ValueError(f"class ids must lie in 0..{n_outputs - 1}, got {y.min()}..{y.max()}")
        return np.ascontiguousarray(np.eye(n_outputs, dtype=np.float32)[y.astype(np.int64)])
    if y.ndim != 2 or y.shape[1] != n_outputs:
        raise ValueError(f"targets must have shape (N, {n_outputs}), got {y.shape}")
    targets = np.ascontiguousarray(y, dtype=np.float32)
    _check_finite(targets, "targets")
    return targets


def _check_finite(rows: np.ndarray, what: str = "inputs") -> None:
    """Refuse NaN or infinity, naming the first bad row: training on it only "diverges"."""
    # min and max propagate NaN and show an infinity: two passes, no temporary array.
    if rows.size == 0 or (np.isfinite(rows.min()) and np.isfinite(rows.max())):
        return
    bad = int(np.flatnonzero(~np.isfinite(rows.reshape(len(rows), -1)).all(axis=1))[0])
    non_finite_row(rows, bad, what)


def non_finite_row(rows: np.ndarray, bad: int, what: str = "inputs") -> None:
    """Raise the error for row ``bad`` of ``rows`` holding NaN or infinity (-1: none)."""
    if bad >= 0:
        raise ValueError(f"{what} row {bad} holds NaN or infinity: {_short(rows[bad])}")


def _short(value: Any) -> str:
    text = np.array2string(np.asarray(value), threshold=8, edgeitems=3)
    return " ".join(text.split())


def _all_whole(y: np.ndarray) -> bool:
    return bool(np.issubdtype(y.dtype, np.number) and np.all(np.mod(y, 1) == 0))
