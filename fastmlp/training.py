"""The training loop: epochs of shuffled mini-batches, handed to the kernels a chunk at a time.

Everything between chunks is bookkeeping the kernels must not do: the learning-rate
schedule, the progress display, watching for divergence, validation, early stopping and
Ctrl-C. The arithmetic of a step is the backend's ``train_steps``, called from one place
(:meth:`_Stepper.run`). Users call :meth:`fastmlp.MLP.fit`, which checks the data and
hands it here; this module does not know the model class, only what :class:`Trainable`
lists.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from fastmlp import validation as check
from fastmlp.augmenting import Distorter
from fastmlp.datasets import holdout_size
from fastmlp.progress import Reporter
from fastmlp.sample_weights import require_sample_weight
from fastmlp.schedules import SCHEDULES, learning_rates
from kernels import augment_reference
from kernels.layout import OPTIMIZERS, Net, Optimizer, optimizer_state

# An epoch is cut into kernel calls ("chunks"): at most CHUNKS_PER_EPOCH of them (between
# calls the progress bar moves, divergence is checked and Ctrl-C is heard), each of at
# least MIN_CHUNK_ROWS rows. A call has fixed costs that grow with the network like a
# row's arithmetic does (the numba backend packs the parameters into its layout and back,
# the trainer snapshots and checks them, big buffers are mapped afresh), so it is the rows
# a call trains that keep them small: 784-256-256-10 at batch 128 on 2 cores spent 0.65 ms
# a call outside the loop, 13 ms of a 0.18 s epoch in 20 calls. The floats do not depend
# on the chunking: each batch's step is the same whichever call it is in.
CHUNKS_PER_EPOCH = 20
MIN_CHUNK_ROWS = 8192


def chunk_batches(n_batches: int, batch_size: int) -> int:
    """Batches per kernel call of an epoch of ``n_batches`` batches (the last call may have
    fewer)."""
    return max(1, math.ceil(n_batches / CHUNKS_PER_EPOCH), math.ceil(MIN_CHUNK_ROWS / batch_size))


class Trainable(Protocol):
    """What the loop needs of a model; :class:`fastmlp.MLP` has it."""

    net: Net
    params: np.ndarray  # flat float32, updated in place
    kernels: ModuleType  # the backend
    seed: int  # seeds the order of the examples
    backend: str

    def evaluate(self, X: Any, y: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TrainingOptions:
    """How to train, checked once when made: the keywords of :meth:`fastmlp.MLP.fit`.

    The defaults written here are the defaults of ``MLP.fit``; :attr:`History.options`
    records these fields (with ``threads`` resolved) and the backend.
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str | None = None
    shuffle: bool = True
    progress: bool = True
    threads: int | None = None  # None: every core (the numba backend caps it itself)
    validation_split: float | int | None = None  # held out of the data by MLP.fit
    augment: str | None = None  # distort each chunk's images as it is trained on

    def __post_init__(self) -> None:
        checked = {
            "epochs": check.positive_int("epochs", self.epochs),
            "batch_size": check.positive_int("batch_size", self.batch_size),
            "lr": check.positive_real("lr", self.lr),
            "optimizer": check.choice("optimizer", self.optimizer, OPTIMIZERS),
            "momentum": check.probability("momentum", self.momentum),
            "weight_decay": check.non_negative_real("weight_decay", self.weight_decay),
            "lr_schedule": None
            if self.lr_schedule is None
            else check.choice("lr_schedule", self.lr_schedule, SCHEDULES),
            "shuffle": _flag("shuffle", self.shuffle),
            "progress": _flag("progress", self.progress),
            "threads": (os.cpu_count() or 1)
            if self.threads is None
            else check.positive_int("threads", self.threads),
            "validation_split": None
            if self.validation_split is None
            else holdout_size("validation_split", self.validation_split),
            "augment": None
            if self.augment is None
            else check.choice("augment", self.augment, augment_reference.KINDS),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: set once, here


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience``
    epochs, and go back to the parameters of the best epoch (Keras's ``EarlyStopping``
    with ``restore_best_weights``). Each training run watches a fresh copy."""

    patience: int = 5
    min_delta: float = 0.0
    best_loss: float = field(default=math.inf, init=False)
    best_epoch: int = field(default=0, init=False)
    best_params: np.ndarray | None = field(default=None, init=False, repr=False)
    waited: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.patience = check.positive_int("early stopping patience", self.patience)
        self.min_delta = check.non_negative_real("early stopping min_delta", self.min_delta)

    def should_stop(self, epoch: int, val_loss: float, params: np.ndarray) -> bool:
        """Record epoch ``epoch`` (1-based); True once patience has run out."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.waited = val_loss, epoch, 0
            self.best_params = params.copy()
            return False
        self.waited += 1
        return self.waited >= self.patience


@dataclass
class History:
    """What happened in training: one dict per epoch and why training stopped.

    Each entry of ``epochs`` has ``epoch``, ``loss`` and ``accuracy`` (running means over
    the epoch's batches), ``val_loss`` and ``val_accuracy`` (``None`` without validation
    data), ``lr`` (the last step's rate) and ``seconds`` (the epoch's training time).
    ``warmup_seconds`` is the time of one throw-away step before the first epoch: the
    kernels' compile time on a first run with the numba backend, milliseconds after.
    ``options`` records the :class:`TrainingOptions` of the run and the backend.
    ``stop_reason`` is ``"completed"``, ``"early_stopping"``, ``"diverged"`` or
    ``"interrupted"``; ``message`` explains anything but a normal end.
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    stop_reason: str = "completed"
    message: str = ""
    train_seconds: float = 0.0
    warmup_seconds: float = 0.0

    def __getitem__(self, key: str) -> list[Any]:
        """Keras-style column access: ``history["val_accuracy"]``."""
        return [entry[key] for entry in self.epochs]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: what ``fastmlp train --json`` and model files record."""
        return {
            "options": self.options,
            "epochs": self.epochs,
            "stop_reason": self.stop_reason,
            "message": self.message,
            "train_seconds": self.train_seconds,
            "warmup_seconds": self.warmup_seconds,
        }


def train(
    model: Trainable,
    inputs: np.ndarray,
    targets: np.ndarray,
    options: TrainingOptions,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    early_stopping: EarlyStopping | int | dict[str, Any] | None = None,
    sample_weight: np.ndarray | None = None,
) -> History:
    """Train ``model`` in place on inputs and targets the model has already checked.

    ``sample_weight`` (len(inputs),) float32, checked by the model too, weighs each row's
    loss (:mod:`fastmlp.sample_weights`); the epoch's ``loss`` is then the weighted mean.

    Divergence (a loss or parameter of NaN or inf) stops training, keeps the parameters
    from before the failing chunk and warns; Ctrl-C stops and keeps the parameters of the
    last completed epoch. Both are reported in the returned :class:`History`.
    """
    stopper = _early_stopping(early_stopping, validation)
    stepper = _Stepper(model, inputs, targets, options, sample_weight)
    history = History(options={**asdict(options), "backend": model.backend})
    report = Reporter(options.progress, validation is not None)
    rng = np.random.default_rng(model.seed)
    n, steps_per_epoch = len(inputs), math.ceil(len(inputs) / options.batch_size)
    kept = stepper.snapshot(), 0  # what Ctrl-C goes back to: the last completed epoch
    try:
        history.warmup_seconds = _warm_up(stepper, validation)
        report.warmed_up(history.warmup_seconds)
        upcoming = None  # the next epoch's order, drawn one epoch ahead (the same draws)
        for epoch in range(1, options.epochs + 1):
            order = _order(rng, n, options.shuffle) if upcoming is None else upcoming
            upcoming = _order(rng, n, options.shuffle) if epoch < options.epochs else None
            rates = learning_rates(
                options.lr_schedule, options.lr, epoch - 1, options.epochs, steps_per_epoch
            )
            stepper.epoch = epoch  # the augmentation stream's counter
            if stepper.distort is not None:  # distort the next chunk while one trains
                # (the next epoch's first one while this epoch's last one trains)
                stepper.distort.plan(order, model.seed, epoch, upcoming)
            entry = _epoch(stepper, order, rates, report, epoch, options.epochs)
            if validation is not None:
                scores = model.evaluate(*validation)
                entry["val_loss"], entry["val_accuracy"] = scores["loss"], scores["accuracy"]
            history.epochs.append(entry)
            history.train_seconds += entry["seconds"]
            kept = stepper.snapshot(), epoch
            report.epoch_line(entry)
            if stopper is not None and stopper.should_stop(epoch, entry["val_loss"], model.params):
                model.params[...] = stopper.best_params
                history.stop_reason = "early_stopping"
                history.message = (
                    f"validation loss did not improve by {stopper.min_delta:g} for "
                    f"{stopper.patience} epochs; restored epoch {stopper.best_epoch}"
                )
                break
    except KeyboardInterrupt:
        stepper.restore(kept[0])
        done = kept[1]
        del history.epochs[done:]  # an epoch recorded just before its state was kept
        history.stop_reason = "interrupted"
        history.message = f"interrupted in epoch {done + 1}; keeping the {done} completed epoch(s)"
    except _Diverged as diverged:
        history.stop_reason = "diverged"
        history.message = (
            f"training diverged in epoch {len(history.epochs) + 1} (the loss became "
            f"{diverged}); the parameters before it are kept. {_advice(options)}"
        )
        warnings.warn(history.message, RuntimeWarning, stacklevel=3)
    return history


def _epoch(
    stepper: _Stepper,
    order: np.ndarray,
    rates: np.ndarray,
    report: Reporter,
    epoch: int,
    epochs: int,
) -> dict[str, Any]:
    """Epoch ``epoch`` of ``epochs``: the rows in ``order``, a chunk of batches per kernel call."""
    batch_size = stepper.batch_size
    per_chunk = stepper.per_chunk
    loss_sum, correct, seen, weight_seen = 0.0, 0, 0, 0.0
    started = time.perf_counter()
    bar = report.start_epoch(epoch - 1, epochs, len(order))
    try:
        for first in range(0, len(rates), per_chunk):
            last = min(first + per_chunk, len(rates))
            rows = order[first * batch_size : last * batch_size]
            losses, hits = stepper.run(rows, rates[first:last])
            if stepper.sample_weight is None:
                # Each batch's loss is its mean: weigh it by its rows (the last may be short).
                sizes = np.minimum(batch_size, len(rows) - np.arange(last - first) * batch_size)
            else:  # a weighted mean: weigh it by the batch's weight
                starts = np.arange(0, len(rows), batch_size)
                sizes = np.add.reduceat(stepper.sample_weight[rows].astype(np.float64), starts)
            loss_sum += float(np.dot(losses.astype(np.float64), sizes))
            correct += int(hits.sum())
            seen += len(rows)
            weight_seen += float(sizes.sum())
            report.advance(bar, len(rows), loss_sum / weight_seen if weight_seen else 0.0)
    finally:
        report.close(bar)
    return {
        "epoch": epoch,
        "loss": loss_sum / weight_seen if weight_seen else 0.0,
        "accuracy": correct / seen,
        "val_loss": None,
        "val_accuracy": None,
        "lr": float(rates[-1]),
        "seconds": time.perf_counter() - started,
    }


class _Diverged(Exception):
    """A chunk's loss or parameters came out NaN or infinite (already undone)."""


class _Stepper:
    """Optimizer steps on the model's parameters: the one caller of ``train_steps``."""

    def __init__(
        self,
        model: Trainable,
        inputs: np.ndarray,
        targets: np.ndarray,
        options: TrainingOptions,
        sample_weight: np.ndarray | None = None,
    ) -> None:
        self.model, self.inputs, self.targets = model, inputs, targets
        if sample_weight is not None:
            require_sample_weight(model.kernels, model.backend)
        self.sample_weight = sample_weight
        self.batch_size, self.threads = options.batch_size, options.threads
        self.rule = Optimizer(
            options.optimizer, momentum=options.momentum, weight_decay=options.weight_decay
        )
        self.state = optimizer_state(model.net, options.optimizer)
        self.step = 0  # steps taken so far: Adam's bias correction counts them
        self.epoch = 0
        self.per_chunk = chunk_batches(math.ceil(len(inputs) / self.batch_size), self.batch_size)
        self.distort = None
        if options.augment is not None:
            self.distort = Distorter(
                inputs, options.augment, self.per_chunk * options.batch_size, model.backend,
                options.threads,
            )  # fmt: skip
        else:
            # The backend's copy of the rows for every epoch (numba: their non-zero entries,
            # made once, so an epoch costs the same for uint8 and float inputs). Distorted
            # chunks are new rows every time and go to train_steps as they are.
            self.inputs = model.kernels.prepare_inputs(inputs)

    def snapshot(self) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
        """Copies of the parameters, the optimizer state and the step count, to go back to."""
        return self.model.params.copy(), {k: v.copy() for k, v in self.state.items()}, self.step

    def restore(self, snapshot: tuple[np.ndarray, dict[str, np.ndarray], int]) -> None:
        params, state, self.step = snapshot
        self.model.params[...] = params
        for key, value in state.items():
            self.state[key][...] = value

    def run(self, rows: np.ndarray, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``len(rates)`` steps on batches of ``rows``; each batch's loss and correct count.

        A chunk that diverges is undone before :class:`_Diverged` is raised.
        """
        before = self.snapshot()
        inputs, targets, weights = self.inputs, self.targets, self.sample_weight
        if self.distort is not None:  # train on distorted copies of just this chunk's rows
            inputs, targets = self.distort(rows, self.model.seed, self.epoch), targets[rows]
            weights = None if weights is None else weights[rows]
            rows = np.arange(len(rows))
        # Without weights the call is the unweighted one, keyword and all (any backend).
        weighted = {} if weights is None else {"sample_weight": weights}
        # Overflow on the way to divergence is reported once, with advice, not as warnings.
        with np.errstate(all="ignore"):
            losses, hits = self.model.kernels.train_steps(
                self.model.params,
                self.state,
                self.model.net,
                inputs,
                targets,
                rows,
                self.batch_size,
                rates,
                self.rule,
                self.step,
                self.threads,
                **weighted,
            )
        if not (np.isfinite(losses).all() and np.isfinite(self.model.params).all()):
            self.restore(before)
            bad = losses[~np.isfinite(losses)]
            raise _Diverged(str(float(bad[0])) if bad.size else "finite, the parameters not")
        self.step += len(rates)
        return losses, hits


def _order(rng: np.random.Generator, n: int, shuffle: bool) -> np.ndarray:
    """An epoch's rows in order: shuffled by the model's generator, or as they are."""
    return rng.permutation(n) if shuffle else np.arange(n)


def _warm_up(stepper: _Stepper, validation: tuple[np.ndarray, np.ndarray] | None) -> float:
    """One step at learning rate 0, undone, and one prediction: compiling (Numba's first
    call) is timed apart from the first epoch. Returns the seconds it took."""
    started = time.perf_counter()
    before = stepper.snapshot()
    stepper.run(np.arange(min(stepper.batch_size, len(stepper.inputs))), np.zeros(1, np.float32))
    stepper.restore(before)
    if validation is not None:
        model = stepper.model
        model.kernels.forward(model.params, model.net, validation[0][:1])
    return time.perf_counter() - started


def _advice(options: TrainingOptions) -> str:
    """What to change after a divergence: the weight decay when it is the likely cause."""
    decay, lr = options.weight_decay, options.lr
    # Each SGD step multiplies the weights by (1 - lr * weight_decay) before the gradient:
    # from lr * weight_decay >= 1 on, the decay alone overshoots zero, and a decay >= 1
    # outweighs any gradient (and overflows float32 long before 1e30).
    if decay >= 1 or lr * decay >= 1:
        return (
            f"Try a smaller weight decay than {decay:g} (lr * weight_decay is {lr * decay:g}; "
            "keep it well below 1)."
        )
    return f"Try a smaller learning rate than {lr:g}."


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _early_stopping(option: Any, validation: Any) -> EarlyStopping | None:
    """A fresh :class:`EarlyStopping` from a patience, a dict of its fields or one itself."""
    if option is None or option is False:
        return None
    if validation is None:
        raise ValueError(
            "early_stopping watches the validation loss: give validation_data or validation_split"
        )
    if isinstance(option, EarlyStopping):
        return EarlyStopping(option.patience, option.min_delta)
    if isinstance(option, dict):
        unknown = set(option) - {"patience", "min_delta"}
        if unknown:
            raise ValueError(f"early_stopping takes patience and min_delta, not {sorted(unknown)}")
        return EarlyStopping(**option)
    if option is True:
        raise ValueError("early_stopping must be a patience, a dict or EarlyStopping, got True")
    return EarlyStopping(patience=option)
