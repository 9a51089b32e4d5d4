"""`scripts/train_mnist.py -t [MODEL]` and `-i MODEL`, the tutorial's short forms, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_mnist.py"


def run(*args, cwd, check=True):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist):
    """``-t`` from scratch (2 epochs), then ``-t MODEL`` continuing from it (1 epoch)."""
    folder = tmp_path_factory.mktemp("short-forms")
    first = run("-t", "--epochs", "2", "--save", "first.safetensors", "--json", "first.json",
                "--quiet", cwd=folder)  # fmt: skip
    second = run("-t", "first.safetensors", "--epochs", "1", "--save", "second.safetensors",
                 "--json", "second.json", "--quiet", cwd=folder)  # fmt: skip
    return folder, first, second


@pytest.mark.mnist
def test_t_trains_and_t_model_continues_from_it(trained):
    folder, first, second = trained
    assert "model saved to first.safetensors" in first.stdout
    assert "model saved to second.safetensors" in second.stdout
    fresh = json.loads((folder / "first.json").read_text())
    resumed = json.loads((folder / "second.json").read_text())
    # Continuing: the first epoch of the second run starts where the first run ended,
    # far below a fresh start's first epoch.
    assert resumed["epochs"][0]["loss"] < fresh["epochs"][-1]["loss"] * 1.2
    assert resumed["epochs"][0]["loss"] < 0.6 * fresh["epochs"][0]["loss"]
    assert resumed["sizes"] == fresh["sizes"] == [784, 16, 16, 10]


@pytest.mark.mnist
def test_i_evaluates_and_writes_a_grid_of_predicted_and_true_labels(trained, mnist):
    folder, _, _ = trained
    result = run("-i", "second.safetensors", "--count", "25", cwd=folder)
    lines = result.stdout.splitlines()
    accuracy = next(line for line in lines if line.startswith("accuracy"))
    resumed = json.loads((folder / "second.json").read_text())
    assert accuracy.split()[1] == f"{resumed['test_accuracy']:.2%}"
    assert "confusion matrix" in result.stdout

    from fastmlp import MLP

    _, _, test_x, test_y = mnist
    wrong = int((MLP.load(folder / "second.safetensors").predict(test_x[:25]) != test_y[:25]).sum())
    expected_line = (
        f"first 25 test digits, predicted (true): {wrong} wrong; "
        f"picture written to second-test-digits.png"
    )
    assert expected_line in lines
    with Image.open(folder / "second-test-digits.png") as picture:
        gray = np.asarray(picture.convert("L"))
    assert gray.shape[0] > 5 * 28 * 3 and gray.shape[1] > 5 * 28 * 3  # a 5x5 grid, 3x scale
    assert (gray < 128).mean() > 0.02  # digits and captions, not a blank page


def test_i_with_a_missing_model_is_one_error_line(tmp_path):
    result = run("-i", tmp_path / "none.safetensors", cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("fastmlp: error:") and "none.safetensors" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.png"))


def test_t_and_i_together_are_refused(tmp_path):
    result = run("-t", "-i", "m.safetensors", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "not both" in result.stderr


def test_help_lists_the_short_forms(tmp_path):
    result = run("--help", cwd=tmp_path)
    assert "--epochs" in result.stdout and "-t [MODEL]" in result.stdout
    assert "-i MODEL" in result.stdout


def test_the_translation_to_fastmlp_train():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_train_mnist", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.translate([]) == ["train"]
    assert script.translate(["--epochs", "3"]) == ["train", "--epochs", "3"]
    assert script.translate(["-t"]) == ["train"]
    assert script.translate(["-t", "--epochs", "3"]) == ["train", "--epochs", "3"]
    assert script.translate(["-t", "m.safetensors", "--lr", "0.1"]) == [
        "train", "--resume", "m.safetensors", "--lr", "0.1",
    ]  # fmt: skip
    assert script.translate(["--lr", "0.1", "-t", "m.st"]) == [
        "train", "--resume", "m.st", "--lr", "0.1",
    ]  # fmt: skip
