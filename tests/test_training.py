"""The training loop: it learns, repeats itself exactly, and stops well when it must."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastmlp import MLP, training
from fastmlp.schedules import learning_rates
from fastmlp.training import EarlyStopping, TrainingOptions
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
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"epochs": 2.5}, "epochs must be an integer"),
        ({"batch_size": -1}, "batch_size"),
        ({"lr": 0}, "lr must be a number > 0"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
        ({"lr_schedule": "linear"}, "unknown lr_schedule 'linear'"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"momentum": 1.5}, "momentum"),
        ({"threads": 0}, "threads"),
        ({"validation_data": ([1.0],)}, "pair"),
        ({"lr": True}, "lr must be a finite number, got True"),
        ({"threads": True}, "threads must be an integer, got True"),
        ({"shuffle": "no"}, "shuffle must be True or False"),
        ({"early_stopping": True, "validation_data": ([[0.0, 0.0]], [0])}, "early_stopping"),
        (
            {"early_stopping": {"patience": 2, "wait": 1}, "validation_data": ([[0.0, 0.0]], [0])},
            "not \\['wait'\\]",
        ),
    ],
)
def test_bad_options_say_what_is_wrong(options, message):
    X, y = blobs(n=20)
    with pytest.raises(ValueError, match=message):
        MLP([2, 3], backend="numpy").fit(X, y, **{"epochs": 1, **options})


def test_ctrl_c_keeps_the_last_completed_epoch(monkeypatch):
    monkeypatch.setattr(training, "MIN_CHUNK_ROWS", 1)  # a call per batch
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


def test_numpy_scalars_are_the_numbers_they_are():
    X, y = blobs(n=40)
    model = MLP([2, 3], backend="numpy", seed=np.int64(2))
    history = model.fit(
        X, y, epochs=np.int64(2), batch_size=np.int64(8), lr=np.float32(0.1),
        momentum=np.float64(0.5), threads=np.int32(1), shuffle=np.True_, progress=False,
    )  # fmt: skip
    assert len(history.epochs) == 2
    assert history.options["epochs"] == 2 and type(history.options["epochs"]) is int
    assert type(history.options["lr"]) is float and history.options["lr"] == pytest.approx(0.1)


def test_history_options_are_the_training_options():
    X, y = blobs(n=40)
    history = MLP([2, 3], backend="numpy").fit(X, y, epochs=1, threads=2, progress=False)
    expected = {**vars(TrainingOptions(epochs=1, threads=2, progress=False)), "backend": "numpy"}
    assert history.options == expected
    # The defaults of MLP.fit are those of TrainingOptions, written once.
    import inspect

    for name, parameter in inspect.signature(MLP.fit).parameters.items():
        if name in TrainingOptions.__dataclass_fields__:
            assert parameter.default == getattr(TrainingOptions, name), name
    with pytest.raises(ValueError, match="seed must be an integer, got True"):
        MLP([2, 3], backend="numpy", seed=True)


@pytest.mark.parametrize("labels", [3, None, "abc", [True, False]])
def test_labels_that_are_not_one_per_example_are_refused(labels):
    X, _ = blobs(n=2)
    with pytest.raises(ValueError, match="labels must be an array of numbers, one per example"):
        MLP([2, 3], backend="numpy").fit(X, labels, epochs=1, progress=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_inputs_are_refused_up_front_naming_the_row(bad):
    X, y = blobs(n=30)
    X[17, 1] = bad
    model = MLP([2, 3], backend="numpy")
    before = model.params.copy()
    with pytest.raises(ValueError, match="inputs row 17 holds NaN or infinity"):
        model.fit(X, y, epochs=1, progress=False)
    np.testing.assert_array_equal(model.params, before)
    assert model.history is None
    for call in (model.predict, model.predict_proba, lambda X: model.evaluate(X, y)):
        with pytest.raises(ValueError, match="inputs row 17"):
            call(X)
    with pytest.raises(ValueError, match="inputs row 17"):
        model.fit(blobs(n=30)[0], y, epochs=1, validation_data=(X, y), progress=False)
    targets = np.ones((30, 3), np.float32)
    targets[4, 0] = bad
    mse = MLP([2, 3], output="sigmoid", backend="numpy")
    with pytest.raises(ValueError, match="targets row 4 holds NaN or infinity"):
        mse.fit(blobs(n=30)[0], targets, epochs=1, progress=False)


def test_an_empty_data_set_is_refused():
    model = MLP([2, 3], backend="numpy")
    with pytest.raises(ValueError, match="empty"):
        model.fit(np.zeros((0, 2), np.float32), np.zeros(0, int), epochs=1, progress=False)
    with pytest.raises(ValueError, match="empty"):
        model.evaluate(np.zeros((0, 2), np.uint8), np.zeros(0, int))


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_divergence_from_weight_decay_blames_the_weight_decay(backend):
    X, y = blobs()
    model = MLP([2, 16, 3], backend=backend, seed=0)
    with pytest.warns(RuntimeWarning, match="diverged.*smaller weight decay than 1e\\+30"):
        history = model.fit(X, y, epochs=5, lr=0.1, weight_decay=1e30, progress=False)
    assert history.stop_reason == "diverged"
    assert "learning rate" not in history.message
    assert np.isfinite(model.params).all()


def test_warm_up_and_epochs_share_one_call_of_train_steps(monkeypatch):
    monkeypatch.setattr(training, "MIN_CHUNK_ROWS", 1)  # a call per batch
    X, y = blobs(n=64)
    model = MLP([2, 4, 3], backend="numpy")
    calls = []
    real_steps = model.kernels.train_steps

    def counting(*args):
        calls.append(args[7].copy())  # the learning rates of the chunk
        return real_steps(*args)

    monkeypatch.setattr(model.kernels, "train_steps", counting)
    history = model.fit(X, y, epochs=2, batch_size=8, lr=0.1, progress=False)
    assert history.warmup_seconds > 0
    assert len(calls) == 1 + 2 * 8  # the warm-up step at rate 0, then 8 chunks per epoch
    assert calls[0].tolist() == [0.0] and all((c == np.float32(0.1)).all() for c in calls[1:])


def test_an_epoch_is_cut_into_calls_of_at_least_min_chunk_rows(monkeypatch):
    """At most CHUNKS_PER_EPOCH calls an epoch, each of MIN_CHUNK_ROWS rows or more (whole
    batches): 100 batches of 10 rows in calls of 30, 30, 30 and 10 batches."""
    monkeypatch.setattr(training, "MIN_CHUNK_ROWS", 300)
    X, y = blobs(n=1000)
    model = MLP([2, 4, 3], backend="numpy")
    calls = []
    real_steps = model.kernels.train_steps

    def counting(*args):
        calls.append(len(args[7]))  # the chunk's batches (one rate each)
        return real_steps(*args)

    monkeypatch.setattr(model.kernels, "train_steps", counting)
    model.fit(X, y, epochs=2, batch_size=10, progress=False)
    assert calls == [1] + [30, 30, 30, 10] * 2  # the warm-up step, then two epochs
    monkeypatch.setattr(training, "MIN_CHUNK_ROWS", 10)  # CHUNKS_PER_EPOCH decides
    calls.clear()
    model.fit(X, y, epochs=1, batch_size=10, progress=False)
    assert calls == [1] + [5] * training.CHUNKS_PER_EPOCH


CHUNKED = [  # (sizes, batch size, optimizer, threads): each of numba's loops, state carried
    ([2, 8, 3], 10, "adam", 1),
    ([20, 128, 64, 3], 128, "momentum", 2),  # BLAS layers, two-loop split on 2 threads
    ([20, 128, 64, 3], 32, "sgd", 2),  # the lane split
    ([20, 256, 3], 128, "adam", 2),  # wide first layer split by lanes
]


@pytest.mark.parametrize(("sizes", "batch", "optimizer", "threads"), CHUNKED)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_the_chunking_does_not_change_the_floats(monkeypatch, backend, sizes, batch, optimizer,
                                                 threads):  # fmt: skip
    """A call per batch and one call per epoch train the same parameters, bit for bit:
    nothing a loop carries from batch to batch is lost between calls."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(700, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], 700)
    runs = []
    for min_rows in (1, 10**6):
        monkeypatch.setattr(training, "MIN_CHUNK_ROWS", min_rows)
        monkeypatch.setattr(training, "CHUNKS_PER_EPOCH", 10**6 if min_rows == 1 else 1)
        model = MLP(sizes, backend=backend, seed=2)
        history = model.fit(X, y, epochs=2, batch_size=batch, lr=0.01, optimizer=optimizer,
                            threads=threads, progress=False)  # fmt: skip
        runs.append((model.params.copy(), history["loss"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == pytest.approx(runs[1][1], rel=1e-6)


def test_ctrl_c_in_the_first_epoch_keeps_the_untrained_model(monkeypatch):
    monkeypatch.setattr(training, "MIN_CHUNK_ROWS", 1)  # a call per batch
    X, y = blobs(n=64)
    model = MLP([2, 4, 3], backend="numpy")
    before = model.params.copy()
    real_steps = model.kernels.train_steps
    calls = {"n": 0}

    def second_call_interrupts(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_steps(*args)

    monkeypatch.setattr(model.kernels, "train_steps", second_call_interrupts)
    history = model.fit(X, y, epochs=1, batch_size=8, lr=0.1, weight_decay=0.1, progress=False)
    assert history.stop_reason == "interrupted" and history.epochs == []
    assert "keeping the 0 completed epoch(s)" in history.message
    np.testing.assert_array_equal(model.params, before)


def test_an_early_stopping_object_can_watch_two_runs():
    X, y = blobs(n=100)
    Xv, yv = blobs(n=100, seed=1)
    stopper = EarlyStopping(patience=2, min_delta=1e-3)
    lengths = []
    for _ in range(2):
        model = MLP([2, 32, 3], backend="numpy", seed=0)
        history = model.fit(X, y, epochs=200, batch_size=4, lr=0.5, validation_data=(Xv, yv),
                            early_stopping=stopper, progress=False)  # fmt: skip
        lengths.append(len(history.epochs))
        assert history.stop_reason == "early_stopping"
    assert lengths[0] == lengths[1]


def test_validation_split_holds_out_a_seeded_stratified_part(monkeypatch):
    from fastmlp.datasets import holdout_indices

    X, y = blobs(n=300)
    model = MLP([2, 8, 3], backend="numpy", seed=4)
    trained_on = []
    real_steps = model.kernels.train_steps

    def watching(*args):
        trained_on.append(args[3].shape[0])  # the rows the kernels may read
        return real_steps(*args)

    monkeypatch.setattr(model.kernels, "train_steps", watching)
    history = model.fit(X, y, epochs=3, batch_size=16, validation_split=0.2, progress=False)
    assert set(trained_on) == {240}
    rest, held = holdout_indices(300, 0.2, seed=4, classes=y)
    assert len(held) == 60 and not set(rest) & set(held)
    shares = np.bincount(y[held], minlength=3) / np.bincount(y, minlength=3)
    np.testing.assert_allclose(shares, 0.2, atol=0.01)
    assert history["val_loss"][-1] == pytest.approx(model.evaluate(X[held], y[held])["loss"])
    assert history.options["validation_split"] == 0.2
    counted = MLP([2, 8, 3], backend="numpy", seed=4)
    history = counted.fit(X, y, epochs=1, validation_split=np.int64(50), progress=False)
    assert history.options["validation_split"] == 50 and history["val_loss"][0] is not None


def test_validation_split_feeds_early_stopping():
    X, y = blobs(n=200)
    model = MLP([2, 32, 3], backend="numpy", seed=0)
    history = model.fit(X, y, epochs=200, batch_size=4, lr=0.5, validation_split=0.5,
                        early_stopping={"patience": 2, "min_delta": 1e-3}, progress=False)  # fmt: skip
    assert history.stop_reason == "early_stopping" and len(history.epochs) < 200


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"validation_split": 0.0}, "fractional validation_split must lie in"),
        ({"validation_split": 1.0}, "fractional validation_split must lie in"),
        ({"validation_split": True}, "validation_split must be a finite number"),
        ({"validation_split": 20}, "leaves no rows"),
        ({"validation_split": 0.5, "validation_data": ([[0.0, 0.0]], [0])}, "not both"),
    ],
)
def test_bad_validation_splits_say_what_is_wrong(options, message):
    X, y = blobs(n=20)
    with pytest.raises(ValueError, match=message):
        MLP([2, 3], backend="numpy").fit(X, y, epochs=1, progress=False, **options)
