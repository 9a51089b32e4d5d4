"""Threads meeting inside compiled code: a counter every thread adds one to, waited on.

The two-loop split (:mod:`kernels.numba.split`) runs one compiled function per thread,
each started from Python without the GIL, and the threads meet twice a batch here instead
of in a Numba parallel loop: a ``prange`` body is compiled again as a function of its own,
with its wrappers, which cost a first ``fit`` of 784-256-256-10 at batch 128 on 2 threads
about 4 s of its 10 s of compiling.

``meet(sync, target)``: add one to ``sync[0]`` and wait until it reaches ``target``
(the number of threads times the meetings so far: the counter is never reset). The add is
a sequentially consistent atomic and the wait an acquire load, so everything a thread
wrote before it arrived is seen by every thread after they leave. A waiting thread spins
with the CPU's pause hint, and after ``SPINS`` rounds gives its core away
(``sched_yield``; ``SwitchToThread`` on Windows) at every round: where the threads
outnumber the free cores, the one being waited for gets to run.
"""

from __future__ import annotations

import ctypes
import platform
import sys

from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels.numba.memory import _is_flat, _lane_pointer, fetch_add

SPINS = 1 << 14  # pause rounds before yielding the core (~0.2-1 ms, by the CPU's pause)
_YIELD = "fastmlp_thread_yield"


def _register_yield() -> None:
    """Make the OS's yield callable from compiled code under one name (resolved when the
    code is loaded, so cached code finds it too)."""
    if sys.platform == "win32":
        fn = ctypes.windll.kernel32.SwitchToThread  # type: ignore[attr-defined]
    else:
        fn = ctypes.CDLL(None).sched_yield
    binding.add_symbol(_YIELD, ctypes.cast(fn, ctypes.c_void_p).value)


_register_yield()


@intrinsic
def load_acquire(typingctx, arr, i):
    """``arr[i]`` read atomically with acquire ordering (arr: flat int64, C order)."""
    if not (_is_flat(arr) and arr.dtype == types.int64 and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _lane_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(arr, i), codegen


@intrinsic
def spin_pause(typingctx):
    """The CPU's spin-wait hint (x86 ``pause``, Arm ``yield``; nothing elsewhere)."""

    def codegen(context, builder, sig, args):
        machine = platform.machine().lower()
        if machine in ("x86_64", "amd64", "i386", "i686"):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause"
            )
            builder.call(fn, [])
        elif machine in ("aarch64", "arm64"):
            builder.asm(ir.FunctionType(ir.VoidType(), []), "yield", "", [], side_effect=True)
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def thread_yield(typingctx):
    """Give this thread's core to another runnable thread (the OS's yield)."""

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            _YIELD)  # fmt: skip
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen


@njit(cache=True, inline="always")
def meet(sync, target):
    """Arrive (sync[0] += 1) and wait until sync[0] >= target: every thread has arrived."""
    fetch_add(sync, 0, 1)
    spins = 0
    while load_acquire(sync, 0) < target:
        if spins < SPINS:
            spin_pause()
            spins += 1
        else:
            thread_yield()
