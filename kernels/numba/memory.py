"""Moving float32 vectors and scalars between memory and registers, for Numba kernels.

Loads and stores of the 16-lane vector of :mod:`kernels.numba.simd` (``vload``,
``vstore``), a scalar read without Numba's negative-index wraparound (``at``), cache
prefetches, and the branch-free compress of a row's non-zero entries. Every function is an
``@intrinsic``: usable only inside ``@njit`` code, inlined, cache-safe. They take a flat
C-contiguous array and the index of lane 0; like ``arr[i]`` inside ``@njit`` they do no
bounds check, so the callers keep 16 addressable floats from every index (widths are
padded to multiples of :data:`~kernels.numba.simd.LANES`).
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
def compress_nonzero(typingctx, idx, val, k, X, r, start, step, scale):
    """Append the non-zero entries of X[r, start:start+16] to idx[k:], val[k:]; return new k.

    idx gets their column numbers times ``step`` (uint32, or uint16 where they fit: where
    the weight row of the column starts), val their values times ``scale`` (float32);
    X is uint8 or float32, 2-D, C order. Sixteen lanes are always written, so idx and
    val need 16 entries of room past the last one kept. Branch-free: one compare, two
    ``llvm.experimental.vector.compress`` (vpcompressd on AVX-512), two stores, a popcount.
    """
    if not (
        isinstance(idx, types.Array) and idx.dtype in (types.uint16, types.uint32)
        and idx.ndim == 1
        and _is_f32_flat(val)
        and isinstance(X, types.Array) and X.ndim == 2 and X.layout == "C"
        and X.dtype in (types.uint8, types.float32)
        and all(isinstance(t, types.Integer) for t in (k, r, start, step))
        and scale == types.float32
    ):  # fmt: skip
        return None
    is_bytes = X.dtype == types.uint8

    def codegen(context, builder, sig, args):
        idx_t, val_t, k_t, x_t, r_t, start_t, step_t, _ = sig.args
        a_idx, a_val, a_k, a_x, a_r, a_start, a_step, a_scale = args
        intp = context.get_value_type(types.intp)
        k = context.cast(builder, a_k, k_t, types.intp)
        r = context.cast(builder, a_r, r_t, types.intp)
        start = context.cast(builder, a_start, start_t, types.intp)
        elem = ir.IntType(8) if is_bytes else ir.FloatType()
        src = _cell_pointer(context, builder, x_t, a_x, r, start)
        xv = builder.load(builder.bitcast(src, ir.VectorType(elem, LANES).as_pointer()), align=1)
        if is_bytes:
            mask = builder.icmp_unsigned("!=", xv, ir.Constant(xv.type, None))
            vals = builder.uitofp(xv, _VEC)
        else:
            mask = builder.fcmp_unordered("!=", xv, ir.Constant(_VEC, None))
            vals = xv
        vals = builder.fmul(vals, _splat(builder, a_scale, _VEC))
        vi32 = ir.VectorType(_I32, LANES)
        ids = builder.add(
            _splat(builder, builder.trunc(start, _I32), vi32),
            ir.Constant(vi32, list(range(LANES))),
        )
        step = context.cast(builder, a_step, step_t, types.int32)
        ids = builder.mul(ids, _splat(builder, step, vi32))
        # The values are compressed as their 32-bit patterns: on a CPU without AVX-512
        # LLVM expands the compress itself, and its expansion of a float compress aborts the
        # process (an assertion in SelectionDAG, llvmlite 0.50); AVX-512's vpcompressd and
        # vcompressps cost the same.
        fci = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vi32, [vi32, mask.type, vi32]),
            "llvm.experimental.vector.compress.v16i32",
        )  # fmt: skip
        cv = builder.bitcast(builder.call(fci, [builder.bitcast(vals, vi32), mask,
                                                ir.Constant(vi32, None)]), _VEC)  # fmt: skip
        ci = builder.call(fci, [ids, mask, ir.Constant(vi32, None)])
        ia = context.make_array(idx_t)(context, builder, a_idx)
        va = context.make_array(val_t)(context, builder, a_val)
        if idx_t.dtype == types.uint16:
            vi16 = ir.VectorType(ir.IntType(16), LANES)
            builder.store(builder.trunc(ci, vi16), builder.bitcast(
                builder.gep(ia.data, [k], inbounds=True), vi16.as_pointer()), align=2)  # fmt: skip
        else:
            builder.store(ci, builder.bitcast(builder.gep(ia.data, [k], inbounds=True),
                                              vi32.as_pointer()), align=4)  # fmt: skip
        builder.store(cv, builder.bitcast(builder.gep(va.data, [k], inbounds=True),
                                          _VEC.as_pointer()), align=4)  # fmt: skip
        i16 = ir.IntType(LANES)
        pop = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i16, [i16]), "llvm.ctpop.i16"
        )
        count = builder.call(pop, [builder.bitcast(mask, i16)])
        return context.cast(builder, builder.add(k, builder.zext(count, intp)), types.intp,
                            sig.return_type)  # fmt: skip

    return k(idx, val, k, X, r, start, step, scale), codegen


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


@intrinsic
def compress_bytes64(typingctx, idx, val, k, X, r, start, scale):
    """compress_nonzero of 64 uint8 columns at once: X[r, start:start+64]'s non-zero bytes
    (values times ``scale`` into val, float32; column numbers into idx, uint16) appended
    from k; returns the new k. One 64-byte compare and one byte compress (vpcompressb), the
    column numbers by two 32-lane word compresses; 64 entries of room past the last one
    kept. Half the work a row of MNIST costs 16 columns at a time."""
    if not (
        isinstance(idx, types.Array) and idx.dtype == types.uint16 and idx.ndim == 1
        and _is_f32_flat(val)
        and isinstance(X, types.Array) and X.ndim == 2 and X.layout == "C"
        and X.dtype == types.uint8
        and all(isinstance(t, types.Integer) for t in (k, r, start))
        and scale == types.float32
    ):  # fmt: skip
        return None

    def codegen(context, builder, sig, args):
        idx_t, val_t, k_t, x_t, r_t, start_t, _ = sig.args
        a_idx, a_val, a_k, a_x, a_r, a_start, a_scale = args
        intp = context.get_value_type(types.intp)
        k = context.cast(builder, a_k, k_t, types.intp)
        r = context.cast(builder, a_r, r_t, types.intp)
        start = context.cast(builder, a_start, start_t, types.intp)
        i8, i16, i1 = ir.IntType(8), ir.IntType(16), ir.IntType(1)
        v64 = ir.VectorType(i8, 64)
        src = _cell_pointer(context, builder, x_t, a_x, r, start)
        xv = builder.load(builder.bitcast(src, v64.as_pointer()), align=1)
        mask = builder.icmp_unsigned("!=", xv, ir.Constant(v64, None))
        fb = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(v64, [v64, mask.type, v64]),
            "llvm.experimental.vector.compress.v64i8",
        )  # fmt: skip
        cb = builder.call(fb, [xv, mask, ir.Constant(v64, None)])
        v32w = ir.VectorType(i16, 32)
        m32 = ir.VectorType(i1, 32)
        fw = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(v32w, [v32w, m32, v32w]),
            "llvm.experimental.vector.compress.v32i16",
        )  # fmt: skip
        base = _splat(builder, builder.trunc(start, i16), v32w)
        ia = context.make_array(idx_t)(context, builder, a_idx)
        va = context.make_array(val_t)(context, builder, a_val)
        at = k
        for half in range(2):
            mh = builder.shuffle_vector(mask, mask, ir.Constant(ir.VectorType(_I32, 32),
                                        list(range(32 * half, 32 * half + 32))))  # fmt: skip
            ids = builder.add(base, ir.Constant(v32w, list(range(32 * half, 32 * half + 32))))
            cw = builder.call(fw, [ids, mh, ir.Constant(v32w, None)])
            builder.store(cw, builder.bitcast(builder.gep(ia.data, [at], inbounds=True),
                                              v32w.as_pointer()), align=2)  # fmt: skip
            if half == 0:
                i32 = ir.IntType(32)
                pop32 = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(i32, [i32]), "llvm.ctpop.i32"
                )
                n0 = builder.call(pop32, [builder.bitcast(mh, i32)])
                at = builder.add(k, builder.zext(n0, intp))
        sc = _splat(builder, a_scale, _VEC)
        for quarter in range(4):
            q = builder.shuffle_vector(cb, cb, ir.Constant(ir.VectorType(_I32, LANES),
                                       list(range(16 * quarter, 16 * quarter + 16))))  # fmt: skip
            f = builder.fmul(builder.uitofp(q, _VEC), sc)
            dst = builder.gep(va.data, [builder.add(k, ir.Constant(intp, 16 * quarter))],
                              inbounds=True)  # fmt: skip
            builder.store(f, builder.bitcast(dst, _VEC.as_pointer()), align=4)
        i64 = ir.IntType(64)
        pop64 = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i64, [i64]), "llvm.ctpop.i64"
        )
        count = builder.call(pop64, [builder.bitcast(mask, i64)])
        return context.cast(builder, builder.add(k, builder.zext(count, intp) if count.type != intp
                                                  else count), types.intp, sig.return_type)  # fmt: skip

    return k(idx, val, k, X, r, start, scale), codegen
