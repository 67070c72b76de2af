"""GGUF F16/BF16, the legacy 32-element types (Q4_0 ... Q8_1) and the ternary types
(TQ1_0, TQ2_0) as Numba kernels.

Each ``_q*_block`` helper is the loop body of one ggml function for one block
(``ggml-quants.c`` @ d99724f2: ``quantize_row_q4_0_ref`` / ``quantize_row_q4_0_impl`` and
so on; byte layouts in :mod:`refquant.formats.gguf_legacy` and
:mod:`refquant.formats.gguf_ternary`). The kernels run them over chunks of blocks with
``prange``. A block reads its float32 row slice and writes its bytes straight into the
output row (``xb`` / ``ob`` below are views, nothing is allocated per block).

Rounding per type, as ggml writes it: Q4_0/Q5_0/Q4_1/Q5_1 truncate (v + 8.5) etc. after
a multiply by the **unrounded** float32 reciprocal of d; Q8_0/Q8_1/TQ use ``roundf``;
the imatrix paths use ggml's ``nearest_int`` inside ``make_qx_quants`` /
``make_qkx3_quants`` with weights qw·sqrt(sigma2 + x²), sigma2 = Σx²/n_per_row over the
whole row (:func:`row_sigma2`).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from accel.numba.gguf_math import (
    first_absmax, first_min_max, max_abs, bits_f32, f32, f32_bits, fp16_to_fp32, fp32_to_bf16, fp32_to_fp16, gkernel, ghelper, ginline, load_fp16, roundf,
    stack_block_i32, store_fp16,
)
from accel.numba.gguf_search import LANES, make_qkx_lanes, make_qx_lanes

__all__ = ["QUANTIZE", "DEQUANTIZE", "row_sigma2", "dequant_q40_block"]

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_EIGHT = np.float32(8.0)
_RMIN3 = np.float32(-0.9)   # make_qkx3_quants(..., -0.9f, 0.05f, 36, false)
_RDELTA3 = np.float32(0.05)
CHUNK = 256  # blocks per prange iteration


@gkernel
def row_sigma2(x, out):  # type: ignore[no-untyped-def]
    """sigma2 = (Σ x²) / n_per_row per row, the sum in index order (``quantize_row_q4_0_impl``)."""
    rows, n = x.shape
    fn = f32(n)
    for r in prange(rows):
        s = _ZERO
        for j in range(n):
            s += x[r, j] * x[r, j]
        out[r] = s / fn


@ghelper
def _trunc_i8(v):  # type: ignore[no-untyped-def]
    """``(int8_t)v`` as x86-64 compiles it: truncate to int32, keep the low byte (signed)."""
    i = np.int64(np.int32(v)) & 0xFF
    return i - 256 if i > 127 else i


@ghelper
def _pack_halves(ob, pos, L):  # type: ignore[no-untyped-def]
    qs, lo, hi = ob[pos:pos + 16], L[:16], L[16:32]  # views: plain loop-variable indices
    for j in range(16):
        qs[j] = np.uint8((lo[j] & np.int32(0xF)) | ((hi[j] & np.int32(0xF)) << np.int32(4)))


@ghelper
def _pack_qh(ob, pos, L):  # type: ignore[no-untyped-def]
    """qh: bit j of the little-endian word is bit 4 of code j."""
    qh = np.int64(0)
    for j in range(32):
        qh |= ((np.int64(L[j]) & 0x10) >> 4) << j
    for k in range(4):
        ob[pos + k] = np.uint8((qh >> (8 * k)) & 0xFF)


# --- block quantizers ------------------------------------------------------------------


@ghelper
def _q40_block(xb, ob, L, levels):  # type: ignore[no-untyped-def]
    """Q4_0 (levels 8) and Q5_0 (levels 16) without an imatrix: ``quantize_row_q{4,5}_0_ref``.
    (``L``, the caller's buffer, is unused: the codes go to a stack array, which the
    compiler knows aliases nothing, so the code loop vectorizes.)"""
    L = numba.carray(stack_block_i32(), 32)
    mx, _ = first_absmax(xb, 32)  # the first element of largest magnitude
    d = mx / f32(-levels)
    idd = _ONE / d if d != _ZERO else _ZERO
    shift = f32(levels) + _HALF
    top = 2 * levels - 1
    for j in range(32):
        L[j] = min(top, _trunc_i8(xb[j] * idd + shift)) & 0xFF
    _store_q40(ob, d, L, levels)


@ghelper
def _store_q40(ob, d, L, levels):  # type: ignore[no-untyped-def]
    store_fp16(ob, 0, d)
    if levels == 8:
        _pack_halves(ob, 2, L)
    else:
        _pack_qh(ob, 2, L)
        _pack_halves(ob, 6, L)


@ghelper
def _q41_block(xb, ob, L, levels):  # type: ignore[no-untyped-def]
    """Q4_1 (levels 15) and Q5_1 (levels 31) without an imatrix: ``quantize_row_q{4,5}_1_ref``
    (codes on the stack, as in :func:`_q40_block`)."""
    L = numba.carray(stack_block_i32(), 32)
    mn, mx = first_min_max(xb, 32)  # from FLT_MAX / -FLT_MAX, first extreme wins
    d = (mx - mn) / f32(levels)
    idd = _ONE / d if d != _ZERO else _ZERO
    for j in range(32):
        q = np.int64(np.int32((xb[j] - mn) * idd + _HALF))
        if levels == 15:  # MIN(15, (int8_t)v)
            q = min(15, _trunc_i8(q))
        L[j] = q & 0xFF  # (uint8_t)v: no clamp for Q5_1
    _store_q41(ob, d, mn, L, levels)


@ghelper
def _store_q41(ob, d, m, L, levels):  # type: ignore[no-untyped-def]
    store_fp16(ob, 0, d)
    store_fp16(ob, 2, m)
    if levels == 15:
        _pack_halves(ob, 4, L)
    else:
        _pack_qh(ob, 4, L)
        _pack_halves(ob, 8, L)


@ghelper
def _impl_group(kind, x, imatrix, sigma2, out, g, m, nbr, size, X, W, Lt, Laux, scales, mins, L):  # type: ignore[no-untyped-def]
    """``quantize_row_q{4,5}_{0,1}_impl`` for ``m`` consecutive blocks from block ``g``, in
    lanes: weights qw·sqrt(sigma2_row + x²), then ``make_qx_quants(32, 8|16, ...)``
    (Q4_0/Q5_0, codes straight from the search) or ``make_qkx3_quants(32, 15|31, ...,
    -0.9f, 0.05f, 36)`` (Q4_1/Q5_1, m = -the_min)."""
    for lane in range(m):
        b = g + lane
        r = b // nbr
        j = b - r * nbr
        s2 = sigma2[r]
        for i in range(32):
            v = x[r, 32 * j + i]
            X[i, lane] = v
            W[i, lane] = imatrix[32 * j + i] * np.sqrt(s2 + v * v)
    for i in range(32):  # unused lanes: all-zero blocks, results ignored
        for lane in range(m, LANES):
            X[i, lane] = _ZERO
            W[i, lane] = _ZERO
    levels = 8 if kind == Q4_0 else 16 if kind == Q5_0 else 15 if kind == Q4_1 else 31
    if kind == Q4_0 or kind == Q5_0:
        make_qx_lanes(32, levels, X, W, Lt, scales)
    else:
        make_qkx_lanes(32, levels, X, W, Lt, _RMIN3, _RDELTA3, 36, False, scales, mins)
    for lane in range(m):
        b = g + lane
        r = b // nbr
        j = b - r * nbr
        for i in range(32):
            L[i] = Lt[i, lane]
        ob = out[r, j * size:(j + 1) * size]
        if kind == Q4_0 or kind == Q5_0:
            _store_q40(ob, scales[lane], L, levels)
        else:
            _store_q41(ob, scales[lane], -mins[lane], L, levels)


@ghelper
def _q80_block(xb, ob, with_sum):  # type: ignore[no-untyped-def]
    """Q8_0 and Q8_1: ``quantize_row_q8_{0,1}_ref`` (amax = MAX(amax, fabsf(v)))."""
    d = max_abs(xb, 32) / np.float32(127.0)  # amax = MAX(amax, fabsf(v))
    idd = _ONE / d if d != _ZERO else _ZERO
    qs = ob[4:36] if with_sum else ob[2:34]  # a view: loop-variable indices
    total = 0
    for j in range(32):
        q = _trunc_i8(roundf(xb[j] * idd))
        total += q
        qs[j] = np.uint8(q & 0xFF)
    store_fp16(ob, 0, d)
    if with_sum:
        store_fp16(ob, 2, f32(total) * d)


@ghelper
def _ternary_block(xb, ob, kind):  # type: ignore[no-untyped-def]
    """TQ1_0 (kind 0) and TQ2_0 (kind 1): ``quantize_row_tq{1,2}_0_ref``."""
    d = max_abs(xb, 256)  # amax = MAX(amax, fabsf(v))
    idd = _ONE / d if d != _ZERO else _ZERO
    if kind == 0:
        for m in range(32):  # qs[0..31]: elements m + 32n, n = 0..4
            q = 0
            for n in range(5):
                q = q * 3 + np.int64(np.int32(roundf(xb[m + 32 * n] * idd))) + 1
            ob[m] = np.uint8(((q & 0xFF) * 256 + 242) // 243)
        for m in range(16):  # qs[32..47]: elements 160 + m + 16n
            q = 0
            for n in range(5):
                q = q * 3 + np.int64(np.int32(roundf(xb[160 + m + 16 * n] * idd))) + 1
            ob[32 + m] = np.uint8(((q & 0xFF) * 256 + 242) // 243)
        for j in range(4):  # qh[0..3]: elements 240 + j + 4m, then one empty trit
            q = 0
            for m in range(4):
                q = q * 3 + np.int64(np.int32(roundf(xb[240 + j + 4 * m] * idd))) + 1
            q *= 3
            ob[48 + j] = np.uint8(((q & 0xFF) * 256 + 242) // 243)
        store_fp16(ob, 52, d)
    else:
        for k in range(2):
            for m in range(32):
                q = 0
                for n in range(4):
                    t = np.int64(np.int32(roundf(xb[128 * k + m + 32 * n] * idd))) + 1
                    q += (t & 3) << (2 * n)
                ob[32 * k + m] = np.uint8(q & 0xFF)
        store_fp16(ob, 64, d)


# kind codes of the kernels below
F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, TQ1_0, TQ2_0 = range(10)
_QK = (1, 1, 32, 32, 32, 32, 32, 32, 256, 256)
_BYTES = (2, 2, 18, 20, 22, 24, 34, 36, 54, 66)


@gkernel
def _quantize(kind, x, imatrix, sigma2, has_im, out):  # type: ignore[no-untyped-def]
    """Quantize float32 rows ``x`` (rows, n) into ``out`` (rows, row_bytes) as type ``kind``."""
    rows, n = x.shape
    qk = 32
    size = 18
    if kind == F16 or kind == BF16:
        qk, size = 1, 2
    elif kind == TQ1_0:
        qk, size = 256, 54
    elif kind == TQ2_0:
        qk, size = 256, 66
    elif kind == Q4_1:
        size = 20
    elif kind == Q5_0:
        size = 22
    elif kind == Q5_1:
        size = 24
    elif kind == Q8_0:
        size = 34
    elif kind == Q8_1:
        size = 36
    nbr = n // qk
    total = rows * nbr
    searched = has_im and (kind == Q4_0 or kind == Q4_1 or kind == Q5_0 or kind == Q5_1)
    for c in prange((total + CHUNK - 1) // CHUNK):
        L = np.empty(32, np.int32)
        start = c * CHUNK
        stop = min(total, start + CHUNK)
        if searched:
            X = np.zeros((32, LANES), np.float32)
            W = np.zeros((32, LANES), np.float32)
            Lt = np.zeros((32, LANES), np.int32)
            Laux = np.zeros((32, LANES), np.int32)
            scales = np.zeros(LANES, np.float32)
            mins = np.zeros(LANES, np.float32)
            for g in range(start, stop, LANES):
                _impl_group(kind, x, imatrix, sigma2, out, g, min(LANES, stop - g), nbr, size,
                            X, W, Lt, Laux, scales, mins, L)
            continue
        r = start // nbr  # walk (row, block) without a division per block
        j = start - r * nbr
        for _ in range(stop - start):
            xb = x[r, j * qk:(j + 1) * qk]
            ob = out[r, j * size:(j + 1) * size]
            j += 1
            if j == nbr:
                j = 0
                r += 1
            if kind == Q4_0:
                _q40_block(xb, ob, L, 8)
            elif kind == Q5_0:
                _q40_block(xb, ob, L, 16)
            elif kind == Q4_1:
                _q41_block(xb, ob, L, 15)
            elif kind == Q5_1:
                _q41_block(xb, ob, L, 31)
            elif kind == Q8_0:
                _q80_block(xb, ob, False)
            elif kind == Q8_1:
                _q80_block(xb, ob, True)
            elif kind == TQ1_0:
                _ternary_block(xb, ob, 0)
            else:
                _ternary_block(xb, ob, 1)


@gkernel
def _quantize_float(kind, x, out):  # type: ignore[no-untyped-def]
    """F16 / BF16: float32 ``x`` (rows, n) -> uint16 bit patterns ``out`` (rows, n)."""
    rows, n = x.shape
    for r in prange(rows):
        xr, o = x[r], out[r]
        if kind == F16:
            for j in range(n):
                o[j] = np.uint16(fp32_to_fp16(xr[j]))
        else:
            for j in range(n):
                o[j] = np.uint16(fp32_to_bf16(xr[j]))


def _quantize_rows(kind, x, imatrix, sigma2, has_im, out):  # type: ignore[no-untyped-def]
    if kind == F16 or kind == BF16:
        _quantize_float(kind, x, out.view(np.uint16))
    else:
        _quantize(kind, x, imatrix, sigma2, has_im, out)


# --- dequantizers ---------------------------------------------------------------------


@ginline
def dequant_q40_block(q, y):  # type: ignore[no-untyped-def]
    """``dequantize_row_q4_0`` for one block: y[j] = (nibble - 8)·d (int first, then float)."""
    d = load_fp16(q, 0)
    qs, lo, hi = q[2:18], y[:16], y[16:]
    for j in range(16):  # (nibble - 8) is exact as a float: the same value as C's int
        lo[j] = (f32(qs[j] & np.uint8(0xF)) - _EIGHT) * d
        hi[j] = (f32(qs[j] >> np.uint8(4)) - _EIGHT) * d


@gkernel
def _dequantize(kind, data, out):  # type: ignore[no-untyped-def]
    """Decode ``data`` (n_blocks, type_size) uint8 into ``out`` (n_blocks, block_size)
    float32, as ggml's ``dequantize_row_*`` (ternary: ``dequantize_row_tq{1,2}_0``).

    Byte and value ranges are taken as views (``qs``, ``lo``, ``hi``) so that every index
    in the inner loops is a plain loop variable: a computed index (``j + 16``) would get
    Numba's negative-index wraparound and stop the loops from vectorizing."""
    nb = data.shape[0]
    for c in prange((nb + CHUNK - 1) // CHUNK):
        start = c * CHUNK
        stop = min(nb, start + CHUNK)
        if kind == Q4_0:
            for b in range(start, stop):
                dequant_q40_block(data[b], out[b])
        elif kind == Q4_1:
            for b in range(start, stop):
                q = data[b]
                d = load_fp16(q, 0)
                m = load_fp16(q, 2)
                qs, lo, hi = q[4:20], out[b, :16], out[b, 16:]
                for j in range(16):
                    lo[j] = f32(qs[j] & 0xF) * d + m
                    hi[j] = f32(qs[j] >> 4) * d + m
        elif kind == Q5_0 or kind == Q5_1:
            pos = 2 if kind == Q5_0 else 4
            for b in range(start, stop):
                q = data[b]
                d = load_fp16(q, 0)
                m = _ZERO if kind == Q5_0 else load_fp16(q, 2)
                qh = (np.int32(q[pos]) | (np.int32(q[pos + 1]) << 8) | (np.int32(q[pos + 2]) << 16)
                      | (np.int32(q[pos + 3]) << 24))
                qs, lo, hi = q[pos + 4:pos + 20], out[b, :16], out[b, 16:]
                for j in range(16):
                    x0 = np.int32(qs[j] & 0xF) | (((qh >> j) << 4) & 0x10)
                    x1 = np.int32(qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)
                    if kind == Q5_0:
                        lo[j] = f32(x0 - 16) * d
                        hi[j] = f32(x1 - 16) * d
                    else:
                        lo[j] = f32(x0) * d + m
                        hi[j] = f32(x1) * d + m
        elif kind == Q8_0 or kind == Q8_1:
            pos = 2 if kind == Q8_0 else 4
            for b in range(start, stop):
                q = data[b]
                d = load_fp16(q, 0)
                qs, y = q[pos:pos + 32], out[b]
                for j in range(32):
                    v = np.int32(qs[j])
                    y[j] = f32(v - ((v >> np.int32(7)) << np.int32(8))) * d  # as int8
        elif kind == TQ1_0:
            for b in range(start, stop):
                q = data[b]
                d = load_fp16(q, 52)
                y = out[b]
                for n in range(5):  # qs[0..31], trit n of each byte
                    p3 = np.int32(3 ** n)
                    qs, yy = q[0:32], y[32 * n:32 * n + 32]
                    for m in range(32):
                        yy[m] = f32(((((np.int32(qs[m]) * p3) & 0xFF) * 3) >> 8) - 1) * d
                for n in range(5):  # qs[32..47]
                    p3 = np.int32(3 ** n)
                    qs, yy = q[32:48], y[160 + 16 * n:176 + 16 * n]
                    for m in range(16):
                        yy[m] = f32(((((np.int32(qs[m]) * p3) & 0xFF) * 3) >> 8) - 1) * d
                for n in range(4):  # qh[0..3]
                    p3 = np.int32(3 ** n)
                    qs, yy = q[48:52], y[240 + 4 * n:244 + 4 * n]
                    for m in range(4):
                        yy[m] = f32(((((np.int32(qs[m]) * p3) & 0xFF) * 3) >> 8) - 1) * d
        else:  # TQ2_0
            for b in range(start, stop):
                q = data[b]
                d = load_fp16(q, 64)
                for half in range(2):
                    qs = q[32 * half:32 * half + 32]
                    for s in range(4):
                        yy = out[b, 128 * half + 32 * s:128 * half + 32 * s + 32]
                        for m in range(32):
                            yy[m] = f32(((np.int32(qs[m]) >> (2 * s)) & 3) - 1) * d


@gkernel
def _dequantize_float(kind, h, out):  # type: ignore[no-untyped-def]
    """F16 / BF16: uint16 bit patterns ``h`` (n,) -> float32 ``out`` (n,), exact widening."""
    n = h.shape[0]
    step = CHUNK * 32
    for c in prange((n + step - 1) // step):
        hh = h[c * step:min(n, (c + 1) * step)]
        y = out[c * step:min(n, (c + 1) * step)]
        if kind == F16:
            for j in range(hh.shape[0]):
                y[j] = fp16_to_fp32(hh[j])
        else:
            for j in range(hh.shape[0]):
                y[j] = bits_f32(np.int32(hh[j]) << np.int32(16))


def _dequantize_blocks(kind, data, out):  # type: ignore[no-untyped-def]
    if kind == F16 or kind == BF16:
        _dequantize_float(kind, np.ascontiguousarray(data).view(np.uint16).reshape(-1), out.reshape(-1))
    else:
        _dequantize(kind, data, out)


_NAMES = ("f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "tq1_0", "tq2_0")
QUANTIZE = {name: (lambda x, im, s2, has, out, k=k: _quantize_rows(k, x, im, s2, has, out)) for k, name in enumerate(_NAMES)}
DEQUANTIZE = {name: (lambda data, out, k=k: _dequantize_blocks(k, data, out)) for k, name in enumerate(_NAMES)}
