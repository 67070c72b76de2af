"""Min-max row-group grids of the weight quantizers, and the op ``rtn_quantize``.

Mirrors :mod:`refquant.algorithms._quantizer` for the two rules the algorithm ops use
(``w_hat = scale * (q - zero)``, ``q`` in ``[0, maxq]``, ``maxq = 2**bits - 1``):

* ``GPTQ`` (IST-DASLab/gptq ``quant.py``, ``Quantizer.find_params``): the range
  ``[min(x, 0), max(x, 0)]``; symmetric: ``xmax = max(|xmin|, xmax)`` and ``xmin = -xmax``
  only where ``xmin < 0``; an empty range becomes ``[-1, 1]``; ``scale = (xmax - xmin) /
  maxq``; zero ``(maxq + 1) / 2`` (symmetric) or ``round(-xmin / scale)``.
* ``AWQ`` (mit-han-lab/llm-awq ``quantizer.pseudo_quantize_tensor``, zero-point branch):
  the raw ``[min x, max x]``; ``scale = max(xmax - xmin, 1e-5) / maxq``; zero
  ``clamp(round(-xmin / scale), 0, maxq)``.

Every scale is rounded to float32 (0 becomes 2**-149, refquant's rule for subnormal
ranges) and the zero-point derived from the rounded scale. The arithmetic is the working
dtype's: ``single`` rounds each step to float32 (done in float64 and rounded once: for
``+ - * /`` of float32 operands that is the float32 result, as 53 >= 2*24 + 2 bits).
The per-group round-to-nearest itself is :func:`accel.numba.affine.quantize_row_groups` /
``dequantize_row_groups``: the zero-point is integral, so ``clamp(round(x / scale) + zero,
0, maxq)`` equals the affine kernels' ``clamp(round(x / scale), -zero, maxq - zero) + zero``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from accel.numba import affine
from accel.numba._jit import helper, kernel

__all__ = ["GPTQ", "AWQ", "minmax_grid", "group_grid", "fake_quantize_groups", "rtn_quantize"]

GPTQ = 0  # IST-DASLab/gptq quant.py
AWQ = 1   # llm-awq pseudo_quantize_tensor, zero_point=True
_F32_TINIEST = 2.0**-149


@helper
def _rounded(v, single):  # type: ignore[no-untyped-def]
    """``v`` rounded to float32 when the working dtype is float32 (``single``), as float64."""
    return np.float64(np.float32(v)) if single else v


@helper
def minmax_grid(xmin, xmax, maxq, sym, rule, single):  # type: ignore[no-untyped-def]
    """``(scale, zero)`` (float64 values) of one row-group from its minimum and maximum
    (float64 values of the working dtype); ``rule`` GPTQ or AWQ (AWQ: asymmetric only)."""
    if rule == AWQ:
        span = max(_rounded(xmax - xmin, single), _rounded(1e-5, single))
        scale = np.float64(np.float32(span / maxq))
        if scale == 0.0:
            scale = _F32_TINIEST
        return scale, min(max(np.rint(_rounded(-xmin / scale, single)), 0.0), maxq)
    xmin = min(xmin, 0.0)
    xmax = max(xmax, 0.0)
    if sym:
        xmax = max(-xmin, xmax)  # |xmin|, xmin <= 0
        if xmin < 0.0:
            xmin = -xmax
    if xmin == xmax:
        xmin = -1.0
        xmax = 1.0
    scale = np.float64(np.float32(_rounded(xmax - xmin, single) / maxq))
    if scale == 0.0:
        scale = _F32_TINIEST
    if sym:
        return scale, (maxq + 1.0) / 2.0
    return scale, np.rint(_rounded(-xmin / scale, single))


@kernel(iterations=lambda x, *a: x.shape[0])
def _group_grid(x, groupsize, maxq, sym, rule, single, scale, zero):  # type: ignore[no-untyped-def]
    """scale (rows, n_groups) of x's dtype and int32 zero of every row-group of x (rows, cols)."""
    rows, cols = x.shape
    for pr in prange(rows):
        r = np.int64(pr)
        row = x[r]
        for g in range(scale.shape[1]):
            c0 = g * groupsize
            lo = row[c0]
            hi = row[c0]
            for c in range(c0 + 1, min(c0 + groupsize, cols)):
                lo = min(lo, row[c])
                hi = max(hi, row[c])
            s, z = minmax_grid(np.float64(lo), np.float64(hi), np.float64(maxq), sym, rule, single)
            scale[r, g] = s
            zero[r, g] = np.int32(z)


def group_grid(x: np.ndarray, group_size: int, bits: int, sym: bool, rule: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, zero)`` of every group of ``group_size`` columns of each row of ``x``
    (rows, cols; float32 or float64, C-contiguous): scale of ``x``'s dtype (float32
    values), zero int32, both (rows, ceil(cols / group_size))."""
    shape = (x.shape[0], -(-x.shape[1] // group_size))
    scale = np.empty(shape, x.dtype)
    zero = np.empty(shape, np.int32)
    _group_grid(x, group_size, 2**bits - 1, sym, rule, x.dtype == np.float32, scale, zero)
    return scale, zero


def fake_quantize_groups(x: np.ndarray, group_size: int, bits: int, sym: bool, rule: int, out: np.ndarray
                         ) -> np.ndarray:
    """``scale * (q - zero)`` of every row-group of ``x`` on its ``rule`` grid, into ``out``
    (rows, cols; the product in ``x``'s dtype, rounded to ``out``'s)."""
    scale, zero = group_grid(x, group_size, bits, sym, rule)
    codes = affine.quantize_row_groups(x, scale, zero, group_size, 2**bits - 1, np.empty(x.shape, np.uint8))
    return affine.dequantize_row_groups(codes, scale, zero, group_size, 2**bits - 1, out)


def effective_group_size(group_size: int, columns: int) -> int:
    """Columns per group: ``group_size``, the whole row for -1, at most the row (the
    reference's clamp)."""
    return columns if group_size == -1 else min(group_size, columns)


def rtn_quantize(W: np.ndarray, bits: int = 4, group_size: int = 128, sym: bool = True) -> np.ndarray:
    """Backend op :func:`refquant.algorithms.ops.rtn_quantize` on prepared arguments
    (``refquant.prepare.algorithms``: finite float32/float64 ``W`` (out, in), C-contiguous;
    bits in {2, 3, 4, 8}; group_size -1 or >= 1): GPTQ's grid, in ``W``'s dtype -> float32."""
    g = effective_group_size(group_size, W.shape[1])
    return fake_quantize_groups(W, g, bits, sym, GPTQ, np.empty(W.shape, np.float32))
