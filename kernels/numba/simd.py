"""A 16-lane float32 vector for Numba kernels: the one thing ``@njit`` cannot spell.

Numba vectorises an innermost loop, but it keeps no accumulator in a register
across an outer loop, and it leaves LLVM's SLP vectoriser off, so the heart of
this project (``acc += x * weight_row`` over the ~150 lit pixels of an image, 16
hidden units wide) runs one lane at a time through memory. ``f32x16`` is LLVM's
``<16 x float>``: one AVX-512 register, two AVX2 registers, four SSE registers
(LLVM splits it for the host; nothing here is specific to one CPU).

>>> acc = vload(bias, 0)                      # lanes bias[0:16]
>>> acc = fma(vsplat(x), vload(w, i * 16), acc)
>>> vstore(out, b * 16, acc)

Every function is an ``@intrinsic``: usable only inside ``@njit`` code, inlined,
cache-safe. Loads and stores take a flat C-contiguous float32 array and the index
of lane 0; like ``arr[i]`` inside ``@njit`` they do no bounds check, so the
callers keep 16 addressable floats from every index (widths are padded to
multiples of :data:`LANES`). Arithmetic rounds like float32 scalar code, except
:func:`fma`, which lets LLVM fuse ``a*b + c`` where the CPU has FMA.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 16

_VEC = ir.VectorType(ir.FloatType(), LANES)
_I32 = ir.IntType(32)


class F32x16(types.Type):
    """Numba type of a 16-lane float32 vector (LLVM ``<16 x float>``)."""

    def __init__(self) -> None:
        super().__init__(name="f32x16")


f32x16 = F32x16()


@register_model(F32x16)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _is_flat(arr) -> bool:
    return isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"


def _is_f32_flat(arr) -> bool:
    return _is_flat(arr) and arr.dtype == types.float32


def _lane_pointer(context, builder, arrty, arr, idxty, idx):
    """Pointer to arr[idx] of a flat C-contiguous array (no wraparound, no bounds check)."""
    ary = context.make_array(arrty)(context, builder, arr)
    i = context.cast(builder, idx, idxty, types.intp)
    return builder.gep(ary.data, [i], inbounds=True)


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


@intrinsic
def vsplat(typingctx, x):
    """All 16 lanes equal to the float32 ``x``."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        one = builder.insert_element(ir.Constant(_VEC, None), args[0], ir.Constant(_I32, 0))
        return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(_I32, LANES), None))

    return f32x16(x), codegen


@intrinsic
def vzero(typingctx):
    """All lanes 0.0."""

    def codegen(context, builder, sig, args):
        return ir.Constant(_VEC, [0.0] * LANES)

    return f32x16(), codegen


def _binary(op):
    def maker(typingctx, a, b):
        if not (a == f32x16 and b == f32x16):
            return None

        def codegen(context, builder, sig, args):
            return getattr(builder, op)(args[0], args[1])

        return f32x16(a, b), codegen

    return maker


vadd = intrinsic(_binary("fadd"))
vadd.__doc__ = "Lane-wise ``a + b``."
vsub = intrinsic(_binary("fsub"))
vsub.__doc__ = "Lane-wise ``a - b``."
vmul = intrinsic(_binary("fmul"))
vmul.__doc__ = "Lane-wise ``a * b``."
vdiv = intrinsic(_binary("fdiv"))
vdiv.__doc__ = "Lane-wise ``a / b``."


@intrinsic
def fma(typingctx, a, b, c):
    """Lane-wise ``a * b + c`` (``llvm.fmuladd``: fused where the CPU has FMA)."""
    if not (a == f32x16 and b == f32x16 and c == f32x16):
        return None

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VEC, [_VEC, _VEC, _VEC]), "llvm.fmuladd.v16f32"
        )
        return builder.call(fn, list(args))

    return f32x16(a, b, c), codegen


@intrinsic
def vmax(typingctx, a, b):
    """Lane-wise ``a if a > b else b`` (NaN in ``a`` is kept only if ``b`` is not smaller)."""
    if not (a == f32x16 and b == f32x16):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[0], args[1])

    return f32x16(a, b), codegen


@intrinsic
def where_positive(typingctx, cond, a):
    """Lane-wise ``a if cond > 0 else 0`` (ReLU and its derivative)."""
    if not (cond == f32x16 and a == f32x16):
        return None

    def codegen(context, builder, sig, args):
        zero = ir.Constant(_VEC, [0.0] * LANES)
        return builder.select(builder.fcmp_ordered(">", args[0], zero), args[1], zero)

    return f32x16(cond, a), codegen


@intrinsic
def relu(typingctx, a):
    """Lane-wise ``max(a, 0)``, NaN kept (as PyTorch)."""
    if a != f32x16:
        return None

    def codegen(context, builder, sig, args):
        zero = ir.Constant(_VEC, [0.0] * LANES)
        return builder.select(builder.fcmp_ordered("<", args[0], zero), zero, args[0])

    return f32x16(a), codegen


@intrinsic
def vget(typingctx, v, lane):
    """Lane ``lane`` of ``v`` as a float32."""
    if not (v == f32x16 and isinstance(lane, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        i = context.cast(builder, args[1], sig.args[1], types.int32)
        return builder.extract_element(args[0], i)

    return types.float32(v, lane), codegen


def _splat(builder, value, vty):
    one = builder.insert_element(ir.Constant(vty, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(_I32, LANES), None))


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
        xa = context.make_array(x_t)(context, builder, a_x)
        ncols = builder.extract_value(xa.shape, 1)
        elem = ir.IntType(8) if is_bytes else ir.FloatType()
        src = builder.gep(xa.data, [builder.add(builder.mul(r, ncols), start)], inbounds=True)
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
        mty = mask.type
        fcv = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VEC, [_VEC, mty, _VEC]),
            "llvm.experimental.vector.compress.v16f32",
        )  # fmt: skip
        fci = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vi32, [vi32, mty, vi32]),
            "llvm.experimental.vector.compress.v16i32",
        )  # fmt: skip
        cv = builder.call(fcv, [vals, mask, ir.Constant(_VEC, None)])
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
        xa = context.make_array(sig.args[0])(context, builder, args[0])
        r = context.cast(builder, args[1], sig.args[1], types.intp)
        col = context.cast(builder, args[2], sig.args[2], types.intp)
        ncols = builder.extract_value(xa.shape, 1)
        ptr = builder.gep(xa.data, [builder.add(builder.mul(r, ncols), col)], inbounds=True)
        i8p = ir.IntType(8).as_pointer()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32]),
            "llvm.prefetch.p0",
        )  # fmt: skip
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(_I32, 0), ir.Constant(_I32, 3),
                          ir.Constant(_I32, 1)])  # fmt: skip
        return context.get_dummy_value()

    return types.none(X, r, col), codegen


def _vconst(value):
    return ir.Constant(_VEC, [float(value)] * LANES)


@intrinsic
def vexp(typingctx, v):
    """Lane-wise exp (Cephes expf: 2**n times a degree-6 polynomial; ~1 ulp for x in
    [-87, 88], the input clamped to that range, so exp of very negative x is ~1e-38, not 0)."""
    if v != f32x16:
        return None

    def codegen(context, builder, sig, args):
        m = builder.module
        x = args[0]
        vty = _VEC
        fmin = cgutils.get_or_insert_function(
            m, ir.FunctionType(vty, [vty, vty]), "llvm.minnum.v16f32"
        )
        fmax = cgutils.get_or_insert_function(
            m, ir.FunctionType(vty, [vty, vty]), "llvm.maxnum.v16f32"
        )
        floor = cgutils.get_or_insert_function(m, ir.FunctionType(vty, [vty]), "llvm.floor.v16f32")
        x = builder.call(fmax, [builder.call(fmin, [x, _vconst(88.3762626647949)]),
                                _vconst(-87.3365478515625)])  # fmt: skip
        fx = builder.call(
            floor, [builder.fadd(builder.fmul(x, _vconst(1.44269504088896341)), _vconst(0.5))]
        )
        x = builder.fsub(x, builder.fmul(fx, _vconst(0.693359375)))
        x = builder.fsub(x, builder.fmul(fx, _vconst(-2.12194440e-4)))
        y = _vconst(1.9875691500e-4)
        for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
                  5.0000001201e-1):  # fmt: skip
            y = builder.fadd(builder.fmul(y, x), _vconst(c))
        y = builder.fadd(builder.fadd(builder.fmul(y, builder.fmul(x, x)), x), _vconst(1.0))
        vi32 = ir.VectorType(_I32, LANES)
        n = builder.fptosi(fx, vi32)
        two_n = builder.bitcast(
            builder.shl(builder.add(n, ir.Constant(vi32, [127] * LANES)),
                        ir.Constant(vi32, [23] * LANES)),
            vty,
        )  # fmt: skip
        return builder.fmul(y, two_n)

    return f32x16(v), codegen


def _reduce(name, ordered):
    def maker(typingctx, v):
        if v != f32x16:
            return None

        def codegen(context, builder, sig, args):
            f = ir.FloatType()
            if ordered:
                fn = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(f, [f, _VEC]), f"llvm.vector.reduce.{name}.v16f32"
                )
                return builder.call(fn, [ir.Constant(f, -0.0), args[0]])
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(f, [_VEC]), f"llvm.vector.reduce.{name}.v16f32"
            )
            return builder.call(fn, [args[0]])

        return types.float32(v), codegen

    return maker


vsum = intrinsic(_reduce("fadd", ordered=True))
vsum.__doc__ = "Sum of the 16 lanes, added in lane order (float32)."
vmaxlane = intrinsic(_reduce("fmax", ordered=False))
vmaxlane.__doc__ = "Largest of the 16 lanes (float32; NaN lanes ignored unless all are NaN)."


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
