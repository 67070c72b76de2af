"""The decorator every kernel uses, so the JIT options are set in one place.

``parallel=True`` (prange over blocks), ``nogil=True``, ``cache=True`` (compiled
kernels are reused across processes: the first-call cost is paid once per machine),
and ``fastmath=False``: fast-math lets LLVM reassociate and contract to FMA, which
changes rounding and breaks bit-exactness with the reference.
"""

from __future__ import annotations

import numba

KERNEL = dict(nogil=True, cache=True, fastmath=False)


def kernel(fn):  # type: ignore[no-untyped-def]
    """Parallel kernel (use ``numba.prange`` for the outer loop)."""
    return numba.njit(parallel=True, **KERNEL)(fn)


def helper(fn):  # type: ignore[no-untyped-def]
    """Serial inlineable helper called from kernels."""
    return numba.njit(**KERNEL)(fn)
