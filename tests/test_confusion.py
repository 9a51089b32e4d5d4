"""Confusion matrices have the true class in rows and the predicted class in columns.

A model whose predictions are chosen in advance (a one-layer network with an identity-
like weight predicts the index of the lit input) makes the expected matrix known, and
deliberately not symmetric, so a transposed matrix cannot pass.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from fastmlp import MLP, write_idx

# (true, predicted) pairs: 3 of class 0 taken for 2, one 1 for 0, the rest right.
TRUE = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 3])
PREDICTED = np.array([2, 2, 2, 0, 0, 1, 2, 2, 2, 3])
EXPECTED = np.array(
    [
        [1, 0, 3, 0],  # row: true 0
        [1, 1, 0, 0],  # row: true 1
        [0, 0, 3, 0],
        [0, 0, 0, 1],
    ]
)


def chooser(n_inputs, classes):
    """A one-layer softmax model that predicts the index of the brightest of the first
    ``classes`` inputs."""
    model = MLP([n_inputs, classes], seed=0)
    weight = np.zeros((classes, n_inputs), np.float32)
    weight[np.arange(classes), np.arange(classes)] = 10.0
    model.load_state_dict({"0.weight": weight, "0.bias": np.zeros(classes, np.float32)})
    return model


def lit(predicted, n_inputs):
    X = np.zeros((len(predicted), n_inputs), np.float32)
    X[np.arange(len(predicted)), predicted] = 1.0
    return X


def test_the_model_chooses_what_we_planted():
    model = chooser(4, 4)
    np.testing.assert_array_equal(model.predict(lit(PREDICTED, 4)), PREDICTED)


def test_evaluate_rows_are_true_columns_predicted():
    matrix = chooser(4, 4).evaluate(lit(PREDICTED, 4), TRUE)["confusion_matrix"]
    assert matrix[0, 2] == 3, f"three true 0s predicted 2 belong at [0, 2]:\n{matrix}"
    np.testing.assert_array_equal(matrix, EXPECTED)


def test_evaluate_agrees_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    matrix = chooser(4, 4).evaluate(lit(PREDICTED, 4), TRUE)["confusion_matrix"]
    np.testing.assert_array_equal(matrix, metrics.confusion_matrix(TRUE, PREDICTED))


def test_fastmlp_evaluate_prints_rows_true_columns_predicted(tmp_path):
    # Ten 28x28 test images: image i has pixel PREDICTED[i] lit, its label is TRUE[i].
    model = chooser(784, 10)
    model_file = tmp_path / "chooser.safetensors"
    model.save(model_file)
    images = np.zeros((len(TRUE), 28, 28), np.uint8)
    images.reshape(len(TRUE), 784)[np.arange(len(TRUE)), PREDICTED] = 255
    data = tmp_path / "data"
    data.mkdir()
    for prefix in ("train", "t10k"):
        write_idx(data / f"{prefix}-images-idx3-ubyte", images)
        write_idx(data / f"{prefix}-labels-idx1-ubyte", TRUE.astype(np.uint8))

    done = subprocess.run(
        [sys.executable, "-m", "fastmlp", "evaluate", str(model_file), "--data-dir", str(data),
         "--no-download"],
        capture_output=True, text=True, env=dict(os.environ), timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "confusion matrix" in line)
    assert "rows: true" in lines[start] and "columns: predicted" in lines[start]
    header = [int(v) for v in lines[start + 1].split()]
    assert header == list(range(10))
    rows = [[int(v) for v in line.split()] for line in lines[start + 2 : start + 12]]
    assert [r[0] for r in rows] == list(range(10)), "each row starts with its true class"
    printed = np.array([r[1:] for r in rows])
    expected = np.zeros((10, 10), np.int64)
    expected[:4, :4] = EXPECTED
    np.testing.assert_array_equal(printed, expected, err_msg=done.stdout)
    assert "accuracy  60.00%" in done.stdout
