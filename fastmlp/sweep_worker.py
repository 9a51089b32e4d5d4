"""One sweep trial, in a worker process (a local one, or a Dask worker).

A trial is one ``fastmlp train`` run, parsed and executed by the command's own code. What
does not change between trials stays in the worker process: the imported modules, the
compiled kernels, and the loaded data set (one per process, keyed by the data folder and
its files' sizes and modification times, handed to each trial as a fresh copy so no trial
can see another's changes). A trial therefore costs its training and evaluation, not a
Python start, imports or parsing MNIST again.

Before its first trial every worker runs :func:`warm_up`, all at once: where this machine's
kernel cache is known to be complete (a stamp file in it, written by the first warm-up),
each loads the compiled kernels from it at the same time; otherwise they take turns on a
file lock, so the first compiles and the others load what it wrote. No kernel compiles
twice on one machine.

Like :mod:`fastmlp.sweep`, this module imports only the standard library at the top.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The data set this process loaded last: {key: (train_x, train_y, test_x, test_y)}. One
# entry at most, so a worker holds one data set (MNIST: 55 MB) whatever the sweep.
_DATA: dict[tuple, tuple] = {}
_LOCK = threading.RLock()
_ACTIVE = 0  # trials running in this process (a Dask worker may run several at once)
_REAL: Any = None  # fastmlp.data.load_mnist while the cache stands in for it


def train_argv(trial: dict[str, Any], data_dir: str | None, folder: Path) -> list[str]:
    """The `fastmlp train` command line of a trial."""
    argv = ["train", "--quiet", "--no-download", "--seed", str(trial["seed"])]
    for name, value in trial["options"].items():
        argv += [f"--{name.replace('_', '-')}", value]
    if "threads" not in trial["options"]:
        argv += ["--threads", "1"]  # the workers are the parallelism
    if data_dir:
        argv += ["--data-dir", data_dir]
    name = trial["trial"]
    return argv + ["--save", str(folder / f"{name}.safetensors"), "--json",
                   str(folder / f"{name}.json")]  # fmt: skip


def run_trial(trial: dict[str, Any], data_dir: str | None, out: str) -> dict[str, Any]:
    """Run one trial as `fastmlp train` runs it; never raises: a failure is a row too."""
    import socket

    from fastmlp.commands import add_train_parser

    started = time.perf_counter()
    compiled_before, hits_before = numba_cache_counts()
    folder = Path(out) / "trials"
    folder.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {"trial": trial["trial"], "seed": trial["seed"], **trial["options"]}
    stderr = io.StringIO()
    if "threads" not in trial["options"]:
        _one_numba_thread()  # the workers are the parallelism: no threads on top of them
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr), \
                data_kept_between_trials():  # fmt: skip
            # The `train` subparser alone (not fastmlp.cli, which imports this module's
            # command): the same flags, defaults and handler as `fastmlp train`.
            parser = argparse.ArgumentParser(prog="fastmlp")
            add_train_parser(parser.add_subparsers(required=True))
            args = parser.parse_args(train_argv(trial, data_dir, folder))
            status = args.handler(args)
        results = json.loads((folder / f"{trial['trial']}.json").read_text())
        row.update(
            test_accuracy=results.get("test_accuracy"),
            test_loss=results.get("test_loss"),
            epochs_run=len(results.get("epochs", [])),
            stop_reason=results.get("stop_reason"),
            train_seconds=results.get("train_seconds"),
            warmup_seconds=results.get("warmup_seconds"),
        )
        row["status"] = "ok" if status == 0 else "failed"
        if status != 0:
            row["error"] = _last_line(stderr.getvalue()) or f"exit status {status}"
    except SystemExit as exc:  # argparse: a bad option value
        row.update(status="failed", error=_last_line(stderr.getvalue()) or f"exit {exc.code}")
    except Exception as exc:  # noqa: BLE001 - recorded, and the sweep goes on
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    row["seconds"] = time.perf_counter() - started
    compiled, hits = numba_cache_counts()
    row["compiled"], row["cache_hits"] = compiled - compiled_before, hits - hits_before
    row.update(host=socket.gethostname(), pid=os.getpid(), versions=versions(),
               finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))  # fmt: skip
    return row


@contextlib.contextmanager
def data_kept_between_trials() -> Iterator[None]:
    """While it is open, ``fastmlp.data.load_mnist`` answers from this process's cache.

    The trial runs the command's own code unchanged; only where its arrays come from
    changes. A folder with files missing goes to the real loader (its errors, its
    download); a folder whose files changed size or time since is loaded again. Safe in
    a Dask worker running trials on several threads: the loader is swapped by the first
    trial in and back by the last one out.
    """
    import fastmlp.data as data

    global _ACTIVE, _REAL
    with _LOCK:
        if _ACTIVE == 0:
            _REAL = data.load_mnist
            data.load_mnist = _cached_load_mnist
        _ACTIVE += 1
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE -= 1
            if _ACTIVE == 0:
                data.load_mnist = _REAL


def _cached_load_mnist(data_dir: Any = None, *, download: bool = True) -> tuple:
    import fastmlp.data as data

    with _LOCK:  # one load at a time: threads of one worker wait for the first
        key = _data_key(data, data_dir)
        arrays = _DATA.get(key) if key is not None else None
        if arrays is None:
            arrays = _REAL(data_dir, download=download)
            if key is not None and key == _data_key(data, data_dir):  # unchanged meanwhile
                _DATA.clear()
                _DATA[key] = arrays
    # A copy for the trial (55 MB, a few ms): nothing it does reaches the next trial.
    return tuple(a.copy() for a in arrays)


def _data_key(data: Any, data_dir: Any) -> tuple | None:
    info = data.data_info(data_dir)
    if info.missing:
        return None
    files = []
    for stem, path in sorted(info.files.items()):
        stat = path.stat()
        files.append((stem, str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return (str(info.folder), tuple(files))


def _one_numba_thread() -> None:
    try:
        import numba
    except ImportError:
        return
    numba.set_num_threads(1)  # this thread's share, read by the kernels' forward as well


def start_worker() -> int:
    """Import what a trial needs (not running the kernels, so nothing compiles); the pid."""
    import fastmlp.commands  # noqa: F401
    import fastmlp.model  # noqa: F401

    return os.getpid()


def warm_up(backends: list[str]) -> dict[str, Any]:
    """Compile (or load) the kernels in this process before its first trial.

    Every worker calls it at once. Where this machine's cache holds a stamp of a finished
    warm-up, each loads the kernels from the cache in parallel; otherwise they take turns
    on a lock file, so only the first compiles. Returns the seconds it took, the pid, and
    the kernel signatures this call compiled and loaded from the cache.
    """
    started = time.perf_counter()
    compiled_before, hits_before = numba_cache_counts()
    with _warm_up_turn(backends) as stamp:
        _train_tiny(backends)
        if stamp is not None:
            stamp.touch()
    compiled, hits = numba_cache_counts()
    return {"seconds": time.perf_counter() - started, "pid": os.getpid(),
            "compiled": compiled - compiled_before, "cache_hits": hits - hits_before}  # fmt: skip


def _train_tiny(backends: list[str]) -> None:
    import numpy as np

    from fastmlp.model import MLP

    rng = np.random.default_rng(0)
    X = (rng.random((64, 784)) < 0.2).astype(np.uint8) * 200
    y = np.arange(64) % 10
    for backend in backends:
        model = MLP([784, 4, 10], backend=backend)
        model.fit(X, y, epochs=1, batch_size=32, validation_data=(X, y), progress=False,
                  threads=1)  # fmt: skip
        model.evaluate(X, y)


@contextlib.contextmanager
def _warm_up_turn(backends: list[str]) -> Iterator[Path | None]:
    """Yield the stamp to write once warm (None: already there, or no cache folder)."""
    turn = _stamp_and_lock() if "numba" in backends else None
    if turn is None:
        yield None
        return
    stamp, lock = turn
    import fcntl

    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield stamp
    finally:
        lock.close()


def _stamp_and_lock() -> tuple[Path, Any] | None:
    try:
        import fcntl  # noqa: F401
        import platform

        import llvmlite.binding
        import numba

        from kernels.numba_cache import configure_cache

        folder = configure_cache()
        # Numba's cache entries are per CPU model and version: so is the stamp.
        stamp = folder / (f"sweep-warm-numba{numba.__version__}-py{platform.python_version()}"
                          f"-{llvmlite.binding.get_host_cpu_name()}")  # fmt: skip
        if stamp.exists():
            return None
        folder.mkdir(parents=True, exist_ok=True)
        return stamp, open(folder / "sweep-warm.lock", "a")  # noqa: SIM115 - closed by the caller
    except (ImportError, OSError):  # no fcntl (Windows), a read-only cache: no turns
        return None


def numba_cache_counts() -> tuple[int, int]:
    """(kernel signatures this process compiled, signatures it loaded from Numba's cache)."""
    try:
        from numba.core.registry import CPUDispatcher
    except ImportError:
        return 0, 0
    dispatchers = {id(v): v for name, module in list(sys.modules.items())
                   if name.startswith("kernels") for v in vars(module).values()
                   if isinstance(v, CPUDispatcher)}  # fmt: skip
    misses = sum(sum(d.stats.cache_misses.values()) for d in dispatchers.values())
    hits = sum(sum(d.stats.cache_hits.values()) for d in dispatchers.values())
    return misses, hits


@functools.cache
def versions() -> str:
    import platform
    from importlib import metadata

    import fastmlp

    parts = [f"fastmlp={fastmlp.__version__}", f"python={platform.python_version()}"]
    for package in ("numpy", "numba"):
        try:
            parts.append(f"{package}={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return " ".join(parts)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].removeprefix("fastmlp: error: ") if lines else ""
