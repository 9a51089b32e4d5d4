"""The command line as a user runs it: train, evaluate, predict, resume, and bad arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastmlp import write_idx

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None, check=True, env=None):
    result = subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def fastmlp(*args, **kwargs):
    return run("-m", "fastmlp", *args, **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist):
    """One short training run through scripts/train_mnist.py, shared by the tests below."""
    folder = tmp_path_factory.mktemp("trained")
    result = run(
        ROOT / "scripts" / "train_mnist.py",
        "--epochs",
        "2",
        "--save",
        folder / "m.safetensors",
        "--json",
        folder / "results.json",
        cwd=folder,
    )
    return folder, result


@pytest.mark.mnist
def test_train_script_prints_a_table_saves_and_writes_json(trained):
    folder, result = trained
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["epoch", "loss", "acc"] for line in lines)
    assert "test accuracy" in result.stdout and str(folder / "m.safetensors") in result.stdout
    results = json.loads((folder / "results.json").read_text())
    assert results["test_accuracy"] > 0.90
    assert results["train_seconds"] > 0
    assert results["warmup_seconds"] > 0  # the kernels' first call, timed apart from epoch 1
    assert [e["epoch"] for e in results["epochs"]] == [1, 2]
    # The history is History.to_dict() as it is: the same keys as model.history.epochs.
    assert set(results["epochs"][0]) == {
        "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"
    }  # fmt: skip
    assert results["stop_reason"] == "completed" and results["options"]["epochs"] == 2
    # Validation is a hold-out of the training images; the test set is scored once, at the end.
    assert "on 50000 images, 10000 held out for validation" in result.stdout
    assert results["options"]["validation_split"] == 10000
    assert all(e["val_loss"] is not None for e in results["epochs"])


@pytest.mark.mnist
def test_evaluate_prints_accuracy_and_confusion_matrix(trained):
    folder, _ = trained
    accuracy = json.loads((folder / "results.json").read_text())["test_accuracy"]
    out = fastmlp("evaluate", folder / "m.safetensors").stdout
    assert f"accuracy  {accuracy:.2%}" in out
    matrix = [line.split()[1:] for line in out.splitlines()[-10:]]
    assert sum(int(v) for row in matrix for v in row) == 10000


@pytest.mark.mnist
def test_predict_reads_photos_of_dark_digits_on_paper(trained, mnist, tmp_path):
    from PIL import Image

    folder, _ = trained
    _, _, test_x, test_y = mnist
    paths = []
    for i in range(20):
        # A digit as a person would photograph it: dark ink on light paper, large, off-centre.
        big = Image.fromarray(255 - test_x[i]).resize((84, 84), Image.BICUBIC)
        page = Image.new("L", (160, 120), 235)
        page.paste(big, (10 + 3 * i, 20))
        paths.append(tmp_path / f"digit{i}.png")
        page.convert("RGB").save(paths[-1])
    out = fastmlp("predict", folder / "m.safetensors", *paths).stdout.splitlines()
    assert len(out) == 20
    predicted = [int(line.split(": ")[1].split()[0]) for line in out]
    assert np.mean(np.array(predicted) == test_y[:20]) >= 0.8


@pytest.mark.mnist
def test_resume_continues_from_a_saved_model(trained, tmp_path):
    folder, _ = trained
    result = run(
        ROOT / "scripts" / "train_mnist.py",
        "--resume",
        folder / "m.safetensors",
        "--epochs",
        "1",
        "--save",
        tmp_path / "more.safetensors",
        "--json",
        tmp_path / "r.json",
        "--quiet",
    )
    before = json.loads((folder / "results.json").read_text())["test_accuracy"]
    after = json.loads((tmp_path / "r.json").read_text())["test_accuracy"]
    assert after > before - 0.01
    assert result.stdout.count("\n") == 2  # --quiet: the result and where it was saved


def test_input_size_comes_from_the_data(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("t10k", 100)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.zeros((n, 8, 6), np.uint8)
        images[np.arange(n), labels % 8, :] = 255  # the row lit up says the class
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", labels)
    result = fastmlp(
        "train",
        "--data-dir",
        tmp_path,
        "--epochs",
        "3",
        "--backend",
        "numpy",
        "--save",
        tmp_path / "tiny.safetensors",
        "--quiet",
    )
    assert "test accuracy" in result.stdout
    from fastmlp import MLP

    assert MLP.load(tmp_path / "tiny.safetensors", backend="numpy").sizes == (48, 16, 16, 10)


def _tiny_data(folder, n_train, signal=True):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", 100)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 8, 6)).astype(np.uint8)
        if signal:
            images[np.arange(n), labels % 8, :] = 255  # the row lit up says the class
        write_idx(folder / f"{split}-images-idx3-ubyte", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)


def test_validation_hold_out_and_early_stopping(tmp_path):
    # Labels that nothing in the images predicts: the held-out loss can only get worse once
    # the network starts to memorise, so early stopping must end the run long before 60 epochs.
    _tiny_data(tmp_path, 600, signal=False)
    common = ["train", "--data-dir", tmp_path, "--backend", "numpy", "--schedule", "none",
              "--lr", "0.5", "--hidden", "64"]  # fmt: skip
    result = fastmlp(*common, "--epochs", "60", "--validation", "200", "--early-stopping", "2",
                     "--save", tmp_path / "m.safetensors", "--json", tmp_path / "r.json")  # fmt: skip
    results = json.loads((tmp_path / "r.json").read_text())
    assert "on 400 images, 200 held out for validation" in result.stdout
    assert results["stop_reason"] == "early_stopping", results["stop_reason"]
    assert len(results["epochs"]) < 60
    # The default on a small set: a sixth of it, not 10,000 of its 600 images.
    result = fastmlp(*common, "--epochs", "1", "--save", tmp_path / "d.safetensors")
    assert "on 500 images, 100 held out for validation" in result.stdout
    for bad, message in (
        (["--validation", "600"], "would hold out every one of the 600 training images"),
        (["--validation", "0", "--early-stopping", "3"], "give --validation N > 0"),
    ):
        result = fastmlp(*common, *bad, check=False)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--epochs", "-1"], "--epochs: must be an integer >= 1, got -1"),
        (["train", "--seed", "-2"], "--seed: must be an integer >= 0, got -2"),
        (["train", "--epochs", "2.5"], "--epochs: '2.5' is not a whole number"),
        (["train", "--activation", "gelu"], "invalid choice: 'gelu'"),
        (["train", "--hidden", "16,x"], "expected widths like 16,16"),
        (["train", "--lr", "nan"], "--lr: must be a finite number"),
        (["train", "--lr", "-1"], "--lr: must be a number > 0, got -1"),
        (["train", "--weight-decay", "-1"], "--weight-decay: must be a number >= 0"),
        (
            ["train", "--resume", "no-such-model.safetensors", "--no-download"],
            "no-such-model.safetensors",
        ),
        (["evaluate", "no-such-model.safetensors"], "no-such-model.safetensors"),
        (["predict", "no-such-model.safetensors", "x.png"], "no-such-model.safetensors"),
    ],
)
def test_bad_arguments_give_one_line_and_no_traceback(args, message, tmp_path, mnist):
    result = fastmlp(*args, check=False, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1


@pytest.mark.mnist
def test_a_model_that_does_not_fit_the_data_is_refused(tmp_path, mnist):
    from fastmlp import MLP

    MLP([100, 10], backend="numpy").save(tmp_path / "small.safetensors")
    result = fastmlp("evaluate", tmp_path / "small.safetensors", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "784 features per example but the model's first layer takes 100" in result.stderr
    (tmp_path / "notes.png").write_text("not an image")
    result = fastmlp("predict", tmp_path / "small.safetensors", tmp_path / "notes.png", check=False)
    assert "Traceback" not in result.stderr and result.returncode != 0


@pytest.mark.mnist
@pytest.mark.slow
def test_default_recipe_reaches_96_percent(tmp_path, mnist):
    run(ROOT / "scripts" / "train_mnist.py", "--json", tmp_path / "r.json", "--quiet", cwd=tmp_path)
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["test_accuracy"] >= 0.96
    assert (tmp_path / "runs" / "mnist-784-16-16-10-relu-he.safetensors").exists()
