"""Key Numba's on-disk cache by the contents of every kernel source file.

Numba checks a cached function against its own source file only (its modification
time and size). A kernel compiled into a caller in another file (``inline="always"``,
or any ``@njit`` call, whose machine code is built into the caller) stays in that
caller's cache entry after the callee's file changes, so an edited kernel could run
yesterday's code. Pointing ``numba.config.CACHE_DIR`` at a folder named by a hash of
every ``*.py`` under ``kernels/`` makes any edit a new cache key: the next run compiles
afresh, and going back to the old sources finds the old cache again.

Imported first by the numba backend, before any ``@njit(cache=True)`` is defined (the
cache location of a function is fixed when it is decorated).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba

__all__ = ["cache_dir", "configure_cache", "source_hash"]

KERNELS_DIR = Path(__file__).resolve().parent
_configured: Path | None = None


def source_hash(root: str | os.PathLike = KERNELS_DIR) -> str:
    """Hex digest of every ``*.py`` file under ``root``: relative paths and contents."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def _default_parent() -> Path:
    # Beside the sources, as Numba's own default; a read-only install uses the user cache.
    in_tree = KERNELS_DIR / "__pycache__"
    if os.access(KERNELS_DIR, os.W_OK) and (not in_tree.exists() or os.access(in_tree, os.W_OK)):
        return in_tree / "numba"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastmlp" / "numba"


def cache_dir() -> Path:
    """The folder the kernels' compiled code goes to: ``<parent>/kernels-<source hash>``.

    The parent is ``NUMBA_CACHE_DIR`` where the user set it, else ``kernels/__pycache__/numba``
    (or ``~/.cache/fastmlp/numba`` where the sources are read-only).
    """
    parent = os.environ.get("NUMBA_CACHE_DIR")
    return (Path(parent) if parent else _default_parent()) / f"kernels-{source_hash()}"


def configure_cache() -> Path:
    """Point ``numba.config.CACHE_DIR`` at :func:`cache_dir` (once per process) and return it.

    Must run before the first ``@njit(cache=True)`` kernel is defined; later definitions
    would keep the location they were given.
    """
    global _configured
    if _configured is None:
        _configured = cache_dir()
        numba.config.CACHE_DIR = str(_configured)
    return _configured


configure_cache()
