"""Time to 98% test accuracy with a wider network (issue 11): fastmlp's recipe against
PyTorch's usual Adam + OneCycleLR loop, in the same run.

fastmlp's recipe, chosen on a validation split (50,000 training images, 10,000 held out,
seeds 0-2) and then fixed: 784-256-256-10, ReLU, Adam at a peak rate of 0.003 under the
one-cycle schedule, batch 64, 4 epochs, no weight decay, on all 60,000 uint8 images, both
cores. The same from the command line:

    python scripts/train_mnist.py --hidden 256,256 --optimizer adam --lr 0.003 \\
        --schedule onecycle --batch-size 64 --epochs 4 --validation 0 --seed S

PyTorch's usual loop (``nn.Sequential``, ``CrossEntropyLoss``, ``optim.Adam`` at lr 1e-3
with ``OneCycleLR``'s defaults over the whole run, batch 128, tensors made once, 2 threads)
trains 5 and 8 epochs (each a fresh run whose schedule spans its epochs): its time to 98%
is that of the fewest epochs whose three seeds all pass (measured: 5 epochs 97.73-97.82%,
8 epochs 98.19% on seed 0). It also trains fastmlp's recipe (98.19-98.47% in 4 epochs),
to tell a better recipe from faster epochs.

Each round is one seed (0, 1, 2) of a whole training run; ``extra_info`` keeps per seed the
training seconds (fastmlp: ``history.train_seconds``, the epochs without the warm-up step
that compiles on a first run; PyTorch: the training loop) and the test accuracy, scored
once at the end. Under ``--benchmark`` every fastmlp seed must pass 98%. Plain pytest
trains one epoch on the small slice, once.

    python -m pytest benchmarks/test_bench_time_to_98.py --benchmark -s
"""

from __future__ import annotations

import time

import numpy as np
import pytest

THREADS = 2
SEEDS = (0, 1, 2)
TARGET = 0.98
RECIPE = dict(hidden=(256, 256), optimizer="adam", lr=0.003, lr_schedule="onecycle",
              batch_size=64, epochs=4, weight_decay=0.0)  # fmt: skip
TORCH_USUAL = dict(hidden=(256, 256), lr=1e-3, batch_size=128)
GROUP = "time to 98% test accuracy, 784-256-256-10, 60,000 images (one round = one seed)"


class Seeds:
    """Hands pedantic rounds the seeds in turn and keeps what each run reports."""

    def __init__(self, seeds):
        self.seeds, self.done = list(seeds), []

    def setup(self):
        return (self.seeds[len(self.done) % len(self.seeds)],), {}


def record(benchmark, seeds: Seeds, who: str, epochs: int, batch: int):
    seconds = [s for s, _ in seeds.done]
    accuracy = [a for _, a in seeds.done]
    benchmark.extra_info.update(
        contestant=who, epochs=epochs, batch=batch, threads=THREADS, seeds=seeds.seeds,
        train_seconds=seconds, test_accuracy=accuracy,
        passed=bool(len(accuracy) == len(seeds.seeds) and min(accuracy) >= TARGET),
    )  # fmt: skip
    print(f"\n{who}, {epochs} epoch(s), batch {batch}: train seconds "
          f"{[round(s, 2) for s in seconds]}, test accuracy {accuracy}")  # fmt: skip


def test_fastmlp_recipe(benchmark, data, full):
    from fastmlp import MLP

    X, y, Xt, yt = data["X"], data["y"], data["Xt"], data["yt"]
    options = {k: v for k, v in RECIPE.items() if k != "hidden"}
    if not full:
        options["epochs"] = 1
    seeds = Seeds(SEEDS if full else SEEDS[:1])

    def train(seed):
        model = MLP((X.shape[1], *RECIPE["hidden"], 10), seed=seed)
        history = model.fit(X, y, progress=False, threads=THREADS, **options)
        seeds.done.append((history.train_seconds, model.evaluate(Xt, yt)["accuracy"]))

    warm = dict(options, epochs=1)  # compile (or load the cache) and warm up: not timed
    MLP((X.shape[1], *RECIPE["hidden"], 10)).fit(X[:256], y[:256], progress=False,
                                                 threads=THREADS, **warm)  # fmt: skip
    benchmark.group = GROUP
    benchmark.pedantic(train, setup=seeds.setup, rounds=len(seeds.seeds), warmup_rounds=0)
    record(benchmark, seeds, "fastmlp", options["epochs"], options["batch_size"])
    accuracy = [a for _, a in seeds.done]
    assert all(0.0 <= a <= 1.0 for a in accuracy)
    if full:
        assert min(accuracy) >= TARGET, f"a seed below 98%: {accuracy}"


def torch_run(torch, data, seed, epochs, batch, lr, hidden):
    """The usual loop, Adam + OneCycleLR (its defaults) over ``epochs``: (seconds, accuracy)."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    nn = torch.nn
    widths = (data["X"].shape[1], *hidden)
    layers = []
    for n_in, n_out in zip(widths, widths[1:], strict=False):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(widths[-1], 10))
    X = torch.from_numpy(data["X"].astype(np.float32) / np.float32(255))
    y = torch.from_numpy(data["y"])
    steps = -(-len(X) // batch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs,
                                                   steps_per_epoch=steps)  # fmt: skip
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X), batch):
            rows = order[start : start + batch]
            opt.zero_grad()
            loss_fn(model(X[rows]), y[rows]).backward()
            opt.step()
            schedule.step()
    seconds = time.perf_counter() - started
    with torch.no_grad():
        Xt = torch.from_numpy(data["Xt"].astype(np.float32) / np.float32(255))
        predicted = model(Xt).argmax(1).numpy()
    return seconds, float((predicted == data["yt"]).mean())


SAME_RECIPE = {k: RECIPE[k] for k in ("hidden", "lr", "batch_size", "epochs")}
TORCH_RUNS = [
    *(pytest.param(dict(TORCH_USUAL, epochs=e), id=f"usual-{e}epochs") for e in (5, 8)),
    pytest.param(SAME_RECIPE, id="fastmlp-recipe"),
]


@pytest.mark.parametrize("settings", TORCH_RUNS)
def test_torch_adam_onecycle(benchmark, data, full, settings):
    torch = pytest.importorskip("torch")
    epochs = settings["epochs"] if full else 1
    seeds = Seeds(SEEDS if full else SEEDS[:1])

    def train(seed):
        seeds.done.append(torch_run(torch, data, seed, epochs, settings["batch_size"],
                                    settings["lr"], settings["hidden"]))  # fmt: skip

    benchmark.group = GROUP
    benchmark.pedantic(train, setup=seeds.setup, rounds=len(seeds.seeds), warmup_rounds=0)
    record(benchmark, seeds, "pytorch", epochs, settings["batch_size"])
    benchmark.extra_info["lr"] = settings["lr"]
    assert all(0.0 <= a <= 1.0 for _, a in seeds.done)
