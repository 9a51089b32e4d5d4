"""BLAS sgemm on flat float32 buffers with offsets and leading dimensions, from @njit code.

Numba's own ``np.dot`` calls SciPy's BLAS through the C helper ``numba_xxgemm`` (loaded by
symbol name, so the compiled code is cache-safe), but only on whole contiguous 2-D arrays.
The work layout keeps a layer's activations as a column block of a row-major buffer (row
stride ``arow``), so :func:`sgemm` calls the same helper with explicit offsets and leading
dimensions instead: no copies, no allocation. The helper needs SciPy at run time
(:data:`HAVE_BLAS`); without it the backend never picks the BLAS path.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels.numba.memory import vload, vstore
from kernels.numba.simd import LANES

HAVE_BLAS = importlib.util.find_spec("scipy") is not None

_I8 = ir.IntType(8)
_I8P = _I8.as_pointer()
_F32 = ir.FloatType()


def _flat_f32(arr) -> bool:
    return (
        isinstance(arr, types.Array) and arr.dtype == types.float32 and arr.ndim == 1
        and arr.layout == "C"
    )  # fmt: skip


@intrinsic
def sgemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, a0, lda, b, b0, ldb, beta, c, c0, ldc):
    """Column-major ``C = alpha op(A) op(B) + beta C`` (BLAS sgemm), C (m, n), op(A) (m, k).

    A, B, C are flat float32 arrays whose matrices start at a0, b0, c0; trans_a/trans_b are
    True for a transposed operand. Row-major callers swap the operands (C^T = B^T A^T).
    """
    ints = (m, n, k, a0, lda, b0, ldb, c0, ldc)
    if not (
        all(isinstance(t, types.Integer) for t in ints)
        and all(isinstance(t, types.Boolean) for t in (trans_a, trans_b))
        and all(_flat_f32(t) for t in (a, b, c))
        and alpha == types.float32 and beta == types.float32
    ):  # fmt: skip
        return None

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(ir.IntType(32), [_I8, _I8, _I8, intp, intp, intp, _I8P, _I8P,
                                                intp, _I8P, intp, _I8P, _I8P, intp])  # fmt: skip
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")

        def cast(i):
            return context.cast(builder, args[i], sig.args[i], types.intp)

        def trans(i):
            return builder.select(args[i], ir.Constant(_I8, ord("t")), ir.Constant(_I8, ord("n")))

        def pointer(arr_i, off_i):
            ary = context.make_array(sig.args[arr_i])(context, builder, args[arr_i])
            return builder.bitcast(builder.gep(ary.data, [cast(off_i)], inbounds=True), _I8P)

        def slot(i):
            ptr = cgutils.alloca_once(builder, _F32)
            builder.store(args[i], ptr)
            return builder.bitcast(ptr, _I8P)

        builder.call(fn, [ir.Constant(_I8, ord("s")), trans(0), trans(1), cast(2), cast(3),
                          cast(4), slot(5), pointer(6, 7), cast(8), pointer(9, 10), cast(11),
                          slot(12), pointer(13, 14), cast(15)])  # fmt: skip
        return context.get_dummy_value()

    return types.none(trans_a, trans_b, m, n, k, alpha, a, a0, lda, b, b0, ldb, beta, c, c0,
                      ldc), codegen  # fmt: skip


@njit(cache=True, inline="always")
def bias_sgemm(out, o0, arow, n, inp, i0, n_in, wt, w0, ldw, bias, b0, width):
    """out[b, :width] = bias[b0:b0+width] + inp[b, :n_in] wt for n rows (row b of out at
    o0 + b * arow, of inp at i0 + b * arow; wt's rows ldw apart from w0; width a multiple
    of 16): the bias, then one sgemm (row-major out = inp wt is column-major out^T =
    wt^T inp^T). A BLAS layer's forward, or a slice of its lanes."""
    for b in range(n):
        for q in range(0, width, LANES):
            vstore(out, b * arow + o0 + q, vload(bias, b0 + q))
    sgemm(False, False, width, n, n_in, np.float32(1.0), wt, w0, ldw, inp, i0, arow,
          np.float32(1.0), out, o0, arow)  # fmt: skip
