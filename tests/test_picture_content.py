"""What the pictures show, read back from their pixels: the right digits under the right
captions, weight tiles the right way round, matrices and curves that follow their numbers.

Every expectation is computed from the data drawn (see tests/picture_reading.py); a
picture that is merely well-formed but shows the wrong thing fails here.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from fastmlp import MLP, pictures
from tests.picture_reading import (
    caption_strip,
    find_tile,
    ink,
    load_rgb,
    read_text,
)

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed"
)

SCALE = 3
N = 24
# Misclassified examples, each neighbour with other labels so a shifted caption shows.
WRONG = np.array([1, 4, 5, 9, 13, 14, 20, 23])
WRONG_TRUE = np.array([3, 7, 1, 8, 0, 5, 2, 9])
WRONG_PRED = np.array([5, 1, 7, 2, 6, 0, 8, 4])


@pytest.fixture(scope="module")
def digits():
    """N 28x28 uint8 images, each unlike any other (so each tile is found by its pixels),
    with labels and predictions that are right except at WRONG."""
    rng = np.random.default_rng(0)
    images = np.zeros((N, 28, 28), np.uint8)
    images[:, 6:22, 8:20] = rng.integers(40, 256, (N, 16, 12))
    labels = rng.integers(0, 10, N)
    labels[WRONG] = WRONG_TRUE
    predictions = labels.copy()
    predictions[WRONG] = WRONG_PRED
    return images, labels, predictions


def tile_of(image: np.ndarray) -> np.ndarray:
    """How a digit must look in a picture: dark ink on white, each pixel SCALE x SCALE."""
    grey = 255 - image.astype(np.int16)
    big = np.repeat(np.repeat(grey, SCALE, axis=0), SCALE, axis=1)
    return np.repeat(big[:, :, None], 3, axis=2)


def shown(sheet, images):
    """{image index: top-left corner} of every image drawn in the sheet (each at most once)."""
    where = {}
    for i, image in enumerate(images):
        corners = find_tile(sheet, tile_of(image))
        assert len(corners) <= 1, f"image {i} is drawn {len(corners)} times"
        if corners:
            where[i] = corners[0]
    return where


def reading_order(where):
    return [i for i, _ in sorted(where.items(), key=lambda item: item[1])]


def read(sheet, corner, word, lines):
    """The digit after ``word`` in the caption under the tile at ``corner``."""
    strip = caption_strip(sheet, corner, (28 * SCALE, 28 * SCALE), lines)
    text, best, runner_up = read_text(strip, [f"{word} {d}" for d in range(10)])
    assert best < 0.6 * runner_up, f"no clear '{word} <digit>' under the tile at {corner}"
    return int(text.split()[1])


def test_sample_digits_shows_the_first_images_in_order_with_their_labels(tmp_path, digits):
    images, labels, _ = digits
    sheet = load_rgb(pictures.sample_digits(images, labels, tmp_path / "s.png", count=12,
                                            columns=4, scale=SCALE))  # fmt: skip
    where = shown(sheet, images)
    assert reading_order(where) == list(range(12)), "not the first 12 images in order"
    rows = sorted({corner[0] for corner in where.values()})
    assert len(rows) == 3, f"12 images in 4 columns make 3 rows, got {len(rows)}"
    for i, corner in where.items():
        strip = caption_strip(sheet, corner, (84, 84), 1)
        text, best, runner_up = read_text(strip, [str(d) for d in range(10)])
        assert best < 0.6 * runner_up and int(text) == labels[i], (
            f"image {i} (label {labels[i]}) is captioned {text}"
        )


def test_misclassified_digits_shows_only_mistakes_captioned_true_and_predicted(tmp_path, digits):
    images, labels, predictions = digits
    sheet = load_rgb(pictures.misclassified_digits(images, labels, predictions,
                                                   tmp_path / "m.png", scale=SCALE))  # fmt: skip
    where = shown(sheet, images)
    right = sorted(set(where) - set(WRONG))
    assert not right, f"correctly classified images {right} are shown as mistakes"
    assert sorted(where) == list(WRONG), f"mistakes {sorted(set(WRONG) - set(where))} missing"
    assert reading_order(where) == list(WRONG), "mistakes are not in the data's order"
    for i, corner in where.items():
        true, pred = read(sheet, corner, "true", 2), read(sheet, corner, "pred", 2)
        assert (true, pred) == (labels[i], predictions[i]), (
            f"image {i} (true {labels[i]}, predicted {predictions[i]}) "
            f"is captioned true {true}, pred {pred}"
        )


def test_misclassified_digits_from_probabilities_most_confident_first(tmp_path, digits):
    images, labels, predictions = digits
    rng = np.random.default_rng(1)
    confidence = rng.permutation(np.linspace(0.35, 0.95, N))
    probs = np.full((N, 10), 0.0)
    probs[np.arange(N), predictions] = confidence
    others = (predictions + 1) % 10
    probs[np.arange(N), others] = 1.0 - confidence - 0.01
    probs += 0.01 / 10
    sheet = load_rgb(pictures.misclassified_digits(images, labels, probs, tmp_path / "p.png",
                                                   count=5, scale=SCALE))  # fmt: skip
    where = shown(sheet, images)
    expected = WRONG[np.argsort(-confidence[WRONG])][:5]
    assert reading_order(where) == list(expected), "not the five most confident mistakes, in order"
    for i, corner in where.items():
        assert read(sheet, corner, "true", 2) == labels[i], f"image {i}: wrong true label"
        assert read(sheet, corner, "pred", 2) == predictions[i], f"image {i}: wrong prediction"


HOT = [(3, 20, 1.0), (22, 5, -1.0), (10, 14, 1.0)]  # (row, column, sign) per hidden unit
RED, BLUE, NEUTRAL = (103, 0, 31), (5, 48, 97), (247, 247, 247)  # RdBu at +1, -1 and 0


@pytest.mark.parametrize("source", ["array", "model"])
def test_weight_tiles_light_the_pixel_each_unit_looks_at(tmp_path, source):
    weights = np.zeros((len(HOT), 784), np.float32)
    for unit, (r, c, sign) in enumerate(HOT):
        weights[unit, r * 28 + c] = sign
    given = weights
    if source == "model":
        given = MLP([784, len(HOT), 10], backend="numpy")
        state = given.state_dict()
        state["0.weight"] = weights
        given.load_state_dict(state)
    sheet = load_rgb(pictures.first_layer_weights(given, tmp_path / "w.png", scale=SCALE))
    corners = []
    for unit, (r, c, sign) in enumerate(HOT):
        colour = RED if sign > 0 else BLUE
        spots = np.argwhere((sheet == colour).all(axis=-1))
        # One SCALE x SCALE square of this colour per unit whose weight has this sign.
        same_sign = [u for u, (_, _, s) in enumerate(HOT) if s == sign]
        assert len(spots) == SCALE * SCALE * len(same_sign), f"unit {unit}: hot pixel not drawn"
        corner_candidates = [(int(y) - r * SCALE, int(x) - c * SCALE) for y, x in spots]
        expected = tile_like(r, c, colour)
        matches = [
            (y, x) for y, x in corner_candidates
            if y >= 0 and x >= 0 and np.array_equal(sheet[y : y + 84, x : x + 84], expected)
        ]  # fmt: skip
        assert len(matches) == 1, (
            f"unit {unit}: no 28x28 tile has its one weight at row {r}, column {c} "
            "(transposed or shifted tiles?)"
        )
        corners.append(matches[0])
    assert corners == sorted(corners), "tiles are not in the order of the hidden units"


def tile_like(r, c, colour):
    tile = np.empty((84, 84, 3), np.int16)
    tile[...] = NEUTRAL
    tile[r * SCALE : (r + 1) * SCALE, c * SCALE : (c + 1) * SCALE] = colour
    return tile


def bands(values):
    """Group sorted pixel coordinates into bands separated by gaps; the band of each."""
    unique = np.unique(values)
    starts = unique[np.concatenate([[True], np.diff(unique) > 1])]
    return np.searchsorted(starts, values, side="right") - 1


def test_confusion_matrix_image_rows_are_true_classes(tmp_path):
    # Each true class always predicted as another: only a transposition moves the dark cells.
    matrix = np.array([[0, 5, 0], [0, 0, 3], [2, 0, 0]])
    sheet = load_rgb(pictures.confusion_matrix_image(matrix, tmp_path / "c.png"))
    dark = np.argwhere((np.abs(sheet - (8, 48, 107)) <= 2).all(axis=-1))  # Blues at 100%
    rows, columns = bands(dark[:, 0]), bands(dark[:, 1])
    assert rows.max() == 2 and columns.max() == 2, "expected three dark cells in three rows"
    cells = {(int(a), int(b)) for a, b in zip(rows, columns, strict=True)}
    assert cells == {(0, 1), (1, 2), (2, 0)}, (
        f"dark cells at (row, column) {sorted(cells)}: rows must be the true class"
    )


def line_heights(panel, colour, tolerance=40):
    """Per image column, the middle row of the pixels near ``colour``; NaN where there are
    none, or more than one run of them (the legend's sample line above or below)."""
    near = np.abs(panel - colour).sum(axis=-1) <= tolerance
    heights = np.full(panel.shape[1], np.nan)
    for x in np.flatnonzero(near.any(axis=0)):
        ys = np.flatnonzero(near[:, x])
        if np.all(np.diff(ys) <= 2):
            heights[x] = (ys[0] + ys[-1]) / 2
    return heights


def assert_follows(heights, values, what):
    """The drawn line goes up where the values go up: its height against the values,
    interpolated at each drawn column, correlate strongly (rows grow downwards)."""
    drawn = np.flatnonzero(np.isfinite(heights))
    assert len(drawn) > 50, f"{what}: no line found"
    left, right = drawn.min(), drawn.max()
    at = np.interp(drawn, np.linspace(left, right, len(values)), values)
    r = np.corrcoef(-heights[drawn], at)[0, 1]
    assert r > 0.9, f"{what}: the line does not follow its numbers (correlation {r:.2f})"


BLUE_C0, ORANGE_C1 = (31, 119, 180), (255, 127, 14)  # matplotlib's first two colours
LOSS = [2.0, 0.4, 1.6, 0.9, 0.2, 1.2]
VAL_LOSS = [0.5, 1.9, 0.3, 1.4, 1.0, 0.1]
ACCURACY = [0.1, 0.8, 0.3, 0.95, 0.5, 0.6]


@needs_matplotlib
def test_training_curves_rise_and_fall_with_the_history(tmp_path):
    history = [
        {"epoch": e + 1, "loss": LOSS[e], "val_loss": VAL_LOSS[e], "accuracy": ACCURACY[e]}
        for e in range(len(LOSS))
    ]
    image = load_rgb(pictures.training_curves(history, tmp_path / "t.png"))
    half = image.shape[1] // 2
    loss_panel, accuracy_panel = image[:, :half], image[:, half:]
    assert_follows(line_heights(loss_panel, BLUE_C0), LOSS, "training loss")
    assert_follows(line_heights(loss_panel, ORANGE_C1), VAL_LOSS, "validation loss")
    assert_follows(line_heights(accuracy_panel, BLUE_C0), ACCURACY, "training accuracy")


@needs_matplotlib
def test_curve_panels_follow_their_curves(tmp_path):
    up_down = [1.0, 3.0, 2.0, 5.0, 4.0, 6.0, 0.5]
    down_up = [6.0, 2.0, 5.0, 1.0, 3.0, 0.5, 4.0]
    panels = {"first": {"a": up_down}, "second": {"b": {"x": [0, 1, 2, 3, 4, 5, 6], "y": down_up}}}
    image = load_rgb(pictures.curve_panels(panels, tmp_path / "p.png", columns=2,
                                           colors={"a": "tab:blue", "b": "tab:orange"}))  # fmt: skip
    half = image.shape[1] // 2
    assert_follows(line_heights(image[:, :half], BLUE_C0), up_down, "panel 'first'")
    assert_follows(line_heights(image[:, half:], ORANGE_C1), down_up, "panel 'second'")
    stray = np.isfinite(line_heights(image[:, :half], ORANGE_C1)).sum()
    assert stray < 10, "panel 'first' shows the curve of panel 'second'"


def test_decision_boundary_colours_each_side_by_the_class_chosen_there(tmp_path):
    # Softmax over (10 x, 10 y): class 1 wherever y > x, i.e. above the rising diagonal.
    model = MLP([2, 2], backend="numpy")
    model.load_state_dict({"0.weight": np.array([[10, 0], [0, 10]], np.float32),
                           "0.bias": np.zeros(2, np.float32)})  # fmt: skip
    X = np.array([[-1, -0.5], [0.5, -1], [1, 0.5], [-0.5, 1], [-1, 1], [1, -1]], np.float32)
    y = model.predict(X)
    image = load_rgb(pictures.decision_boundary(model, X, y, tmp_path / "d.png", size=200))
    rows, cols = np.indices(image.shape[:2])
    red, blue = image[..., 0].astype(int), image[..., 2].astype(int)
    class1 = red > blue + 40  # tab10's orange, faded
    class0 = blue > red + 40  # tab10's blue, faded
    assert class1.sum() > 5000 and class0.sum() > 5000
    # In the image y grows upwards, so "y > x" is above the anti-diagonal: rows + cols small.
    d1, d0 = (rows + cols)[class1].mean(), (rows + cols)[class0].mean()
    assert d0 - d1 > 100, f"class 1 is not drawn where y > x (mean row+col {d1:.0f} vs {d0:.0f})"
    skew1, skew0 = (cols - rows)[class1].mean(), (cols - rows)[class0].mean()
    assert abs(skew1 - skew0) < 30, "the regions are not split by the diagonal y = x"


def test_ink_of_red_and_black_text_is_the_same():
    # read_text relies on it: the predicted label is printed in red, the true one in black.
    assert ink(np.array([[200, 0, 0], [0, 0, 0], [255, 255, 255]])).tolist() == [255, 255, 0]
