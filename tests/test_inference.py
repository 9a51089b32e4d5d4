"""The numba backend's inference path (kernels/numba/infer.py, tiles.py): its first layer
over the outputs' lanes only and by tiles, its sparse ReLU layers, its threads, and the
NaN / infinity check riding on the gather of float inputs."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from kernel_helpers import BACKENDS

import kernels
from fastmlp import MLP
from kernels import Net

pytestmark = pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend not available")

WIDTHS = [1, 15, 16, 17, 64, 256, 1000]


def inputs(n, n_in, seed, uint8=True):
    """(n, n_in) rows, 75% zeros, a few rows all zero (empty in the sparse rows)."""
    rng = np.random.default_rng(seed)
    X = (rng.random((n, n_in)) < 0.25) * rng.integers(1, 256, (n, n_in))
    X[::37] = 0
    return X.astype(np.uint8) if uint8 else (X / 255).astype(np.float32)


@pytest.fixture
def small_blocks(monkeypatch, numba_paths):
    """forward in blocks of 24 rows and a thread per 50 rows, so that a few hundred rows
    cross blocks and thread slices; the BLAS choice set as asked (``numba_paths``)."""
    from kernels.numba import network

    monkeypatch.setattr(network, "BLOCK", 24)
    monkeypatch.setattr(network, "FORWARD_MIN_ROWS", 50)
    network.geometry.cache_clear()
    return numba_paths


@pytest.fixture
def threads():
    """set(n): numba.set_num_threads(n), put back after the test."""
    before = numba.get_num_threads()
    yield lambda n: numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(before)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("blas", [True, False], ids=["blas", "own"])
def test_forward_matches_numpy_and_repeats_across_threads(small_blocks, threads, width, blas):
    small_blocks(blas)
    net = Net((100, width, width, 10))
    params = np.empty(net.n_params, np.float32)
    kernels.backend("numpy").init_params(params, net, "he_uniform", width)
    X = inputs(203, 100, width)  # odd: a lone row at the end of a block and of a slice
    nb, expected = kernels.backend("numba"), kernels.backend("numpy").forward(params, net, X)
    runs = {}
    for n_threads in (1, 2):
        threads(n_threads)
        for kind, data in (("uint8", X), ("float32", (X / np.float32(255)).astype(np.float32)),
                           ("prepared", nb.prepare_inputs(X))):  # fmt: skip
            out = nb.forward(params, net, data)
            np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
            checked, bad = nb.forward_checked(params, net, data)
            assert bad == -1
            np.testing.assert_array_equal(checked, out)
            runs[kind, n_threads] = out
    # a row's arithmetic depends on neither its block nor the threads: the same bits (the
    # prepared rows hold the uint8 rows' values; float32 x / 255 rounds differently)
    for kind in ("uint8", "float32", "prepared"):
        np.testing.assert_array_equal(runs[kind, 1], runs[kind, 2])
    np.testing.assert_array_equal(runs["uint8", 1], runs["prepared", 1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, 23, 24, 130, 202])
def test_forward_checked_names_the_first_row_not_finite(small_blocks, threads, bad, row):
    small_blocks(False)
    threads(2)
    net = Net((100, 17, 10))
    params = np.zeros(net.n_params, np.float32)
    X = inputs(203, 100, 1, uint8=False)
    X[row, 99] = bad  # the last column: past the vector gather's 16-column pieces
    X[min(row + 60, 202), 3] = np.nan  # a later bad row in another block or slice
    nb = kernels.backend("numba")
    assert nb.forward_checked(params, net, X)[1] == row
    assert nb.forward_checked(params, net, inputs(203, 100, 1))[1] == -1  # uint8: finite


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
def test_predict_and_evaluate_refuse_inputs_not_finite(threads, backend, bad):
    threads(2)
    model = MLP([784, 16, 10], backend=backend)
    X = inputs(2500, 784, 2, uint8=False).astype(np.float64)
    X[1900, 400] = bad  # (1e39 is infinite as float32) in the second thread's rows
    y = np.zeros(len(X), np.int64)
    for call in (model.predict, model.predict_proba, lambda X: model.evaluate(X, y)):
        with pytest.raises(ValueError, match="inputs row 1900 holds NaN or infinity"):
            call(X)
    X[1900, 400] = 0.5
    assert model.predict_proba(X).shape == (2500, 10)
    assert model.evaluate(X, y)["confusion_matrix"].sum() == 2500


@pytest.mark.parametrize("sparse_hidden", [True, False], ids=["sparse", "sgemm"])
@pytest.mark.parametrize("shift", [0.0, 10.0], ids=["half-zero", "dense"])
def test_sparse_relu_layer_matches_numpy_dense_or_not(small_blocks, threads, monkeypatch,
                                                      sparse_hidden, shift):  # fmt: skip
    """A ReLU layer that training hands to BLAS reads its input's non-zero entries in
    forward (infer.after_first), or runs sgemm for a block more than 7/8 non-zero, or
    always runs sgemm (SPARSE_HIDDEN False: CPUs without AVX-512): each against the NumPy
    backend, the same bits on 1 and 2 threads, uint8 = prepared."""
    from kernels.numba import network

    monkeypatch.setattr(network, "SPARSE_HIDDEN", sparse_hidden)
    small_blocks(True)
    net = Net((100, 130, 70, 10))  # 130 x 70 weights: BLAS; 130 inputs: past one 128-lane tile
    params = np.empty(net.n_params, np.float32)
    kernels.backend("numpy").init_params(params, net, "he_uniform", 3)
    params[100 * 130 : 100 * 130 + 130] += np.float32(shift)  # the first layer's bias
    X = inputs(203, 100, 4)
    nb, expected = kernels.backend("numba"), kernels.backend("numpy").forward(params, net, X)
    runs = []
    for n_threads in (1, 2):
        threads(n_threads)
        for data in (X, nb.prepare_inputs(X)):
            runs.append(nb.forward(params, net, data))
            np.testing.assert_allclose(runs[-1], expected, rtol=1e-5, atol=1e-6)
    for out in runs[1:]:
        np.testing.assert_array_equal(out, runs[0])
