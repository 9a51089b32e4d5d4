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
where distorting costs more than training, not training + distortion. The bytes are the
same either way: an image's distortion depends on its row, not on who makes it.
"""

from __future__ import annotations

import math
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import numpy as np

from kernels import augment_reference

PIECES = 8  # per chunk (~3,000 images): small enough to share, large enough to be cheap


class Distorter:
    """Distorts a chunk's images into reused uint8 buffers (no augmented data set).

    Parameters
    ----------
    inputs : ndarray, uint8 (N, side * side)
        The training images.
    kind : str
        One of :data:`kernels.augment_reference.KINDS`.
    batch_size, chunks_per_epoch : int
        The trainer's chunking: a chunk is ``ceil(ceil(N / batch_size) / chunks_per_epoch)``
        batches, the last one of an epoch possibly shorter.
    backend : str
        ``"numba"`` uses the compiled kernels; the others the NumPy reference.
    threads : int
        More than one (numba only): distort the next chunk on a second thread.
    """

    def __init__(
        self,
        inputs: np.ndarray,
        kind: str,
        batch_size: int,
        backend: str,
        chunks_per_epoch: int = 20,
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
        self.chunk = math.ceil(math.ceil(len(inputs) / batch_size) / chunks_per_epoch) * batch_size
        self.buffers = [np.empty((self.chunk, n_features), np.uint8) for _ in range(2)]
        # rows, seed, epoch, the pieces left, the background job
        self.pending: tuple[np.ndarray, int, int, _Pieces, Future] | None = None
        self.order: np.ndarray | None = None
        self.next_start = 0
        self.turn = 0  # the buffer the next chunk goes to

    def plan(self, order: np.ndarray, seed: int, epoch: int) -> None:
        """The rows of the coming epoch in order: start distorting its first chunk."""
        if self.background is None:
            return
        self._drain()
        self.order, self.seed, self.epoch, self.next_start = order, seed, epoch, 0
        self._submit()

    def __call__(self, rows: np.ndarray, seed: int, epoch: int) -> np.ndarray:
        """Distorted copies of ``X[rows]`` for pass ``epoch``: valid until the call after next."""
        pending, self.pending = self.pending, None
        if pending is not None:
            planned, p_seed, p_epoch, pieces, job = pending
            pieces.work(self.kernel, from_back=True)  # help: the pieces not started yet
            out = job.result()
            if (p_seed, p_epoch) == (seed, epoch) and np.array_equal(planned, rows):
                self._submit()  # the next chunk, into the other buffer, while this one trains
                return out
            self.order = None  # not the planned chunk: back to distorting on this thread
        out = self._buffer(len(rows))
        self.kernel(out, self.inputs, rows, self.side, self.kind, self.params, seed, epoch)
        return out

    def _buffer(self, n: int) -> np.ndarray:
        """The next buffer's first n rows (grown when the warm-up's batch outgrows a chunk)."""
        turn, self.turn = self.turn, 1 - self.turn
        if n > len(self.buffers[turn]):
            self.buffers[turn] = np.empty((n, self.buffers[turn].shape[1]), np.uint8)
        return self.buffers[turn][:n]

    def _submit(self) -> None:
        if self.order is None or self.next_start >= len(self.order):
            return
        rows = self.order[self.next_start : self.next_start + self.chunk]
        self.next_start += len(rows)
        out = self._buffer(len(rows))
        pieces = _Pieces(out, self.inputs, rows, self.side, self.kind, self.params, self.seed,
                         self.epoch)  # fmt: skip
        job = self.background.submit(lambda: (pieces.work(self.ahead_kernel), out)[1])
        self.pending = rows, self.seed, self.epoch, pieces, job

    def _drain(self) -> None:
        """Wait for a distortion still running (its buffer is about to be reused)."""
        if self.pending is not None:
            self.pending[4].result()
            self.pending = None


class _Pieces:
    """One chunk's distortion in :data:`PIECES` pieces, which two threads take, one from
    the front, one from the back, until none is left (each with its own kernel scratch)."""

    def __init__(self, out: np.ndarray, inputs: np.ndarray, rows: np.ndarray, *args) -> None:
        self.out, self.inputs, self.rows, self.args = out, inputs, rows, args
        self.bounds = np.linspace(0, len(rows), min(PIECES, len(rows)) + 1).astype(int)
        self.front, self.back = 0, len(self.bounds) - 1  # pieces front..back-1 are left
        self.lock = threading.Lock()

    def work(self, kernel, from_back: bool = False) -> None:
        """Distort pieces until none is left."""
        while True:
            with self.lock:
                if self.front >= self.back:
                    return
                if from_back:
                    self.back -= 1
                    piece = self.back
                else:
                    piece = self.front
                    self.front += 1
            a, b = self.bounds[piece], self.bounds[piece + 1]
            kernel(self.out[a:b], self.inputs, self.rows[a:b], *self.args)
