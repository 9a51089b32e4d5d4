"""The small networks people learn with, and the experiment scripts that run them.

The recipes are the scripts' own (imported from ``scripts/``), trained with the NumPy
backend so these tests do not wait for Numba to compile.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastmlp import MLP
from fastmlp.datasets import bars
from tests.picture_reading import caption_strip, find_tile, load_rgb, read_text

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, *args, env=None):
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, args)],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


# --- XOR ------------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", [3, 4])
def test_xor_with_three_or_more_hidden_units_learns_every_seed(hidden):
    xor_experiment = load_script("xor_experiment")
    for seed in range(5):
        losses, learned = xor_experiment.run(hidden, 1.0, seed, epochs=60, backend="numpy")
        assert learned, f"{hidden} hidden units, seed {seed}: final loss {losses[-1]:.4f}"
        assert losses[-1] < 0.01


def test_xor_with_two_hidden_units_depends_on_the_seed():
    xor_experiment = load_script("xor_experiment")
    outcomes = [
        xor_experiment.run(2, 1.0, seed, epochs=60, backend="numpy")[1] for seed in range(10)
    ]
    assert any(outcomes) and not all(outcomes), outcomes


# --- TinyNet ----------------------------------------------------------------------------


def tinynet_class(torch, activation: str):
    nn = torch.nn

    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer1 = nn.Linear(4, 3)
            self.layer2 = nn.Linear(3, 2)

        def forward(self, x):
            act = torch.sigmoid if activation == "sigmoid" else torch.relu
            return torch.sigmoid(self.layer2(act(self.layer1(x))))

    return TinyNet


def test_tinynet_trains_with_minibatches():
    # Full-batch lr 0.1 (the exercise's recipe) barely leaves the 0.25 plateau in 200
    # steps; 5000 mini-batch steps at lr 0.5 get well past it.
    X, Y = bars(500, noise=0.3, seed=0)
    model = MLP([4, 3, 2], activation="sigmoid", output="sigmoid", backend="numpy")
    history = model.fit(X, Y, epochs=20, batch_size=8, lr=0.5, progress=False)
    assert history.epochs[0]["loss"] > 0.2
    assert history.epochs[-1]["loss"] < 0.1
    assert model.evaluate(X, Y)["accuracy"] > 0.9


@pytest.mark.torch
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_tinynet_file_loads_into_the_pytorch_tinynet(torch, tmp_path, activation):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    out = run_script("train_tinynet", "--out", tmp_path, "--activation", activation,
                     "--epochs", "30", "--batch-size", "16", "--backend", "numpy")  # fmt: skip
    assert "final" in out
    path = tmp_path / "model.safetensors"
    reference = tinynet_class(torch, activation)()
    reference.load_state_dict(safetensors_torch.load_file(path))  # strict: the exact names
    X, _ = bars(20, noise=0.3, seed=5)
    with torch.no_grad():
        theirs = reference(torch.from_numpy(X)).numpy()
    ours = MLP.load(path, backend="numpy")
    assert ours.activation == activation
    np.testing.assert_allclose(ours.predict_proba(X), theirs, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "tinynet_curves.png").is_file()


# --- moons, circles, spiral ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["moons", "circles", "spiral"])
def test_toy_datasets_reach_their_held_out_targets(name):
    toy = load_script("toy_datasets")
    make, target = toy.DATASETS[name]
    X, y = make(0)
    _, train_accuracy, test_accuracy, _, _ = toy.train(
        X, y, hidden=32, epochs=100, seed=0, backend="numpy"
    )
    assert test_accuracy >= target, f"{name}: {test_accuracy:.2%} < {target:.0%}"


def test_study_sleep_unit_learns_the_rule():
    from fastmlp.datasets import study_sleep

    hours, passed = study_sleep(200, seed=1)
    model = MLP([2, 1], activation="sigmoid", output="sigmoid", backend="numpy")
    model.fit(hours / 10, passed, epochs=100, batch_size=10, lr=2.0, progress=False)
    assert model.evaluate(hours / 10, passed)["accuracy"] > 0.85
    weight = model.state_dict()["0.weight"][0]
    assert 0.3 < weight[1] / weight[0] < 0.8  # sleep is worth about half of study


# --- the scripts, end to end with small settings -------------------------------------------


def test_xor_experiment_script(tmp_path):
    out = run_script("xor_experiment", "--out", tmp_path, "--hidden", "2,3", "--lrs", "2",
                     "--seeds", "2", "--epochs", "20", "--backend", "numpy")  # fmt: skip
    assert "3 hidden units: 2/2 runs learned XOR" in out
    assert (tmp_path / "xor_loss_curves.png").is_file()


def test_toy_datasets_script(tmp_path):
    out = run_script("toy_datasets", "--out", tmp_path, "--epochs", "10", "--backend", "numpy")
    for name in ("moons", "circles", "spiral"):
        assert name in out
        assert (tmp_path / f"{name}_boundary.png").is_file()


def test_study_sleep_script(tmp_path):
    out = run_script("study_sleep", "--out", tmp_path, "--epochs", "30", "--backend", "numpy")
    assert "learned rule" in out and "new students" in out
    assert (tmp_path / "study_sleep_curves.png").is_file()
    # "pass" (tab10 orange) lies up and to the right: more hours studied (across) and slept
    # (up); "fail" (tab10 blue) down and to the left.
    image = load_rgb(tmp_path / "study_sleep_boundary.png")
    rows, cols = np.indices(image.shape[:2])
    red, blue = image[..., 0].astype(int), image[..., 2].astype(int)
    passed, failed = red > blue + 40, blue > red + 40
    assert passed.sum() > 2000 and failed.sum() > 2000, "both regions are drawn"
    assert (cols - rows)[passed].mean() > (cols - rows)[failed].mean() + 50, (
        "the pass region is not up and to the right of the fail region"
    )


def test_tuning_curves_script(tmp_path):
    out = run_script("tuning_curves", "--out", tmp_path, "--steps", "100", "--backend", "numpy")
    assert out.count("final loss") == 16
    assert (tmp_path / "tuning_curves.png").is_file()


@pytest.mark.mnist
def test_mnist_pictures_script(tmp_path, mnist):
    train_x, train_y, _, _ = mnist
    model = MLP([784, 16, 10], backend="numpy")
    model.fit(train_x[:3000], train_y[:3000], epochs=1, batch_size=32, lr=0.1, progress=False)
    model.save(tmp_path / "m.safetensors")
    out = run_script("mnist_pictures", "--model", tmp_path / "m.safetensors", "--out",
                     tmp_path / "pics", "--backend", "numpy", "--no-download")  # fmt: skip
    assert "test accuracy" in out
    for name in ("digits", "weights", "misclassified", "confusion", "curves"):
        assert (tmp_path / "pics" / f"{name}.png").is_file(), name
    # What the pictures show: the first test digits under their labels, and the model's
    # most confident mistakes, in order, under their true and predicted labels.
    _, _, test_x, test_y = mnist
    digits = load_rgb(tmp_path / "pics" / "digits.png")
    for i in range(8):
        (corner,) = find_tile(digits, digit_tile(test_x[i]))
        strip = caption_strip(digits, corner, (84, 84), 1)
        assert read_text(strip, [str(d) for d in range(10)])[0] == str(test_y[i]), f"digit {i}"
    probs = MLP.load(tmp_path / "m.safetensors", backend="numpy").predict_proba(test_x)
    predicted, confidence = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero(predicted != test_y)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]
    right = np.flatnonzero(predicted == test_y)
    sheet = load_rgb(tmp_path / "pics" / "misclassified.png")
    corners = []
    for i in wrong[:6]:
        found = find_tile(sheet, digit_tile(test_x[i]))
        assert len(found) == 1, f"test digit {i}, a confident mistake, is not shown"
        strip = caption_strip(sheet, found[0], (84, 84), 2)
        true = read_text(strip, [f"true {d}" for d in range(10)])[0]
        pred = read_text(strip, [f"pred {d}" for d in range(10)])[0]
        assert (true, pred) == (f"true {test_y[i]}", f"pred {predicted[i]}"), f"digit {i}"
        corners.append(found[0])
    assert corners == sorted(corners), "the mistakes are not most confident first"
    for i in right[np.argsort(-confidence[right])][:6]:
        assert not find_tile(sheet, digit_tile(test_x[i])), f"correct digit {i} shown as a mistake"


def digit_tile(image, scale=3):
    grey = 255 - np.asarray(image, np.int16).reshape(28, 28)
    big = np.repeat(np.repeat(grey, scale, axis=0), scale, axis=1)
    return np.repeat(big[:, :, None], 3, axis=2)
