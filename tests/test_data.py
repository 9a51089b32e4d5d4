"""Finding and loading MNIST-layout data: the search path, file names, checks, real MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastmlp.data import MissingDataError, data_info, find_data_dir, load_mnist, locate_data_dir
from fastmlp.idx import IDXError, read_idx, write_idx

STEMS = ("train-images", "train-labels", "t10k-images", "t10k-labels")
REST = {"train-images": "idx3-ubyte", "train-labels": "idx1-ubyte"}
REST |= {"t10k-images": "idx3-ubyte", "t10k-labels": "idx1-ubyte"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    # Anything that tries to download here must fail fast, never reach the internet.
    monkeypatch.setenv("FASTMLP_MNIST_MIRRORS", "http://127.0.0.1:9/")


def make_set(folder: Path, n_train=12, n_test=5, h=7, w=5, style="standard", seed=0):
    """A small data set in the MNIST layout; style picks the file names."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images": rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
        "train-labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images": rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
        "t10k-labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, a in arrays.items():
        write_idx(folder / file_name(stem, style), a)
    return arrays


def file_name(stem: str, style: str) -> str:
    return {
        "standard": f"{stem}-{REST[stem]}",
        "standard.gz": f"{stem}-{REST[stem]}.gz",
        "kaggle": f"{stem}.{REST[stem]}",
        "kaggle.gz": f"{stem}.{REST[stem]}.gz",
    }[style]


# --- where the data is ------------------------------------------------------------------


def test_search_order(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert locate_data_dir() == (tmp_path / "xdg" / "fastmlp" / "mnist", "user cache")
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "env"))
    assert locate_data_dir() == (tmp_path / "env", "FASTMLP_DATA")
    assert locate_data_dir(tmp_path / "arg") == (tmp_path / "arg", "argument")
    assert find_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_cache_without_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert find_data_dir() == tmp_path / ".cache" / "fastmlp" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG spec says
    assert find_data_dir() == tmp_path / ".cache" / "fastmlp" / "mnist"


def test_relative_and_home_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert find_data_dir("data") == tmp_path / "data"
    assert find_data_dir("~/mnist") == tmp_path / "home" / "mnist"
    with pytest.raises(ValueError, match="empty"):
        find_data_dir("")


def test_given_folder_is_used_even_if_the_cache_has_data(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    make_set(tmp_path / "xdg" / "fastmlp" / "mnist")
    assert len(load_mnist(download=False)[0]) == 12  # from the cache
    for given in ("argument", "FASTMLP_DATA"):
        empty = tmp_path / f"empty-{given}"
        empty.mkdir()
        if given == "FASTMLP_DATA":
            monkeypatch.setenv("FASTMLP_DATA", str(empty))
            call = {}
        else:
            call = {"data_dir": empty}
        with pytest.raises(MissingDataError) as info:
            load_mnist(**call, download=False)
        assert str(empty) in str(info.value)


# --- loading ----------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["standard", "standard.gz", "kaggle", "kaggle.gz"])
def test_loads_every_naming(tmp_path, style):
    arrays = make_set(tmp_path, style=style)
    loaded = load_mnist(tmp_path, download=False)
    for stem, got in zip(STEMS, loaded, strict=True):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[stem])


def test_any_size_loads_nothing_assumes_28x28(tmp_path):
    make_set(tmp_path, n_train=33, n_test=4, h=3, w=11)
    x, y, tx, ty = load_mnist(str(tmp_path), download=False)
    assert x.shape == (33, 3, 11) and y.shape == (33,)
    assert tx.shape == (4, 3, 11) and ty.shape == (4,)


def test_mixed_names_in_one_folder(tmp_path):
    arrays = make_set(tmp_path, style="kaggle")
    (tmp_path / file_name("train-images", "kaggle")).unlink()
    write_idx(tmp_path / file_name("train-images", "standard.gz"), arrays["train-images"])
    np.testing.assert_array_equal(load_mnist(tmp_path, download=False)[0], arrays["train-images"])


def test_missing_files_say_where_to_put_them(tmp_path):
    make_set(tmp_path)
    (tmp_path / file_name("t10k-labels", "standard")).unlink()
    with pytest.raises(MissingDataError) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path) in message and "FASTMLP_DATA" in message
    assert "t10k-labels" in message and "train-images," not in message.split(":")[1]
    assert "\n" not in message


def test_download_failure_leaves_the_error(tmp_path):
    # download=True with no reachable mirror (see no_network): a MissingDataError still.
    with pytest.raises(MissingDataError) as info:
        load_mnist(tmp_path / "fresh")
    assert "127.0.0.1:9" in str(info.value) and "FASTMLP_DATA" in str(info.value)
    assert not (tmp_path / "fresh").exists()


def replace(folder: Path, stem: str, array: np.ndarray) -> Path:
    path = folder / file_name(stem, "standard")
    write_idx(path, array)
    return path


@pytest.mark.parametrize(
    "stem, bad, words",
    [
        ("train-labels", np.arange(11, dtype=np.uint8), ["11 labels", "12 images"]),
        ("t10k-labels", np.array([0, 1, 2, 3, 10], np.uint8), ["0..9", "found 10"]),
        ("train-labels", np.zeros((12, 1), np.uint8), ["1-D uint8", "2-D"]),
        ("t10k-labels", np.zeros(5, np.int32), ["1-D uint8", "int32"]),
        ("train-images", np.zeros((12, 35), np.uint8), ["3-D uint8", "2-D"]),
        ("t10k-images", np.zeros((5, 7, 5), np.float32), ["3-D uint8", "float32"]),
        ("train-images", np.zeros((12, 7, 5, 1), np.uint8), ["3-D uint8", "4-D"]),
    ],
)
def test_inconsistent_sets_are_refused(tmp_path, stem, bad, words):
    make_set(tmp_path)
    path = replace(tmp_path, stem, bad)
    with pytest.raises(IDXError) as info:
        load_mnist(tmp_path, download=False)
    assert str(path) in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_a_malformed_file_names_itself(tmp_path):
    make_set(tmp_path)
    path = tmp_path / file_name("t10k-images", "standard")
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(IDXError, match="shorter than the header says") as info:
        load_mnist(tmp_path, download=False)
    assert str(path) in str(info.value)


def test_data_info(tmp_path):
    make_set(tmp_path, style="kaggle.gz")
    (tmp_path / file_name("train-labels", "kaggle.gz")).unlink()
    info = data_info(tmp_path)
    assert info.folder == tmp_path and info.source == "argument"
    assert info.missing == ["train-labels"]
    assert info.files["t10k-images"] == tmp_path / "t10k-images.idx3-ubyte.gz"
    text = "\n".join(info.lines())
    assert str(tmp_path) in text and "given as an argument" in text
    assert "train-labels  missing" in text
    assert "t10k-images   present  t10k-images.idx3-ubyte.gz" in text


# --- the real MNIST ---------------------------------------------------------------------

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.mnist
def test_mnist_shapes_and_types(mnist):
    x, y, tx, ty = mnist
    assert [a.shape for a in mnist] == [(60000, 28, 28), (60000,), (10000, 28, 28), (10000,)]
    assert all(a.dtype == np.uint8 for a in mnist)
    assert int(x.max()) == 255 and int(tx.max()) == 255


@pytest.mark.mnist
def test_mnist_label_counts(mnist):
    assert np.bincount(mnist[1], minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist[3], minlength=10).tolist() == TEST_COUNTS


@pytest.mark.mnist
def test_mnist_pixel_means(mnist):
    assert round(float(mnist[0].mean(dtype=np.float64)), 4) == 33.3184
    assert round(float(mnist[2].mean(dtype=np.float64)), 4) == 33.7912


@pytest.mark.mnist
def test_mnist_read_directly_matches(mnist):
    info = data_info()
    np.testing.assert_array_equal(read_idx(info.files["t10k-labels"]), mnist[3])
