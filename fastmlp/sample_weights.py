"""Per-row weights of the training loss: checked once where the user gives them.

A weight ``w_i >= 0`` per row makes each batch's loss ``sum w_i l_i / sum w_i`` and its
gradient the same weighted mean (scikit-learn's MLP semantics; kernels/INTERFACE.md).
:func:`as_sample_weight` checks what the user passed to :meth:`fastmlp.MLP.fit`;
:func:`require_sample_weight` refuses a backend whose ``train_steps`` has no
``sample_weight`` keyword (read from its signature once, not by trying a call).
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["as_sample_weight", "require_sample_weight", "takes_sample_weight"]

_TAKES: dict[str, bool] = {}  # backend module name -> its train_steps has sample_weight


def as_sample_weight(value: Any, n_rows: int, name: str = "sample_weight") -> np.ndarray:
    """``value`` as float32 (n_rows,): finite, >= 0 and not all zero.

    Raises
    ------
    ValueError
        One line naming what is wrong (and the first row where it is).
    """
    if isinstance(value, str | bytes | dict):
        raise ValueError(f"{name} must be an array of numbers, got {type(value).__name__}")
    try:
        weights = np.asarray(value)
        if weights.dtype.kind not in "biuf":
            raise TypeError
        weights = weights.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be an array of numbers, got {type(value).__name__}"
        ) from None
    if weights.shape != (n_rows,):
        raise ValueError(
            f"{name} must have shape ({n_rows},), one weight per row of X, got {weights.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(weights))
    if bad.size:
        raise ValueError(f"{name} must be finite, got {weights[bad[0]]} at row {bad[0]}")
    bad = np.flatnonzero(weights < 0)
    if bad.size:
        raise ValueError(f"{name} must be >= 0, got {weights[bad[0]]} at row {bad[0]}")
    with np.errstate(over="ignore"):  # reported below, naming the row
        single = weights.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(single))
    if bad.size:
        raise ValueError(
            f"{name} {weights[bad[0]]:g} at row {bad[0]} does not fit in float32 (the kernels' "
            "type): scale the weights down"
        )
    if not single.any():
        raise ValueError(f"{name} is zero everywhere: nothing to train on")
    return single


def takes_sample_weight(backend: ModuleType) -> bool:
    """Whether this kernels backend's ``train_steps`` accepts ``sample_weight``."""
    known = _TAKES.get(backend.__name__)
    if known is None:
        parameters = inspect.signature(backend.train_steps).parameters
        known = _TAKES[backend.__name__] = "sample_weight" in parameters
    return known


def require_sample_weight(backend: ModuleType, name: str) -> None:
    """Raise a one-line ValueError where backend ``name`` cannot train with weights."""
    if not takes_sample_weight(backend):
        raise ValueError(
            f"the {name} backend cannot train with sample_weight yet (its train_steps has no "
            "sample_weight); use backend='numpy' or 'python', or train without weights"
        )
