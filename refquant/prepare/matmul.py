"""Preparation of the integer and fused matmul ops. Same rules as :mod:`refquant.matmul`:
int8/uint8 code matrices with equal inner dimensions, zero points within the codes'
range (expanded to one per row / column), scales finite (expanded likewise), finite
float activations and weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant.matmul import _acc_scales, _code_pair, _llm_int8_args, _ternary_operands, _w4a16_args, _zero_point
from refquant.prepare import Prepared, output

__all__ = ["prepare_int8_matmul", "prepare_int8_matmul_zp", "prepare_dequantize_int32", "prepare_llm_int8_matmul",
           "prepare_bnb_dequant_matmul_4bit", "prepare_ternary_matmul"]


def _c(a: Any) -> Any:
    return np.require(a, requirements="C") if isinstance(a, np.ndarray) else a


def prepare_int8_matmul(a_q: Any, b_q: Any) -> Prepared:
    """Arguments of :func:`refquant.matmul.int8_matmul`."""
    a, b = _code_pair(a_q, b_q)
    return Prepared((_c(a), _c(b)))


def prepare_int8_matmul_zp(a_q: Any, b_q: Any, a_zero: Any, b_zero: Any) -> Prepared:
    """Arguments of :func:`refquant.matmul.int8_matmul_zp`; zero points become int64 (m,) and (n,)."""
    a, b = _code_pair(a_q, b_q)
    za = _zero_point("a_zero", a_zero, a.shape[0], a, "row of a_q")
    zb = _zero_point("b_zero", b_zero, b.shape[1], b, "column of b_q")
    return Prepared((_c(a), _c(b), _c(za), _c(zb)))


def prepare_dequantize_int32(acc: Any, a_scale: Any, b_scale: Any, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.matmul.dequantize_int32`; scales become float64 (m,) and (n,)."""
    acc_arr, sa, sb = _acc_scales(acc, a_scale, b_scale)
    return Prepared((_c(acc_arr), _c(sa), _c(sb)), {}, output(out, acc_arr.shape, np.float32, (acc,)))


def prepare_llm_int8_matmul(x: Any, w: Any, threshold: float = 6.0) -> Prepared:
    """Arguments of :func:`refquant.matmul.llm_int8_matmul`."""
    xa, wa, threshold = _llm_int8_args(x, w, threshold)
    return Prepared((_c(xa), _c(wa), threshold))


def prepare_bnb_dequant_matmul_4bit(x: Any, packed: Any, absmax: Any, quant_type: str, blocksize: int,
                                    shape: Any) -> Prepared:
    """Arguments of :func:`refquant.matmul.bnb_dequant_matmul_4bit`."""
    return Prepared(tuple(_c(a) for a in _w4a16_args(x, packed, absmax, quant_type, blocksize, shape)))


def prepare_ternary_matmul(a_q: Any, t: Any) -> Prepared:
    """Arguments of :func:`refquant.matmul.ternary_matmul`: int8 (m, k) and ternary int8 (k, n)."""
    a, w = _ternary_operands(a_q, t)
    return Prepared((_c(a), _c(w)))
