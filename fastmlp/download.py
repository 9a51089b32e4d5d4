"""MNIST's files: where the data folder is, their names, their checksums, and downloading them.

:mod:`fastmlp.data` loads what this module finds or fetches; this module imports
nothing from it.

Mirrors are tried in turn, each file verified before it is kept.

A file is fetched into a temporary file in the data folder and renamed into place only
once the sha256 of its decompressed content matches :data:`SHA256`, so a
faithful mirror that recompressed the files is accepted, and an interrupted or corrupt
download never leaves a file that looks valid.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from fastmlp.files import cleanup_on_sigterm, open_temp
from fastmlp.idx import IDXError, gunzip_chunks

__all__ = [
    "DEFAULT_MIRRORS",
    "FILES",
    "SHA256",
    "MissingDataError",
    "DownloadError",
    "locate_data_dir",
    "find_files",
    "where_to_put",
    "download_mnist",
]

#: The four files, by stem, with the rest of their standard name.
FILES: dict[str, str] = {
    "train-images": "idx3-ubyte",
    "train-labels": "idx1-ubyte",
    "t10k-images": "idx3-ubyte",
    "t10k-labels": "idx1-ubyte",
}

#: sha256 of each file's decompressed content, checked on download. Tests replace it.
SHA256: dict[str, str] = {
    "train-images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Labels of the argument/environment/cache choice, as :func:`locate_data_dir` gives them.
SOURCES = ("argument", "FASTMLP_DATA", "user cache")


class MissingDataError(FileNotFoundError):
    """MNIST files are missing; the message says where to put them."""


class DownloadError(MissingDataError):
    """No mirror gave a good copy; the message lists what each one answered."""


def locate_data_dir(data_dir: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """The data folder and how it was chosen.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Used when given, whether or not it exists.

    Returns
    -------
    (Path, str)
        The absolute folder, and ``"argument"``, ``"FASTMLP_DATA"`` or ``"user cache"``.
    """
    if data_dir is not None:
        if not os.fspath(data_dir):
            raise ValueError("data_dir is an empty string")
        return _folder(Path(data_dir).expanduser().absolute(), "the data folder"), "argument"
    env = os.environ.get("FASTMLP_DATA")
    if env:
        return _folder(Path(env).expanduser().absolute(), "FASTMLP_DATA"), "FASTMLP_DATA"
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says to ignore a relative XDG_CACHE_HOME.
    cache = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return cache / "fastmlp" / "mnist", "user cache"


def _candidates(stem: str) -> list[str]:
    rest = FILES[stem]
    # Standard names first, then Kaggle's dotted ones; raw before gzip, as it loads faster.
    return [f"{stem}-{rest}", f"{stem}-{rest}.gz", f"{stem}.{rest}", f"{stem}.{rest}.gz"]


def find_files(folder: Path) -> dict[str, Path | None]:
    """Each of the four stems -> the file in ``folder`` that holds it, or None."""
    found: dict[str, Path | None] = {}
    for stem in FILES:
        for name in _candidates(stem):
            path = folder / name
            if path.is_symlink() and not path.exists():
                # Reported, not taken for missing: a download would replace the link.
                raise MissingDataError(
                    f"{path} is a broken symbolic link (to {os.readlink(path)}); fix or remove it"
                )
        found[stem] = next((folder / n for n in _candidates(stem) if (folder / n).is_file()), None)
    return found


def _folder(path: Path, what: str) -> Path:
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is a file, not a folder")
    return path


def where_to_put(folder: Path) -> str:
    """The sentence telling a user without a network how to supply the files."""
    names = ", ".join(f"{stem}-{rest}.gz" for stem, rest in FILES.items())
    return (
        f"Put the four files ({names}; uncompressed or with Kaggle's dotted names is fine) "
        f"in {folder}, or set FASTMLP_DATA to a folder that has them."
    )


DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

_TIMEOUT = 10.0  # seconds per connection attempt or read; a dead mirror must not stall us
_MAX_DOWNLOAD = 128 << 20  # no MNIST file comes near this; a mirror sending more is wrong
_MAX_CONTENT = 256 << 20  # same, for the decompressed content


def download_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    checksums: Mapping[str, str] | None = None,
    timeout: float = _TIMEOUT,
) -> Path:
    """Download the MNIST files missing from the data folder.

    Each file is fetched into a temporary file in the data folder and renamed into
    place only once the sha256 of its decompressed content matches, so a faithful
    mirror that recompressed the files is accepted and an interrupted or corrupt
    download never leaves a file behind. A mirror that fails (HTTP error, no
    connection, timeout, corrupt gzip, wrong checksum) is skipped for the next.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        As for :func:`find_data_dir`; created if needed.
    mirrors : sequence of str, optional
        Base URLs, tried in order. Default: ``$FASTMLP_MNIST_MIRRORS``
        (comma-separated), else :data:`DEFAULT_MIRRORS`.
    progress : bool, default True
        Report each file on stderr, with a progress bar when stderr is a terminal.
    checksums : mapping, optional
        Stem -> sha256 of the decompressed file; default :data:`SHA256`.
    timeout : float, default 10
        Seconds to wait for a mirror to connect or send data.

    Returns
    -------
    Path
        The data folder.

    Raises
    ------
    DownloadError
        If no mirror gives a good copy of some file; the message lists what each
        mirror answered and where to put the files by hand.
    """
    folder, _ = locate_data_dir(data_dir)
    bases = _mirror_list(mirrors)
    sums = SHA256 if checksums is None else checksums
    files = find_files(folder)
    missing = [stem for stem, path in files.items() if path is None]
    if not missing:
        return folder
    _refuse_mixing(folder, files, sums)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with cleanup_on_sigterm():  # SIGTERM removes the partial download, as Ctrl-C does
            for stem in missing:
                _fetch_from_any(folder, stem, bases, sums[stem], timeout, progress)
    except BaseException:
        if created:  # leave no trace of a failed first download: an empty folder goes too
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    return folder


def _refuse_mixing(folder: Path, files: dict[str, Path | None], sums: Mapping[str, str]) -> None:
    # A folder with some files of another data set (Fashion-MNIST, say) must not be
    # completed with MNIST's: the mix would load without complaint.
    for stem, path in files.items():
        if path is None:
            continue
        try:
            digest = _content_sha256(str(path))[0]
        except (IDXError, _MirrorFailure):
            digest = None
        if digest != sums[stem]:
            raise MissingDataError(
                f"{folder} lacks {', '.join(s for s, p in files.items() if p is None)} but its "
                f"{path.name} is not MNIST's, so downloading MNIST's would mix two data sets. "
                "Add the missing files by hand, or download into an empty folder "
                "(--data-dir, or FASTMLP_DATA)."
            )


def _fetch_from_any(
    folder: Path, stem: str, bases: list[str], sha256: str, timeout: float, progress: bool
) -> Path:
    name = f"{stem}-{FILES[stem]}.gz"
    show_bar = progress and sys.stderr.isatty()
    failures = []
    for i, base in enumerate(bases):
        url = base + name
        try:
            saved = _fetch(url, folder, stem, sha256, timeout, show_bar)
        except _MirrorFailure as exc:
            failures.append(f"{url}: {exc}")
            if progress and i + 1 < len(bases):  # the last one's answer is in the error
                print(f"fastmlp: {url}: {exc}; trying the next mirror", file=sys.stderr)
            continue
        if progress:
            print(f"fastmlp: {saved.name} from {base} (sha256 verified)", file=sys.stderr)
        return saved
    raise DownloadError(
        f"could not download {name}: " + "; ".join(failures) + ". " + where_to_put(folder)
    )


class _MirrorFailure(Exception):
    """A mirror did not give a good copy; the message says what it answered."""


def _fetch(url: str, folder: Path, stem: str, sha256: str, timeout: float, bar: bool) -> Path:
    """Fetch one file from one mirror, verify it and rename it into place."""
    import http.client
    import urllib.error
    import urllib.request

    # Made before connecting, so that errors here (our folder is not writable) are
    # told apart from a mirror's, and propagate.
    fd, tmp = open_temp(folder, f"{stem}-{FILES[stem]}.gz")
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                if total is not None and total > _MAX_DOWNLOAD:
                    raise _MirrorFailure(f"file too large ({total} bytes)")
                _copy(response, out, total, stem, bar)
            out.flush()
            os.fsync(out.fileno())
        digest, compressed = _content_sha256(tmp)
        if digest != sha256:
            raise _MirrorFailure(f"sha256 mismatch (got {digest}, want {sha256})")
        # Keep what the mirror sent, named for what it is.
        final = folder / (f"{stem}-{FILES[stem]}" + (".gz" if compressed else ""))
        os.replace(tmp, final)
        tmp = None
        return final
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _MirrorFailure(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _MirrorFailure(f"no answer within {timeout:g} s") from None
        raise _MirrorFailure(getattr(reason, "strerror", None) or str(reason)) from None
    except TimeoutError:
        raise _MirrorFailure(f"no answer within {timeout:g} s") from None
    except IDXError as exc:  # from the gunzip check: corrupt or truncated
        raise _MirrorFailure(str(exc).removeprefix(f"{tmp}: ")) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        detail = f": {exc}" if str(exc) else ""
        raise _MirrorFailure(f"{type(exc).__name__}{detail}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _copy(response, out, total: int | None, stem: str, bar: bool) -> None:
    progress = None
    if bar:
        from tqdm import tqdm

        progress = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=stem,
            leave=False,
            file=sys.stderr,
        )
    try:
        received = 0
        while chunk := response.read(1 << 16):
            received += len(chunk)
            if received > _MAX_DOWNLOAD:
                raise _MirrorFailure(f"file too large (more than {_MAX_DOWNLOAD} bytes)")
            out.write(chunk)
            if progress is not None:
                progress.update(len(chunk))
        if total is not None and received != total:  # http.client does not check this itself
            raise _MirrorFailure(f"connection closed after {received} of {total} bytes")
    finally:
        if progress is not None:
            progress.close()


def _content_sha256(path: str) -> tuple[str, bool]:
    """sha256 of the file's content after gzip decompression, and whether it was gzip."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        compressed = f.peek(2)[:2] == b"\x1f\x8b"
        chunks = gunzip_chunks(f, path) if compressed else iter(lambda: f.read(1 << 20), b"")
        for chunk in chunks:
            size += len(chunk)
            if size > _MAX_CONTENT:
                raise _MirrorFailure(f"content too large (more than {_MAX_CONTENT} bytes)")
            sha.update(chunk)
    return sha.hexdigest(), compressed


def _mirror_list(mirrors: Sequence[str] | None) -> list[str]:
    if mirrors is None:
        env = os.environ.get("FASTMLP_MNIST_MIRRORS", "")
        mirrors = [m.strip() for m in env.split(",") if m.strip()] or list(DEFAULT_MIRRORS)
    elif isinstance(mirrors, str):
        mirrors = [mirrors]
    if not mirrors:
        raise ValueError("no MNIST mirrors given")
    # Base URLs are folders: "…/mnist" and "…/mnist/" mean the same.
    return [m if m.endswith("/") else m + "/" for m in mirrors]
