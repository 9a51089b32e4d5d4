"""Speed at every width, batch and input type (issue 11): one epoch of ``MLP.fit`` (uint8
pixels and float32 x / 255) against PyTorch's usual loop and a vectorised NumPy loop.

Each configuration is one benchmark whose rounds run every contestant once, in a fresh
random order per round (so a burst of load on a shared machine hits all of them alike);
``extra_info["seconds"]`` keeps every contestant's time per round (the warm-up round first),
scaled to a 60,000-image epoch, and ``scripts/bench_table.py`` turns their medians into the
README's table of ratios. For fastmlp the time is the epoch as ``fit`` reports it
(``history.epochs[-1]["seconds"]``), as the peers' epochs are timed with their data
already converted; "... fit" keeps the whole ``fit`` call (checking and preparing the
inputs once, a warm-up step, the epoch). The benchmark's own statistics are those of a
whole round.

    python -m pytest benchmarks/test_bench_grid.py --benchmark --benchmark-json=grid.json
    python scripts/bench_table.py grid.json
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from peers import FitTrainer, NumpyLoopTrainer, TorchTrainer

THREADS = 2  # every contestant may use the machine's two cores
# Seconds of rest before each contestant, not timed. A peer's BLAS threads keep spinning
# after its last call: NumPy's OpenBLAS worker for ~0.1 s (100-110 ms of CPU time while
# the caller sleeps, after a loop of sgemm), PyTorch's OpenMP threads for ~10 ms. Whoever
# ran next started on one free core of two: in the grid of 2026-11-27 04:26 the fastmlp
# epoch right after the NumPy loop took ~1.5x its time in the same round without (128-64
# at batch 32: 0.153 vs 0.099 s; 256-256 at 128: 0.346 vs 0.231), which made uint8 and
# float32 inputs look 1.34x and 1.27x apart; in the inference grid, where a pass takes a
# few ms, it can double one.
SETTLE = 0.15
GRID = [
    ((16, 16), 32),
    ((64, 64), 32),
    ((128, 64), 32),
    ((256, 256), 32),
    ((256, 256), 128),
    ((800,), 32),
    ((800,), 128),
    ((1024, 1024), 128),
]


def config_id(hidden, batch):
    return f"{'-'.join(map(str, hidden))}@{batch}"


@pytest.mark.parametrize(("hidden", "batch"), GRID, ids=[config_id(*c) for c in GRID])
def test_grid(run, benchmark, data, full, hidden, batch):
    X, y = data["X"], data["y"]
    rows = len(X)
    contestants = {
        "fastmlp uint8": FitTrainer(X, y, rows, batch, hidden, THREADS),
        "fastmlp float32": FitTrainer(X.astype(np.float32) / np.float32(255), y, rows, batch,
                                      hidden, THREADS),  # fmt: skip
        "numpy loop": NumpyLoopTrainer(X, y, rows, batch, hidden),
    }
    try:
        import torch

        contestants["pytorch"] = TorchTrainer(torch, X, y, rows, batch, hidden, THREADS)
    except ImportError:
        pass
    for trainer in contestants.values():  # compile, allocate, warm caches: not timed
        _timed(trainer, rows=min(rows, 4 * batch))
    seconds = {name: [] for name in contestants}
    seconds.update({f"{name} fit": [] for name in contestants if name.startswith("fastmlp")})
    rng = np.random.default_rng(0)

    def one_round():
        for name in rng.permutation(list(contestants)):
            time.sleep(SETTLE)
            took = _timed(contestants[name])
            if name.startswith("fastmlp"):  # fit's own epoch time, and the whole call
                seconds[f"{name} fit"].append(took * 60_000 / rows)
                took = contestants[name].model.history.epochs[-1]["seconds"]
            seconds[name].append(took * 60_000 / rows)

    benchmark.group = "grid: one epoch per contestant, seconds per 60,000 images"
    benchmark.extra_info.update(hidden=list(hidden), batch=batch, rows=rows, threads=THREADS,
                                seconds=seconds, warmup_rounds=1 if full else 0)  # fmt: skip
    run(one_round, rounds=3 if hidden[0] >= 800 else 5)
    assert np.isfinite(contestants["fastmlp uint8"].model.params).all()


def _timed(trainer, rows=None):
    """Seconds of one epoch of ``trainer`` (on its first ``rows`` rows if given)."""
    if rows is not None:
        saved = trainer.rows
        trainer.rows = rows
        if isinstance(trainer, FitTrainer):
            saved_xy = trainer.X, trainer.y
            trainer.X, trainer.y = trainer.X[:rows], trainer.y[:rows]
    started = time.perf_counter()
    if isinstance(trainer, TorchTrainer):
        trainer.epoch(trainer.setup()[0][0])
    else:
        trainer.epoch()
    took = time.perf_counter() - started
    if rows is not None:
        trainer.rows = saved
        if isinstance(trainer, FitTrainer):
            trainer.X, trainer.y = saved_xy
    return took


INFER_WIDTHS = [(16, 16), (64, 64), (256, 256), (800,), (1024, 1024)]


@pytest.mark.parametrize("hidden", INFER_WIDTHS, ids=["-".join(map(str, h)) for h in INFER_WIDTHS])
def test_inference_grid(run, benchmark, data, full, hidden):
    """Probabilities of the 10,000 test images: ``MLP.predict_proba`` on the uint8 images
    and on float32 x / 255 (made once, as the peers' inputs; predict_proba checks it for
    NaN and infinity every call), against the NumPy loop's forward (``x @ W + b``) and
    PyTorch (no_grad), interleaved as test_grid; weights from one round of training on
    4,096 images (realistic activations, for ReLU's zeros)."""
    from fastmlp import MLP

    Xt, yt = data["Xt"], data["yt"]
    model = MLP((Xt.shape[1], *hidden, 10))
    model.fit(data["X"][:4096], data["y"][:4096], epochs=1, progress=False)
    numpy_loop = NumpyLoopTrainer(Xt, yt, len(Xt), hidden=hidden)
    Xf = Xt.astype(np.float32) / np.float32(255)
    contestants = {"fastmlp uint8": lambda: model.predict_proba(Xt),
                   "fastmlp float32": lambda: model.predict_proba(Xf),
                   "numpy loop": numpy_loop.forward}  # fmt: skip
    try:
        import torch

        trainer = TorchTrainer(torch, Xt, yt, len(Xt), hidden=hidden, threads=THREADS)
        tX = torch.from_numpy(Xt.astype(np.float32) / np.float32(255))

        def torch_forward():
            with torch.no_grad():
                return torch.softmax(trainer.model(tX), dim=1)

        contestants["pytorch"] = torch_forward
    except ImportError:
        pass
    for fn in contestants.values():
        fn()
    seconds = {name: [] for name in contestants}
    rng = np.random.default_rng(1)

    def one_round():
        for name in rng.permutation(list(contestants)):
            time.sleep(SETTLE)
            started = time.perf_counter()
            contestants[name]()
            seconds[name].append((time.perf_counter() - started) * 10_000 / len(Xt))

    benchmark.group = "grid inference: the 10,000 test images, seconds per pass"
    benchmark.extra_info.update(hidden=list(hidden), rows=len(Xt), threads=THREADS,
                                seconds=seconds, warmup_rounds=1 if full else 0)  # fmt: skip
    run(one_round, rounds=5)
