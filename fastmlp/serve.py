"""``fastmlp serve``: a local page to draw a digit on and see what a trained model sees and thinks.

The server is the standard library's threading HTTP server, kept safe by hand: it binds
to 127.0.0.1 unless told otherwise, answers only requests addressed to that host (a page
elsewhere cannot reach it through DNS rebinding), reads a request body only after its
Content-Length passed the size limit, drops connections that stall, and answers every bad
request with a 4xx JSON error, ``{"error": "..."}``. No dependency beyond fastmlp's own.

Endpoints:

- ``GET /`` and ``GET /static/<file>``: the page (plain HTML, CSS and JavaScript, no CDN);
- ``GET /model``: the architecture and file name (JSON); ``GET /model/weights.png``: what
  each first-layer unit looks at, drawn by :func:`fastmlp.pictures.first_layer_weights`;
- ``POST /predict``: a digit in, ``{"probabilities": [...], "digit": k, "preview": [...]}``
  out. The digit is JSON ``{"pixels": [784 numbers, 0..255 or 0..1]}`` or ``{"image":
  "<base64 PNG/JPEG, data: URL allowed>"}``, or a raw image body. It goes through MNIST's
  preprocessing (:func:`fastmlp.preprocess.prepare_digit`) unless the JSON says
  ``"preprocess": false``; ``preview`` is the 28x28 uint8 image the model was given.

>>> fastmlp serve runs/mnist-784-16-16-10.safetensors   # then open http://127.0.0.1:8000/
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import ipaddress
import json
import math
import os
import socket
import sys
import tempfile
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY_BYTES = 4 * 1024 * 1024  # a 280x280 canvas PNG is ~10 kB; a phone photo a few MB
MAX_IMAGE_PIXELS = 4096 * 4096  # checked on the header, before a PNG is decompressed
READ_TIMEOUT_SECONDS = 10.0  # a client that stalls mid-request loses its connection
STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page needs nothing but itself: no CDN, no inline script, images from here or drawn.
CSP = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; frame-ancestors 'none'"


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
                gray = np.asarray(_on_white_paper(image).convert("L"), dtype=np.uint8)
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
            except ValueError:  # the only thing prepare_digit refuses is a blank image
                raise RequestError(422, "nothing drawn: the image is blank") from None
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


def _on_white_paper(image: Any) -> Any:
    """Composite a transparent drawing on white, so transparency does not read as ink.

    The same rule as fastmlp.preprocess.load_digit, which reads from a path, not bytes.
    """
    from PIL import Image

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image


class Handler(BaseHTTPRequestHandler):
    """One request: the page, the model's description, or a prediction; errors as JSON."""

    server: DigitServer
    protocol_version = "HTTP/1.1"
    server_version = "fastmlp"
    # The headers and the body leave in two writes; with Nagle's algorithm the second waits
    # for the client's delayed ACK of the first: 40 ms per answer on a kept-alive connection.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # StreamRequestHandler puts it on the socket
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self._host_allowed():
            return
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send_static("index.html")
        elif path.startswith("/static/") and path[len("/static/") :] in STATIC_FILES:
            self._send_static(path[len("/static/") :])
        elif path == "/model":
            self._send_json(200, self.server.digits.info)
        elif path == "/model/weights.png":
            self._send(200, self.server.digits.weights_png, "image/png")
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._send_json(404, {"error": f"no such page: {path}"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._host_allowed():
            return
        if self.path.split("?", 1)[0] != "/predict":
            self._send_json(404, {"error": f"no such endpoint: POST {self.path}"})
            return
        try:
            body = self._read_body()
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            answer = self.server.digits.predict(body, content_type)
        except RequestError as exc:
            self._send_json(exc.status, {"error": str(exc)})
            return
        except Exception:  # a bug of ours: say so, keep serving, leave the traceback in the log
            self.log_error("prediction failed:\n%s", traceback.format_exc())
            self._send_json(500, {"error": "internal error; see the server's log"})
            return
        self._send_json(200, answer)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise RequestError(411, "send a Content-Length, not a chunked body")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            raise RequestError(411, "a Content-Length header is required")
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise RequestError(400, f"bad Content-Length {length_text!r}") from None
        if length > self.server.max_body:
            # The body stays unread; closing the connection keeps it from being taken for
            # the next request.
            self.close_connection = True
            raise RequestError(
                413, f"the body is {length} bytes; the limit is {self.server.max_body}"
            )
        try:
            body = self.rfile.read(length)
        except TimeoutError:  # the client stalled mid-body
            self.close_connection = True
            raise RequestError(408, "the body did not arrive in time") from None
        if len(body) != length:
            self.close_connection = True
            raise RequestError(400, "the body ended before its Content-Length")
        return body

    def _host_allowed(self) -> bool:
        if self.server.allowed_hosts is None:
            return True
        host = self.headers.get("Host", "").lower()
        if host in self.server.allowed_hosts:
            return True
        self._send_json(403, {"error": f"this server answers requests to localhost, not {host!r}"})
        return False

    def _send_static(self, name: str) -> None:
        self._send(200, (STATIC / name).read_bytes(), STATIC_FILES[name])

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, allow_nan=False).encode()
        self._send(status, data, "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, unknown method) as JSON, like ours."""
        self.close_connection = True
        # A request line too broken to name its version still gets a status line.
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        try:
            text = message or HTTPStatus(code).phrase
        except ValueError:
            text = "error"
        self._send_json(code, {"error": text})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)


class DigitServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that holds one :class:`DigitModel` and the safety settings."""

    daemon_threads = True  # a stalled connection does not keep the process alive

    def __init__(
        self,
        digits: DigitModel,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        max_body: int = MAX_BODY_BYTES,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        verbose: bool = False,
    ) -> None:
        self.digits = digits
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.verbose = verbose
        if ":" in host:  # an IPv6 address such as ::1
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        port = self.server_address[1]
        # Bound to loopback: answer only requests for this very address, so a web page
        # elsewhere cannot reach the server through a DNS name that resolves here.
        self.allowed_hosts = (
            {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")}
            if _is_loopback(host)
            else None
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-answer is not the server's problem; anything else is.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start(
    model_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> DigitServer:
    """Load the model and serve it from a background thread; ``server.shutdown()`` stops it.

    ``port=0`` takes a free port (``server.url`` says which); ``options`` go to DigitServer.
    """
    server = DigitServer(DigitModel(model_path), host, port, **options)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def add_serve_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="a local web page to draw digits for a model",
        description=(
            "Serve a page where you draw a digit and see the model's answer, the 28x28 image "
            "it actually receives, and what its first layer looks at."
        ),
    )
    p.add_argument("model", type=Path, help="a .safetensors file written by fastmlp")
    p.add_argument("--port", type=_port, default=8000, help="port to listen on (default 8000)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """``fastmlp serve``: load the model, print the address, serve until Ctrl-C."""
    digits = DigitModel(args.model)
    server = DigitServer(digits, args.host, args.port, verbose=args.verbose)
    if server.allowed_hosts is None:
        print(f"fastmlp: warning: listening on {args.host}: other machines can reach this page")
    arch = digits.info["architecture"]
    print(f"serving {args.model} ({arch}, {digits.model.activation}) at {server.url}", flush=True)
    print("open that address in a browser; Ctrl-C stops the server", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must lie in 0..65535, got {value}")
    return value
