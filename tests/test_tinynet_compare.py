"""`scripts/train_tinynet.py --compare`: the seed's full-batch recipe and batch 32, sigmoid and ReLU.

The README quotes this run's numbers; they are checked here to the README's precision
(NumPy backend, which agrees with numba on them, so the test does not wait for a compile).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_tinynet.py"
# (recipe, hidden) -> (final loss, fraction of bars told apart), as in the README.
README = {
    ("full", "sigmoid"): (0.2504, 0.3998),
    ("full", "relu"): (0.2298, 0.6470),
    ("batch 32", "sigmoid"): (0.0474, 0.9390),
    ("batch 32", "relu"): (0.0154, 0.9805),
}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("tinynet")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--compare", "--backend", "numpy"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        words = line.split()  # e.g. "batch 32: 25,000 steps  relu  0.0154  98.05%"
        if len(words) >= 3 and words[-3] in ("sigmoid", "relu"):
            recipe = "full" if line.startswith("full batch") else "batch 32"
            rows[recipe, words[-3]] = (float(words[-2]), float(words[-1].rstrip("%")) / 100)
    return out, result.stdout, rows


def test_the_seeds_recipe_leaves_both_activations_near_the_plateau(compared):
    _, _, rows = compared
    for activation in ("sigmoid", "relu"):
        loss, _ = rows["full", activation]
        assert 0.2 < loss < 0.26, (activation, loss)  # 0.25 is answering 0.5 everywhere


def test_with_batch_32_relu_learns_what_sigmoid_only_half_learns(compared):
    _, _, rows = compared
    sigmoid_loss, sigmoid_acc = rows["batch 32", "sigmoid"]
    relu_loss, relu_acc = rows["batch 32", "relu"]
    assert relu_acc > 0.97 and sigmoid_acc > 0.9
    assert relu_loss < 0.5 * sigmoid_loss  # the activation makes the difference here


def test_the_numbers_are_the_readmes(compared):
    _, _, rows = compared
    assert set(rows) == set(README)
    for key, (loss, accuracy) in README.items():
        assert rows[key][0] == pytest.approx(loss, abs=6e-4), key
        assert rows[key][1] == pytest.approx(accuracy, abs=3e-3), key


def test_one_picture_holds_both_recipes(compared):
    out, stdout, _ = compared
    picture = out / "tinynet_compare.png"
    assert f"wrote {picture}" in stdout
    with Image.open(picture) as image:
        width, height = image.size
    assert width > 1.5 * height  # two panels side by side
