"""`fastmlp info` and `fastmlp download`, run as a user runs them: in a subprocess."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fastmlp.data import FILES, data_info, find_data_dir
from fastmlp.idx import read_idx, write_idx

STEMS = tuple(FILES)


def gz_name(stem: str) -> str:
    return f"{stem}-{FILES[stem]}.gz"


@pytest.fixture
def env(tmp_path):
    """A clean environment: own cache, no FASTMLP_DATA, mirrors that refuse at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FASTMLP_")}
    return clean | {
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "FASTMLP_MNIST_MIRRORS": f"http://127.0.0.1:{port}/",
    }


def fastmlp(*args, env, cwd=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastmlp", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120, **kwargs,
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), result.stderr
    for word in words:
        assert word in lines[0]


class Mirror(http.server.SimpleHTTPRequestHandler):
    requested = threading.Event()

    def do_GET(self) -> None:
        Mirror.requested.set()
        if self.path.startswith("/slow/"):
            time.sleep(30)
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve():
    """serve(folder) -> base URL of a server on 127.0.0.1 for that folder."""
    servers = []

    def start(folder: Path) -> str:
        httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Mirror, directory=str(folder))
        )
        httpd.daemon_threads = True
        httpd.block_on_close = False
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


# --- info -------------------------------------------------------------------------------


def test_info_shows_versions_folder_and_files(tmp_path, env):
    import numba

    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "train-images.idx3-ubyte", np.zeros((2, 3, 3), np.uint8))
    write_idx(folder / gz_name("t10k-labels"), np.zeros(2, np.uint8))
    result = fastmlp("info", env=env | {"FASTMLP_DATA": str(folder)})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "fastmlp 0.1.0" in out
    assert f"numpy   {np.__version__}" in out and f"numba   {numba.__version__}" in out
    assert f"python  {sys.version.split()[0]}" in out
    assert f"data folder: {folder} (from FASTMLP_DATA)" in out
    assert "train-images  present  train-images.idx3-ubyte" in out
    assert "train-labels  missing" in out
    assert "t10k-images   missing" in out
    assert "t10k-labels   present  t10k-labels-idx1-ubyte.gz" in out
    assert result.stderr == ""


def test_info_says_how_the_folder_was_chosen(tmp_path, env):
    out = fastmlp("info", env=env).stdout
    assert f"data folder: {tmp_path / 'cache' / 'fastmlp' / 'mnist'} (the per-user cache" in out
    assert "does not exist yet" in out
    out = fastmlp("info", "--data-dir", tmp_path, env=env | {"FASTMLP_DATA": "/elsewhere"}).stdout
    assert f"data folder: {tmp_path} (given as an argument)" in out
    assert out.count("missing") == 4


def test_info_does_not_load_numba(env):
    code = (
        "import sys; from fastmlp.cli import main; status = main(['info']); "
        "print(status, sorted(m for m in sys.modules if m.startswith('numba')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stdout.splitlines()[-1] == "0 []"


def test_help_and_version(env):
    result = fastmlp("--help", env=env)
    assert result.returncode == 0 and "download" in result.stdout and "info" in result.stdout
    assert fastmlp("--version", env=env).stdout.strip() == "fastmlp 0.1.0"
    result = fastmlp("download", "--help", env=env)
    assert result.returncode == 0 and "--mirror URL" in result.stdout


# --- bad invocations --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        ([], ["required: COMMAND"]),
        (["bogus"], ["invalid choice: 'bogus'"]),
        (["download", "--mirror"], ["--mirror", "expected one argument"]),
        (["info", "--colour"], ["unrecognized arguments: --colour"]),
    ],
)
def test_usage_errors_are_one_line(env, args, words):
    result = fastmlp(*args, env=env)
    assert result.returncode == 2
    assert_one_line_error(result, *words)


def test_runtime_errors_are_one_line(tmp_path, env):
    (tmp_path / "file").write_text("")
    result = fastmlp("download", "--data-dir", tmp_path / "file" / "sub", env=env)
    assert result.returncode == 1
    assert_one_line_error(result, str(tmp_path / "file"))
    assert_one_line_error(fastmlp("info", "--data-dir", "", env=env), "empty")


# --- download ---------------------------------------------------------------------------


def test_download_failure_is_one_line_and_leaves_nothing(tmp_path, env, serve):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / gz_name("train-images")).write_bytes(gzip.compress(b"not mnist"))
    folder = tmp_path / "data"
    folder.mkdir()
    url = serve(mirror)
    result = fastmlp("download", "--data-dir", folder, "--mirror", url, "--quiet", env=env)
    assert result.returncode == 1
    assert_one_line_error(result, "sha256 mismatch", str(folder), "FASTMLP_DATA")
    assert os.listdir(folder) == []
    # two mirrors, without --quiet: a note for the first one skipped, then the one error
    result = fastmlp("download", "--data-dir", folder, "--mirror", url, "--mirror", url + "x/",
                     env=env)  # fmt: skip
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and "trying the next mirror" in lines[0]
    assert lines[1].startswith("fastmlp: error: ") and "HTTP 404" in lines[1]
    assert os.listdir(folder) == []


def test_download_from_a_local_mirror(tmp_path, env, serve):
    """Made-up files, so the checksums are swapped in: run main() in a subprocess."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    sums = {}
    for stem in STEMS:
        a = np.full((3, 2, 2) if "images" in stem else (3,), STEMS.index(stem), np.uint8)
        write_idx(mirror / gz_name(stem), a)
        with gzip.open(mirror / gz_name(stem)) as f:
            sums[stem] = hashlib.sha256(f.read()).hexdigest()
    folder = tmp_path / "data"
    argv = ["download", "--data-dir", str(folder), "--mirror", serve(mirror)]
    code = (
        f"import fastmlp.download, fastmlp.cli; fastmlp.download.SHA256.update({sums!r}); "
        f"raise SystemExit(fastmlp.cli.main({argv!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(folder)) == sorted(gz_name(s) for s in STEMS)
    assert f"data folder: {folder} (given as an argument)" in result.stdout
    assert result.stdout.count("present") == 4
    assert result.stderr.count("sha256 verified") == 4


def test_interrupted_download(tmp_path, env, serve):
    folder = tmp_path / "data"
    folder.mkdir()
    Mirror.requested.clear()
    url = serve(tmp_path) + "slow/"
    with subprocess.Popen(
        [sys.executable, "-m", "fastmlp", "download", "--data-dir", str(folder), "--mirror", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    ) as proc:  # fmt: skip
        assert Mirror.requested.wait(60)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == "fastmlp: error: interrupted\n"
    assert os.listdir(folder) == []


@pytest.mark.mnist
def test_download_real_mnist_from_a_local_mirror(tmp_path, env, serve, mnist):
    source = find_data_dir()
    files = data_info(source).files
    if any(path is None or not path.name.endswith(".gz") for path in files.values()):
        pytest.skip("the MNIST copy is not in the standard .gz layout")
    folder = tmp_path / "data"
    result = fastmlp("download", "--data-dir", folder, "--mirror", serve(source), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("present") == 4
    for stem in STEMS:
        np.testing.assert_array_equal(read_idx(folder / gz_name(stem)), read_idx(files[stem]))
    # a second run finds everything present and fetches nothing
    again = fastmlp("download", "--data-dir", folder, "--mirror", "http://127.0.0.1:9/", env=env)
    assert again.returncode == 0 and again.stderr == ""
