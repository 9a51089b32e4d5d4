"""Replacing a user's file: atomic, keeps its mode and links, refuses what it must, and
leaves no temporary file behind after Ctrl-C or SIGTERM (real subprocesses, real signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastmlp import MLP, read_idx, write_idx
from fastmlp.files import TERMINATED_STATUS, free_name, replacing, same_file, write_target

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def small_model() -> MLP:
    return MLP([4, 3, 2], backend="numpy")


def test_replacing_keeps_a_private_files_mode(tmp_path):
    path = tmp_path / "model.safetensors"
    small_model().save(path)
    path.chmod(0o600)
    MLP([4, 5, 2], backend="numpy").save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert MLP.load(path, backend="numpy").sizes == (4, 5, 2)
    data = tmp_path / "x-idx1-ubyte"
    write_idx(data, np.arange(3, dtype=np.uint8))
    data.chmod(0o640)
    write_idx(data, np.arange(5, dtype=np.uint8))
    assert data.stat().st_mode & 0o777 == 0o640 and len(read_idx(data)) == 5


def test_a_write_protected_file_is_refused_and_kept(tmp_path):
    path = tmp_path / "model.safetensors"
    small_model().save(path)
    before = path.read_bytes()
    path.chmod(0o444)
    with pytest.raises(PermissionError, match=f"{path} is write-protected"):
        MLP([4, 5, 2], backend="numpy").save(path)
    with pytest.raises(PermissionError, match="write-protected"):
        write_idx(path, np.zeros(3, np.uint8))
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == [path.name]


def test_a_link_is_written_through_and_a_broken_one_refused(tmp_path):
    target = tmp_path / "v1.safetensors"
    small_model().save(target)
    link = tmp_path / "latest.safetensors"
    link.symlink_to(target.name)
    MLP([4, 5, 2], backend="numpy").save(link)
    assert link.is_symlink() and os.readlink(link) == target.name
    assert MLP.load(target, backend="numpy").sizes == (4, 5, 2)
    dangling = tmp_path / "dangling.safetensors"
    dangling.symlink_to("nowhere.safetensors")
    with pytest.raises(FileNotFoundError, match=f"{dangling} is a broken symbolic link"):
        small_model().save(dangling)
    assert dangling.is_symlink() and not (tmp_path / "nowhere.safetensors").exists()


def test_bad_destinations_are_named_as_the_user_gave_them(tmp_path):
    (tmp_path / "file").write_text("x")
    cases = [
        (tmp_path, IsADirectoryError, "it is a folder"),
        (tmp_path / "file" / "m.safetensors", NotADirectoryError, "is a file"),
        (tmp_path / "file" / "sub" / "m.safetensors", NotADirectoryError, "is a file"),
    ]
    for path, error, words in cases:
        with pytest.raises(error) as info:
            write_target(path)
        assert str(path) in str(info.value) and words in str(info.value)
        assert ".tmp" not in str(info.value)
        with pytest.raises(error):
            small_model().save(path)
    assert sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.skipif(ROOT_USER, reason="root may write into a read-only folder")
def test_a_read_only_folder_is_refused_before_writing(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=f"cannot write {folder / 'm.safetensors'}"):
            small_model().save(folder / "m.safetensors")
    finally:
        folder.chmod(0o755)


def test_overwrite_false_never_replaces(tmp_path):
    path = tmp_path / "m.safetensors"
    small_model().save(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        MLP([4, 5, 2], backend="numpy").save(path, overwrite=False)
    # A file that appears while we write is not replaced either.
    late = tmp_path / "late.bin"
    with pytest.raises(FileExistsError), replacing(late, overwrite=False) as f:
        f.write(b"ours")
        late.write_bytes(b"theirs")
    assert late.read_bytes() == b"theirs" and path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["late.bin", "m.safetensors"]


def test_free_name_and_same_file(tmp_path):
    path = tmp_path / "m.safetensors"
    assert free_name(path) == path
    path.write_text("x")
    (tmp_path / "m-2.safetensors").write_text("x")
    assert free_name(path) == tmp_path / "m-3.safetensors"
    (tmp_path / "alias").symlink_to(path)
    assert same_file(tmp_path / "alias", path)
    assert same_file(tmp_path / "sub" / ".." / "new", tmp_path / "new")  # neither exists
    assert not same_file(path, tmp_path / "m-2.safetensors")


def _start(code: str, tmp_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip


# The child stalls at fsync, when the temporary file exists and is full.
_SLOW_SAVE = """
    import os, time
    import fastmlp.files
    def stall(fd):
        print("writing", flush=True)
        time.sleep(60)
    fastmlp.files.os.fsync = stall
    from fastmlp import MLP
    MLP([4, 3, 2], backend="numpy").save("model.safetensors")
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_save_leaves_no_temporary_file(tmp_path, sig):
    (tmp_path / "model.safetensors").write_bytes(b"the old model")
    child = _start(_SLOW_SAVE, tmp_path)
    assert child.stdout.readline() == "writing\n"
    assert any(name.endswith(".tmp") for name in os.listdir(tmp_path))
    child.send_signal(sig)
    child.communicate(timeout=30)
    assert child.returncode == (TERMINATED_STATUS if sig == signal.SIGTERM else -signal.SIGINT)
    assert os.listdir(tmp_path) == ["model.safetensors"]
    assert (tmp_path / "model.safetensors").read_bytes() == b"the old model"


def test_a_program_with_its_own_sigterm_handler_keeps_it(tmp_path):
    code = """
        import signal
        def mine(signum, frame):
            print("mine", flush=True)
        signal.signal(signal.SIGTERM, mine)
        from fastmlp import MLP
        MLP([4, 3, 2], backend="numpy").save("m.safetensors")
        print(signal.getsignal(signal.SIGTERM) is mine)
    """
    out, err = _start(code, tmp_path).communicate(timeout=60)
    assert out.strip() == "True", err


def test_a_full_disk_is_named_by_the_users_path(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "model.safetensors"
    small_model().save(path)
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        MLP([4, 5, 2], backend="numpy").save(path)
    assert str(info.value) == f"cannot write {path}: No space left on device"
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]
