"""The decorators every kernel uses, so the JIT options and scheduling are set in one place.

``parallel=True`` (prange over blocks), ``nogil=True``, ``cache=True`` (compiled
kernels are reused across processes: the first-call cost is paid once per machine),
and ``fastmath=False``: fast-math lets LLVM reassociate and contract to FMA, which
changes rounding and breaks bit-exactness with the reference.

Scheduling. Numba splits a ``prange`` statically into one equal part per thread, so a
thread that the OS deschedules (a shared machine, a busy core) stalls the whole call.
``@kernel(iterations=f)`` returns a :class:`Kernel` that, called from Python, runs the
prange in chunks of about ``iterations / (threads * TASKS_PER_THREAD)`` taken
dynamically (``numba.parallel_chunksize``); ``f(*args)`` is the prange's trip count.
Results do not depend on the schedule: iterations write disjoint outputs.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numba

KERNEL = dict(nogil=True, cache=True, fastmath=False)
TASKS_PER_THREAD = 16


class Kernel:
    """A parallel dispatcher called with dynamic chunks (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any], iterations: Callable[..., int]) -> None:
        self.dispatcher = numba.njit(parallel=True, **KERNEL)(fn)
        self.iterations = iterations
        functools.update_wrapper(self, fn)

    @property
    def py_func(self) -> Callable[..., Any]:
        return self.dispatcher.py_func

    def __call__(self, *args: Any) -> Any:
        chunk = max(1, int(self.iterations(*args)) // (numba.get_num_threads() * TASKS_PER_THREAD))
        with numba.parallel_chunksize(chunk):
            return self.dispatcher(*args)


def kernel(fn: Callable[..., Any] | None = None, *, iterations: Callable[..., int] | None = None) -> Any:
    """Parallel kernel (use ``numba.prange`` for the outer loop).

    ``@kernel`` gives the Numba dispatcher (static schedule); ``@kernel(iterations=f)``
    a :class:`Kernel` scheduled in dynamic chunks, ``f(*args)`` being the prange's trip count.
    """
    if fn is not None:
        return numba.njit(parallel=True, **KERNEL)(fn)
    if iterations is None:
        raise TypeError("kernel() needs the function or iterations=")
    return lambda f: Kernel(f, iterations)


def helper(fn: Callable[..., Any]) -> Any:
    """Serial inlineable helper called from kernels."""
    return numba.njit(**KERNEL)(fn)
