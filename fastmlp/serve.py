"""``fastmlp serve``: a local page to draw a digit on and see what a trained model sees and thinks.

The server is the standard library's threading HTTP server, kept safe by hand: it binds
to 127.0.0.1 unless told otherwise, answers only requests addressed to that host (a page
elsewhere cannot reach it through DNS rebinding), reads a request body only after its
Content-Length passed the size limit, drops connections that stall, keeps at most 64
open at once, and answers every bad request with a 4xx JSON error, ``{"error": "..."}``.
No dependency beyond fastmlp's own. What a request's digit becomes (decoding, MNIST's
preprocessing, the forward pass) is :mod:`fastmlp.serve_model`'s.

Endpoints:

- ``GET /`` and ``GET /static/<file>``: the page (plain HTML, CSS and JavaScript, no CDN);
- ``GET /model``: the architecture and file name (JSON); ``GET /model/weights.png``: what
  each first-layer unit looks at, drawn by :func:`fastmlp.pictures.first_layer_weights`;
- ``POST /predict``: a digit in, ``{"probabilities": [...], "digit": k, "preview": [...]}``
  out. The digit is JSON ``{"pixels": [784 numbers, 0..255 or 0..1]}`` or ``{"image":
  "<base64 PNG/JPEG, data: URL allowed>"}``, or a raw image body. It goes through MNIST's
  preprocessing (:func:`fastmlp.preprocess.prepare_digit`) unless the JSON says
  ``"preprocess": false``; ``preview`` is the 28x28 uint8 image the model was given.

>>> fastmlp serve runs/mnist-784-16-16-10-relu-he.safetensors   # then open http://127.0.0.1:8000/
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fastmlp.serve_model import DigitModel, RequestError

MAX_BODY_BYTES = 4 * 1024 * 1024  # a 280x280 canvas PNG is ~10 kB; a phone photo a few MB
READ_TIMEOUT_SECONDS = 10.0  # a client that stalls mid-request loses its connection
MAX_CONNECTIONS = 64  # open connections (threads) at once; a page uses one or two
STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page needs nothing but itself: no CDN, no inline script, images from here or drawn.
CSP = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; frame-ancestors 'none'"


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
        self.body_read = False
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
        self.body_read = False
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
        self.body_read = True
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
        headers = getattr(self, "headers", None) or {}  # none yet for a broken request line
        announced = headers.get("Content-Length", "0") != "0" or headers.get("Transfer-Encoding")
        if announced and not getattr(self, "body_read", False):
            # A body left unread would be taken for the next request on this connection.
            self.close_connection = True
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
    request_queue_size = 128  # the listen backlog (socketserver's 5 drops bursts of clients)

    def __init__(
        self,
        digits: DigitModel,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        max_body: int = MAX_BODY_BYTES,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
        verbose: bool = False,
    ) -> None:
        self.digits = digits
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.verbose = verbose
        self._slots = threading.BoundedSemaphore(max_connections)
        if ":" in host:  # an IPv6 address such as ::1
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        port = self.server_address[1]
        # Bound to loopback: answer only requests for this very address, so a web page
        # elsewhere cannot reach the server through a DNS name that resolves here.
        names = ("127.0.0.1", "localhost", "[::1]")
        self.allowed_hosts = (
            {f"{name}:{port}" for name in names} | (set(names) if port == 80 else set())
            if _is_loopback(host)
            else None
        )

    def process_request(self, request: Any, client_address: Any) -> None:
        # One thread per open connection, at most max_connections of them: past that a new
        # connection is closed at once rather than given a thread to wait in.
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # the thread did not start: give its slot back
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

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
    try:  # from the first line on, Ctrl-C is the way to stop, not an error
        print(f"serving {args.model} ({arch}, {digits.model.activation}) at {server.url}")
        print("open that address in a browser; Ctrl-C stops the server", flush=True)
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
