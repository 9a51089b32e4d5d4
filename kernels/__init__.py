"""The arithmetic of a multilayer perceptron, written three times behind one interface.

>>> import kernels
>>> kernels.BACKENDS
('python', 'numpy', 'numba')
>>> nb = kernels.backend("numba")

Each backend is a module with the same function names:

``python``  pure Python on lists of floats: the version to read while learning.
``numpy``   vectorised NumPy: the honest reference the fast one must beat.
``numba``   ``@njit`` float32 kernels, cached, a whole chunk of an epoch per call.

Two levels, both in every backend:

1. Layer kernels (llm.c style: outputs first, write into buffers they are given,
   never allocate). Containers are the backend's own: nested lists for
   ``python``, float32 ndarrays for ``numpy``/``numba``.
2. Network functions, called by ``fastmlp.MLP``. They take NumPy arrays whatever the
   backend, a flat float32 parameter vector laid out by :mod:`kernels.layout`, and a
   :class:`kernels.layout.Net` describing the architecture.

See ``kernels/INTERFACE.md`` for every signature.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from kernels.layout import (
    ACTIVATIONS,
    INITS,
    LOSSES,
    OPTIMIZERS,
    OUTPUTS,
    Net,
    Optimizer,
    optimizer_state,
    param_layout,
)

BACKENDS: tuple[str, ...] = ("python", "numpy", "numba")
_MODULES = {
    "python": "kernels.pure_python",
    "numpy": "kernels.numpy_backend",
    "numba": "kernels.numba",
}

__all__ = [
    "ACTIVATIONS",
    "BACKENDS",
    "INITS",
    "LOSSES",
    "OPTIMIZERS",
    "OUTPUTS",
    "Net",
    "Optimizer",
    "backend",
    "optimizer_state",
    "param_layout",
]


def backend(name: str) -> ModuleType:
    """Return the backend module called ``name`` (one of :data:`BACKENDS`).

    Raises
    ------
    ValueError
        If ``name`` is not a known backend.
    """
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(_MODULES[name])
