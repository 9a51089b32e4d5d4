"""The real MNIST, as loaded, is the published MNIST: labels in their order, every byte.

The checksums are those of the decompressed IDX files of the official release (listed
in ../shared/mnist/README.md); the arrays the loader returns are turned back into IDX
bytes (header + data) and hashed, so a loader that swaps, shifts or drops anything fails.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

from fastmlp import write_idx

pytestmark = pytest.mark.mnist

# sha256 of the decompressed official files (header and data).
PUBLISHED = {
    "train-images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX file of a uint8 array: zero, zero, type 0x08, rank, big-endian sizes, data."""
    assert array.dtype == np.uint8
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def test_first_labels_are_the_published_ones(mnist):
    train_x, train_y, test_x, test_y = mnist
    assert train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert np.bincount(train_y, minlength=10).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]  # fmt: skip


@pytest.mark.parametrize("name", PUBLISHED)
def test_every_byte_is_the_published_one(mnist, name):
    train_x, train_y, test_x, test_y = mnist
    array = {"train-images": train_x, "train-labels": train_y,
             "t10k-images": test_x, "t10k-labels": test_y}[name]  # fmt: skip
    assert hashlib.sha256(idx_bytes(array)).hexdigest() == PUBLISHED[name], (
        f"{name} as loaded differs from the published MNIST"
    )


def test_write_idx_gives_the_published_file_back(mnist, tmp_path):
    _, train_y, _, _ = mnist
    write_idx(tmp_path / "labels", train_y)
    digest = hashlib.sha256((tmp_path / "labels").read_bytes()).hexdigest()
    assert digest == PUBLISHED["train-labels"]


def test_pixel_statistics_are_the_well_known_ones(mnist):
    train_x, _, test_x, _ = mnist
    assert train_x.mean() == pytest.approx(33.3184, abs=1e-4)
    assert train_x.std() == pytest.approx(78.5675, abs=1e-4)
    assert test_x.mean() == pytest.approx(33.7912, abs=1e-4)
