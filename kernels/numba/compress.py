"""The branch-free compress of a row's non-zero entries, for Numba kernels: column numbers
and values of the non-zero cells of 16 (or 64) columns appended to two flat arrays.

How the 16 lanes are packed depends on the CPU the code is compiled for (Numba's target:
``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES``, else this host):

* AVX-512: ``llvm.experimental.vector.compress``, one ``vpcompressd`` per vector (and
  ``vpcompressb`` for 64 bytes at once where the CPU has AVX512-VBMI2);
* AVX2 without AVX-512: LLVM expands that compress into a store and a branch per lane, ~6
  cycles an entry: gathering the 10,000 MNIST test images took 17.6 ms on one AMD EPYC
  (Zen 3) core, the whole of a 784-16-16-10 pass, which NumPy's sgemm does in ~9 ms. Here
  each half of 8 lanes is moved into place by one ``vpermd``, its lane order looked up
  from the half's 8-bit mask in a table of 256 x 8 bytes;
* any other CPU: LLVM's expansion.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic

from kernels.numba.memory import _cell_pointer, _is_f32_flat, _splat
from kernels.numba.simd import LANES


def _target_features() -> set[str]:
    """The CPU features Numba compiles for (as numba.core.codegen chooses them)."""
    spec = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return {f[1:] for f in spec.split(",") if f.startswith("+")}


_FEATURES = _target_features()
COMPRESS = "avx512" if "avx512f" in _FEATURES else "avx2" if "avx2" in _FEATURES else "llvm"
BYTE_COMPRESS = "avx512vbmi2" in _FEATURES  # compress_bytes64 only there: vpcompressb
# Whether kernels may keep 8 vectors of 16 lanes and their operands in registers: 32 of
# 512 bits with AVX-512; AVX2 has 16 of 256 bits, which hold 8 such vectors and no more.
PAIRS = "avx512f" in _FEATURES

_VEC = ir.VectorType(ir.FloatType(), LANES)
_I8, _I16, _I32, _I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_V8 = ir.VectorType(_I32, 8)
# Row m: the lanes of an 8-lane half whose bits are set in m, in order, then zeros.
_ORDER = [[j for j in range(8) if m >> j & 1] for m in range(256)]
_TABLE = ir.Constant(ir.ArrayType(_I8, 256 * 8),
                     [v for row in _ORDER for v in row + [0] * (8 - len(row))])  # fmt: skip


def _popcount(builder, bits):
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(bits.type, [bits.type]), f"llvm.ctpop.i{bits.type.width}"
    )
    return builder.call(fn, [bits])


def _append(builder, k, mask, ids, vals, store_ids, store_vals, first=None, step=None):
    """Store the lanes of ids and vals (<16 x i32>) where mask (<16 x i1>) is set at k, k+1,
    ... (store_ids(at, vector), store_vals(at, vector): whole vectors, 16 entries of room
    past the last one kept); return k plus their count (intp). ids is (first + lane) *
    step: the AVX2 path computes the kept ones from the lane order instead of moving them."""
    if COMPRESS != "avx2":
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ids.type, [ids.type, mask.type, ids.type]),
            "llvm.experimental.vector.compress.v16i32",
        )  # fmt: skip
        store_ids(k, builder.call(fn, [ids, mask, ir.Constant(ids.type, None)]))
        store_vals(k, builder.call(fn, [vals, mask, ir.Constant(vals.type, None)]))
        count = _popcount(builder, builder.bitcast(mask, _I16))
        return builder.add(k, builder.zext(count, k.type))
    module = builder.module
    table = module.globals.get("fastmlp_compress_order")
    if table is None:
        table = cgutils.global_constant(module, "fastmlp_compress_order", _TABLE)
    permd = cgutils.get_or_insert_function(module, ir.FunctionType(_V8, [_V8, _V8]),
                                           "llvm.x86.avx2.permd")  # fmt: skip
    bits = builder.zext(builder.bitcast(mask, _I16), _I32)
    end = builder.add(k, builder.zext(_popcount(builder, bits), k.type))
    with builder.if_then(builder.icmp_unsigned("!=", bits, ir.Constant(_I32, 0))):
        for half in range(2):
            m = builder.and_(builder.lshr(bits, ir.Constant(_I32, 8 * half)),
                             ir.Constant(_I32, 255))  # fmt: skip
            row = builder.gep(table, [ir.Constant(_I32, 0), builder.mul(m, ir.Constant(_I32, 8))],
                              inbounds=True)  # fmt: skip
            order = builder.zext(builder.load(builder.bitcast(row, ir.VectorType(_I8, 8)
                                                              .as_pointer()), align=1), _V8)  # fmt: skip
            lanes = ir.Constant(_V8, list(range(8 * half, 8 * half + 8)))
            kept = builder.add(order, builder.add(_splat(builder, first, _V8),
                                                  ir.Constant(_V8, [8 * half] * 8)))  # fmt: skip
            store_ids(k, builder.mul(kept, _splat(builder, step, _V8)))
            store_vals(k, builder.call(permd, [builder.shuffle_vector(vals, vals, lanes), order]))
            k = builder.add(k, builder.zext(_popcount(builder, m), k.type))
    return end


def _storer(context, builder, arrty, arr):
    """store(at, vector): the i32 vector's lanes into the flat array arr from index at, as
    the array's type (float32: the lanes are the floats' bit patterns; column numbers
    truncated to uint16 where arr holds uint16)."""
    data = context.make_array(arrty)(context, builder, arr).data
    elem = context.get_value_type(arrty.dtype)
    size = context.get_abi_sizeof(elem)  # the store's alignment: one element's

    def store(at, vector):
        lanes = ir.VectorType(elem, vector.type.count)
        if isinstance(elem, ir.FloatType):
            vector = builder.bitcast(vector, lanes)
        elif elem != vector.type.element:
            vector = builder.trunc(vector, lanes)
        ptr = builder.bitcast(builder.gep(data, [at], inbounds=True), lanes.as_pointer())
        builder.store(vector, ptr, align=size)

    return store


@intrinsic
def compress_nonzero(typingctx, idx, val, k, X, r, start, step, scale):
    """Append the non-zero entries of X[r, start:start+16] to idx[k:], val[k:]; return new k.

    idx gets their column numbers times ``step`` (uint32, or uint16 where they fit: where
    the weight row of the column starts), val their values times ``scale`` (float32);
    X is uint8 or float32, 2-D, C order. Sixteen lanes are always written, so idx and
    val need 16 entries of room past the last one kept. Branch-free: one compare, the
    packing of the module's docstring, two stores, a popcount.
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
        k = context.cast(builder, a_k, k_t, types.intp)
        r = context.cast(builder, a_r, r_t, types.intp)
        start = context.cast(builder, a_start, start_t, types.intp)
        elem = _I8 if is_bytes else ir.FloatType()
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
        # The values move as their 32-bit patterns: LLVM's expansion of a float compress
        # aborts the process on a CPU without AVX-512 (an assertion in SelectionDAG,
        # llvmlite 0.50); vpcompressd and vcompressps cost the same.
        end = _append(builder, k, mask, ids, builder.bitcast(vals, vi32),
                      _storer(context, builder, idx_t, a_idx),
                      _storer(context, builder, val_t, a_val),
                      builder.trunc(start, _I32), step)  # fmt: skip
        return context.cast(builder, end, types.intp, sig.return_type)

    return k(idx, val, k, X, r, start, step, scale), codegen


@intrinsic
def compress_bytes64(typingctx, idx, val, k, X, r, start, scale):
    """compress_nonzero of 64 uint8 columns at once: X[r, start:start+64]'s non-zero bytes
    (values times ``scale`` into val, float32; column numbers into idx, uint16) appended
    from k; returns the new k. One 64-byte compare and one byte compress (vpcompressb), the
    column numbers by two 32-lane word compresses; 64 entries of room past the last one
    kept. Half the work a row of MNIST costs 16 columns at a time. Only where BYTE_COMPRESS
    (AVX512-VBMI2): elsewhere LLVM expands both compresses lane by lane."""
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
