"""User images become MNIST-like digits without MNIST: synthetic strokes at known places.

MNIST's recipe: the digit's bounding box scaled (aspect kept) to fit 20x20, placed in a
28x28 field so that its centre of mass is the field's centre; white ink on black.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fastmlp.preprocess import load_digit, prepare_digit

CENTRE = 13.5  # the middle of 28 pixels indexed 0..27


def canvas(shape, where, size, dark_on_light=True, canvas_size=(240, 320)):
    """A stroke drawn on paper: ``shape`` at top-left ``where`` (row, column) and
    ``size`` (height, width) on a canvas of ``canvas_size`` (rows, columns)."""
    paper, ink = (255, 0) if dark_on_light else (0, 255)
    image = Image.new("L", canvas_size[::-1], paper)
    draw = ImageDraw.Draw(image)
    (y, x), (h, w) = where, size
    if shape == "ring":  # a zero
        draw.ellipse([x, y, x + w - 1, y + h - 1], outline=ink, width=max(2, w // 8))
    elif shape == "bar":  # a one
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=ink)
    elif shape == "ell":  # an L: its centre of mass is far from its box's centre
        t = max(2, w // 6)
        draw.rectangle([x, y, x + t - 1, y + h - 1], fill=ink)
        draw.rectangle([x, y + h - t, x + w - 1, y + h - 1], fill=ink)
    return np.asarray(image, dtype=np.uint8)


def centre_of_mass(digit):
    mass = digit.astype(np.float64)
    rows, cols = np.indices(digit.shape)
    return (rows * mass).sum() / mass.sum(), (cols * mass).sum() / mass.sum()


def ink_box(digit, level=64):
    rows = np.flatnonzero((digit > level).any(axis=1))
    cols = np.flatnonzero((digit > level).any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


STROKES = [
    pytest.param("ring", (20, 30), (120, 90), id="ring-top-left"),
    pytest.param("ring", (100, 200), (130, 110), id="ring-bottom-right"),
    pytest.param("bar", (10, 280), (200, 24), id="tall-bar-at-the-right-edge"),
    pytest.param("ell", (150, 10), (80, 60), id="ell-bottom-left"),
    pytest.param("ell", (40, 150), (40, 160), id="wide-ell"),
]


@pytest.mark.parametrize("dark_on_light", [True, False], ids=["dark-on-light", "light-on-dark"])
@pytest.mark.parametrize(("shape", "where", "size"), STROKES)
def test_a_stroke_lands_centred_in_a_20x20_box(shape, where, size, dark_on_light):
    digit = prepare_digit(canvas(shape, where, size, dark_on_light))
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    assert digit.max() >= 200, "the digit is white ink at full strength"
    assert digit[[0, -1]].max() < 64 and digit[:, [0, -1]].max() < 64, "the border is black"
    top, bottom, left, right = ink_box(digit)
    height, width = bottom - top + 1, right - left + 1
    assert max(height, width) in (19, 20, 21), f"the longer side is {max(height, width)}, not 20"
    # The aspect ratio is kept (to within the pixels lost to rounding and anti-aliasing).
    assert height / width == pytest.approx(size[0] / size[1], rel=0.25)
    cy, cx = centre_of_mass(digit)
    assert abs(cy - CENTRE) <= 1 and abs(cx - CENTRE) <= 1, (
        f"centre of mass at ({cy:.1f}, {cx:.1f}), not at the field's centre"
    )


@pytest.mark.parametrize(("shape", "where", "size"), STROKES)
def test_ink_colour_and_position_on_the_page_do_not_matter(shape, where, size):
    dark = prepare_digit(canvas(shape, where, size, dark_on_light=True))
    light = prepare_digit(canvas(shape, where, size, dark_on_light=False))
    np.testing.assert_array_equal(dark, light)
    moved = prepare_digit(canvas(shape, (where[0] // 2, where[1] // 3), size))
    np.testing.assert_array_equal(moved, dark)


def test_the_centre_of_mass_not_the_box_is_centred():
    digit = prepare_digit(canvas("ell", (50, 50), (100, 100)))
    top, bottom, left, right = ink_box(digit)
    box_centre = ((top + bottom) / 2, (left + right) / 2)
    # An L's mass sits low and left, so its box is pushed up and right of the centre.
    assert box_centre[0] < CENTRE - 1.5 and box_centre[1] > CENTRE + 1.5
    cy, cx = centre_of_mass(digit)
    assert abs(cy - CENTRE) <= 1 and abs(cx - CENTRE) <= 1


def test_grey_paper_becomes_black(tmp_path):
    pixels = canvas("ring", (40, 60), (120, 100)).astype(np.int16)
    grey = np.where(pixels == 255, 200, 30).astype(np.uint8)  # a dim photo of a page
    np.testing.assert_array_equal(prepare_digit(grey), prepare_digit(canvas("ring", (40, 60),
                                                                            (120, 100))))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_load_digit_reads_files_like_arrays(tmp_path, mode):
    pixels = canvas("ell", (30, 40), (150, 120))
    if mode == "RGBA":  # ink on transparent: the transparent part is paper, not ink
        rgba = np.zeros((*pixels.shape, 4), np.uint8)
        rgba[..., 3] = 255 - pixels
        image = Image.fromarray(rgba, "RGBA")
    else:
        image = Image.fromarray(pixels, "L").convert(mode)
    image.save(tmp_path / "digit.png")
    np.testing.assert_array_equal(load_digit(tmp_path / "digit.png"), prepare_digit(pixels))


def test_a_blank_page_is_refused():
    with pytest.raises(ValueError, match="no digit"):
        prepare_digit(np.full((50, 50), 255, np.uint8))
