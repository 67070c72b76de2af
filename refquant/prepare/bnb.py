"""Preparation of the bitsandbytes ops (4-bit / 8-bit blockwise, double quantization,
int8 vector-wise rows). Same rules as :mod:`refquant.bnb`: float16/bfloat16/float32
finite inputs, blocksizes of the op's list, payload and absmax sizes that match ``shape``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import check_float
from refquant.bnb import (BLOCKSIZES_4BIT, BLOCKSIZES_8BIT, _absmax_vector, _check_blocksize, _check_quant_type,
                          _input, _packed_4bit, _payload, _scales, _shape, _vectorwise_codes, _vectorwise_input)
from refquant.formats.bnb import NESTED_BLOCKSIZE
from refquant.prepare import Prepared, checked_size, output, outputs

__all__ = ["prepare_bnb_quantize_4bit", "prepare_bnb_dequantize_4bit", "prepare_bnb_quantize_blockwise",
           "prepare_bnb_dequantize_blockwise", "prepare_bnb_double_quantize", "prepare_int8_vectorwise_quant",
           "prepare_int8_vectorwise_dequant", "packed_4bit"]


def _contiguous(arrays: tuple) -> tuple:
    return tuple(np.require(a, requirements="C") if isinstance(a, np.ndarray) else a for a in arrays)


def _codes_and_absmax(out: Any, x: Any, n_codes: int, n: int, blocksize: int) -> tuple:
    """Result arrays of a blockwise quantization of n values: codes uint8 (n_codes,), absmax
    float32 (ceil(n / blocksize),)."""
    return outputs(out, (((n_codes,), np.uint8), ((-(-n // blocksize),), np.float32)), (x,))


def prepare_bnb_quantize_4bit(x: Any, quant_type: str, blocksize: int, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.bnb.bnb_quantize_4bit`: ``x`` flattened (C order) to finite float32."""
    quant_type = _check_quant_type(quant_type)
    blocksize = _check_blocksize(blocksize, BLOCKSIZES_4BIT)
    flat, _ = _input("x", x)
    return Prepared((np.require(flat, requirements="C"), quant_type, blocksize), {},
                    _codes_and_absmax(out, x, -(-flat.size // 2), flat.size, blocksize))


def packed_4bit(packed: Any, absmax: Any, quant_type: Any, blocksize: Any, shape: Any) -> tuple:
    """``(packed, absmax, quant_type, blocksize, shape)`` of a 4-bit weight, checked
    (sizes computed without overflow) and C-contiguous."""
    checked_size(_shape(shape))
    return _contiguous(_packed_4bit(packed, absmax, quant_type, blocksize, shape))


def prepare_bnb_dequantize_4bit(packed: Any, absmax: Any, quant_type: str, blocksize: int, shape: Any, *,
                                out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.bnb.bnb_dequantize_4bit`."""
    args = packed_4bit(packed, absmax, quant_type, blocksize, shape)
    return Prepared(args, {}, output(out, args[-1], np.float32, (packed, absmax)))


def prepare_bnb_quantize_blockwise(x: Any, blocksize: int, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.bnb.bnb_quantize_blockwise`: ``x`` flattened to finite float32."""
    blocksize = _check_blocksize(blocksize, BLOCKSIZES_8BIT)
    flat, _ = _input("x", x)
    return Prepared((np.require(flat, requirements="C"), blocksize), {},
                    _codes_and_absmax(out, x, flat.size, flat.size, blocksize))


def prepare_bnb_dequantize_blockwise(codes: Any, absmax: Any, blocksize: int, shape: Any, *,
                                     out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.bnb.bnb_dequantize_blockwise`: n uint8 codes, ceil(n / blocksize) absmax."""
    blocksize = _check_blocksize(blocksize, BLOCKSIZES_8BIT)
    shape = _shape(shape)
    n = checked_size(shape)
    data = np.require(_payload("codes", codes, n), requirements="C")
    scales = np.require(_scales("absmax", absmax, -(-n // blocksize)), requirements="C")
    return Prepared((data, scales, blocksize, shape), {}, output(out, shape, np.float32, (codes, absmax)))


def prepare_bnb_double_quantize(absmax: Any, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.bnb.bnb_double_quantize`: a finite, non-empty 1-D float32 vector."""
    arr = np.require(_absmax_vector(absmax), requirements="C")
    nb = arr.size
    return Prepared((arr,), {}, outputs(out, (((nb,), np.uint8), ((-(-nb // NESTED_BLOCKSIZE),), np.float32),
                                              ((), np.float32)), (absmax,)))


def prepare_int8_vectorwise_quant(x: Any, threshold: float = 0.0, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.bnb.int8_vectorwise_quant`: finite 2-D x (dtype kept), threshold >= 0;
    ``out`` entry 2 (the outlier columns, sized by the data) is None."""
    arr = np.require(_vectorwise_input("x", x), requirements="C")
    threshold = check_float("threshold", threshold, min=0.0)
    return Prepared((arr, threshold), {},
                    outputs(out, ((arr.shape, np.int8), (arr.shape[:1], np.float32), None), (x,)))


def prepare_int8_vectorwise_dequant(q: Any, row_stats: Any, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.bnb.int8_vectorwise_dequant`: 2-D int8 codes, one finite stat per row."""
    codes, stats = _contiguous(_vectorwise_codes(q, row_stats))
    return Prepared((codes, stats), {}, output(out, codes.shape, np.float32, (q, row_stats)))
