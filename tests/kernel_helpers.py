"""What the kernel tests share: which backends to test, their containers, random problems.

Every kernel test is parametrized over :func:`available_backends`, so a backend gets the
whole suite as soon as its module exists and imports (``numba`` included).
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np

import kernels
from kernels import Net

KERNELS_DIR = Path(kernels.__file__).parent
NUMBA_MODULE = KERNELS_DIR / "numba" / "__init__.py"  # written separately: may not exist yet


def numba_import_error() -> BaseException | None:
    """The exception importing the numba backend raises, or None (also when it is absent)."""
    if not NUMBA_MODULE.exists():
        return None
    try:
        kernels.backend("numba")
    except Exception as exc:  # reported once, by test_numba_backend_imports_when_present
        return exc
    return None


def available_backends() -> list[str]:
    """``python``, ``numpy``, and ``numba`` once kernels/numba/ exists and imports."""
    names = ["python", "numpy"]
    if NUMBA_MODULE.exists() and numba_import_error() is None:
        names.append("numba")
    return names


BACKENDS = available_backends()
FAST_BACKENDS = [name for name in BACKENDS if name != "python"]  # float32 arrays


# ---------------------------------------------------------------------------------------
# Containers: nested lists for python, arrays for the others.
# ---------------------------------------------------------------------------------------


def to_backend(name: str, array: np.ndarray):
    """``array`` as backend ``name``'s container (nested lists for python, a C-contiguous copy)."""
    if name == "python":
        return array.tolist()
    return np.array(array, order="C")


def from_backend(container) -> np.ndarray:
    """A backend container as a float64 array."""
    return np.array(container, dtype=np.float64)


def empty(name: str, shape: tuple[int, ...], dtype=np.float32, fill: float = np.nan):
    """An output buffer of ``shape`` filled with ``fill`` (NaN, so unwritten cells show)."""
    return to_backend(name, np.full(shape, fill, dtype))


# ---------------------------------------------------------------------------------------
# Random problems.
# ---------------------------------------------------------------------------------------


def random_params(net: Net, seed: int, scale: float = 0.5) -> np.ndarray:
    """Normal weights and biases (biases nonzero, unlike init_params), float32 (P,)."""
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal(net.n_params)).astype(np.float32)


def random_data(net: Net, n: int, seed: int, uint8: bool = False):
    """(X, targets) for ``net``: X (n, sizes[0]) float32 or uint8, class ids or float targets."""
    rng = np.random.default_rng(seed)
    if uint8:
        X = rng.integers(0, 256, (n, net.sizes[0]), dtype=np.uint8)
    else:
        X = rng.standard_normal((n, net.sizes[0])).astype(np.float32)
    if net.loss == "cross_entropy":
        targets = rng.integers(0, net.sizes[-1], n).astype(np.int64)
    else:
        targets = rng.uniform(0, 1, (n, net.sizes[-1])).astype(np.float32)
    return X, targets


def lr_schedule(n_batches: int, first: float = 0.05, last: float = 0.2) -> np.ndarray:
    """A learning rate that changes at every batch, float32 (n_batches,)."""
    return np.linspace(first, last, n_batches).astype(np.float32)


@contextlib.contextmanager
def no_warnings():
    """Fail on any warning and on any NumPy overflow, invalid operation or division by zero."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            yield
