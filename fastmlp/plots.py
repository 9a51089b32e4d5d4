"""Plots: training curves and overlaid runs (matplotlib), and 2-D decision boundaries (Pillow).

matplotlib, an optional extra, is imported only when a curve is drawn; without it the
curve functions raise an ImportError saying ``pip install fastmlp[plot]``. Figures are
built without pyplot, so drawing never opens a window or touches a notebook's global
figure state. Every function writes one PNG atomically and returns its path; all are
also reachable as ``fastmlp.pictures.<name>``.

>>> from fastmlp.plots import training_curves, decision_boundary
>>> training_curves(model.history, "curves.png")   # or the trainer's JSON, or a model file
>>> decision_boundary(model, X, y, "boundary.png")
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from fastmlp.drawing import FONT_SIZE, INK, PAD, PALETTE, font, save_png, wrap
from fastmlp.files import write_atomically

__all__ = ["curve_panels", "decision_boundary", "history_epochs", "training_curves"]

_PANEL_SIZE = (4.6, 3.3)  # inches per panel


def _figure(rows: int, columns: int) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "drawing curves needs matplotlib, an optional extra: pip install fastmlp[plot]"
        ) from exc
    size = (_PANEL_SIZE[0] * columns, _PANEL_SIZE[1] * rows)
    return Figure(figsize=size, layout="constrained")


def _save(figure: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_atomically(path, buffer.getvalue())
    return path


def history_epochs(history: Any) -> list[dict[str, Any]]:
    """The per-epoch entries of a training record, wherever it comes from.

    Parameters
    ----------
    history : History or dict or list or str or PathLike
        A :class:`fastmlp.History`; its ``to_dict()`` (also under a ``"history"`` or
        ``"training"`` key, and as part of the results of ``fastmlp train --json``);
        a list of epoch dicts; or the path of such a JSON file or of a ``.safetensors``
        model file, whose metadata carries the history of the run that made it.

    Returns
    -------
    list of dict
        One dict per epoch with at least ``"epoch"`` and ``"loss"``.
    """
    if isinstance(history, str | os.PathLike):
        path = Path(history)
        if path.suffix == ".safetensors":
            from fastmlp.modelfile import read_model_file

            _, metadata = read_model_file(path)
            if "training" not in metadata:
                raise ValueError(f"{path}: this model file records no training history")
            return history_epochs(json.loads(metadata["training"]))
        return history_epochs(json.loads(path.read_text()))
    if hasattr(history, "epochs") and not isinstance(history, Mapping):
        return history_epochs(history.epochs)
    if isinstance(history, Mapping):
        for key in ("epochs", "history", "training"):
            if key in history:
                return history_epochs(history[key])
        raise ValueError(f"no 'epochs' in this record (keys: {sorted(history)})")
    if isinstance(history, Sequence) and all(isinstance(e, Mapping) for e in history):
        if not history:
            raise ValueError("the history is empty: no epoch was completed")
        if not all("loss" in e for e in history):
            raise ValueError("every epoch entry needs a 'loss'")
        return [dict(e) for e in history]
    raise ValueError(f"cannot read a training history from {type(history).__name__}")


def _column(epochs: list[dict[str, Any]], key: str) -> np.ndarray:
    values = [e.get(key) for e in epochs]
    return np.array([np.nan if v is None else float(v) for v in values], np.float64)


def training_curves(history: Any, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Loss and accuracy per epoch, training and validation, side by side.

    Parameters
    ----------
    history : History or dict or list or str or PathLike
        Anything :func:`history_epochs` reads: a History, the trainer's JSON, a model file.
    path : str or PathLike
        Where to write the PNG.
    title : str, optional
        A title over both panels.

    Returns
    -------
    Path
        ``path``.
    """
    epochs = history_epochs(history)
    x = np.array([e.get("epoch", i + 1) for i, e in enumerate(epochs)], np.float64)
    marker = "o" if len(epochs) <= 30 else None
    figure = _figure(1, 2)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    panels = ((loss_axes, "loss", "loss"), (accuracy_axes, "accuracy", "accuracy (%)"))
    for axes, key, label in panels:
        scale = 100.0 if key == "accuracy" else 1.0
        drawn = False
        for prefix, name in (("", "training"), ("val_", "validation")):
            values = _column(epochs, prefix + key) * scale
            if np.isfinite(values).any():
                axes.plot(x, values, marker=marker, markersize=3, label=name)
                drawn = True
        if not drawn:
            axes.text(
                0.5, 0.5, f"no {key} recorded", ha="center", va="center", transform=axes.transAxes
            )
        else:
            axes.legend()
        axes.set_xlabel("epoch")
        axes.xaxis.get_major_locator().set_params(integer=True)  # no epoch 1.25
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    loss_axes.set_title("loss")
    accuracy_axes.set_title("accuracy")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def curve_panels(
    panels: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    columns: int | None = None,
    colors: Mapping[str, str] | None = None,
    xlabel: str = "epoch",
    ylabel: str = "training loss",
    logy: bool = False,
    title: str | None = None,
) -> Path:
    """Panels of overlaid curves: one panel per setting varied, one curve (or group) per value.

    Parameters
    ----------
    panels : mapping of str to mapping of str to curves
        ``{panel title: {label: curve}}``. A curve is a sequence of y values (drawn at
        x = 1, 2, ...) or a mapping ``{"x": xs, "y": ys}``; a list of curves is drawn
        in one colour under one legend entry (e.g.
        ``{"learned": [run1, run2], "not learned": [run3]}``).
    path : str or PathLike
        Where to write the PNG.
    columns : int, optional
        Panels per row; up to 3 by default.
    colors : mapping of str to str, optional
        matplotlib colours by label; matplotlib's cycle otherwise.
    xlabel, ylabel : str
        Axis labels of every panel.
    logy : bool
        Logarithmic y axis.
    title : str, optional
        A title over all panels.

    Returns
    -------
    Path
        ``path``.
    """
    if not panels:
        raise ValueError("no panels to draw")
    columns = columns or min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = _figure(rows, columns)
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axes, (panel_title, curves) in zip(grid, panels.items(), strict=False):
        for label, curve in curves.items():
            group = curve if _is_group(curve) else [curve]
            colour = (colors or {}).get(label)
            for i, values in enumerate(group):
                x, y = _xy(values)
                line = axes.plot(
                    x, y, color=colour, linewidth=1.2,
                    alpha=0.7 if len(group) > 1 else 1.0, label=label if i == 0 else None,
                )  # fmt: skip
                colour = line[0].get_color()  # the rest of a group keeps the first's colour
        axes.set_title(panel_title)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        if logy:
            axes.set_yscale("log")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    for axes in grid[len(panels) :]:
        axes.set_visible(False)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _is_group(curve: Any) -> bool:
    if isinstance(curve, np.ndarray):
        return curve.ndim == 2
    if isinstance(curve, Mapping):
        return False
    return bool(len(curve)) and isinstance(curve[0], Sequence | np.ndarray | Mapping)


def _xy(curve: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(curve, Mapping):
        x, y = np.asarray(curve["x"], np.float64), np.asarray(curve["y"], np.float64)
        if x.shape != y.shape:
            raise ValueError(f"a curve's x and y differ in shape: {x.shape} and {y.shape}")
        return x, y
    y = np.asarray(curve, np.float64)
    return np.arange(1, len(y) + 1, dtype=np.float64), y


def _class_ids(y: Any) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    y = y.reshape(-1)
    if np.issubdtype(y.dtype, np.floating):
        return np.round(y).astype(np.int64)  # 0/1 targets of a sigmoid output
    return y.astype(np.int64)


def decision_boundary(
    model: Any,
    X: Any,
    y: Any,
    path: str | os.PathLike,
    *,
    size: int = 400,
    margin: float = 0.15,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """A 2-D classifier's regions over a grid, with the data points on top.

    Each pixel takes the colour of the class the model picks there, faded towards white
    as the model gets less sure; a dark line marks where the choice changes. Points are
    drawn in their true class's colour with a black outline.

    Parameters
    ----------
    model : MLP
        Anything with ``predict_proba`` taking (N, 2) float32 rows: softmax
        probabilities, or a single sigmoid output read as P(class 1).
    X : array_like
        (N, 2) points.
    y : array_like
        (N,) class ids (or 0/1 targets, or one-hot rows).
    path : str or PathLike
        Where to write the PNG.
    size : int
        Side of the square plot in pixels.
    margin : float
        Space around the points, as a fraction of their extent.
    title : str, optional
        Text above the plot, wrapped to its width.
    class_names : sequence of str, optional
        Names for the legend; "class 0", "class 1", ... by default.

    Returns
    -------
    Path
        ``path``.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2 or len(X) == 0:
        raise ValueError(f"decision boundaries are drawn for (N, 2) points, got shape {X.shape}")
    classes = _class_ids(y)
    if len(classes) != len(X):
        raise ValueError(f"got {len(X)} points but {len(classes)} labels")
    # One scale on both axes, so circles look round.
    centre = (X.min(axis=0) + X.max(axis=0)) / 2
    half = max(float(np.ptp(X, axis=0).max()), 1e-6) / 2 * (1 + 2 * margin)
    step = 2 * half / size
    xs = centre[0] - half + (np.arange(size) + 0.5) * step
    ys = centre[1] + half - (np.arange(size) + 0.5) * step  # image rows run downwards
    gx, gy = np.meshgrid(xs, ys)
    grid = np.column_stack([gx.ravel(), gy.ravel()]).astype(np.float32)
    probs = np.asarray(model.predict_proba(grid), dtype=np.float64)
    if probs.ndim == 2 and probs.shape[1] == 1:
        probs = np.column_stack([1 - probs[:, 0], probs[:, 0]])
    k = probs.shape[1]
    palette = np.array([PALETTE[c % len(PALETTE)] for c in range(k)], np.float64)
    choice = probs.argmax(axis=1)
    # Confidence 1/k (a coin toss) is white, certainty is the class colour at 55%.
    sure = np.clip((probs.max(axis=1) - 1 / k) / (1 - 1 / k), 0, 1)[:, None]
    background = 255 - (255 - palette[choice]) * 0.55 * sure
    rgb = background.reshape(size, size, 3)
    choice = choice.reshape(size, size)
    edge = np.zeros((size, size), bool)
    edge[:, 1:] |= choice[:, 1:] != choice[:, :-1]
    edge[1:, :] |= choice[1:, :] != choice[:-1, :]
    rgb[edge] = (60, 60, 60)
    plot = Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(plot)
    radius = 3 if len(X) <= 2000 else 2
    px = (X[:, 0] - (centre[0] - half)) / step
    py = (centre[1] + half - X[:, 1]) / step
    for x, y_, c in zip(px, py, classes, strict=True):
        colour = PALETTE[int(c) % len(PALETTE)]
        draw.ellipse([x - radius, y_ - radius, x + radius, y_ + radius], fill=colour, outline=INK)
    n_classes = max(k, int(classes.max()) + 1)
    names = [str(n) for n in class_names] if class_names else []
    names += [f"class {c}" for c in range(len(names), n_classes)]
    scratch = ImageDraw.Draw(plot)
    title_lines = wrap(title, size, scratch) if title else []
    line_h = FONT_SIZE + 5
    legend_y = PAD + len(title_lines) * line_h
    header = legend_y + line_h + PAD
    image = Image.new("RGB", (size + 2 * PAD, size + header + PAD), "white")
    image.paste(plot, (PAD, header))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(title_lines):
        draw.text((PAD, PAD + i * line_h), line, fill=INK, font=font())
    x = float(PAD)
    for c, name in enumerate(names):
        colour = PALETTE[c % len(PALETTE)]
        draw.rectangle([x, legend_y + 2, x + 9, legend_y + 11], fill=colour, outline=INK)
        draw.text((x + 13, legend_y), name, fill=INK, font=font())
        x += 20 + draw.textlength(name, font=font())
    return save_png(image, path)
