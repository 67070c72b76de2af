"""Integer and dequant matmuls: launch code for ``src/matmul.cu`` (int8 GEMM by dp4a,
zero points, int32 dequantization, LLM.int8(), fused NF4/FP4 W4A16)."""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.cupy import bnb
from accel.cupy._launch import empty_matmul, fix_nonfinite_products, i32, i64, raise_reference_error, require, stride_grid
from refquant.dtypes.codebooks import get_codebook
from refquant.formats.bnb import BLOCKSIZES_4BIT

__all__ = ["int8_matmul", "int8_matmul_zp", "dequantize_int32", "llm_int8_matmul", "ternary_matmul",
           "bnb_dequant_matmul_4bit"]

_CODES = (np.dtype(np.int8), np.dtype(np.uint8))


def _signed_rows(dev: Any, src: Any, rows: int, k: int, row_stride: int, col_stride: int) -> tuple[Any, Any, int]:
    """int8 rows padded to a multiple of 4 (as int32 quads) and their row sums; a uint8
    operand is shifted by -128 (returned offset 128, to move into its zero point)."""
    kp = -(-k // 4) * 4
    dst, sums = dev.empty((rows, max(kp, 4)), np.int8), dev.empty(max(rows, 1), np.int64)
    unsigned = np.dtype(src.dtype) == np.uint8
    grid, block = stride_grid(dev, rows)
    dev.launch("matmul", "to_signed_rows", grid, block,
               [dev.contiguous(src, src.dtype).view(np.uint8), i64(rows), i64(k), i64(row_stride), i64(col_stride),
                i32(unsigned), dst, i64(max(kp, 4)), sums])
    return dst, sums, 128 if unsigned else 0


def _gemm_nt(dev: Any, a: Any, a_rs: int, a_cs: int, b: Any, b_rs: int, b_cs: int, m: int, n: int, k: int,
             za: Any, zb: Any) -> tuple[Any, bool]:
    """(a - za) . (b - zb)^T over k for a's m rows and b's n rows, int32 (m, n), and
    whether some result left int32."""
    a_s, row_sums, oa = _signed_rows(dev, a, m, k, a_rs, a_cs)
    b_s, col_sums, ob = _signed_rows(dev, b, n, k, b_rs, b_cs)
    out, bad = dev.empty((m, n), np.int32), dev.zeros(1, np.int32)
    grid, block = stride_grid(dev, m * n)
    dev.launch("matmul", "int8_gemm_nt", grid, block,
               [a_s.view(np.int32), b_s.view(np.int32), i64(m), i64(n), i64(a_s.shape[1] // 4), i64(k),
                dev.contiguous(dev.asarray(za) - oa, np.int64), dev.contiguous(dev.asarray(zb) - ob, np.int64),
                row_sums, col_sums, out, bad])
    return out, bool(int(bad[0]))


def _operands_ok(a: Any, b: Any) -> bool:
    return (hasattr(a, "dtype") and hasattr(b, "dtype") and np.dtype(a.dtype) in _CODES
            and np.dtype(b.dtype) in _CODES and a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[0])


def int8_matmul(dev: Any, a_q: Any, b_q: Any) -> Any:
    """Backend op: same contract as :func:`refquant.matmul.int8_matmul` (exact int32)."""
    require(dev, _operands_ok(a_q, b_q), "int8_matmul", a_q, b_q)
    (m, k), n = a_q.shape, b_q.shape[1]
    out, bad = _gemm_nt(dev, a_q, k, 1, b_q, 1, n, m, n, k, np.zeros(m, np.int64), np.zeros(n, np.int64))
    if bad:
        raise_reference_error(dev, "int8_matmul", a_q, b_q)
    return out


def int8_matmul_zp(dev: Any, a_q: Any, b_q: Any, a_zero: Any, b_zero: Any) -> Any:
    """Backend op: same contract as :func:`refquant.matmul.int8_matmul_zp` (exact int32)."""
    require(dev, _operands_ok(a_q, b_q), "int8_matmul_zp", a_q, b_q, a_zero, b_zero)
    (m, k), n = a_q.shape, b_q.shape[1]
    # prepared zero points: int64 (m,) and (n,)
    out, bad = _gemm_nt(dev, a_q, k, 1, b_q, 1, n, m, n, k, a_zero, b_zero)
    if bad:
        raise_reference_error(dev, "int8_matmul_zp", a_q, b_q, a_zero, b_zero)
    return out


def dequantize_int32(dev: Any, acc: Any, a_scale: Any, b_scale: Any) -> Any:
    """Backend op: same contract as :func:`refquant.matmul.dequantize_int32` (bit-exact:
    the same two float64 products and one rounding)."""
    require(dev, hasattr(acc, "dtype") and np.dtype(acc.dtype) == np.int32 and acc.ndim == 2,
            "dequantize_int32", acc, a_scale, b_scale)
    m, n = acc.shape   # prepared scales: float64 (m,) and (n,)
    out = dev.empty((m, n), np.float32)
    grid, block = stride_grid(dev, m * n)
    dev.launch("matmul", "dequantize_int32", grid, block,
               [dev.contiguous(acc, np.int32), i64(m), i64(n), dev.contiguous(a_scale, np.float64),
                dev.contiguous(b_scale, np.float64), out])
    return out


def llm_int8_matmul(dev: Any, x: Any, w: Any, threshold: float = 6.0) -> tuple[Any, Any]:
    """Backend op: same contract as :func:`refquant.matmul.llm_int8_matmul` (Nmse)."""
    require(dev, hasattr(x, "dtype") and hasattr(w, "dtype") and x.ndim >= 1 and w.ndim == 2
            and x.shape[-1] == w.shape[1], "llm_int8_matmul", x, w, threshold)
    empty = empty_matmul(dev, x.shape[:-1], x.shape[-1], w.shape[0])
    if empty is not None:
        return empty, dev.zeros(0, np.int64)
    x2 = x.reshape(-1, x.shape[-1])
    xq, xs, cols = bnb.int8_vectorwise_quant(dev, x2, threshold)
    wq, ws, _ = bnb.int8_vectorwise_quant(dev, w, 0.0)
    rows, k = x2.shape
    out_f = w.shape[0]
    acc, _ = _gemm_nt(dev, xq, k, 1, wq, k, 1, rows, out_f, k, np.zeros(rows, np.int64), np.zeros(out_f, np.int64))
    host_cols = dev.to_numpy(cols)
    xo = dev.contiguous(x2[:, host_cols] if host_cols.size else dev.zeros((rows, 1), np.float32), np.float32)
    wo = dev.contiguous(w[:, host_cols] if host_cols.size else dev.zeros((out_f, 1), np.float32), np.float32)
    out = dev.empty((rows, out_f), np.float32)
    grid, block = stride_grid(dev, rows * out_f)
    dev.launch("matmul", "llm_int8_epilogue", grid, block,
               [acc, i64(rows), i64(out_f), xs, ws, xo, wo, i64(host_cols.size), out])
    return out.reshape(*x.shape[:-1], out_f), cols


def ternary_matmul(dev: Any, a_q: Any, t: Any) -> Any:
    """Backend op: same contract as :func:`refquant.matmul.ternary_matmul` (exact int32,
    adds and subtracts only); prepared int8 (m, k) and ternary int8 (k, n)."""
    (m, k), n = a_q.shape, t.shape[1]
    out, bad = dev.empty((m, n), np.int32), dev.zeros(1, np.int32)
    grid, block = stride_grid(dev, m * n)
    dev.launch("matmul", "ternary_gemm", grid, block,
               [dev.contiguous(a_q, np.int8), dev.contiguous(t, np.int8), i64(m), i64(n), i64(k), out, bad])
    if int(bad[0]):
        raise_reference_error(dev, "ternary_matmul", a_q, t)
    return out


def bnb_dequant_matmul_4bit(dev: Any, x: Any, packed: Any, absmax: Any, quant_type: str, blocksize: int,
                            shape: Any) -> Any:
    """Backend op: same contract as :func:`refquant.matmul.bnb_dequant_matmul_4bit`,
    fused (the weight is never materialized; Nmse)."""
    ok = (isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(d, (int, np.integer)) for d in shape)
          and quant_type in ("nf4", "fp4") and blocksize in BLOCKSIZES_4BIT and hasattr(x, "dtype") and x.ndim >= 1)
    n = int(shape[0]) * int(shape[1]) if ok else 0
    require(dev, ok and x.shape[-1] == shape[1] and np.dtype(packed.dtype) == np.uint8 and packed.size == -(-n // 2)
            and np.dtype(absmax.dtype) == np.float32 and absmax.size == -(-n // blocksize),
            "bnb_dequant_matmul_4bit", x, packed, absmax, quant_type, blocksize, shape)
    out_f, in_f = int(shape[0]), int(shape[1])
    empty = empty_matmul(dev, x.shape[:-1], in_f, out_f)
    if empty is not None:
        return empty
    x2 = dev.contiguous(x, np.float32).reshape(-1, in_f)
    out = dev.empty((x2.shape[0], out_f), np.float32)
    dev.launch("matmul", "bnb_matmul_4bit", (max(1, min(out_f, dev.max_blocks)),), (128,),
               [x2, i64(x2.shape[0]), dev.contiguous(packed, np.uint8).reshape(-1),
                dev.contiguous(absmax, np.float32).reshape(-1),
                dev.constant(f"codebook:{quant_type}", np.asarray(get_codebook(quant_type).table, np.float32)), i64(out_f), i64(in_f),
                i32(int(blocksize).bit_length() - 1), out])
    out = fix_nonfinite_products(dev, out, x2,
                                 lambda: bnb.bnb_dequantize_4bit(dev, packed, absmax, quant_type, blocksize, shape))
    return out.reshape(*x.shape[:-1], out_f)
