"""IDX reading and writing: every type code, raw and gzip, and every kind of bad file."""

from __future__ import annotations

import gzip
import os
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastmlp.idx import IDXError, read_idx, write_idx

TYPES = {0x08: "u1", 0x09: "i1", 0x0B: "i2", 0x0C: "i4", 0x0D: "f4", 0x0E: "f8"}


def header(code: int, shape: tuple[int, ...], magic: bytes = b"\0\0") -> bytes:
    return magic + bytes([code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def put(path: Path, data: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def expect_error(path: Path, *words: str) -> str:
    with pytest.raises(IDXError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, message
    return message


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("code, dtype", TYPES.items())
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_every_type_code(tmp_path, code, dtype, suffix):
    a = (np.arange(60).reshape(3, 4, 5) - 17).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, a)
    raw = path.read_bytes()
    raw = gzip.decompress(raw) if suffix else raw
    assert raw[:4] == bytes([0, 0, code, 3])
    assert raw[4:16] == struct.pack(">3I", 3, 4, 5)
    assert raw[16:] == a.astype(np.dtype(dtype).newbyteorder(">")).tobytes()  # big-endian
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == (3, 4, 5)
    np.testing.assert_array_equal(a, b)
    assert b.flags.writeable and b.flags.c_contiguous


def test_reads_by_content_not_name(tmp_path):
    a = np.arange(10, dtype=np.int16)
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "b", a)
    (tmp_path / "a.gz").rename(tmp_path / "gzip-without-suffix")
    (tmp_path / "b").rename(tmp_path / "raw-with-suffix.gz")
    np.testing.assert_array_equal(read_idx(tmp_path / "gzip-without-suffix"), a)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "raw-with-suffix.gz")), a)


def test_big_endian_input_and_empty_dimensions(tmp_path):
    a = np.arange(6, dtype=">f8").reshape(2, 3) / 7
    write_idx(tmp_path / "be", a)
    b = read_idx(tmp_path / "be")
    assert b.dtype == np.float64 and b.dtype.isnative
    np.testing.assert_array_equal(a, b)
    write_idx(tmp_path / "empty", np.zeros((0, 28, 28), np.uint8))
    assert read_idx(tmp_path / "empty").shape == (0, 28, 28)


def test_multi_member_gzip_and_padding(tmp_path):
    data = header(0x08, (4,)) + b"\1\2\3\4"
    put(tmp_path / "m", gzip.compress(data[:6]) + gzip.compress(data[6:]) + b"\0" * 10)
    np.testing.assert_array_equal(read_idx(tmp_path / "m"), [1, 2, 3, 4])


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    path = tmp_path / "a.idx"
    write_idx(path, np.ones(3, np.uint8))
    assert os.listdir(tmp_path) == ["a.idx"]

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        write_idx(path, np.zeros(5, np.uint8))
    assert os.listdir(tmp_path) == ["a.idx"]
    np.testing.assert_array_equal(read_idx(path), [1, 1, 1])  # the old file, intact


def test_write_refuses_what_idx_cannot_hold(tmp_path):
    for bad in (np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, np.float16)):
        with pytest.raises(IDXError, match="cannot write dtype"):
            write_idx(tmp_path / "x", bad)
    with pytest.raises(IDXError, match="dimensions"):
        write_idx(tmp_path / "x", np.uint8(3))
    assert os.listdir(tmp_path) == []


def test_write_into_missing_folder_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_idx(tmp_path / "no" / "such" / "x", np.zeros(3, np.uint8))


# --- bad files --------------------------------------------------------------------------


def test_missing_file_and_directory_are_oserrors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")
    with pytest.raises(IsADirectoryError):
        read_idx(tmp_path)


@pytest.mark.parametrize("compress", [False, True])
def test_empty_file(tmp_path, compress):
    expect_error(put(tmp_path / "e", b"", compress), "empty")


@pytest.mark.parametrize("compress", [False, True])
def test_short_header(tmp_path, compress):
    expect_error(put(tmp_path / "s", b"\0\0\x08", compress), "short header", "3 bytes")
    # the magic promises 3 dimensions, only 2 follow
    path = put(tmp_path / "d", header(0x08, (2, 2, 2))[:12], compress)
    expect_error(path, "short header", "3 dimensions need 16")


@pytest.mark.parametrize("compress", [False, True])
def test_bad_magic(tmp_path, compress):
    expect_error(put(tmp_path / "m", header(0x08, (1,), b"\0\1") + b"x", compress), "bad magic")
    expect_error(put(tmp_path / "p", b"P5\n28 28\n255\n" + bytes(784), compress), "bad magic")


@pytest.mark.parametrize("compress", [False, True])
def test_unknown_type_code(tmp_path, compress):
    expect_error(put(tmp_path / "t", header(0x0A, (1,)) + b"x", compress), "type code 0x0A")


@pytest.mark.parametrize("compress", [False, True])
def test_zero_dimensions(tmp_path, compress):
    expect_error(put(tmp_path / "z", b"\0\0\x08\0", compress), "zero dimensions")


@pytest.mark.parametrize("compress", [False, True])
def test_payload_shorter_and_longer(tmp_path, compress):
    path = put(tmp_path / "short", header(0x0C, (2, 3)) + bytes(23), compress)
    expect_error(path, "shorter than the header says", "2x3 int32 needs 24 bytes")
    path = put(tmp_path / "long", header(0x0C, (2, 3)) + bytes(25), compress)
    expect_error(path, "longer than the header says", "needs 24 bytes")


@pytest.mark.parametrize("compress", [False, True])
def test_huge_claim_fails_at_once_without_allocating(tmp_path, compress):
    path = put(tmp_path / "huge", header(0x08, (2**31, 2**31, 2**31)) + bytes(100), compress)
    expect_error(path, "shorter than the header says", "2147483648x2147483648x2147483648")


def test_gzip_claim_beyond_what_its_size_can_hold(tmp_path):
    # 1 MB of zeros is a ~1 kB gzip file; a claim of 2 GB cannot be true.
    path = put(tmp_path / "z", header(0x08, (2**31,)) + bytes(2**20), compress=True)
    expect_error(path, "shorter than the header says", "gzip file of its size holds at most")


def test_gzip_payload_longer_is_found_without_decompressing_it_all(tmp_path):
    # 200 MB of zeros behind a 4-byte claim: reading stops a few MB in.
    big = gzip.compress(header(0x08, (4,)) + bytes(200 << 20), compresslevel=1)
    path = put(tmp_path / "bomb", big)
    expect_error(path, "longer than the header says", "more than 4")


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(header(0x08, (1000,)) + bytes(range(250)) * 4)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    expect_error(put(tmp_path / "flip", bytes(flipped)), "corrupt gzip")
    bad_crc = good[:-8] + bytes(4) + good[-4:]
    expect_error(put(tmp_path / "crc", bad_crc), "corrupt gzip")
    expect_error(put(tmp_path / "magic-only", b"\x1f\x8b"), "gzip")
    expect_error(put(tmp_path / "garbage-after", good + b"junk"), "corrupt gzip")


def test_truncated_gzip(tmp_path):
    good = gzip.compress(header(0x08, (1000,)) + bytes(range(250)) * 4)
    expect_error(put(tmp_path / "cut", good[: len(good) // 2]), "truncated gzip")
    expect_error(put(tmp_path / "no-trailer", good[:-8]), "truncated gzip")


def test_empty_array_with_overflowing_shape(tmp_path):
    path = put(tmp_path / "o", header(0x08, (0, 2**32 - 1, 2**32 - 1, 2**32 - 1)))
    expect_error(path, "too large")


# --- properties -------------------------------------------------------------------------

DTYPES = st.sampled_from([np.dtype(t) for t in TYPES.values()]).flatmap(
    lambda dt: st.sampled_from([dt.newbyteorder("<"), dt.newbyteorder(">")])
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=hnp.arrays(DTYPES, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)),
    compress=st.booleans(),
)
def test_property_round_trip(a, compress):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "a.idx" + (".gz" if compress else ""))
        write_idx(path, a)
        b = read_idx(path)
    native = a.dtype.newbyteorder("=")
    assert b.dtype == native and b.shape == a.shape
    assert b.tobytes() == a.astype(native).tobytes()  # bytes: NaN payloads and -0.0 too


FUZZ_HEADERS = st.builds(
    lambda code, dims, zero: (b"\0\0" if zero else b"\0\1") + bytes([code, len(dims)])
    + struct.pack(f">{len(dims)}I", *dims),
    st.sampled_from([*TYPES, 0x00, 0x0A, 0xFF]),
    st.lists(st.sampled_from([0, 1, 2, 3, 7, 2**31, 2**32 - 1]), max_size=4),
    st.booleans(),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=64), st.tuples(FUZZ_HEADERS, st.binary(max_size=64)).map(
        lambda t: t[0] + t[1])),
    compress=st.booleans(),
    cut=st.integers(min_value=0, max_value=80),
)  # fmt: skip
def test_property_random_bytes_give_an_array_or_a_clean_error(data, compress, cut):
    blob = gzip.compress(data) if compress else data
    if compress and cut:
        blob = blob[: len(blob) - cut % len(blob)]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzz")
        with open(path, "wb") as f:
            f.write(blob)
        try:
            result = read_idx(path)
        except IDXError as exc:
            assert path in str(exc)
        except OSError:
            pass
        else:
            assert isinstance(result, np.ndarray)


@pytest.mark.skipif(sys.byteorder != "little", reason="checks the byte swap on little-endian")
def test_values_are_swapped_to_native(tmp_path):
    put(tmp_path / "i", header(0x0B, (2,)) + b"\x01\x02\xff\xfe")
    np.testing.assert_array_equal(read_idx(tmp_path / "i"), [0x0102, -2])
