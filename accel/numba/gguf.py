"""GGUF ops of the Numba backend: ``gguf_quantize``, ``gguf_dequantize``,
``gguf_dequant_matmul``.

Same contract as :func:`refquant.gguf.quantize` / :func:`refquant.gguf.dequantize`
(on arguments prepared by :mod:`refquant.prepare.gguf`) and
:func:`refquant.formats.gguf_matmul.dequant_matmul`. The block rules are Numba
functions, one module per family, that mirror ggml's C (``ggml-quants.c`` @ d99724f2)
operation by operation, so the bytes are ggml's and the reference's bit for bit; each
type's quantize and dequantize kernel (a ``prange`` over chunks of blocks) is compiled
separately by the factory :mod:`accel.numba.gguf_blocks` (every family but the F16/BF16
casts and the grid types' quantizers):

- :mod:`accel.numba.gguf_legacy`: f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1, tq1_0, tq2_0
- :mod:`accel.numba.gguf_kquants`: q2_k, q3_k, q4_k, q5_k, q6_k, q8_k
- :mod:`accel.numba.gguf_iquants`: iq4_nl, iq4_xs, mxfp4, nvfp4
- :mod:`accel.numba.gguf_iqgrid`: the grid types iq2_xxs ... iq1_m
- :mod:`accel.numba.gguf_search`: ggml's scale searches (make_qx_quants ...)
- :mod:`accel.numba.gguf_math`: nearest_int, fp16/bf16 bits, roundf

The fused product (:func:`gguf_dequant_matmul`, every type above, :mod:`accel.numba.gguf_matmul`)
decodes a tile of weight rows at a time into a thread-local float32 buffer (ggml's
dequantized values, exactly, by a per-type row decoder built from the same block decoders)
and multiplies with float32 accumulators; it meets the Nmse contract against the float64
reference, not Exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from accel.numba import gguf_iqgrid, gguf_iqgrid_search, gguf_iquants, gguf_kquants, gguf_legacy
from accel.numba.gguf_matmul import MATMUL_QTYPES, dequant_matmul
from refquant.errors import UnsupportedError
from refquant.formats import FORMATS

__all__ = ["QTYPES", "DEQUANTIZE_QTYPES", "MATMUL_QTYPES", "gguf_quantize", "gguf_dequantize", "gguf_dequant_matmul"]

_QUANTIZE = {**gguf_legacy.QUANTIZE, **gguf_kquants.QUANTIZE, **gguf_iquants.QUANTIZE,
             **gguf_iqgrid_search.QUANTIZE}
_DEQUANTIZE = {**gguf_legacy.DEQUANTIZE, **gguf_kquants.DEQUANTIZE, **gguf_iquants.DEQUANTIZE,
               **gguf_iqgrid.DEQUANTIZE}
QTYPES = frozenset(_QUANTIZE)
DEQUANTIZE_QTYPES = frozenset(_DEQUANTIZE)


def kernel_name(fmt: Any, table: Any) -> str:
    """The registered name of the prepared format ``fmt`` when ``table`` holds a kernel for
    it; a format this backend does not know (an unregistered subclass, even one that keeps
    a registered name) is UnsupportedError, never another format's kernel."""
    if isinstance(fmt, str):                             # a registered format, by its canonical name
        fmt = FORMATS.get(fmt)
    name = getattr(fmt, "name", None)
    if FORMATS.get(name) is not fmt or name not in table:
        known = "" if FORMATS.get(name) is fmt else " (an unregistered format class)"
        raise UnsupportedError(f"the numba backend has no kernel for GGUF format {name!r}{known}; "
                               f"it has {', '.join(sorted(table))}")
    return name


def gguf_quantize(x: np.ndarray, qtype: Any, imatrix: np.ndarray | None = None, *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.gguf.quantize` on prepared arguments (``refquant.prepare.gguf``:
    float32 rows, finite unless f16/bf16, a checked imatrix or None; ``out`` uint8 (..., row_bytes))."""
    name = kernel_name(qtype, _QUANTIZE)
    fmt = FORMATS[name]
    n_per_row = x.shape[-1]
    rows = x.reshape(math.prod(x.shape[:-1]), n_per_row)
    res = out.reshape(rows.shape[0], out.shape[-1])
    if rows.size:
        has_im = imatrix is not None and fmt.uses_imatrix
        im_arr = imatrix if has_im else np.zeros(1, np.float32)
        sigma2 = np.zeros(1, np.float32)
        if has_im and fmt.block_size == 32 and name in gguf_legacy.QUANTIZE:
            sigma2 = np.empty(rows.shape[0], np.float32)  # legacy imatrix weights use a row sigma2
            gguf_legacy.row_sigma2(rows, sigma2)
        _QUANTIZE[name](rows, im_arr, sigma2, has_im, res)
    return out


def gguf_dequantize(data: np.ndarray, qtype: Any, shape: tuple[int, ...], *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.gguf.dequantize` on prepared arguments (flat uint8 bytes of
    exactly ``shape``'s blocks; ``out`` float32 shape): ggml's to_float."""
    name = kernel_name(qtype, _DEQUANTIZE)
    fmt = FORMATS[name]
    blocks = data.reshape(data.size // fmt.type_size, fmt.type_size)
    if blocks.shape[0]:
        _DEQUANTIZE[name](blocks, out.reshape(blocks.shape[0], fmt.block_size))
    return out


def gguf_dequant_matmul(x: np.ndarray, data: np.ndarray, qtype: Any, shape: tuple[int, int]) -> np.ndarray:
    """Backend op: ``x @ W.T`` for a GGUF weight ``W`` of ``shape`` (out, in), fused
    (:mod:`accel.numba.gguf_matmul`); see :func:`refquant.formats.gguf_matmul.dequant_matmul`."""
    return dequant_matmul(x, data, qtype, shape)
