"""GGUF ops of the Numba backend: ``gguf_quantize``, ``gguf_dequantize``,
``gguf_dequant_matmul``.

Same contract as :func:`refquant.gguf.quantize` / :func:`refquant.gguf.dequantize`
(validation and error messages come from the reference's helpers) and
:func:`refquant.formats.gguf_matmul.dequant_matmul`. The block rules are Numba kernels,
one module per family, each a per-block loop over ``prange`` chunks that mirrors ggml's
C (``ggml-quants.c`` @ d99724f2) operation by operation, so the bytes are ggml's and
the reference's bit for bit:

- :mod:`accel.numba.gguf_legacy`: f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1, tq1_0, tq2_0
- :mod:`accel.numba.gguf_kquants`: q2_k, q3_k, q4_k, q5_k, q6_k, q8_k
- :mod:`accel.numba.gguf_iquants`: iq4_nl, iq4_xs, mxfp4, nvfp4
- :mod:`accel.numba.gguf_search`: ggml's scale searches (make_qx_quants ...)
- :mod:`accel.numba.gguf_math`: nearest_int, fp16/bf16 bits, roundf

The fused W4A16 product (:func:`gguf_dequant_matmul`, Q4_0 and Q4_K) decodes a tile
of weight rows at a time into a thread-local float32 buffer (ggml's dequantized values,
exactly) and multiplies with float32 accumulators; it meets the Nmse contract against
the float64 reference, not Exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from accel.numba import gguf_iquants, gguf_kquants, gguf_legacy
from accel.numba.gguf_math import gkernel
from refquant.errors import UnsupportedError
from refquant.gguf import _as_rows, _check_data as _ref_check_data, _check_imatrix, _check_row_length, get_format

__all__ = ["QTYPES", "MATMUL_QTYPES", "gguf_quantize", "gguf_dequantize", "gguf_dequant_matmul"]

_QUANTIZE = {**gguf_legacy.QUANTIZE, **gguf_kquants.QUANTIZE, **gguf_iquants.QUANTIZE}
_DEQUANTIZE = {**gguf_legacy.DEQUANTIZE, **gguf_kquants.DEQUANTIZE, **gguf_iquants.DEQUANTIZE}
QTYPES = frozenset(_QUANTIZE)


@gkernel
def _count_nonfinite(x):  # type: ignore[no-untyped-def]
    rows, n = x.shape
    bad = 0
    for r in prange(rows):
        for j in range(n):
            if not np.isfinite(x[r, j]):
                bad += 1
    return bad


def _kernel_format(qtype: Any):  # type: ignore[no-untyped-def]
    fmt = get_format(qtype)
    if fmt.name not in _QUANTIZE:
        raise UnsupportedError(f"the numba backend has no kernel for GGUF type {fmt.name!r}")
    return fmt


def gguf_quantize(x: Any, qtype: Any, imatrix: Any = None) -> np.ndarray:
    """Backend op: the bytes of :func:`refquant.gguf.quantize` (ggml_quantize_chunk's)."""
    fmt = _kernel_format(qtype)
    x = _as_rows(x)
    n_per_row = x.shape[-1]
    _check_row_length(fmt, n_per_row, "x.shape[-1]")
    im = None if imatrix is None else _check_imatrix(imatrix, n_per_row)
    lead = x.shape[:-1]
    row_bytes = n_per_row // fmt.block_size * fmt.type_size
    rows = np.ascontiguousarray(x.reshape(-1, n_per_row))
    if not fmt.allows_nonfinite and rows.size and _count_nonfinite(rows):
        raise ValueError(f"x contains NaN or inf, which {fmt.name} cannot encode "
                         f"(only f16 and bf16 define them); clean or clamp the input first")
    out = np.empty((rows.shape[0], row_bytes), np.uint8)
    if rows.size:
        has_im = im is not None and fmt.uses_imatrix
        im_arr = np.ascontiguousarray(im, np.float32) if has_im else np.zeros(1, np.float32)
        sigma2 = np.zeros(1, np.float32)
        if has_im and fmt.block_size == 32 and fmt.name in gguf_legacy.QUANTIZE:
            sigma2 = np.empty(rows.shape[0], np.float32)  # legacy imatrix weights use a row sigma2
            gguf_legacy.row_sigma2(rows, sigma2)
        _QUANTIZE[fmt.name](rows, im_arr, sigma2, has_im, out)
    return out.reshape(lead + (row_bytes,))


def _check_data(data: Any, fmt: Any, shape: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """The reference's checks of :func:`refquant.gguf.dequantize` arguments; data as (blocks, type_size)."""
    flat, shape = _ref_check_data(data, fmt, shape)
    return flat.reshape(-1, fmt.type_size), shape


def gguf_dequantize(data: Any, qtype: Any, shape: Any) -> np.ndarray:
    """Backend op: the float32 values of :func:`refquant.gguf.dequantize` (ggml's to_float)."""
    fmt = _kernel_format(qtype)
    blocks, shape = _check_data(data, fmt, shape)
    out = np.empty((blocks.shape[0], fmt.block_size), np.float32)
    if blocks.shape[0]:
        _DEQUANTIZE[fmt.name](blocks, out)
    return out.reshape(shape)


def gguf_dequant_matmul(x: Any, data: Any, qtype: Any, shape: Any) -> np.ndarray:
    """Backend op: ``x @ W.T`` for a Q4_0/Q4_K weight ``W`` of ``shape`` (out, in), fused
    (:mod:`accel.numba.gguf_matmul`); see :func:`refquant.formats.gguf_matmul.dequant_matmul`."""
    from accel.numba.gguf_matmul import dequant_matmul

    return dequant_matmul(x, data, qtype, shape)


MATMUL_QTYPES = frozenset({"q4_0", "q4_k"})  # accel.numba.gguf_matmul.MATMUL_QTYPES
