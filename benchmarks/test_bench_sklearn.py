"""fastmlp.sklearn against scikit-learn's own MLPClassifier, and `fastmlp sweep` on 1 and 2
local workers.

The estimators train 784-16-16-10 (ReLU, softmax, plain SGD, batch 32, lr 0.1, alpha 1e-4)
on pixels / 255 in float32, for the same number of epochs (tol-based stopping off). Under
--benchmark: 10 full MNIST epochs per round, and a separate test checks the two reach the
same test accuracy within 0.5 points (mean of three seeds). Plain pytest: 2 epochs on the
small slice, once.
"""

from __future__ import annotations

import os
import resource
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

FIT = "sklearn: MLPClassifier.fit, 784-16-16-10, sgd batch 32"
SWEEP = "sweep: 8 trials of 784-16-16-10 (fastmlp train), local workers"
SETTINGS = dict(hidden_layer_sizes=(16, 16), solver="sgd", batch_size=32, learning_rate_init=0.1,
                momentum=0.0, alpha=1e-4, n_iter_no_change=10**6)  # fmt: skip


def epochs(full):
    return 10 if full else 2


@pytest.fixture(scope="module")
def scaled(data):
    """Pixels / 255 as float32, as a scikit-learn user would pass them."""
    return {k: (v.astype(np.float32) / 255 if k.startswith("X") else v) for k, v in data.items()}


def estimator(library, seed, max_iter):
    if library == "fastmlp":
        from fastmlp.sklearn import MLPClassifier

        return MLPClassifier(random_state=seed, max_iter=max_iter, threads=1, **SETTINGS)
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(random_state=seed, max_iter=max_iter, **SETTINGS)


@pytest.mark.parametrize("library", ["fastmlp", "sklearn"])
def test_mlp_classifier_fit(run, benchmark, full, scaled, library):
    n_epochs = epochs(full)
    fitted = []

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is the epochs
            fitted.append(estimator(library, len(fitted), n_epochs).fit(scaled["X"], scaled["y"]))

    benchmark.group = FIT + f", {n_epochs} epochs"
    rows = len(scaled["X"])
    benchmark.extra_info.update(library=library, epochs=n_epochs, rows=rows,
                                scale=60_000 / rows / n_epochs)  # fmt: skip
    run(fit, rounds=3)
    accuracies = [est.score(scaled["Xt"], scaled["yt"]) for est in fitted]
    benchmark.extra_info["test_accuracy"] = accuracies
    assert all(est.n_iter_ == n_epochs for est in fitted)
    assert all(0.0 <= a <= 1.0 for a in accuracies)


def test_same_accuracy_as_sklearn(full, scaled):
    """Within 0.5 points of scikit-learn on MNIST, same settings and epochs, three seeds."""
    if not full:
        pytest.skip("accuracy is compared on full MNIST epochs: run with --benchmark")
    means = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for library in ("fastmlp", "sklearn"):
            scores = [estimator(library, seed, 10).fit(scaled["X"], scaled["y"])
                      .score(scaled["Xt"], scaled["yt"]) for seed in range(3)]  # fmt: skip
            means[library] = float(np.mean(scores))
    print(f"test accuracy, mean of 3 seeds: {means}")
    assert abs(means["fastmlp"] - means["sklearn"]) <= 0.005


@pytest.fixture(scope="module")
def idx_folder(data, tmp_path_factory):
    """The benchmark's data (full MNIST or the slice) as four IDX files, for `fastmlp train`."""
    from fastmlp.idx import write_idx

    folder = tmp_path_factory.mktemp("sweep_data")
    for prefix, X, y in (("train", data["X"], data["y"]), ("t10k", data["Xt"], data["yt"])):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", X.reshape(-1, 28, 28))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y.astype(np.uint8))
    return str(folder)


def _busy_seconds():
    """(CPU seconds busy, in total) of the whole machine so far, from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz  # less idle and iowait


def _own_cpu_seconds():
    mine = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(r.ru_utime + r.ru_stime for r in mine)


def test_sweep_two_workers_against_one(run, benchmark, full, idx_folder, tmp_path):
    """The same 8 trials on 2 local workers (timed) and on 1 (before each timed round, so
    the two alternate and share the machine's state); the ratio of their medians. The CPU
    other processes used meanwhile is recorded: on a busy machine the ratio says little."""
    from fastmlp.sweep import grid_from, make_trials
    from fastmlp.sweep_run import run_sweep

    # Trials of the default recipe's length (40 epochs, about a second each): with shorter
    # ones, starting the workers weighs as much as the training.
    n_epochs = 40 if full else 1
    trials = make_trials(grid_from({"hidden": "16,16", "epochs": n_epochs, "lr": 0.1}),
                         list(range(8)))  # fmt: skip
    outs = iter(range(1000))
    results, one_worker, others = [], [], {1: [], 2: []}

    def sweep(workers):
        out = tmp_path / f"round{next(outs)}"
        results.append(run_sweep(trials, out, data_dir=idx_folder, workers=workers,
                                 echo=lambda line: None))  # fmt: skip

    def measured(workers):
        busy, own, started = _busy_seconds(), _own_cpu_seconds(), time.perf_counter()
        sweep(workers)
        seconds = time.perf_counter() - started
        if busy is not None:  # cores the rest of the machine kept busy meanwhile
            after = _busy_seconds()
            others[workers].append((after[0] - busy[0] - (_own_cpu_seconds() - own)) / seconds)
        return seconds

    def one_worker_round():
        one_worker.append(measured(1))

    def two_workers():
        measured(2)

    benchmark.group = SWEEP + f", {n_epochs} epoch(s) each"
    run(two_workers, setup=one_worker_round, rounds=5)
    two = sorted(benchmark.stats.stats.data) if benchmark.stats else []
    one_worker = one_worker[len(one_worker) - len(two) :]  # not the warm-up round's
    ratio = float(np.median(one_worker) / np.median(two)) if two else None
    benchmark.extra_info.update(workers=2, trials=len(trials), epochs=n_epochs,
                                one_worker_seconds=one_worker, two_over_one=ratio,
                                other_processes_cores=others)  # fmt: skip
    print(f"\nsweep of {len(trials)} trials x {n_epochs} epochs: 1 worker {one_worker} s, "
          f"2 workers {two} s; median ratio {ratio}; other processes kept busy "
          f"{ {w: [round(c, 2) for c in v] for w, v in others.items()} } cores")  # fmt: skip
    assert all(row["status"] == "ok" for rows in results for row in rows)
    assert all(len(rows) == len(trials) for rows in results)
