"""Pictures of data and models, drawn with Pillow and written as PNG files.

Each function takes arrays (or a model), writes one PNG to ``path`` atomically (a
temporary file beside it, then a rename, so a reader never sees half a picture) and
returns the path. The plots (training curves, overlaid runs, decision boundaries) live
in :mod:`fastmlp.plots` and are imported here, so every picture is
``fastmlp.pictures.<name>``; only the curves need matplotlib. The helpers both modules
draw with are in :mod:`fastmlp.drawing`.

>>> from fastmlp import pictures
>>> pictures.sample_digits(test_x, test_y, "digits.png")
>>> pictures.first_layer_weights(model, "weights.png")
>>> pictures.misclassified_digits(test_x, test_y, model.predict_proba(test_x), "mistakes.png")
>>> pictures.confusion_matrix_image(model.evaluate(test_x, test_y)["confusion_matrix"], "cm.png")
>>> pictures.training_curves(model.history, "curves.png")
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from fastmlp.drawing import FONT_SIZE, INK, PAD, PALETTE, font, save_png, wrap
from fastmlp.plots import curve_panels, decision_boundary, history_epochs, training_curves

__all__ = [
    "PALETTE",
    "confusion_matrix_image",
    "curve_panels",
    "decision_boundary",
    "first_layer_weights",
    "history_epochs",
    "misclassified_digits",
    "augmented_digits",
    "sample_digits",
    "save_png",
    "training_curves",
]

# ColorBrewer RdBu (blue negative, near-white zero, red positive) and Blues anchors.
_DIVERGING = np.array(
    [(5, 48, 97), (67, 147, 195), (247, 247, 247), (214, 96, 77), (103, 0, 31)], np.float64
)
_SEQUENTIAL = np.array(
    [(247, 251, 255), (198, 219, 239), (107, 174, 214), (33, 113, 181), (8, 48, 107)], np.float64
)
_WRONG = (200, 0, 0)


def _colormap(values: np.ndarray, anchors: np.ndarray, low: float) -> np.ndarray:
    """Map ``values`` in ``[low, 1]`` to uint8 RGB by linear interpolation between anchors."""
    stops = np.linspace(low, 1.0, len(anchors))
    v = np.clip(values, low, 1.0)
    rgb = np.stack([np.interp(v, stops, anchors[:, c]) for c in range(3)], axis=-1)
    return np.round(rgb).astype(np.uint8)


def _as_squares(images: Any, name: str = "images") -> np.ndarray:
    """(N, side, side) floats in [0, 1] from uint8 pixels or floats, rows or squares."""
    a = np.asarray(images)
    if a.ndim == 2:
        side = math.isqrt(a.shape[1])
        if side * side != a.shape[1]:
            raise ValueError(f"{name} rows of {a.shape[1]} values are not square images")
        a = a.reshape(-1, side, side)
    if a.ndim != 3:
        raise ValueError(f"{name} must be (N, side*side) rows or (N, h, w) images, got {a.shape}")
    return a / 255.0 if a.dtype == np.uint8 else np.clip(a.astype(np.float64), 0.0, 1.0)


def _digit_tile(square: np.ndarray, scale: int) -> Image.Image:
    # Dark ink on white paper reads better than MNIST's white-on-black.
    ink = np.round(255 * (1.0 - square)).astype(np.uint8)
    h, w = ink.shape
    return Image.fromarray(ink, "L").resize((w * scale, h * scale), Image.NEAREST).convert("RGB")


def _sheet(
    tiles: Sequence[Image.Image],
    captions: Sequence[Sequence[tuple[str, tuple[int, int, int]]]],
    columns: int | None,
    title: str | None,
) -> Image.Image:
    """Tiles in a grid, each with lines of coloured caption beneath, under a wrapped title."""
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    n = len(tiles)
    columns = max(1, min(n, columns or math.ceil(math.sqrt(n))))
    rows = math.ceil(n / columns)
    tile_w, tile_h = tiles[0].size
    widest = max((scratch.textlength(t, font=font()) for c in captions for t, _ in c), default=0)
    cell_w = max(tile_w, math.ceil(widest)) + PAD
    n_lines = max((len(c) for c in captions), default=0)
    line_h = FONT_SIZE + 3
    cell_h = tile_h + n_lines * line_h + PAD
    width = columns * cell_w + PAD
    title_lines = wrap(title, width - 2 * PAD, scratch) if title else []
    top = PAD + len(title_lines) * (line_h + 2)
    sheet = Image.new("RGB", (width, top + rows * cell_h + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(title_lines):
        draw.text((PAD, PAD + i * (line_h + 2)), line, fill=INK, font=font())
    for i, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        x0 = PAD + (i % columns) * cell_w
        y0 = top + (i // columns) * cell_h
        sheet.paste(tile, (x0 + (cell_w - PAD - tile_w) // 2, y0))
        for j, (text, colour) in enumerate(caption):
            x = x0 + (cell_w - PAD - draw.textlength(text, font=font())) / 2
            draw.text((x, y0 + tile_h + 1 + j * line_h), text, fill=colour, font=font())
    return sheet


def sample_digits(
    images: Any,
    labels: Any,
    path: str | os.PathLike,
    *,
    count: int = 64,
    columns: int | None = None,
    scale: int = 3,
) -> Path:
    """A grid of the first ``count`` images, each captioned with its label.

    Parameters
    ----------
    images : array_like
        (N, 784) rows or (N, 28, 28) images: uint8 pixels or floats in [0, 1].
    labels : array_like
        (N,) class ids.
    path : str or PathLike
        Where to write the PNG.
    count : int
        How many images to show (at most N).
    columns : int, optional
        Tiles per row; a near-square grid by default.
    scale : int
        Screen pixels per image pixel.

    Returns
    -------
    Path
        ``path``.
    """
    squares = _as_squares(images)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(squares):
        raise ValueError(f"got {len(squares)} images but {len(labels)} labels")
    count = min(int(count), len(squares))
    if count < 1:
        raise ValueError("no images to draw")
    tiles = [_digit_tile(squares[i], scale) for i in range(count)]
    captions = [[(str(labels[i]), INK)] for i in range(count)]
    return save_png(_sheet(tiles, captions, columns, None), path)


def augmented_digits(
    images: Any,
    path: str | os.PathLike,
    *,
    kinds: Sequence[str] = ("shift", "affine", "elastic"),
    count: int = 6,
    copies: int = 3,
    seed: int = 0,
    scale: int = 3,
) -> Path:
    """The first ``count`` digits, each followed by ``copies`` distortions of every kind.

    One row per digit: the original, then the distortions that ``fit(augment=kind)``
    would train on in its first epoch with this ``seed`` (copy ``c`` uses epoch ``c + 1``).
    ``images`` are uint8 rows or squares.
    """
    from kernels.augment_reference import augment_params, augment_rows, kind_code

    pixels = np.asarray(images)
    if pixels.dtype != np.uint8:
        raise ValueError(f"augmented_digits needs uint8 images, got {pixels.dtype}")
    side = _as_squares(pixels[:1]).shape[1]  # checks the shape
    count = min(int(count), len(pixels))
    if count < 1:
        raise ValueError("no images to draw")
    flat = pixels[:count].reshape(count, side * side)
    rows, captions = [], []
    for i in range(count):
        rows.append(flat[i])
        captions.append("original")
        for kind in kinds:
            for copy in range(copies):
                out = np.empty((1, side * side), np.uint8)
                params = augment_params(kind, side)
                augment_rows(
                    out, flat, np.array([i]), side, kind_code(kind), params, seed, copy + 1
                )
                rows.append(out[0])
                captions.append(kind)
    columns = 1 + len(kinds) * copies
    return sample_digits(
        np.stack(rows), np.array(captions), path, count=len(rows), columns=columns, scale=scale
    )


def _first_weights(model_or_weights: Any) -> np.ndarray:
    if hasattr(model_or_weights, "state_dict"):
        state = model_or_weights.state_dict()
        return np.asarray(next(v for k, v in state.items() if k.endswith("weight")))
    return np.asarray(model_or_weights)


def first_layer_weights(
    model_or_weights: Any,
    path: str | os.PathLike,
    *,
    columns: int | None = None,
    scale: int = 3,
) -> Path:
    """Each first-layer hidden unit's incoming weights, drawn as an image: what it looks at.

    Red pixels push the unit up, blue pull it down, near-white ones are ignored. Every
    tile is scaled to its own largest ``|w|`` (printed under it), so a unit with small
    weights is as readable as one with large ones.

    Parameters
    ----------
    model_or_weights : MLP or array_like
        A model (its first layer's weight is used) or a (hidden, inputs) weight array
        whose number of inputs is a square (784 = 28 x 28).
    path : str or PathLike
        Where to write the PNG.
    columns : int, optional
        Tiles per row; a near-square grid by default.
    scale : int
        Screen pixels per input pixel.

    Returns
    -------
    Path
        ``path``.
    """
    weights = _first_weights(model_or_weights).astype(np.float64)
    if weights.ndim != 2 or weights.shape[0] < 1:
        raise ValueError(f"expected a (hidden, inputs) weight matrix, got shape {weights.shape}")
    side = math.isqrt(weights.shape[1])
    if side * side != weights.shape[1]:
        raise ValueError(f"{weights.shape[1]} inputs per unit cannot be drawn as a square image")
    tiles, captions = [], []
    for unit, row in enumerate(weights):
        largest = float(np.abs(row).max())
        rgb = _colormap(row.reshape(side, side) / (largest or 1.0), _DIVERGING, -1.0)
        size = (side * scale, side * scale)
        tiles.append(Image.fromarray(rgb, "RGB").resize(size, Image.NEAREST))
        captions.append([(f"{unit}: |w| {largest:.2g}", INK)])
    title = "First-layer weights (red +, blue -, each tile scaled to its own max |w|)"
    return save_png(_sheet(tiles, captions, columns, title), path)


def misclassified_digits(
    images: Any,
    labels: Any,
    predictions: Any,
    path: str | os.PathLike,
    *,
    count: int = 36,
    columns: int | None = None,
    scale: int = 3,
) -> Path:
    """Digits the model got wrong, captioned with the true and the predicted label.

    Parameters
    ----------
    images : array_like
        (N, 784) rows or (N, 28, 28) images: uint8 pixels or floats in [0, 1].
    labels : array_like
        (N,) true class ids.
    predictions : array_like or MLP
        (N,) predicted class ids, (N, classes) probabilities, or a model whose
        ``predict_proba`` gives them. With probabilities the most confident mistakes
        come first and the confidence is printed.
    path : str or PathLike
        Where to write the PNG.
    count : int
        At most this many mistakes are shown.
    columns : int, optional
        Tiles per row; a near-square grid by default.
    scale : int
        Screen pixels per image pixel.

    Returns
    -------
    Path
        ``path``.
    """
    squares = _as_squares(images)
    labels = np.asarray(labels).reshape(-1)
    if hasattr(predictions, "predict_proba"):
        predictions = predictions.predict_proba(images)
    predictions = np.asarray(predictions)
    if len(labels) != len(squares) or len(predictions) != len(squares):
        raise ValueError(
            f"got {len(squares)} images, {len(labels)} labels and {len(predictions)} predictions"
        )
    confidence = None
    if predictions.ndim == 2:
        confidence = predictions.max(axis=1)
        predictions = predictions.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    if confidence is not None:
        wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]
    wrong = wrong[: int(count)]
    title = f"{len(np.flatnonzero(predictions != labels))} of {len(labels)} misclassified"
    if len(wrong) == 0:
        blank = Image.new("RGB", (28 * scale, 28 * scale), "white")
        return save_png(_sheet([blank], [[("none", INK)]], 1, title), path)
    tiles = [_digit_tile(squares[i], scale) for i in wrong]
    captions = []
    for i in wrong:
        guess = f"pred {predictions[i]}"
        if confidence is not None:
            guess += f" {confidence[i]:.0%}"
        captions.append([(f"true {labels[i]}", INK), (guess, _WRONG)])
    if confidence is not None:
        title += ", most confident first"
    return save_png(_sheet(tiles, captions, columns, title), path)


def confusion_matrix_image(
    matrix: Any,
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    cell: int = 40,
) -> Path:
    """A confusion matrix as a table of counts shaded by how often each row lands there.

    Parameters
    ----------
    matrix : array_like
        (classes, classes) counts, rows the true class and columns the predicted one,
        as in ``model.evaluate(X, y)["confusion_matrix"]``.
    path : str or PathLike
        Where to write the PNG.
    class_names : sequence of str, optional
        Row and column labels; the class ids by default.
    cell : int
        Side of a cell in pixels.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    The shade is the square root of the fraction of the true class's examples in the
    cell, so the few-percent confusions that matter show up beside a dark diagonal.
    """
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 1:
        raise ValueError(f"a confusion matrix is square, got shape {counts.shape}")
    k = counts.shape[0]
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} classes")
    fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    shades = _colormap(np.sqrt(fractions), _SEQUENTIAL, 0.0)
    total = int(counts.sum())
    correct = int(np.trace(counts))
    accuracy = correct / max(total, 1)
    title = f"accuracy {accuracy:.2%} ({correct} of {total}); rows true, columns predicted"
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widest = max(scratch.textlength(s, font=font()) for s in [*names, "true"])
    label_w = math.ceil(widest) + 2 * PAD
    line_h = FONT_SIZE + 5
    title_w = math.ceil(scratch.textlength(title, font=font())) + 2 * PAD
    width = max(label_w + k * cell + PAD, title_w)
    top = PAD + 2 * line_h
    image = Image.new("RGB", (width, top + k * cell + PAD), "white")
    draw = ImageDraw.Draw(image)
    draw.text((PAD, PAD), title, fill=INK, font=font())
    draw.text((PAD, PAD + line_h), "true", fill=INK, font=font())
    for j, name in enumerate(names):
        x = label_w + j * cell + (cell - draw.textlength(name, font=font())) / 2
        draw.text((x, PAD + line_h), name, fill=INK, font=font())
    for i, name in enumerate(names):
        y = top + i * cell
        draw.text((PAD, y + (cell - FONT_SIZE) / 2), name, fill=INK, font=font())
        for j in range(k):
            x = label_w + j * cell
            colour = tuple(int(c) for c in shades[i, j])
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour, outline=(220, 220, 220))
            text = str(int(counts[i, j]))
            ink = "white" if sum(colour) < 3 * 128 else INK
            tx = x + (cell - draw.textlength(text, font=font(10))) / 2
            draw.text((tx, y + (cell - 10) / 2), text, fill=ink, font=font(10))
    return save_png(image, path)
