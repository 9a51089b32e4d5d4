"""What the benchmarks time: one training epoch or one inference pass, per backend and for
PyTorch, each made ready (data converted, model built) before the clock starts."""

from __future__ import annotations

import numpy as np

import kernels
from kernels import Net, Optimizer, optimizer_state

LR = 0.1
LRS = {"sgd": LR, "momentum": 0.02, "adam": 1e-3}  # rates each optimizer trains well at


def info(benchmark, backend, threads, rows, batch=32, hidden=16, epoch_rows=60_000):
    """Record what a benchmark ran; `scale` turns its time into seconds per full epoch."""
    benchmark.extra_info.update(
        backend=backend, threads=threads, rows=rows, batch=batch, hidden=hidden,
        epoch_rows=epoch_rows, scale=epoch_rows / rows,
    )  # fmt: skip


class KernelTrainer:
    """One epoch of train_steps of a fastmlp backend over rows of X (a fresh shuffle each)."""

    def __init__(self, backend, X, y, rows, batch=32, hidden=16, threads=1, seed=0,
                 optimizer="sgd"):  # fmt: skip
        self.kb = kernels.backend(backend)
        self.net = Net((X.shape[1], hidden, hidden, 10))
        self.params = np.empty(self.net.n_params, np.float32)
        kernels.backend("numpy").init_params(self.params, self.net, "he_uniform", seed)
        self.optimizer = Optimizer(optimizer)
        self.state = optimizer_state(self.net, optimizer)
        self.X, self.y, self.rows, self.batch, self.threads = X, y, rows, batch, threads
        self.lrs = np.full(-(-rows // batch), LRS[optimizer], np.float32)
        self.rng = np.random.default_rng(seed)
        self.losses = None

    def setup(self):
        return (self.rng.permutation(len(self.X))[: self.rows],), {}

    def epoch(self, order):
        self.losses, _ = self.kb.train_steps(
            self.params, self.state, self.net, self.X, self.y, order, self.batch, self.lrs,
            self.optimizer, 0, self.threads,
        )  # fmt: skip


class KernelInference:
    """forward() of a fastmlp backend on the test images; returns the accuracy."""

    def __init__(self, backend, trainer: KernelTrainer, X, y):
        self.kb, self.net, self.params = kernels.backend(backend), trainer.net, trainer.params
        self.X, self.y = X, y

    def __call__(self):
        return float((self.kb.forward(self.params, self.net, self.X).argmax(1) == self.y).mean())


class TorchTrainer:
    """The usual PyTorch loop: nn.Sequential, CrossEntropyLoss, optim.SGD, tensors pre-made
    (pixels / 255 as float32, once), batches by slicing a shuffled index, no DataLoader."""

    def __init__(self, torch, X, y, rows, batch=32, hidden=16, threads=2, seed=0,
                 optimizer="sgd"):  # fmt: skip
        self.torch = torch
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        nn = torch.nn
        self.model = nn.Sequential(
            nn.Linear(X.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 10),
        )  # fmt: skip
        self.loss = nn.CrossEntropyLoss()
        parameters, lr = self.model.parameters(), LRS[optimizer]
        self.opt = {
            "sgd": lambda: torch.optim.SGD(parameters, lr=lr),
            "momentum": lambda: torch.optim.SGD(parameters, lr=lr, momentum=0.9),
            "adam": lambda: torch.optim.Adam(parameters, lr=lr),
        }[optimizer]()
        self.X = torch.from_numpy(X.astype(np.float32) / np.float32(255))
        self.y = torch.from_numpy(np.asarray(y, np.int64))
        self.rows, self.batch = rows, batch
        self.generator = torch.Generator().manual_seed(seed)

    def setup(self):
        return (self.torch.randperm(len(self.X), generator=self.generator)[: self.rows],), {}

    def epoch(self, order):
        model, loss_fn, opt, X, y = self.model, self.loss, self.opt, self.X, self.y
        for start in range(0, len(order), self.batch):
            rows = order[start : start + self.batch]
            opt.zero_grad()
            loss = loss_fn(model(X[rows]), y[rows])
            loss.backward()
            opt.step()


class TorchInference:
    """Probabilities of the test images (softmax, as fastmlp's forward), no_grad."""

    def __init__(self, trainer: TorchTrainer, X, y):
        self.torch, self.model = trainer.torch, trainer.model
        self.X = trainer.torch.from_numpy(X.astype(np.float32) / np.float32(255))
        self.y = np.asarray(y)

    def __call__(self):
        with self.torch.no_grad():
            probs = self.torch.softmax(self.model(self.X), dim=1)
        return float((probs.argmax(1).numpy() == self.y).mean())
