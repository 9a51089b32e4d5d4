"""The training loop: it learns, repeats itself exactly, and stops well when it must."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastmlp import MLP
from fastmlp.schedules import learning_rates
from fastmlp.training import EarlyStopping
from tests.kernel_helpers import available_backends


def blobs(n=300, seed=0):
    """Three well separated clusters in 2-D: any working trainer gets them all right."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 3], [3, -2], [-3, -2]], np.float32)
    y = rng.integers(0, 3, n)
    X = centres[y] + rng.normal(scale=0.6, size=(n, 2)).astype(np.float32)
    return X.astype(np.float32), y


def blobs_on_a_ray(n=300, seed=0):
    """Three clusters along one line from the origin, told apart by distance alone.

    Without biases a ReLU network is positively homogeneous (f(a x) = a f(x) for a > 0):
    it can only tell directions apart, so a backend that drops the bias gradient stays
    near half right here, where a working one gets them all.
    """
    rng = np.random.default_rng(seed)
    centres = np.array([[1, 1], [4, 4], [7, 7]], np.float32)
    y = rng.integers(0, 3, n)
    X = centres[y] + rng.normal(scale=0.5, size=(n, 2)).astype(np.float32)
    return X.astype(np.float32), y


FAST_BACKENDS = [b for b in available_backends() if b != "python"]


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_it_learns_separable_clusters(backend, optimizer):
    X, y = blobs_on_a_ray()
    model = MLP([2, 8, 3], backend=backend, seed=1)
    lr = 0.03 if optimizer == "adam" else 0.05
    history = model.fit(X, y, epochs=15, batch_size=16, lr=lr, optimizer=optimizer, progress=False)
    assert history.stop_reason == "completed"
    assert len(history.epochs) == 15
    assert history["loss"][-1] < history["loss"][0]
    assert model.evaluate(X, y)["accuracy"] > 0.95


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_same_seed_same_numbers(backend):
    X, y = blobs()
    runs = []
    for _ in range(2):
        model = MLP([2, 8, 8, 3], backend=backend, seed=7)
        history = model.fit(
            X,
            y,
            epochs=3,
            batch_size=10,
            lr=0.05,
            optimizer="adam",
            lr_schedule="cosine",
            progress=False,
        )
        runs.append((model.params.copy(), history["loss"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


def test_last_batch_smaller_and_history_fields():
    X, y = blobs(n=50)
    model = MLP([2, 4, 3], backend="numpy")
    history = model.fit(
        X, y, epochs=2, batch_size=32, lr=0.1, validation_data=(X, y), progress=False
    )
    entry = history.epochs[-1]
    assert set(entry) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert entry["epoch"] == 2
    assert entry["accuracy"] * 50 == pytest.approx(round(entry["accuracy"] * 50))  # of 50 rows
    assert 0 < entry["seconds"] <= history.train_seconds
    assert sum(e["seconds"] for e in history.epochs) == pytest.approx(history.train_seconds)
    assert entry["val_loss"] == pytest.approx(model.evaluate(X, y)["loss"])
    assert history["val_accuracy"][-1] == model.evaluate(X, y)["accuracy"]
    assert model.history is history


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_divergence_stops_with_advice_and_keeps_good_parameters(backend):
    X, y = blobs()
    X = X * 100
    model = MLP([2, 16, 3], backend=backend, seed=0)
    with pytest.warns(RuntimeWarning, match="diverged.*smaller learning rate"):
        history = model.fit(X, y, epochs=50, batch_size=8, lr=1e6, progress=False)
    assert history.stop_reason == "diverged"
    assert np.isfinite(model.params).all()
    assert "smaller learning rate" in history.message


def test_early_stopping_restores_the_best_epoch():
    X, y = blobs(n=100)
    Xv, yv = blobs(n=100, seed=1)
    model = MLP([2, 32, 3], backend="numpy", seed=0)
    history = model.fit(
        X,
        y,
        epochs=200,
        batch_size=4,
        lr=0.5,
        validation_data=(Xv, yv),
        early_stopping={"patience": 2, "min_delta": 1e-3},
        progress=False,
    )
    assert history.stop_reason == "early_stopping"
    assert len(history.epochs) < 200
    best = min(history["val_loss"])
    assert model.evaluate(Xv, yv)["loss"] == pytest.approx(best, rel=1e-5)


def test_early_stopping_needs_validation_data():
    X, y = blobs(n=20)
    with pytest.raises(ValueError, match="validation_data"):
        MLP([2, 3], backend="numpy").fit(X, y, epochs=1, early_stopping=3)
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"epochs": 2.5}, "epochs must be a positive integer"),
        ({"batch_size": -1}, "batch_size"),
        ({"lr": 0}, "lr must be a positive number"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
        ({"lr_schedule": "linear"}, "unknown lr_schedule 'linear'"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"momentum": 1.5}, "momentum"),
        ({"threads": 0}, "threads"),
        ({"validation_data": ([1.0],)}, "pair"),
    ],
)
def test_bad_options_say_what_is_wrong(options, message):
    X, y = blobs(n=20)
    with pytest.raises(ValueError, match=message):
        MLP([2, 3], backend="numpy").fit(X, y, **{"epochs": 1, **options})


def test_ctrl_c_keeps_the_last_completed_epoch(monkeypatch):
    X, y = blobs(n=64)
    model = MLP([2, 4, 3], backend="numpy")
    reference = MLP([2, 4, 3], backend="numpy")
    reference.fit(X, y, epochs=1, batch_size=8, lr=0.1, progress=False)
    real_steps = model.kernels.train_steps
    calls = {"n": 0}

    def interrupting(*args):
        calls["n"] += 1
        if calls["n"] > 8 + 3:  # 8 chunks of one batch per epoch: interrupt in epoch 2
            raise KeyboardInterrupt
        return real_steps(*args)

    monkeypatch.setattr(model.kernels, "train_steps", interrupting)
    history = model.fit(X, y, epochs=5, batch_size=8, lr=0.1, progress=False)
    assert history.stop_reason == "interrupted"
    assert len(history.epochs) == 1
    np.testing.assert_array_equal(model.params, reference.params)


def test_schedules():
    constant = learning_rates(None, 0.1, 0, 4, 10)
    assert constant.dtype == np.float32 and np.all(constant == np.float32(0.1))
    step = [learning_rates("step", 1.0, e, 6, 3)[0] for e in range(6)]
    np.testing.assert_allclose(step, [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)
    cosine = np.concatenate([learning_rates("cosine", 1.0, e, 4, 25) for e in range(4)])
    assert cosine[0] == 1.0 and cosine[-1] < 1e-3 and np.all(np.diff(cosine) <= 0)
    onecycle = np.concatenate([learning_rates("onecycle", 1.0, e, 10, 10) for e in range(10)])
    assert onecycle[0] == pytest.approx(1 / 25)
    assert onecycle.argmax() == 30 and onecycle.max() == pytest.approx(1.0)
    assert onecycle[-1] < 1e-3
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        learning_rates("exp", 1.0, 0, 1, 1)


def test_progress_prints_one_line_per_epoch_when_not_a_terminal(capsys):
    X, y = blobs(n=40)
    MLP([2, 3], backend="numpy").fit(X, y, epochs=3, batch_size=8, validation_data=(X, y))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["epoch", "loss", "acc"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3"]


def test_quiet_training_prints_nothing(capsys):
    X, y = blobs(n=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MLP([2, 3], backend="numpy").fit(X, y, epochs=2, progress=False)
    assert capsys.readouterr().out == ""
