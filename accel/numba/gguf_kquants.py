"""GGUF K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K) as Numba kernels.

One ``_q*k_block`` helper per type is the body of ggml's per-super-block loop
(``ggml-quants.c`` @ d99724f2: ``quantize_row_qX_K_ref`` without an importance matrix,
``quantize_row_qX_K_impl`` with one; ``quantize_row_q8_K_ref``), in the same order:
sub-block scale searches (:mod:`accel.numba.gguf_search`), the sub-block scales
quantized against one fp16 super-block scale, the "requantize" step from the *decoded*
scales (a true division; a sub-block whose decoded scale is 0 keeps the search's codes)
and the bit packing. Byte layouts and the reasons behind each rule are in
:mod:`refquant.formats.gguf_kquants`.

Super-block byte offsets (``block_qX_K`` of ``ggml-common.h``):

====  =====  =====================================================================
type  bytes  fields
====  =====  =====================================================================
Q2_K   84    scales[16] @0, qs[64] @16, d @80, dmin @82
Q3_K  110    hmask[32] @0, qs[64] @32, scales[12] @96, d @108
Q4_K  144    d @0, dmin @2, scales[12] @4, qs[128] @16
Q5_K  176    d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48
Q6_K  210    ql[128] @0, qh[64] @128, scales[16]:i8 @192, d @208
Q8_K  292    d:f32 @0, qs[256]:i8 @4, bsums[16]:i16 @260
====  =====  =====================================================================
"""

from __future__ import annotations

import numpy as np

import numba

from accel.numba.gguf_blocks import field_offsets, gguf_kernels, instantiate
from accel.numba.gguf_math import (
    first_absmax, GROUP_MAX_EPS, LANES, bits_f32, f32, f32_bits, ghelper, ginline, load_fp16, nearest_int, stack_f32, stack_quad_f32, store_fp16, store_run, code_bits,
)
from accel.numba.gguf_search import make_q3_lanes, make_qkx_lanes, make_qp_quants, make_qx_lanes, make_qx_quants
from refquant.formats import FORMATS

# byte offsets of the fields, from the declared block types (refquant.formats.gguf_kquants)
_Q2K, _Q3K, _Q4K, _Q5K, _Q6K, _Q8K = (field_offsets(FORMATS[t]) for t in ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_k"))
if (_Q4K.d, _Q4K.dmin, _Q4K.scales) != (_Q5K.d, _Q5K.dmin, _Q5K.scales):
    raise TypeError("the paired Q4_K/Q5_K quantizer needs d, dmin and scales at the same offsets in both types")

__all__ = ["QUANTIZE", "DEQUANTIZE", "dequant_q4k_block"]

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
CHUNK = 8  # super-blocks per prange iteration


@ghelper
def _seq_sumsq(xb, n):  # type: ignore[no-untyped-def]
    s = _ZERO
    for j in range(n):
        s += xb[j] * xb[j]
    return s


@ghelper
def _clamp(v, lo, hi):  # type: ignore[no-untyped-def]
    """``MAX(lo, MIN(hi, v))`` in int32."""
    return max(min(v, np.int32(hi)), np.int32(lo))


@ghelper
def _pack_2bit(ob, pos, L):  # type: ignore[no-untyped-def]
    """qs[32h + l] = L[128h + l] | L[+32] << 2 | L[+64] << 4 | L[+96] << 6."""
    for h in range(2):
        for l in range(32):
            e = 128 * h + l
            ob[pos + 32 * h + l] = np.uint8((L[e] | (L[e + 32] << 2) | (L[e + 64] << 4) | (L[e + 96] << 6)) & 0xFF)


@ghelper
def _pack_scale_min_k4(ob, pos, Ls, Lm):  # type: ignore[no-untyped-def]
    """Six-bit scales and mins into 12 bytes (ggml's j < 4 / j >= 4 stores; uint8 values)."""
    for j in range(8):
        ls = Ls[j] & 0xFF
        lm = Lm[j] & 0xFF
        if j < 4:
            ob[pos + j] = np.uint8(ls)
            ob[pos + j + 4] = np.uint8(lm)
        else:
            ob[pos + j + 4] = np.uint8(((ls & 0xF) | ((lm & 0xF) << 4)) & 0xFF)
            ob[pos + j - 4] = np.uint8((np.int64(ob[pos + j - 4]) | ((ls >> 4) << 6)) & 0xFF)
            ob[pos + j] = np.uint8((np.int64(ob[pos + j]) | ((lm >> 4) << 6)) & 0xFF)


@ghelper
def _scale_min_k4(j, q, pos):  # type: ignore[no-untyped-def]
    """ggml ``get_scale_min_k4``: (sc, m) of sub-block j from ``q[pos:pos+12]``."""
    if j < 4:
        return np.int32(q[pos + j] & 63), np.int32(q[pos + j + 4] & 63)
    sc = np.int32((q[pos + j + 4] & 0xF) | ((q[pos + j - 4] >> 6) << 4))
    m = np.int32((q[pos + j + 4] >> 4) | ((q[pos + j] >> 6) << 4))
    return sc, m


@ghelper
def _requantize_affine(xb, ob, pos_d, pos_dmin, pos_scales, L, nsub, size, nmax, q2k):  # type: ignore[no-untyped-def]
    """``L = clamp(nearest_int((x + dm)/d), 0, nmax)`` per sub-block from the stored
    d, dmin and sub-block scale/min (Q2_K nibbles or the Q4_K/Q5_K 6-bit pairs)."""
    dd = load_fp16(ob, pos_d)
    dmin = load_fp16(ob, pos_dmin)
    for j in range(nsub):
        if q2k:
            s = np.int32(ob[pos_scales + j])
            sc = s & 0xF
            m = s >> 4
        else:
            sc, m = _scale_min_k4(j, ob, pos_scales)
        d = dd * f32(sc)
        if d == _ZERO:
            continue
        dm = dmin * f32(m)
        xs, ls = xb[size * j:size * j + size], L[size * j:size * j + size]  # views: loop-variable indices
        for ii in range(size):
            ls[ii] = _clamp(nearest_int((xs[ii] + dm) / d), 0, nmax)


# --- lane layout -----------------------------------------------------------------------


@ghelper
def _to_lanes(xb, size, nsub, X):  # type: ignore[no-untyped-def]
    """X[i, j] = xb[size*j + i]: sub-block j of the super-block in lane j."""
    for j in range(nsub):
        for i in range(size):
            X[i, j] = xb[size * j + i]


@ghelper
def _from_lanes(Lt, size, nsub, L):  # type: ignore[no-untyped-def]
    for j in range(nsub):
        for i in range(size):
            L[size * j + i] = Lt[i, j]


@ghelper
def _imatrix_lanes(X, qw, sigma2, size, nsub, W, sw):  # type: ignore[no-untyped-def]
    """W = qw·sqrt(sigma2 + x²) in lane layout, and sw[j] = Σ_l W[l, j] in order."""
    for j in range(nsub):
        sw[j] = _ZERO
    for i in range(size):
        for j in range(nsub):
            v = X[i, j]
            W[i, j] = qw[size * j + i] * np.sqrt(sigma2 + v * v)
            sw[j] += W[i, j]


# --- Q2_K -------------------------------------------------------------------------------


@ghelper
def _q2k_block(xb, ob, qw, has_im, L, sc):  # type: ignore[no-untyped-def]
    X, W, Lt, Laux, scales, mins, sw, Ls, Lm = sc
    _to_lanes(xb, 16, 16, X)
    if not has_im:  # quantize_row_q2_K_ref: weights |x|, mean absolute error
        for i in range(16):
            for j in range(16):
                W[i, j] = np.abs(X[i, j])
        make_qkx_lanes(16, 3, X, W, Lt, np.float32(-0.5), np.float32(0.1), 15, True, scales, mins)
        max_scale = _ZERO
        max_min = _ZERO
        for j in range(16):
            if scales[j] > max_scale:
                max_scale = scales[j]
            if mins[j] > max_min:
                max_min = mins[j]
        if max_scale > _ZERO:
            iscale = np.float32(15.0) / max_scale
            for j in range(16):
                ob[_Q2K.scales + j] = np.uint8(nearest_int(iscale * scales[j]) & 0xFF)
            store_fp16(ob, _Q2K.d, max_scale / np.float32(15.0))
        else:
            for j in range(16):
                ob[_Q2K.scales + j] = 0
            store_fp16(ob, _Q2K.d, _ZERO)
        if max_min > _ZERO:
            iscale = np.float32(15.0) / max_min
            for j in range(16):
                ob[_Q2K.scales + j] = np.uint8((np.int64(ob[_Q2K.scales + j]) | (np.int64(nearest_int(iscale * mins[j])) << 4)) & 0xFF)
            store_fp16(ob, _Q2K.dmin, max_min / np.float32(15.0))
        else:
            store_fp16(ob, _Q2K.dmin, _ZERO)
    else:  # quantize_row_q2_K_impl
        sigma2 = _seq_sumsq(xb, 256) / np.float32(256.0)
        _imatrix_lanes(X, qw, sigma2, 16, 16, W, sw)
        make_qkx_lanes(16, 3, X, W, Lt, np.float32(-0.9), np.float32(0.05), 36, False, scales, mins)
        dm = make_qp_quants(16, 15, scales, Ls, sw)
        mm = make_qp_quants(16, 15, mins, Lm, sw)
        store_fp16(ob, _Q2K.d, dm)
        store_fp16(ob, _Q2K.dmin, mm)
        for j in range(16):
            ob[_Q2K.scales + j] = np.uint8((Ls[j] | (Lm[j] << 4)) & 0xFF)
    _from_lanes(Lt, 16, 16, L)
    _requantize_affine(xb, ob, _Q2K.d, _Q2K.dmin, _Q2K.scales, L, 16, 16, 3, True)
    _pack_2bit(ob, _Q2K.qs, L)


# --- Q3_K -------------------------------------------------------------------------------


@ghelper
def _q3k_block(xb, ob, qw, has_im, L, sc):  # type: ignore[no-untyped-def]
    X, W, Lt, Laux, scales, mins, sw, Ls, Lm = sc
    _to_lanes(xb, 16, 16, X)
    for k in range(12):
        ob[_Q3K.scales + k] = 0
    if not has_im:  # quantize_row_q3_K_ref
        make_q3_lanes(16, 4, X, Lt, scales)
        max_scale = _ZERO
        amax = _ZERO
        for j in range(16):
            a = np.abs(scales[j])
            if a > amax:
                amax = a
                max_scale = scales[j]
        if max_scale != _ZERO:
            iscale = np.float32(-32.0) / max_scale
            for j in range(16):
                l = nearest_int(iscale * scales[j]) & 0xFF  # int8_t l = nearest_int(...)
                l = l - 256 if l > 127 else l
                Ls[j] = _clamp(l, -32, 31) + 32
            store_fp16(ob, _Q3K.d, _ONE / iscale)
        else:
            for j in range(16):
                Ls[j] = 0
            store_fp16(ob, _Q3K.d, _ZERO)
        live = max_scale != _ZERO
    else:  # quantize_row_q3_K_impl
        sigma2 = np.float32(2.0) * _seq_sumsq(xb, 256) / np.float32(256.0)
        _imatrix_lanes(X, qw, sigma2, 16, 16, W, sw)
        make_qx_lanes(16, 4, X, W, Lt, scales)
        # the 16 signed scales, weighted by sw: make_qx_quants(16, 32, scales, Ls, 1, sw)
        store_fp16(ob, _Q3K.d, make_qx_quants(16, 32, scales, sw, Ls))
        live = True
    if live:  # scales[j] = l & 0xF (j < 8) or |= (l & 0xF) << 4; top 2 bits to scales[8 + j%4]
        for j in range(16):
            l = np.int64(Ls[j])
            if j < 8:
                ob[_Q3K.scales + j] = np.uint8(l & 0xF)
            else:
                ob[_Q3K.scales + j - 8] = np.uint8((np.int64(ob[_Q3K.scales + j - 8]) | ((l & 0xF) << 4)) & 0xFF)
            l >>= 4
            ob[_Q3K.scales + 8 + j % 4] = np.uint8((np.int64(ob[_Q3K.scales + 8 + j % 4]) | (l << (2 * (j // 4)))) & 0xFF)
    _from_lanes(Lt, 16, 16, L)
    dd = load_fp16(ob, _Q3K.d)
    for j in range(16):
        if j < 8:
            s = np.int64(ob[_Q3K.scales + j]) & 0xF
        else:
            s = np.int64(ob[_Q3K.scales + j - 8]) >> 4
        s = (s | (((np.int64(ob[_Q3K.scales + 8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)) - 32
        d = dd * f32(s)
        if d == _ZERO:
            continue
        xs, ls = xb[16 * j:16 * j + 16], L[16 * j:16 * j + 16]
        for ii in range(16):
            ls[ii] = _clamp(nearest_int(xs[ii] / d), -4, 3) + np.int32(4)
    # hmask: element j -> byte j % 32, bit j // 32, set when the code (0..7) is > 3, and
    # then the code drops by 4; codes 0..7 make both branch-free: bit = L >> 2, rest = L & 3
    for l in range(32):
        h = np.int32(0)
        for k in range(8):
            h |= (L[32 * k + l] >> np.int32(2)) << np.int32(k)
        ob[_Q3K.hmask + l] = np.uint8(h)
    for j in range(256):
        L[j] &= np.int32(3)
    _pack_2bit(ob, _Q3K.qs, L)


# --- Q4_K / Q5_K ------------------------------------------------------------------------


@ghelper
def _q45k_group(x, imatrix, has_im, out, b0, nsb, nbr, size, nmax, L, sc):  # type: ignore[no-untyped-def]
    """``nsb`` (1 or 2) consecutive Q4_K/Q5_K super-blocks from block ``b0``: their 8
    sub-blocks each go to lanes 8s..8s+7, so that two super-blocks fill 16 lanes."""
    X, W, Lt, Laux, scales, mins, sw, Ls, Lm = sc
    m = 8 * nsb
    for s in range(nsb):
        r = (b0 + s) // nbr
        j = b0 + s - r * nbr
        xb = x[r, j * 256:(j + 1) * 256]
        for jj in range(8):
            for i in range(32):
                X[i, 8 * s + jj] = xb[32 * jj + i]
        if has_im:  # _impl: weights qw·sqrt(sigma2 + x²), sigma2 = 2·Σx²/256 per super-block
            qw = imatrix[j * 256:(j + 1) * 256]
            sigma2 = np.float32(2.0) * _seq_sumsq(xb, 256) / np.float32(256.0)
            for jj in range(8):
                t = _ZERO
                for i in range(32):
                    v = X[i, 8 * s + jj]
                    W[i, 8 * s + jj] = qw[32 * jj + i] * np.sqrt(sigma2 + v * v)
                    t += W[i, 8 * s + jj]
                sw[8 * s + jj] = t
    for i in range(32):  # an odd super-block out: empty lanes 8..15
        for j in range(m, LANES):
            X[i, j] = _ZERO
            W[i, j] = _ZERO
    if not has_im:  # _ref: weights av_x + |x| with av_x = sqrt(Σx²/32) per sub-block
        av = numba.carray(stack_f32(), LANES)
        for j in range(LANES):
            av[j] = _ZERO
        for i in range(32):
            for j in range(LANES):
                av[j] += X[i, j] * X[i, j]
        for j in range(LANES):
            av[j] = np.sqrt(av[j] / np.float32(32.0))
        for i in range(32):
            for j in range(LANES):
                W[i, j] = av[j] + np.abs(X[i, j])
        rmin = np.float32(-1.0) if nmax == 15 else np.float32(-0.5)
        nstep = 20 if nmax == 15 else 15
        make_qkx_lanes(32, nmax, X, W, Lt, rmin, np.float32(0.1), nstep, False, scales, mins)
    else:
        make_qkx_lanes(32, nmax, X, W, Lt, np.float32(-0.9), np.float32(0.05), 36, False, scales, mins)
    for s in range(nsb):
        r = (b0 + s) // nbr
        j = b0 + s - r * nbr
        _q45k_finish(x[r, j * 256:(j + 1) * 256], out[r, j * size:(j + 1) * size], has_im, nmax, 8 * s, L, sc)


@ghelper
def _q45k_finish(xb, ob, has_im, nmax, lane0, L, sc):  # type: ignore[no-untyped-def]
    """One Q4_K/Q5_K super-block after the sub-block search (lanes lane0..lane0+7):
    sub-block scales to 6 bits (``_ref``: nearest_int(63/max·s); ``_impl``:
    make_qp_quants), requantize, pack."""
    X, W, Lt, Laux, scales, mins, sw, Ls, Lm = sc
    sc8 = scales[lane0:lane0 + 8]
    mn8 = mins[lane0:lane0 + 8]
    if not has_im:
        max_scale = _ZERO
        max_min = _ZERO
        for j in range(8):
            if sc8[j] > max_scale:
                max_scale = sc8[j]
            if mn8[j] > max_min:
                max_min = mn8[j]
        inv_scale = np.float32(63.0) / max_scale if max_scale > _ZERO else _ZERO
        inv_min = np.float32(63.0) / max_min if max_min > _ZERO else _ZERO
        for j in range(8):
            Ls[j] = min(63, nearest_int(inv_scale * sc8[j]) & 0xFF)  # uint8_t ls = ...; MIN(63, ls)
            Lm[j] = min(63, nearest_int(inv_min * mn8[j]) & 0xFF)
        d = max_scale / np.float32(63.0)
        dmin = max_min / np.float32(63.0)
    else:
        d = make_qp_quants(8, 63, sc8, Ls, sw[lane0:lane0 + 8])
        dmin = make_qp_quants(8, 63, mn8, Lm, sw[lane0:lane0 + 8])
        if nmax == 31:  # only quantize_row_q5_K_impl applies MIN(63, .) again
            for j in range(8):
                Ls[j] = min(63, Ls[j])
                Lm[j] = min(63, Lm[j])
    for j in range(8):
        for i in range(32):
            L[32 * j + i] = Lt[i, lane0 + j]
    _pack_scale_min_k4(ob, _Q4K.scales, Ls, Lm)
    store_fp16(ob, _Q4K.d, d)
    store_fp16(ob, _Q4K.dmin, dmin)
    _requantize_affine(xb, ob, _Q4K.d, _Q4K.dmin, _Q4K.scales, L, 8, 32, nmax, False)
    if nmax == 15:
        for c in range(4):
            for l in range(32):
                ob[_Q4K.qs + 32 * c + l] = np.uint8(L[64 * c + l] | (L[64 * c + 32 + l] << 4))
    else:
        for l in range(32):
            ob[_Q5K.qh + l] = 0
        for c in range(4):
            for l in range(32):
                l1 = L[64 * c + l]
                l2 = L[64 * c + 32 + l]
                h = np.int64(ob[_Q5K.qh + l])
                if l1 > 15:
                    l1 -= 16
                    h |= 1 << (2 * c)
                if l2 > 15:
                    l2 -= 16
                    h |= 2 << (2 * c)
                ob[_Q5K.qh + l] = np.uint8(h)
                ob[_Q5K.qs + 32 * c + l] = np.uint8(l1 | (l2 << 4))


# --- Q6_K -------------------------------------------------------------------------------


@ghelper
def _q6k_block(xb, ob, qw, has_im, L, sc):  # type: ignore[no-untyped-def]
    X, W, Lt, Laux, scales, mins, sw, Ls, Lm = sc
    _to_lanes(xb, 16, 16, X)
    for i in range(16):
        for j in range(16):
            W[i, j] = qw[16 * j + i] if has_im else X[i, j] * X[i, j]  # the raw imatrix, no sigma
    make_qx_lanes(16, 32, X, W, Lt, scales)
    max_scale = _ZERO
    max_abs_scale = _ZERO
    for ib in range(16):
        a = np.abs(scales[ib])
        if a > max_abs_scale:
            max_abs_scale = a
            max_scale = scales[ib]
    if max_abs_scale < GROUP_MAX_EPS:
        for k in range(ob.shape[0]):
            ob[k] = 0
        return
    _from_lanes(Lt, 16, 16, L)
    iscale = np.float32(-128.0) / max_scale
    store_fp16(ob, _Q6K.d, _ONE / iscale)
    for ib in range(16):
        ob[_Q6K.scales + ib] = np.uint8(min(127, nearest_int(iscale * scales[ib])) & 0xFF)
    dd = load_fp16(ob, _Q6K.d)
    for j in range(16):
        s = np.int32(ob[_Q6K.scales + j])
        d = dd * f32(s - 256 if s > 127 else s)
        if d == _ZERO:
            continue
        xs, ls = xb[16 * j:16 * j + 16], L[16 * j:16 * j + 16]
        for ii in range(16):
            ls[ii] = _clamp(nearest_int(xs[ii] / d), -32, 31) + np.int32(32)
    for c in range(2):
        for l in range(32):
            e = 128 * c + l
            q1 = L[e] & 0xF
            q2 = L[e + 32] & 0xF
            q3 = L[e + 64] & 0xF
            q4 = L[e + 96] & 0xF
            ob[_Q6K.ql + 64 * c + l] = np.uint8(q1 | (q3 << 4))
            ob[_Q6K.ql + 64 * c + l + 32] = np.uint8(q2 | (q4 << 4))
            ob[_Q6K.qh + 32 * c + l] = np.uint8(((L[e] >> 4) | ((L[e + 32] >> 4) << 2) | ((L[e + 64] >> 4) << 4)
                                              | ((L[e + 96] >> 4) << 6)) & 0xFF)


# --- Q8_K -------------------------------------------------------------------------------


@ghelper
def _q8k_block(xb, ob):  # type: ignore[no-untyped-def]
    """``quantize_row_q8_K_ref``; an all-zero block writes d = 0, qs = 0 and (unlike ggml,
    which leaves them unwritten) bsums = 0."""
    mx, amax = first_absmax(xb, 256)
    if amax == _ZERO:
        for k in range(ob.shape[0]):
            ob[k] = 0
        return
    iscale = np.float32(-127.0) / mx
    for j in range(256):
        ob[_Q8K.qs + j] = np.uint8(min(127, nearest_int(iscale * xb[j])) & 0xFF)
    for j in range(16):
        s = 0
        for ii in range(16):
            v = np.int64(ob[_Q8K.qs + 16 * j + ii])
            s += v - 256 if v > 127 else v
        ob[_Q8K.bsums + 2 * j] = np.uint8(s & 0xFF)
        ob[_Q8K.bsums + 2 * j + 1] = np.uint8((s >> 8) & 0xFF)
    u = f32_bits(_ONE / iscale)
    for k in range(4):
        ob[_Q8K.d + k] = np.uint8((u >> (8 * k)) & 0xFF)


# --- chunk quantizers: one compiled copy per type (accel.numba.gguf_blocks.instantiate) ---


def _blockwise_template(x, imatrix, sigma2, has_im, out, start, stop, nbr):  # type: ignore[no-untyped-def]
    """Super-blocks ``start .. stop`` of the rows ``x``, one ``quantize_block`` each."""
    L = np.empty(256, np.int32)
    sc = _scratch()
    for b in range(start, stop):
        r = b // nbr
        j = b - r * nbr
        qw = imatrix[j * 256:(j + 1) * 256] if has_im else imatrix
        quantize_block(x[r, j * 256:(j + 1) * 256], out[r, j * SIZE:(j + 1) * SIZE], qw, has_im, L, sc)  # noqa: F821


def _paired_template(x, imatrix, sigma2, has_im, out, start, stop, nbr):  # type: ignore[no-untyped-def]
    """Q4_K / Q5_K: two super-blocks (16 sub-blocks) per lane-wise search."""
    L = np.empty(256, np.int32)
    sc = _scratch()
    for b in range(start, stop, 2):
        _q45k_group(x, imatrix, has_im, out, b, min(2, stop - b), nbr, SIZE, NMAX, L, sc)  # noqa: F821


@ghelper
def _scratch():  # type: ignore[no-untyped-def]
    """Per-chunk buffers of the searches: X, W, Lt, Laux, scales, mins, sw, Ls, Lm."""
    return (np.zeros((32, LANES), np.float32), np.zeros((32, LANES), np.float32),
            np.zeros((32, LANES), np.int32), np.zeros((32, LANES), np.int32),
            np.zeros(LANES, np.float32), np.zeros(LANES, np.float32), np.zeros(LANES, np.float32),
            np.zeros(LANES, np.int32), np.zeros(LANES, np.int32))


@ghelper
def _q8k(xb, ob, qw, has_im, L, sc):  # type: ignore[no-untyped-def]
    _q8k_block(xb, ob)  # Q8_K has no imatrix rule


# --- block decoders (ggml's dequantize_row_qX_K, one super-block) -----------------------
#
# Inner loops run over views to their run-time length (see accel.numba.gguf_blocks).



@ginline
def _dequant_q2k(q, y):  # type: ignore[no-untyped-def]
    """y = d·(sc & 0xF)·q − dmin·(sc >> 4), 2-bit q."""
    d = load_fp16(q, _Q2K.d)
    dmin = load_fp16(q, _Q2K.dmin)
    for j in range(16):
        s = np.int32(q[_Q2K.scales + j])
        dl = d * f32(s & 0xF)
        ml = dmin * f32(s >> 4)
        h = j // 8  # 128-element half
        shift = 2 * ((j % 8) // 2)
        base = _Q2K.qs + 32 * h + 16 * (j % 2)
        qs, yy = q[base:base + 16], y[16 * j:16 * j + 16]
        for l in range(qs.shape[0]):
            yy[l] = dl * f32((np.int32(qs[l]) >> shift) & 3) - ml


@ginline
def _dequant_q3k(q, y):  # type: ignore[no-untyped-def]
    """y = d·(sc − 32)·(low 2 bits − 4·!hmask bit), 6-bit scales."""
    dall = load_fp16(q, _Q3K.d)
    for j in range(16):
        if j < 8:
            sc = np.int32(q[_Q3K.scales + j]) & 0xF
        else:
            sc = np.int32(q[_Q3K.scales + j - 8]) >> 4
        sc = (sc | (((np.int32(q[_Q3K.scales + 8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)) - 32
        dl = dall * f32(sc)
        e0 = 16 * j  # elements e0 .. e0 + 15 share their 32-group and 128-half
        base = _Q3K.qs + 32 * (e0 // 128) + (e0 % 32)
        shift = 2 * ((e0 % 128) // 32)
        hbit = e0 // 32
        qs, hm, yy = q[base:base + 16], q[_Q3K.hmask + e0 % 32:_Q3K.hmask + e0 % 32 + 16], y[e0:e0 + 16]
        for l in range(qs.shape[0]):
            low = (np.int32(qs[l]) >> shift) & 3
            hb = (np.int32(hm[l]) >> hbit) & 1
            yy[l] = dl * f32(low - (4 - 4 * hb))


@ginline
def _pair_scales(q, c, d, dmin):  # type: ignore[no-untyped-def]
    """(d·sc, dmin·m) of sub-blocks 2·c and 2·c + 1 (Q4_K/Q5_K: scales at the same offset)."""
    sc, m = _scale_min_k4(2 * c, q, _Q4K.scales)
    sc2, m2 = _scale_min_k4(2 * c + 1, q, _Q4K.scales)
    return d * f32(sc), dmin * f32(m), d * f32(sc2), dmin * f32(m2)


@ginline
def _dequant_q4k_pair(q, y, c, d, dmin):  # type: ignore[no-untyped-def]
    """Sub-blocks 2·c and 2·c + 1 (elements 64·c ..): low and high nibbles of the same 32
    qs bytes, decoded on the stack in 32-bit lanes and stored at once (as Q5_K)."""
    d1, m1, d2, m2 = _pair_scales(q, c, d, dmin)
    t = numba.carray(stack_quad_f32(), 64)  # on the stack: aliases neither q nor y
    for l in range(32):
        v = q[_Q4K.qs + 32 * c + l]
        t[l] = d1 * f32(code_bits(v, 0, 0xF, v, 0, 0, 0)) - m1
        t[32 + l] = d2 * f32(code_bits(v, 4, 0xF, v, 0, 0, 0)) - m2
    store_run(y, 64 * c, t, 64)


@ginline
def dequant_q4k_block(q, y):  # type: ignore[no-untyped-def]
    """``dequantize_row_q4_K``: y = (d·sc)·q − dmin·m."""
    d = load_fp16(q, _Q4K.d)
    dmin = load_fp16(q, _Q4K.dmin)
    _dequant_q4k_pair(q, y, 0, d, dmin)
    _dequant_q4k_pair(q, y, 1, d, dmin)
    _dequant_q4k_pair(q, y, 2, d, dmin)
    _dequant_q4k_pair(q, y, 3, d, dmin)


@ginline
def _dequant_q5k_pair(q, y, c2, d, dmin):  # type: ignore[no-untyped-def]
    """Sub-blocks 2·c2 and 2·c2 + 1 (elements 64·c2 ..): low and high nibbles of the same
    32 qs bytes, fifth bits 2·c2 and 2·c2 + 1 of qh. Called with a constant ``c2``, so
    every shift is by a constant and LLVM narrows the element loop (Numba widens integer
    arithmetic to 64 bits) to 32-bit lanes, 16 per vector."""
    d1, m1, d2, m2 = _pair_scales(q, c2, d, dmin)
    t = numba.carray(stack_quad_f32(), 64)  # on the stack: aliases neither q nor y
    for l in range(32):
        v = q[_Q5K.qs + 32 * c2 + l]
        h = q[_Q5K.qh + l]
        t[l] = d1 * f32(code_bits(v, 0, 0xF, h, 2 * c2, 1, 4)) - m1
        t[32 + l] = d2 * f32(code_bits(v, 4, 0xF, h, 2 * c2 + 1, 1, 4)) - m2
    store_run(y, 64 * c2, t, 64)


@ginline
def _dequant_q5k(q, y):  # type: ignore[no-untyped-def]
    """``dequantize_row_q5_K``: as Q4_K with a fifth bit from qh."""
    d = load_fp16(q, _Q5K.d)
    dmin = load_fp16(q, _Q5K.dmin)
    _dequant_q5k_pair(q, y, 0, d, dmin)
    _dequant_q5k_pair(q, y, 1, d, dmin)
    _dequant_q5k_pair(q, y, 2, d, dmin)
    _dequant_q5k_pair(q, y, 3, d, dmin)


@ginline
def _dequant_q6k(q, y):  # type: ignore[no-untyped-def]
    """``dequantize_row_q6_K``: y = d·sc·(6-bit q − 32), q from ql nibbles and qh pairs."""
    d = load_fp16(q, _Q6K.d)
    for c2 in range(2):
        for half in range(2):  # elements l = 16·half .. 16·half + 15 share their four scales
            ql0 = _Q6K.ql + 64 * c2 + 16 * half
            qh0 = _Q6K.qh + 32 * c2 + 16 * half
            is0 = _Q6K.scales + 8 * c2 + half
            d1 = d * f32(_i8(q[is0]))
            d2 = d * f32(_i8(q[is0 + 2]))
            d3 = d * f32(_i8(q[is0 + 4]))
            d4 = d * f32(_i8(q[is0 + 6]))
            qa, qb, qh = q[ql0:ql0 + 16], q[ql0 + 32:ql0 + 48], q[qh0:qh0 + 16]
            t = numba.carray(stack_quad_f32(), 64)  # on the stack: aliases neither q nor y
            for l in range(16):
                a = np.int32(qa[l])
                b2 = np.int32(qb[l])
                h = np.int32(qh[l])
                t[l] = d1 * f32(((a & 0xF) | ((h & 3) << 4)) - 32)
                t[16 + l] = d2 * f32(((b2 & 0xF) | (((h >> 2) & 3) << 4)) - 32)
                t[32 + l] = d3 * f32(((a >> 4) | (((h >> 4) & 3) << 4)) - 32)
                t[48 + l] = d4 * f32(((b2 >> 4) | (((h >> 6) & 3) << 4)) - 32)
            y0 = 128 * c2 + 16 * half
            for k in range(4):
                src, dst = t[16 * k:16 * k + 16], y[y0 + 32 * k:y0 + 32 * k + 16]
                for l in range(dst.shape[0]):
                    dst[l] = src[l]


@ginline
def _dequant_q8k(q, y):  # type: ignore[no-untyped-def]
    """``dequantize_row_q8_K``: y = d·q, d a float32."""
    p = _Q8K.d
    d = bits_f32(np.int64(q[p]) | (np.int64(q[p + 1]) << 8) | (np.int64(q[p + 2]) << 16) | (np.int64(q[p + 3]) << 24))
    qs = q[_Q8K.qs:_Q8K.qs + 256]
    for j in range(qs.shape[0]):
        v = np.int32(qs[j])
        y[j] = d * f32(v - ((v >> np.int32(7)) << np.int32(8)))


@ghelper
def _i8(v):  # type: ignore[no-untyped-def]
    v = np.int32(v)
    return v - 256 if v > 127 else v


def _kernels(name, decode, quantize_block=None, nmax=0):  # type: ignore[no-untyped-def]
    """The type's (quantize, dequantize) kernels: per super-block ``quantize_block``, or
    the paired Q4_K/Q5_K search with ``nmax`` levels."""
    fmt = FORMATS[name]
    if quantize_block is None:
        chunk = instantiate(_paired_template, f"{name}_quantize_chunk", SIZE=fmt.type_size, NMAX=nmax)
    else:
        chunk = instantiate(_blockwise_template, f"{name}_quantize_chunk", SIZE=fmt.type_size,
                            quantize_block=quantize_block)
    quantize, dequantize = gguf_kernels(fmt, ghelper(chunk), decode, chunk=CHUNK)
    return (lambda x, im, s2, has, out: quantize(x, im, s2, has, out)), dequantize


_KERNELS = {
    "q2_k": _kernels("q2_k", _dequant_q2k, _q2k_block),
    "q3_k": _kernels("q3_k", _dequant_q3k, _q3k_block),
    "q4_k": _kernels("q4_k", dequant_q4k_block, nmax=15),
    "q5_k": _kernels("q5_k", _dequant_q5k, nmax=31),
    "q6_k": _kernels("q6_k", _dequant_q6k, _q6k_block),
    "q8_k": _kernels("q8_k", _dequant_q8k, _q8k),
}
QUANTIZE = {name: kernels[0] for name, kernels in _KERNELS.items()}
DEQUANTIZE = {name: kernels[1] for name, kernels in _KERNELS.items()}
