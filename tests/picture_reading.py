"""Reading pictures back: where a known tile was drawn, and which caption sits under it.

The expectations are computed from the data the picture was drawn from (the tile a
digit must become, the text a caption must say), never from stored PNGs. Text is read
by rendering each candidate caption in the pictures' font and keeping the one that
matches the strip under a tile best.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageDraw, ImageFont

FONT_SIZE = 12  # the pictures' caption size


def load_rgb(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def ink(rgb: np.ndarray) -> np.ndarray:
    """How far each pixel is from white paper, whatever the ink's colour (0 white, 255 full)."""
    return 255 - rgb.min(axis=-1)


def find_tile(sheet: np.ndarray, tile: np.ndarray) -> list[tuple[int, int]]:
    """Top-left corners (row, column) where ``tile`` appears in ``sheet`` exactly."""
    th, tw = tile.shape[:2]
    marked = np.argwhere((tile != 255).any(axis=-1))
    if len(marked) == 0:
        raise ValueError("a blank tile cannot be located")
    r0, c0 = marked[0]  # first pixel that is not paper: a cheap first filter
    hits = np.argwhere((sheet == tile[r0, c0]).all(axis=-1))
    found = []
    for y, x in hits - (r0, c0):
        if y < 0 or x < 0 or y + th > sheet.shape[0] or x + tw > sheet.shape[1]:
            continue
        if np.array_equal(sheet[y : y + th, x : x + tw], tile):
            found.append((int(y), int(x)))
    return found


@lru_cache(maxsize=256)
def _rendered(text: str) -> np.ndarray:
    font = ImageFont.load_default(size=FONT_SIZE)
    image = Image.new("RGB", (8 * FONT_SIZE * max(1, len(text)), 3 * FONT_SIZE), "white")
    ImageDraw.Draw(image).text((4, 4), text, fill=(0, 0, 0), font=font)
    mask = ink(np.asarray(image).astype(np.int16))
    rows, cols = np.nonzero(mask)
    return mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def text_score(strip: np.ndarray, text: str) -> float:
    """Mean ink difference between ``text`` and the best-matching place in ``strip`` (ink)."""
    template = _rendered(text)
    h, w = template.shape
    if strip.shape[0] < h or strip.shape[1] < w:
        return float("inf")
    windows = sliding_window_view(strip, (h, w))
    return float(np.abs(windows - template).mean(axis=(2, 3)).min())


def read_text(strip: np.ndarray, candidates: list[str]) -> tuple[str, float, float]:
    """The candidate that best matches somewhere in ``strip`` (ink values), its score, and
    the runner-up's score (a clear reading has a much lower best score)."""
    scores = sorted((text_score(strip, c), c) for c in candidates)
    return scores[0][1], scores[0][0], scores[1][0]


def caption_strip(sheet: np.ndarray, corner: tuple[int, int], tile_shape, lines: int) -> np.ndarray:
    """The ink under a tile: ``lines`` caption lines, as wide as the tile plus a little."""
    y, x = corner
    h, w = tile_shape[:2]
    top = y + h
    bottom = min(sheet.shape[0], top + lines * (FONT_SIZE + 3) + 4)
    left, right = max(0, x - 2), min(sheet.shape[1], x + w + 2)
    return ink(sheet[top:bottom, left:right])
