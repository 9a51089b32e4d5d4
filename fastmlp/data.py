"""MNIST on disk: what the data folder holds and how it is loaded.

The folder's location, the file names, their checksums and fetching them belong to
:mod:`fastmlp.download` (this module imports it, never the reverse).

The data folder is, in order: the ``data_dir`` argument, the ``FASTMLP_DATA``
environment variable, then a per-user cache (``$XDG_CACHE_HOME/fastmlp/mnist``, else
``~/.cache/fastmlp/mnist``). It holds four IDX files, raw or gzip-compressed, under
their standard names (``train-images-idx3-ubyte.gz``) or Kaggle's dotted ones
(``train-images.idx3-ubyte``). Any data set in that layout (Fashion-MNIST, KMNIST)
loads the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastmlp.download import (
    FILES,
    SHA256,
    SOURCES,
    DownloadError,
    MissingDataError,
    download_mnist,
    find_files,
    locate_data_dir,
    where_to_put,
)
from fastmlp.idx import IDXError, read_idx

__all__ = [
    "MissingDataError",
    "DownloadError",
    "DataInfo",
    "find_data_dir",
    "locate_data_dir",
    "data_info",
    "load_mnist",
    "FILES",
    "SHA256",
    "SOURCES",
    "find_files",
    "where_to_put",
]


@dataclass(frozen=True)
class DataInfo:
    """Which data folder is in use, why, and which of the four files it holds.

    Attributes
    ----------
    folder : Path
        The data folder.
    source : str
        How it was chosen: ``"argument"``, ``"FASTMLP_DATA"`` or ``"user cache"``.
    files : dict
        Stem (``"train-images"``...) -> path of the file found, or None.
    """

    folder: Path
    source: str
    files: dict[str, Path | None]

    @property
    def missing(self) -> list[str]:
        """Stems of the files not found."""
        return [stem for stem, path in self.files.items() if path is None]

    def lines(self) -> list[str]:
        """What ``fastmlp info`` prints about the data."""
        why = {
            "argument": "given as an argument",
            "FASTMLP_DATA": "from FASTMLP_DATA",
            "user cache": "the per-user cache; set FASTMLP_DATA to use another folder",
        }[self.source]
        exists = "" if self.folder.is_dir() else ", does not exist yet"
        out = [f"data folder: {self.folder} ({why}{exists})"]
        width = max(len(stem) for stem in self.files)
        for stem, path in self.files.items():
            state = f"present  {path.name}" if path is not None else "missing"
            out.append(f"  {stem:<{width}}  {state}")
        if self.missing:
            out.append(f"  run 'fastmlp download', or put the files in {self.folder}")
        return out


def find_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``data_dir``, else ``$FASTMLP_DATA``, else the user cache.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Used when given, whether or not it exists; no fall-through to the cache.

    Returns
    -------
    Path
        The absolute path of the folder (which need not exist yet).
    """
    return locate_data_dir(data_dir)[0]


def data_info(data_dir: str | os.PathLike[str] | None = None) -> DataInfo:
    """The data folder in use, how it was chosen, and which files it holds.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        As for :func:`find_data_dir`.

    Returns
    -------
    DataInfo
    """
    folder, source = locate_data_dir(data_dir)
    return DataInfo(folder, source, find_files(folder))


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST, or any data set in its four-file IDX layout.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        The data folder; by default ``$FASTMLP_DATA``, else the user cache.
    download : bool, default True
        Download missing files (see :func:`fastmlp.download.download_mnist`) instead
        of failing.

    Returns
    -------
    train_images, train_labels, test_images, test_labels : numpy.ndarray
        uint8 arrays of shapes (N, H, W), (N,), (M, H, W), (M,); for MNIST
        (60000, 28, 28), (60000,), (10000, 28, 28), (10000,).

    Raises
    ------
    MissingDataError
        If files are missing and ``download`` is false (or downloading failed:
        :class:`DownloadError`).
    IDXError
        If a file is malformed, images are not 3-D uint8, labels not 1-D uint8 in
        0..9, or images and labels disagree in count.
    """
    info = data_info(data_dir)
    if info.missing:
        if not download:
            raise MissingDataError(_missing_message(info))
        download_mnist(info.folder)
        info = DataInfo(info.folder, info.source, find_files(info.folder))
        if info.missing:  # a file vanished between download and now
            raise MissingDataError(_missing_message(info))
    arrays = {stem: read_idx(path) for stem, path in info.files.items()}
    for split in ("train", "t10k"):
        images_path, labels_path = info.files[f"{split}-images"], info.files[f"{split}-labels"]
        images, labels = arrays[f"{split}-images"], arrays[f"{split}-labels"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise IDXError(
                f"{images_path}: images must be 3-D uint8 (count, height, width), "
                f"got {images.ndim}-D {images.dtype}"
            )
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise IDXError(
                f"{labels_path}: labels must be 1-D uint8, got {labels.ndim}-D {labels.dtype}"
            )
        if len(images) == 0 or images[0].size == 0:
            raise IDXError(
                f"{images_path}: holds no images ({_shape(images)}): nothing to learn from"
            )
        if len(images) != len(labels):
            raise IDXError(
                f"{labels_path}: {len(labels)} labels for the {len(images)} images of {images_path}"
            )
        if labels.size and labels.max() > 9:
            raise IDXError(f"{labels_path}: labels must lie in 0..9, found {labels.max()}")
    return (
        arrays["train-images"],
        arrays["train-labels"],
        arrays["t10k-images"],
        arrays["t10k-labels"],
    )


def _missing_message(info: DataInfo) -> str:
    why = {"argument": "given", "FASTMLP_DATA": "from FASTMLP_DATA", "user cache": "user cache"}
    return (
        f"MNIST files missing from {info.folder} ({why[info.source]}): "
        f"{', '.join(info.missing)}. {where_to_put(info.folder)} "
        "Or run 'fastmlp download'."
    )


def _shape(a: np.ndarray) -> str:
    return "shape " + "x".join(map(str, a.shape))
