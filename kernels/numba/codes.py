"""The names compiled code uses: choice codes, and the named structures it is handed.

Compiled code reads a network's geometry, choices and constants by name:

``LAYER``    the dtype of ``layers``, a NumPy structured array of one record per layer
             (``layers[k].stride``): widths, padded stride and where its pieces live in
             the work layout (see :mod:`kernels.numba.net`)
``Network``  the activation, output and loss codes and the row width of activations
``Optim``    the optimizer code and its constants (float64, as the user gave them)

and the arrays that always travel together as named tuples (:class:`Inputs`,
:class:`Targets`, :class:`OptState`). Numba types a named tuple like a tuple (by value, as
fast as separate arguments); a one-element NumPy record would do for ``Network`` too,
but Numba 0.68 cannot pass a record scalar into a ``prange`` body. Measured, not guessed:
replacing the int64 tables ``geo``/``codes`` and the float64 ``hyper`` by these left the
cold first compile of ``train_mnist.py --epochs 1`` where it was (9.0-10.0 s of CPU
against 9.2-9.9 s, interleaved on a busy 2-core machine), the results bit for bit equal.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Activations and outputs (the strings of kernels/layout.py).
ACT_CODES = {"sigmoid": 0, "relu": 1, "tanh": 2, "silu": 3, "identity": 4, "softmax": 5}
SIGMOID, RELU, TANH, SILU, IDENTITY, SOFTMAX = range(6)
# Losses, in the order of kernels.layout.LOSSES.
CROSS_ENTROPY, MSE = range(2)
# Optimizers.
OPT_CODES = {"sgd": 0, "momentum": 1, "adam": 2}
SGD, MOMENTUM, ADAM = range(3)
# Dense products of a layer after the first: our register-blocked 16-lane kernels, or BLAS
# sgemm (SciPy's, through Numba) where the product is large enough for it to win.
PATH_OWN, PATH_BLAS = 0, 1

_I8 = np.int64
# A layer: fan_in, fan_out, the padded width S of its output (a multiple of 16), where its
# transposed weight wt (fan_in, S) and its bias start in the work vector, where its copy
# w (fan_out, S_in) starts in the weight copies, where its activations start in a row of
# activations, and which kernel runs its dense products (PATH_*).
LAYER = np.dtype([("n_in", _I8), ("n_out", _I8), ("stride", _I8), ("woff", _I8), ("boff", _I8),
                  ("coff", _I8), ("aoff", _I8), ("path", _I8)], align=True)  # fmt: skip


class Network(NamedTuple):
    """The network's choices: hidden and output activation codes, the loss code, and the
    floats of one row of activations (every layer's S lanes side by side)."""

    act: int
    out_act: int
    loss: int
    arow: int


class Optim(NamedTuple):
    """The optimizer's code (SGD, MOMENTUM, ADAM) and constants, float64 as given."""

    kind: int
    momentum: float = 0.0
    beta1: float = 0.0
    beta2: float = 0.0
    eps: float = 0.0
    weight_decay: float = 0.0


class Inputs(NamedTuple):
    """The first layer's input as compressed sparse rows: batch position p is CSR row
    ``rowmap[p]``, whose entries are ``cols/vals[starts[r]:starts[r + 1]]``."""

    cols: np.ndarray  # uint16 or uint32 column numbers
    vals: np.ndarray  # float32 values
    starts: np.ndarray  # int64, rows + 1
    rowmap: np.ndarray  # int64, batch position -> CSR row


class Targets(NamedTuple):
    """What the loss compares with, for the rows in ``order`` (batch position p is row
    ``order[p]`` of the data): class ids for cross-entropy, target rows for MSE, the other
    one None (so only the loss in use is compiled); the rows' sample weights or None."""

    labels: np.ndarray | None  # int64 (N,)
    target: np.ndarray | None  # float32 (N, C)
    weight: np.ndarray | None  # float32 (N,): each row's weight in its batch's loss, or None
    order: np.ndarray  # int64, batch position -> row


class OptState(NamedTuple):
    """The optimizer's state in the work layout; None where the optimizer has none (so only
    the step in use is compiled)."""

    velocity: np.ndarray | None  # momentum
    m: np.ndarray | None  # Adam's first moment
    v: np.ndarray | None  # Adam's second moment
