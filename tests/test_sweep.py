"""fastmlp sweep: grids and seeds, resuming, failures, and a real Dask LocalCluster."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from fastmlp import sweep_worker
from fastmlp.cli import main
from fastmlp.idx import write_idx
from fastmlp.model import MLP
from fastmlp.sweep import Results, SweepError, grid_from, make_trials, parse_seeds
from fastmlp.sweep_run import run_sweep
from fastmlp.sweep_worker import run_trial, train_argv


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A learnable three-class data set in MNIST's four-file IDX layout, 28x28 images."""
    folder = tmp_path_factory.mktemp("tiny_idx")
    rng = np.random.default_rng(0)

    def images(n):
        labels = rng.integers(0, 3, n).astype(np.uint8)
        pixels = (rng.random((n, 28, 28)) < 0.05) * 80
        for k in range(3):  # each class lights up its own band of rows
            pixels[labels == k, 8 * k : 8 * k + 6, 4:24] = 250
        return pixels.astype(np.uint8), labels

    for prefix, n in (("train", 240), ("t10k", 90)):
        x, y = images(n)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y)
    return str(folder)


def test_seeds_and_grid():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0-1,7,1") == [0, 1, 7]
    assert parse_seeds([3, 5]) == [3, 5]
    with pytest.raises(SweepError, match="seeds"):
        parse_seeds("a-b")
    grid = grid_from({"lr": [0.05, 0.1, 0.2], "hidden": ["16,16", [32, 32]], "epochs": 3})
    assert grid == {"lr": ["0.05", "0.1", "0.2"], "hidden": ["16,16", "32,32"], "epochs": ["3"]}
    trials = make_trials(grid, [0, 1])
    assert len(trials) == 12 and len({t["trial"] for t in trials}) == 12
    sample = make_trials(grid, [0, 1], samples=2, sample_seed=4)
    assert len(sample) == 4
    assert sample == make_trials(grid, [0, 1], samples=2, sample_seed=4)  # seeded
    with pytest.raises(SweepError, match="cannot sweep 'momentum'"):
        grid_from({"momentum": [0.9]})


def test_local_sweep_records_failures_and_resumes(tiny_data, tmp_path, capsys):
    out = tmp_path / "sweep"
    # lr -1 is a bad option and lr 1e9 diverges: those trials fail, are recorded with
    # their error, and the rest go on
    grid = grid_from({"lr": ["0.1", "-1", "1e9"], "hidden": ["8"], "epochs": ["2"]})
    rows = run_sweep(make_trials(grid, [0, 1]), out, data_dir=tiny_data, workers=2)
    by_lr = {lr: [r for r in rows if r["lr"] == lr] for lr in ("0.1", "-1", "1e9")}
    assert all(r["status"] == "failed" and r["stop_reason"] == "diverged"
               and "diverged" in r["error"] for r in by_lr["1e9"])  # fmt: skip
    assert [r["status"] for r in by_lr["0.1"]] == ["ok", "ok"]
    assert all(r["test_accuracy"] > 0.9 for r in by_lr["0.1"])
    assert all(r["status"] == "failed" and "lr" in r["error"] and "> 0" in r["error"]
               for r in by_lr["-1"])  # fmt: skip
    assert all(r["compiled"] == 0 for r in by_lr["0.1"])  # the warm-up compiled, not the trials
    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 7 and lines[0].startswith("trial,status,epochs,hidden,lr,seed,")

    # A crash mid-write leaves a cut line; one more seed makes one new setting to run.
    for name in ("results.jsonl", "results.csv"):
        with open(out / name, "a") as f:
            f.write('{"trial": "cut sh')
    messages = []
    rows = run_sweep(make_trials(grid, [0, 1, 2]), out, data_dir=tiny_data, workers=1,
                     echo=messages.append)  # fmt: skip
    assert messages[0].endswith("6 already in " + str(out) + ", 3 to run")
    assert len(rows) == 9
    written = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(written) == 9 and len({r["trial"] for r in written}) == 9
    assert len((out / "results.csv").read_text().splitlines()) == 10


def test_a_trial_is_fastmlp_train(tiny_data, tmp_path, capsys):
    """A trial's numbers and model file are those of `fastmlp train` with the same flags,
    also for a trial that finds the data already loaded in its worker process."""
    trial = make_trials(grid_from({"lr": ["0.2"], "hidden": ["8"], "epochs": ["3"]}), [1])[0]
    sweep_worker._DATA.clear()
    rows = [run_trial(trial, tiny_data, str(tmp_path / f"sweep{k}")) for k in range(2)]
    assert len(sweep_worker._DATA) == 1  # loaded once, kept for the second trial
    argv = train_argv(trial, tiny_data, tmp_path / "train")
    assert main(argv) == 0
    capsys.readouterr()
    by_train = json.loads((tmp_path / "train" / f"{trial['trial']}.json").read_text())
    params = MLP.load(tmp_path / "train" / f"{trial['trial']}.safetensors").params
    for k, row in enumerate(rows):
        assert row["status"] == "ok"
        assert row["test_accuracy"] == by_train["test_accuracy"]
        assert row["test_loss"] == by_train["test_loss"]
        saved = tmp_path / f"sweep{k}" / "trials" / f"{trial['trial']}.safetensors"
        assert np.array_equal(MLP.load(saved).params, params)


def test_data_kept_between_trials_is_reloaded_when_files_change(tmp_path):
    import fastmlp.data

    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 12), ("t10k", 6)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, 4, 4), np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 9, n).astype(np.uint8))
    sweep_worker._DATA.clear()
    with sweep_worker.data_kept_between_trials():
        first = fastmlp.data.load_mnist(folder, download=False)
        first[0][:] = 0  # a trial's changes stay in its copy
        second = fastmlp.data.load_mnist(folder, download=False)
        assert second[0].any() and second[0] is not first[0]
        images = rng.integers(0, 255, (12, 4, 4), np.uint8)
        write_idx(folder / "train-images-idx3-ubyte", images)
        os.utime(folder / "train-images-idx3-ubyte", ns=(1, 1))  # a new time, whatever the clock
        assert np.array_equal(fastmlp.data.load_mnist(folder, download=False)[0], images)
        with pytest.raises(fastmlp.data.MissingDataError):
            fastmlp.data.load_mnist(tmp_path / "empty", download=False)
    assert fastmlp.data.load_mnist.__module__ == "fastmlp.data"  # put back


def test_results_of_another_sweep_are_refused(tmp_path):
    Results(tmp_path, ["lr"])
    with pytest.raises(SweepError, match="another sweep"):
        Results(tmp_path, ["lr", "hidden"])


def test_command_line_sweep(tiny_data, tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text('seeds = "0-1"\n[options]\nlr = [0.1, 0.3]\nhidden = ["8"]\nepochs = 1\n')
    out = tmp_path / "out"
    argv = ["sweep", "--config", str(config), "--data-dir", tiny_data, "--out", str(out),
            "--workers", "2", "--epochs", "2"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "4 trials, 4 ok, 0 failed" in text and "best settings by test_accuracy" in text
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["epochs"] for r in rows} == {"2"}  # the flag overrides the file
    assert (out / "test_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sweep", "--out", str(out)]) == 1
    assert "nothing to sweep" in capsys.readouterr().err


def test_dask_local_cluster_runs_a_sweep(tiny_data, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:  # fmt: skip
        with distributed.Client(cluster) as client:
            worker_pids = set(client.run(os.getpid).values())
        grid = grid_from({"lr": ["0.1", "0.2"], "hidden": ["8"], "epochs": ["2"]})
        rows = run_sweep(make_trials(grid, [0, 1]), tmp_path, data_dir=tiny_data,
                         scheduler=cluster.scheduler_address)  # fmt: skip
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert {r["pid"] for r in rows} <= worker_pids
    assert all(r["compiled"] == 0 for r in rows)
    assert all(r["test_accuracy"] > 0.9 for r in rows)


def warm_up_counts(messages):
    """(compiled, from the cache) of the sweep's "kernels ready in ..." line."""
    line = next(m for m in messages if m.startswith("kernels ready"))
    found = re.search(r"worker\(s\) \((\d+) compiled, (\d+) from the cache\)", line)
    return int(found[1]), int(found[2])


@pytest.mark.slow
def test_workers_share_the_compiled_kernels(tiny_data, tmp_path, monkeypatch):
    """From a cold Numba cache: the warm-up compiles, no trial does, and a later sweep's
    fresh worker processes load every kernel from the cache."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba_cache"))  # inherited by workers
    grid = grid_from({"lr": ["0.1"], "hidden": ["8"], "epochs": ["1"]})
    messages = []
    rows = run_sweep(make_trials(grid, [0, 1, 2]), tmp_path / "out", data_dir=tiny_data,
                     workers=2, echo=messages.append)  # fmt: skip
    compiled, _ = warm_up_counts(messages)  # the second worker may load the first's
    assert compiled > 0
    assert [r["compiled"] for r in rows] == [0, 0, 0]
    messages.clear()
    rows = run_sweep(make_trials(grid, [3, 4]), tmp_path / "out2", data_dir=tiny_data,
                     workers=2, echo=messages.append)  # fmt: skip
    compiled, cached = warm_up_counts(messages)
    assert compiled == 0 and cached > 0
    assert [r["compiled"] for r in rows] == [0, 0]
