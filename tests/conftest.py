"""Shared fixtures: the real MNIST copy and the PyTorch referee, each optional.

Tests that need MNIST skip when it cannot be found, except under
``FASTMLP_REQUIRE_DATA=1`` (set by CI), where a missing copy is a failure.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def mnist():
    """(train_images, train_labels, test_images, test_labels) from the data search path."""
    from fastmlp.data import MissingDataError, load_mnist

    try:
        return load_mnist(download=False)
    except MissingDataError as exc:
        if os.environ.get("FASTMLP_REQUIRE_DATA") == "1":
            pytest.fail(f"FASTMLP_REQUIRE_DATA=1 but MNIST is missing: {exc}")
        pytest.skip(f"MNIST not found: {exc}")


@pytest.fixture(scope="session")
def torch():
    """The torch module, or a clean skip where it is not installed."""
    return pytest.importorskip("torch")
