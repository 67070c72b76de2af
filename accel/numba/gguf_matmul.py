"""Fused W4A16 product with a GGUF weight: ``y = x @ W.T`` for Q4_0 and Q4_K weights.

The weight stays in its ggml blocks; each parallel task decodes a tile of ``TILE`` weight
rows into a small float32 buffer (ggml's ``dequantize_row_q4_0`` / ``_q4_K`` values,
bit for bit: the decoders of :mod:`accel.numba.gguf_legacy` / :mod:`accel.numba.gguf_kquants`)
and multiplies every token's activations with it, four rows at a time with 16 float32
accumulator lanes per row. The tile (at most 16 x in_features floats) stays in cache, so
the weight is read from memory once, compressed: a GEMV moves 4.5 bits per weight.

Contract: Nmse against :func:`refquant.formats.gguf_matmul.dequant_matmul` (float64
product of the same dequantized weight); float32 accumulation in another order is not
bit-exact, and is not claimed to be.
"""

from __future__ import annotations

from typing import Any

import math

import numba
import numpy as np
from numba import prange

from accel.numba.gguf_kquants import dequant_q4k_block
from accel.numba.gguf_legacy import dequant_q40_block
from accel.numba.gguf_math import LANES, gkernel, ghelper, stack_f32

__all__ = ["MATMUL_QTYPES", "dequant_matmul"]

MATMUL_QTYPES = frozenset({"q4_0", "q4_k"})
TILE = 16  # weight rows decoded per task
_ZERO = np.float32(0.0)


@ghelper
def _decode_row(kind, q, w):  # type: ignore[no-untyped-def]
    """One weight row: GGUF bytes ``q`` (row_bytes,) -> float32 ``w`` (in_features,)."""
    if kind == 0:  # Q4_0: 18-byte blocks of 32
        for b in range(w.shape[0] // 32):
            dequant_q40_block(q[18 * b:18 * b + 18], w[32 * b:32 * b + 32])
    else:  # Q4_K: 144-byte super-blocks of 256
        for b in range(w.shape[0] // 256):
            dequant_q4k_block(q[144 * b:144 * b + 144], w[256 * b:256 * b + 256])


@ghelper
def _dot4(xr, wt, r, out_t, col):  # type: ignore[no-untyped-def]
    """out_t[col + k] = xr · wt[r + k] for k = 0..3, in 16 float32 lanes per row."""
    a0 = numba.carray(stack_f32(), LANES)
    a1 = numba.carray(stack_f32(), LANES)
    a2 = numba.carray(stack_f32(), LANES)
    a3 = numba.carray(stack_f32(), LANES)
    for j in range(LANES):
        a0[j] = _ZERO
        a1[j] = _ZERO
        a2[j] = _ZERO
        a3[j] = _ZERO
    # (K/16, 16) views: the lane index is then a plain loop variable (a computed index
    # such as k + j gets Numba's negative-index wraparound, which turns loads into gathers)
    xv = xr.reshape((-1, LANES))
    w0 = wt[r].reshape((-1, LANES))
    w1 = wt[r + 1].reshape((-1, LANES))
    w2 = wt[r + 2].reshape((-1, LANES))
    w3 = wt[r + 3].reshape((-1, LANES))
    for i in range(xv.shape[0]):
        for j in range(LANES):
            v = xv[i, j]
            a0[j] += v * w0[i, j]
            a1[j] += v * w1[i, j]
            a2[j] += v * w2[i, j]
            a3[j] += v * w3[i, j]
    s0 = _ZERO
    s1 = _ZERO
    s2 = _ZERO
    s3 = _ZERO
    for j in range(LANES):
        s0 += a0[j]
        s1 += a1[j]
        s2 += a2[j]
        s3 += a3[j]
    n = out_t.shape[0]
    if col < n:
        out_t[col] = s0
    if col + 1 < n:
        out_t[col + 1] = s1
    if col + 2 < n:
        out_t[col + 2] = s2
    if col + 3 < n:
        out_t[col + 3] = s3


@gkernel
def _matmul(kind, x, data, out):  # type: ignore[no-untyped-def]
    """out (T, O) = x (T, K) @ W.T with W's rows GGUF-encoded in data (O, row_bytes)."""
    n_tok, k = x.shape
    n_out = data.shape[0]
    for c in prange((n_out + TILE - 1) // TILE):
        wt = np.zeros((TILE, k), np.float32)  # rows past the end stay zero
        r0 = c * TILE
        nr = min(TILE, n_out - r0)
        for r in range(nr):
            _decode_row(kind, data[r0 + r], wt[r])
        for t in range(n_tok):
            for r in range(0, nr, 4):
                _dot4(x[t], wt, r, out[t], r0 + r)


def dequant_matmul(x: np.ndarray, data: np.ndarray, qtype: Any, shape: tuple[int, int]) -> np.ndarray:
    """Backend op ``gguf_dequant_matmul``: ``x @ W.T`` for a Q4_0 or Q4_K weight ``W`` of
    ``shape`` (out, in), on arguments prepared by :mod:`refquant.prepare.gguf` (finite
    float ``x`` (..., in), flat uint8 ``data`` of exactly ``shape``'s blocks)."""
    from accel.numba.gguf import kernel_name

    name = kernel_name(qtype, MATMUL_QTYPES)
    rows = np.ascontiguousarray(x.reshape(math.prod(x.shape[:-1]), shape[1]), dtype=np.float32)
    out = np.empty((rows.shape[0], shape[0]), np.float32)
    if out.size:
        if shape[1] == 0:
            out[:] = 0.0
        else:
            _matmul(0 if name == "q4_0" else 1, rows, data.reshape(shape[0], data.size // max(shape[0], 1)), out)
            if not np.isfinite(out).all():          # float32 sums overflowed: the reference's float64 there
                from accel.numba.gguf import gguf_dequantize
                from accel.numba.matmul import exact_where_nonfinite

                w = gguf_dequantize(data, qtype, shape, out=np.empty(shape, np.float32))
                exact_where_nonfinite(rows, w, out)
    return out.reshape(x.shape[:-1] + (shape[0],))
