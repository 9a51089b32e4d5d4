"""Training on distorted images, a chunk at a time: the trainer's side of ``fit(augment=...)``.

The trainer hands each chunk of an epoch's rows to a :class:`Distorter`, which writes
distorted copies of just those images into a reused uint8 buffer (the kernels in
:mod:`kernels.augment_numba`, or the NumPy reference for the NumPy backends); the chunk
is then trained on that buffer in order. No augmented copy of the data set is stored.
Every image's distortion depends only on the model seed, the epoch and its row.

With the numba backend and more than one thread, the trainer tells the distorter each
epoch's order (:meth:`Distorter.plan`) and the next chunk is distorted on a second thread
while the current one trains (the kernels release the GIL): two buffers, one being
trained on, one being filled. The chunk is distorted in pieces: the second thread takes
them from the front, and the training thread, once done with its chunk, takes the rest
from the back instead of waiting, so an epoch takes about (training + distortion) / 2
where distorting costs more than training, not training + distortion. Each takes a run
of a quarter of the pieces left at a time: few calls, and short runs where the two meet,
so the first to finish waits for little. The bytes are the same either way: an image's
distortion depends on its row, not on who makes it.

With the numba backend the kernel also writes each distorted image's non-zero pixels as
the compressed sparse rows the first layer reads, while the image is in the cache, and
the chunk goes to ``train_steps`` as :class:`kernels.numba.SparseInputs` (the same
entries ``train_steps`` would make from the bytes): the training thread does not scan the
chunk again, and the two threads that distort share the work. Each run writes into its
own room (room for every pixel of its images), so a row's entries are found through a
row map, the room a run leaves unused lying in CSR rows no image maps to.
"""

from __future__ import annotations

import math
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

from kernels import augment_reference

PIECES = 64  # per chunk (~3,000 images): taken in runs, a quarter of what is left at a time
LANES = 16  # entries the kernel's vector compress may write past an image's last


class Distorter:
    """Distorts a chunk's images into reused uint8 buffers (no augmented data set).

    Parameters
    ----------
    inputs : ndarray, uint8 (N, side * side)
        The training images.
    kind : str
        One of :data:`kernels.augment_reference.KINDS`.
    chunk_rows : int
        The trainer's chunk: the rows of a kernel call (whole batches), the last one of an
        epoch possibly fewer.
    backend : str
        ``"numba"`` uses the compiled kernels; the others the NumPy reference.
    threads : int
        More than one (numba only): distort the next chunk on a second thread.
    """

    def __init__(
        self,
        inputs: np.ndarray,
        kind: str,
        chunk_rows: int,
        backend: str,
        threads: int = 1,
    ) -> None:
        n_features = inputs.shape[1] if inputs.ndim == 2 else 0
        side = math.isqrt(n_features)
        if inputs.dtype != np.uint8 or side * side != n_features or side < 2:
            raise ValueError(
                f"augment {kind!r} distorts square uint8 images; got "
                f"{inputs.dtype} rows of {n_features} features"
            )
        self.background = None
        self.sparse = backend == "numba"  # the kernel writes the rows' entries too
        inputs = np.ascontiguousarray(inputs)  # (the kernels read rows as flat vectors)
        if backend == "numba":
            from kernels import augment_numba  # compiled on first use only

            scratch = augment_numba.scratch_for(side)
            boxes = augment_numba.bounding_boxes(inputs, side)  # once per fit
            self.kernel = partial(augment_numba.augment_rows, scratch=scratch, boxes=boxes)
            if threads > 1:
                # its own scratch: the two threads never share a buffer
                ahead = partial(augment_numba.augment_rows, scratch=scratch.copy(), boxes=boxes)
                self.ahead_kernel = ahead
                self.background = ThreadPoolExecutor(1, thread_name_prefix="fastmlp-augment")
                weakref.finalize(self, self.background.shutdown, wait=False)
        else:  # the NumPy backends distort with the plain reference the kernel is tested on
            self.kernel = augment_reference.augment_rows
        self.inputs, self.side = inputs, side
        self.kind = augment_reference.kind_code(kind)
        self.params = augment_reference.augment_params(kind, side)
        self.chunk = chunk_rows
        self.buffers = [_Buffer(self.chunk, n_features, self.sparse) for _ in range(2)]
        # rows, seed, epoch, the pieces left, the background job
        self.pending: tuple[np.ndarray, int, int, _Pieces, Future] | None = None
        self.order: np.ndarray | None = None
        self.following: np.ndarray | None = None
        self.next_start = 0
        self.turn = 0  # the buffer the next chunk goes to

    def plan(self, order: np.ndarray, seed: int, epoch: int,
             following: np.ndarray | None = None) -> None:  # fmt: skip
        """The rows of the coming epoch in order: start distorting its first chunk (kept
        if already made: the previous epoch's ``following``). ``following``: the next
        epoch's order, whose first chunk is distorted while this epoch's last one trains."""
        if self.background is None:
            return
        pending = self.pending
        if pending is not None and (pending[1], pending[2]) == (seed, epoch):
            first = pending[0]
            if np.array_equal(first, order[: len(first)]):  # planned ahead: keep it
                self.order, self.next_start, self.following = order, len(first), following
                return
        self._drain()
        self.order, self.seed, self.epoch, self.next_start = order, seed, epoch, 0
        self.following = following
        self._submit()

    def __call__(self, rows: np.ndarray, seed: int, epoch: int) -> Any:
        """Distorted copies of ``X[rows]`` for pass ``epoch``, valid until the call after
        next: a uint8 array, or with the numba backend the same rows as
        :class:`kernels.numba.SparseInputs`."""
        pending, self.pending = self.pending, None
        if pending is not None:
            planned, p_seed, p_epoch, pieces, job = pending
            if (p_seed, p_epoch) == (seed, epoch) and np.array_equal(planned, rows):
                pieces.work(self.kernel, from_back=True)  # help: the pieces not started yet
                # The next chunk, into the other buffer (the previous chunk's: trained), queued
                # now: the second thread goes on to it as soon as its last run here is done,
                # while this one waits for that run and trains (it waited to be woken).
                self._submit()
                job.result()
                return pieces.result()
            job.result()
            self.order = None  # not the planned chunk: back to distorting on this thread
        pieces = self._pieces(rows, seed, epoch, 1)
        pieces.work(self.kernel)
        return pieces.result()

    def _pieces(self, rows: np.ndarray, seed: int, epoch: int, count: int) -> _Pieces:
        """``rows``' distortion in ``count`` pieces, into the next buffer (grown when the
        warm-up's batch outgrows a chunk)."""
        turn, self.turn = self.turn, 1 - self.turn
        buffer = self.buffers[turn]
        if len(rows) > buffer.rows:
            buffer = self.buffers[turn] = _Buffer(len(rows), self.side**2, self.sparse)
        return _Pieces(buffer, self.inputs, rows, count, self.side, self.kind, self.params,
                       seed, epoch)  # fmt: skip

    def _submit(self) -> None:
        if self.order is None:
            return
        if self.next_start >= len(self.order):  # on to the next epoch's first chunk
            if self.following is None:
                return
            self.order, self.following = self.following, None
            self.epoch, self.next_start = self.epoch + 1, 0
        rows = self.order[self.next_start : self.next_start + self.chunk]
        self.next_start += len(rows)
        pieces = self._pieces(rows, self.seed, self.epoch, PIECES)
        job = self.background.submit(pieces.work, self.ahead_kernel)
        self.pending = rows, self.seed, self.epoch, pieces, job

    def _drain(self) -> None:
        """Wait for a distortion still running (its buffer is about to be reused)."""
        if self.pending is not None:
            self.pending[4].result()
            self.pending = None


class _Buffer:
    """Where a chunk's distortions go: the images' bytes or, for the numba kernel, only
    their entries: room for every pixel of every image plus 16 a piece, a start per image
    and per piece (a run's unused room)."""

    def __init__(self, rows: int, n_features: int, sparse: bool) -> None:
        self.rows, self.width = rows, n_features
        # the numba kernel makes each image in its scratch and writes only its entries
        self.out = None if sparse else np.empty((rows, n_features), np.uint8)
        if sparse:
            from kernels.numba.work import column_dtype  # the numba backend's only

            room = rows * n_features + (PIECES + 1) * LANES
            self.cols = np.empty(room, column_dtype(n_features))
            self.vals = np.empty(room, np.float32)
            self.starts = np.empty(rows + PIECES + 1, np.int64)


class _Pieces:
    """One chunk's distortion in pieces (:data:`PIECES` when shared), which two threads
    take in runs, one from the front, one from the back, until none is left (each with
    its own kernel scratch). A run is a quarter of the pieces left (at least one): long
    runs while one thread works alone, short ones where the two meet, so the one that
    finishes first waits for little (measured with 16 equal pieces: half a piece, ~0.1
    ms, per chunk). A run from piece p, images a..b-1, writes CSR rows a + p .. b - 1 + p
    from entry ``a * n_features + p * 16``; the CSR rows from b + p to the next run's
    first hold what it leaves unused."""

    def __init__(self, buffer: _Buffer, inputs: np.ndarray, rows: np.ndarray, count: int,
                 *args) -> None:  # fmt: skip
        self.buffer, self.inputs, self.rows, self.args = buffer, inputs, rows, args
        self.bounds = np.linspace(0, len(rows), min(count, len(rows)) + 1).astype(int)
        self.front, self.back = 0, len(self.bounds) - 1  # pieces front..back-1 are left
        self.first = np.zeros(len(self.bounds) - 1, np.int64)  # each piece's run's first
        self.lock = threading.Lock()

    def result(self) -> Any:
        """The distorted rows, once every piece is done: bytes, or the numba backend's
        sparse rows (image j is CSR row j + the first piece of its run)."""
        n, width = len(self.rows), self.buffer.width
        if self.buffer.out is not None:
            return self.buffer.out[:n]
        from kernels.numba import SparseInputs

        pieces = len(self.bounds) - 1
        starts = self.buffer.starts[: n + pieces + 1]
        starts[-1] = n * width + pieces * LANES  # the last piece's room ends here
        rowmap = np.arange(n, dtype=np.int64)
        rowmap += np.repeat(self.first, np.diff(self.bounds))
        return SparseInputs.from_parts(self.buffer.cols, self.buffer.vals, starts, rowmap,
                                       width)  # fmt: skip

    def work(self, kernel, from_back: bool = False) -> None:
        """Distort pieces until none is left."""
        while True:
            with self.lock:
                if self.front >= self.back:
                    return
                run = max(1, (self.back - self.front) // 4)
                if from_back:
                    self.back -= run
                    piece = self.back
                else:
                    piece = self.front
                    self.front += run
            self.first[piece : piece + run] = piece
            a, b = self.bounds[piece], self.bounds[piece + run]
            buffer, sparse = self.buffer, {}
            if buffer.out is None:  # only the entries (the kernel's own scratch image)
                starts = buffer.starts[a + piece : b + piece + 1]
                starts[0] = a * buffer.width + piece * LANES
                sparse = {"sparse": (buffer.cols, buffer.vals, starts)}
            out = None if buffer.out is None else buffer.out[a:b]
            kernel(out, self.inputs, self.rows[a:b], *self.args, **sparse)
