"""AWQ GEMM checkpoint layout (AutoAWQ ``awq/modules/linear/gemm.py``).

=============  ======================  ============================================================
tensor         dtype, shape            content
=============  ======================  ============================================================
``qweight``    int32 (in, out/8)       4-bit codes packed along the **output** dim: nibble i
                                       (bits 4i..4i+3) of word c holds output 8c + ORDER[i],
                                       ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
``qzeros``     int32 (in/g, out/8)     zero-points, same packing, stored **as-is** (no -1)
``scales``     float16 (in/g, out)     one scale per group and output channel
=============  ======================  ============================================================

There is no ``g_idx``: groups are consecutive input columns (``in % group_size == 0``,
AutoAWQ's requirement). The bit order is :func:`refquant.packing.pack`'s
``"awq"`` order. A weight is ``W[o, c] = scales[c // g, o] * (q[c, o] - zero[c // g, o])``,
exact in float32 (AutoAWQ's kernels compute it in float16, which rounds).

An AWQ checkpoint stores the *scaled* weight ``Q(W diag(s))``; the input scale ``s`` is
folded into the previous operator, so :func:`decode` returns ``Q(W s)``, and
``decode(...) / s`` is :attr:`refquant.algorithms.AWQResult.dequantized` (up to the
float16 rounding of the scales). llm-awq's own ``WQLinear`` uses a different,
kernel-specific interleave; it is not this layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant import packing
from refquant._validate import as_float_array, as_int_array, check_int
from refquant.layouts.gptq import _check_range, _check_result, _integer_valued, _to_float16, _words
from refquant.prepare import into

__all__ = ["awq_pack", "awq_unpack", "awq_dequantize", "encode", "decode", "TENSOR_NAMES"]

TENSOR_NAMES = ("qweight", "qzeros", "scales")
BITS = 4


def awq_pack(codes: Any, zeros: Any, scales: Any, *, out: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pack 4-bit codes and parameters into AWQ GEMM's ``(qweight, qzeros, scales)``.

    Parameters
    ----------
    codes : ndarray of int, shape (out, in), values in 0..15
    zeros : ndarray of int (or integer-valued float), shape (out, G), values in 0..15
    scales : ndarray of float, shape (out, G), representable in float16
        ``G = in / group_size`` groups of consecutive input columns.
    out : tuple of ndarray or None, optional
        Arrays to write the results into, in order (:func:`refquant.prepare.into`).

    Returns
    -------
    qweight : int32 (in, out/8)
    qzeros : int32 (G, out/8)
    scales : float16 (G, out)

    Raises
    ------
    ValueError
        ``out % 8 != 0``, ``in`` not a multiple of the group count, values out of range.
    """
    given = (codes, zeros, scales)  # the caller's arrays, which out must not overlap
    codes, zeros, scales16 = _pack_args(codes, zeros, scales)
    qweight = packing.pack(codes.T, BITS, "awq", "int32")  # (in, out/8)
    qzeros = packing.pack(zeros.T, BITS, "awq", "int32")  # (G, out/8)
    return into(out, (qweight, qzeros, np.ascontiguousarray(scales16.T)), given)


def _pack_args(codes: Any, zeros: Any, scales: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate :func:`awq_pack`'s arguments (shared with backends, so errors read the same);
    returns ``(codes, zeros, scales16)`` with ``scales16`` the float16 scales (out, G)."""
    codes = as_int_array("codes", codes, min_ndim=2)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (out_features, in_features), got shape {codes.shape}")
    out_features, in_features = codes.shape
    zeros = _integer_valued("zeros", zeros)
    scales = np.asarray(scales)
    if zeros.ndim != 2 or zeros.shape[0] != out_features or scales.shape != zeros.shape:
        raise ValueError(f"zeros and scales must both have shape (out_features, n_groups) = ({out_features}, G), "
                         f"got zeros {zeros.shape} and scales {scales.shape}")
    n_groups = zeros.shape[1]
    if out_features % 8:
        raise ValueError(f"out_features={out_features} must be a multiple of 8 for AWQ GEMM packing")
    if n_groups == 0 or in_features % n_groups:
        raise ValueError(f"in_features={in_features} must be a multiple of the number of groups {n_groups} "
                         f"(AWQ GEMM groups are consecutive input columns)")
    _check_range("codes", codes, 0, 15)
    _check_range("zeros", zeros, 0, 15)
    scales16 = _to_float16("scales", scales)
    return codes, zeros, scales16


def awq_unpack(qweight: Any, qzeros: Any, *, out: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Unpack AWQ GEMM words into ``(codes uint8 (out, in), zeros uint8 (out, G))``.

    Parameters
    ----------
    qweight : ndarray of int32 or uint32, shape (in, out / 8)
    qzeros : ndarray of int32 or uint32, shape (G, out / 8)
        As many words per row as ``qweight``.
    out : tuple of ndarray or None, optional
        Arrays to write the results into, in order (:func:`refquant.prepare.into`).
    """
    given = (qweight, qzeros)  # the caller's arrays, which out must not overlap
    qweight, qzeros = _unpack_args(qweight, qzeros)
    out_features = qweight.shape[1] * 8
    codes = packing.unpack(qweight, BITS, out_features, "awq", "int32")  # (in, out)
    zeros = packing.unpack(qzeros, BITS, out_features, "awq", "int32")  # (G, out)
    return into(out, (np.ascontiguousarray(codes.T), np.ascontiguousarray(zeros.T)), given)


def _unpack_args(qweight: Any, qzeros: Any) -> tuple[np.ndarray, np.ndarray]:
    """The argument rule of :func:`awq_unpack`: 2-D int32/uint32 words, as many per row in both."""
    qweight, qzeros = _words("qweight", qweight), _words("qzeros", qzeros)
    if qweight.shape[1] != qzeros.shape[1]:
        raise ValueError(f"qweight {qweight.shape} and qzeros {qzeros.shape} must have the same number of "
                         f"words per row (out_features / 8)")
    return qweight, qzeros


def awq_dequantize(qweight: Any, qzeros: Any, scales: Any, group_size: int, *, out: Any = None) -> np.ndarray:
    """The float32 weight (out, in) stored in AWQ GEMM tensors, checking their shapes.

    Parameters
    ----------
    qweight : ndarray of int32 or uint32, shape (in, out / 8)
    qzeros : ndarray of int32 or uint32, shape (in / group_size, out / 8)
    scales : ndarray of float16, float32 or float64, shape (in / group_size, out)
    group_size : int >= 1
        Divides ``in`` (the rows of ``qweight``).
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Raises
    ------
    ValueError
        ``scales``/``qzeros`` shapes that do not match ``qweight`` and ``group_size``.
    """
    given = (qweight, qzeros, scales)  # the caller's arrays, which out must not overlap
    qweight, qzeros, scales, group_size, n_groups = _dequantize_args(qweight, qzeros, scales, group_size)
    in_features = qweight.shape[0]
    codes, zeros = awq_unpack(qweight, qzeros)
    g_idx = np.arange(in_features) // group_size
    scale = np.asarray(scales).astype(np.float32).T[:, g_idx]  # (out, in)
    return into(out, scale * (codes.astype(np.float32) - zeros[:, g_idx].astype(np.float32)), given)


def _dequantize_args(qweight: Any, qzeros: Any, scales: Any, group_size: Any
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Validate :func:`awq_dequantize`'s shapes; returns ``(qweight, qzeros, scales, group_size, n_groups)``."""
    group_size = check_int("group_size", group_size, min=1)
    qweight = _words("qweight", qweight)
    in_features, words = qweight.shape
    scales = as_float_array("scales", scales, dtypes=(np.float16, np.float32, np.float64))
    if in_features % group_size:
        raise ValueError(f"in_features={in_features} (qweight rows) must be a multiple of group_size={group_size}")
    n_groups = in_features // group_size
    if scales.shape != (n_groups, words * 8):
        raise ValueError(f"scales has shape {scales.shape}; qweight {qweight.shape} with group_size={group_size} "
                         f"needs ({n_groups}, {words * 8})")
    qzeros = _words("qzeros", qzeros)
    if qzeros.shape != (n_groups, words):
        raise ValueError(f"qzeros has shape {qzeros.shape}; it must be ({n_groups}, {words})")
    return qweight, qzeros, scales, group_size, n_groups


def encode(result: Any) -> dict[str, np.ndarray]:
    """The AWQ GEMM tensors of a 4-bit, natural-order, zero-point quantized weight.

    ``result`` is usually :func:`~refquant.algorithms.awq`'s (its codes quantize ``W s``);
    any 4-bit :class:`~refquant.algorithms.QuantizedWeight` without act-order works.

    Parameters
    ----------
    result : QuantizedWeight
        4-bit, natural column order (no act-order ``g_idx``), with integer zero-points.
    """
    _check_result(result)
    if result.bits != BITS:
        raise ValueError(f"AWQ GEMM stores 4-bit codes; result has bits={result.bits}")
    n_groups = result.scales.shape[1]
    in_features = result.codes.shape[1]
    group_size = in_features // n_groups if n_groups and in_features % n_groups == 0 else None
    if group_size is None or not np.array_equal(result.g_idx, np.arange(in_features) // group_size):
        raise ValueError("AWQ GEMM needs groups of consecutive input columns (no act-order g_idx) and "
                         "in_features a multiple of group_size")
    qweight, qzeros, scales = awq_pack(result.codes, result.zeros, result.scales)
    return {"qweight": qweight, "qzeros": qzeros, "scales": scales}


def decode(tensors: dict[str, Any], group_size: int) -> np.ndarray:
    """Dequantize AWQ GEMM tensors (``qweight``, ``qzeros``, ``scales``) to float32 (out, in).

    Parameters
    ----------
    tensors : mapping
        ``qweight``, ``qzeros``, ``scales`` (as :func:`awq_dequantize`); other keys ignored.
    group_size : int >= 1
        Divides ``in``.
    """
    missing = [k for k in TENSOR_NAMES if k not in tensors]
    if missing:
        raise ValueError(f"AWQ tensors missing: {', '.join(missing)} (have {', '.join(sorted(tensors))})")
    return awq_dequantize(tensors["qweight"], tensors["qzeros"], tensors["scales"], group_size)
