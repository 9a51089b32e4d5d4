"""`fastmlp serve` over real HTTP on 127.0.0.1: the page, the model, predictions, and every bad input.

A model with untrained weights is enough here (the answers are compared with the model's
own, not with the truth); tests/test_serve_browser.py draws on the page with a model
trained on MNIST.
"""

from __future__ import annotations

import base64
import fnmatch
import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fastmlp import MLP
from fastmlp.preprocess import load_digit, prepare_digit
from fastmlp.serve import STATIC, STATIC_FILES, start
from fastmlp.serve_model import MAX_IMAGE_PIXELS


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "digits.safetensors"
    MLP([784, 16, 16, 10], seed=3).save(path)
    return path


@pytest.fixture(scope="module")
def server(model_path):
    server = start(model_path, read_timeout=1.0, max_body=256 * 1024)
    yield server
    server.shutdown()
    server.server_close()


def request(server, method, path, body=None, headers=None):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def predict(server, payload=None, *, body=None, content_type="application/json"):
    if body is None:
        body = json.dumps(payload).encode()
    status, headers, data = request(
        server, "POST", "/predict", body, {"Content-Type": content_type}
    )
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(data)


def raw_exchange(server, data: bytes, wait: float = 5.0) -> bytes:
    """Send bytes as they are and return all the server answers before closing."""
    with socket.create_connection(server.server_address[:2], timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def drawn_digit(kind: str, size: int = 200, background: int = 255) -> np.ndarray:
    """A grayscale drawing, dark ink on light paper, like the page's canvas."""
    image = Image.new("L", (size, size), background)
    draw = ImageDraw.Draw(image)
    ink = 255 - background
    if kind == "one":
        draw.line([(size // 2, size // 6), (size // 2 + 8, 5 * size // 6)], fill=ink, width=14)
    elif kind == "zero":
        draw.ellipse([size // 4, size // 6, 3 * size // 4, 5 * size // 6], outline=ink, width=14)
    else:  # a seven
        draw.line([(size // 4, size // 5), (3 * size // 4, size // 5)], fill=ink, width=14)
        draw.line([(3 * size // 4, size // 5), (size // 3, 4 * size // 5)], fill=ink, width=14)
    return np.asarray(image)


def png_bytes(pixels: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def expected(model_path, grid: np.ndarray) -> np.ndarray:
    return MLP.load(model_path).predict_proba(grid.reshape(1, -1))[0]


# --- the page and the model ----------------------------------------------------------------


def test_the_page_and_its_files_are_served_with_a_strict_policy(server):
    status, headers, page = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<canvas id="pad"' in page and b"/static/app.js" in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for name, content_type in STATIC_FILES.items():
        status, headers, data = request(server, "GET", f"/static/{name}")
        assert status == 200 and headers["Content-Type"] == content_type
        assert data == (STATIC / name).read_bytes()
        # Offline: nothing fetched from elsewhere (no CDN, no web fonts).
        assert b"http://" not in data and b"https://" not in data, name


@pytest.mark.parametrize(
    "path", ["/static/../serve.py", "/static/%2e%2e/serve.py", "/static/", "/nothing", "/static/x"]
)
def test_only_the_pages_own_files_are_served(server, path):
    status, headers, data = request(server, "GET", path)
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert "error" in json.loads(data)


def test_model_description_and_first_layer_picture(server, model_path, tmp_path):
    from fastmlp.pictures import first_layer_weights

    status, _, data = request(server, "GET", "/model")
    info = json.loads(data)
    assert status == 200
    assert info["file"] == "digits.safetensors"
    assert info["sizes"] == [784, 16, 16, 10] and info["architecture"] == "784-16-16-10"
    assert info["activation"] == "relu" and info["classes"] == 10 and info["side"] == 28
    assert info["parameters"] == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    status, headers, png = request(server, "GET", info["weights_png"])
    assert status == 200 and headers["Content-Type"] == "image/png"
    reference = first_layer_weights(MLP.load(model_path), tmp_path / "w.png").read_bytes()
    assert png == reference


# --- predictions ------------------------------------------------------------------------------


def test_pixels_predict_like_the_model_after_mnist_preprocessing(server, model_path):
    grid = np.asarray(Image.fromarray(drawn_digit("seven")).resize((28, 28), Image.LANCZOS))
    status, answer = predict(server, {"pixels": grid.reshape(-1).tolist()})
    assert status == 200
    prepared = prepare_digit(grid)
    assert answer["preview"] == prepared.reshape(-1).tolist()
    want = expected(model_path, prepared)
    np.testing.assert_allclose(answer["probabilities"], want, atol=1e-6)
    assert answer["digit"] == int(want.argmax())
    assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-4)

    # The same pixels scaled to 0..1 are the same drawing.
    status, scaled = predict(server, {"pixels": (grid.reshape(-1) / 255.0).tolist()})
    assert status == 200 and scaled["preview"] == answer["preview"]


def test_pixels_already_prepared_go_straight_to_the_model(server, model_path):
    grid = prepare_digit(drawn_digit("zero"))
    status, answer = predict(server, {"pixels": grid.reshape(-1).tolist(), "preprocess": False})
    assert status == 200 and answer["preview"] == grid.reshape(-1).tolist()
    np.testing.assert_allclose(answer["probabilities"], expected(model_path, grid), atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_an_image_predicts_like_fastmlp_predict(server, model_path, tmp_path, mode):
    drawing = drawn_digit("one")
    data = png_bytes(drawing, mode)
    path = tmp_path / "digit.png"
    path.write_bytes(data)
    want_grid = load_digit(path)  # what `fastmlp predict` feeds the model
    want = expected(model_path, want_grid)
    encoded = base64.b64encode(data).decode()
    answers = [
        predict(server, body=data, content_type="image/png"),
        predict(server, body=data, content_type="application/octet-stream"),
        predict(server, {"image": encoded}),
        predict(server, {"image": f"data:image/png;base64,{encoded}"}),
    ]
    for status, answer in answers:
        assert status == 200
        assert answer["preview"] == want_grid.reshape(-1).tolist()
        np.testing.assert_allclose(answer["probabilities"], want, atol=1e-6)


def test_a_transparent_canvas_reads_as_white_paper(server):
    rgba = np.zeros((120, 120, 4), np.uint8)  # transparent everywhere ...
    rgba[20:100, 55:65] = (0, 0, 0, 255)  # ... but for an opaque black bar
    status, answer = predict(server, body=png_bytes(rgba, "RGBA"), content_type="image/png")
    assert status == 200
    preview = np.array(answer["preview"]).reshape(28, 28)
    assert preview[14, 14] > 200 and preview[14, 3] == 0  # white ink on black, centred


def test_jpeg_is_read_too(server):
    buffer = io.BytesIO()
    Image.fromarray(drawn_digit("zero")).save(buffer, format="JPEG", quality=90)
    status, answer = predict(server, body=buffer.getvalue(), content_type="image/jpeg")
    assert status == 200 and len(answer["preview"]) == 784


# --- bad input: a clear 4xx JSON error, never a crash ------------------------------------------


def _big_sparse_png() -> bytes:
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    buffer = io.BytesIO()
    Image.new("1", (side, side), 1).save(buffer, format="PNG")  # a few kB, 16M+ pixels
    return buffer.getvalue()


GOOD_PNG = png_bytes(drawn_digit("one"))
BAD_BODIES = {
    "not json": (b"{pixels: ", "application/json", 400, "not valid JSON"),
    "not utf-8": (b"\xff\xfe{", "application/json", 400, "not valid JSON"),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "JSON"),
    "a list": (b"[1, 2, 3]", "application/json", 400, "JSON object"),
    "no pixels or image": (b'{"pics": []}', "application/json", 400, '"pixels"'),
    "too few pixels": (json.dumps({"pixels": [0] * 783}), "application/json", 400, "783"),
    "too many pixels": (json.dumps({"pixels": [0] * 785}), "application/json", 400, "785"),
    "28x28 nested": (json.dumps({"pixels": [[0] * 28] * 28}), "application/json", 400, "flat"),
    "strings": (json.dumps({"pixels": ["1"] * 784}), "application/json", 400, "numbers"),
    "booleans": (json.dumps({"pixels": [True] * 784}), "application/json", 400, "numbers"),
    "null": (json.dumps({"pixels": None}), "application/json", 400, "numbers"),
    "NaN": (b'{"pixels": [NaN' + b", 0" * 783 + b"]}", "application/json", 400, "NaN"),
    "Infinity": (b'{"pixels": [Infinity' + b", 0" * 783 + b"]}", "application/json", 400, "NaN"),
    "negative": (json.dumps({"pixels": [-1] + [0] * 783}), "application/json", 400, "0..255"),
    "above 255": (json.dumps({"pixels": [256] + [0] * 783}), "application/json", 400, "0..255"),
    "huge integer": (
        '{"pixels": [' + "9" * 400 + ", 0" * 783 + "]}", "application/json", 400, "0..255",
    ),
    "preprocess not a bool": (
        json.dumps({"pixels": [0] * 784, "preprocess": "no"}), "application/json", 400, "true",
    ),
    "empty canvas, black": (json.dumps({"pixels": [0] * 784}), "application/json", 422, "nothing drawn"),
    "empty canvas, white": (json.dumps({"pixels": [255] * 784}), "application/json", 422, "nothing drawn"),
    "empty canvas, 0..1": (json.dumps({"pixels": [1.0] * 784}), "application/json", 422, "nothing drawn"),
    "empty, unprepared": (
        json.dumps({"pixels": [0] * 784, "preprocess": False}), "application/json", 422, "nothing drawn",
    ),
    "blank image": (png_bytes(np.full((50, 50), 255, np.uint8)), "image/png", 422, "nothing drawn"),
    "image not base64": (json.dumps({"image": "not base64!"}), "application/json", 400, "base64"),
    "image a number": (json.dumps({"image": 5}), "application/json", 400, "base64"),
    "base64 of text": (
        json.dumps({"image": base64.b64encode(b"hello").decode()}), "application/json", 400, "not an image",
    ),
    "empty image": (b"", "image/png", 400, "empty"),
    "garbage image": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "image/png", 400, "not an image"),
    "truncated PNG": (GOOD_PNG[: len(GOOD_PNG) // 2], "image/png", 400, "not an image"),
    "too many image pixels": (_big_sparse_png(), "image/png", 413, "pixels"),
    "unsupported type": (b"pixels=1", "application/x-www-form-urlencoded", 415, "Content-Type"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_bodies_get_a_clear_4xx_json_error(server, case):
    body, content_type, status, words = BAD_BODIES[case]
    body = body.encode() if isinstance(body, str) else body
    got_status, answer = predict(server, body=body, content_type=content_type)
    assert got_status == status, answer
    assert set(answer) == {"error"} and words in answer["error"]


def _http_status(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    # Only the headers are sent: the answer must come without the server waiting for
    # (or reading) the 100 MB it was promised.
    head = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.server_address[1]
    head += b"Content-Type: image/png\r\nContent-Length: 100000000\r\n\r\n"
    status, answer = _http_status(raw_exchange(server, head))
    assert status == 413 and "limit" in answer["error"]


@pytest.mark.parametrize(
    "headers, status, words",
    [
        (b"Content-Type: application/json\r\n", 411, "Content-Length"),
        (b"Transfer-Encoding: chunked\r\n", 411, "chunked"),
        (b"Content-Length: -5\r\n", 400, "Content-Length"),
        (b"Content-Length: lots\r\n", 400, "Content-Length"),
    ],
)
def test_bodies_without_a_usable_length_are_refused(server, headers, status, words):
    data = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.server_address[1]
    got, answer = _http_status(raw_exchange(server, data + headers + b"\r\n"))
    assert got == status and words in answer["error"]


def test_a_stalled_body_times_out_and_the_server_goes_on(server):
    # The server was started with a 1 s read timeout.
    data = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.server_address[1]
    data += b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    status, answer = _http_status(raw_exchange(server, data, wait=10))
    assert status == 408 and "in time" in answer["error"]
    assert predict(server, body=GOOD_PNG, content_type="image/png")[0] == 200


def test_connections_past_the_limit_are_closed_and_the_server_recovers(model_path):
    server = start(model_path, max_connections=4)  # idle connections wait 10 s here
    address = server.server_address[:2]
    try:
        idle = [socket.create_connection(address, timeout=5) for _ in range(4)]  # the limit
        time.sleep(0.5)  # let the server accept them all
        with socket.create_connection(address, timeout=5) as extra:
            extra.sendall(b"GET /model HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % address[1])
            try:
                assert extra.recv(100) == b""  # closed without an answer
            except ConnectionResetError:
                pass
        for sock in idle:
            sock.close()
        time.sleep(0.3)  # their threads see the close and give back their slots
        assert request(server, "GET", "/model")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_other_hosts_methods_and_garbage_requests_get_json_errors(server):
    status, _, data = request(server, "GET", "/model", headers={"Host": "attacker.example"})
    assert status == 403 and "localhost" in json.loads(data)["error"]
    status, _, data = request(server, "PUT", "/predict", body=b"{}")
    assert status == 501 and "PUT" in json.loads(data)["error"]
    status, _, data = request(server, "POST", "/model", body=b"{}")
    assert status == 404 and "error" in json.loads(data)
    status, answer = _http_status(raw_exchange(server, b"GET / HTTP/one\r\n\r\n"))
    assert status == 400 and answer["error"]


def test_an_unread_body_closes_the_connection_rather_than_poisoning_the_next_request(server):
    port = server.server_address[1]
    first = b"POST /model HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 2\r\n\r\n{}" % port
    second = b"GET /model HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
    answer = raw_exchange(server, first + second)
    assert answer.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in answer
    assert _http_status(answer)[0] == 404


def test_the_server_still_answers_after_every_bad_input(server):
    status, answer = predict(server, body=GOOD_PNG, content_type="image/png")
    assert status == 200 and 0 <= answer["digit"] <= 9


# --- concurrent clients ------------------------------------------------------------------------


def test_load_200_predictions_from_8_concurrent_clients(server, model_path, record_property):
    """Every answer equals the one the same input gets alone; the median latency is reported."""
    inputs = []
    for k, kind in enumerate(["one", "zero", "seven"] * 4):
        drawing = np.roll(drawn_digit(kind, size=140), 7 * k, axis=1)
        inputs.append(png_bytes(drawing))
        small = np.asarray(Image.fromarray(drawing).resize((28, 28), Image.LANCZOS))
        inputs.append(json.dumps({"pixels": small.reshape(-1).tolist()}).encode())
    kinds = ["image/png" if body[:1] == b"\x89" else "application/json" for body in inputs]
    alone, alone_ms = [], []
    for _ in range(4):  # one client, one request at a time: the latency of a prediction itself
        for body, content_type in zip(inputs, kinds, strict=True):
            started = time.perf_counter()
            status, answer = predict(server, body=body, content_type=content_type)
            alone_ms.append(1000 * (time.perf_counter() - started))
            assert status == 200, answer
            alone.append(answer)
    alone = alone[: len(inputs)]

    clients, per_client = 8, 25
    host, port = server.server_address[:2]

    def client(number):
        connection = http.client.HTTPConnection(host, port, timeout=30)  # kept alive
        results = []
        for i in range(per_client):
            j = (number * per_client + i) % len(inputs)
            started = time.perf_counter()
            connection.request("POST", "/predict", inputs[j], {"Content-Type": kinds[j]})
            response = connection.getresponse()
            answer = json.loads(response.read())
            results.append((j, response.status, answer, time.perf_counter() - started))
        connection.close()
        return results

    started_all = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - started_all

    assert len(results) == clients * per_client >= 200
    for j, status, answer, _ in results:
        assert status == 200, answer
        assert answer == alone[j]
    latencies_ms = sorted(1000 * r[3] for r in results)
    median = statistics.median(latencies_ms)
    p95 = latencies_ms[int(0.95 * len(latencies_ms))]
    record_property("median_latency_ms", median)
    record_property("median_latency_ms_one_client", statistics.median(alone_ms))
    print(
        f"\none client, {len(alone_ms)} predictions: median {statistics.median(alone_ms):.2f} ms"
        f"\n{len(results)} predictions, {clients} clients: median {median:.2f} ms, "
        f"p95 {p95:.2f} ms, {len(results) / wall:.0f} requests/s"
    )


# --- the command ----------------------------------------------------------------------------


def test_fastmlp_serve_prints_its_address_serves_and_stops_on_ctrl_c(model_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "fastmlp", "serve", str(model_path), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert line.startswith(f"serving {model_path} (784-16-16-10, relu) at http://127.0.0.1:")
        url = line.split(" at ")[1].strip()
        port = int(url.rsplit(":", 1)[1].strip("/"))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/model")
        assert json.loads(connection.getresponse().read())["file"] == model_path.name
        connection.close()
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, (out, err)
    assert "Traceback" not in err, err
    assert "stopped" in err


@pytest.mark.parametrize(
    "args, words",
    [
        (["serve", "{missing}"], "No such file"),
        (["serve", "{model}", "--port", "70000"], "port must lie in 0..65535"),
        (["serve", "{model}", "--host", "no.such.host.invalid"], "error"),
    ],
)
def test_fastmlp_serve_bad_arguments_are_one_line(model_path, tmp_path, args, words):
    args = [a.format(missing=tmp_path / "none.safetensors", model=model_path) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "fastmlp", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ},
    )  # fmt: skip
    assert result.returncode != 0
    assert words in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_port_in_use_is_one_line(model_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "fastmlp", "serve", str(model_path), "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("fastmlp: error:") and "Traceback" not in result.stderr


def test_threads_do_not_leak_after_shutdown(model_path):
    before = threading.active_count()
    server = start(model_path)
    assert request(server, "GET", "/model")[0] == 200
    server.shutdown()
    server.server_close()
    time.sleep(0.2)
    assert threading.active_count() <= before


def test_the_pages_files_are_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["fastmlp"]
    for name in STATIC_FILES:
        assert any(fnmatch.fnmatch(f"static/{name}", p) for p in patterns), name
