"""The four source bytes of 16 bilinear samples: the read step of :mod:`kernels.augment_simd`.

A sample at (x0 + fx, y0 + fy) weighs the source pixels (x0, y0), (x0, y0 + 1), (x0 + 1, y0)
and (x0 + 1, y0 + 1); :func:`fetch` returns them as the bytes of one 32-bit lane, in that
order, from one of two layouts:

- paired rows (:func:`kernels.augment_simd.pair32`): a copy of the image with a border of
  zeros whose rows r and r + 1 are interleaved, so the four bytes are consecutive and one
  32-bit gather (``vpgatherdd``) reads them. Any image, any CPU;
- the image itself (on CPUs with AVX-512 VBMI, for images whose ink keeps a pixel away from
  every border, so no footprint that can see ink leaves the image): 128-byte windows of it
  starting at the lanes' lowest offset, read by byte permutes (``vpermi2b``: each lane picks
  its four bytes, a row apart), instead of a gather, and without the paired copy. A window
  holds about 4.5 rows of a 28 x 28 image: the 16 pixels of a row of output, moved by the
  elastic field and rotated, nearly always lie in the first. Lanes past the windows are
  gathered (two gathers: the upper pair, the lower pair).

Measured (CPU per image on MNIST, 3 rounds interleaved, loaded machine): elastic
0.84-0.89 us with the permutes, 0.97-1.07 us with the paired rows and the gather (the
gather alone was ~5.5 ns of a 16-pixel vector's ~12, the paired copy ~0.04-0.07 us an
image); affine 0.71-0.75 against 0.77-0.85 us.
"""

from __future__ import annotations

import llvmlite.binding as ll
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic

LANES = 16
WINDOWS = 2  # 128-byte windows a vector reads by permutes before it gathers the rest
# The permutes are x86 instructions: only where the compiled code targets this host (no
# NUMBA_CPU_NAME for another CPU) and the host has them.
VBMI = not config.CPU_NAME and bool(ll.get_host_cpu_features().get("avx512vbmi", False))

_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_V32 = ir.VectorType(_I32, LANES)
_VB = ir.VectorType(_I8, 4 * LANES)  # the same 512 bits as bytes
_VMASK = ir.VectorType(_I1, LANES)


def _splat(builder, value, vty):
    """A vector of type vty with value in every lane (augment_simd's too)."""
    one = builder.insert_element(ir.Constant(vty, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(_I32, vty.count), None))


def _const(value, vty=_V32):
    return ir.Constant(vty, [value] * vty.count)


def _flat_bytes(arr) -> bool:
    return (
        isinstance(arr, types.Array)
        and arr.layout == "C"
        and arr.ndim == 1
        and arr.dtype == types.uint8
    )


def gather(builder, data, offset, mask, quad):
    """``quad`` with the lanes in ``mask`` replaced by the 32 bits at ``data + offset``."""
    ptrs = ir.VectorType(ir.PointerType(), LANES)
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_V32, [ptrs, _I32, _VMASK, _V32]),
        "llvm.masked.gather.v16i32.v16p0",
    )  # fmt: skip
    gep = builder.gep(data, [offset], inbounds=True, source_etype=_I8)
    gep.type = ptrs  # base + i32 offsets: vpgatherdd (64-bit pointers would take two gathers)
    return builder.call(fn, [gep, ir.Constant(_I32, 1), mask, quad])


def fetch(builder, data, size, stride, x0, y0, inside):
    """The footprints' bytes (int32 lanes, 0 outside ``inside``) of the pixels at x0, y0.

    ``stride`` (int32) > 0: ``data`` holds paired rows ``stride`` bytes a row, pixel (x, y)
    at ``(y + 1) stride + 2 (x + 1)``; < 0: ``data`` is the image, ``-stride`` pixels a row,
    and every lane of ``inside`` reads within it (only with :data:`VBMI`). ``size``: the
    bytes of ``data`` (int64)."""
    if not VBMI:
        return _paired(builder, data, stride, x0, y0, inside)
    result = cgutils.alloca_once(builder, _V32)
    direct = builder.icmp_signed("<", stride, ir.Constant(_I32, 0))
    with builder.if_else(direct, likely=True) as (image, paired):
        with image:
            builder.store(_windows(builder, data, size, builder.neg(stride), x0, y0, inside),
                          result)  # fmt: skip
        with paired:
            builder.store(_paired(builder, data, stride, x0, y0, inside), result)
    return builder.load(result)


def _paired(builder, data, stride, x0, y0, inside):
    one = _const(1)
    offset = builder.add(builder.mul(builder.add(y0, one), _splat(builder, stride, _V32)),
                         builder.shl(builder.add(x0, one), one))  # fmt: skip
    return gather(builder, data, offset, inside, _const(0))


def _windows(builder, data, size, side, x0, y0, inside):
    """From the image itself: lane k's bytes at offset ``o = y0 side + x0``: o, o + side,
    o + 1, o + side + 1. The windows start at the lowest offset b of a lane in ``inside``
    and ``step = 127 - side`` bytes apart: window w serves the lanes with ``w step <= o - b
    < (w + 1) step``, whose four bytes lie in it (index ``o - b - w step + {0, side, 1,
    side + 1}`` <= 127)."""
    offset = builder.add(builder.mul(y0, _splat(builder, side, _V32)), x0)
    step = builder.sub(ir.Constant(_I32, 127), side)
    smin = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_I32, [_V32]), "llvm.vector.reduce.smin.v16i32"
    )
    perm = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_VB, [_VB, _VB, _VB]), "llvm.x86.avx512.vpermi2var.qi.512"
    )
    base = builder.call(smin, [builder.select(inside, offset, _const(0x7FFFFFFF))])
    # every window within the image: a lower start only widens the lanes' spread
    last = builder.trunc(builder.sub(size, builder.sext(
        builder.add(builder.mul(step, ir.Constant(_I32, WINDOWS - 1)), ir.Constant(_I32, 128)),
        _I64)), _I32)  # fmt: skip
    base = builder.select(builder.icmp_signed(">", base, last), last, base)  # (none inside: big)
    rel = builder.sub(offset, _splat(builder, base, _V32))
    # each lane's o - b in its four bytes (the low 7 bits are what a permute reads), plus
    # the pattern 0, side, 1, side + 1
    rel8 = builder.bitcast(rel, _VB)
    spread = ir.Constant(ir.VectorType(_I32, 4 * LANES), [4 * (k // 4) for k in range(4 * LANES)])
    pattern = builder.or_(builder.shl(side, ir.Constant(_I32, 8)),
                          builder.or_(ir.Constant(_I32, 1 << 16), builder.shl(
                              builder.add(side, ir.Constant(_I32, 1)), ir.Constant(_I32, 24))))  # fmt: skip
    index = builder.add(builder.shuffle_vector(rel8, rel8, spread),
                        builder.bitcast(_splat(builder, pattern, _V32), _VB))  # fmt: skip
    quad = None
    for w in range(WINDOWS):
        skip = builder.mul(step, ir.Constant(_I32, w))
        at = builder.gep(data, [builder.add(base, skip)], inbounds=True, source_etype=_I8)
        low = builder.load(builder.bitcast(at, _VB.as_pointer()), align=1)
        high_at = builder.gep(at, [ir.Constant(_I32, 64)], inbounds=True, source_etype=_I8)
        high = builder.load(builder.bitcast(high_at, _VB.as_pointer()), align=1)
        shifted = index
        if w:
            shifted = builder.sub(index, _splat(builder, builder.trunc(skip, _I8), _VB))
        got = builder.bitcast(builder.call(perm, [low, shifted, high]), _V32)
        if w == 0:
            quad = got
        else:
            later = builder.icmp_signed(">=", rel, _splat(builder, skip, _V32))
            quad = builder.select(later, got, quad)
    quad = builder.select(inside, quad, _const(0))
    covered = _splat(builder, builder.mul(step, ir.Constant(_I32, WINDOWS)), _V32)
    rest = builder.and_(inside, builder.icmp_unsigned(">=", rel, covered))
    bits = ir.IntType(LANES)
    any_rest = builder.icmp_unsigned("!=", builder.bitcast(rest, bits), ir.Constant(bits, 0))
    result = cgutils.alloca_once_value(builder, quad)
    with cgutils.if_unlikely(builder, any_rest):  # the upper pair and the lower pair
        upper = gather(builder, data, offset, rest, _const(0))  # o, o + 1 in bytes 0, 1
        two = _splat(builder, builder.sub(side, ir.Constant(_I32, 2)), _V32)
        lower = gather(builder, data, builder.add(offset, two), rest, _const(0))  # bytes 2, 3
        both = builder.or_(builder.and_(upper, _const(0xFFFF)),
                           builder.and_(lower, _const(-65536)))  # fmt: skip
        swap = [4 * (k // 4) + (0, 2, 1, 3)[k % 4] for k in range(4 * LANES)]
        both8 = builder.bitcast(both, _VB)
        both = builder.bitcast(builder.shuffle_vector(both8, both8, ir.Constant(
            ir.VectorType(_I32, 4 * LANES), swap)), _V32)  # fmt: skip
        builder.store(builder.select(rest, both, quad), result)
    return builder.load(result)


@intrinsic
def pair32(typingctx, dst, d, src, up, n_up, down, n_down, count):
    """Interleave two image rows, up to 32 bytes each: ``dst[d + 2k] = src[up + k]`` (or 0
    for k >= n_up), ``dst[d + 2k + 1] = src[down + k]`` (or 0 for k >= n_down), k < count.

    So one 32-bit gather at ``dst[d + 2k]`` reads a bilinear footprint: pixels k and k + 1
    of the upper row, and of the lower. Masked loads (no byte read past n_up, n_down) and a
    masked store; dst, src: flat uint8, C order.
    """
    ints = (d, up, n_up, down, n_down, count)
    if not (
        _flat_bytes(dst) and _flat_bytes(src) and all(isinstance(t, types.Integer) for t in ints)
    ):  # fmt: skip
        return None

    def codegen(context, builder, sig, args):
        dst_t, d_t, src_t, up_t, n_up_t, down_t, n_down_t, count_t = sig.args
        a_dst, a_d, a_src, a_up, a_n_up, a_down, a_n_down, a_count = args
        wide = 2 * LANES

        def at(ty, arr, i, ity):
            data = context.make_array(ty)(context, builder, arr).data
            return builder.gep(data, [context.cast(builder, i, ity, types.intp)], inbounds=True)

        def first(n, nty, lanes):  # the mask of lanes < n
            v32 = ir.VectorType(_I32, lanes)
            n = builder.trunc(context.cast(builder, n, nty, types.intp), _I32)
            one = builder.insert_element(ir.Constant(v32, None), n, ir.Constant(_I32, 0))
            limit = builder.shuffle_vector(one, one, ir.Constant(v32, None))
            return builder.icmp_signed("<", ir.Constant(v32, list(range(lanes))), limit)

        v8, v16 = ir.VectorType(_I8, wide), ir.VectorType(_I8, 2 * wide)
        load = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(v8, [ir.PointerType(), _I32, ir.VectorType(_I1, wide), v8]),
            "llvm.masked.load.v32i8.p0",
        )  # fmt: skip
        upper, lower = (
            builder.call(load, [at(src_t, a_src, a, t), ir.Constant(_I32, 1), first(n, nt, wide),
                                ir.Constant(v8, [0] * wide)])
            for a, t, n, nt in ((a_up, up_t, a_n_up, n_up_t), (a_down, down_t, a_n_down, n_down_t))
        )  # fmt: skip
        order = [k // 2 + (k % 2) * wide for k in range(2 * wide)]
        pairs = builder.shuffle_vector(
            upper, lower, ir.Constant(ir.VectorType(_I32, 2 * wide), order)
        )
        store = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [v16, ir.PointerType(), _I32, ir.VectorType(_I1, 2 * wide)]),
            "llvm.masked.store.v64i8.p0",
        )  # fmt: skip
        count = builder.mul(context.cast(builder, a_count, count_t, types.intp),
                            ir.Constant(context.get_value_type(types.intp), 2))  # fmt: skip
        keep = first(count, types.intp, 2 * wide)
        builder.call(store, [pairs, at(dst_t, a_dst, a_d, d_t), ir.Constant(_I32, 1), keep])
        return context.get_dummy_value()

    return types.none(dst, d, src, up, n_up, down, n_down, count), codegen
