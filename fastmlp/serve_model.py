"""What ``fastmlp serve`` does with a request's digit: decode it, prepare it as MNIST was, classify it.

No HTTP here: :class:`DigitModel` takes a request body and its Content-Type and returns
the answer as a dict, or raises :class:`RequestError` with the HTTP status and the one
line that says what is wrong. :mod:`fastmlp.serve` puts it on the network.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

MAX_IMAGE_PIXELS = 4096 * 4096  # checked on the header, before a PNG is decompressed


class RequestError(Exception):
    """A bad request: its HTTP status and the one line that says what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class DigitModel:
    """A loaded model and what the page shows of it; :meth:`predict` is safe to call from threads.

    The numba forward pass only reads the parameters and writes an output array of its
    own, without the GIL, so concurrent predictions need no lock (tests/test_serve.py
    runs 8 clients at once and compares every answer with a single-threaded one).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        from fastmlp.model import MLP
        from fastmlp.pictures import first_layer_weights

        self.path = Path(path)
        self.model = MLP.load(self.path, backend="numba")
        n_inputs = self.model.sizes[0]
        self.side = math.isqrt(n_inputs)
        if self.side * self.side != n_inputs:
            raise ValueError(
                f"{self.path}: the model takes {n_inputs} inputs, not a square image to draw"
            )
        with tempfile.TemporaryDirectory() as folder:
            picture = first_layer_weights(self.model, Path(folder) / "weights.png")
            self.weights_png = picture.read_bytes()
        self.info = {
            "file": self.path.name,
            "sizes": list(self.model.sizes),
            "architecture": "-".join(map(str, self.model.sizes)),
            "activation": self.model.activation,
            "output": self.model.output,
            "parameters": int(self.model.params.size),
            "side": self.side,
            "classes": self.model.sizes[-1],
            "weights_png": "/model/weights.png",
        }
        self.predict_pixels([0] * (n_inputs - 1) + [255])  # compile (or load) the kernels now

    def predict(self, body: bytes, content_type: str) -> dict[str, Any]:
        """Answer one ``POST /predict`` body; raises RequestError for bad input."""
        if content_type == "application/json":
            try:
                request = json.loads(body)
            except (ValueError, RecursionError):
                raise RequestError(400, "the body is not valid JSON") from None
            if not isinstance(request, dict):
                raise RequestError(
                    400, 'expected a JSON object: {"pixels": [...]} or {"image": ...}'
                )
            preprocess = request.get("preprocess", True)
            if not isinstance(preprocess, bool):
                raise RequestError(400, '"preprocess" must be true or false')
            if "pixels" in request:
                return self.predict_pixels(request["pixels"], preprocess=preprocess)
            if "image" in request:
                return self.predict_image(_decode_base64(request["image"]))
            raise RequestError(400, 'expected "pixels" (a list of numbers) or "image" (base64)')
        if content_type.startswith("image/") or content_type == "application/octet-stream":
            return self.predict_image(body)
        raise RequestError(
            415, f"unsupported Content-Type {content_type!r}: send application/json or an image"
        )

    def predict_pixels(self, pixels: Any, preprocess: bool = True) -> dict[str, Any]:
        """Classify ``side * side`` numbers, row by row: 0..255, or 0..1 when none exceeds 1."""
        import numpy as np

        n = self.side * self.side
        if not isinstance(pixels, list) or not all(_is_number(v) for v in pixels):
            raise RequestError(400, f'"pixels" must be a flat list of {n} numbers')
        if len(pixels) != n:
            raise RequestError(
                400,
                f'"pixels" has {len(pixels)} values; the model takes {n} ({self.side}x{self.side})',
            )
        try:
            values = np.asarray(pixels, np.float64)
        except OverflowError:  # an integer beyond float64
            raise RequestError(400, '"pixels" must lie in 0..255 (or 0..1)') from None
        if not np.isfinite(values).all():
            raise RequestError(400, '"pixels" holds NaN or infinite values')
        if values.min() < 0 or values.max() > 255:
            raise RequestError(400, '"pixels" must lie in 0..255 (or 0..1)')
        if values.max() <= 1.0:
            values = values * 255.0
        grid = np.rint(values).astype(np.uint8).reshape(self.side, self.side)
        return self._classify(grid, preprocess)

    def predict_image(self, data: bytes) -> dict[str, Any]:
        """Classify an image file's bytes (PNG, JPEG, ... as Pillow reads them)."""
        import numpy as np
        from PIL import Image

        from fastmlp.preprocess import flatten_alpha

        if not data:
            raise RequestError(400, "the image is empty")
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise RequestError(
                        413, f"the image is {width}x{height}; at most {MAX_IMAGE_PIXELS} pixels"
                    )
                image.load()
                gray = np.asarray(flatten_alpha(image).convert("L"), dtype=np.uint8)
        except RequestError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            # UnidentifiedImageError and truncated files are OSErrors; some decoders raise
            # SyntaxError or ValueError for a malformed header.
            raise RequestError(400, "not an image Pillow can read (PNG, JPEG, ...)") from None
        return self._classify(gray, preprocess=True)

    def _classify(self, grid: Any, preprocess: bool) -> dict[str, Any]:
        import numpy as np

        from fastmlp.preprocess import prepare_digit

        if preprocess:
            try:
                grid = prepare_digit(grid, side=self.side, name="drawing")
            except ValueError as exc:
                if "blank" in str(exc):  # prepare_digit found no ink
                    raise RequestError(422, "nothing drawn: the image is blank") from None
                raise RequestError(400, str(exc)) from None
        elif not grid.any():
            raise RequestError(422, "nothing drawn: every pixel is 0")
        probabilities = self.model.predict_proba(grid.reshape(1, -1))[0]
        return {
            "probabilities": [round(float(p), 6) for p in probabilities],
            "digit": int(np.argmax(probabilities)),
            "preview": grid.reshape(-1).tolist(),
        }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decode_base64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise RequestError(400, '"image" must be a base64 string')
    if text.startswith("data:"):  # a data: URL, as canvas.toDataURL() gives
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, '"image" is not valid base64') from None
