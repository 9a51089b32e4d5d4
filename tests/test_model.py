"""The model class: validation at the entrance, PyTorch names and shapes, predictions."""

from __future__ import annotations

import numpy as np
import pytest

from fastmlp import MLP
from fastmlp.model import _DEFAULT_INIT


def small_data(n=64, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features)).astype(np.float32)
    y = rng.integers(0, classes, n)
    return X, y


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sizes": [784]}, "at least two"),
        ({"sizes": [784, 0, 10]}, "at least two positive"),
        ({"sizes": "784,10"}, "list of layer widths"),
        ({"sizes": [784, 16.5, 10]}, "whole numbers"),
        ({"sizes": [4, 2], "activation": "gelu"}, "unknown activation 'gelu'"),
        ({"sizes": [4, 2], "output": "softplus"}, "unknown output"),
        ({"sizes": [4, 2], "output": "softmax", "loss": "mse"}, "not supported"),
        ({"sizes": [4, 2], "init": "lecun"}, "unknown init 'lecun'"),
        ({"sizes": [4, 2], "seed": -1}, "seed"),
        ({"sizes": [4, 2], "backend": "cuda"}, "unknown backend 'cuda'"),
    ],
)
def test_bad_constructor_arguments_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(**kwargs)


def test_default_init_follows_the_activation():
    assert MLP([4, 3, 2], activation="relu", backend="numpy").init == "he_uniform"
    assert MLP([4, 3, 2], activation="sigmoid", backend="numpy").init == "xavier_uniform"
    assert MLP([4, 3, 2], init="xavier", backend="numpy").init == "xavier_uniform"
    assert set(_DEFAULT_INIT) == {"relu", "silu", "sigmoid", "tanh", "identity"}


def test_he_init_has_the_he_scale():
    model = MLP([784, 256, 10], backend="numpy")
    weight = model.state_dict()["0.weight"]
    bound = np.sqrt(6 / 784)
    assert np.abs(weight).max() <= bound
    assert abs(weight.std() - bound / np.sqrt(3)) < 0.02 * bound
    assert not model.state_dict()["0.bias"].any()


def test_state_dict_names_and_shapes_are_pytorchs():
    model = MLP([784, 16, 16, 10], backend="numpy")
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {
        "0.weight": (16, 784),
        "0.bias": (16,),
        "2.weight": (16, 16),
        "2.bias": (16,),
        "4.weight": (10, 16),
        "4.bias": (10,),
    }
    named = model.state_dict(layer_names=("a", "b", "c"))
    assert list(named) == ["a.weight", "a.bias", "b.weight", "b.bias", "c.weight", "c.bias"]


def test_state_dict_is_a_copy_and_load_state_dict_round_trips():
    model = MLP([5, 4, 3], backend="numpy", seed=1)
    state = model.state_dict()
    state["0.weight"][:] = 0.5
    assert not np.all(model.state_dict()["0.weight"] == 0.5)
    model.load_state_dict(state)
    assert np.all(model.state_dict()["0.weight"] == 0.5)


def test_load_state_dict_says_what_does_not_match():
    model = MLP([5, 4, 3], backend="numpy")
    state = model.state_dict()
    del state["2.bias"]
    state["9.weight"] = np.zeros((1, 1))
    state["0.weight"] = np.zeros((4, 6))
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    text = str(info.value)
    assert "missing 2.bias" in text
    assert "unexpected 9.weight" in text
    assert "0.weight has shape (4, 6), expected (4, 5)" in text


def test_inputs_are_flattened_and_checked():
    model = MLP([16, 3, 2], backend="numpy")
    images = np.zeros((5, 4, 4), np.uint8)
    assert model.prepare_inputs(images).shape == (5, 16)
    assert model.prepare_inputs(images).dtype == np.uint8
    assert model.prepare_inputs(np.zeros((5, 16), np.float64)).dtype == np.float32
    with pytest.raises(
        ValueError, match="9 features per example but the model's first layer takes 16"
    ):
        model.predict(np.zeros((2, 9), np.float32))
    with pytest.raises(ValueError, match="empty"):
        model.predict(np.zeros((0, 16), np.float32))
    with pytest.raises(ValueError, match="numeric"):
        model.predict(np.array([["a"] * 16]))


def test_uint8_pixels_mean_intensity_over_255():
    model = MLP([16, 3, 2], backend="numpy")
    pixels = np.random.default_rng(0).integers(0, 256, (7, 16)).astype(np.uint8)
    np.testing.assert_allclose(
        model.predict_proba(pixels), model.predict_proba(pixels / np.float32(255)), rtol=1e-5
    )


def test_labels_are_checked():
    model = MLP([6, 4, 3], backend="numpy")
    X, _ = small_data()
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        model.evaluate(X, np.full(len(X), 3))
    with pytest.raises(ValueError, match="64 inputs but 10 labels"):
        model.evaluate(X, np.zeros(10, int))


def test_predictions_probabilities_and_evaluation():
    X, y = small_data()
    model = MLP([6, 8, 3], backend="numpy")
    proba = model.predict_proba(X)
    assert proba.shape == (64, 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    scores = model.evaluate(X, y)
    assert scores["confusion_matrix"].sum() == 64
    assert scores["accuracy"] == pytest.approx(np.mean(model.predict(X) == y))
    expected_loss = -np.mean(np.log(proba[np.arange(64), y].astype(np.float64)))
    assert scores["loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_sigmoid_mse_model_with_one_output_predicts_zero_or_one():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    model = MLP([2, 3, 1], activation="sigmoid", output="sigmoid", backend="numpy")
    assert model.loss == "mse"
    assert set(model.predict(X)) <= {0, 1}
    scores = model.evaluate(X, np.array([0, 1, 1, 0]))
    assert scores["confusion_matrix"].shape == (2, 2)


def test_loss_and_grads_match_finite_differences():
    X, y = small_data(n=12)
    model = MLP([6, 5, 3], activation="tanh", backend="numpy", seed=3)
    loss, grads = model.loss_and_grads(X, y)
    assert set(grads) == set(model.state_dict())
    assert grads["0.weight"].shape == (5, 6)
    base = model.state_dict()

    def loss_with(key, index, delta):
        state = {k: v.copy() for k, v in base.items()}
        state[key][index] += delta
        model.load_state_dict(state)
        return model.evaluate(X, y)["loss"]

    eps = 1e-2
    for key, index in [("0.weight", (1, 2)), ("2.bias", (1,)), ("2.weight", (2, 4))]:
        numeric = (loss_with(key, index, eps) - loss_with(key, index, -eps)) / (2 * eps)
        assert grads[key][index] == pytest.approx(numeric, rel=2e-2, abs=1e-4)
    model.load_state_dict(base)
    assert loss == pytest.approx(model.evaluate(X, y)["loss"], rel=1e-5)


@pytest.mark.torch
def test_state_dict_loads_into_torch_sequential(torch):
    X, _ = small_data()
    model = MLP([6, 8, 7, 3], activation="tanh", backend="numpy", seed=2)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 7),
        torch.nn.Tanh(),
        torch.nn.Linear(7, 3),
    )
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(X)), dim=1).numpy()
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-5, atol=1e-6)
