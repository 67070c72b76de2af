"""Integer and dequant matmuls as Numba kernels: exact int8 GEMM (int32 results), the
zero-point expansion, int32 dequantization, LLM.int8() and the fused NF4/FP4 W4A16
dequant-matmul.

Mirrors :mod:`refquant.matmul`:

* ``_gemm`` - ``int8_matmul``: ``a (m, k) @ b (k, n)`` in tiles of ``TILE_M`` rows by
  ``TILE_N`` columns (parallel over tiles), each row of ``b``'s tile added into an
  integer accumulator tile that stays in L1 (a vectorizable ``axpy``). The accumulator
  is int32 when ``k * max|a| * max|b|`` cannot leave int32 (integer addition is exact
  and associative, so the result is the exact integer), else int64 and the result is
  range-checked like the reference.
* ``int8_matmul_zp`` - the same GEMM plus the rank-1 corrections
  ``- zb * rowsum(a) - za * colsum(b) + k * za * zb`` (``_zp_correct``), in int64.
* ``_dequantize_int32`` - ``dequantize_int32``: ``(acc * sa) * sb`` in float64, one
  rounding to float32: the reference's operations in its order (Exact).
* ``_gemm_nt_dequant`` - ``llm_int8_matmul``: int8 dot products of activation rows
  with weight rows (both contiguous in ``k``), dequantized in float64 with
  ``row_stat * col_stat / 127**2``, plus the outlier feature columns in float64.
* ``_dequant_matmul_4bit`` - ``bnb_dequant_matmul_4bit`` fused: each output row of the
  NF4/FP4 weight is dequantized into an L1 buffer (``code[nibble] * absmax``, the
  reference's values) and multiplied with every token; the full weight is never
  materialized. Dot products run in ``LANES`` float32 partial sums (a vectorizable
  loop without reassociation), summed in float64: an Nmse contract, not Exact.
"""

from __future__ import annotations

import math
import numpy as np
from numba import prange

from accel.numba import bnb
from accel.numba._jit import helper, kernel
from refquant.matmul import to_int32

__all__ = ["int8_matmul", "int8_matmul_zp", "dequantize_int32", "llm_int8_matmul", "bnb_dequant_matmul_4bit"]

TILE_M = 32      # rows of a per task
TILE_N = 256     # columns of b per task (int32 accumulator tile: 32 KiB)
LANES = 64       # float32 partial sums per dot product
_NT_CHUNK = 65536  # int8 products summed in int32 (65536 * 127 * 127 < 2**31)
_INT32 = np.iinfo(np.int32)


# ----------------------------------------------------------------- integer GEMM


@kernel(iterations=lambda a, b, out: -(-a.shape[0] // TILE_M) * -(-b.shape[1] // TILE_N))
def _gemm(a, b, out):  # type: ignore[no-untyped-def]
    """out (m, n) = a (m, k) @ b (k, n), accumulating in out's integer dtype."""
    m, k = a.shape
    n = b.shape[1]
    tiles_n = (n + TILE_N - 1) // TILE_N
    tiles_m = (m + TILE_M - 1) // TILE_M
    for pt in prange(tiles_m * tiles_n):
        t = np.int64(pt)
        i0 = (t // tiles_n) * TILE_M
        j0 = (t % tiles_n) * TILE_N
        i1 = min(i0 + TILE_M, m)
        width = min(j0 + TILE_N, n) - j0
        acc = np.zeros((TILE_M, TILE_N), out.dtype)
        for kk in range(k):
            brow = b[kk, j0:j0 + width]
            for i in range(i0, i1):
                aik = np.int32(a[i, kk])
                row = acc[i - i0]
                for j in range(width):
                    row[j] += aik * np.int32(brow[j])
        for i in range(i0, i1):
            for j in range(width):
                out[i, j0 + j] = acc[i - i0, j]


@kernel(iterations=lambda b, out: -(-b.shape[1] // TILE_N))
def _col_sums(b, out):  # type: ignore[no-untyped-def]
    """out (n,) int64 = column sums of b (k, n), in tiles of TILE_N columns."""
    k, n = b.shape
    for pt in prange((n + TILE_N - 1) // TILE_N):
        j0 = np.int64(pt) * TILE_N
        width = min(TILE_N, n - j0)
        acc = np.zeros(TILE_N, np.int64)
        for kk in range(k):
            brow = b[kk, j0:j0 + width]
            for j in range(width):
                acc[j] += brow[j]
        for j in range(width):
            out[j0 + j] = acc[j]


@kernel(iterations=lambda acc, *a: acc.shape[0])
def _zp_correct(acc, row_sums, col_sums, za, zb, k, out):  # type: ignore[no-untyped-def]
    """out = acc - zb * rowsum(a) - za * colsum(b) + k * za * zb (int64, then int32);
    returns the number of results outside int32."""
    m, n = acc.shape
    bad = 0
    for pi in prange(m):
        i = np.int64(pi)
        for j in range(n):
            v = np.int64(acc[i, j]) - row_sums[i] * zb[j] - za[i] * col_sums[j] + k * za[i] * zb[j]
            if v < -2147483648 or v > 2147483647:
                bad += 1
            out[i, j] = np.int32(v)
    return bad


@kernel(iterations=lambda acc, *a: acc.shape[0])
def _dequantize_int32(acc, sa, sb, out):  # type: ignore[no-untyped-def]
    m, n = acc.shape
    for pi in prange(m):
        i = np.int64(pi)
        s = sa[i]
        for j in range(n):
            out[i, j] = np.float32((np.float64(acc[i, j]) * s) * sb[j])


# --------------------------------------------------------------- float matmuls


@helper
def _dot_lanes(x, w, n, part):  # type: ignore[no-untyped-def]
    """sum(x[:n] * w[:n]) with LANES float32 partial sums (vectorizable), then float64."""
    for l in range(LANES):
        part[l] = np.float32(0.0)
    full = n - n % LANES
    for c in range(0, full, LANES):
        for l in range(LANES):
            part[l] += x[c + l] * w[c + l]
    total = np.float64(0.0)
    for l in range(LANES):
        total += part[l]
    for c in range(full, n):
        total += np.float64(x[c]) * w[c]
    return total


@kernel(iterations=lambda xq, wq, *a: wq.shape[0])
def _gemm_nt_dequant(xq, wq, xs, ws, xo, wo, out):  # type: ignore[no-untyped-def]
    """out (t, o) = (xq[t] . wq[o]) * xs[t] * ws[o] / 127**2 + xo[t] . wo[o] (float64)."""
    tokens, k = xq.shape
    n_out = wq.shape[0]
    n_cols = xo.shape[1]
    inv = 1.0 / (127.0 * 127.0)
    for po in prange(n_out):
        o = np.int64(po)
        wrow = wq[o]
        for t in range(tokens):
            xrow = xq[t]
            acc = np.int64(0)
            for c0 in range(0, k, _NT_CHUNK):
                # int32 partial sums (|q| <= 127: a chunk cannot overflow), which LLVM turns
                # into packed multiply-adds; int64 across chunks
                xc = xrow[c0:c0 + _NT_CHUNK]            # 0-based views: the loop vectorizes
                wc = wrow[c0:c0 + _NT_CHUNK]
                part = np.int32(0)
                for c in range(xc.size):
                    part = np.int32(part + np.int32(xc[c]) * np.int32(wc[c]))
                acc += part
            v = np.float64(acc) * (np.float64(xs[t]) * np.float64(ws[o])) * inv
            for c in range(n_cols):
                v += np.float64(xo[t, c]) * np.float64(wo[o, c])
            out[t, o] = np.float32(v)


@kernel(iterations=lambda *a: a[-1].shape[1])
def _dequant_matmul_4bit(x, packed, absmax, table, blocksize, out):  # type: ignore[no-untyped-def]
    """out (t, o) = x (t, in) @ W.T with W (o, in) the packed 4-bit weight (C order blocks)."""
    tokens, n_in = x.shape
    n_out = out.shape[1]
    for po in prange(n_out):
        o = np.int64(po)
        wrow = np.empty(n_in, np.float32)
        part = np.empty(LANES, np.float32)
        e0 = o * n_in
        c = np.int64(0)
        while c < n_in:                                 # one absmax block segment at a time
            e = e0 + c
            blk = e // blocksize
            seg = min(n_in - c, (blk + 1) * blocksize - e)
            s = absmax[blk]
            q = 0
            if (e & 1) == 0:                            # byte-aligned: two codes per byte
                j0 = e >> 1
                while q + 1 < seg:                      # scalar on purpose: lookups, no gathers
                    byte = np.int64(packed[j0 + (q >> 1)])
                    if byte < 0:
                        break                           # never taken (keeps LLVM from vectorizing)
                    wrow[c + q] = table[byte >> 4] * s
                    wrow[c + q + 1] = table[byte & 15] * s
                    q += 2
            while q < seg:                              # odd start or the last odd element
                ee = e + q
                byte = np.int64(packed[ee >> 1])
                wrow[c + q] = table[(byte >> 4) if (ee & 1) == 0 else (byte & 15)] * s
                q += 1
            c += seg
        for t in range(tokens):
            out[t, o] = np.float32(_dot_lanes(x[t], wrow, n_in, part))


# ------------------------------------------------------------------ public ops


def _max_abs(dtype: np.dtype) -> int:
    return 255 if dtype == np.uint8 else 128


def _product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, bool]:
    """``a @ b`` in int32 if no partial sum can leave int32, else int64 (second value True)."""
    k = a.shape[1]
    wide = k * _max_abs(a.dtype) * _max_abs(b.dtype) > _INT32.max
    out = np.empty((a.shape[0], b.shape[1]), np.int64 if wide else np.int32)
    _gemm(a, b, out)
    return out, wide


def _rows(x: np.ndarray) -> np.ndarray:
    """(..., k) -> (rows, k) float32 C-contiguous (defined for k == 0 too)."""
    return np.ascontiguousarray(x.reshape(math.prod(x.shape[:-1]), x.shape[-1]), dtype=np.float32)


def int8_matmul(a_q: np.ndarray, b_q: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.matmul.int8_matmul` on prepared arguments
    (``refquant.prepare.matmul``: 2-D int8/uint8 codes, equal inner dimensions, C-contiguous)."""
    acc, wide = _product(a_q, b_q)
    return to_int32(acc, "int8_matmul result") if wide else acc


def int8_matmul_zp(a_q: np.ndarray, b_q: np.ndarray, a_zero: np.ndarray, b_zero: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.matmul.int8_matmul_zp` on prepared arguments (zero points
    int64 (m,) and (n,) within the codes' range)."""
    a, b, za, zb = a_q, b_q, a_zero, b_zero
    acc, _ = _product(a, b)
    out = np.empty(acc.shape, np.int32)
    col_sums = np.empty(b.shape[1], np.int64)
    _col_sums(b, col_sums)
    if _zp_correct(acc, a.sum(axis=1, dtype=np.int64), col_sums, za, zb, a.shape[1], out):
        exact = acc.astype(np.int64) - a.sum(axis=1, dtype=np.int64)[:, None] * zb[None, :]
        exact -= za[:, None] * b.sum(axis=0, dtype=np.int64)[None, :]
        exact += a.shape[1] * za[:, None] * zb[None, :]
        to_int32(exact, "int8_matmul_zp result")
    return out


def dequantize_int32(acc: np.ndarray, a_scale: np.ndarray, b_scale: np.ndarray, *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.matmul.dequantize_int32` on prepared arguments (2-D int32
    acc, float64 scales (m,) and (n,)); bit-exact: the same two float64 products and one rounding."""
    _dequantize_int32(acc, a_scale, b_scale, out)
    return out


def llm_int8_matmul(x: np.ndarray, w: np.ndarray, threshold: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Backend op :func:`refquant.matmul.llm_int8_matmul` on prepared arguments (finite
    float x (..., in) and w (out, in); Nmse)."""
    x2 = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])             # (rows, in)
    xq, x_stats, cols = bnb.int8_vectorwise_quant(x2, threshold)
    wq, w_stats, _ = bnb.int8_vectorwise_quant(w, 0.0)
    xo = np.ascontiguousarray(x2[:, cols], dtype=np.float32)         # outlier features, exact widening
    wo = np.ascontiguousarray(w[:, cols], dtype=np.float32)
    out = np.empty((x2.shape[0], w.shape[0]), np.float32)
    _gemm_nt_dequant(xq, wq, x_stats, w_stats, xo, wo, out)
    return out.reshape(*x.shape[:-1], w.shape[0]), cols


def bnb_dequant_matmul_4bit(x: np.ndarray, packed: np.ndarray, absmax: np.ndarray, quant_type: str, blocksize: int,
                            shape: tuple[int, int]) -> np.ndarray:
    """Backend op :func:`refquant.matmul.bnb_dequant_matmul_4bit` on prepared arguments,
    fused (the weight is never materialized; Nmse)."""
    x2 = _rows(x)
    out = np.empty((x2.shape[0], shape[0]), np.float32)
    table = np.ascontiguousarray(bnb.get_codebook(quant_type).table)
    _dequant_matmul_4bit(x2, packed, absmax, table, blocksize, out)
    if not np.isfinite(out).all():
        w = np.empty(shape, np.float32)
        bnb.bnb_dequantize_4bit(packed, absmax, quant_type, blocksize, shape, out=w)
        exact_where_nonfinite(x2, w, out)
    return out.reshape(*x.shape[:-1], shape[0])


def exact_where_nonfinite(x: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    """Recompute the output columns holding inf/NaN as the reference defines them: float64
    products and sums, one rounding to float32 (float32 partial sums overflow, or meet as
    inf - inf = NaN, where the float64 result is finite or a signed infinity)."""
    cols = np.flatnonzero(~np.isfinite(out).all(axis=0))
    with np.errstate(over="ignore", invalid="ignore"):
        out[:, cols] = (x.astype(np.float64) @ w[cols].astype(np.float64).T).astype(np.float32)
