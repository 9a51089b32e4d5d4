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

This module: the type and its arithmetic (splat, add, multiply-add, max, exp, lane sums).
Moving vectors to and from memory (``vload``, ``vstore``, ``at``, prefetches and the
non-zero compress) is :mod:`kernels.numba.memory`. Every function is an ``@intrinsic``:
usable only inside ``@njit`` code, inlined, cache-safe. Arithmetic rounds like float32
scalar code, except :func:`fma`, which lets LLVM fuse ``a*b + c`` where the CPU has FMA.
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


@intrinsic
def vfirst(typingctx, v, count, fill):
    """Lanes 0..count-1 of ``v``, the rest ``fill`` (float32): the m real lanes of a row."""
    if not (v == f32x16 and isinstance(count, types.Integer) and fill == types.float32):
        return None

    def codegen(context, builder, sig, args):
        vi32 = ir.VectorType(_I32, LANES)
        n = context.cast(builder, args[1], sig.args[1], types.int32)
        lanes = builder.insert_element(ir.Constant(vi32, None), n, ir.Constant(_I32, 0))
        lanes = builder.shuffle_vector(lanes, lanes, ir.Constant(vi32, None))
        mask = builder.icmp_signed("<", ir.Constant(vi32, list(range(LANES))), lanes)
        one = builder.insert_element(ir.Constant(_VEC, None), args[2], ir.Constant(_I32, 0))
        fill = builder.shuffle_vector(one, one, ir.Constant(vi32, None))
        return builder.select(mask, args[0], fill)

    return f32x16(v, count, fill), codegen


@intrinsic
def vhsum(typingctx, v):
    """Sum of the 16 lanes as a tree (lanes i and i+8, then i and i+4, ...): four dependent
    adds, not vsum's sixteen; the same order every time."""
    if v != f32x16:
        return None

    def codegen(context, builder, sig, args):
        x = args[0]
        width = LANES
        while width > 1:
            width //= 2
            hi = ir.Constant(ir.VectorType(_I32, LANES),
                             [i + width if i < width else i for i in range(LANES)])  # fmt: skip
            x = builder.fadd(x, builder.shuffle_vector(x, x, hi))
        return builder.extract_element(x, ir.Constant(_I32, 0))

    return types.float32(v), codegen


vsum = intrinsic(_reduce("fadd", ordered=True))
vsum.__doc__ = "Sum of the 16 lanes, added in lane order (float32)."
vmaxlane = intrinsic(_reduce("fmax", ordered=False))
vmaxlane.__doc__ = "Largest of the 16 lanes (float32; NaN lanes ignored unless all are NaN)."


