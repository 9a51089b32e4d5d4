"""fastmlp: train small multilayer perceptrons on MNIST, fast, on a CPU.

>>> import fastmlp
>>> train_x, train_y, test_x, test_y = fastmlp.load_mnist()
>>> model = fastmlp.MLP([784, 16, 16, 10])
>>> history = model.fit(train_x, train_y, epochs=10, batch_size=32, lr=0.1)
>>> model.evaluate(test_x, test_y)["accuracy"]

Names are imported on first use, so ``import fastmlp`` stays quick and the command
line does not pay for Numba before it needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "IDXError": "fastmlp.idx",
    "read_idx": "fastmlp.idx",
    "write_idx": "fastmlp.idx",
    "load_mnist": "fastmlp.data",
    "download_mnist": "fastmlp.download",
    "find_data_dir": "fastmlp.data",
    "MLP": "fastmlp.model",
    "History": "fastmlp.training",
    "EarlyStopping": "fastmlp.training",
    "ModelFileError": "fastmlp.modelfile",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
