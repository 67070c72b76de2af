"""BitNet b1.58's ternary GEMM: int8 activations times {-1, 0, +1} weights, adds and subtracts only.

Same contract as :func:`refquant.matmul.ternary_matmul`. Each output row of the weight is
scanned once: a +1 weight adds the input, a -1 weight subtracts it, a 0 weight skips it; there
is no multiplication. Partial sums are int32: ``k * 128 < 2**31`` for any ``k < 2**24``, and
longer reductions use int64 before the final range check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from accel.numba._jit import kernel
from refquant.matmul import to_int32

__all__ = ["ternary_matmul"]

_INT32_MAX = np.iinfo(np.int32).max


@kernel(iterations=lambda a, t, out: a.shape[0])
def _ternary_gemm(a, t, out):  # type: ignore[no-untyped-def]
    """out (m, n) = a (m, k) @ t (n, k)ᵀ with t ternary, accumulating in out's integer dtype."""
    m, k = a.shape
    n = t.shape[0]
    for i in prange(m):
        for j in range(n):
            acc = out[i, j]  # zero: out is zero-initialized; keeps out's integer width
            for kk in range(k):
                w = t[j, kk]
                if w == 1:
                    acc += a[i, kk]
                elif w == -1:
                    acc -= a[i, kk]
            out[i, j] = acc


def ternary_matmul(a_q: Any, t: Any) -> np.ndarray:
    """Backend op :func:`refquant.matmul.ternary_matmul` on prepared arguments
    (``refquant.prepare.matmul``: int8 (m, k) and ternary int8 (k, n), C-contiguous)."""
    a, w = a_q, t
    wide = a.shape[1] * 128 > _INT32_MAX
    out = np.zeros((a.shape[0], w.shape[1]), np.int64 if wide else np.int32)
    _ternary_gemm(a, np.ascontiguousarray(w.T), out)
    return to_int32(out, "ternary_matmul result") if wide else out
