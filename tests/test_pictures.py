"""Every picture: a PNG of the right size that is not blank, written atomically."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from PIL import Image

from fastmlp import MLP, pictures
from fastmlp.datasets import moons, spiral
from fastmlp.training import History

# The curves need matplotlib (an optional extra); the Pillow pictures do not.
needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed"
)


def check_png(path, width=None, height=None, *, min_width=50, min_height=50):
    """The file is a PNG of the expected size with real content, and no temp file is left."""
    assert path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        rgb = image.convert("RGB")
    w, h = rgb.size
    if width is not None:
        assert w == width
    if height is not None:
        assert h == height
    assert w >= min_width and h >= min_height
    colours = rgb.getcolors(maxcolors=1_000_000)
    assert len(colours) > 8, "fewer than 9 distinct colours: a blank picture"
    assert max(count for count, _ in colours) < 0.97 * w * h, "almost all one colour"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
    return rgb


@pytest.fixture(scope="module")
def digits():
    """Fake 28x28 digits: a bar whose position is the label, so mistakes look different."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 120)
    images = np.zeros((120, 28, 28), np.uint8)
    for i, label in enumerate(labels):
        images[i, 4:24, 2 + 2 * label : 5 + 2 * label] = 255
    images = np.clip(images + rng.integers(0, 40, images.shape), 0, 255).astype(np.uint8)
    return images, labels


def test_sample_digits_grid(tmp_path, digits):
    images, labels = digits
    path = pictures.sample_digits(images, labels, tmp_path / "digits.png", count=12, columns=4)
    assert path == tmp_path / "digits.png"
    image = check_png(path)
    # 4 columns and 3 rows of 3x-scaled 28-pixel tiles, each with a caption line
    assert 4 * 84 <= image.width <= 4 * (84 + 20)
    assert 3 * 84 <= image.height <= 3 * (84 + 40)


def test_sample_digits_accepts_rows_and_float_pixels(tmp_path, digits):
    images, labels = digits
    rows = images.reshape(len(images), -1).astype(np.float32) / 255
    check_png(pictures.sample_digits(rows, labels, tmp_path / "d.png", count=5, scale=2))


def test_sample_digits_refuses_mismatched_labels(tmp_path, digits):
    images, labels = digits
    with pytest.raises(ValueError, match="labels"):
        pictures.sample_digits(images, labels[:5], tmp_path / "d.png")


def test_first_layer_weights_from_a_model_and_from_an_array(tmp_path):
    model = MLP([784, 12, 10], backend="numpy")
    image = check_png(pictures.first_layer_weights(model, tmp_path / "w.png", columns=4))
    assert 4 * 84 <= image.width <= 4 * (84 + 40)
    assert 3 * 84 < image.height
    weights = model.state_dict()["0.weight"]
    from_array = check_png(pictures.first_layer_weights(weights, tmp_path / "w2.png", columns=4))
    assert from_array.tobytes() == image.tobytes()
    # a diverging map: some tiles' pixels are reddish, some bluish
    pixels = np.asarray(image, np.int32)
    assert ((pixels[..., 0] - pixels[..., 2]) > 80).any()
    assert ((pixels[..., 2] - pixels[..., 0]) > 80).any()


def test_first_layer_weights_needs_square_inputs(tmp_path):
    with pytest.raises(ValueError, match="square"):
        pictures.first_layer_weights(np.ones((3, 10)), tmp_path / "w.png")


def test_misclassified_digits_from_ids_probabilities_and_a_model(tmp_path, digits):
    images, labels = digits
    wrong = labels.copy()
    wrong[::3] = (wrong[::3] + 1) % 10
    check_png(pictures.misclassified_digits(images, labels, wrong, tmp_path / "ids.png", count=9))
    probs = np.eye(10, dtype=np.float32)[wrong] * 0.9 + 0.01
    check_png(pictures.misclassified_digits(images, labels, probs, tmp_path / "p.png", count=9))
    model = MLP([784, 10], backend="numpy")
    check_png(pictures.misclassified_digits(images, labels, model, tmp_path / "m.png", count=9))


def test_misclassified_digits_with_no_mistakes_still_draws(tmp_path, digits):
    images, labels = digits
    path = pictures.misclassified_digits(images, labels, labels, tmp_path / "none.png")
    check_png(path, min_width=20)


def test_confusion_matrix_image(tmp_path):
    rng = np.random.default_rng(1)
    matrix = rng.integers(0, 20, (10, 10))
    matrix[np.diag_indices(10)] = 950
    image = check_png(pictures.confusion_matrix_image(matrix, tmp_path / "cm.png", cell=30))
    assert 10 * 30 < image.width < 10 * 30 + 400
    assert 10 * 30 < image.height < 10 * 30 + 100
    named = pictures.confusion_matrix_image(
        np.array([[5, 1], [2, 7]]), tmp_path / "cm2.png", class_names=["fail", "pass"]
    )
    check_png(named)
    with pytest.raises(ValueError, match="square"):
        pictures.confusion_matrix_image(np.ones((2, 3)), tmp_path / "bad.png")


def test_decision_boundary_softmax_and_single_sigmoid(tmp_path):
    X, y = spiral(90, arms=3, noise=0.1)
    model = MLP([2, 8, 3], backend="numpy")
    check_png(pictures.decision_boundary(model, X, y, tmp_path / "b3.png", size=120), 132)
    Xm, ym = moons(60, noise=0.1)
    sigmoid = MLP([2, 4, 1], activation="tanh", output="sigmoid", backend="numpy")
    sigmoid.fit(Xm, ym.astype(np.float32), epochs=20, batch_size=8, lr=1.0, progress=False)
    path = pictures.decision_boundary(
        sigmoid, Xm, ym, tmp_path / "b1.png", size=150, title="moons", class_names=["a", "b"]
    )
    image = check_png(path, 162)
    assert image.height > 150


def test_decision_boundary_needs_two_features(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        pictures.decision_boundary(MLP([3, 2], backend="numpy"), np.ones((4, 3)), [0, 1, 0, 1],
                                   tmp_path / "b.png")  # fmt: skip


def fake_epochs(n=6, validation=True):
    return [
        {
            "epoch": i + 1,
            "loss": 1 / (i + 1),
            "accuracy": 0.5 + 0.05 * i,
            "val_loss": 1.2 / (i + 1) if validation else None,
            "val_accuracy": 0.45 + 0.05 * i if validation else None,
            "seconds": 0.1,
        }
        for i in range(n)
    ]


@needs_matplotlib
def test_training_curves_from_a_history_a_list_and_json(tmp_path):
    history = History(epochs=fake_epochs())
    # 2 panels of 4.6 x 3.3 inches at 100 dpi
    first = check_png(pictures.training_curves(history, tmp_path / "h.png"), 920, 330)
    check_png(pictures.training_curves(fake_epochs(validation=False), tmp_path / "l.png"), 920)
    record = tmp_path / "history.json"
    record.write_text(json.dumps(history.to_dict()))
    again = check_png(pictures.training_curves(record, tmp_path / "j.png"), 920, 330)
    assert again.tobytes() == first.tobytes()


@needs_matplotlib
def test_training_curves_reads_the_train_commands_json(tmp_path):
    # `fastmlp train --json` writes History.to_dict() with the final scores beside it.
    history = History(epochs=fake_epochs())
    results = {"model": "m.safetensors", "test_accuracy": 0.9, **history.to_dict()}
    record = tmp_path / "results.json"
    record.write_text(json.dumps(results))
    assert pictures.history_epochs(record) == history.epochs
    check_png(pictures.training_curves(record, tmp_path / "c.png", title="from --json"))


@needs_matplotlib
def test_training_curves_from_a_model_file(tmp_path):
    X, y = moons(64, noise=0.1)
    model = MLP([2, 4, 2], backend="numpy")
    model.fit(X, y, epochs=3, batch_size=16, lr=0.1, validation_data=(X, y), progress=False)
    model.save(tmp_path / "m.safetensors")
    check_png(pictures.training_curves(tmp_path / "m.safetensors", tmp_path / "c.png"))
    assert len(pictures.history_epochs(tmp_path / "m.safetensors")) == 3


def test_training_curves_refuses_what_is_not_a_history(tmp_path):
    with pytest.raises(ValueError):
        pictures.training_curves({"loss": 1.0}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="empty"):
        pictures.training_curves([], tmp_path / "c.png")


@needs_matplotlib
def test_curve_panels_groups_and_explicit_x(tmp_path):
    panels = {
        "groups": {"learned": [[0.3, 0.2, 0.1], [0.3, 0.25, 0.05]], "not learned": [[0.3, 0.3]]},
        "x and y": {"a": {"x": [10, 20, 30], "y": [1.0, 0.5, 0.2]}, "b": np.array([1, 0.8])},
        "third": {"c": [1.0, 0.9, 0.7]},
    }
    path = pictures.curve_panels(panels, tmp_path / "p.png", columns=2, logy=True,
                                 colors={"learned": "tab:green"}, title="t")  # fmt: skip
    check_png(path, 920, 660)


def test_overwrites_an_existing_picture_and_creates_folders(tmp_path, digits):
    images, labels = digits
    path = tmp_path / "new" / "folder" / "d.png"
    pictures.sample_digits(images, labels, path, count=4)
    first = path.read_bytes()
    pictures.sample_digits(images[4:], labels[4:], path, count=4)
    assert path.read_bytes() != first
    check_png(path)


def test_curves_without_matplotlib_name_the_extra(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r"pip install fastmlp\[plot\]"):
        pictures.training_curves(fake_epochs(), tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_pictures_serves_the_plot_functions():
    from fastmlp import drawing, plots

    for name in ("training_curves", "curve_panels", "decision_boundary", "history_epochs"):
        assert getattr(pictures, name) is getattr(plots, name)
        assert name in pictures.__all__
    assert pictures.save_png is drawing.save_png and pictures.PALETTE is drawing.PALETTE
    with pytest.raises(AttributeError):
        pictures.no_such_picture  # noqa: B018
