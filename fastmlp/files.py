"""Files that appear whole or not at all: write beside the target, then rename over it.

A crash, a full disk, Ctrl-C or SIGTERM mid-write leaves the previous file (or none) in
place, never a half-written one that looks valid, and no temporary file behind.

What replacing a file keeps: its permission bits (a private 0600 model stays private),
and a symbolic link at the destination, whose target is what gets replaced. What it
refuses, with one line naming the user's path: a write-protected file (no write bit),
a broken symbolic link, a folder, a destination whose folder is missing or read-only.
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

#: Exit status of a process stopped by SIGTERM, as a shell reports it (128 + 15).
TERMINATED_STATUS = 128 + signal.SIGTERM


class Terminated(SystemExit):
    """SIGTERM, raised as an exception so that cleanup runs as it does for Ctrl-C."""

    def __init__(self) -> None:
        super().__init__(TERMINATED_STATUS)


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: unwind the stack (``finally`` blocks run), then exit with 143."""
    raise Terminated()


@contextmanager
def cleanup_on_sigterm() -> Iterator[None]:
    """While inside the block, SIGTERM raises :class:`Terminated` instead of killing at once.

    Only where Python lets us (the main thread) and only when SIGTERM still has its
    default action: a program that chose its own handler keeps it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def write_target(path: str | os.PathLike[str]) -> str:
    """The file that writing ``path`` must create or replace, after checking it can be.

    A symbolic link is followed (writing through it keeps the link); a broken one is an
    error. Nothing is created: this is the check made before hours of work, so that the
    work is not lost to a bad path at the end.

    Raises
    ------
    OSError
        One line naming ``path``: a folder, a write-protected file, a broken link, a
        missing or read-only folder, or a parent that is a file.
    """
    name = os.fspath(path)
    if os.path.islink(name) and not os.path.exists(name):
        raise FileNotFoundError(f"{name} is a broken symbolic link (to {os.readlink(name)})")
    target = os.path.realpath(name)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise NotADirectoryError(f"cannot write {name}: a part of its folder is a file") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"cannot write {name}: it is a folder")
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"cannot write {name}: it is not a regular file")
        if not st.st_mode & 0o222 or not os.access(target, os.W_OK):
            raise PermissionError(f"{name} is write-protected; not replacing it")
    folder = _existing_ancestor(os.path.dirname(target))
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"cannot write {name}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {name}: {folder} is not writable")
    return target


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file (through links, ``..`` or hard links), existing or not."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


@contextmanager
def replacing(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[BinaryIO]:
    """A binary file to write; on leaving the block it is synced and renamed to ``path``.

    An exception inside the block (Ctrl-C, or SIGTERM: see :func:`cleanup_on_sigterm`)
    removes the temporary file and leaves ``path`` as it was. The replaced file's
    permission bits are kept; a link at ``path`` is written through. With
    ``overwrite=False`` an existing file is never replaced (``FileExistsError``), even one
    that appears while we write.
    """
    name = os.fspath(path)
    target = write_target(name)
    old_mode = _mode_or_none(target)
    if old_mode is not None and not overwrite:
        raise FileExistsError(f"{name} already exists; not replacing it")
    with cleanup_on_sigterm():
        try:
            fd, tmp = open_temp(os.path.dirname(target), os.path.basename(target))
        except OSError as exc:
            raise type(exc)(f"cannot write {name}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                if old_mode is not None:
                    os.fchmod(f.fileno(), old_mode)
                yield f
                f.flush()
                os.fsync(f.fileno())
            if overwrite:
                os.replace(tmp, target)
            else:
                _rename_new(tmp, target)
            tmp = None
        except FileExistsError:
            raise FileExistsError(f"{name} already exists; not replacing it") from None
        except OSError as exc:  # a full disk, say: named by the user's path, not ours
            raise type(exc)(f"cannot write {name}: {exc.strerror or exc}") from None
        finally:
            if tmp is not None:
                unlink_quietly(tmp)


def write_atomically(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` (creating its folder) as a whole, or not at all."""
    Path(write_target(path)).parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, overwrite=overwrite) as f:
        f.write(data)


def unlink_quietly(path: str | os.PathLike[str]) -> None:
    with suppress(OSError):
        os.unlink(path)


def _rename_new(tmp: str, target: str) -> None:
    """Rename ``tmp`` to ``target`` only if ``target`` does not exist, in one step where
    the file system has hard links (FileExistsError if it is taken)."""
    try:
        os.link(tmp, target)  # fails, rather than replaces, if the name was taken
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network shares): check, then rename
        if os.path.lexists(target):
            raise FileExistsError(target) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _mode_or_none(path: str) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def _existing_ancestor(folder: str) -> str:
    # The folder that will hold the file may not exist yet (runs/ is made on demand):
    # what must be writable is the nearest one that does.
    folder = folder or "."
    while not os.path.lexists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def numbered(path: Path, number: int) -> Path:
    """``runs/m.safetensors`` -> ``runs/m-2.safetensors`` for number 2 (1 is the path itself)."""
    return path if number == 1 else path.with_name(f"{path.stem}-{number}{path.suffix}")


def free_name(path: Path) -> Path:
    """``path`` if nothing is there, else the first free ``numbered`` variant of it."""
    number = 1
    while os.path.lexists(numbered(path, number)):
        number += 1
    return numbered(path, number)


def byte_limit(variable: str, default: int) -> int:
    """A size limit in bytes: the environment variable ``variable`` (a whole number of
    bytes) where it is set, else ``default``."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{variable} must be a whole number of bytes, got {text!r}")
    return value
