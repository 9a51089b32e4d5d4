"""The numbers compiled code uses for names: one file, so no index needs a comment.

Compiled code gets a network's shape as an int64 table ``geo`` (rows below, one column per
layer), its choices as an int64 vector ``codes`` and the optimizer's constants as a float64
vector ``hyper``. Plain integer constants: Numba folds them, where named tuples of arrays
would add typing work to every first compile for no speed.
"""

from __future__ import annotations

# Activations and outputs (the strings of kernels/layout.py).
ACT_CODES = {"sigmoid": 0, "relu": 1, "tanh": 2, "silu": 3, "identity": 4, "softmax": 5}
SIGMOID, RELU, TANH, SILU, IDENTITY, SOFTMAX = range(6)
# Losses, in the order of kernels.layout.LOSSES.
CROSS_ENTROPY, MSE = range(2)
# Optimizers.
OPT_CODES = {"sgd": 0, "momentum": 1, "adam": 2}
SGD, MOMENTUM, ADAM = range(3)

# Rows of geo: layer widths (L+1 columns), then per layer: the padded width S of its output,
# where its transposed weight wt (fan_in, S) and its bias start in the work vector, where
# its copy w (fan_out, S_in) starts in the weight copies, where its activations start in a
# row of activations, and which kernel runs its dense products (PATH_*).
SIZES, STRIDE, WOFF, BOFF, COFF, AOFF, PATH = range(7)
GEO_ROWS = 7
# Dense products of a layer after the first: our register-blocked 16-lane kernels, or BLAS
# sgemm (SciPy's, through Numba) where the product is large enough for it to win.
PATH_OWN, PATH_BLAS = 0, 1

# Entries of codes.
ACT, OUT_ACT, LOSS, OPT, AROW = range(5)
# Entries of hyper (float64, as the user gave them).
MU, BETA1, BETA2, EPS, WEIGHT_DECAY = range(5)
