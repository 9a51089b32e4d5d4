"""The numba backend's paths for wide layers and prepared inputs, against the NumPy backend
and PyTorch: widths 1, 15, 16, 17, 64, 256 and 1000 (not only multiples of 16), uint8 and
float32 inputs, arrays and prepare_inputs() copies, one and two threads, BLAS and our own
dense kernels, the first layer's row-by-row and by-column weight gradients."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import BACKENDS
from test_kernels_torch import assert_matches, flat, torch_loss, torch_model

import kernels
from kernels import Net, Optimizer, optimizer_state

pytestmark = pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend not available")

WIDTHS = [1, 15, 16, 17, 64, 256, 1000]
N_IN = 100


def sparse_inputs(n, uint8, seed):
    """(n, N_IN) inputs, 70% zeros (as the background of a digit), uint8 or float32."""
    rng = np.random.default_rng(seed)
    keep = rng.random((n, N_IN)) < 0.3
    if uint8:
        return (keep * rng.integers(1, 256, (n, N_IN))).astype(np.uint8)
    return (keep * rng.standard_normal((n, N_IN))).astype(np.float32)


def problem(width, seed=0):
    net = Net((N_IN, width, width, 10))
    rng = np.random.default_rng(seed)
    params = (rng.standard_normal(net.n_params) / np.sqrt(max(width, N_IN))).astype(np.float32)
    return net, params


def test_wide_layers_use_blas_narrow_ones_our_kernels():
    from kernels.numba import network
    from kernels.numba.blas import HAVE_BLAS
    from kernels.numba.codes import PATH_BLAS, PATH_OWN

    assert network.geometry(Net((784, 16, 16, 10)), 32).layers["path"].tolist() == [PATH_OWN] * 3
    wide = network.geometry(Net((784, 1024, 1024, 10)), 128).layers["path"].tolist()
    assert wide == [PATH_OWN, PATH_BLAS if HAVE_BLAS else PATH_OWN, PATH_OWN]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("blas", [True, False], ids=["blas", "own"])
@pytest.mark.parametrize("uint8", [True, False], ids=["uint8", "float32"])
@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "array"])
def test_train_steps_match_numpy(numba_paths, width, blas, uint8, prepared):
    numba_paths(blas)
    net, params = problem(width)
    X = sparse_inputs(70, uint8, width)
    y = np.random.default_rng(1).integers(0, 10, len(X))
    order = np.random.default_rng(2).permutation(len(X))
    lrs = np.array([0.05, 0.1, 0.02], np.float32)
    for name in ("sgd", "momentum"):  # (Adam turns rounding-level gradients into ±lr steps)
        results = []
        for backend in ("numba", "numpy"):
            kb = kernels.backend(backend)
            p, state = params.copy(), optimizer_state(net, name)
            Xb = kb.prepare_inputs(X) if prepared else X
            losses, hits = kb.train_steps(p, state, net, Xb, y, order, 33, lrs, Optimizer(name),
                                          0, 1)  # fmt: skip
            results.append((losses, p))
        (l_nb, p_nb), (l_np, p_np) = results
        np.testing.assert_allclose(l_nb, l_np, rtol=2e-5)
        assert_matches(p_nb, p_np, rtol=2e-5)


@pytest.mark.parametrize("width", [16, 64, 256, 1000])
def test_threads_match_numpy_and_repeat(numba_paths, width):
    """Batches of 130 rows (split between threads below the BLAS width; BLAS threads above)."""
    numba_paths(width >= 1000)
    net, params = problem(width, seed=3)
    X = sparse_inputs(300, True, 4)
    y = np.random.default_rng(5).integers(0, 10, len(X))
    order = np.random.default_rng(6).permutation(len(X))
    lrs = np.full(3, 0.05, np.float32)
    runs = []
    for backend, threads in (("numba", 2), ("numba", 2), ("numpy", 1)):
        kb = kernels.backend(backend)
        p, state = params.copy(), optimizer_state(net, "momentum")
        losses, _ = kb.train_steps(p, state, net, kb.prepare_inputs(X), y, order, 130, lrs,
                                   Optimizer("momentum"), 0, threads)  # fmt: skip
        runs.append((losses, p))
    np.testing.assert_array_equal(runs[0][1], runs[1][1])  # repeatable for a thread count
    np.testing.assert_allclose(runs[0][0], runs[2][0], rtol=2e-5)
    assert_matches(runs[0][1], runs[2][1], rtol=2e-5)


@pytest.mark.torch
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("blas", [True, False], ids=["blas", "own"])
def test_loss_grads_forward_match_torch(numba_paths, width, blas):
    torch = pytest.importorskip("torch")
    numba_paths(blas)
    net, params = problem(width, seed=7)
    X = sparse_inputs(40, True, 8)
    y = np.random.default_rng(9).integers(0, 10, len(X))
    nb = kernels.backend("numba")
    for inputs in (X, nb.prepare_inputs(X)):
        value, grads = nb.loss_and_grads(params, net, inputs, y)
        model = torch_model(torch, net, params)
        expected = torch_loss(torch, net, model, X, y)
        expected.backward()
        assert value == pytest.approx(expected.item(), rel=1e-5)
        assert_matches(grads, flat(torch, model, {p: p.grad for p in model.parameters()}),
                       rtol=2e-5)  # fmt: skip
        probs = torch.softmax(model(torch.from_numpy(X / 255)), dim=1).detach().numpy()
        assert_matches(nb.forward(params, net, inputs), probs)


@pytest.mark.parametrize("n_in", [1, 17, 256, 1000])
@pytest.mark.parametrize("n_out", [1, 15, 16, 64, 1000])
@pytest.mark.parametrize("rows", [3, 33])
def test_layer_kernels_match_numpy(n_in, n_out, rows):
    """The INTERFACE.md section 1 dense layer on the training kernels (BLAS where training
    would pick it), the first layer (dinp None) by rows or by columns."""
    rng = np.random.default_rng(n_in * n_out + rows)
    inp = (rng.standard_normal((rows, n_in)) * (rng.random((rows, n_in)) < 0.5)).astype(np.float32)
    weight = rng.standard_normal((n_out, n_in)).astype(np.float32) / np.float32(np.sqrt(n_in))
    bias = rng.standard_normal(n_out).astype(np.float32)
    dout = rng.standard_normal((rows, n_out)).astype(np.float32)
    got, want = {}, {}
    for backend, store in (("numba", got), ("numpy", want)):
        kb = kernels.backend(backend)
        out = np.full((rows, n_out), np.nan, np.float32)
        kb.dense_forward(out, inp, weight, bias)
        dinp = np.full((rows, n_in), np.nan, np.float32)
        dw, db = np.full_like(weight, np.nan), np.full_like(bias, np.nan)
        kb.dense_backward(dinp, dw, db, dout, inp, weight)
        dw0, db0 = np.full_like(weight, np.nan), np.full_like(bias, np.nan)
        kb.dense_backward(None, dw0, db0, dout, inp, weight)
        store.update(out=out, dinp=dinp, dw=dw, db=db, dw0=dw0, db0=db0)
    for key in want:
        assert_matches(got[key], want[key], rtol=2e-5)


@pytest.mark.parametrize("width", [200, 1000])
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_first_layer_split_by_lanes_matches_one_thread(numba_paths, width, name):
    """A wide first layer (N_IN-width-10, our dense kernels) on two threads is split by output
    lanes
    (train_loop_lanes): exactly the arithmetic of one thread, and NumPy's to rounding."""
    from kernels.numba import network, plan
    from kernels.numba.codes import Inputs

    numba_paths(False)
    net = Net((N_IN, width, 10))
    rng = np.random.default_rng(width)
    params = (rng.standard_normal(net.n_params) * 0.1).astype(np.float32)
    X = sparse_inputs(200, False, 11)
    y = rng.integers(0, 10, len(X))
    nb = kernels.backend("numba")
    inputs = nb.prepare_inputs(X)
    g = network.geometry(net, 40)
    csr = Inputs(inputs.cols, inputs.vals, inputs.starts, np.arange(len(X), dtype=np.int64))
    assert plan.first_layer_leads(g, net, csr)
    order = rng.permutation(len(X))
    lrs = np.full(5, 0.01 if name == "adam" else 0.1, np.float32)
    runs = []
    for backend, threads in (("numba", 1), ("numba", 2), ("numpy", 1)):
        kb = kernels.backend(backend)
        p, state = params.copy(), optimizer_state(net, name)
        losses, _ = kb.train_steps(p, state, net, kb.prepare_inputs(X), y, order, 40, lrs,
                                   Optimizer(name), 0, threads)  # fmt: skip
        runs.append((losses, p))
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_allclose(runs[1][0], runs[2][0], rtol=2e-5)
    if name == "sgd":  # (Adam turns rounding-level gradients into ±lr steps)
        assert_matches(runs[1][1], runs[2][1], rtol=2e-5)


@pytest.mark.parametrize("uint8", [True, False], ids=["uint8", "float32"])
def test_prepare_inputs_is_the_csr_of_every_row(uint8):
    """Rows enough for prepare_inputs to fill slices on several threads: the same CSR as one
    pass, and the same as the non-zero entries NumPy finds (x / 255 for uint8)."""
    from kernels.numba import work

    X = sparse_inputs(5000, uint8, 12)
    prepared = kernels.backend("numba").prepare_inputs(X)
    scale = np.float32(1 / 255) if uint8 else np.float32(1)
    cols, vals, starts = work.sparse_rows(X, np.arange(len(X), dtype=np.int64), scale)
    total = starts[-1]
    np.testing.assert_array_equal(prepared.starts, starts)
    np.testing.assert_array_equal(prepared.cols[:total], cols[:total])
    np.testing.assert_array_equal(prepared.vals[:total], vals[:total])
    rows, columns = np.nonzero(X)
    np.testing.assert_array_equal(prepared.cols[:total], columns)
    np.testing.assert_array_equal(prepared.vals[:total], X[rows, columns].astype(np.float32) * scale)
    assert len(prepared) == 5000 and prepared.shape == X.shape


@pytest.mark.parametrize("width", [1, 15, 16, 17, 48, 64, 256, 1000])
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("output", ["blas", "own"])
@pytest.mark.parametrize("split", ["rows", "lanes"])
def test_split_loop_matches_numpy_and_repeats(numba_paths, monkeypatch, width, name, output,
                                              split):  # fmt: skip
    """A network with BLAS layers on two threads, BLAS inside each (made to run at every
    width; the 10-wide output layer on BLAS too, or on our kernels as chosen for real, which
    train_loop_split puts on BLAS anyway):
    train_loop_split (rows, then weights) or train_loop_split_lanes (every layer by lanes,
    as on many threads): NumPy's results to rounding, and the same floats run after run."""
    from kernels.numba import net as kn
    from kernels.numba import network, plan
    from kernels.numba.codes import Inputs

    numba_paths(True)
    monkeypatch.setattr(plan, "ROW_SPLIT_MAX_THREADS", 2 if split == "rows" else 1)
    monkeypatch.setattr(plan, "ROW_SPLIT_MIN_ROWS", 1)
    if output == "own":
        if width < 32:
            pytest.skip("every layer would be on our kernels")
        monkeypatch.setattr(kn, "BLAS_MIN_WIDTH", 32)
    monkeypatch.setattr(plan, "SPLIT_LANES_PER_THREAD", 1)
    net, params = problem(width, seed=13)
    X = sparse_inputs(150, width % 2 == 0, 14)
    y = np.random.default_rng(15).integers(0, 10, len(X))
    order = np.random.default_rng(16).permutation(len(X))
    lrs = np.full(4, 0.003 if name == "adam" else 0.05, np.float32)
    nb = kernels.backend("numba")
    inputs = nb.prepare_inputs(X)
    g = network.geometry(net, 40)
    csr = Inputs(inputs.cols, inputs.vals, inputs.starts, np.arange(len(X), dtype=np.int64))
    assert plan.plan_threads(g, net, csr, 40, 2) == (f"split_{split}", 2)
    runs = []
    for backend, threads in (("numba", 2), ("numba", 2), ("numpy", 1)):
        kb = kernels.backend(backend)
        p, state = params.copy(), optimizer_state(net, name)
        losses, hits = kb.train_steps(p, state, net, kb.prepare_inputs(X), y, order, 40, lrs,
                                      Optimizer(name, weight_decay=0.0 if name == "sgd" else 1e-3), 0,
                                      threads)  # fmt: skip
        runs.append((losses, hits, p, *state.values()))
    for a, b in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(a, b)  # repeatable for a thread count
    np.testing.assert_allclose(runs[0][0], runs[2][0], rtol=2e-5)
    np.testing.assert_array_equal(runs[0][1], runs[2][1])
    if name != "adam":  # (Adam turns rounding-level gradients into ±lr steps)
        assert_matches(runs[0][2], runs[2][2], rtol=2e-5)


@pytest.mark.parametrize("width", [17, 256])
@pytest.mark.parametrize(("batch", "name"), [(8, "sgd"), (149, "sgd"), (149, "momentum")])
def test_split_loop_small_batches(numba_paths, monkeypatch, width, batch, name):
    """train_loop_split ending on a batch of one row: a thread with no rows (its slice of
    the rows empty, its share of the weights still stepped), against NumPy, repeatable."""
    from kernels.numba import network, plan
    from kernels.numba.codes import Inputs

    numba_paths(True)
    monkeypatch.setattr(plan, "SPLIT_LANES_PER_THREAD", 1)
    monkeypatch.setattr(plan, "ROW_SPLIT_MIN_ROWS", 1)
    net, params = problem(width, seed=21)
    X = sparse_inputs(2 * batch + 1, True, 22)
    y = np.random.default_rng(23).integers(0, 10, len(X))
    order = np.random.default_rng(24).permutation(len(X))  # the last batch: 1 row
    lrs = np.full(3, 0.05, np.float32)
    inputs = kernels.backend("numba").prepare_inputs(X)
    csr = Inputs(inputs.cols, inputs.vals, inputs.starts, order)
    assert plan.plan_threads(network.geometry(net, batch), net, csr, batch, 2) == ("split_rows", 2)
    runs = []
    for backend, threads in (("numba", 2), ("numba", 2), ("numpy", 1)):
        kb = kernels.backend(backend)
        p, state = params.copy(), optimizer_state(net, name)
        losses, hits = kb.train_steps(p, state, net, kb.prepare_inputs(X), y, order, batch, lrs,
                                      Optimizer(name), 0, threads)  # fmt: skip
        runs.append((losses, hits, p))
    for a, b in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(runs[0][0], runs[2][0], rtol=2e-5)
    np.testing.assert_array_equal(runs[0][1], runs[2][1])
    assert_matches(runs[0][2], runs[2][2], rtol=2e-5)


@pytest.mark.parametrize("width", [48, 256])
def test_split_loop_mse_tanh_matches_numpy(numba_paths, monkeypatch, width):
    """train_loop_split with tanh hidden layers and a sigmoid output under MSE (the rows
    pass's other activation and loss branches), against NumPy, repeatable."""
    from kernels.numba import network, plan
    from kernels.numba.codes import Inputs

    numba_paths(True)
    monkeypatch.setattr(plan, "SPLIT_LANES_PER_THREAD", 1)
    monkeypatch.setattr(plan, "ROW_SPLIT_MIN_ROWS", 1)
    net = Net((N_IN, width, width, 10), "tanh", "sigmoid", "mse")
    params = (np.random.default_rng(31).standard_normal(net.n_params) / np.sqrt(width))
    params = params.astype(np.float32)
    X = sparse_inputs(150, False, 32)
    target = np.eye(10, dtype=np.float32)[np.random.default_rng(33).integers(0, 10, len(X))]
    order = np.random.default_rng(34).permutation(len(X))
    lrs = np.full(4, 0.1, np.float32)
    inputs = kernels.backend("numba").prepare_inputs(X)
    csr = Inputs(inputs.cols, inputs.vals, inputs.starts, order)
    assert plan.plan_threads(network.geometry(net, 40), net, csr, 40, 2) == ("split_rows", 2)
    runs = []
    for backend, threads in (("numba", 2), ("numba", 2), ("numpy", 1)):
        kb = kernels.backend(backend)
        p, state = params.copy(), optimizer_state(net, "sgd")
        losses, hits = kb.train_steps(p, state, net, kb.prepare_inputs(X), target, order, 40,
                                      lrs, Optimizer("sgd"), 0, threads)  # fmt: skip
        runs.append((losses, hits, p))
    for a, b in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(runs[0][0], runs[2][0], rtol=2e-5)
    assert_matches(runs[0][2], runs[2][2], rtol=2e-5)


def test_strides_avoid_multiples_of_256_lanes():
    """16 lanes more where the padded width is a multiple of 256 (1 KB weight rows alias in
    the cache); the others as rounded up to 16."""
    from kernels.numba.network import padded

    assert [padded(n) for n in (1, 15, 16, 17, 255, 256, 800, 1000, 1024, 2048)] == [
        16, 16, 16, 32, 256 + 16, 256 + 16, 800, 1008, 1024 + 16, 2048 + 16]  # fmt: skip
