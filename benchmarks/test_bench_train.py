"""One training epoch of 784-16-16-10 (ReLU, softmax cross-entropy, SGD, batch 32), and
inference of the 10,000 test images: every fastmlp backend, and PyTorch CPU as a peer."""

from __future__ import annotations

import numpy as np
import pytest
from peers import KernelInference, KernelTrainer, TorchInference, TorchTrainer, info

import kernels

TRAIN = "train: one epoch, 784-16-16-10, batch 32"
INFER = "inference: the 10,000 test images"
PYTHON_ROWS = 500  # pure Python is timed on this many rows; extra_info scales to an epoch
PYTHON_TEST_ROWS = 200

BACKENDS = [
    pytest.param("numba", 1, id="numba-1thread"),
    pytest.param("numba", 2, id="numba-2threads"),
    pytest.param("numpy", 1, id="numpy"),
    pytest.param("python", 1, id="python"),
]


def rows_for(backend, n, slow_rows):
    return min(n, slow_rows) if backend == "python" else n


@pytest.mark.parametrize(("backend", "threads"), BACKENDS)
def test_train_epoch(run, benchmark, data, backend, threads):
    rows = rows_for(backend, len(data["X"]), PYTHON_ROWS)
    trainer = KernelTrainer(backend, data["X"], data["y"], rows, threads=threads)
    benchmark.group = TRAIN
    info(benchmark, backend, threads, rows)
    run(trainer.epoch, setup=trainer.setup, rounds=3 if backend == "python" else 9)
    assert np.isfinite(trainer.losses).all()


def test_train_epoch_numba_batch_split_forced(run, benchmark, data, monkeypatch):
    """numba's threaded path at batch 32, which train_steps does not take by itself
    (below PARALLEL_MIN_BATCH): the measurement behind that threshold."""
    monkeypatch.setattr(kernels.numba.plan, "PARALLEL_MIN_BATCH", 1)
    trainer = KernelTrainer("numba", data["X"], data["y"], len(data["X"]), threads=2)
    benchmark.group = TRAIN
    info(benchmark, "numba (batch split forced)", 2, len(data["X"]))
    run(trainer.epoch, setup=trainer.setup, rounds=9)
    assert np.isfinite(trainer.losses).all()


def test_train_epoch_torch(run, benchmark, data):
    torch = pytest.importorskip("torch")
    trainer = TorchTrainer(torch, data["X"], data["y"], len(data["X"]), threads=2)
    benchmark.group = TRAIN
    info(benchmark, "torch", 2, len(data["X"]))
    run(trainer.epoch, setup=trainer.setup, rounds=5)


@pytest.mark.parametrize("backend", ["numba", "numpy", "python"])
def test_inference(run, benchmark, data, backend):
    trainer = KernelTrainer("numba", data["X"], data["y"], len(data["X"]))
    trainer.epoch(trainer.setup()[0][0])  # a trained network: realistic activations
    rows = rows_for(backend, len(data["Xt"]), PYTHON_TEST_ROWS)
    infer = KernelInference(backend, trainer, data["Xt"][:rows], data["yt"][:rows])
    benchmark.group = INFER
    info(benchmark, backend, 1 if backend != "numba" else "all", rows, epoch_rows=10_000)
    accuracy = run(infer, rounds=3 if backend == "python" else 30)
    reference = kernels.backend("numpy").forward(trainer.params, trainer.net, infer.X)
    # the NumPy backend's accuracy, give or take a row whose outputs tie within rounding
    assert abs(accuracy - float((reference.argmax(1) == infer.y).mean())) <= 1 / rows


def test_inference_torch(run, benchmark, data):
    torch = pytest.importorskip("torch")
    trainer = TorchTrainer(torch, data["X"], data["y"], len(data["X"]), threads=2)
    trainer.epoch(trainer.setup()[0][0])
    infer = TorchInference(trainer, data["Xt"], data["yt"])
    benchmark.group = INFER
    info(benchmark, "torch", 2, len(data["Xt"]), epoch_rows=10_000)
    run(infer, rounds=30)
