"""GGUF F16/BF16, the legacy 32-element types (Q4_0 ... Q8_1) and the ternary types
(TQ1_0, TQ2_0) as Numba kernels.

Each ``_q*_block`` helper is the loop body of one ggml function for one block
(``ggml-quants.c`` @ d99724f2: ``quantize_row_q4_0_ref`` / ``quantize_row_q4_0_impl`` and
so on; byte layouts in :mod:`refquant.formats.gguf_legacy` and
:mod:`refquant.formats.gguf_ternary`, whose declared fields give the byte offsets used
here). Per type, a block quantizer, a chunk quantizer and a block decoder are handed to
:func:`accel.numba.gguf_blocks.gguf_kernels`, which compiles that type's two kernels. A
block reads its float32 row slice and writes its bytes straight into the output row
(``xb`` / ``ob`` below are views, nothing is allocated per block).

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
    scale_int8_run, stack_super_f32, store_run, trit, store_fp16,
)
from accel.numba.gguf_blocks import CHUNK, field_offsets, gguf_kernels, instantiate, register
from accel.numba.gguf_search import LANES, make_qkx_lanes, make_qx_lanes
from refquant.formats import FORMATS

__all__ = ["QUANTIZE", "DEQUANTIZE", "FLOAT_DECODERS", "row_sigma2", "dequant_q40_block"]

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_EIGHT = np.float32(8.0)
_RMIN3 = np.float32(-0.9)   # make_qkx3_quants(..., -0.9f, 0.05f, 36, false)
_RDELTA3 = np.float32(0.05)

# byte offsets of the fields, from the declared block types
_Q4_0, _Q4_1, _Q5_0, _Q5_1, _Q8_0, _Q8_1, _TQ1_0, _TQ2_0 = (
    field_offsets(FORMATS[t]) for t in ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "tq1_0", "tq2_0"))


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
    """``(int8_t)v`` as x86-64 compiles it: truncate to int32, keep the low byte (signed).
    In int32 lanes (int64 would halve the vector width)."""
    return np.int32(np.int8(np.int32(v)))


@ghelper
def _pack_pair(qs, j, a, b, qh):  # type: ignore[no-untyped-def]
    """Codes ``a`` (element j) and ``b`` (element j + 16), int32: the nibbles into qs[j];
    returns ``qh`` with bit 4 of each as its bits j and j + 16."""
    qs[j] = np.uint8((a & np.int32(0xF)) | ((b & np.int32(0xF)) << np.int32(4)))
    return qh | (((a >> np.int32(4)) & np.int32(1)) << np.int32(j)) | (((b >> np.int32(4)) & np.int32(1)) << np.int32(j + 16))


@ghelper
def _store_qh(ob, pos, qh):  # type: ignore[no-untyped-def]
    for k in range(4):  # little-endian
        ob[pos + k] = np.uint8((qh >> np.int32(8 * k)) & np.int32(0xFF))


# The block quantizers compute both codes of a byte and pack them in one loop over views
# (``qs``, ``lo``, ``hi``: loop-variable indices, so LLVM's loop vectorizer takes it), in
# int32 lanes; qh is an OR-reduction (dropped by the compiler for the 4-bit types).


@ghelper
def _q40_block(xb, ob, levels):  # type: ignore[no-untyped-def]
    """Q4_0 (levels 8) and Q5_0 (levels 16) without an imatrix: ``quantize_row_q{4,5}_0_ref``:
    ``MIN(2·levels − 1, (int8_t)(x·id + levels + 0.5f))``."""
    mx, _ = first_absmax(xb, 32)  # the first element of largest magnitude
    d = mx / f32(-levels)
    idd = _ONE / d if d != _ZERO else _ZERO
    shift = f32(levels) + _HALF
    top = np.int32(2 * levels - 1)
    pos = _Q4_0.qs if levels == 8 else _Q5_0.qs
    qs, lo, hi = ob[pos:pos + 16], xb[:16], xb[16:]
    qh = np.int32(0)
    for j in range(qs.shape[0]):
        qh = _pack_pair(qs, j, min(top, _trunc_i8(lo[j] * idd + shift)), min(top, _trunc_i8(hi[j] * idd + shift)), qh)
    _finish_q40(ob, d, qh, levels)


@ghelper
def _q41_code(v, levels):  # type: ignore[no-untyped-def]
    """Q4_1 ``MIN(15, (int8_t)v)``, Q5_1 ``(uint8_t)v`` (of which 5 bits are kept)."""
    q = np.int32(v)
    return min(np.int32(15), _trunc_i8(q)) if levels == 15 else q


@ghelper
def _q41_block(xb, ob, levels):  # type: ignore[no-untyped-def]
    """Q4_1 (levels 15) and Q5_1 (levels 31) without an imatrix: ``quantize_row_q{4,5}_1_ref``,
    v = (x − min)·id + 0.5f."""
    mn, mx = first_min_max(xb, 32)  # from FLT_MAX / -FLT_MAX, first extreme wins
    d = (mx - mn) / f32(levels)
    idd = _ONE / d if d != _ZERO else _ZERO
    pos = _Q4_1.qs if levels == 15 else _Q5_1.qs
    qs, lo, hi = ob[pos:pos + 16], xb[:16], xb[16:]
    qh = np.int32(0)
    for j in range(qs.shape[0]):
        qh = _pack_pair(qs, j, _q41_code((lo[j] - mn) * idd + _HALF, levels), _q41_code((hi[j] - mn) * idd + _HALF, levels), qh)
    _finish_q41(ob, d, mn, qh, levels)


@ghelper
def _pack_codes(ob, pos_qs, L):  # type: ignore[no-untyped-def]
    """Codes ``L`` (32 int32) into the nibbles at ``pos_qs``; returns their qh word."""
    qs, lo, hi = ob[pos_qs:pos_qs + 16], L[:16], L[16:]
    qh = np.int32(0)
    for j in range(qs.shape[0]):
        qh = _pack_pair(qs, j, lo[j], hi[j], qh)
    return qh


@ghelper
def _finish_q40(ob, d, qh, levels):  # type: ignore[no-untyped-def]
    """The fields besides qs: d, and Q5_0's qh."""
    if levels == 8:
        store_fp16(ob, _Q4_0.d, d)
    else:
        store_fp16(ob, _Q5_0.d, d)
        _store_qh(ob, _Q5_0.qh, qh)


@ghelper
def _finish_q41(ob, d, m, qh, levels):  # type: ignore[no-untyped-def]
    """The fields besides qs: d, m, and Q5_1's qh."""
    if levels == 15:
        store_fp16(ob, _Q4_1.d, d)
        store_fp16(ob, _Q4_1.m, m)
    else:
        store_fp16(ob, _Q5_1.d, d)
        store_fp16(ob, _Q5_1.m, m)
        _store_qh(ob, _Q5_1.qh, qh)


@ghelper
def _store_q40(ob, d, L, levels):  # type: ignore[no-untyped-def]
    _finish_q40(ob, d, _pack_codes(ob, _Q4_0.qs if levels == 8 else _Q5_0.qs, L), levels)


@ghelper
def _store_q41(ob, d, m, L, levels):  # type: ignore[no-untyped-def]
    _finish_q41(ob, d, m, _pack_codes(ob, _Q4_1.qs if levels == 15 else _Q5_1.qs, L), levels)


@ghelper
def _impl_group(levels, affine, x, imatrix, sigma2, out, g, m, nbr, size, X, W, Lt, scales, mins, L):  # type: ignore[no-untyped-def]
    """``quantize_row_q{4,5}_{0,1}_impl`` for ``m`` consecutive blocks from block ``g``, in
    lanes: weights qw·sqrt(sigma2_row + x²), then ``make_qx_quants(32, 8|16, ...)``
    (Q4_0/Q5_0, codes straight from the search) or, ``affine``, ``make_qkx3_quants(32,
    15|31, ..., -0.9f, 0.05f, 36)`` (Q4_1/Q5_1, m = -the_min)."""
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
    if not affine:
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
        if not affine:
            _store_q40(ob, scales[lane], L, levels)
        else:
            _store_q41(ob, scales[lane], -mins[lane], L, levels)


@ghelper
def _q80_block(xb, ob, with_sum):  # type: ignore[no-untyped-def]
    """Q8_0 and Q8_1: ``quantize_row_q8_{0,1}_ref`` (amax = MAX(amax, fabsf(v)))."""
    d = max_abs(xb, 32) / np.float32(127.0)  # amax = MAX(amax, fabsf(v))
    idd = _ONE / d if d != _ZERO else _ZERO
    pos = _Q8_1.qs if with_sum else _Q8_0.qs
    qs = ob[pos:pos + 32]  # a view: loop-variable indices
    total = 0
    for j in range(xb.shape[0]):
        q = _trunc_i8(roundf(xb[j] * idd))
        total += q
        qs[j] = np.uint8(q & 0xFF)
    store_fp16(ob, _Q8_0.d, d)
    if with_sum:
        store_fp16(ob, _Q8_1.s, f32(total) * d)


@ghelper
def _ternary_block(xb, ob, tq1):  # type: ignore[no-untyped-def]
    """TQ1_0 (``tq1``) and TQ2_0: ``quantize_row_tq{1,2}_0_ref``."""
    d = max_abs(xb, 256)  # amax = MAX(amax, fabsf(v))
    idd = _ONE / d if d != _ZERO else _ZERO
    if tq1:
        for m in range(32):  # qs[0..31]: elements m + 32n, n = 0..4
            q = 0
            for n in range(5):
                q = q * 3 + np.int64(np.int32(roundf(xb[m + 32 * n] * idd))) + 1
            ob[_TQ1_0.qs + m] = np.uint8(((q & 0xFF) * 256 + 242) // 243)
        for m in range(16):  # qs[32..47]: elements 160 + m + 16n
            q = 0
            for n in range(5):
                q = q * 3 + np.int64(np.int32(roundf(xb[160 + m + 16 * n] * idd))) + 1
            ob[_TQ1_0.qs + 32 + m] = np.uint8(((q & 0xFF) * 256 + 242) // 243)
        for j in range(4):  # qh[0..3]: elements 240 + j + 4m, then one empty trit
            q = 0
            for m in range(4):
                q = q * 3 + np.int64(np.int32(roundf(xb[240 + j + 4 * m] * idd))) + 1
            q *= 3
            ob[_TQ1_0.qh + j] = np.uint8(((q & 0xFF) * 256 + 242) // 243)
        store_fp16(ob, _TQ1_0.d, d)
    else:
        for k in range(2):
            for m in range(32):
                q = 0
                for n in range(4):
                    t = np.int64(np.int32(roundf(xb[128 * k + m + 32 * n] * idd))) + 1
                    q += (t & 3) << (2 * n)
                ob[_TQ2_0.qs + 32 * k + m] = np.uint8(q & 0xFF)
        store_fp16(ob, _TQ2_0.d, d)


# --- chunk quantizers: one compiled copy per type (accel.numba.gguf_blocks.instantiate) ---


def _chunk_template(x, imatrix, sigma2, has_im, out, start, stop, nbr):  # type: ignore[no-untyped-def]
    """Blocks ``start .. stop`` of the rows ``x`` into ``out``: ``quantize_block`` per block,
    or with an imatrix (``SEARCHED`` types) the lane-wise ``_impl`` search."""
    if SEARCHED and has_im:  # noqa: F821 - bound by instantiate
        X = np.zeros((32, LANES), np.float32)
        W = np.zeros((32, LANES), np.float32)
        Lt = np.zeros((32, LANES), np.int32)
        scales = np.zeros(LANES, np.float32)
        mins = np.zeros(LANES, np.float32)
        L = np.empty(32, np.int32)
        for g in range(start, stop, LANES):
            _impl_group(LEVELS, AFFINE, x, imatrix, sigma2, out, g, min(LANES, stop - g), nbr, SIZE,  # noqa: F821
                        X, W, Lt, scales, mins, L)
        return
    r = start // nbr  # walk (row, block) without a division per block
    j = start - r * nbr
    for _ in range(stop - start):
        quantize_block(x[r, j * QK:(j + 1) * QK], out[r, j * SIZE:(j + 1) * SIZE])  # noqa: F821
        j += 1
        if j == nbr:
            j = 0
            r += 1


@ginline
def _q4_0(xb, ob):  # type: ignore[no-untyped-def]
    _q40_block(xb, ob, 8)


@ginline
def _q5_0(xb, ob):  # type: ignore[no-untyped-def]
    _q40_block(xb, ob, 16)


@ginline
def _q4_1(xb, ob):  # type: ignore[no-untyped-def]
    _q41_block(xb, ob, 15)


@ginline
def _q5_1(xb, ob):  # type: ignore[no-untyped-def]
    _q41_block(xb, ob, 31)


@ginline
def _q8_0(xb, ob):  # type: ignore[no-untyped-def]
    _q80_block(xb, ob, False)


@ginline
def _q8_1(xb, ob):  # type: ignore[no-untyped-def]
    _q80_block(xb, ob, True)


@ginline
def _tq1_0(xb, ob):  # type: ignore[no-untyped-def]
    _ternary_block(xb, ob, True)


@ginline
def _tq2_0(xb, ob):  # type: ignore[no-untyped-def]
    _ternary_block(xb, ob, False)


# --- block decoders (ggml's dequantize_row_*, one block) ------------------------------
#
# Byte and value ranges are views (``qs``, ``lo``, ``hi``) and the loops run to the
# view's run-time length, so that every index is a plain loop variable (a computed index
# gets Numba's negative-index wraparound) and LLVM's loop vectorizer takes the loop (see
# accel.numba.gguf_blocks).


@ginline
def dequant_q40_block(q, y):  # type: ignore[no-untyped-def]
    """``dequantize_row_q4_0`` for one block: y[j] = (nibble - 8)·d (int first, then float)."""
    d = load_fp16(q, _Q4_0.d)
    qs, lo, hi = q[_Q4_0.qs:_Q4_0.qs + 16], y[:16], y[16:]
    for j in range(qs.shape[0]):  # (nibble - 8) is exact as a float: the same value as C's int
        lo[j] = (f32(qs[j] & np.uint8(0xF)) - _EIGHT) * d
        hi[j] = (f32(qs[j] >> np.uint8(4)) - _EIGHT) * d


@ginline
def _dequant_q41(q, y):  # type: ignore[no-untyped-def]
    d = load_fp16(q, _Q4_1.d)
    m = load_fp16(q, _Q4_1.m)
    qs, lo, hi = q[_Q4_1.qs:_Q4_1.qs + 16], y[:16], y[16:]
    for j in range(qs.shape[0]):
        lo[j] = f32(qs[j] & 0xF) * d + m
        hi[j] = f32(qs[j] >> 4) * d + m


@ghelper
def _qh_word(q, pos):  # type: ignore[no-untyped-def]
    return (np.int32(q[pos]) | (np.int32(q[pos + 1]) << 8) | (np.int32(q[pos + 2]) << 16)
            | (np.int32(q[pos + 3]) << 24))


@ginline
def _dequant_q50(q, y):  # type: ignore[no-untyped-def]
    d = load_fp16(q, _Q5_0.d)
    qh = _qh_word(q, _Q5_0.qh)
    qs, lo, hi = q[_Q5_0.qs:_Q5_0.qs + 16], y[:16], y[16:]
    for j in range(qs.shape[0]):
        lo[j] = f32((np.int32(qs[j] & 0xF) | (((qh >> j) << 4) & 0x10)) - 16) * d
        hi[j] = f32((np.int32(qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16) * d


@ginline
def _dequant_q51(q, y):  # type: ignore[no-untyped-def]
    d = load_fp16(q, _Q5_1.d)
    m = load_fp16(q, _Q5_1.m)
    qh = _qh_word(q, _Q5_1.qh)
    qs, lo, hi = q[_Q5_1.qs:_Q5_1.qs + 16], y[:16], y[16:]
    for j in range(qs.shape[0]):
        lo[j] = f32(np.int32(qs[j] & 0xF) | (((qh >> j) << 4) & 0x10)) * d + m
        hi[j] = f32(np.int32(qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) * d + m


@ginline
def _dequant_q8(q, y, pos_d, pos_qs):  # type: ignore[no-untyped-def]
    d = load_fp16(q, pos_d)
    scale_int8_run(y, q, pos_qs, d, 32)


@ginline
def _dequant_q80(q, y):  # type: ignore[no-untyped-def]
    _dequant_q8(q, y, _Q8_0.d, _Q8_0.qs)


@ginline
def _dequant_q81(q, y):  # type: ignore[no-untyped-def]
    _dequant_q8(q, y, _Q8_1.d, _Q8_1.qs)


@ginline
def _five_trits(qs, t, base, k, d):  # type: ignore[no-untyped-def]
    """Trit n of byte m -> t[base + n·k + m], times d, n = 0..4 (``k`` = len(qs), passed as a
    constant: the five stores are then at constant offsets and the loop vectorizes)."""
    for m in range(qs.shape[0]):
        b = qs[m]
        t[base + m] = f32(trit(b, 1)) * d
        t[base + k + m] = f32(trit(b, 3)) * d
        t[base + 2 * k + m] = f32(trit(b, 9)) * d
        t[base + 3 * k + m] = f32(trit(b, 27)) * d
        t[base + 4 * k + m] = f32(trit(b, 81)) * d


@ginline
def _dequant_tq10(q, y):  # type: ignore[no-untyped-def]
    """``dequantize_row_tq1_0``: trit n of a byte is ((q·3^n mod 256)·3) >> 8. The block
    is decoded on the stack (no alias checks against ``q``), each loop writing all five
    trits of its bytes (a loop that fat is not interleaved by LLVM, so 32 bytes fill
    whole 16-lane vectors), then stored at once."""
    d = load_fp16(q, _TQ1_0.d)
    t = numba.carray(stack_super_f32(), 256)
    _five_trits(q[_TQ1_0.qs:_TQ1_0.qs + 32], t, 0, 32, d)  # qs[0..31]: trit n -> elements 32n + m
    _five_trits(q[_TQ1_0.qs + 32:_TQ1_0.qs + 48], t, 160, 16, d)  # qs[32..47]: 160 + 16n + m
    qs = q[_TQ1_0.qh:_TQ1_0.qh + 4]  # qh[0..3]: elements 240 + 4n + m
    for m in range(qs.shape[0]):
        b = qs[m]
        t[240 + m] = f32(trit(b, 1)) * d
        t[244 + m] = f32(trit(b, 3)) * d
        t[248 + m] = f32(trit(b, 9)) * d
        t[252 + m] = f32(trit(b, 27)) * d
    store_run(y, 0, t, 256)


@ginline
def _dequant_tq20(q, y):  # type: ignore[no-untyped-def]
    """``dequantize_row_tq2_0``: 2-bit fields, value field - 1."""
    d = load_fp16(q, _TQ2_0.d)
    for half in range(2):
        qs = q[_TQ2_0.qs + 32 * half:_TQ2_0.qs + 32 * half + 32]
        for s in range(4):
            yy = y[128 * half + 32 * s:128 * half + 32 * s + 32]
            for m in range(qs.shape[0]):
                yy[m] = f32(((np.int32(qs[m]) >> (2 * s)) & 3) - 1) * d


# --- F16 / BF16: element-wise, one kernel per direction and type ------------------------


def _quantize_float_template(x, out):  # type: ignore[no-untyped-def]
    """float32 ``x`` (rows, n) -> uint16 bit patterns ``out`` (rows, n)."""
    rows, n = x.shape
    for r in prange(rows):
        xr, o = x[r], out[r]
        for j in range(n):
            o[j] = np.uint16(encode(xr[j]))  # noqa: F821 - bound by instantiate


def _dequantize_float_template(h, out):  # type: ignore[no-untyped-def]
    """uint16 bit patterns ``h`` (n,) -> float32 ``out`` (n,), exact widening."""
    n = h.shape[0]
    step = CHUNK * 32
    for c in prange((n + step - 1) // step):
        hh = h[c * step:min(n, (c + 1) * step)]
        y = out[c * step:min(n, (c + 1) * step)]
        for j in range(hh.shape[0]):
            y[j] = decode(hh[j])  # noqa: F821 - bound by instantiate


@ghelper
def _bf16_to_fp32(h):  # type: ignore[no-untyped-def]
    return bits_f32(np.int32(h) << np.int32(16))


def _float_kernels(name, encode, decode):  # type: ignore[no-untyped-def]
    quantize = register(gkernel(instantiate(_quantize_float_template, f"{name}_quantize", encode=encode)))
    dequantize = register(gkernel(instantiate(_dequantize_float_template, f"{name}_dequantize", decode=decode)))
    return ((lambda x, im, s2, has, out: quantize(x, out.view(np.uint16))),
            (lambda data, out: dequantize(np.ascontiguousarray(data).view(np.uint16).reshape(-1), out.reshape(-1))))


def _block_kernels(name, quantize_block, decode, levels=0, affine=False):  # type: ignore[no-untyped-def]
    """The type's (quantize, dequantize) kernels; ``levels`` > 0: an imatrix is searched."""
    fmt = FORMATS[name]
    chunk = ginline(instantiate(_chunk_template, f"{name}_quantize_chunk", QK=fmt.block_size, SIZE=fmt.type_size,
                                SEARCHED=levels > 0, LEVELS=levels, AFFINE=affine, quantize_block=quantize_block))
    return gguf_kernels(fmt, chunk, decode)


#: The element decoders of the 16-bit float types (uint16 bits -> float32), by type name.
FLOAT_DECODERS = {"f16": fp16_to_fp32, "bf16": _bf16_to_fp32}
_KERNELS = {
    "f16": _float_kernels("f16", fp32_to_fp16, FLOAT_DECODERS["f16"]),
    "bf16": _float_kernels("bf16", fp32_to_bf16, FLOAT_DECODERS["bf16"]),
    "q4_0": _block_kernels("q4_0", _q4_0, dequant_q40_block, 8),
    "q4_1": _block_kernels("q4_1", _q4_1, _dequant_q41, 15, True),
    "q5_0": _block_kernels("q5_0", _q5_0, _dequant_q50, 16),
    "q5_1": _block_kernels("q5_1", _q5_1, _dequant_q51, 31, True),
    "q8_0": _block_kernels("q8_0", _q8_0, _dequant_q80),
    "q8_1": _block_kernels("q8_1", _q8_1, _dequant_q81),
    "tq1_0": _block_kernels("tq1_0", _tq1_0, _dequant_tq10),
    "tq2_0": _block_kernels("tq2_0", _tq2_0, _dequant_tq20),
}
QUANTIZE = {name: kernels[0] for name, kernels in _KERNELS.items()}
DEQUANTIZE = {name: kernels[1] for name, kernels in _KERNELS.items()}
