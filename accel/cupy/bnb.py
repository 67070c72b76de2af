"""bitsandbytes family: launch code for ``src/bnb.cu`` (NF4/FP4, 8-bit blockwise,
double quantization, int8 vector-wise)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from accel.cupy._launch import f32, i32, i64, raise_reference_error, require, stride_grid, u32
from refquant.dtypes.codebooks import get_codebook
from refquant.formats.bnb import BLOCKSIZES_4BIT, BLOCKSIZES_8BIT, NESTED_BLOCKSIZE, dynamic_map, lut_8bit

__all__ = ["bnb_quantize_4bit", "bnb_dequantize_4bit", "bnb_quantize_blockwise", "bnb_dequantize_blockwise",
           "bnb_double_quantize", "int8_vectorwise_quant", "int8_vectorwise_dequant"]

_FLOATS = ("float32", "float16", "bfloat16")


def _block_grid(dev: Any, n_blocks: int, blocksize: int) -> tuple[tuple[int], tuple[int]]:
    """One CUDA block per bitsandbytes block (grid-stride), a multiple of 32 threads."""
    return (max(1, min(n_blocks, dev.max_blocks)),), (min(256, max(32, blocksize // 2)),)


def _flat32(dev: Any, x: Any) -> Any:
    return dev.contiguous(x, np.float32).reshape(-1)


def _is_float_input(x: Any) -> bool:
    return hasattr(x, "dtype") and np.dtype(x.dtype).name in _FLOATS


def bnb_quantize_4bit(dev: Any, x: Any, quant_type: str, blocksize: int) -> tuple[Any, Any]:
    """Backend op: same contract as :func:`refquant.bnb.bnb_quantize_4bit`."""
    require(dev, _is_float_input(x) and quant_type in ("nf4", "fp4") and blocksize in BLOCKSIZES_4BIT,
            "bnb_quantize_4bit", x, quant_type, blocksize)
    flat = _flat32(dev, x)
    n = flat.size
    n_blocks = -(-n // blocksize)
    cb = get_codebook(quant_type)
    pad_code = int(cb.order[int(np.searchsorted(cb.midpoints, np.float32(0.0), side="left"))])
    packed, absmax, bad = dev.empty(-(-n // 2), np.uint8), dev.empty(n_blocks, np.float32), dev.zeros(1, np.int32)
    grid, block = _block_grid(dev, n_blocks, blocksize)
    dev.launch("bnb", "bnb_quantize_4bit", grid, block,
               [flat, packed, absmax, i64(n), i32(blocksize), dev.contiguous(cb.midpoints, np.float32),
                i32(cb.midpoints.size), dev.contiguous(cb.order, np.uint8), i32(pad_code), bad])
    if int(bad[0]):
        raise_reference_error(dev, "bnb_quantize_4bit", x, quant_type, blocksize)
    return packed, absmax


def _size(shape: Any) -> int | None:
    try:
        dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        return math.prod(int(d) for d in dims) if all(isinstance(d, (int, np.integer)) and d >= 0 for d in dims) \
            else None
    except TypeError:
        return None


def _shape(shape: Any) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)


def bnb_dequantize_4bit(dev: Any, packed: Any, absmax: Any, quant_type: str, blocksize: int, shape: Any) -> Any:
    """Backend op: same contract as :func:`refquant.bnb.bnb_dequantize_4bit`."""
    n = _size(shape)
    args = (packed, absmax, quant_type, blocksize, shape)
    require(dev, n is not None and quant_type in ("nf4", "fp4") and blocksize in BLOCKSIZES_4BIT
            and np.dtype(packed.dtype) == np.uint8 and packed.size == -(-n // 2)
            and np.dtype(absmax.dtype) == np.float32 and absmax.size == -(-n // blocksize),
            "bnb_dequantize_4bit", *args)
    out = dev.empty(n, np.float32)
    grid, block = stride_grid(dev, -(-n // 2))
    dev.launch("bnb", "bnb_dequantize_4bit", grid, block,
               [dev.contiguous(packed, np.uint8).reshape(-1), dev.contiguous(absmax, np.float32).reshape(-1),
                dev.constant(f"codebook:{quant_type}", np.asarray(get_codebook(quant_type).table, np.float32)), i64(n), i32(blocksize), out])
    return out.reshape(_shape(shape))


def _quantize_8bit(dev: Any, flat: Any, offset: Any, blocksize: int) -> tuple[Any, Any, bool]:
    n = flat.size
    n_blocks = -(-n // blocksize)
    codes, absmax, bad = dev.empty(n, np.uint8), dev.empty(n_blocks, np.float32), dev.zeros(1, np.int32)
    grid, block = _block_grid(dev, n_blocks, blocksize)
    dev.launch("bnb", "bnb_quantize_8bit", grid, block,
               [flat, offset, codes, absmax, i64(n), i32(blocksize), dev.constant("bnb_lut_8bit", np.asarray(lut_8bit(), np.uint8)), bad])
    return codes, absmax, bool(int(bad[0]))


def bnb_quantize_blockwise(dev: Any, x: Any, blocksize: int) -> tuple[Any, Any]:
    """Backend op: same contract as :func:`refquant.bnb.bnb_quantize_blockwise`."""
    require(dev, _is_float_input(x) and blocksize in BLOCKSIZES_8BIT, "bnb_quantize_blockwise", x, blocksize)
    codes, absmax, bad = _quantize_8bit(dev, _flat32(dev, x), dev.zeros(1, np.float32), blocksize)
    if bad:
        raise_reference_error(dev, "bnb_quantize_blockwise", x, blocksize)
    return codes, absmax


def bnb_dequantize_blockwise(dev: Any, codes: Any, absmax: Any, blocksize: int, shape: Any) -> Any:
    """Backend op: same contract as :func:`refquant.bnb.bnb_dequantize_blockwise`."""
    n = _size(shape)
    require(dev, n is not None and blocksize in BLOCKSIZES_8BIT and np.dtype(codes.dtype) == np.uint8
            and codes.size == n and np.dtype(absmax.dtype) == np.float32 and absmax.size == -(-n // blocksize),
            "bnb_dequantize_blockwise", codes, absmax, blocksize, shape)
    out = dev.empty(n, np.float32)
    grid, block = stride_grid(dev, n)
    dev.launch("bnb", "bnb_dequantize_8bit", grid, block,
               [dev.contiguous(codes, np.uint8).reshape(-1), dev.contiguous(absmax, np.float32).reshape(-1),
                dev.constant("bnb_dynamic_map", np.asarray(dynamic_map(), np.float32)), i64(n), i32(blocksize), out])
    return out.reshape(_shape(shape))


def bnb_double_quantize(dev: Any, absmax: Any) -> tuple[Any, Any, Any]:
    """Backend op: same contract as :func:`refquant.bnb.bnb_double_quantize` (the offset
    in torch's one-thread summation order, then 8-bit blocks of 256)."""
    require(dev, hasattr(absmax, "dtype") and np.dtype(absmax.dtype) == np.float32 and absmax.ndim == 1
            and absmax.size > 0, "bnb_double_quantize", absmax)
    flat = _flat32(dev, absmax)
    offset = dev.empty(1, np.float32)
    dev.launch("bnb", "torch_mean", (1,), (1,), [flat, i64(flat.size), offset])
    codes, nested, bad = _quantize_8bit(dev, flat, offset, NESTED_BLOCKSIZE)
    if bad:
        raise_reference_error(dev, "bnb_double_quantize", absmax)
    return codes, nested, offset.reshape(())


def int8_vectorwise_quant(dev: Any, x: Any, threshold: float = 0.0) -> tuple[Any, Any, Any]:
    """Backend op: same contract as :func:`refquant.bnb.int8_vectorwise_quant`."""
    require(dev, _is_float_input(x) and x.ndim == 2 and isinstance(threshold, (int, float, np.floating))
            and not isinstance(threshold, bool) and threshold >= 0, "int8_vectorwise_quant", x, threshold)
    rows, k = x.shape
    x32 = dev.contiguous(x, np.float32)
    # outliers compare in the input dtype; widening is exact and monotone, so the float32
    # value of the input-dtype threshold compares the same
    limit = np.float32(np.asarray(np.float32(threshold)).astype(x.dtype)) if threshold > 0 else np.float32(np.inf)
    stats, flags, bad = dev.empty(rows, np.float32), dev.zeros(max(k, 1), np.int32), dev.zeros(1, np.int32)
    dev.launch("bnb", "int8_row_stats", (max(1, min(rows, dev.max_blocks)),), (128,),
               [x32, i64(rows), i64(k), u32(limit.view(np.uint32)), stats, flags, bad])
    if int(bad[0]):
        raise_reference_error(dev, "int8_vectorwise_quant", x, threshold)
    cols = np.flatnonzero(dev.to_numpy(flags)[:k]).astype(np.int64)
    q = dev.empty((rows, k), np.int8)
    grid, block = stride_grid(dev, rows * k)
    dev.launch("bnb", "int8_row_codes", grid, block,
               [x32, i64(rows), i64(k), f32(limit), stats, flags, i32(rows > 1 and cols.size > 0), q])
    return q, stats, dev.asarray(cols)


def int8_vectorwise_dequant(dev: Any, q: Any, row_stats: Any) -> Any:
    """Backend op: same contract as :func:`refquant.bnb.int8_vectorwise_dequant`."""
    require(dev, hasattr(q, "dtype") and np.dtype(q.dtype) == np.int8 and q.ndim == 2
            and hasattr(row_stats, "dtype") and np.dtype(row_stats.dtype) == np.float32
            and tuple(row_stats.shape) == (q.shape[0],), "int8_vectorwise_dequant", q, row_stats)
    rows, k = q.shape
    out = dev.empty((rows, k), np.float32)
    grid, block = stride_grid(dev, rows * k)
    dev.launch("bnb", "int8_row_dequant", grid, block,
               [dev.contiguous(q, np.int8), i64(rows), i64(k), dev.contiguous(row_stats, np.float32),
                f32(1 / 127), out])
    return out
