"""What `fastmlp train`, `evaluate` and `predict` do with the user's files and bad input.

Runs on a small synthetic data set in the MNIST layout with the numpy backend, so each
command takes a moment; Ctrl-C is simulated in-process at a chosen step, SIGTERM is real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastmlp import MLP, write_idx
from fastmlp.cli import main
from fastmlp.files import TERMINATED_STATUS


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """300 training and 100 test 8x6 images whose lit row says the class."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("t10k", 100)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.zeros((n, 8, 6), np.uint8)
        images[np.arange(n), labels % 8, :] = 255
        write_idx(folder / f"{split}-images-idx3-ubyte", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    return folder


def train(data, *args, cwd=None, env=None, **kwargs) -> subprocess.CompletedProcess:
    argv = ["train", "--data-dir", data, "--backend", "numpy", "--epochs", "2", "--quiet"]
    return subprocess.run(
        [sys.executable, "-m", "fastmlp", *map(str, [*argv, *args])],
        capture_output=True, text=True, cwd=cwd, timeout=300,
        env={**os.environ, **(env or {})}, **kwargs,
    )  # fmt: skip


def one_error_line(result, *words) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_default_names_do_not_collide_and_never_replace(data, tmp_path):
    runs = tmp_path / "runs"
    first = train(data, cwd=tmp_path)
    assert "model saved to runs/mnist-48-16-16-10-relu-he.safetensors" in first.stdout
    before = (runs / "mnist-48-16-16-10-relu-he.safetensors").read_bytes()
    sigmoid = train(data, "--activation", "sigmoid", "--init", "xavier", cwd=tmp_path)
    assert "runs/mnist-48-16-16-10-sigmoid-xavier.safetensors" in sigmoid.stdout
    again = train(data, "--seed", "1", cwd=tmp_path)
    assert "model saved to runs/mnist-48-16-16-10-relu-he-2.safetensors" in again.stdout
    assert (runs / "mnist-48-16-16-10-relu-he.safetensors").read_bytes() == before
    assert sorted(os.listdir(runs)) == [
        "mnist-48-16-16-10-relu-he-2.safetensors",
        "mnist-48-16-16-10-relu-he.safetensors",
        "mnist-48-16-16-10-sigmoid-xavier.safetensors",
    ]


def test_an_explicit_save_replaces_and_says_so(data, tmp_path):
    path = tmp_path / "m.safetensors"
    assert "replacing" not in train(data, "--save", path).stdout
    result = train(data, "--save", path, "--seed", "3")
    assert result.returncode == 0 and f"model saved to {path} (replacing" in result.stdout
    assert MLP.load(path, backend="numpy").seed == 3


@pytest.mark.parametrize(
    ("first", "second"), [("--save", "--json"), ("--resume", "--plot"), ("--json", "--plot")]
)
def test_two_flags_naming_one_file_are_refused_before_training(data, tmp_path, first, second):
    model = tmp_path / "model.safetensors"
    MLP([48, 16, 16, 10], backend="numpy").save(model)
    before = model.read_bytes()
    alias = tmp_path / "alias.safetensors"
    alias.symlink_to(model)  # the same file under another name is the same file
    result = train(data, first, model, second, alias)
    one_error_line(result, f"{first} and {second} name the same file", "give each its own")
    assert result.stdout == "" and model.read_bytes() == before


def test_output_paths_are_checked_before_training(data, tmp_path):
    (tmp_path / "file").write_text("x")
    for flag, path, words in [
        ("--save", tmp_path, "it is a folder"),
        ("--json", tmp_path / "file" / "r.json", "is a file"),
        ("--plot", tmp_path / "file" / "sub" / "c.png", "is a file"),
    ]:
        result = train(data, flag, path, "--epochs", "40")
        line = one_error_line(result, str(path), words)
        assert ".tmp" not in line and "test accuracy" not in result.stdout


def test_resume_refuses_flags_it_would_ignore(data, tmp_path):
    model = tmp_path / "m.safetensors"
    MLP([48, 16, 16, 10], backend="numpy").save(model)
    for flags in (["--activation", "sigmoid"], ["--init", "xavier"], ["--seed", "0"]):
        result = train(data, "--resume", model, *flags)
        one_error_line(result, f"{flags[0]} cannot change a resumed model")


def test_a_model_too_large_for_memory_is_refused_before_allocating(data):
    one_error_line(train(data, "--hidden", "10000000"), "48-10000000-10 model needs", "GiB")


def test_fastmlp_data_naming_a_file_and_an_empty_data_set(data, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "fastmlp", "train", "--no-download", "--backend", "numpy"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "FASTMLP_DATA": str(tmp_path / "notes.txt")},
    )  # fmt: skip
    one_error_line(result, "FASTMLP_DATA", "notes.txt is a file, not a folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    for split in ("train", "t10k"):
        write_idx(empty / f"{split}-images-idx3-ubyte", np.zeros((0, 8, 6), np.uint8))
        write_idx(empty / f"{split}-labels-idx1-ubyte", np.zeros(0, np.uint8))
    one_error_line(train(empty), "holds no images", "nothing to learn from")


class Interrupt:
    """The numpy backend's train_steps, raising KeyboardInterrupt on its n-th call (Ctrl-C)."""

    def __init__(self, monkeypatch, on_call: int) -> None:
        import kernels

        self.backend = kernels.backend("numpy")
        self.real = self.backend.train_steps
        self.calls, self.on_call = 0, on_call
        monkeypatch.setattr(self.backend, "train_steps", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.on_call:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


def run_in_process(data, *args) -> int:
    argv = ["train", "--data-dir", str(data), "--backend", "numpy", "--epochs", "3"]
    return main([*argv, "--quiet", "--batch-size", "300", *map(str, args)])


def test_ctrl_c_before_an_epoch_completes_saves_nothing(data, tmp_path, monkeypatch, capsys):
    good = tmp_path / "good.safetensors"
    MLP([48, 16, 16, 10], backend="numpy", seed=7).save(good)
    before = good.read_bytes()
    Interrupt(monkeypatch, on_call=2)  # call 1 is the warm-up step; 2 is in epoch 1
    assert run_in_process(data, "--save", good) == 130
    out = capsys.readouterr().out
    assert "no epoch completed: no model saved" in out and "model saved to" not in out
    assert good.read_bytes() == before and os.listdir(tmp_path) == ["good.safetensors"]


def test_ctrl_c_later_keeps_the_old_model_and_puts_the_new_one_beside(
    data, tmp_path, monkeypatch, capsys
):
    good = tmp_path / "good.safetensors"
    MLP([48, 16, 16, 10], backend="numpy", seed=7).save(good)
    before = good.read_bytes()
    Interrupt(monkeypatch, on_call=3)  # in epoch 2: epoch 1 completed
    json_path = tmp_path / "r.json"
    assert run_in_process(data, "--save", good, "--json", json_path) == 130
    out = capsys.readouterr().out
    beside = tmp_path / "good-partial.safetensors"
    assert f"{good} already holds a model and was kept" in out and str(beside) in out
    assert good.read_bytes() == before
    from fastmlp.modelfile import read_model_file

    assert len(json.loads(read_model_file(beside)[1]["training"])["epochs"]) == 1
    assert json.loads(json_path.read_text())["model"] == str(beside)


def test_ctrl_c_with_force_replaces(data, tmp_path, monkeypatch, capsys):
    good = tmp_path / "good.safetensors"
    MLP([48, 16, 16, 10], backend="numpy", seed=7).save(good)
    before = good.read_bytes()
    Interrupt(monkeypatch, on_call=3)
    assert run_in_process(data, "--save", good, "--force") == 130
    assert f"model saved to {good}" in capsys.readouterr().out
    assert good.read_bytes() != before and os.listdir(tmp_path) == ["good.safetensors"]


def test_a_diverged_run_replaces_nothing(data, tmp_path):
    good = tmp_path / "good.safetensors"
    MLP([48, 16, 16, 10], backend="numpy", seed=7).save(good)
    before = good.read_bytes()
    result = train(data, "--save", good, "--weight-decay", "1e30")
    assert result.returncode == 1 and "diverged" in result.stderr
    assert "no model saved" in result.stdout
    assert good.read_bytes() == before and os.listdir(tmp_path) == ["good.safetensors"]


def test_sigterm_during_training_exits_143_and_leaves_no_file(data, tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-m", "fastmlp", "train", "--data-dir", str(data), "--backend",
         "numpy", "--epochs", "100000", "--save", "m.safetensors", "--json", "r.json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    for line in child.stdout:  # the first epoch's line: training is under way
        if line.strip().startswith("1 "):
            break
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == TERMINATED_STATUS
    assert err.strip().splitlines()[-1] == "fastmlp: error: terminated (SIGTERM); nothing was saved"
    assert "Traceback" not in err and os.listdir(tmp_path) == []


def test_ctrl_c_swallowed_by_a_c_callback_is_still_one_line(monkeypatch, capsys):
    # What Numba does when Ctrl-C lands in LLVM's object-cache callback during the first
    # compile: ctypes reports the KeyboardInterrupt as unraisable, Numba then fails with
    # a RuntimeError of its own.
    import ctypes

    import fastmlp.cli as cli

    def compile_interrupted(args):
        def callback():
            raise KeyboardInterrupt

        ctypes.CFUNCTYPE(None)(callback)()
        raise RuntimeError("no compiled object yet for <Library 'mse'>")

    monkeypatch.setattr(cli, "cmd_info", compile_interrupted)
    assert main(["info"]) == 130
    assert capsys.readouterr().err == "fastmlp: error: interrupted\n"


def test_evaluate_refuses_a_model_whose_outputs_do_not_fit(data, tmp_path):
    for name, model, words in [
        ("identity", MLP([48, 10], output="identity", backend="numpy"), "identity (regression)"),
        ("one", MLP([48, 1], output="sigmoid", backend="numpy"), "1 output(s), too few for"),
        ("five", MLP([48, 5], backend="numpy"), "5 output(s), too few for the 10 classes"),
    ]:
        path = tmp_path / f"{name}.safetensors"
        model.save(path)
        result = subprocess.run(
            [sys.executable, "-m", "fastmlp", "evaluate", path, "--data-dir", data,
             "--backend", "numpy"], capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        one_error_line(result, str(path), words)


def test_predict_names_each_bad_image_and_answers_the_good_ones(tmp_path):
    from PIL import Image

    model = tmp_path / "m.safetensors"
    MLP([784, 10], backend="numpy").save(model)
    good = tmp_path / "good.png"
    page = Image.new("L", (60, 60), 255)
    page.paste(0, (20, 10, 30, 50))
    page.save(good)
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    blank = tmp_path / "blank.png"
    Image.new("L", (60, 60), 255).save(blank)
    result = subprocess.run(
        [sys.executable, "-m", "fastmlp", "predict", model, junk, good, blank, "--backend",
         "numpy"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"fastmlp: error: {junk}: not an image")
    assert errors[1].startswith(f"fastmlp: error: {blank}: no digit found")
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [str(good)]
