"""Turn a photo or drawing of a digit into an MNIST-like image, the way MNIST itself was made.

MNIST's digits are white on black, fitted into a 20x20 box (aspect ratio kept,
anti-aliased) and placed in a 28x28 field so that their centre of mass is the centre.
A model trained on MNIST only works on inputs prepared the same way.
"""

from __future__ import annotations

import os

import numpy as np

#: Largest image accepted (a 6000x4000 photo is 24 million): decoding costs memory in
#: proportion to the pixels, and a tiny PNG can declare billions of them.
MAX_PIXELS = 50_000_000


def load_digit(path: str | os.PathLike, side: int = 28) -> np.ndarray:
    """Read an image file and return a (side, side) uint8 digit, white on black.

    Parameters
    ----------
    path : path-like
        Any image Pillow reads (PNG, JPEG, BMP, ...), colour or grayscale.
    side : int
        Size of the square output (28 for MNIST).

    Raises
    ------
    ValueError
        If the file is not an image, is damaged, has more than :data:`MAX_PIXELS`
        pixels, or shows no digit (a blank page, specks that vanish at 20x20); the
        message names the file.
    OSError
        If the file cannot be opened.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    name = os.fspath(path)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; a digit never
            # needs that many pixels, so a warning is as good as a refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(name) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise _too_large(name, image.width, image.height)
                image.load()
                gray = flatten_alpha(image).convert("L")
    except UnidentifiedImageError:
        raise ValueError(f"{name}: not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(name) from None
    except (OSError, SyntaxError, EOFError) as exc:  # truncated or corrupt image data
        if isinstance(exc, OSError) and exc.filename is not None:
            raise  # missing, a folder, no permission: the OS's own words
        raise ValueError(f"{name}: a damaged image ({exc})") from None
    return prepare_digit(np.asarray(gray, dtype=np.uint8), side=side, name=name)


def _too_large(name: str, width: int | None = None, height: int | None = None) -> ValueError:
    size = "" if width is None else f" ({width}x{height})"
    return ValueError(
        f"{name}: the image is too large{size}: more than {MAX_PIXELS} pixels, "
        "far more than a photo of a digit needs"
    )


def prepare_digit(pixels: np.ndarray, side: int = 28, name: str = "image") -> np.ndarray:
    """MNIST's preprocessing of a grayscale (H, W) uint8 array; see :func:`load_digit`."""
    from PIL import Image

    ink = pixels.astype(np.float32)
    # Paper is what the border mostly shows: a light border means a dark digit on paper.
    if np.median(_border(ink)) > 127:
        ink = 255.0 - ink
    ink = np.clip(ink - np.median(_border(ink)), 0, 255)  # grey paper becomes black
    if ink.max() < 32:
        raise ValueError(f"{name}: no digit found (the image is blank)")
    rows = np.flatnonzero(ink.max(axis=1) > 0.2 * ink.max())
    cols = np.flatnonzero(ink.max(axis=0) > 0.2 * ink.max())
    digit = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    digit = digit * (255.0 / digit.max())

    box = max(1, round(side * 20 / 28))
    scale = box / max(digit.shape)
    height = max(1, round(digit.shape[0] * scale))
    width = max(1, round(digit.shape[1] * scale))
    resized = Image.fromarray(digit.astype(np.uint8)).resize((width, height), Image.LANCZOS)
    small = np.asarray(resized, dtype=np.float32)
    total = small.sum()
    if total <= 0:  # marks too small or too far apart to survive the shrinking
        raise ValueError(
            f"{name}: no digit found (the marks vanish when the {digit.shape[1]}x"
            f"{digit.shape[0]} area around them is shrunk to {box}x{box})"
        )

    # Place the box so the centre of mass lands on the centre of the field.
    cy = (small.sum(axis=1) @ np.arange(height)) / total
    cx = (small.sum(axis=0) @ np.arange(width)) / total
    top = int(round((side - 1) / 2 - cy))
    left = int(round((side - 1) / 2 - cx))
    top = min(max(top, 0), side - height)
    left = min(max(left, 0), side - width)
    field = np.zeros((side, side), np.float32)
    field[top : top + height, left : left + width] = small
    return np.clip(np.rint(field), 0, 255).astype(np.uint8)


def _border(pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])


def flatten_alpha(image):  # noqa: ANN001, ANN202 - Pillow images
    """Put a transparent drawing on white paper, so transparency does not read as ink
    (for a file here, and for the bytes the draw-a-digit page sends)."""
    from PIL import Image

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba)
    return image
