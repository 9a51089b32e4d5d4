"""Moving float32 vectors and scalars between memory and registers, for Numba kernels.

Loads and stores of the 16-lane vector of :mod:`kernels.numba.simd` (``vload``,
``vstore``), a scalar read without Numba's negative-index wraparound (``at``), cache
prefetches and an atomic add (the compress of a row's non-zero entries is
:mod:`kernels.numba.compress`). Every function is an ``@intrinsic``: usable only inside
``@njit`` code, inlined, cache-safe. They take a flat C-contiguous array and the index of
lane 0; like ``arr[i]`` inside ``@njit`` they do no bounds check, so the callers keep 16
addressable floats from every index (widths are padded to multiples of
:data:`~kernels.numba.simd.LANES`).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels.numba.simd import LANES, f32x16

_VEC = ir.VectorType(ir.FloatType(), LANES)
_I32 = ir.IntType(32)


def _is_flat(arr) -> bool:
    return isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"


def _is_f32_flat(arr) -> bool:
    return _is_flat(arr) and arr.dtype == types.float32


def _lane_pointer(context, builder, arrty, arr, idxty, idx):
    """Pointer to arr[idx] of a flat C-contiguous array (no wraparound, no bounds check)."""
    ary = context.make_array(arrty)(context, builder, arr)
    i = context.cast(builder, idx, idxty, types.intp)
    return builder.gep(ary.data, [i], inbounds=True)


def _cell_pointer(context, builder, xty, x, r, col):
    """Pointer to X[r, col] of a 2-D C-order array (r, col: intp values)."""
    xa = context.make_array(xty)(context, builder, x)
    ncols = builder.extract_value(xa.shape, 1)
    return builder.gep(xa.data, [builder.add(builder.mul(r, ncols), col)], inbounds=True)


@intrinsic
def vload(typingctx, arr, start):
    """``arr[start:start+16]`` as a vector (``arr``: flat float32, C order)."""
    if not (_is_f32_flat(arr) and isinstance(start, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _lane_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.load(builder.bitcast(ptr, _VEC.as_pointer()), align=4)

    return f32x16(arr, start), codegen


@intrinsic
def vstore(typingctx, arr, start, v):
    """``arr[start:start+16] = v``."""
    if not (_is_f32_flat(arr) and isinstance(start, types.Integer) and v == f32x16):
        return None

    def codegen(context, builder, sig, args):
        ptr = _lane_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        builder.store(args[2], builder.bitcast(ptr, _VEC.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.none(arr, start, v), codegen


def _splat(builder, value, vty):
    """A vector of type vty with value in every lane."""
    one = builder.insert_element(ir.Constant(vty, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(_I32, vty.count), None))


@intrinsic
def prefetch(typingctx, X, r, col):
    """Hint the CPU to start loading the cache line of X[r, col] (2-D, C order) for reading."""
    if not (
        isinstance(X, types.Array) and X.ndim == 2 and X.layout == "C"
        and isinstance(r, types.Integer) and isinstance(col, types.Integer)
    ):  # fmt: skip
        return None

    def codegen(context, builder, sig, args):
        r = context.cast(builder, args[1], sig.args[1], types.intp)
        col = context.cast(builder, args[2], sig.args[2], types.intp)
        ptr = _cell_pointer(context, builder, sig.args[0], args[0], r, col)
        i8p = ir.IntType(8).as_pointer()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32]),
            "llvm.prefetch.p0",
        )  # fmt: skip
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(_I32, 0), ir.Constant(_I32, 3),
                          ir.Constant(_I32, 1)])  # fmt: skip
        return context.get_dummy_value()

    return types.none(X, r, col), codegen


@intrinsic
def at(typingctx, arr, i):
    """``arr[i]`` of a flat C-contiguous array, without Numba's negative-index wraparound.

    Numba turns every ``arr[i]`` whose ``i`` may be negative into ``arr[i + len]`` when it
    is: a compare and a conditional move per access, which also hides from LLVM that
    consecutive accesses are consecutive. Here ``i`` must be in ``0 .. len(arr) - 1``.
    """
    if not (_is_flat(arr) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(
            _lane_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        )

    return arr.dtype(arr, i), codegen


@intrinsic
def prefetch_flat(typingctx, arr, i):
    """Hint the CPU to start loading the cache line of arr[i] (1-D, C order) for reading."""
    if not (_is_flat(arr) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _lane_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        i8p = ir.IntType(8).as_pointer()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32]),
            "llvm.prefetch.p0",
        )  # fmt: skip
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(_I32, 0), ir.Constant(_I32, 3),
                          ir.Constant(_I32, 1)])  # fmt: skip
        return context.get_dummy_value()

    return types.none(arr, i), codegen


@intrinsic
def vstore_first(typingctx, arr, start, v, count):
    """``arr[start:start+count] = v[:count]`` (count <= 16; the other lanes of memory are
    neither read nor written: ``llvm.masked.store``, so the row of a (N, m) output that
    ends at the end of the array, or where another thread's rows begin, is written alone)."""
    if not (_is_f32_flat(arr) and isinstance(start, types.Integer) and v == f32x16
            and isinstance(count, types.Integer)):  # fmt: skip
        return None

    def codegen(context, builder, sig, args):
        ptr = _lane_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        vi32 = ir.VectorType(_I32, LANES)
        n = context.cast(builder, args[3], sig.args[3], types.int32)
        mask = builder.icmp_signed("<", ir.Constant(vi32, list(range(LANES))),
                                   _splat(builder, n, vi32))  # fmt: skip
        vptr = builder.bitcast(ptr, _VEC.as_pointer())
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [_VEC, vptr.type, _I32, mask.type]),
            "llvm.masked.store.v16f32.p0",
        )  # fmt: skip
        builder.call(fn, [args[2], vptr, ir.Constant(_I32, 4), mask])
        return context.get_dummy_value()

    return types.none(arr, start, v, count), codegen


@intrinsic
def fetch_add(typingctx, arr, i, v):
    """Atomically ``old = arr[i]; arr[i] += v``; returns old (arr: flat int64, C order).
    How forward's threads take blocks of rows from one counter."""
    if not (_is_flat(arr) and arr.dtype == types.int64 and isinstance(i, types.Integer)
            and isinstance(v, types.Integer)):  # fmt: skip
        return None

    def codegen(context, builder, sig, args):
        ptr = _lane_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        val = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, val, "seq_cst")

    return types.int64(arr, i, v), codegen
