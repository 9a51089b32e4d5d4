"""The training loop: epochs of shuffled mini-batches, handed to the kernels a chunk at a time.

Everything between chunks is bookkeeping the kernels must not do: the learning-rate
schedule, the progress bar, watching for divergence, validation, early stopping and
Ctrl-C. The arithmetic of a step is the backend's ``train_steps``.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fastmlp.progress import Reporter
from fastmlp.schedules import SCHEDULES, learning_rates
from kernels.layout import OPTIMIZERS, Optimizer, optimizer_state

if TYPE_CHECKING:
    from fastmlp.model import MLP

# How many kernel calls an epoch is cut into: often enough for a live progress bar and
# divergence checks, rarely enough that the calls cost nothing next to the arithmetic.
CHUNKS_PER_EPOCH = 20


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs.

    The parameters of the best epoch are restored when training stops this way.
    """

    patience: int = 5
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(
                f"early stopping patience must be a positive integer, got {self.patience!r}"
            )
        if not self.min_delta >= 0:
            raise ValueError(f"early stopping min_delta must be >= 0, got {self.min_delta!r}")


@dataclass
class History:
    """What happened in :func:`fit`: one dict per epoch and why training stopped.

    Each entry of ``epochs`` has ``epoch``, ``loss`` and ``accuracy`` (running means over
    the epoch's batches), ``val_loss`` and ``val_accuracy`` (``None`` without validation
    data), ``lr`` (the last step's rate) and ``seconds`` (the epoch's training time).
    ``warmup_seconds`` is the time of one throw-away step before the first epoch: the
    kernels' compile time on a first run with the numba backend, milliseconds after.
    ``options`` records the arguments of the run. ``stop_reason`` is ``"completed"``, ``"early_stopping"``, ``"diverged"`` or
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
        return {
            "options": self.options,
            "epochs": self.epochs,
            "stop_reason": self.stop_reason,
            "message": self.message,
            "train_seconds": self.train_seconds,
            "warmup_seconds": self.warmup_seconds,
        }


def fit(
    model: MLP,
    X: Any,
    y: Any,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 0.1,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    lr_schedule: str | None = None,
    validation_data: tuple[Any, Any] | None = None,
    early_stopping: EarlyStopping | int | dict[str, Any] | None = None,
    shuffle: bool = True,
    progress: bool = True,
    threads: int | None = None,
) -> History:
    """Train ``model`` in place with mini-batch gradient descent.

    Parameters
    ----------
    model : MLP
        The model; its parameters are updated in place.
    X, y : array_like
        Inputs (uint8 pixels or floats, images are flattened) and labels or targets.
    epochs, batch_size : int
        Passes over the data, and examples per step (the last batch may be smaller).
    lr : float
        Learning rate (the peak rate under a schedule).
    optimizer : {"sgd", "momentum", "adam"}
        Update rule; ``momentum`` is the momentum of ``"momentum"``.
    weight_decay : float
        L2 regularisation strength lambda, added to the gradient as ``lambda * w``.
    lr_schedule : {None, "step", "cosine", "onecycle"}
        See :func:`learning_rates`.
    validation_data : (X_val, y_val), optional
        Scored after every epoch (``val_loss``, ``val_accuracy``).
    early_stopping : EarlyStopping or int or dict, optional
        Patience (and ``min_delta``) on the validation loss; needs ``validation_data``.
    shuffle : bool
        Visit the examples in a new seeded order each epoch.
    progress : bool
        A progress bar on a terminal and one summary line per epoch on stdout.
    threads : int, optional
        Threads the kernels may use (default: every core, capped by NUMBA_NUM_THREADS).

    Returns
    -------
    History
        Per-epoch metrics and why training stopped. Divergence (a loss of NaN or inf)
        stops training, restores the last good parameters and warns; Ctrl-C stops
        after the last completed epoch, whose parameters the model keeps.
    """
    _check_options(epochs, batch_size, lr, optimizer, momentum, weight_decay, lr_schedule, threads)
    stopper = _early_stopping(early_stopping, validation_data)
    inputs = model.prepare_inputs(X)
    targets = model.prepare_targets(y, inputs.shape[0])
    # The backend's copy of the rows for every epoch (numba: their non-zero entries, so an
    # epoch costs the same for uint8 and float inputs)
    inputs = model.kernels.prepare_inputs(inputs)
    validation = None
    if validation_data is not None:
        if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        # Prepared once: evaluating every epoch then converts nothing.
        validation = (model.prepare_inputs(validation_data[0]), validation_data[1])
    rule = Optimizer(optimizer, momentum=momentum, weight_decay=weight_decay)
    state = optimizer_state(model.net, optimizer)
    # Every core by default; the numba backend caps it at NUMBA_NUM_THREADS itself.
    threads = threads or os.cpu_count() or 1
    n = inputs.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    batches_per_chunk = max(1, math.ceil(steps_per_epoch / CHUNKS_PER_EPOCH))
    rng = np.random.default_rng(model.seed)
    history = History(
        options={
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": optimizer,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "lr_schedule": lr_schedule,
            "shuffle": shuffle,
            "threads": threads,
            "backend": model.backend,
        }
    )
    model.history = history
    best_loss, best_params, waited = math.inf, None, 0
    report = Reporter(progress, validation is not None)
    history.warmup_seconds = _warm_up(
        model, inputs, targets, batch_size, rule, state, threads, validation
    )
    report.warmed_up(history.warmup_seconds)
    step = 0
    for epoch in range(epochs):
        epoch_start = _snapshot(model, state)
        order = rng.permutation(n) if shuffle else np.arange(n)
        rates = learning_rates(lr_schedule, lr, epoch, epochs, steps_per_epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        started = time.perf_counter()
        bar = report.start_epoch(epoch, epochs, n)
        try:
            for first in range(0, steps_per_epoch, batches_per_chunk):
                last = min(first + batches_per_chunk, steps_per_epoch)
                rows = order[first * batch_size : last * batch_size]
                last_good = _snapshot(model, state)
                # Overflow on the way to divergence is caught just below, with advice.
                with np.errstate(all="ignore"):
                    losses, hits = model.kernels.train_steps(
                        model.params,
                        state,
                        model.net,
                        inputs,
                        targets,
                        rows,
                        batch_size,
                        rates[first:last],
                        rule,
                        step,
                        threads,
                    )
                if not (np.isfinite(losses).all() and np.isfinite(model.params).all()):
                    _restore(model, state, last_good)
                    history.stop_reason = "diverged"
                    history.message = (
                        f"training diverged in epoch {epoch + 1} (the loss became "
                        f"{_first_bad(losses)}); the parameters before it are kept. "
                        f"Try a smaller learning rate than {lr:g}."
                    )
                    break
                step += last - first
                batch_rows = np.minimum(
                    batch_size, len(rows) - np.arange(last - first) * batch_size
                )
                loss_sum += float(np.dot(losses.astype(np.float64), batch_rows))
                correct += int(hits.sum())
                seen += len(rows)
                report.advance(bar, len(rows), loss_sum / seen)
        except KeyboardInterrupt:
            _restore(model, state, epoch_start)
            history.stop_reason = "interrupted"
            history.message = (
                f"interrupted in epoch {epoch + 1}; keeping the {epoch} completed epoch(s)"
            )
            report.close(bar)
            break
        seconds = time.perf_counter() - started
        history.train_seconds += seconds
        report.close(bar)
        if history.stop_reason == "diverged":
            warnings.warn(history.message, RuntimeWarning, stacklevel=3)
            break
        entry = {
            "epoch": epoch + 1,
            "loss": loss_sum / seen,
            "accuracy": correct / seen,
            "val_loss": None,
            "val_accuracy": None,
            "lr": float(rates[-1]),
            "seconds": seconds,
        }
        if validation is not None:
            scores = model.evaluate(*validation)
            entry["val_loss"], entry["val_accuracy"] = scores["loss"], scores["accuracy"]
        history.epochs.append(entry)
        report.epoch_line(entry)
        if stopper is not None:
            if entry["val_loss"] < best_loss - stopper.min_delta:
                best_loss, best_params, waited = entry["val_loss"], model.params.copy(), 0
            else:
                waited += 1
                if waited >= stopper.patience:
                    model.params[...] = best_params
                    history.stop_reason = "early_stopping"
                    history.message = (
                        f"validation loss did not improve by {stopper.min_delta:g} for "
                        f"{stopper.patience} epochs; restored epoch {entry['epoch'] - waited}"
                    )
                    break
    return history


def _snapshot(model: MLP, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Copies of the parameters and optimizer state, to go back to."""
    return model.params.copy(), {k: v.copy() for k, v in state.items()}


def _restore(model: MLP, state: dict[str, np.ndarray], snapshot: tuple) -> None:
    params, saved = snapshot
    model.params[...] = params
    for key in state:
        state[key][...] = saved[key]


def _warm_up(
    model: MLP,
    inputs: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    rule: Optimizer,
    state: dict[str, np.ndarray],
    threads: int,
    validation: tuple[Any, Any] | None,
) -> float:
    """Run one throw-away step and one prediction, so compiling (Numba's first call) is
    timed apart from the first epoch. Returns the seconds it took."""
    started = time.perf_counter()
    rows = np.arange(min(batch_size, len(inputs)))
    scratch_params, scratch_state = _snapshot(model, state)
    with np.errstate(all="ignore"):
        model.kernels.train_steps(
            scratch_params,
            scratch_state,
            model.net,
            inputs,
            targets,
            rows,
            batch_size,
            np.zeros(1, np.float32),
            rule,
            0,
            threads,
        )
        if validation is not None:
            model.kernels.forward(model.params, model.net, validation[0][:1])
    return time.perf_counter() - started


def _first_bad(losses: np.ndarray) -> str:
    bad = losses[~np.isfinite(losses)]
    return str(float(bad[0])) if bad.size else "non-finite in the parameters"


def _check_options(
    epochs: Any,
    batch_size: Any,
    lr: Any,
    optimizer: Any,
    momentum: Any,
    weight_decay: Any,
    lr_schedule: Any,
    threads: Any,
) -> None:
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
    if not (isinstance(momentum, int | float) and 0 <= momentum < 1):
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    if not (
        isinstance(weight_decay, int | float) and math.isfinite(weight_decay) and weight_decay >= 0
    ):
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    if lr_schedule is not None and lr_schedule not in SCHEDULES:
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; choose None or one of {SCHEDULES}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")


def _early_stopping(option: Any, validation_data: Any) -> EarlyStopping | None:
    if option is None or option is False:
        return None
    if validation_data is None:
        raise ValueError("early_stopping watches the validation loss: give validation_data too")
    if isinstance(option, EarlyStopping):
        return option
    if isinstance(option, int) and not isinstance(option, bool):
        return EarlyStopping(patience=option)
    if isinstance(option, dict):
        return EarlyStopping(**option)
    raise ValueError(f"early_stopping must be a patience, a dict or EarlyStopping, got {option!r}")
