"""Benchmarks: a one-round smoke test under plain ``pytest``, the real suite under --benchmark.

    python -m pytest benchmarks --benchmark --benchmark-json=bench.json   # the real suite
    python scripts/bench_table.py bench.json                             # README table
    python -m pytest benchmarks --benchmark --benchmark-autosave         # keep in .benchmarks/
    python -m pytest benchmarks --benchmark --benchmark-compare          # against the last one

Plain ``pytest`` (CI) runs every benchmark once on a small slice of the data, in seconds.
With ``--benchmark`` each one runs several rounds on full 60,000-image epochs of the real
MNIST (``fastmlp.data.load_mnist(download=False)``, e.g. ``FASTMLP_DATA=../shared/mnist``;
without it, random uint8 images with 19% non-zero pixels stand in, and the run says so
in its machine info). Benchmarks are grouped so the table reads as a comparison; the
``extra_info`` of each records the backend, threads, rows timed and the factor that
turns its time into seconds per 60,000-image epoch (pure Python is timed on a slice).

The OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE variables some machines set change which
kernel NumPy's OpenBLAS runs: the machine info records them and, when threadpoolctl is
installed, the BLAS library, version, threads and core type actually in use.
"""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

TRAIN_ROWS = 60_000
TEST_ROWS = 10_000
SMOKE_TRAIN_ROWS = 512
SMOKE_TEST_ROWS = 256


def pytest_addoption(parser):
    parser.addoption(
        "--benchmark",
        action="store_true",
        default=False,
        help="fastmlp: run the real benchmark suite (full MNIST epochs, several rounds) "
        "instead of one quick round on a slice",
    )


@pytest.fixture(scope="session")
def full(request) -> bool:
    """True under --benchmark: full epochs, several rounds."""
    return bool(request.config.getoption("--benchmark"))


def _random_mnist(n, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((n, 784)) < 0.19
    return (mask * rng.integers(1, 256, (n, 784))).astype(np.uint8), rng.integers(0, 10, n)


_SOURCE = {"data": "not loaded"}


@pytest.fixture(scope="session")
def data(full):
    """dict: X (N, 784) uint8, y (N,) int64, Xt, yt; N = 60,000 and 10,000 under --benchmark."""
    try:
        from fastmlp.data import load_mnist

        X, y, Xt, yt = load_mnist(download=False)
        _SOURCE["data"] = "MNIST"
    except Exception as exc:  # noqa: BLE001 - any failure: random stand-in, said in the output
        if full and os.environ.get("FASTMLP_REQUIRE_DATA") == "1":
            pytest.fail(f"FASTMLP_REQUIRE_DATA=1 but MNIST could not be loaded: {exc}")
        X, y = _random_mnist(TRAIN_ROWS, 0)
        Xt, yt = _random_mnist(TEST_ROWS, 1)
        _SOURCE["data"] = f"random uint8, 19% non-zero (MNIST not loaded: {exc})"
    n, nt = (TRAIN_ROWS, TEST_ROWS) if full else (SMOKE_TRAIN_ROWS, SMOKE_TEST_ROWS)
    return {
        "X": np.ascontiguousarray(X.reshape(len(X), -1)[:n]),
        "y": np.asarray(y[:n], np.int64),
        "Xt": np.ascontiguousarray(Xt.reshape(len(Xt), -1)[:nt]),
        "yt": np.asarray(yt[:nt], np.int64),
    }


@pytest.fixture
def run(benchmark, full):
    """run(fn, setup=None, rounds=5): time fn (pedantic); one round without --benchmark."""

    def go(fn, setup=None, rounds=5):
        if full:
            return benchmark.pedantic(fn, setup=setup, rounds=rounds, warmup_rounds=1)
        return benchmark.pedantic(fn, setup=setup, rounds=1, warmup_rounds=0)

    return go


def _blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return [
        {k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]


def pytest_benchmark_update_machine_info(config, machine_info):
    import numba

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "numba": numba.__version__}  # fmt: skip
    try:
        import llvmlite

        versions["llvmlite"] = llvmlite.__version__
    except ImportError:
        pass
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        versions["torch"] = None
    machine_info["fastmlp"] = {
        "versions": versions,
        "data": _SOURCE["data"],
        "full": bool(config.getoption("--benchmark")),
        "cores": os.cpu_count(),
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "numba_cpu": numba.config.CPU_NAME or __import__("llvmlite.binding").binding.get_host_cpu_name(),
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
        "blas": _blas_info(),
    }
