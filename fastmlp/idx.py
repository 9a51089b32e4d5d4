"""Read and write IDX files, the format of MNIST and its look-alikes.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the items in C order,
big-endian. Files may be gzip-compressed; that is recognised from the gzip magic
bytes, never from the file name.
"""

from __future__ import annotations

import gzip
import os
import stat
import sys
import zlib
from collections.abc import Iterator
from typing import BinaryIO, Protocol

import numpy as np

from fastmlp.files import byte_limit, replacing

__all__ = ["IDXError", "read_idx", "write_idx", "gunzip_chunks", "max_data_bytes"]

#: IDX type code -> dtype as stored on disk (big-endian).
TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {(dt.kind, dt.itemsize): code for code, dt in TYPE_CODES.items()}
_KNOWN = ", ".join(f"0x{code:02X} {dt.kind}{dt.itemsize * 8}" for code, dt in TYPE_CODES.items())

_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data more than 1032-fold, so a gzip file of n bytes can never
# hold more than about 1032 n bytes: a header claiming more is known to lie before
# anything is decompressed.
_MAX_DEFLATE_RATIO = 1032
_READ_CHUNK = 1 << 18  # compressed bytes fed to zlib at a time
_OUT_CHUNK = 1 << 22  # most decompressed bytes produced per zlib call


#: Largest payload a data file may declare unless FASTMLP_MAX_DATA_BYTES says otherwise:
#: generous for real data sets (MNIST's training images are 47 MB, EMNIST's largest
#: split 550 MB), small enough that a hostile header cannot exhaust memory.
DEFAULT_MAX_DATA_BYTES = 1 << 30


def max_data_bytes() -> int:
    """The limit on what one IDX file may expand to, in bytes.

    ``FASTMLP_MAX_DATA_BYTES`` (a whole number of bytes) overrides the default of 1 GiB.
    """
    return byte_limit("FASTMLP_MAX_DATA_BYTES", DEFAULT_MAX_DATA_BYTES)


class IDXError(ValueError):
    """An IDX file is malformed; the message names the file and what is wrong."""


def read_idx(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed, into a native-endian array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip compression is detected from its first two bytes.
    max_bytes : int, optional
        Largest payload accepted, checked against the header before anything is read
        or decompressed; default :func:`max_data_bytes` (1 GiB, or
        ``$FASTMLP_MAX_DATA_BYTES``).

    Returns
    -------
    numpy.ndarray
        A writable, C-contiguous array with the shape and type the header declares
        (uint8, int8, int16, int32, float32 or float64), in native byte order.

    Raises
    ------
    IDXError
        If the header is short or invalid, the payload is shorter or longer than the
        header says, declares more than ``max_bytes``, or the gzip stream is corrupt or
        truncated. The size the header claims is checked against the limit and the file
        before any memory is allocated for it, and a gzip file is decompressed straight
        into one array of that size (never twice its size).
    OSError
        If the file cannot be opened (missing, a directory, no permission).
    """
    name = os.fspath(path)
    bound = max_data_bytes() if max_bytes is None else max_bytes
    with open(name, "rb") as f:
        size = _regular_size(f)
        if f.peek(2)[:2] == _GZIP_MAGIC:
            reader: _Reader = _GunzipReader(f, name)
            limit = None if size is None else size * _MAX_DEFLATE_RATIO + 1024
            where = "after gzip decompression"
        else:
            reader = f
            limit = size
            where = None
        dtype, shape, header_len = _read_header(reader, name, where)
        claimed = _prod(shape) * dtype.itemsize
        what = f"{_describe(shape, dtype)} needs {claimed} bytes"
        if limit is not None and claimed > limit - header_len:
            kind = "the file holds" if where is None else "a gzip file of its size holds at most"
            raise IDXError(
                f"{name}: payload is shorter than the header says: {what}, "
                f"{kind} {max(limit - header_len, 0)}"
            )
        if claimed > bound:
            raise IDXError(
                f"{name}: the header declares {what}, more than the {bound}-byte limit on "
                "data files (set FASTMLP_MAX_DATA_BYTES, or pass max_bytes, to allow more)"
            )
        if where is None and limit is not None:
            if claimed < limit - header_len:
                raise IDXError(
                    f"{name}: payload is longer than the header says: {what}, "
                    f"the file holds {limit - header_len}"
                )
            data = bytearray(claimed)
            got = f.readinto(data)
            if got < claimed:  # the file shrank after we looked at its size
                data = data[:got]
            elif f.read(1):
                data.append(0)
        else:
            # At most one byte more than claimed: enough to know the payload is too long
            # without reading (or decompressing) the whole surplus.
            data = _read_upto(reader, claimed)
    if len(data) != claimed:
        relation = "shorter" if len(data) < claimed else "longer"
        held = f"{len(data)}" if len(data) < claimed else f"more than {claimed}"
        raise IDXError(
            f"{name}: payload is {relation} than the header says: {what}, the file holds {held}"
        )
    return _to_array(data, dtype, shape, name)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an array as an IDX file, atomically.

    The data go to a temporary file in the destination folder, which then replaces
    ``path`` in one step, so readers never see a half-written file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination. A name ending in ``.gz`` is written gzip-compressed.
    array : numpy.ndarray
        At least one dimension, each below 2**32; dtype uint8, int8, int16, int32,
        float32 or float64 in either byte order.

    Raises
    ------
    IDXError
        If the array's dtype or shape cannot be represented in IDX.
    OSError
        If the file cannot be written.
    """
    name = os.fspath(path)
    a = np.asarray(array)
    code = _CODE_OF.get((a.dtype.kind, a.dtype.itemsize))
    if code is None:
        raise IDXError(f"{name}: cannot write dtype {a.dtype} as IDX (supported: {_KNOWN})")
    if not 1 <= a.ndim <= 255:
        raise IDXError(f"{name}: IDX needs 1 to 255 dimensions, the array has {a.ndim}")
    if max(a.shape) > 0xFFFFFFFF:
        raise IDXError(f"{name}: dimension sizes {a.shape} do not fit in 32 bits")
    header = bytes([0, 0, code, a.ndim]) + np.array(a.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(a, dtype=TYPE_CODES[code])
    body = memoryview(payload.reshape(-1).view(np.uint8))

    with replacing(name) as f:
        if name.endswith(".gz"):
            # mtime=0 and no stored name make the output depend on the data alone.
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=6) as gz:
                gz.write(header)
                gz.write(body)
        else:
            f.write(header)
            f.write(body)


def gunzip_chunks(f: BinaryIO, name: str) -> Iterator[bytes]:
    """Yield the decompressed content of a gzip stream, a bounded piece at a time.

    Handles multi-member streams and zero padding after members, as :mod:`gzip`
    does; each member's CRC and length are checked by zlib when it ends.

    Parameters
    ----------
    f : binary file
        Positioned at the start of the gzip stream.
    name : str
        The file's name, for error messages.

    Raises
    ------
    IDXError
        If the stream is corrupt or ends before its end-of-stream marker.
    """
    d = zlib.decompressobj(wbits=31)
    in_member = True
    buf = f.read(_READ_CHUNK)
    while True:
        if not in_member:
            buf = buf.lstrip(b"\0")
            if not buf:
                buf = f.read(_READ_CHUNK)
                if not buf:
                    return
                continue
            d = zlib.decompressobj(wbits=31)
            in_member = True
        try:
            out = d.decompress(buf, _OUT_CHUNK)
        except zlib.error as exc:
            raise IDXError(f"{name}: corrupt gzip data ({exc})") from None
        buf = d.unconsumed_tail
        if out:
            yield out
        if d.eof:
            buf, in_member = d.unused_data, False
        elif not buf and not out:
            # zlib has no output pending and wants more input.
            buf = f.read(_READ_CHUNK)
            if not buf:
                raise IDXError(f"{name}: truncated gzip data (the stream ends before its end)")


class _Reader(Protocol):  # what read_idx needs from a raw file or a gunzip stream
    def read(self, n: int, /) -> bytes | bytearray: ...


class _GunzipReader:
    """File-like ``read(n)`` over :func:`gunzip_chunks`."""

    def __init__(self, f: BinaryIO, name: str) -> None:
        self._chunks = gunzip_chunks(f, name)
        self._left = b""

    def read(self, n: int, /) -> bytearray:
        parts = []
        have = 0
        chunk = self._left
        while True:
            if chunk:
                take = n - have
                if len(chunk) > take:
                    chunk, self._left = chunk[:take], chunk[take:]
                else:
                    self._left = b""
                parts.append(chunk)
                have += len(chunk)
            if have >= n:
                break
            chunk = next(self._chunks, None)
            if chunk is None:
                break
        return bytearray().join(parts)


def _read_header(reader: _Reader, name: str, where: str | None) -> tuple[np.dtype, tuple, int]:
    after = "" if where is None else f" ({where})"
    magic = reader.read(4)
    if not magic:
        raise IDXError(f"{name}: file is empty{after}, not an IDX file")
    if len(magic) < 4:
        raise IDXError(
            f"{name}: short header{after}: {len(magic)} bytes, an IDX header needs at least 4"
        )
    if magic[0] or magic[1]:
        raise IDXError(
            f"{name}: bad magic number 0x{bytes(magic).hex()}{after}: "
            "the first two bytes of an IDX file must be zero"
        )
    code, ndim = magic[2], magic[3]
    if code not in TYPE_CODES:
        raise IDXError(f"{name}: unknown type code 0x{code:02X} (known: {_KNOWN})")
    if ndim == 0:
        raise IDXError(f"{name}: header declares zero dimensions")
    dims = reader.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise IDXError(
            f"{name}: short header{after}: {ndim} dimensions need {4 + 4 * ndim} header bytes, "
            f"the file has {4 + len(dims)}"
        )
    shape = tuple(int(x) for x in np.frombuffer(bytes(dims), dtype=">u4"))
    return TYPE_CODES[code], shape, 4 + 4 * ndim


def _read_upto(reader: _Reader, n: int) -> bytearray:
    """Up to ``n`` bytes into one buffer, plus one more byte if the stream has it.

    The buffer is allocated once the header's claim has passed the size limit, so a gzip
    file costs its declared size in memory, not twice that; a stream that ends early gives
    a shorter buffer, one that goes on a longer one (by a byte: enough to know).
    """
    data = bytearray(n)
    view = memoryview(data)
    got = 0
    while got < n:
        piece = reader.read(min(n - got, _OUT_CHUNK))
        if not piece:
            break
        view[got : got + len(piece)] = piece
        got += len(piece)
    view.release()
    if got < n:
        del data[got:]
    else:
        data += reader.read(1)
    return data


def _to_array(buf: bytearray, dtype: np.dtype, shape: tuple, name: str) -> np.ndarray:
    a = np.frombuffer(buf, dtype=dtype)
    if dtype.itemsize > 1 and sys.byteorder == "little":
        a.byteswap(inplace=True)  # in place: no second copy of a large payload
    a = a.view(dtype.newbyteorder("="))
    try:
        return a.reshape(shape)
    except ValueError:  # an empty array whose other dimensions overflow NumPy's size
        raise IDXError(f"{name}: shape {_shape_str(shape)} is too large for NumPy") from None


def _regular_size(f: BinaryIO) -> int | None:
    st = os.fstat(f.fileno())
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _prod(shape: tuple) -> int:
    n = 1
    for d in shape:  # Python ints: a lying header cannot overflow this
        n *= d
    return n


def _shape_str(shape: tuple) -> str:
    return "x".join(str(d) for d in shape)


def _describe(shape: tuple, dtype: np.dtype) -> str:
    return f"{_shape_str(shape)} {dtype.newbyteorder('=').name}"
