"""The numba backend: ``@njit(cache=True)`` float32 kernels, a chunk of an epoch per call.

One folder, one implementation (``kernels.backend("numba")`` is this package):

``simd``     the 16-lane float32 vector ``f32x16`` and its arithmetic (nothing ML-specific)
``memory``   vector and scalar loads, stores, prefetches, the non-zero compress (ditto)
``blas``     BLAS sgemm on flat buffers with offsets, from compiled code (SciPy's BLAS)
``codes``    choice codes, and the records and named tuples compiled code is handed
``work``     the padded work layout of the parameters; inputs as compressed sparse rows
``net``      the dense layer kernels, batch at a time, on the work layout
``heads``    activations, softmax, losses
``passes``   one block of rows forward, through the loss and backward (inlined glue)
``optim``    the optimizer step
``train``    the training loops: every batch of a train_steps call in one compiled call
``split``    networks with BLAS layers on 2 threads: two passes a batch, a thread each
``barrier``  threads meeting inside compiled code (the split's two passes)
``split_lanes`` networks with BLAS layers on more threads: every layer split by lanes
``plan``     which loop a train_steps call runs, on how many threads
``infer``    outputs for many rows (forward): blocks of rows taken by threads
``tiles``    inference's first layer by tiles of columns, and its sparse ReLU layers
``evaluate`` the loss and gradient over all rows
``checks``   the network functions' argument checks, one error line each
``inputs``   input rows as compressed sparse rows (SparseInputs), forward's thread pool
``network``  the network functions of INTERFACE.md section 2 (geometry, threads)
``layers``   the layer functions of INTERFACE.md section 1: the ``net`` kernels on one layer
"""

# First: Numba's cache folder is keyed by the kernels' sources before any kernel is defined.
import kernels.numba_cache  # noqa: F401, I001
from kernels.numba.layers import (
    activation_backward,
    activation_forward,
    adam_update,
    cross_entropy_forward,
    dense_backward,
    dense_forward,
    momentum_update,
    mse_backward,
    mse_forward,
    sgd_update,
    softmax_cross_entropy_backward,
    softmax_forward,
)
from kernels.numba.network import (
    SparseInputs,
    forward,
    forward_checked,
    init_params,
    loss_and_grads,
    prepare_inputs,
    train_steps,
)

__all__ = [
    "SparseInputs",
    "activation_backward",
    "activation_forward",
    "adam_update",
    "cross_entropy_forward",
    "dense_backward",
    "dense_forward",
    "forward",
    "forward_checked",
    "init_params",
    "loss_and_grads",
    "momentum_update",
    "mse_backward",
    "mse_forward",
    "prepare_inputs",
    "sgd_update",
    "softmax_cross_entropy_backward",
    "softmax_forward",
    "train_steps",
]
