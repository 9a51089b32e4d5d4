"""Training on distorted images, a chunk at a time: the trainer's side of ``fit(augment=...)``.

The trainer hands each chunk of an epoch's rows to a :class:`Distorter`, which writes
distorted copies of just those images into one reused uint8 buffer (the kernels in
:mod:`kernels.augment_numba`, or the NumPy reference for the NumPy backends); the chunk
is then trained on that buffer in order. No augmented copy of the data set is stored.
Every image's distortion depends only on the model seed, the epoch and its row.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from kernels import augment_reference


class Distorter:
    """Distorts a chunk's images into one reused uint8 buffer (no augmented data set)."""

    def __init__(
        self,
        inputs: np.ndarray,
        kind: str,
        batch_size: int,
        backend: str,
        chunks_per_epoch: int = 20,
    ) -> None:
        n_features = inputs.shape[1] if inputs.ndim == 2 else 0
        side = math.isqrt(n_features)
        if inputs.dtype != np.uint8 or side * side != n_features or side < 2:
            raise ValueError(
                f"augment {kind!r} distorts square uint8 images; got "
                f"{inputs.dtype} rows of {n_features} features"
            )
        if backend == "numba":
            from kernels import augment_numba  # compiled on first use only

            scratch = augment_numba.scratch_for(side)
            self.kernel = partial(augment_numba.augment_rows, scratch=scratch)
        else:  # the NumPy backends distort with the plain reference the kernel is tested on
            self.kernel = augment_reference.augment_rows
        self.inputs, self.side = inputs, side
        self.kind = augment_reference.kind_code(kind)
        self.params = augment_reference.augment_params(kind)
        chunk = math.ceil(math.ceil(len(inputs) / batch_size) / chunks_per_epoch)
        self.buffer = np.empty((chunk * batch_size, n_features), np.uint8)

    def __call__(self, rows: np.ndarray, seed: int, epoch: int) -> np.ndarray:
        if len(rows) > len(self.buffer):  # the warm-up's batch can outgrow a tiny chunk
            self.buffer = np.empty((len(rows), self.buffer.shape[1]), np.uint8)
        out = self.buffer[: len(rows)]
        self.kernel(out, self.inputs, rows, self.side, self.kind, self.params, seed, epoch)
        return out
