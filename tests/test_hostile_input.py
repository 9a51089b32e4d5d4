"""Hostile files cost what they hold, not what they claim: IDX data that declares gigabytes,
model files whose header or metadata lie, devices, pipes, sparse files and image bombs.

The memory-bounded cases run in a subprocess under ``resource.setrlimit(RLIMIT_AS)``:
before the limits existed each of them allocated gigabytes (or raised MemoryError).
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from fastmlp import MLP, IDXError, ModelFileError, read_idx

resource = pytest.importorskip("resource")

MEMORY_LIMIT = 512 << 20  # bytes of address space for the bounded child: python+numpy ~120 MB


def bounded(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child whose address space is capped at MEMORY_LIMIT."""
    prelude = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **env},
    )  # fmt: skip


def zeros_gzip(path: Path, header: bytes, megabytes: int) -> None:
    """An IDX gzip that honestly holds ``megabytes`` MB of zero pixels after its header,
    written as one small member per megabyte (a few KB on disk in all)."""
    member = gzip.compress(bytes(1 << 20), compresslevel=9, mtime=0)
    with open(path, "wb") as f:
        f.write(gzip.compress(header, mtime=0))
        for _ in range(megabytes):
            f.write(member)


def idx_header(*shape: int) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def test_a_gzip_declaring_gigabytes_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb-idx1-ubyte.gz"
    mb = 1200  # 1.2 GB of honest zeros in a 1.2 MB file, over the default 1 GiB limit
    zeros_gzip(path, idx_header(mb << 20), mb)
    assert path.stat().st_size < 2 << 20
    result = bounded(f"""
        from fastmlp.idx import read_idx, IDXError
        try:
            read_idx({str(path)!r})
        except IDXError as exc:
            print(exc)
    """)
    assert result.returncode == 0, result.stderr
    assert "more than the 1073741824-byte limit" in result.stdout
    assert "FASTMLP_MAX_DATA_BYTES" in result.stdout and str(path) in result.stdout


def test_the_data_limit_can_be_lowered_and_lifted(tmp_path, monkeypatch):
    path = tmp_path / "big-idx1-ubyte.gz"
    zeros_gzip(path, idx_header(3 << 20), 3)
    monkeypatch.setenv("FASTMLP_MAX_DATA_BYTES", str(1 << 20))
    with pytest.raises(IDXError, match="more than the 1048576-byte limit"):
        read_idx(path)
    assert read_idx(path, max_bytes=3 << 20).shape == (3 << 20,)
    monkeypatch.setenv("FASTMLP_MAX_DATA_BYTES", "lots")
    with pytest.raises(ValueError, match="FASTMLP_MAX_DATA_BYTES must be a whole number"):
        read_idx(path)


def test_a_gzip_is_inflated_once_not_at_twice_its_size(tmp_path):
    # 300 MB of pixels in a 512 MB address space: a second copy would not fit.
    path = tmp_path / "large-idx1-ubyte.gz"
    zeros_gzip(path, idx_header(300 << 20), 300)
    result = bounded(f"""
        from fastmlp.idx import read_idx
        a = read_idx({str(path)!r})
        print(a.shape[0], int(a[::4096].sum()))
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(300 << 20), "0"]


def model_file(path: Path, tensors: dict, metadata: dict) -> None:
    save_file(tensors, str(path), metadata={k: str(v) for k, v in metadata.items()})


def lying_metadata(sizes: list[int]) -> dict:
    return {
        "format": "fastmlp-mlp",
        "sizes": json.dumps(sizes),
        "activation": "relu",
        "output": "softmax",
        "loss": "cross_entropy",
        "layer_names": json.dumps([str(2 * i) for i in range(len(sizes) - 1)]),
    }


def test_metadata_claiming_a_huge_network_is_checked_against_the_tensors(tmp_path):
    path = tmp_path / "liar.safetensors"
    tensors = MLP([784, 16, 10], backend="numpy").state_dict()
    model_file(path, tensors, lying_metadata([784, 10_000_000, 10]))  # 29.6 GiB claimed
    result = bounded(f"""
        from fastmlp import MLP, ModelFileError
        try:
            MLP.load({str(path)!r}, backend="numpy")
        except ModelFileError as exc:
            print(exc)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "do not fit the architecture 784-10000000-10" in result.stdout
    assert "0.weight has shape (16, 784), expected (10000000, 784)" in result.stdout


@pytest.mark.parametrize(
    ("sizes", "layer_names", "words"),
    [
        ("[784]", '["0"]', "malformed"),
        ("[784, -3, 10]", '["0", "2"]', "malformed"),
        ('"784-16-10"', '["0", "2"]', "malformed"),
        ("[784, 16, 10]", '["0"]', "malformed"),
        ("[784, 16, 10]", '["0", "4"]', "missing 4.weight, 4.bias"),
    ],
)
def test_malformed_architectures_are_one_clear_error(tmp_path, sizes, layer_names, words):
    path = tmp_path / "m.safetensors"
    metadata = lying_metadata([784, 16, 10]) | {"sizes": sizes, "layer_names": layer_names}
    model_file(path, MLP([784, 16, 10], backend="numpy").state_dict(), metadata)
    with pytest.raises(ModelFileError, match=words):
        MLP.load(path, backend="numpy")


def test_a_huge_sparse_file_is_rejected_from_its_size_or_header(tmp_path):
    path = tmp_path / "sparse.safetensors"
    with open(path, "wb") as f:
        f.truncate(30 << 30)  # 30 GB of zeros that take no disk
    code = f"""
        from fastmlp import MLP, ModelFileError
        try:
            MLP.load({str(path)!r}, backend="numpy")
        except ModelFileError as exc:
            print(exc)
    """
    result = bounded(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "more than the 1073741824-byte limit on model files" in result.stdout
    assert "FASTMLP_MAX_MODEL_BYTES" in result.stdout
    # With the limit lifted, its first 8 bytes (a header of 0 bytes) still say enough.
    result = bounded(code, FASTMLP_MAX_MODEL_BYTES=str(1 << 40))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "its first 8 bytes give a header of 0 bytes" in result.stdout


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_devices_and_pipes_are_not_model_files(tmp_path):
    result = bounded("""
        from fastmlp import MLP, ModelFileError
        try:
            MLP.load("/dev/zero", backend="numpy")
        except ModelFileError as exc:
            print(exc)
    """)
    assert "/dev/zero: not a regular file" in result.stdout, result.stderr[-2000:]
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="not a regular file"):  # and no wait for a writer
        MLP.load(fifo, backend="numpy")


def test_headers_that_do_not_fit_the_file(tmp_path):
    path = tmp_path / "m.safetensors"
    MLP([4, 3, 2], backend="numpy").save(path)
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    cases = {
        "longer than the file": (len(data)).to_bytes(8, "little") + data[8:],
        "2**64 - 1": b"\xff" * 8 + data[8:],
        "not JSON": data[:8] + b"\x00" * header_len + data[8 + header_len :],
    }
    for label, content in cases.items():
        path.write_bytes(content)
        with pytest.raises(ModelFileError, match="not a readable safetensors file") as info:
            MLP.load(path, backend="numpy")
        assert str(path) in str(info.value), label
    header = json.loads(data[8 : 8 + header_len])
    header["0.weight"]["data_offsets"][1] += 10**12  # a tensor reaching far past the end
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + header_len :])
    with pytest.raises(ModelFileError, match="'0.weight' lies outside the file"):
        MLP.load(path, backend="numpy")


def png(width: int, height: int) -> bytes:
    """A PNG header declaring width x height grey pixels (Pillow checks it on open)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1), 9)  # one row; the rest never gets read
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20000, 8000])
def test_an_image_bomb_is_one_line_naming_it(tmp_path, side):
    from fastmlp.preprocess import load_digit

    path = tmp_path / "bomb.png"
    path.write_bytes(png(side, side))
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match=f"{path}: the image is too large"):
        load_digit(path)


def test_specks_on_a_huge_page_are_no_digit_and_no_warning(tmp_path):
    import warnings

    from PIL import Image

    from fastmlp.preprocess import load_digit

    page = Image.new("L", (3000, 3000), 255)
    page.putpixel((5, 5), 0)
    page.putpixel((2990, 2990), 0)
    path = tmp_path / "specks.png"
    page.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=f"{path}: no digit found"):
            load_digit(path)


def test_a_damaged_image_is_one_line_naming_it(tmp_path):
    from PIL import Image

    from fastmlp.preprocess import load_digit

    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=f"{path}: a damaged image"):
        load_digit(path)
