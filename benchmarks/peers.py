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


def hidden_widths(hidden) -> tuple[int, ...]:
    """Hidden widths: an int H means two layers (H, H), as the classic 784-16-16-10."""
    return (hidden, hidden) if isinstance(hidden, int) else tuple(hidden)


class KernelTrainer:
    """One epoch of train_steps of a fastmlp backend over rows of X (a fresh shuffle each)."""

    def __init__(self, backend, X, y, rows, batch=32, hidden=16, threads=1, seed=0,
                 optimizer="sgd"):  # fmt: skip
        self.kb = kernels.backend(backend)
        self.net = Net((X.shape[1], *hidden_widths(hidden), 10))
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
        widths = (X.shape[1], *hidden_widths(hidden))
        layers = []
        for n_in, n_out in zip(widths, widths[1:], strict=False):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.model = nn.Sequential(*layers, nn.Linear(widths[-1], 10))
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


class FitTrainer:
    """The user's path: ``MLP(sizes).fit(X, y, epochs=1, ...)`` on X as given (uint8 pixels,
    or the float32 x / 255 a NumPy user makes), a fresh model each time, no progress bar.
    The time includes everything fit does besides compiling (cached by then): checking
    and preparing the inputs, its warm-up step, the epoch."""

    def __init__(self, X, y, rows, batch=32, hidden=16, threads=2):
        from fastmlp import MLP

        self.mlp, self.sizes = MLP, (X.shape[1], *hidden_widths(hidden), 10)
        self.X, self.y, self.rows, self.batch, self.threads = X[:rows], y[:rows], rows, batch, threads
        self.model = None

    def epoch(self):
        self.model = model = self.mlp(self.sizes)
        model.fit(self.X, self.y, epochs=1, batch_size=self.batch, lr=LR,
                                 progress=False, threads=self.threads)  # fmt: skip


class NumpyLoopTrainer:
    """Ten lines of vectorised NumPy, as a NumPy user writes an MLP: ``x @ W + b`` (BLAS, its
    default threads), ReLU, softmax cross-entropy, plain SGD, float32 inputs x / 255 made
    once, batches by fancy-indexing a shuffled order."""

    def __init__(self, X, y, rows, batch=32, hidden=16, seed=0):
        rng = np.random.default_rng(seed)
        widths = (X.shape[1], *hidden_widths(hidden), 10)
        self.layers = [
            ((rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32),
             np.zeros(b, np.float32))
            for a, b in zip(widths, widths[1:], strict=False)
        ]  # fmt: skip
        self.X = X.astype(np.float32) / np.float32(255)
        self.y = np.asarray(y, np.int64)
        self.rows, self.batch, self.rng = rows, batch, rng
        self.loss = None

    def forward(self):
        """Softmax probabilities of every row of X (inference)."""
        a, last = self.X, len(self.layers) - 1
        for i, (W, b) in enumerate(self.layers):
            a = a @ W + b
            a = np.maximum(a, 0) if i < last else a
        e = np.exp(a - a.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def epoch(self):
        lr, last = np.float32(LR), len(self.layers) - 1
        order = self.rng.permutation(len(self.X))[: self.rows]
        for start in range(0, len(order), self.batch):
            rows = order[start : start + self.batch]
            acts, labels = [self.X[rows]], self.y[rows]
            for i, (W, b) in enumerate(self.layers):
                z = acts[-1] @ W + b
                acts.append(np.maximum(z, 0) if i < last else z)
            z = acts[-1] - acts[-1].max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            self.loss = -np.log(p[np.arange(len(rows)), labels] + np.float32(1e-30)).mean()
            p[np.arange(len(rows)), labels] -= 1
            d = p / np.float32(len(rows))
            for i in range(last, -1, -1):
                W, b = self.layers[i]
                gW, gb = acts[i].T @ d, d.sum(axis=0)
                if i:
                    d = (d @ W.T) * (acts[i] > 0)
                W -= lr * gW
                b -= lr * gb
