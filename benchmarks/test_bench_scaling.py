"""How cost grows with the batch size (1, 32, 256), the hidden width (16, 64, 256) and
the optimizer (plain SGD is test_bench_train's group; momentum and Adam here):
numba against NumPy and PyTorch. Where BLAS has real matrices to multiply (wide layers,
big batches) NumPy and PyTorch close the gap or win: the table says so."""

from __future__ import annotations

import numpy as np
import pytest
from peers import KernelTrainer, TorchTrainer, info

BATCH_ONE_ROWS = 6_000  # a tenth of an epoch: at batch 1 the interpreters' cost is per step

PEERS = [
    pytest.param("numba", 1, id="numba-1thread"),
    pytest.param("numba", 2, id="numba-2threads"),
    pytest.param("numpy", 1, id="numpy"),
    pytest.param("torch", 2, id="torch"),
]


def timed_epoch(run, benchmark, data, backend, threads, batch, hidden, rows, group, rounds,
                optimizer="sgd"):  # fmt: skip
    rows = min(rows, len(data["X"]))
    shape = (data["X"], data["y"], rows, batch, hidden, threads)
    if backend == "torch":
        torch = pytest.importorskip("torch")
        trainer = TorchTrainer(torch, *shape, optimizer=optimizer)
    else:
        trainer = KernelTrainer(backend, *shape, optimizer=optimizer)
    benchmark.group = group
    info(benchmark, backend, threads, rows, batch=batch, hidden=hidden)
    run(trainer.epoch, setup=trainer.setup, rounds=rounds)
    if backend != "torch":
        assert np.isfinite(trainer.losses).all()


@pytest.mark.parametrize(("backend", "threads"), PEERS)
@pytest.mark.parametrize("batch", [1, 256])
def test_batch_size(run, benchmark, data, backend, threads, batch):
    """Batch 32 is test_bench_train's group; batch 1 on a tenth of an epoch."""
    rows = BATCH_ONE_ROWS if batch == 1 else len(data["X"])
    group = f"scaling: batch {batch}, 784-16-16-10, {'6,000 rows' if batch == 1 else 'one epoch'}"
    timed_epoch(run, benchmark, data, backend, threads, batch, 16, rows, group, rounds=5)


@pytest.mark.parametrize(("backend", "threads"), PEERS)
@pytest.mark.parametrize("hidden", [64, 256])
def test_hidden_width(run, benchmark, data, backend, threads, hidden):
    """784-H-H-10 at batch 32, one epoch (H = 16 is test_bench_train's group)."""
    group = f"scaling: hidden {hidden}, 784-{hidden}-{hidden}-10, batch 32, one epoch"
    timed_epoch(run, benchmark, data, backend, threads, 32, hidden, len(data["X"]), group, 3)


@pytest.mark.parametrize(("backend", "threads"), PEERS)
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_optimizer(run, benchmark, data, backend, threads, optimizer):
    """784-16-16-10 at batch 32, one epoch, with per-parameter optimizer state."""
    group = f"scaling: {optimizer}, 784-16-16-10, batch 32, one epoch"
    timed_epoch(run, benchmark, data, backend, threads, 32, 16, len(data["X"]), group, 3,
                optimizer)  # fmt: skip
