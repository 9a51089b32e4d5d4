"""Thread scaling on a many-core machine: epochs through ``MLP.fit`` at 1, 2, 4, ... threads
against PyTorch (1 thread and all cores) and the NumPy loop, then ``fastmlp sweep`` on one
local worker against one worker per core.

The README's "On 16 cores" table comes from this script, run on the 16 CPU cores of a lent
machine. Not a test and not a pytest benchmark: it needs many cores and minutes, and CI has
neither. Results are printed as JSON lines and written to ``--out``.

    FASTMLP_DATA=../shared/mnist python scripts/bench_cores.py --out cores.json
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

# (hidden widths, batch, rows timed): a slice of the epoch, scaled to 60,000 rows.
SHAPES = [((16, 16), 32, 60_000), ((256, 256), 128, 30_000), ((800,), 128, 30_000),
          ((1024, 1024), 128, 15_000)]  # fmt: skip
QUICK_SHAPES = [((16, 16), 32, 6_000), ((256, 256), 128, 3_000)]


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
    parser.add_argument("--quick", action="store_true", help="two small shapes, 1-2 threads")
    parser.add_argument("--sweep-only", action="store_true", help="skip the epoch timings")
    parser.add_argument("--per-worker", type=int, default=4, help="sweep trials per worker")
    args = parser.parse_args()

    import numba
    import numpy as np
    import torch
    from peers import FitTrainer, NumpyLoopTrainer, TorchTrainer

    from fastmlp.data import load_mnist
    from fastmlp.idx import write_idx
    from fastmlp.sweep import grid_from, make_trials
    from fastmlp.sweep_run import run_sweep

    cores = os.cpu_count() or 1
    results: dict = {"machine": platform.processor() or platform.machine(), "cores": cores,
                     "numba": numba.__version__, "numpy": np.__version__,
                     "torch": torch.__version__, "rows": []}  # fmt: skip
    print(json.dumps({k: v for k, v in results.items() if k != "rows"}), flush=True)

    def record(**row) -> None:
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        args.out.write_text(json.dumps(results, indent=1))

    X, y, Xt, yt = load_mnist(download=False)
    X, Xt = X.reshape(len(X), -1), Xt.reshape(len(Xt), -1)
    shapes = [] if args.sweep_only else QUICK_SHAPES if args.quick else SHAPES
    threads = [1, 2] if args.quick else [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= cores]
    for hidden, batch, rows in shapes:
        scale = 60_000 / rows
        for count in threads:
            fit = FitTrainer(X, y, rows, batch, hidden, threads=count)
            if count == threads[0]:
                fit.epoch()  # compiles
            record(peer="fastmlp", hidden=hidden, batch=batch, threads=count,
                   epoch_s=best_of(fit.epoch) * scale)  # fmt: skip
        for count in sorted({1, cores}):
            peer = TorchTrainer(torch, X, y, rows, batch, hidden, threads=count)
            peer.epoch(peer.setup()[0][0][: batch * 20])  # warm up
            record(peer="torch", hidden=hidden, batch=batch, threads=count,
                   epoch_s=best_of(lambda p=peer: p.epoch(p.setup()[0][0])) * scale)  # fmt: skip
        loop = NumpyLoopTrainer(X, y, rows, batch, hidden)
        record(peer="numpy-loop", hidden=hidden, batch=batch, threads="BLAS default",
               epoch_s=best_of(loop.epoch) * scale)  # fmt: skip

    # The sweep: one worker on N trials, one worker per core on N trials each.
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "data")
        folder.mkdir()
        for prefix, images, labels in (("train", X, y), ("t10k", Xt, yt)):
            write_idx(folder / f"{prefix}-images-idx3-ubyte", images.reshape(-1, 28, 28))
            write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
        per_worker, epochs = (2, 2) if args.quick else (args.per_worker, 40)
        run_sweep(make_trials(grid_from({"hidden": "16,16", "epochs": 1}), [0]),
                  Path(tmp, "warm"), data_dir=str(folder), workers=1, echo=lambda line: None)  # fmt: skip
        for workers in sorted({1, 2 if args.quick else cores}):
            trials = make_trials(grid_from({"hidden": "16,16", "epochs": epochs, "lr": 0.1}),
                                 list(range(per_worker * workers)))  # fmt: skip
            start = time.perf_counter()
            rows = run_sweep(trials, Path(tmp, f"sweep{workers}"), data_dir=str(folder),
                             workers=workers, echo=lambda line: None)  # fmt: skip
            seconds = time.perf_counter() - start
            record(peer="sweep", workers=workers, trials=len(trials), epochs=epochs,
                   ok=sum(row["status"] == "ok" for row in rows), seconds=seconds,
                   trials_per_s=len(trials) / seconds)  # fmt: skip


if __name__ == "__main__":
    main()
