"""Shared fixtures: the real MNIST copy and the PyTorch referee, each optional.

Tests that need MNIST skip when it cannot be found, and those that need torch skip
when it is not installed, except under CI, ``FASTMLP_REQUIRE_DATA=1`` or
``FASTMLP_REQUIRE_TORCH=1`` (set by .ci/run), where either is a failure (see
tests/referee.py, which also catches the skips outside these fixtures).
"""

from __future__ import annotations

import signal

import pytest

from tests.referee import require_data, require_torch

# A shell without job control starts a background command (`pytest ... &`) with Ctrl-C
# (SIGINT) ignored, and every child inherits that: the tests that press Ctrl-C on a child
# (download, save, serve) then saw it do nothing. A handler of our own is reset to the
# default in each child, as a terminal would have it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def mnist():
    """(train_images, train_labels, test_images, test_labels) from the data search path."""
    from fastmlp.data import MissingDataError, load_mnist

    try:
        return load_mnist(download=False)
    except MissingDataError as exc:
        if require_data():
            pytest.fail(f"MNIST is required (CI or FASTMLP_REQUIRE_DATA=1) but missing: {exc}")
        pytest.skip(f"MNIST not found: {exc}")


@pytest.fixture(scope="session")
def torch():
    """The torch module, or a clean skip where it is not installed (a failure under CI)."""
    if require_torch():
        try:
            import torch
        except ImportError as exc:
            pytest.fail(f"PyTorch is required (CI or FASTMLP_REQUIRE_TORCH=1) but missing: {exc}")
        return torch
    return pytest.importorskip("torch")


@pytest.fixture
def numba_paths(monkeypatch):
    """set(blas=bool): make the numba backend pick BLAS for every layer after the first, or
    never (geometries are cached: the cache is cleared both ways)."""
    from kernels.numba import net as kn
    from kernels.numba import network

    def choose(blas):
        network.geometry.cache_clear()
        monkeypatch.setattr(kn, "BLAS_MIN_WEIGHTS", 1 if blas else 10**12)
        monkeypatch.setattr(kn, "BLAS_MIN_WIDTH", 1)
        if blas and not kn.HAVE_BLAS:
            pytest.skip("SciPy (BLAS for compiled code) is not installed")

    yield choose
    network.geometry.cache_clear()
