"""Drawing helpers shared by :mod:`fastmlp.pictures` and :mod:`fastmlp.plots`.

One palette, one font, one way of wrapping a title and one way of writing a PNG, so
every picture fastmlp draws looks alike and is written the same safe way.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from fastmlp.files import write_atomically

__all__ = ["FONT_SIZE", "INK", "PAD", "PALETTE", "font", "save_png", "wrap"]

# matplotlib's "tab10", so classes keep their colours between the pictures and the curves.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip
INK: tuple[int, int, int] = (0, 0, 0)  # the colour of text and outlines
FONT_SIZE = 12  # pixels
PAD = 6  # pixels of white around and between the parts of a picture


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write ``image`` as a PNG to ``path`` atomically and return the path.

    The PNG goes to a temporary file beside ``path`` first and is then renamed, so a
    reader never sees half a picture.
    """
    path = Path(path)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_atomically(path, buffer.getvalue())
    return path


@lru_cache(maxsize=8)
def font(size: int = FONT_SIZE) -> Any:
    """Pillow's default font at ``size`` pixels.

    Pillow >= 10.1 bundles a scalable font; without FreeType this falls back to the
    fixed bitmap font, smaller but still legible.
    """
    return ImageFont.load_default(size=size)


def wrap(text: str, width: float, draw: ImageDraw.ImageDraw) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels in :func:`font`."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font()) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines
