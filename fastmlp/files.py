"""Files that appear whole or not at all: write beside the target, then rename over it.

A crash, a full disk or Ctrl-C mid-write leaves the previous file (or none) in place,
never a half-written one that looks valid.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def open_temp(folder: str | os.PathLike[str], name: str) -> tuple[int, str]:
    """Create a new hidden temporary file for ``name`` in ``folder``.

    Unlike :func:`tempfile.mkstemp`, the file gets the usual permissions (0o666 less
    the umask), since it is meant to be renamed into place.

    Returns
    -------
    (fd, path)
        An open write-only descriptor and the temporary file's path.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: could not create a temporary file for {name}")


@contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write; on leaving the block it is synced and renamed to ``path``.

    An exception inside the block removes the temporary file and leaves ``path`` as it was.
    """
    target = os.path.abspath(os.fspath(path))
    fd, tmp = open_temp(os.path.dirname(target), os.path.basename(target))
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        unlink_quietly(tmp)
        raise


def write_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` (creating its folder) as a whole, or not at all."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as f:
        f.write(data)


def unlink_quietly(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
