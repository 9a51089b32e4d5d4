"""Sixteen bilinear samples at once, and the other vector steps of
:mod:`kernels.augment_numba`: the gathers and masked loads ``@njit`` cannot spell.

:func:`sample16` reads the 16.16 fixed-point positions of 16 output pixels of a row and
writes their bytes, with the arithmetic of :func:`kernels.augment_reference._bilinear`
(weights in 1/256, rounded half up) in 32-bit lanes, where every intermediate fits. A
pixel's four source bytes are read at once (:func:`kernels.augment_fetch.fetch`: byte
permutes from the image itself, or a 32-bit gather from a copy of the image whose rows r
and r + 1 are interleaved, :func:`kernels.augment_fetch.pair32`). A lane is read only
when its position lies in the box whose footprints can see ink (the others are 0, as the
reference's sample of zeros is), and only the first ``count`` lanes are stored
(``llvm.masked.store``), so a row's last vector never writes past the row.
:func:`sample16g` samples a whole row and computes the lanes' elastic displacements
itself from the grid (up to 16 points a side: the grid rows interpolated down to the
output row once, then picked per lane by variable permutes and interpolated along x);
:func:`sample16e` picks them from the grid's columns interpolated
down to every row (:func:`ramp16`, 16 rows of a grid column), for denser grids. Products
that need more than 32 bits are split exactly (:func:`_split_mul`). The next images are
fetched ahead with ``kernels.numba.memory.prefetch``.

Measured (per image, CPU): affine with two gathers a pixel (a row and the row below)
1.0 us, one from the paired rows 0.73 us, permutes from the image 0.64-0.67 us; elastic
with the field read from memory along each row 1.53 us, computed in the lanes (and one
rectangle per image) 0.92-0.97 us, with permutes and the grid rows once a row 0.74-0.76
us (bytes only, fewer other jobs on the machine than in kernels.augment_numba's figures).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels.augment_fetch import _const, _splat, fetch

LANES = 16

_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_V32, _V64, _V8 = (ir.VectorType(t, LANES) for t in (_I32, _I64, _I8))
_VMASK = ir.VectorType(_I1, LANES)


def _flat_c(arr, dtype) -> bool:
    return isinstance(arr, types.Array) and arr.layout == "C" and arr.dtype == dtype


def _args_ok(out, image, box, ints, arrays=()):
    return (
        _flat_c(out, types.uint8) and _flat_c(image, types.uint8) and image.ndim == 1
        and _flat_c(box, types.int64) and box.ndim == 1
        and all(_flat_c(t, types.int32) and t.ndim == 1 for t in arrays)
        and all(isinstance(t, types.Integer) for t in ints)
    )  # fmt: skip


class _Lanes:
    """Codegen helpers for one intrinsic call: integer arguments in lanes, array data."""

    def __init__(self, context, builder):
        self.context, self.builder = context, builder

    def intp(self, value, ty):
        return self.context.cast(self.builder, value, ty, types.intp)

    def data(self, ty, value):
        return self.context.make_array(ty)(self.context, self.builder, value).data

    def i32(self, value, ty):
        return self.builder.trunc(self.intp(value, ty), _I32)

    def lanes(self, value, ty):  # an integer argument in every lane, as int32
        return _splat(self.builder, self.i32(value, ty), _V32)

    def load16(self, ty, value, at_ty, at):  # 16 int32 from a flat int32 array
        ptr = self.builder.gep(self.data(ty, value), [self.intp(at, at_ty)], inbounds=True)
        return self.builder.load(self.builder.bitcast(ptr, _V32.as_pointer()), align=4)


def _sample(h, out, o, image, width, xs, ys, box, count):
    """The bilinear samples at positions xs, ys (16.16, int32 lanes) stored at out.flat[o:]
    (the first ``count`` lanes); a lane outside ``box`` is 0. Each argument a (type, value)."""
    builder = h.builder
    bp = h.data(*box)
    lo_x, hi_x, lo_y, hi_y = (
        _splat(builder, builder.trunc(builder.load(builder.gep(bp, [ir.Constant(_I64, k)])),
                                      _I32), _V32)
        for k in range(4)
    )  # fmt: skip
    inside = builder.and_(
        builder.and_(builder.icmp_signed(">=", xs, lo_x), builder.icmp_signed("<=", xs, hi_x)),
        builder.and_(builder.icmp_signed(">=", ys, lo_y), builder.icmp_signed("<=", ys, hi_y)),
    )
    x0, y0 = builder.ashr(xs, _const(16)), builder.ashr(ys, _const(16))
    fx = builder.and_(builder.ashr(xs, _const(8)), _const(255))
    fy = builder.and_(builder.ashr(ys, _const(8)), _const(255))
    source = h.context.make_array(image[0])(h.context, builder, image[1])
    size = builder.extract_value(source.shape, 0)
    quad = fetch(builder, source.data, size, h.i32(width[1], width[0]), x0, y0, inside)
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
    keep = builder.icmp_signed(
        "<", ir.Constant(_V32, list(range(LANES))), h.lanes(count[1], count[0])
    )
    dest = builder.gep(h.data(*out), [h.intp(o[1], o[0])], inbounds=True)
    store = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [_V8, ir.PointerType(), _I32, _VMASK]),
        "llvm.masked.store.v16i8.p0",
    )  # fmt: skip
    builder.call(store, [value, dest, ir.Constant(_I32, 1), keep])
    return value, keep


def _affine_lanes(h, sx, a, j):
    """sx + a (j + k) in lane k (int32): 16 consecutive pixels' affine positions."""
    # (sx + a j) in every lane plus a k: the vector product depends on a only, so a
    # loop over a row's vectors computes it once (int32 wraps the same either way)
    b = h.builder
    start = b.add(h.i32(sx[1], sx[0]), b.mul(h.i32(a[1], a[0]), h.i32(j[1], j[0])))
    ramp = b.mul(h.lanes(a[1], a[0]), ir.Constant(_V32, list(range(LANES))))
    return b.add(_splat(b, start, _V32), ramp)


@intrinsic
def sample16(typingctx, out, o, image, width, sx, a, sy, c, ex, ey, j, box, count):
    """``out.flat[o + k] = bilinear(image, px, py)`` for k < ``count`` (<= 16), at
    ``px = sx + a (j + k) + ex[j + k]``, ``py = sy + c (j + k) + ey[j + k]``.

    out: uint8, C order (any shape); image: flat uint8, either the paired rows
    (:func:`kernels.augment_fetch.pair32`), ``width`` bytes a row, pixel (x, y) at
    ``(y + 1) * width + 2 (x + 1)`` and pixel (x, y + 1) the byte after it, or (``width``
    < 0, VBMI hosts only) the image itself, ``-width`` pixels a row, every footprint in the
    box within it (:func:`kernels.augment_fetch.fetch`); positions in 16.16 (each term and
    the sum within int32); ex, ey: flat int32, 16 readable from ``j`` (the elastic field
    along the row, or zeros); box: flat int64 ``(lo_x, hi_x, lo_y, hi_y)`` in 16.16: a
    lane outside it is 0.
    """
    if not _args_ok(out, image, box, (o, width, sx, a, sy, c, j, count), (ex, ey)):
        return None

    def codegen(context, builder, sig, args):
        t = list(zip(sig.args, args, strict=True))
        out, o, image, width, sx, a, sy, c, ex, ey, j, box, count = t
        h = _Lanes(context, builder)
        xs = builder.add(_affine_lanes(h, sx, a, j), h.load16(*ex, *j))
        ys = builder.add(_affine_lanes(h, sy, c, j), h.load16(*ey, *j))
        _sample(h, out, o, image, width, xs, ys, box, count)
        return context.get_dummy_value()

    return types.none(out, o, image, width, sx, a, sy, c, ex, ey, j, box, count), codegen


def _field_lanes(h, grid, at, stride, axis, cells, weights, j, c0, c1):
    """The elastic field of one axis at 16 columns j.. of a row: in lane k, with
    ``c = cells[j + k]`` (only cells c0..c1 are looked at; other lanes 0),
    ``L + ((R - L) weights[j + k] >> 16)``, ``L = grid[axis + c stride + at]``, R the next
    cell's: the reference's interpolation along x.

    Each lane's L and R - L are picked from the cells' by compare and select: three cells
    unrolled (every block of 16 columns with a grid step of 8 or more), a loop beyond.
    The product in 32-bit lanes (:func:`_split_mul`)."""
    builder = h.builder
    cell = h.load16(*cells, *j)
    base = builder.add(h.intp(axis[1], axis[0]), h.intp(at[1], at[0]))
    step = h.intp(stride[1], stride[0])
    data = h.data(*grid)
    first, last = h.intp(c0[1], c0[0]), h.intp(c1[1], c1[0])
    left = cgutils.alloca_once_value(builder, _const(0))
    slope = cgutils.alloca_once_value(builder, _const(0))

    def pick(k):  # the lanes of cell k take its L and R - L
        here = builder.add(base, builder.mul(k, step))
        lv = builder.load(builder.gep(data, [here], inbounds=True))
        rv = builder.load(builder.gep(data, [builder.add(here, step)], inbounds=True))
        match = builder.icmp_signed("==", cell, _splat(builder, builder.trunc(k, _I32), _V32))
        builder.store(builder.select(match, _splat(builder, lv, _V32), builder.load(left)), left)
        builder.store(builder.select(match, _splat(builder, builder.sub(rv, lv), _V32),
                                     builder.load(slope)), slope)  # fmt: skip

    one = ir.Constant(first.type, 1)
    few = builder.icmp_signed("<=", builder.sub(last, first), ir.Constant(first.type, 2))
    with builder.if_else(few, likely=True) as (unrolled, looped):
        with unrolled:
            for t in range(3):  # cells c0, c0 + 1, c0 + 2, none past c1
                k = builder.add(first, ir.Constant(first.type, t))
                pick(builder.select(builder.icmp_signed("<", k, last), k, last))
        with looped:
            with cgutils.for_range_slice(builder, first, builder.add(last, one), one) as (k, _):
                pick(k)
    moved = _split_mul(builder, builder.load(slope), h.load16(*weights, *j))
    return builder.add(builder.load(left), moved)


@intrinsic
def sample16e(typingctx, out, o, image, width, sx, a, sy, c, grid, at, stride, gy, cells,
              weights, j, c0, c1, box, count):  # fmt: skip
    """:func:`sample16` with the elastic field computed in the lanes instead of read:
    ``ex`` of lane k is the grid interpolated down to this row (``grid[c stride + at]``,
    cell c = ``cells[j + k]``) interpolated along x with ``weights[j + k]`` (see
    :func:`_field_lanes`), ``ey`` the same from ``grid[gy:]``; the lanes' cells lie in
    c0..c1. grid, cells, weights: flat int32 (cells and weights 16 readable from j)."""
    ints = (o, width, sx, a, sy, c, at, stride, gy, j, c0, c1, count)
    if not _args_ok(out, image, box, ints, (grid, cells, weights)):
        return None

    def codegen(context, builder, sig, args):
        t = list(zip(sig.args, args, strict=True))
        out, o, image, width, sx, a, sy, c, grid, at, stride, gy, cells, weights, j, c0, c1 = t[:17]
        box, count = t[17:]
        h = _Lanes(context, builder)
        zero = (types.intp, ir.Constant(context.get_value_type(types.intp), 0))
        ex = _field_lanes(h, grid, at, stride, zero, cells, weights, j, c0, c1)
        ey = _field_lanes(h, grid, at, stride, gy, cells, weights, j, c0, c1)
        xs = builder.add(_affine_lanes(h, sx, a, j), ex)
        ys = builder.add(_affine_lanes(h, sy, c, j), ey)
        _sample(h, out, o, image, width, xs, ys, box, count)
        return context.get_dummy_value()

    sig = types.none(out, o, image, width, sx, a, sy, c, grid, at, stride, gy, cells, weights,
                     j, c0, c1, box, count)  # fmt: skip
    return sig, codegen


def _split_mul(builder, s, w):
    """``(s * w) >> 16`` for int32 lanes, exactly, where ``0 <= w < 65536`` and ``s`` is
    small enough that ``(s >> 16) * w`` fits: with ``s = 65536 h + l`` (0 <= l < 65536),
    ``h w + ((l w) >>> 16)``, ``l w`` below 2**32 unsigned (no 64-bit product)."""
    high = builder.mul(builder.ashr(s, _const(16)), w)
    low = builder.lshr(builder.mul(builder.and_(s, _const(0xFFFF)), w), _const(16))
    return builder.add(high, low)


def _permute(builder, table, index):
    """Lane k of the result is ``table[index[k]]`` (indices within 0..15): written as 16
    extracts and inserts, which LLVM lowers to one variable permute (``vpermd``)."""
    result = ir.Constant(_V32, None)
    for k in range(LANES):
        at = builder.extract_element(index, ir.Constant(_I32, k))
        result = builder.insert_element(result, builder.extract_element(table, at),
                                        ir.Constant(_I32, k))  # fmt: skip
    return result


def _grid_row(h, grid, top, points, wy):
    """One axis of the elastic field along row y, at the grid's columns (lanes): the grid's
    rows around y (``grid[top:]``, ``grid[top + points:]``, 16 readable each) interpolated
    down to y with weight ``wy`` (the reference's first step), as (L, H, W): L the value at
    each grid column, and the step to the next column ``R - L = 65536 H + W``
    (0 <= W < 65536), split once a row for :func:`_grid_lanes`."""
    builder = h.builder
    up = h.load16(*grid, *top)
    down_at = builder.add(h.intp(top[1], top[0]), h.intp(points[1], points[0]))
    down = h.load16(grid[0], grid[1], types.intp, down_at)
    row = builder.add(up, _split_mul(builder, builder.sub(down, up), h.lanes(wy[1], wy[0])))
    ahead = ir.Constant(ir.VectorType(_I32, LANES), [min(k + 1, LANES - 1) for k in range(LANES)])
    step = builder.sub(builder.shuffle_vector(row, row, ahead), row)  # (last lane unused)
    return row, builder.ashr(step, _const(16)), builder.and_(step, _const(0xFFFF))


def _grid_lanes(builder, row, cell, weight):
    """The field in lane k from :func:`_grid_row`'s (L, H, W) at the lane's grid cell c:
    ``L + ((R - L) weight >> 16)`` = ``L + H weight + ((W weight) >>> 16)`` (the
    reference's interpolation along x; exact: :func:`_split_mul`)."""
    left, high, low = (_permute(builder, v, cell) for v in row)
    low = builder.lshr(builder.mul(low, weight), _const(16))
    return builder.add(builder.add(left, builder.mul(high, weight)), low)


@intrinsic
def sample16g(typingctx, out, o, image, width, sx, a, sy, c, grid, top, points, gy, wy, cells,
              weights, j0, blocks, side, box):  # fmt: skip
    """:func:`sample16` along a row, ``blocks`` vectors from column j0 (the last one's
    lanes up to ``side``), with the elastic field computed in the lanes from the grid
    itself (at most 16 points a side): ``grid`` flat int32, the x displacements' grid row
    by row (``points`` a row), the y ones from ``gy``; the row's grid cell starts at
    ``top`` (its row of points, and the next), ``wy`` its weight down the cell; ``cells``,
    ``weights`` (flat int32, 16 readable from every vector's first column): each column's
    cell and weight along x. The grid arrays need 16 readable values from each row's
    start. The grid's rows are interpolated down to the row once for all its vectors."""
    ints = (o, width, sx, a, sy, c, top, points, gy, wy, j0, blocks, side)
    if not _args_ok(out, image, box, ints, (grid, cells, weights)):
        return None

    def codegen(context, builder, sig, args):
        t = list(zip(sig.args, args, strict=True))
        out, o, image, width, sx, a, sy, c, grid, top, points, gy, wy, cells, weights = t[:15]
        j0, blocks, side, box = t[15:]
        h = _Lanes(context, builder)
        row_x = _grid_row(h, grid, top, points, wy)
        top_y = builder.add(h.intp(top[1], top[0]), h.intp(gy[1], gy[0]))
        row_y = _grid_row(h, grid, (types.intp, top_y), points, wy)
        first, last = h.intp(j0[1], j0[0]), h.intp(side[1], side[0])
        at = h.intp(o[1], o[0])
        intp = context.get_value_type(types.intp)
        with cgutils.for_range(builder, h.intp(blocks[1], blocks[0])) as loop:
            jv = builder.add(first, builder.mul(loop.index, ir.Constant(intp, LANES)))
            j = (types.intp, jv)
            cell, weight = h.load16(*cells, *j), h.load16(*weights, *j)
            ex = _grid_lanes(builder, row_x, cell, weight)
            ey = _grid_lanes(builder, row_y, cell, weight)
            xs = builder.add(_affine_lanes(h, sx, a, j), ex)
            ys = builder.add(_affine_lanes(h, sy, c, j), ey)
            left = builder.sub(last, jv)
            count = builder.select(builder.icmp_signed("<", left, ir.Constant(intp, LANES)),
                                   left, ir.Constant(intp, LANES))  # fmt: skip
            _sample(h, out, (types.intp, builder.add(at, jv)), image, width, xs, ys, box,
                    (types.intp, count))  # fmt: skip
        return context.get_dummy_value()

    sig = types.none(out, o, image, width, sx, a, sy, c, grid, top, points, gy, wy, cells,
                     weights, j0, blocks, side, box)  # fmt: skip
    return sig, codegen


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
