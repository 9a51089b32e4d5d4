"""Model files: safetensors round trips, atomic writes, clear errors, PyTorch loads them."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

from fastmlp import MLP, ModelFileError


def trained_model(backend="numpy"):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    model = MLP([5, 6, 4, 3], activation="sigmoid", backend=backend, seed=4)
    model.fit(X, y, epochs=2, batch_size=8, lr=0.5, progress=False)
    return model, X


def test_round_trip_keeps_parameters_architecture_and_record(tmp_path):
    model, X = trained_model()
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = MLP.load(path, backend="numpy")
    np.testing.assert_array_equal(loaded.params, model.params)
    assert (loaded.sizes, loaded.activation, loaded.output, loaded.loss, loaded.init) == (
        model.sizes,
        model.activation,
        model.output,
        model.loss,
        model.init,
    )
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        metadata = f.metadata()
    training = json.loads(metadata["training"])
    assert training["options"]["epochs"] == 2 and len(training["epochs"]) == 2


def test_layer_names_replace_sequential_indices(tmp_path):
    model, X = trained_model()
    path = tmp_path / "named.safetensors"
    model.save(path, layer_names=("layer1", "layer2", "out"))
    from safetensors.numpy import load_file

    assert set(load_file(path)) == {
        f"{n}.{p}" for n in ("layer1", "layer2", "out") for p in ("weight", "bias")
    }
    np.testing.assert_array_equal(
        MLP.load(path, backend="numpy").predict_proba(X), model.predict_proba(X)
    )


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    model, _ = trained_model()
    path = tmp_path / "model.safetensors"
    model.save(path)
    before = path.read_bytes()
    model.params += 1

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_truncated_file_is_a_clear_error(tmp_path):
    model, _ = trained_model()
    path = tmp_path / "model.safetensors"
    model.save(path)
    data = path.read_bytes()
    for cut in (0, 4, 20, len(data) - 8):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=str(path)):
            MLP.load(path)


def test_foreign_files_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        MLP.load(junk)
    other = tmp_path / "other.safetensors"
    save_file({"embedding": np.zeros((3, 3), np.float32)}, other)
    with pytest.raises(ModelFileError, match="not a fastmlp model"):
        MLP.load(other)


def test_metadata_that_does_not_match_the_tensors(tmp_path):
    model, _ = trained_model()
    tensors = model.state_dict()
    metadata = {
        "format": "fastmlp-mlp",
        "sizes": "[5, 7, 4, 3]",
        "activation": "sigmoid",
        "output": "softmax",
        "loss": "cross_entropy",
        "layer_names": '["0", "2", "4"]',
    }
    path = tmp_path / "bad.safetensors"
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(ModelFileError, match=r"0\.weight has shape \(6, 5\), expected \(7, 5\)"):
        MLP.load(path, backend="numpy")
    del metadata["activation"]
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(ModelFileError, match="incomplete"):
        MLP.load(path, backend="numpy")


def test_missing_file_or_folder_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        MLP.load(tmp_path / "nope.safetensors")
    with pytest.raises(IsADirectoryError):
        MLP.load(tmp_path)


@pytest.mark.torch
def test_saved_file_loads_straight_into_torch(torch, tmp_path):
    import safetensors.torch

    model, X = trained_model()
    path = tmp_path / "model.safetensors"
    model.save(path)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 6),
        torch.nn.Sigmoid(),
        torch.nn.Linear(6, 4),
        torch.nn.Sigmoid(),
        torch.nn.Linear(4, 3),
    )
    net.load_state_dict(safetensors.torch.load_file(path))
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(X)), dim=1).numpy()
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-5, atol=1e-6)


def test_written_files_get_an_ordinary_files_mode(tmp_path):
    model, _ = trained_model()
    path = tmp_path / "model.safetensors"
    model.save(path)
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
