"""The downloader against a real HTTP server on 127.0.0.1: good, recompressed, bad mirrors.

Nothing here leaves the machine: every mirror is this test's own server or a closed port.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fastmlp.data as data
import fastmlp.download as download
from fastmlp.data import DownloadError, MissingDataError, load_mnist
from fastmlp.download import download_mnist
from fastmlp.idx import read_idx, write_idx

STEMS = ("train-images", "train-labels", "t10k-images", "t10k-labels")


def gz_name(stem: str) -> str:
    return f"{stem}-{data.FILES[stem]}.gz"


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the mirror folders, plus /truncated/ (body cut short) and /slow/ (stalls)."""

    def do_GET(self) -> None:
        if self.path.startswith("/slow/"):
            time.sleep(2)
            self.send_error(503)
        elif self.path.startswith("/truncated/"):
            body = (self.directory_path / "good" / Path(self.path).name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
        else:
            super().do_GET()

    def log_message(self, *args) -> None:
        pass

    @property
    def directory_path(self) -> Path:
        return Path(self.directory)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # the /slow/ handler must not hold up teardown


@pytest.fixture(scope="module")
def fake():
    """A small made-up data set: arrays, raw IDX bytes and their sha256, by stem."""
    rng = np.random.default_rng(1)
    arrays = {
        "train-images": rng.integers(0, 256, (20, 6, 4), dtype=np.uint8),
        "train-labels": rng.integers(0, 10, 20, dtype=np.uint8),
        "t10k-images": rng.integers(0, 256, (8, 6, 4), dtype=np.uint8),
        "t10k-labels": rng.integers(0, 10, 8, dtype=np.uint8),
    }
    raw = {}
    for stem, a in arrays.items():
        buf = io.BytesIO()
        buf.write(bytes([0, 0, 8, a.ndim]) + np.array(a.shape, ">u4").tobytes() + a.tobytes())
        raw[stem] = buf.getvalue()
    sums = {stem: hashlib.sha256(b).hexdigest() for stem, b in raw.items()}
    return arrays, raw, sums


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake):
    """Base URL of a local server with mirrors good/, recompressed/, raw/, bad/, ..."""
    _, raw, _ = fake
    root = tmp_path_factory.mktemp("mirrors")
    for folder in ("good", "recompressed", "raw", "bad"):
        (root / folder).mkdir()
    for stem, content in raw.items():
        good = gzip.compress(content, compresslevel=9, mtime=0)
        recompressed = gzip.compress(content, compresslevel=1, mtime=1234567)
        assert good != recompressed
        (root / "good" / gz_name(stem)).write_bytes(good)
        (root / "recompressed" / gz_name(stem)).write_bytes(recompressed)
        (root / "raw" / gz_name(stem)).write_bytes(content)  # not compressed at all
    # bad/: a different failure for each file, and t10k-labels is missing (404).
    flipped = bytearray((root / "good" / gz_name("train-images")).read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    (root / "bad" / gz_name("train-images")).write_bytes(bytes(flipped))
    other = raw["train-labels"][:-1] + bytes([(raw["train-labels"][-1] + 1) % 10])
    (root / "bad" / gz_name("train-labels")).write_bytes(gzip.compress(other))
    good = (root / "good" / gz_name("t10k-images")).read_bytes()
    (root / "bad" / gz_name("t10k-images")).write_bytes(good[: len(good) // 2])

    httpd = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port():
    """A URL on 127.0.0.1 where nothing listens: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def no_default_mirrors(monkeypatch, closed_port):
    monkeypatch.setenv("FASTMLP_MNIST_MIRRORS", closed_port)


def check_set(folder: Path, fake) -> None:
    arrays, _, _ = fake
    for stem, got in zip(STEMS, load_mnist(folder, download=False), strict=True):
        np.testing.assert_array_equal(got, arrays[stem])


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_good_mirror(tmp_path, server, fake):
    _, _, sums = fake
    folder = tmp_path / "new" / "data"
    assert download_mnist(folder, mirrors=[server + "/good/"], checksums=sums) == folder
    assert names(folder) == sorted(gz_name(s) for s in STEMS)
    check_set(folder, fake)


def test_recompressed_copy_is_accepted(tmp_path, server, fake):
    download_mnist(tmp_path, mirrors=[server + "/recompressed"], checksums=fake[2], progress=False)
    check_set(tmp_path, fake)


def test_uncompressed_copy_is_accepted_and_named_for_what_it_is(tmp_path, server, fake):
    download_mnist(tmp_path, mirrors=[server + "/raw/"], checksums=fake[2], progress=False)
    assert names(tmp_path) == sorted(f"{s}-{data.FILES[s]}" for s in STEMS)
    check_set(tmp_path, fake)


def test_bad_mirrors_are_skipped_for_the_next(tmp_path, server, fake, closed_port, capsys):
    mirrors = [closed_port, server + "/bad/", server + "/truncated/", server + "/good/"]
    download_mnist(tmp_path, mirrors=mirrors, checksums=fake[2], timeout=5)
    check_set(tmp_path, fake)
    assert names(tmp_path) == sorted(gz_name(s) for s in STEMS)  # no temporary files
    err = capsys.readouterr().err
    assert "trying the next mirror" in err and "sha256 verified" in err
    assert "Connection refused" in err and "corrupt gzip" in err and "HTTP 404" in err


@pytest.mark.parametrize(
    "stem, answer",
    [
        ("train-images", "corrupt gzip"),
        ("train-labels", "sha256 mismatch"),
        ("t10k-images", "truncated gzip"),
        ("t10k-labels", "HTTP 404"),
    ],
)
def test_each_kind_of_bad_file_is_refused(tmp_path, server, fake, stem, answer):
    arrays = fake[0]
    for other in STEMS:  # present files are not fetched: only `stem` is tried
        if other != stem:
            write_idx(tmp_path / gz_name(other), arrays[other])
    before = names(tmp_path)
    with pytest.raises(DownloadError) as info:
        download_mnist(tmp_path, mirrors=[server + "/bad/"], checksums=fake[2], progress=False)
    assert f"{server}/bad/{gz_name(stem)}: {answer}" in str(info.value)
    assert names(tmp_path) == before


def test_all_bad_gives_a_clear_error_and_leaves_nothing(tmp_path, server, fake, closed_port):
    folder = tmp_path / "data"
    folder.mkdir()
    mirrors = [server + "/bad/", closed_port, server + "/slow/", server + "/truncated/missing/"]
    with pytest.raises(DownloadError) as info:
        download_mnist(folder, mirrors=mirrors, checksums=fake[2], progress=False, timeout=0.5)
    message = str(info.value)
    assert isinstance(info.value, MissingDataError) and isinstance(info.value, OSError)
    assert str(folder) in message and "FASTMLP_DATA" in message
    assert "corrupt gzip" in message and "Connection refused" in message
    assert "no answer within 0.5 s" in message
    assert "connection closed after" in message
    assert "\n" not in message
    assert names(folder) == []


def test_a_folder_made_for_a_failed_download_is_removed(tmp_path, closed_port):
    with pytest.raises(DownloadError):
        download_mnist(tmp_path / "fresh", mirrors=[closed_port], progress=False)
    assert names(tmp_path) == []


def test_interrupt_leaves_no_temporary_file(tmp_path, server, fake, monkeypatch):
    def interrupted(response, out, *args):
        out.write(response.read(10))
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_copy", interrupted)
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(KeyboardInterrupt):
        download_mnist(folder, mirrors=[server + "/good/"], checksums=fake[2], progress=False)
    assert names(folder) == []


def test_mirrors_from_the_environment_and_load_mnist(tmp_path, server, fake, monkeypatch):
    monkeypatch.setenv("FASTMLP_MNIST_MIRRORS", f" {server}/bad , {server}/good/ ,")
    monkeypatch.setattr(download, "SHA256", fake[2])
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "env"))
    arrays = fake[0]
    for stem, got in zip(STEMS, load_mnist(), strict=True):  # downloads, then loads
        np.testing.assert_array_equal(got, arrays[stem])
    assert names(tmp_path / "env") == sorted(gz_name(s) for s in STEMS)


def test_present_files_are_not_fetched_again(tmp_path, fake, closed_port):
    for stem, a in fake[0].items():
        write_idx(tmp_path / f"{stem}.{data.FILES[stem]}", a)  # Kaggle's names count
    assert download_mnist(tmp_path, mirrors=[closed_port]) == tmp_path
    assert len(names(tmp_path)) == 4


def test_only_missing_files_are_fetched(tmp_path, server, fake):
    write_idx(tmp_path / gz_name("t10k-labels"), fake[0]["t10k-labels"])
    before = (tmp_path / gz_name("t10k-labels")).read_bytes()
    download_mnist(tmp_path, mirrors=[server + "/recompressed/"], checksums=fake[2])
    assert (tmp_path / gz_name("t10k-labels")).read_bytes() == before
    check_set(tmp_path, fake)


def test_an_unusable_folder_is_our_error_not_the_mirrors(tmp_path, server, fake):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError) as info:
        download_mnist(tmp_path / "file" / "data", mirrors=[server + "/good/"], checksums=fake[2])
    assert not isinstance(info.value, DownloadError)


def test_progress_bar_on_a_terminal(tmp_path, server, fake, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    download_mnist(tmp_path, mirrors=[server + "/good/"], checksums=fake[2], progress=True)
    shown = screen.getvalue()
    assert "\rtrain-images:" in shown and "B/s" in shown  # tqdm's bar, redrawn in place
    check_set(tmp_path, fake)


def test_no_output_when_quiet(tmp_path, server, fake, capsys, closed_port):
    download_mnist(tmp_path, mirrors=[closed_port, server + "/good/"], checksums=fake[2],
                   progress=False)  # fmt: skip
    assert capsys.readouterr() == ("", "")


def test_no_mirrors_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="no MNIST mirrors"):
        download_mnist(tmp_path, mirrors=[])


def test_default_mirrors_and_checksums():
    assert download.DEFAULT_MIRRORS == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    )
    assert download.SHA256 == data.SHA256 == {
        "train-images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }


@pytest.mark.mnist
def test_real_mnist_through_a_local_mirror(tmp_path, mnist):
    """The real files, served from 127.0.0.1, pass the real checksums (they are recompressed)."""
    source = data.find_data_dir()
    files = data.data_info(source).files
    if any(path is None or not path.name.endswith(".gz") for path in files.values()):
        pytest.skip("the MNIST copy is not in the standard .gz layout")
    httpd = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(source)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        download_mnist(tmp_path, mirrors=[url], progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
    for stem in STEMS:
        np.testing.assert_array_equal(read_idx(tmp_path / gz_name(stem)), read_idx(files[stem]))


def test_a_folder_of_another_data_set_is_not_completed_with_mnist(tmp_path, server, fake):
    arrays = fake[0]
    write_idx(tmp_path / gz_name("train-images"), arrays["train-images"][::-1])  # not "MNIST"
    with pytest.raises(MissingDataError) as info:
        download_mnist(tmp_path, mirrors=[server + "/good/"], checksums=fake[2])
    assert "train-images-idx3-ubyte.gz is not MNIST's" in str(info.value)
    assert "train-labels" in str(info.value) and str(tmp_path) in str(info.value)
    assert names(tmp_path) == [gz_name("train-images")]


def test_sigterm_during_a_download_leaves_no_temporary_file(tmp_path, server, fake):
    import signal
    import subprocess
    import sys

    folder = tmp_path / "data"
    folder.mkdir()
    code = (
        "from fastmlp.download import download_mnist\n"
        f"download_mnist({str(folder)!r}, mirrors=[{server + '/slow/'!r}], "
        f"checksums={fake[2]!r}, progress=False, timeout=30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(n.endswith(".tmp") for n in names(folder)):  # the fetch has begun
        assert time.monotonic() < deadline and child.poll() is None, "no download started"
        time.sleep(0.01)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM, err
    assert names(folder) == []


def test_a_broken_link_to_a_data_file_is_reported_not_replaced(tmp_path, server, fake):
    link = tmp_path / gz_name("train-images")
    link.symlink_to(tmp_path / "elsewhere" / gz_name("train-images"))
    for attempt in (
        lambda: download_mnist(tmp_path, mirrors=[server + "/good/"], checksums=fake[2]),
        lambda: load_mnist(tmp_path),
    ):
        with pytest.raises(MissingDataError, match=f"{link} is a broken symbolic link"):
            attempt()
    assert link.is_symlink() and names(tmp_path) == [gz_name("train-images")]
