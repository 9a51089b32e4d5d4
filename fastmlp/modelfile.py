"""Model files: safetensors (never pickle), written atomically, readable by PyTorch as they are.

This module reads and writes named tensors and string metadata; it knows the
``fastmlp-mlp`` layout of those (dense layers ``"<name>.weight"`` (out, in) and
``"<name>.bias"``, the architecture in ``__metadata__``) but nothing of the ``MLP`` class,
which builds itself from them (:meth:`fastmlp.model.MLP.load`).

A model file may come from anywhere, so reading one costs at most what it holds: the
file must be a regular file no larger than :func:`max_model_bytes` (1 GiB by default;
``FASTMLP_MAX_MODEL_BYTES`` lifts it), its header length and every tensor's extent are
checked against the file's size before anything is read, and the architecture its
metadata claims is checked against the tensors actually present.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastmlp.files import byte_limit, write_atomically

FORMAT = "fastmlp-mlp"
FORMAT_VERSION = "1"

#: Largest model file read unless FASTMLP_MAX_MODEL_BYTES says otherwise. A 784-256-256-10
#: model is 1 MB; a 1 GiB file holds 268 million float32 parameters.
DEFAULT_MAX_MODEL_BYTES = 1 << 30
# safetensors itself refuses headers over 100 MB; ours are a few kilobytes.
_MAX_HEADER_BYTES = 100_000_000
_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
}


class ModelFileError(ValueError):
    """A model file that cannot be read back: truncated, foreign, or not matching itself."""


def max_model_bytes() -> int:
    """The size limit on model files (and on models the command line builds), in bytes.

    ``FASTMLP_MAX_MODEL_BYTES`` (a whole number of bytes) overrides the default of 1 GiB.
    """
    return byte_limit("FASTMLP_MAX_MODEL_BYTES", DEFAULT_MAX_MODEL_BYTES)


def write_model_file(
    path: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str],
    *,
    overwrite: bool = True,
) -> Path:
    """Write ``tensors`` and ``metadata`` to ``path`` as safetensors, atomically.

    A crash or signal mid-write leaves any old file intact; a replaced file keeps its
    permission bits. With ``overwrite=False`` an existing file is never replaced
    (``FileExistsError``). See :mod:`fastmlp.files` for links and protected files.
    """
    from safetensors.numpy import save

    contiguous = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    write_atomically(path, save(contiguous, metadata=dict(metadata)), overwrite=overwrite)
    return Path(path)


def read_model_file(
    path: str | os.PathLike, *, max_bytes: int | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and the header metadata of a safetensors file, at bounded cost.

    Parameters
    ----------
    path : path-like
        A regular file.
    max_bytes : int, optional
        Largest file accepted; default :func:`max_model_bytes`.

    Raises
    ------
    ModelFileError
        Not a regular file, larger than the limit, or not a well-formed safetensors file
        (the header and every tensor's extent are checked against the file's size
        before its data are read).
    OSError
        The file cannot be opened (missing, a folder, no permission).
    """
    limit = max_model_bytes() if max_bytes is None else max_bytes
    name = os.fspath(path)
    # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with open(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"{name} is a folder, not a model file")
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileError(f"{name}: not a regular file (a device, pipe or socket)")
        size = st.st_size
        if size > limit:
            raise ModelFileError(
                f"{name}: {size} bytes, more than the {limit}-byte limit on model files "
                "(set FASTMLP_MAX_MODEL_BYTES to read larger ones)"
            )
        prefix = f.read(8)
        if len(prefix) < 8:
            raise _not_safetensors(name, f"{size} bytes, too short for a header")
        header_len = int.from_bytes(prefix, "little")
        if not 2 <= header_len <= min(size - 8, _MAX_HEADER_BYTES):
            raise _not_safetensors(
                name, f"its first 8 bytes give a header of {header_len} bytes in a {size}-byte file"
            )
        try:
            header = json.loads(f.read(header_len))
        except (ValueError, UnicodeDecodeError) as exc:
            raise _not_safetensors(name, f"its header is not JSON ({exc})") from None
        data_len = size - 8 - header_len
        layout, metadata = _check_header(header, data_len, name)
        data = bytearray(data_len)
        if f.readinto(data) != data_len:
            raise _not_safetensors(name, "the file shrank while it was read")
    tensors = {
        key: np.frombuffer(data, dtype=dtype, count=_count(shape), offset=begin)
        .reshape(shape)
        .astype(np.dtype(dtype).newbyteorder("="), copy=False)
        for key, (dtype, shape, begin) in layout.items()
    }
    return tensors, metadata


def architecture_metadata(
    sizes: Sequence[int],
    activation: str,
    output: str,
    loss: str,
    init: str,
    seed: int,
    layer_names: Sequence[str],
    training: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The ``__metadata__`` strings of a ``fastmlp-mlp`` file."""
    from fastmlp import __version__

    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastmlp_version": __version__,
        "sizes": json.dumps([int(s) for s in sizes]),
        "activation": activation,
        "output": output,
        "loss": loss,
        "init": init,
        "seed": str(int(seed)),
        "layer_names": json.dumps([str(n) for n in layer_names]),
    }
    if training is not None:
        metadata["training"] = json.dumps(training)
    return metadata


@dataclass(frozen=True)
class Architecture:
    """What a ``fastmlp-mlp`` file says the model is, checked against its tensors."""

    sizes: tuple[int, ...]
    activation: str
    output: str
    loss: str
    init: str | None
    seed: int
    layer_names: tuple[str, ...]


def read_architecture(
    path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]
) -> Architecture:
    """The architecture in ``metadata``, after checking the tensors present have its shapes.

    So a small file whose metadata claims a huge network is refused before anything the
    size of that network is allocated.
    """
    if metadata.get("format") != FORMAT:
        raise ModelFileError(
            f"{path}: a safetensors file, but not a fastmlp model (its header has no "
            f"'format': '{FORMAT}' metadata)"
        )
    try:
        sizes = json.loads(metadata["sizes"])
        layer_names = json.loads(metadata["layer_names"])
        arch = Architecture(
            sizes=tuple(sizes),
            activation=str(metadata["activation"]),
            output=str(metadata["output"]),
            loss=str(metadata["loss"]),
            init=metadata.get("init"),
            seed=int(metadata.get("seed", 0)),
            layer_names=tuple(layer_names),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: fastmlp metadata is incomplete or malformed ({exc!r})"
        ) from None
    if (
        len(arch.sizes) < 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in arch.sizes)
        or len(arch.layer_names) != len(arch.sizes) - 1
        or not all(isinstance(n, str) for n in arch.layer_names)
    ):
        raise ModelFileError(
            f"{path}: fastmlp metadata is malformed (sizes {metadata['sizes']}, "
            f"layer_names {metadata['layer_names']})"
        )
    problems = []
    expected = {}
    for key, fan_in, fan_out in zip(arch.layer_names, arch.sizes[:-1], arch.sizes[1:], strict=True):
        expected[f"{key}.weight"] = (fan_out, fan_in)
        expected[f"{key}.bias"] = (fan_out,)
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected)}")
    for key, shape in expected.items():
        if key in tensors and tuple(tensors[key].shape) != shape:
            problems.append(f"{key} has shape {tuple(tensors[key].shape)}, expected {shape}")
    if problems:
        sizes_text = "-".join(map(str, arch.sizes))
        raise ModelFileError(
            f"{path}: the tensors do not fit the architecture {sizes_text} its metadata "
            "claims: " + "; ".join(problems)
        )
    return arch


def _check_header(
    header: Any, data_len: int, name: str
) -> tuple[dict[str, tuple[str, tuple[int, ...], int]], dict[str, str]]:
    """Each tensor's (dtype, shape, offset), checked to lie inside the data; the metadata."""
    if not isinstance(header, dict):
        raise _not_safetensors(name, "its header is not a JSON object")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _not_safetensors(name, "its __metadata__ is not a map of strings")
    layout = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if isinstance(entry, dict) and isinstance(entry.get("dtype"), str):
            if entry["dtype"] not in _DTYPES:
                raise _not_safetensors(
                    name, f"tensor {key!r} has dtype {entry['dtype']}, which NumPy cannot hold"
                )
        try:
            dtype = _DTYPES[entry["dtype"]]
            shape = tuple(entry["shape"])
            begin, end = entry["data_offsets"]
            ok = all(isinstance(d, int) and d >= 0 for d in (*shape, begin, end))
        except (KeyError, TypeError, ValueError):
            raise _not_safetensors(name, f"tensor {key!r} has a malformed entry") from None
        if not ok or not begin <= end <= data_len:
            raise _not_safetensors(name, f"tensor {key!r} lies outside the file (truncated?)")
        if end - begin != _count(shape) * np.dtype(dtype).itemsize:
            raise _not_safetensors(name, f"tensor {key!r}: its shape does not match its extent")
        layout[key] = (dtype, shape, begin)
    return layout, metadata


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:  # Python ints: a lying header cannot overflow this
        n *= d
    return n


def _not_safetensors(name: str, why: str) -> ModelFileError:
    return ModelFileError(f"{name}: not a readable safetensors file (truncated or foreign): {why}")
