"""How ``train_steps`` of the numba backend shares a call between threads: which compiled
loop runs and on how many threads, from the network's shape and the thread count only, so
the same call gives the same floats run after run."""

from __future__ import annotations

from kernels.layout import Net
from kernels.numba import net as kn

# Smallest batch train_steps splits between threads by rows. Measured on 2 cores (784-16-16-10,
# MNIST): batch 32 one thread 25 ms/epoch, two 26-28 ms (a parallel region per batch and
# the gradient reduction eat the gain); batch 128 and 256: 25 ms vs 15 ms. 784-256-256-10
# at batch 128: one thread 0.50 s, two 0.29-0.31 s.
PARALLEL_MIN_BATCH = 128
# Smallest batch whose wide first layer train_steps splits between threads by lanes. Measured
# on 2 cores, 784-800-10: batch 32, one thread 0.62 s/epoch, two by lanes 0.41 s.
LANES_MIN_BATCH = 16

# Fewest rows a thread gets when train_steps splits a batch by rows. Measured on 16 cores
# (Intel Xeon, 784-256-256-10, batch 128, s/epoch at 1/2/4/8/16 threads): 0.92/0.97/0.89/
# 0.98/1.46 with the gradient summed on one thread; 2 cores: one thread 0.48 s, two 0.28 s.
ROWS_PER_THREAD = 32
# Fewest lanes of its widest layer a thread gets in either split loop (one WIDE block).
SPLIT_LANES_PER_THREAD = 64
# Most threads of a "split_rows" plan (kernels.numba.split.train_loop_split: two passes
# a batch, the forward pass split by rows); above, train_loop_split_lanes (every
# layer split by lanes, as measured on 16 cores: an sgemm on the few rows each of 16
# threads would get repacks the whole weight matrix per call). Row split measured on 2
# cores only (its total work equals the lane split's; it has 2 meetings a batch
# instead of 5 fork/joins for 784-256-256-10, and no serial loss, bias or output-layer passes).
ROW_SPLIT_MAX_THREADS = 2
# Fewest rows a thread gets for that loop. Measured on 2 cores (load ~2, interleaved, s per
# epoch, lane split vs rows): 256-256 batch 32 0.446 vs 0.485 (rows slower: each thread's
# sgemm on 16 rows, and all of the later layers' weights in each core's L2); batch 128
# 0.297/0.298/0.291 vs 0.249/0.270/0.270.
ROW_SPLIT_MIN_ROWS = 64
# Fewest threads whose lane split also spreads what it otherwise runs on the calling thread
# between its parallel loops (the output layer and loss by rows, bias gradients, the inputs'
# transposition; train_loop_split_lanes' `spread`). 784-1024-1024-10 at batch 128 on 16
# cores (Intel Xeon): that serial part was 0.65 ms of a 2.1 ms batch. On 2 cores (AMD EPYC,
# 784-256-256-10 at batch 32) the loop the tail then needs cost as much as it saved.
SPREAD_MIN_THREADS = 3


def lane_split_flags(threads: int) -> tuple[bool | None, bool | None]:
    """(spread, serial) for train_loop_split_lanes on ``threads`` threads: one True, the
    other None (a None argument's branches are not compiled)."""
    spread = True if threads >= SPREAD_MIN_THREADS else None
    return spread, None if spread else True


def plan_threads(g, net: Net, inputs, rows: int, threads: int) -> tuple[str, int]:
    """(loop, threads it runs on) for batches of ``rows`` rows and at most ``threads`` threads.

    * "split_rows" (train_loop_split: weights, then rows) and "split_lanes"
      (train_loop_split_lanes: every layer by lanes): a network with BLAS layers, at most
      one thread per WIDE block of its widest layer; split_rows up to ROW_SPLIT_MAX_THREADS
      threads with at least ROW_SPLIT_MIN_ROWS rows a thread, split_lanes otherwise;
    * "lanes" (train_loop_lanes): a wide first layer that is the larger part of the work,
      at most one thread per WIDE block of it;
    * "rows" (train_loop_threads): batches of PARALLEL_MIN_BATCH rows or more, at least
      ROWS_PER_THREAD rows a thread;
    * "serial" (train_loop): one thread (BLAS, where a layer uses it, with ``threads``).

    Depends on the shape and ``threads`` only: the same choice, and so the same floats,
    run after run.
    """
    widest = int(g.layers["stride"].max())
    if g.uses_blas:
        split = min(threads, widest // SPLIT_LANES_PER_THREAD)
        if split < 2:
            return "serial", 1
        by_rows = split <= ROW_SPLIT_MAX_THREADS and rows // split >= ROW_SPLIT_MIN_ROWS
        return ("split_rows" if by_rows else "split_lanes"), split
    if rows >= LANES_MIN_BATCH and first_layer_leads(g, net, inputs):
        lanes = min(threads, -(-int(g.layers[0]["stride"]) // kn.WIDE))
        if lanes > 1:
            return "lanes", lanes
    if rows >= PARALLEL_MIN_BATCH:
        shards = min(threads, rows // ROWS_PER_THREAD)
        if shards > 1:
            return "rows", shards
    return "serial", 1


def first_layer_leads(g, net, inputs):
    """Whether threads should split the first layer by lanes (train_loop_lanes) rather than
    the batch by rows: a first layer of two WIDE blocks or more whose sparse work (entries
    per row x width) is the larger part. Never with BLAS layers: their threads are BLAS's,
    and BLAS threads spinning between calls while Numba's run made an epoch of
    784-1024-1024-10 at batch 128 on 2 cores take 7.0 s, against 2.1 s with the first layer
    on one thread and BLAS on two (3.0 s with BLAS on one)."""
    s0 = int(g.layers[0]["stride"])
    if g.uses_blas or s0 < 2 * kn.WIDE:
        return False
    starts = inputs.starts
    per_row = (starts[-1] - starts[0]) / max(1, len(starts) - 1)
    rest = sum(a * b for a, b in zip(net.sizes[1:], net.sizes[2:], strict=False))
    return per_row * s0 >= rest
