"""Thread scaling on a many-core machine: epochs through ``MLP.fit`` at 1, 2, 4, ... threads
against PyTorch (1 thread and all cores) and the NumPy loop, the thread plans not taken,
inference, the ceiling of one sgemm slice per thread, then ``fastmlp sweep`` on one local
worker against one worker per core.

The README's "On 16 cores" tables come from this script, run on the 16 CPU cores of a lent
machine. Not a test and not a pytest benchmark: it needs many cores and minutes, and CI has
neither. Results are printed as JSON lines and written to ``--out`` as they come.

    FASTMLP_DATA=../shared/mnist python scripts/bench_cores.py --out cores.json

Sections (``--sections``, comma-separated, all by default):

* grid: ``MLP.fit`` epochs (uint8) at each thread count, with the plan ``plan_threads``
  chose; PyTorch's usual loop on 1 thread and all cores; the NumPy loop;
* variants: the two-loop split forced beyond 2 threads, and BLAS's own threads with the
  rest of the batch on one (the plans ``plan_threads`` does not choose there);
* infer: ``predict_proba`` of the 10,000 test images at each thread count (best of 5 back
  to back, and the median of 3 after 0.15 s of rest) against the NumPy loop's forward and
  PyTorch on all cores;
* gemm: one thread's lane slice of a 1024x1024 layer (an sgemm of 128 rows by 1024/T
  columns, BLAS on one thread), on T threads at once, nothing shared: what the lane split's
  products can gain from more threads on this machine;
* sweep: 40-epoch 784-16-16-10 trials on one local worker, then one worker per core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

# (hidden widths, batch, rows timed), scaled to 60,000 rows. fastmlp's epoch is the one fit
# reports (fit_s: the whole call, its fixed costs too, which a slice of the rows would
# overstate once scaled: the 2026-11-27 10:17 run timed 15,000 rows of 1024-1024 that way).
SHAPES = [((16, 16), 32, 60_000), ((256, 256), 128, 60_000), ((800,), 128, 60_000),
          ((1024, 1024), 128, 60_000)]  # fmt: skip
QUICK_SHAPES = [((16, 16), 32, 6_000), ((256, 256), 128, 3_000)]
SECTIONS = ("grid", "variants", "infer", "gemm", "sweep")


def best_of(fn, reps: int = 2) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("cores.json"))
    parser.add_argument("--quick", action="store_true", help="small shapes, 1-2 threads")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="which, comma-separated")
    parser.add_argument("--sweep-only", action="store_true", help="--sections sweep")
    parser.add_argument("--per-worker", type=int, default=4, help="sweep trials per worker")
    args = parser.parse_args()
    sections = {"sweep"} if args.sweep_only else set(args.sections.split(","))
    if sections - set(SECTIONS):
        parser.error(f"unknown sections {sorted(sections - set(SECTIONS))}; from {SECTIONS}")

    import numba
    import numpy as np
    import torch
    from peers import FitTrainer, NumpyLoopTrainer, TorchInference, TorchTrainer

    from fastmlp.data import load_mnist
    from kernels.numba import plan

    cores = os.cpu_count() or 1
    results: dict = {"machine": platform.processor() or platform.machine(), "cores": cores,
                     "numba": numba.__version__, "numpy": np.__version__,
                     "torch": torch.__version__, "rows": []}  # fmt: skip
    print(json.dumps({k: v for k, v in results.items() if k != "rows"}), flush=True)

    def record(**row) -> None:
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        args.out.write_text(json.dumps(results, indent=1))

    chosen = []  # the plans train_steps asks for, to record which loop ran
    planner = plan.plan_threads

    def recording_planner(*a, **k):
        chosen.append(planner(*a, **k))
        return chosen[-1]

    def serial_planner(*a, **k):  # one Numba thread: BLAS then gets every thread asked for
        chosen.append(("serial", 1))
        return chosen[-1]

    plan.plan_threads = recording_planner

    X, y, Xt, yt = load_mnist(download=False)
    X, Xt = X.reshape(len(X), -1), Xt.reshape(len(Xt), -1)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    threads = [1, 2] if args.quick else [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= cores]
    many = [t for t in threads if t >= 4] or threads[-1:]

    def fit_epoch(section, hidden, batch, rows, count, warm):
        fit = FitTrainer(X, y, rows, batch, hidden, threads=count)
        if warm:
            fit.epoch()  # compiles
        chosen.clear()
        calls, epochs = [], []
        for _ in range(2):
            calls.append(best_of(fit.epoch, reps=1))
            epochs.append(fit.model.history.epochs[-1]["seconds"])
        record(section=section, peer="fastmlp", hidden=hidden, batch=batch, threads=count,
               plan=list(chosen[-1]), epoch_s=min(epochs) * 60_000 / rows,
               fit_s=min(calls) * 60_000 / rows)  # fmt: skip

    if "grid" in sections:
        for hidden, batch, rows in shapes:
            for count in threads:
                fit_epoch("grid", hidden, batch, rows, count, warm=True)
            for count in sorted({1, cores}):
                peer = TorchTrainer(torch, X, y, rows, batch, hidden, threads=count)
                peer.epoch(peer.setup()[0][0][: batch * 20])  # warm up
                record(section="grid", peer="torch", hidden=hidden, batch=batch, threads=count,
                       epoch_s=best_of(lambda p=peer: p.epoch(p.setup()[0][0])) * 60_000 / rows)  # fmt: skip
            loop = NumpyLoopTrainer(X, y, rows, batch, hidden)
            record(section="grid", peer="numpy-loop", hidden=hidden, batch=batch,
                   threads="BLAS default", epoch_s=best_of(loop.epoch) * 60_000 / rows)  # fmt: skip
        record(section="meta", threading_layer=numba.threading_layer())

    if "variants" in sections:
        blas_shapes = [shape for shape in shapes if max(shape[0]) >= 256 and len(shape[0]) > 1]
        limits = plan.ROW_SPLIT_MAX_THREADS, plan.ROW_SPLIT_MIN_ROWS
        plan.ROW_SPLIT_MAX_THREADS, plan.ROW_SPLIT_MIN_ROWS = 1 << 10, 8
        for hidden, batch, rows in blas_shapes:
            for count in many:
                fit_epoch("rows beyond 2", hidden, batch, rows, count, warm=count == many[0])
        plan.ROW_SPLIT_MAX_THREADS, plan.ROW_SPLIT_MIN_ROWS = limits
        plan.plan_threads = serial_planner
        for hidden, batch, rows in blas_shapes:
            for count in many:
                fit_epoch("BLAS threads", hidden, batch, rows, count, warm=count == many[0])
        plan.plan_threads = recording_planner

    if "infer" in sections:
        from fastmlp import MLP

        widths = [(16, 16), (256, 256)] + ([] if args.quick else [(1024, 1024)])
        for hidden in widths:
            model = MLP((784, *hidden, 10))
            model.fit(X[:5000], y[:5000], epochs=1, batch_size=128, lr=0.05, progress=False,
                      threads=1)  # fmt: skip
            model.predict_proba(Xt)
            for count in threads:
                numba.set_num_threads(count)
                rested = []
                for _ in range(3):
                    time.sleep(0.15)
                    rested.append(best_of(lambda m=model: m.predict_proba(Xt), reps=1))
                record(section="infer", peer="fastmlp", hidden=hidden, threads=count,
                       warm_ms=best_of(lambda m=model: m.predict_proba(Xt), reps=5) * 1e3,
                       rested_ms=sorted(rested)[1] * 1e3)  # fmt: skip
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
            loop = NumpyLoopTrainer(X, y, 1000, 128, hidden)
            loop.X = Xt.astype(np.float32) / np.float32(255)
            record(section="infer", peer="numpy-loop", hidden=hidden, threads="BLAS default",
                   warm_ms=best_of(loop.forward, reps=5) * 1e3)  # fmt: skip
            trainer = TorchTrainer(torch, X, y, 1000, 128, hidden, threads=cores)
            infer = TorchInference(trainer, Xt, yt)
            infer()
            record(section="infer", peer="torch", hidden=hidden, threads=cores,
                   warm_ms=best_of(infer, reps=5) * 1e3)  # fmt: skip

    if "gemm" in sections:
        sgemm_slices(record, threads)

    if "sweep" in sections:
        sweep(record, X, y, Xt, yt, 2 if args.quick else cores, args)


def sgemm_slices(record, threads) -> None:
    """T threads each compute one slice of columns of a (128 x 1024) @ (1024 x 1024)
    product, as the lane split's forward does, 20 times over, in one parallel loop."""
    import numba
    import numpy as np
    from numba import njit, prange
    from threadpoolctl import threadpool_limits

    from kernels.numba.blas import sgemm

    @njit(parallel=True)
    def lane_slices(c, a, b, n, k, s, shards, reps):
        for t in prange(shards):
            q0, q1 = s * t // shards, s * (t + 1) // shards
            for _ in range(reps):
                sgemm(False, False, q1 - q0, n, k, np.float32(1), b, q0, s, a, 0, k,
                      np.float32(0), c, q0, s)  # fmt: skip

    n, k, s, reps = 128, 1024, 1024, 20
    rng = np.random.default_rng(0)
    a, b = rng.random(n * k, np.float32), rng.random(k * s, np.float32)
    c = np.zeros(n * s, np.float32)
    with threadpool_limits(1):
        lane_slices(c, a, b, n, k, s, 1, 1)
        for count in threads:
            numba.set_num_threads(count)
            sec = best_of(lambda t=count: lane_slices(c, a, b, n, k, s, t, reps), reps=3)
            record(section="gemm", threads=count, ms_per_product=sec / reps * 1e3,
                   gflops=2 * n * k * s * reps / sec / 1e9)  # fmt: skip
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def sweep(record, X, y, Xt, yt, workers_max, args) -> None:
    """One local worker on N trials against one worker per core on N trials each."""
    import numpy as np

    from fastmlp.idx import write_idx
    from fastmlp.sweep import grid_from, make_trials
    from fastmlp.sweep_run import run_sweep

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "data")
        folder.mkdir()
        for prefix, images, labels in (("train", X, y), ("t10k", Xt, yt)):
            write_idx(folder / f"{prefix}-images-idx3-ubyte", images.reshape(-1, 28, 28))
            write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
        per_worker, epochs = (2, 2) if args.quick else (args.per_worker, 40)
        run_sweep(make_trials(grid_from({"hidden": "16,16", "epochs": 1}), [0]),
                  Path(tmp, "warm"), data_dir=str(folder), workers=1, echo=lambda line: None)  # fmt: skip
        for workers in sorted({1, workers_max}):
            trials = make_trials(grid_from({"hidden": "16,16", "epochs": epochs, "lr": 0.1}),
                                 list(range(per_worker * workers)))  # fmt: skip
            start = time.perf_counter()
            rows = run_sweep(trials, Path(tmp, f"sweep{workers}"), data_dir=str(folder),
                             workers=workers, echo=lambda line: None)  # fmt: skip
            seconds = time.perf_counter() - start
            record(section="sweep", peer="sweep", workers=workers, trials=len(trials),
                   epochs=epochs, ok=sum(row["status"] == "ok" for row in rows),
                   seconds=seconds, trials_per_s=len(trials) / seconds)  # fmt: skip


if __name__ == "__main__":
    main()
