"""Sixteen bilinear samples at once, and the other vector steps of
:mod:`kernels.augment_numba`: the gathers and masked loads ``@njit`` cannot spell.

:func:`sample16` reads the 16.16 fixed-point positions of 16 output pixels of a row and
writes their bytes, with the arithmetic of :func:`kernels.augment_reference._bilinear`
(weights in 1/256, rounded half up) in 32-bit lanes, where every intermediate fits. A
pixel's four source bytes are one 32-bit gather (``llvm.masked.gather``: ``vpgatherdd``
on AVX-512 and AVX2, scalar loads elsewhere) from a copy of the image with a border of
zeros whose rows r and r + 1 are interleaved (:func:`pair32`): the top pair and the bottom
pair of the footprint are 4 consecutive bytes. A lane is gathered only when its position
lies in the box whose footprints can see ink (the others are 0, as the reference's sample
of zeros is), and only the first ``count`` lanes are stored (``llvm.masked.store``), so a
row's last vector never writes past the row. :func:`ramp16` is 16 columns of the elastic
field (the next images are fetched ahead with ``kernels.numba.memory.prefetch``).

Measured (affine, per image, CPU): two gathers a pixel (a row and the row below)
1.0 us, one from the paired rows 0.73 us.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16

_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_V32, _V64, _V8 = (ir.VectorType(t, LANES) for t in (_I32, _I64, _I8))
_VMASK = ir.VectorType(_I1, LANES)


def _splat(builder, value, vty):
    one = builder.insert_element(ir.Constant(vty, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(_I32, LANES), None))


def _const(value, vty=_V32):
    return ir.Constant(vty, [value] * LANES)


def _flat_c(arr, dtype) -> bool:
    return isinstance(arr, types.Array) and arr.layout == "C" and arr.dtype == dtype


@intrinsic
def sample16(typingctx, out, o, image, width, sx, a, sy, c, ex, ey, j, box, count):
    """``out.flat[o + k] = bilinear(image, px, py)`` for k < ``count`` (<= 16), at
    ``px = sx + a (j + k) + ex[j + k]``, ``py = sy + c (j + k) + ey[j + k]``.

    out: uint8, C order (any shape); image: flat uint8, the paired rows (:func:`pair32`),
    ``width`` bytes a row, pixel (x, y) at ``(y + 1) * width + 2 (x + 1)`` and pixel
    (x, y + 1) the byte after it; positions in 16.16 (each term and
    the sum within int32); ex, ey: flat int32, 16 readable from ``j`` (the elastic field
    along the row, or zeros); box: flat int64 ``(lo_x, hi_x, lo_y, hi_y)`` in 16.16: a
    lane outside it is 0.
    """
    ints = (o, width, sx, a, sy, c, j, count)
    if not (
        _flat_c(out, types.uint8) and _flat_c(image, types.uint8) and image.ndim == 1
        and _flat_c(ex, types.int32) and ex.ndim == 1 and _flat_c(ey, types.int32)
        and ey.ndim == 1 and _flat_c(box, types.int64) and box.ndim == 1
        and all(isinstance(t, types.Integer) for t in ints)
    ):  # fmt: skip
        return None

    def codegen(context, builder, sig, args):
        out_t, o_t, image_t, width_t, sx_t, a_t, sy_t, c_t, ex_t, ey_t, j_t, box_t, count_t = (
            sig.args
        )
        a_out, a_o, a_image, a_width, a_sx, a_a, a_sy, a_c, a_ex, a_ey, a_j, a_box, a_count = args

        def intp(value, ty):
            return context.cast(builder, value, ty, types.intp)

        def data(ty, value):
            return context.make_array(ty)(context, builder, value).data

        def lanes(value, ty):  # an integer argument in every lane, as int32
            return _splat(builder, builder.trunc(intp(value, ty), _I32), _V32)

        j = intp(a_j, j_t)
        steps = builder.add(lanes(a_j, j_t), ir.Constant(_V32, list(range(LANES))))
        ex, ey = (
            builder.load(builder.bitcast(builder.gep(data(t, v), [j], inbounds=True),
                                         _V32.as_pointer()), align=4)
            for t, v in ((ex_t, a_ex), (ey_t, a_ey))
        )  # fmt: skip
        xs = builder.add(builder.add(lanes(a_sx, sx_t), builder.mul(lanes(a_a, a_t), steps)), ex)
        ys = builder.add(builder.add(lanes(a_sy, sy_t), builder.mul(lanes(a_c, c_t), steps)), ey)
        bp = data(box_t, a_box)
        lo_x, hi_x, lo_y, hi_y = (
            _splat(builder, builder.trunc(builder.load(builder.gep(bp, [ir.Constant(_I64, k)])),
                                          _I32), _V32)
            for k in range(4)
        )  # fmt: skip
        inside = builder.and_(
            builder.and_(builder.icmp_signed(">=", xs, lo_x), builder.icmp_signed("<=", xs, hi_x)),
            builder.and_(builder.icmp_signed(">=", ys, lo_y), builder.icmp_signed("<=", ys, hi_y)),
        )
        width = builder.trunc(intp(a_width, width_t), _I32)
        x0 = builder.add(builder.ashr(xs, _const(16)), _const(1))
        y0 = builder.add(builder.ashr(ys, _const(16)), _const(1))
        fx = builder.and_(builder.ashr(xs, _const(8)), _const(255))
        fy = builder.and_(builder.ashr(ys, _const(8)), _const(255))
        offset = builder.add(
            builder.mul(y0, _splat(builder, width, _V32)), builder.shl(x0, _const(1))
        )
        ptrs = ir.VectorType(ir.PointerType(), LANES)
        gather = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_V32, [ptrs, _I32, _VMASK, _V32]),
            "llvm.masked.gather.v16i32.v16p0",
        )  # fmt: skip
        base = data(image_t, a_image)

        def lanes_at(offsets):  # base + offsets as 16 pointers: a scalar base, i32 indices
            gep = builder.gep(base, [offsets], inbounds=True, source_etype=_I8)
            gep.type = ptrs  # (vpgatherdd; 64-bit pointers would take two gathers)
            return gep

        zero = _const(0)
        quad = builder.call(gather, [lanes_at(offset), ir.Constant(_I32, 1), inside, zero])
        byte = _const(255)
        p00, p10 = builder.and_(quad, byte), builder.and_(builder.lshr(quad, _const(8)), byte)
        p01 = builder.and_(builder.lshr(quad, _const(16)), byte)
        p11 = builder.lshr(quad, _const(24))
        gx, gy = builder.sub(_const(256), fx), builder.sub(_const(256), fy)
        top = builder.add(builder.mul(p00, gx), builder.mul(p01, fx))
        bottom = builder.add(builder.mul(p10, gx), builder.mul(p11, fx))
        value = builder.add(builder.add(builder.mul(top, gy), builder.mul(bottom, fy)),
                            _const(32768))  # fmt: skip
        value = builder.trunc(builder.lshr(value, _const(16)), _V8)
        count = builder.trunc(intp(a_count, count_t), _I32)
        keep = builder.icmp_signed(
            "<", ir.Constant(_V32, list(range(LANES))), _splat(builder, count, _V32)
        )
        dest = builder.gep(data(out_t, a_out), [intp(a_o, o_t)], inbounds=True)
        store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [_V8, ir.PointerType(), _I32, _VMASK]),
            "llvm.masked.store.v16i8.p0",
        )  # fmt: skip
        builder.call(store, [value, dest, ir.Constant(_I32, 1), keep])
        return context.get_dummy_value()

    return types.none(out, o, image, width, sx, a, sy, c, ex, ey, j, box, count), codegen


@intrinsic
def ramp16(typingctx, out, o, left, slope, weights, w):
    """``out[o + k] = left + ((slope * weights[w + k]) >> 16)`` for k < 16, the product in
    64 bits: 16 columns of the elastic field along a grid cell, which is the reference's
    ``(left * 65536 + (right - left) * weight) >> 16`` (``left * 65536`` is a whole multiple
    of 65536). out, weights: flat int32, C order, 16 lanes of room; left, slope: integers
    (left within int32). Numba leaves the plain loop scalar (its ``>>`` and index checks)."""
    if not (
        all(_flat_c(a, types.int32) and a.ndim == 1 for a in (out, weights))
        and all(isinstance(t, types.Integer) for t in (o, left, slope, w))
    ):  # fmt: skip
        return None

    def codegen(context, builder, sig, args):
        out_t, o_t, left_t, slope_t, weights_t, w_t = sig.args
        a_out, a_o, a_left, a_slope, a_weights, a_w = args

        def at(ty, arr, i, ity):
            data = context.make_array(ty)(context, builder, arr).data
            ptr = builder.gep(data, [context.cast(builder, i, ity, types.intp)], inbounds=True)
            return builder.bitcast(ptr, _V32.as_pointer())

        weight = builder.sext(builder.load(at(weights_t, a_weights, a_w, w_t), align=4), _V64)
        slope = context.cast(builder, a_slope, slope_t, types.int64)
        step = builder.ashr(builder.mul(weight, _splat(builder, slope, _V64)), _const(16, _V64))
        left = builder.trunc(context.cast(builder, a_left, left_t, types.int64), _I32)
        value = builder.add(builder.trunc(step, _V32), _splat(builder, left, _V32))
        builder.store(value, at(out_t, a_out, a_o, o_t), align=4)
        return context.get_dummy_value()

    return types.none(out, o, left, slope, weights, w), codegen


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
        _flat_c(dst, types.uint8) and dst.ndim == 1 and _flat_c(src, types.uint8)
        and src.ndim == 1 and all(isinstance(t, types.Integer) for t in ints)
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
