"""Array-in / array-out forms of the weight-quantization algorithms: the ops
``rtn_quantize``, ``gptq_quantize`` and ``awq_quantize`` of ``accel/ops.py``.

Each returns the result's ``.dequantized`` weight (float32, ``W``'s shape), which is
what a backend's implementation is compared on (conformance/test_algorithms.py). The
ops' format axis names the code width and group size: ``"{bits}bit_g{group_size}"`` or
``"{bits}bit_perchannel"`` (:data:`FORMATS`, :func:`format_args`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import check_name
from refquant.algorithms.awq import awq
from refquant.algorithms.gptq import gptq
from refquant.algorithms.rtn import rtn

__all__ = ["FORMATS", "format_args", "rtn_quantize", "gptq_quantize", "awq_quantize"]

#: The format axis of the algorithm ops in the conformance matrix.
FORMATS = ("3bit_g128", "4bit_g128", "4bit_perchannel")


def format_args(fmt: str) -> dict[str, int]:
    """``"3bit_g128"`` -> ``{"bits": 3, "group_size": 128}``; ``"_perchannel"`` -> -1.

    Parameters
    ----------
    fmt : {"3bit_g128", "4bit_g128", "4bit_perchannel"}
        The op format name (ValueError otherwise).
    """
    fmt = check_name("fmt", fmt, FORMATS)
    bits, group = fmt.split("_")
    return {"bits": int(bits[:-3]), "group_size": -1 if group == "perchannel" else int(group[1:])}


def rtn_quantize(W: Any, bits: int = 4, group_size: int = 128, sym: bool = True) -> np.ndarray:
    """:func:`refquant.algorithms.rtn` (GPTQ's grid rule) -> dequantized float32 (out, in).

    Parameters
    ----------
    W : ndarray of float32 or float64, shape (out_features, in_features), finite, non-empty
    bits : {2, 3, 4, 8}
    group_size : int, -1 or >= 1
        Columns per group; -1 (or a size >= in_features): one group per row.
    sym : bool
        Symmetric grid (True) or asymmetric with a zero-point.
    """
    return rtn(W, bits, group_size, sym).dequantized


def gptq_quantize(W: Any, H: Any, bits: int = 4, group_size: int = 128, act_order: bool = False,
                  sym: bool = True) -> np.ndarray:
    """:func:`refquant.algorithms.gptq` (damp 0.01, blocks of 128, float32) -> dequantized
    float32 (out, in).

    Parameters
    ----------
    W : ndarray of float32 or float64, shape (out_features, in_features), finite, non-empty
    H : ndarray of float32 or float64, shape (in_features, in_features)
        Symmetric positive semi-definite Hessian ``2 XᵀX / N`` (finite).
    bits : {2, 3, 4, 8}
    group_size : int, -1 or >= 1
        Columns per group; -1 (or a size >= in_features): one group per row.
    act_order : bool
        Quantize columns in order of decreasing ``diag(H)``.
    sym : bool
        Symmetric grid (True) or asymmetric with a zero-point.
    """
    return gptq(W, H, bits, group_size, act_order, sym).dequantized


def awq_quantize(W: Any, X: Any, bits: int = 4, group_size: int = 128) -> np.ndarray:
    """:func:`refquant.algorithms.awq`'s activation-aware scale search (zero-point groups,
    20 ratios) without the clip search (``clip=False``, llm-awq's setting for query/key
    projections) -> the effective dequantized weight ``Q(W s) / s``, float32 (out, in).

    The scale search minimizes the layer's output error over ``X`` itself, so another
    implementation can be held to that error; the clip search minimizes per-group
    partial products on subsampled tokens, whose outcome is not monotone in the quality
    of the preceding search (conformance/contracts.py), so it is not part of the op.

    Parameters
    ----------
    W : ndarray of float32 or float64, shape (out_features, in_features), finite, non-empty
    X : ndarray of float, shape (..., in_features)
        Finite calibration activations (leading axes are tokens).
    bits : {2, 3, 4, 8}
    group_size : int, -1 or >= 1
        Columns per group; -1 (or a size >= in_features): one group per row.
    """
    return awq(W, X, bits, group_size, clip=False).dequantized
