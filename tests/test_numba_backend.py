"""What is specific to the numba backend: its fused train_steps against the NumPy backend
over many batches, repeatability for a thread count, float32 all the way, big forwards.

The generic kernel tests (test_kernels_*.py) run on this backend too; these add the
paths only it has: the transposed, 16-lane padded work layout (widths that are not
multiples of 16), the in-place SGD of the first layer, the sparse first layer (zero
inputs skipped), the threaded batch split, the vector exp of the softmax.
"""

from __future__ import annotations

import functools
import inspect
import io
import itertools
import types

import numba
import numpy as np
import pytest
from numba import types as nbtypes

import kernels
from kernels import ACTIVATIONS, Net, Optimizer, optimizer_state
from kernels.layout import VALID_HEADS
from kernels.numba import plan

nb = kernels.backend("numba")
npb = kernels.backend("numpy")

HEADS = [pytest.param(output, loss, id=f"{output}-{loss}") for output, loss in VALID_HEADS]
OPTIMIZERS = {
    "sgd": Optimizer("sgd"),  # the in-place first layer
    "sgd-wd": Optimizer("sgd", weight_decay=0.01),  # the gradient-buffer path
    "momentum": Optimizer("momentum", weight_decay=0.01),
    "adam": Optimizer("adam", weight_decay=0.01),
}


def sparse_inputs(rng, n, width, uint8, density=0.2):
    """MNIST-like rows: mostly zeros, at least three non-zero entries per row."""
    mask = rng.random((n, width)) < density
    mask[:, :3] = True  # no all-zero row: its outputs would tie (argmax then compares noise)
    if uint8:
        return (mask * rng.integers(1, 256, (n, width))).astype(np.uint8)
    return (mask * rng.standard_normal((n, width))).astype(np.float32)


def problem(sizes, activation, output, loss, n, uint8, seed):
    net = Net(sizes, activation, output, loss)
    rng = np.random.default_rng(seed)
    X = sparse_inputs(rng, n, sizes[0], uint8)
    if loss == "cross_entropy":
        targets = rng.integers(0, sizes[-1], n)
    else:
        targets = rng.uniform(0, 1, (n, sizes[-1])).astype(np.float32)
    params = np.empty(net.n_params, np.float32)
    npb.init_params(params, net, "he_uniform", seed)
    return net, X, targets, params


def train(backend, net, X, targets, params, optimizer, order, batch_size, threads, calls=2):
    """Train from params over `order` in `calls` train_steps calls; (params, state, losses, hits)."""
    params = params.copy()
    state = optimizer_state(net, optimizer.name)
    n_batches = -(-len(order) // batch_size)
    rate = 0.003 if optimizer.name == "adam" else 0.05
    lrs = np.linspace(rate, rate / 2, n_batches).astype(np.float32)
    cut = (n_batches // calls) * batch_size  # a call boundary between batches
    losses, hits, step = [], [], 0
    for part in (order[:cut], order[cut:]) if calls == 2 else (order,):
        k = -(-len(part) // batch_size)
        out = kernels.backend(backend).train_steps(
            params, state, net, X, targets, part, batch_size, lrs[step : step + k], optimizer,
            step, threads,
        )  # fmt: skip
        losses.append(out[0])
        hits.append(out[1])
        step += k
    return params, state, np.concatenate(losses), np.concatenate(hits)


def assert_close(got, want, rtol):
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def assert_trains_like_numpy(net, X, targets, params, optimizer, batch_size, threads, epochs=4):
    rng = np.random.default_rng(99)
    order = np.concatenate([rng.permutation(len(X)) for _ in range(epochs)])
    got = train("numba", net, X, targets, params, optimizer, order, batch_size, threads)
    want = train("numpy", net, X, targets, params, optimizer, order, batch_size, threads)
    assert got[2].dtype == np.float32 and got[3].dtype == np.int64
    assert got[2].shape == want[2].shape == (-(-len(order) // batch_size),)
    assert_close(got[0], want[0], 2e-4)
    for key in want[1]:
        assert_close(got[1][key], want[1][key], 2e-4)
    assert_close(got[2], want[2], 2e-4)
    # argmax of nearly equal outputs may go either way at float32 rounding level
    assert np.abs(got[3] - want[3]).max() <= 1
    assert abs(int(got[3].sum()) - int(want[3].sum())) <= 2


@pytest.mark.parametrize("optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(("output", "loss"), HEADS)
def test_train_steps_matches_numpy(optimizer, activation, output, loss):
    """Four epochs of 70 rows in batches of 8 (last one 6), uint8 pixels, 784-16-16-10."""
    net, X, targets, params = problem((784, 16, 16, 10), activation, output, loss, 70, True, 1)
    assert_trains_like_numpy(net, X, targets, params, optimizer, 8, threads=1)


CASES = list(
    itertools.product(
        [(20, 5, 3), (33, 40, 20), (784, 16, 16, 10)],  # widths below, across, at 16 lanes
        [True, False],  # uint8 or float32 input
        [(1, 1), (7, 1), (32, 2), (130, 2)],  # (batch, threads): 130 rows split two ways
    )
)


@pytest.mark.parametrize("optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
@pytest.mark.parametrize(
    ("sizes", "uint8", "batch"), [(s, u, b) for s, u, b in CASES],
    ids=[f"{'-'.join(map(str, s))}-{'u8' if u else 'f32'}-b{b[0]}t{b[1]}" for s, u, b in CASES],
)  # fmt: skip
def test_shapes_inputs_batches_threads(sizes, uint8, batch, optimizer):
    batch_size, threads = batch
    n = 300 if batch_size == 130 else 45  # 300 = 2 x 130 + 40: the last batch is partial
    net, X, targets, params = problem(sizes, "relu", "softmax", "cross_entropy", n, uint8, 2)
    epochs = 1 if batch_size == 1 else 3
    assert_trains_like_numpy(net, X, targets, params, optimizer, batch_size, threads, epochs)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba may use one thread only")
def test_the_threaded_path_is_taken():
    """The (130, 2) cases above are threaded: two threads sum in another order than one."""
    net, X, targets, params = problem((784, 16, 16, 10), "relu", "softmax", "cross_entropy",
                                      300, True, 2)  # fmt: skip
    order = np.random.default_rng(99).permutation(300)
    sgd = OPTIMIZERS["sgd"]
    one = train("numba", net, X, targets, params, sgd, order, 130, 1)[0]
    two = train("numba", net, X, targets, params, sgd, order, 130, 2)[0]
    assert not np.array_equal(one, two), "130-row batches at 2 threads ran on one thread"
    assert plan.PARALLEL_MIN_BATCH <= 130 < 300  # the (130, 2) cases above are threaded


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_repeat_runs_are_bit_identical(threads, optimizer):
    net, X, targets, params = problem((784, 16, 16, 10), "relu", "softmax", "cross_entropy",
                                      600, True, 3)  # fmt: skip
    order = np.random.default_rng(4).permutation(600)
    runs = [
        train("numba", net, X, targets, params, OPTIMIZERS[optimizer], order, 150, threads)
        for _ in range(3)
    ]
    for run in runs[1:]:
        np.testing.assert_array_equal(run[0], runs[0][0])
        np.testing.assert_array_equal(run[2], runs[0][2])
        np.testing.assert_array_equal(run[3], runs[0][3])
        for key in run[1]:
            np.testing.assert_array_equal(run[1][key], runs[0][1][key])


def test_forward_of_ten_thousand_rows_matches_numpy():
    net, X, _, params = problem((784, 16, 16, 10), "relu", "softmax", "cross_entropy", 10_000,
                                True, 5)  # fmt: skip
    params += np.random.default_rng(6).normal(0, 0.05, params.shape).astype(np.float32)
    out = nb.forward(params, net, X)
    assert out.dtype == np.float32 and out.shape == (10_000, 10)
    np.testing.assert_allclose(out, npb.forward(params, net, X), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(nb.forward(params, net, X), out)  # blocks: same every time


@pytest.mark.parametrize("n", [1, 1023, 2048, 5001])
def test_forward_is_the_same_in_any_number_of_threads(n):
    """forward splits the rows between Python threads (FORWARD_MIN_ROWS or more each)."""
    import numba

    net, X, _, params = problem((784, 16, 16, 10), "relu", "softmax", "cross_entropy", n, True,
                                11)  # fmt: skip
    before = numba.get_num_threads()
    try:
        outs = []
        for threads in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(threads)
            outs.append(nb.forward(params, net, X))
    finally:
        numba.set_num_threads(before)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    np.testing.assert_allclose(outs[0], npb.forward(params, net, X), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("uint8", [True, False])
def test_loss_and_grads_over_many_chunks_matches_numpy(uint8):
    net, X, targets, params = problem((784, 16, 16, 10), "tanh", "softmax", "cross_entropy",
                                      3000, uint8, 7)  # fmt: skip
    loss, grads = nb.loss_and_grads(params, net, X, targets)
    ref_loss, ref_grads = npb.loss_and_grads(params, net, X, targets)
    assert isinstance(loss, float) and grads.dtype == np.float32
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert_close(grads, ref_grads, 1e-5)


def test_divergence_shows_in_the_losses():
    """The kernels do not check for NaN: the trainer does, from the returned losses."""
    net, X, targets, params = problem((784, 16, 16, 10), "relu", "softmax", "cross_entropy",
                                      64, True, 8)  # fmt: skip
    state = optimizer_state(net, "sgd")
    lrs = np.full(8, 1e30, np.float32)
    losses, _ = nb.train_steps(params, state, net, X, targets, np.arange(64), 8, lrs,
                               Optimizer("sgd"), 0, 1)  # fmt: skip
    assert not np.isfinite(losses).all() or not np.isfinite(params).all()


def test_bad_arguments_are_refused():
    net, X, targets, params = problem((20, 5, 3), "relu", "softmax", "cross_entropy", 10, True, 9)
    state = optimizer_state(net, "sgd")
    lrs = np.full(2, 0.1, np.float32)
    sgd = Optimizer("sgd")
    with pytest.raises(ValueError, match="order"):
        nb.train_steps(params, state, net, X, targets, np.array([0, 10]), 8, lrs[:1], sgd, 0, 1)
    with pytest.raises(ValueError, match="class ids"):
        nb.train_steps(params, state, net, X, targets + 3, np.arange(10), 8, lrs, sgd, 0, 1)
    with pytest.raises(ValueError, match="lrs"):
        nb.train_steps(params, state, net, X, targets, np.arange(10), 8, lrs[:1], sgd, 0, 1)
    with pytest.raises(TypeError, match="uint8 or float32"):
        nb.forward(params, net, X.astype(np.float64))
    with pytest.raises(ValueError, match="threads"):
        nb.train_steps(params, state, net, X, targets, np.arange(10), 8, lrs, sgd, 0, 0)


# ---------------------------------------------------------------------------------------
# float32 all the way: Numba does not follow NumPy 2's promotion rules, so one float64
# literal or accumulator would silently turn a kernel's arithmetic into float64.
# ---------------------------------------------------------------------------------------


LOOP_MODULES = ("kernels.numba.passes", "kernels.numba.train", "kernels.numba.evaluate",
                "kernels.numba.infer", "kernels.numba.tiles")  # fmt: skip


@functools.cache
def uninlined():
    """The namespace of the compiled loops and their glue (kernels.numba.passes, .train,
    .evaluate) with the inline="always" glue (rows_grad, net_forward, ...) turned into
    ordinary compiled functions: an inlined function is typed inside its callers and
    records no signatures of its own to inspect."""
    import importlib

    import numba

    modules = [importlib.import_module(name) for name in LOOP_MODULES]
    scope = {}
    for module in modules:
        scope.update(vars(module))
    for name, kernel in list(scope.items()):
        inline = getattr(kernel, "targetoptions", {}).get("inline") == "always"
        if inline and kernel.py_func.__module__ in LOOP_MODULES:
            code = kernel.py_func.__code__
            scope[name] = numba.njit(types.FunctionType(code, scope, name))
    return scope


def hot_kernels():
    """The compiled kernels a training step and a forward pass run, callers before callees."""
    from kernels.numba import heads, infer, net, tiles, work

    for name in ["train_loop", "forward_dense_rows", "sparse_hidden", "rows_grad", "scales",
                 "net_forward", "net_head", "net_backward"]:  # fmt: skip
        yield name, uninlined()[name]
    # (gather_rows, compress_row, xent_grad, mse, argmax, sigmoid are inlined into these)
    for name in ["sparse_rows_fill", "sparse_forward", "transpose_rows", "sparse_backward",
                 "dense_forward", "dense_backward", "bias_backward", "activation_forward",
                 "activation_backward", "loss_head", "softmax", "softmax_out",
                 "sparse_forward_tiles"]:  # fmt: skip
        yield name, next(getattr(m, name) for m in (net, heads, work, infer, tiles)
                         if hasattr(m, name))  # fmt: skip


def run_every_path():
    for output, loss in VALID_HEADS:
        for uint8 in (True, False):
            net, X, targets, params = problem((20, 18, 3), "silu", output, loss, 9, uint8, 10)
            for optimizer in OPTIMIZERS.values():
                train("numba", net, X, targets, params, optimizer, np.arange(9), 4, 1, calls=1)
            nb.forward(params, net, X)
    # inference's tiles (a first layer of 64 lanes or more) and sparse hidden layer (a ReLU
    # layer that training hands to BLAS; on CPUs without AVX-512 forward only takes it
    # when told: network.SPARSE_HIDDEN)
    from kernels.numba import network

    net, X, _, params = problem((100, 128, 64, 10), "relu", "softmax", "cross_entropy", 9, True,
                                10)  # fmt: skip
    before, network.SPARSE_HIDDEN = network.SPARSE_HIDDEN, True
    try:
        nb.forward(params, net, X)
    finally:
        network.SPARSE_HIDDEN = before


def typed_source(kernel, sig):
    """The source of kernel annotated with the type of every variable, for signature sig.

    A fresh, uncached copy is compiled (cached code cannot be inspected); compiling it
    types the kernels it calls, which records their signatures (a kernel loaded from the
    on-disk cache never compiles its callees in this process). The compiled loops call the
    uninlined() glue, so that its signatures are recorded too.
    """
    import numba

    func = kernel.py_func
    if func.__module__ in LOOP_MODULES:
        func = types.FunctionType(func.__code__, uninlined(), func.__name__)
    fresh = numba.njit(func)
    fresh.compile(sig)
    text = io.StringIO()
    fresh.inspect_types(file=text)
    return text.getvalue()


def is_optim(t):
    from kernels.numba.codes import Optim

    return isinstance(t, nbtypes.BaseNamedTuple) and t.instance_class is Optim


def test_no_float64_in_hot_kernels():
    run_every_path()
    for name, kernel in hot_kernels():  # callers first: typing them records the callees
        assert kernel.signatures, f"{name} was never compiled"
        for sig in kernel.signatures:
            # the optimizer's constants (float64 as given) only go through train_loop to update
            args = [t for t in sig if not (name == "train_loop" and is_optim(t))]
            assert "float64" not in str(args), f"{name}{sig}: a float64 argument"
            # a literal argument (a 0 written in a call) compiles the kernel once more, for
            # nothing: ~0.2 s more of a first run's compile each. A layer kernel's `path`
            # written in as a constant is the exception: its other path's branch is then
            # not compiled (split_lanes' tail, in the lane split's spread variant)
            names = list(inspect.signature(kernel.py_func).parameters)
            literals = [t for t, arg in zip(sig, names, strict=True)
                        if isinstance(t, nbtypes.Literal) and arg != "path"]  # fmt: skip
            assert not literals, f"{name}{sig}: a specialisation for a literal argument"
            source = typed_source(kernel, sig).splitlines()[1:]  # [0]: the signature
            lines = [
                line for line in source
                if "float64" in line and "optim" not in line and "(float64,) -> float32" not in line
            ]  # fmt: skip
            assert not lines, f"{name}: float64 inside:\n" + "\n".join(lines[:10])


def test_update_is_float32_but_for_its_per_step_constants():
    """update() (its loops: update_rows) reads the optimizer's constants as float64 (as
    given) and turns them to float32 once per step; the loop over the parameters is
    float32."""
    from kernels.numba import optim
    from kernels.numba import train as numba_train

    run_every_path()
    for sig in numba_train.train_loop.signatures:
        typed_source(numba_train.train_loop, sig)  # records update's signatures
    assert optim.update.signatures
    for sig in optim.update.signatures:
        assert not [t for t in sig if isinstance(t, nbtypes.Literal)], f"update{sig}: a literal"
        typed_source(optim.update, sig)  # records update_rows's signatures (the loops)
    assert optim.update_rows.signatures
    for sig in optim.update_rows.signatures:
        assert not [t for t in sig if isinstance(t, nbtypes.Literal)], f"update_rows{sig}"
        body = typed_source(optim.update_rows, sig).split("for p in range(w.shape[0])")[1:]
        assert len(body) == 3  # the source of the three loops (a pruned one has no types)
        for loop in body:
            loop = loop.split("gr[p] = ZERO")[0]
            assert "float64" not in loop
