"""W4A16-style product with a GGUF weight: ``y = x @ W.T`` where ``W`` is stored as ggml
blocks, one tensor row per output feature (how llama.cpp stores a linear layer's
weight, ``ne0`` = input features).

This is the *emulated* reference for fused dequant-matmul kernels (
torchao's ``KernelPreference.EMULATED``): dequantize ``W`` exactly as ggml's
``to_float`` does (:func:`refquant.gguf.dequantize`), then multiply in float64 and round
once to float32. ggml's own kernels (``ggml_vec_dot_q4_0_q8_0`` ...) first quantize the
activations to Q8_0/Q8_K and differ from this product; a backend is therefore held to a
normalized-error contract here (``conformance/contracts.py``), not to bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_float_array

__all__ = ["dequant_matmul", "matmul_args"]


def matmul_args(x: Any, data: Any, qtype: Any, shape: Any) -> tuple[np.ndarray, np.ndarray, Any, tuple[int, ...]]:
    """The argument rule of :func:`dequant_matmul`: ``(x, data as flat uint8, format,
    (out_features, in_features))``, checked (2-D shape, bytes that fit it, finite x whose
    last axis is ``in_features``).

    Parameters
    ----------
    x : ndarray of float16, float32 or float64, shape (..., in_features)
        Finite activations.
    data : ndarray of uint8
        The weight's ggml bytes, exactly ``out_features`` rows of ``in_features`` values.
    qtype : str or int
        A supported ggml type name or id (:func:`refquant.gguf.qtypes`).
    shape : tuple of int
        ``(out_features, in_features)``; ``in_features`` a multiple of the type's block size.
    """
    from refquant.gguf import _check_data, checked_format  # refquant.gguf imports this module

    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be (out_features, in_features), got {shape!r}")
    fmt = checked_format(qtype)
    data, shape = _check_data(data, fmt, shape)
    xa = as_float_array("x", x, dtypes=(np.float32, np.float16, np.float64), allow_nan=False, min_ndim=1)
    if xa.shape[-1] != shape[1]:
        raise ValueError(f"x has {xa.shape[-1]} input features (shape {xa.shape}) but the weight has {shape[1]}")
    return xa, data, fmt, shape


def dequant_matmul(x: Any, data: Any, qtype: Any, shape: Any) -> np.ndarray:
    """``x @ dequantize(data, qtype, shape).T`` in float64, rounded once to float32.

    Parameters
    ----------
    x : ndarray of float32, float16 or float64, shape (..., in_features)
        Activations; NaN and inf are rejected.
    data : ndarray of uint8, shape (out_features, row_bytes) (any shape with that size)
        The weight's GGUF bytes, rows in order.
    qtype : str or int
        GGUF type name (case-insensitive) or ggml type id.
    shape : tuple (out_features, in_features)
        The weight's shape; ``in_features`` must be a multiple of the type's block size.

    Returns
    -------
    ndarray of float32, shape (..., out_features)
        Values beyond float32's range become ±inf; a weight decoded to ±inf gives ±inf or
        NaN (inf · 0) in the rows it touches.

    Raises
    ------
    ValueError
        ``shape`` is not 2-D, ``data`` does not fit it, ``x``'s last axis is not
        ``in_features``, or ``x`` is not finite (plus :func:`refquant.gguf.dequantize`'s
        checks).
    TypeError
        ``x`` is not a float array or ``data`` not uint8.
    """
    from refquant.gguf import dequantize  # imported here: refquant.gguf may re-export this function

    xa, data, fmt, shape = matmul_args(x, data, qtype, shape)
    w = dequantize(data, fmt, shape)
    # A weight can itself decode to +-inf (ggml's Q5_1/Q4_1 store the block minimum as
    # fp16, which overflows for rows near +-65504): then the product is +-inf or NaN
    # (inf * 0), exactly as IEEE arithmetic gives it, without a warning.
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range: +-inf
        out = xa.reshape(-1, xa.shape[-1]).astype(np.float64) @ w.astype(np.float64).T
        return out.astype(np.float32).reshape(*xa.shape[:-1], w.shape[0])
