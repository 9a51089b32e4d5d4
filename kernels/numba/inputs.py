"""The rows of an input array as the numba backend's kernels read them: compressed sparse
rows (:class:`SparseInputs`, built once per ``fit`` whatever the dtype, or per call for a
plain array), and the Python threads that fill them and run ``forward``'s blocks."""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from kernels.numba import work as kw
from kernels.numba.checks import check_dense
from kernels.numba.codes import Inputs

FORWARD_MIN_ROWS = 1024  # forward gives each thread at least this many rows (~0.15 ms)


class SparseInputs:
    """The rows of an input array as compressed sparse rows, built once (:func:`prepare_inputs`)
    and read by every epoch: ``cols`` (uint16, uint32 past 65,536 columns), ``vals`` (float32, x/255 for uint8 pixels),
    ``starts`` (int64, row r's entries at ``starts[r]:starts[r+1]``). ``len()`` and ``shape``
    are those of the array it was built from. The copy does not follow later changes of
    that array. ``rowmap`` is None here; see :meth:`from_parts`."""

    rowmap: np.ndarray | None = None

    @classmethod
    def from_parts(cls, cols: np.ndarray, vals: np.ndarray, starts: np.ndarray,
                   rowmap: np.ndarray, n_features: int) -> SparseInputs:  # fmt: skip
        """Rows already compressed elsewhere (``kernels.augment_numba.augment_rows``
        writes distorted images this way): row r is CSR row ``rowmap[r]``, its entries
        ``cols/vals[starts[rowmap[r]]:starts[rowmap[r] + 1]]`` (CSR rows no row maps to
        may hold unused room). The arrays are used as given, not copied; their entries are
        trusted (column numbers below n_features), the row bounds are checked."""
        wide = kw.column_dtype(n_features)
        for name, array, dtype in (("cols", cols, wide), ("vals", vals, np.float32),
                                   ("starts", starts, np.int64), ("rowmap", rowmap, np.int64)):  # fmt: skip
            if not (isinstance(array, np.ndarray) and array.ndim == 1
                    and array.dtype == dtype and array.flags.c_contiguous):  # fmt: skip
                raise ValueError(
                    f"sparse inputs need {name} as a contiguous {np.dtype(dtype)} vector"
                )
        if len(rowmap) and (rowmap.min() < 0 or rowmap.max() >= len(starts) - 1):
            raise ValueError(f"sparse inputs' rowmap must index CSR rows 0 .. {len(starts) - 2}")
        first, last = starts[rowmap], starts[rowmap + 1]
        if len(rowmap) and (first.min() < 0 or (last < first).any()
                            or last.max() > min(len(cols), len(vals))):  # fmt: skip
            raise ValueError(
                "sparse inputs' starts must bound each row's entries within cols and vals"
            )
        self = cls.__new__(cls)
        self.cols, self.vals, self.starts, self.rowmap = cols, vals, starts, rowmap
        self.shape = (len(rowmap), int(n_features))
        return self

    def __init__(self, X: np.ndarray) -> None:
        X = check_dense(X)
        rows = np.arange(len(X), dtype=np.int64)
        self.cols, self.vals, self.starts = kw.sparse_rows_alloc(X, rows)
        # slices of the rows filled by as many threads as there are cores to use
        threads = max(1, min(numba.get_num_threads(), len(X) // FORWARD_MIN_ROWS))
        cuts = [len(X) * t // threads for t in range(threads + 1)]
        fill = (self.cols, self.vals, self.starts, X, rows)
        jobs = [
            _forward_pool(os.getpid()).submit(kw.sparse_rows_fill, *fill, a, b, _scale(X))
            for a, b in zip(cuts[1:-1], cuts[2:], strict=True)
        ]
        kw.sparse_rows_fill(*fill, cuts[0], cuts[1], _scale(X))
        for job in jobs:
            job.result()
        self.shape = X.shape

    def __len__(self) -> int:
        return self.shape[0]


def prepare_inputs(X) -> SparseInputs:
    """X (N, fan_in) uint8 or float32, C-contiguous, as :class:`SparseInputs`, for passing to
    :func:`train_steps`, :func:`forward` and :func:`loss_and_grads` in its place."""
    return X if isinstance(X, SparseInputs) else SparseInputs(X)


def _scale(X):
    return kw.INV255 if X.dtype == np.uint8 else np.float32(1.0)


def _inputs(X, net, rows=None):
    """(n_rows of X, a function giving the :class:`Inputs` of the rows ``rows`` of X in order)."""
    if not isinstance(X, SparseInputs):
        X = check_dense(X)
    if X.shape[1] != net.sizes[0]:
        raise ValueError(f"X must have shape (N, {net.sizes[0]}), got {X.shape}")

    def csr(rows):
        if isinstance(X, SparseInputs):
            return Inputs(X.cols, X.vals, X.starts, rows if X.rowmap is None else X.rowmap[rows])
        # a plain array: the CSR of just these rows, in their order (one pass, as an epoch
        # over the array would make anyway)
        cols, vals, starts = kw.sparse_rows(X, rows, _scale(X))
        return Inputs(cols, vals, starts, np.arange(len(rows), dtype=np.int64))

    return len(X), csr


@functools.cache
def _forward_pool(pid):
    """The process's helper threads, started when first needed (one pool per process: a
    pool inherited through fork has no threads): forward's other blocks, the other slices
    of SparseInputs' fill and the two-loop split's other threads (network._split_rows)."""
    workers = max(1, numba.config.NUMBA_NUM_THREADS - 1)
    return ThreadPoolExecutor(workers, thread_name_prefix=f"fastmlp-forward-{pid}")
