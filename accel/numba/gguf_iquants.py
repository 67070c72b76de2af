"""GGUF IQ4_NL, IQ4_XS (codebook ``kvalues_iq4nl``), MXFP4 and NVFP4 as Numba kernels.

``_iq4_block`` is ggml's ``quantize_row_iq4_nl_impl`` (``ggml-quants.c`` @ d99724f2)
with ntry = 7, as ``quantize_iq4_nl`` / ``quantize_iq4_xs`` (what ``ggml_quantize_chunk``
writes) call it: per 32-element sub-block a least-squares scale refined over 15
candidate reciprocals, then IQ4_NL stores fp16(d) and re-picks the codes with 1/d,
IQ4_XS quantizes the eight sub-block scales to 6 bits under d = -max_scale/32 and
re-picks each sub-block's codes with 1/(d·l) (the float32 d, a reciprocal multiply).
``_mxfp4_block`` is ``quantize_row_mxfp4_ref`` (E8M0 exponent from float32 ``log2f``,
argmin over the 16 doubled E2M1 values, first index on a tie); ``_nvfp4_block`` is
``quantize_row_nvfp4_ref`` (per 16 a ``ggml_fp32_to_ue4m3`` scale of amax / 6, the same
argmin). Byte layouts:
:mod:`refquant.formats.gguf_iquants`, :mod:`refquant.formats.gguf_mx`.

=======  =====  ==============================================================
type     bytes  fields
=======  =====  ==============================================================
IQ4_NL    18    d @0, qs[16] @2
IQ4_XS   136    d @0, scales_h:u16 @2, scales_l[4] @4, qs[128] @8
MXFP4     17    e @0, qs[16] @1
NVFP4     36    d[4] @0, qs[32] @4 (sub-block s: qs[8s + j] = code j | code j + 8 << 4)
=======  =====  ==============================================================
"""

from __future__ import annotations

import math

import numba
import numpy as np

from accel.numba.gguf_blocks import field_offsets, gguf_kernels, instantiate
from accel.numba.gguf_math import (
    max_abs, GROUP_MAX_EPS, LANES, e8m0_to_fp32_half, f32, f32_bits, ghelper, ginline, load_fp16, nearest_int,
    stack_f32, store_fp16,
)
from refquant.formats import FORMATS
from refquant.formats.gguf_iquants import KVALUES_IQ4NL as REF_KVALUES_IQ4NL
from refquant.formats.gguf_mx import KVALUES_MXFP4 as REF_KVALUES_MXFP4, ue4m3_to_fp32_half

__all__ = ["QUANTIZE", "DEQUANTIZE"]

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
KVALUES_IQ4NL = REF_KVALUES_IQ4NL.astype(np.int32)
KVALUES_MXFP4 = REF_KVALUES_MXFP4.astype(np.int32)
_KVF = KVALUES_IQ4NL.astype(np.float32)
_KMF = KVALUES_MXFP4.astype(np.float32)
# kvalues_mxfp4 is 0 and seven magnitudes, then their negatives (_best_index_mxfp4 relies on it)
assert (KVALUES_MXFP4[8:] == -KVALUES_MXFP4[:8]).all() and (np.diff(KVALUES_MXFP4[:8]) > 0).all()
_KMAG = KVALUES_MXFP4[:8].astype(np.float32)
NTRY = 7
CHUNK = 64  # 32-element blocks per prange iteration (IQ4_XS: 8 super-blocks)
# byte offsets of the fields, from the declared block types
_IQ4_NL, _IQ4_XS, _MXFP4, _NVFP4 = (field_offsets(FORMATS[t]) for t in ("iq4_nl", "iq4_xs", "mxfp4", "nvfp4"))
_IQ4_XS_SIZE = FORMATS["iq4_xs"].type_size
# ggml_ue4m3_to_fp32 of every byte, from the reference (a table lookup, as exact as the C)
_UE4M3_HALF = np.array(ue4m3_to_fp32_half(np.arange(256, dtype=np.uint8)))


@ghelper
def _upper_neighbour(x):  # type: ignore[no-untyped-def]
    """For kv[0] < x < kv[15]: mu with kv[mu-1] <= x < kv[mu] (the binary search's
    result), counted without branches: 1 + #{k in 1..14 : kv[k] <= x}."""
    mu = 1
    for k in range(1, 15):
        mu += 1 if x >= _KVF[k] else 0
    return mu


@ghelper
def best_index_iq4nl(x):  # type: ignore[no-untyped-def]
    """``best_index_int8(16, kvalues_iq4nl, x)``: x <= kv[0] gives 0, x >= kv[15] gives 15
    (a NaN also 15, as the C binary search ends there); otherwise the nearer neighbour,
    the lower one only when strictly nearer (ties go up)."""
    mu = _upper_neighbour(x)
    idx = mu - 1 if x - _KVF[mu - 1] < _KVF[mu] - x else mu
    idx = 0 if x <= _KVF[0] else idx
    return 15 if (x >= _KVF[15] or x != x) else idx


@ghelper
def _iq4_value(x):  # type: ignore[no-untyped-def]
    """``values[best_index_int8(16, values, x)]`` as float32."""
    mu = _upper_neighbour(x)
    lo = _KVF[mu - 1]
    hi = _KVF[mu]
    v = lo if x - lo < hi - x else hi
    v = _KVF[0] if x <= _KVF[0] else v
    return _KVF[15] if (x >= _KVF[15] or x != x) else v


@ghelper
def _sub_block_scales(X, W, scales):  # type: ignore[no-untyped-def]
    """The per-sub-block part of ``quantize_row_iq4_nl_impl`` (ntry = 7) on ``LANES``
    lanes (X, W: float32 (32, LANES), element-major; see :mod:`accel.numba.gguf_search`
    for the lane layout): the scale d per lane, 0 for a lane with amax < GROUP_MAX_EPS."""
    vmax = numba.carray(stack_f32(), LANES)
    amax = numba.carray(stack_f32(), LANES)
    idd = numba.carray(stack_f32(), LANES)
    sumqx = numba.carray(stack_f32(), LANES)
    sumq2 = numba.carray(stack_f32(), LANES)
    best = numba.carray(stack_f32(), LANES)
    d = numba.carray(stack_f32(), LANES)
    for j in range(LANES):
        vmax[j] = _ZERO
        amax[j] = _ZERO
    for i in range(32):
        for j in range(LANES):
            v = X[i, j]
            a = np.abs(v)
            bigger = a > amax[j]
            amax[j] = a if bigger else amax[j]
            vmax[j] = v if bigger else vmax[j]
    for j in range(LANES):
        idd[j] = _ONE / (-vmax[j] / _KVF[0])  # d = -max/values[0]; id = 1/d
        sumqx[j] = _ZERO
        sumq2[j] = _ZERO
    for i in range(32):
        for j in range(LANES):
            v = X[i, j]
            q = _iq4_value(idd[j] * v)
            sumqx[j] += W[i, j] * q * v
            sumq2[j] += W[i, j] * q * q
    for j in range(LANES):
        d[j] = sumqx[j] / sumq2[j] if sumq2[j] > _ZERO else _ZERO
        best[j] = d[j] * sumqx[j]
    for itry in range(-NTRY, NTRY + 1):
        for j in range(LANES):
            idd[j] = f32(itry - 127) / vmax[j]
            sumqx[j] = _ZERO
            sumq2[j] = _ZERO
        for i in range(32):
            for j in range(LANES):
                v = X[i, j]
                q = _iq4_value(idd[j] * v)
                sumqx[j] += W[i, j] * q * v
                sumq2[j] += W[i, j] * q * q
        for j in range(LANES):
            ok = (sumq2[j] > _ZERO) & (sumqx[j] * sumqx[j] > best[j] * sumq2[j])
            d[j] = sumqx[j] / sumq2[j] if ok else d[j]
            best[j] = d[j] * sumqx[j] if ok else best[j]
    for j in range(LANES):
        scales[j] = _ZERO if amax[j] < GROUP_MAX_EPS else d[j]


@ghelper
def _sigma2(xb, n):  # type: ignore[no-untyped-def]
    """``sigma2 = Σx²; sigma2 *= 2.f/super_block_size``."""
    s = _ZERO
    for j in range(n):
        s += xb[j] * xb[j]
    return s * (np.float32(2.0) / f32(n))


@ghelper
def _load_lane(xb, qw, has_im, sigma2, X, W, lane):  # type: ignore[no-untyped-def]
    """32 values of one (sub-)block into lane ``lane``, with its weights: x², or
    qw·sqrt(sigma2 + x²) with an imatrix."""
    for i in range(32):
        v = xb[i]
        X[i, lane] = v
        W[i, lane] = qw[i] * np.sqrt(sigma2 + v * v) if has_im else v * v


@ghelper
def _store_iq4nl(xb, ob, d):  # type: ignore[no-untyped-def]
    """IQ4_NL bytes: fp16(d), codes re-picked with id = 1/d (the float32 d)."""
    store_fp16(ob, _IQ4_NL.d, d)
    idd = _ONE / d if d != _ZERO else _ZERO
    for j in range(16):
        ob[_IQ4_NL.qs + j] = np.uint8(best_index_iq4nl(idd * xb[j]) | (best_index_iq4nl(idd * xb[j + 16]) << 4))


@ghelper
def _iq4xs_group(x, imatrix, has_im, out, b0, nsb, nbr, X, W, scales):  # type: ignore[no-untyped-def]
    """``nsb`` (1 or 2) consecutive IQ4_XS super-blocks from block ``b0``; their 8
    sub-blocks each are searched in lanes 8s..8s+7."""
    for s in range(nsb):
        r = (b0 + s) // nbr
        j = b0 + s - r * nbr
        xb = x[r, j * 256:(j + 1) * 256]
        sigma2 = _sigma2(xb, 256)
        for ib in range(8):
            qw = imatrix[j * 256 + 32 * ib:j * 256 + 32 * ib + 32] if has_im else imatrix
            _load_lane(xb[32 * ib:32 * ib + 32], qw, has_im, sigma2, X, W, 8 * s + ib)
    for i in range(32):  # an odd super-block out: empty lanes 8..15
        for lane in range(8 * nsb, LANES):
            X[i, lane] = _ZERO
            W[i, lane] = _ZERO
    _sub_block_scales(X, W, scales)
    for s in range(nsb):
        r = (b0 + s) // nbr
        j = b0 + s - r * nbr
        ob = out[r, j * _IQ4_XS_SIZE:(j + 1) * _IQ4_XS_SIZE]
        _iq4xs_finish(x[r, j * 256:(j + 1) * 256], ob, scales[8 * s:8 * s + 8])


@ghelper
def _iq4xs_finish(xb, ob, scales):  # type: ignore[no-untyped-def]
    """d = -max_scale/32 (fp16), 6-bit sub-block scales l, codes with 1/(d·l)."""
    max_scale = _ZERO
    amax_scale = _ZERO
    for ib in range(8):
        a = np.abs(scales[ib])
        if a > amax_scale:
            amax_scale = a
            max_scale = scales[ib]
    d = -max_scale / np.float32(32.0)
    store_fp16(ob, _IQ4_XS.d, d)
    idd = _ONE / d if d != _ZERO else _ZERO
    scales_h = 0
    for ib in range(8):
        l = nearest_int(idd * scales[ib])
        if l > 31:
            l = 31
        if l < -32:
            l = -32
        dl = d * f32(l)
        idl = _ONE / dl if dl != _ZERO else _ZERO
        base = 32 * ib
        for j in range(16):
            ob[_IQ4_XS.qs + 16 * ib + j] = np.uint8(best_index_iq4nl(idl * xb[base + j])
                                           | (best_index_iq4nl(idl * xb[base + 16 + j]) << 4))
        l += 32
        pos = _IQ4_XS.scales_l + ib // 2
        if ib % 2 == 0:
            ob[pos] = np.uint8(l & 0xF)
        else:
            ob[pos] = np.uint8(np.int64(ob[pos]) | ((l & 0xF) << 4))
        scales_h |= (l >> 4) << (2 * ib)
    ob[_IQ4_XS.scales_h] = np.uint8(scales_h & 0xFF)
    ob[_IQ4_XS.scales_h + 1] = np.uint8((scales_h >> 8) & 0xFF)


@ghelper
def _best_index_mxfp4(x, e):  # type: ignore[no-untyped-def]
    """``best_index_mxfp4``: the first i minimizing |kvalues_mxfp4[i]·e − x| (strict ``<``).

    The table is 0 and the seven magnitudes, then 0 and their negatives, so only |x|'s
    half is searched: the other half's errors are k·e + |x| >= |x|, the error of index 0,
    and never win a strict compare; its magnitudes give the same rounded errors
    (|−k·e − x| = |k·e − |x||). The scan is branch-free (selects), so a loop of calls
    vectorizes across values."""
    a = np.abs(x)
    best = np.int32(0)
    best_err = a  # |0·e − x|
    for i in range(1, 8):
        err = np.abs(_KMAG[i] * e - a)
        lt = err < best_err
        best = np.int32(i) if lt else best
        best_err = err if lt else best_err
    return best + np.int32(8) if x < _ZERO and best > 0 else best


@ghelper
def _mxfp4_block(xb, ob):  # type: ignore[no-untyped-def]
    amax = max_abs(xb, 32)
    e = 0
    if amax > _ZERO:
        # log2f: the float64 log2 rounded to float32 (see refquant.formats.gguf_mx)
        lg = np.float32(math.log2(np.float64(amax)))
        e = np.int64(np.int32(np.floor(lg) - np.float32(2.0) + np.float32(127.0))) & 0xFF
    d = e8m0_to_fp32_half(e)
    ob[_MXFP4.e] = np.uint8(e)
    qs, lo, hi = ob[_MXFP4.qs:_MXFP4.qs + 16], xb[:16], xb[16:]  # views: the loop vectorizes
    for j in range(qs.shape[0]):
        qs[j] = np.uint8(_best_index_mxfp4(lo[j], d) | (_best_index_mxfp4(hi[j], d) << np.int32(4)))


@ghelper
def _fp32_to_ue4m3(x):  # type: ignore[no-untyped-def]
    """``ggml_fp32_to_ue4m3`` (ggml-impl.h): round half up, everything from 256 up is 0x7E."""
    if not (x > _ZERO):
        return 0
    if x > np.float32(448.0):
        x = np.float32(448.0)
    bits = np.int64(f32_bits(x))
    e = ((bits >> 23) & 0xFF) - 127 + 7
    man = (bits >> 20) & 0x7
    if e <= 0:
        m = np.int64(np.int32(x * np.float32(512.0) + np.float32(0.5)))
        if m > 7:
            m = 7
        return 0 if m < 1 else m
    if e >= 15:
        return 0x7E
    man += (bits >> 19) & 1
    if man > 7:
        man = 0
        e += 1
        if e >= 15:
            return 0x7E
    return (e << 3) | man


@ghelper
def _nvfp4_block(xb, ob):  # type: ignore[no-untyped-def]
    """``quantize_row_nvfp4_ref``: four sub-blocks of 16, each a UE4M3 scale of amax / 6."""
    for s in range(4):
        sub = xb[16 * s:16 * (s + 1)]
        ue = _fp32_to_ue4m3(max_abs(sub, 16) / np.float32(6.0))
        ob[_NVFP4.d + s] = np.uint8(ue)
        d = _UE4M3_HALF[ue]
        qs, lo, hi = ob[_NVFP4.qs + 8 * s:_NVFP4.qs + 8 * s + 8], sub[:8], sub[8:]
        for j in range(qs.shape[0]):
            qs[j] = np.uint8(_best_index_mxfp4(lo[j], d) | (_best_index_mxfp4(hi[j], d) << np.int32(4)))


# --- chunk quantizers: one compiled copy per type (accel.numba.gguf_blocks.instantiate) ---


@ghelper
def _iq4nl_chunk(x, imatrix, sigma2, has_im, out, start, stop, nbr):  # type: ignore[no-untyped-def]
    """IQ4_NL blocks ``start .. stop``: ``LANES`` blocks side by side per scale search."""
    X = np.zeros((32, LANES), np.float32)
    W = np.zeros((32, LANES), np.float32)
    scales = np.zeros(LANES, np.float32)
    size = out.shape[1] // nbr
    for g in range(start, stop, LANES):
        m = min(LANES, stop - g)
        for lane in range(m):
            b = g + lane
            r = b // nbr
            j = b - r * nbr
            xb = x[r, j * 32:(j + 1) * 32]
            _load_lane(xb, imatrix[j * 32:(j + 1) * 32] if has_im else imatrix, has_im, _sigma2(xb, 32), X, W, lane)
        for i in range(32):  # unused lanes: all-zero blocks, results ignored
            for lane in range(m, LANES):
                X[i, lane] = _ZERO
                W[i, lane] = _ZERO
        _sub_block_scales(X, W, scales)
        for lane in range(m):
            b = g + lane
            r = b // nbr
            j = b - r * nbr
            _store_iq4nl(x[r, j * 32:(j + 1) * 32], out[r, j * size:(j + 1) * size], scales[lane])


@ghelper
def _iq4xs_chunk(x, imatrix, sigma2, has_im, out, start, stop, nbr):  # type: ignore[no-untyped-def]
    """IQ4_XS super-blocks ``start .. stop``: two per 16-lane scale search."""
    X = np.zeros((32, LANES), np.float32)
    W = np.zeros((32, LANES), np.float32)
    scales = np.zeros(LANES, np.float32)
    for b in range(start, stop, 2):
        _iq4xs_group(x, imatrix, has_im, out, b, min(2, stop - b), nbr, X, W, scales)


def _blockwise_template(x, imatrix, sigma2, has_im, out, start, stop, nbr):  # type: ignore[no-untyped-def]
    """Blocks ``start .. stop``, one ``quantize_block`` each (MXFP4, NVFP4: no imatrix rule)."""
    size = out.shape[1] // nbr
    for b in range(start, stop):
        r = b // nbr
        j = b - r * nbr
        quantize_block(x[r, j * QK:(j + 1) * QK], out[r, j * size:(j + 1) * size])  # noqa: F821 - bound by instantiate


def _blockwise_chunk(name, quantize_block):  # type: ignore[no-untyped-def]
    return ghelper(instantiate(_blockwise_template, f"{name}_quantize_chunk", QK=FORMATS[name].block_size,
                               quantize_block=quantize_block))


# --- block decoders: dequantize_row_iq4_nl / _iq4_xs / _mxfp4 / _nvfp4, one block ----------
#
# Byte and value ranges are views, looped to their run-time length (see accel.numba.gguf_blocks).


@ginline
def _dequant_iq4nl(q, y):  # type: ignore[no-untyped-def]
    """y = d·kvalues_iq4nl[nibble]."""
    d = load_fp16(q, _IQ4_NL.d)
    qs, lo, hi = q[_IQ4_NL.qs:_IQ4_NL.qs + 16], y[:16], y[16:]
    for j in range(qs.shape[0]):
        lo[j] = d * _KVF[qs[j] & 0xF]
        hi[j] = d * _KVF[qs[j] >> 4]


@ginline
def _dequant_iq4xs(q, y):  # type: ignore[no-untyped-def]
    """y = (d·(ls − 32))·kvalues_iq4nl[nibble], 6-bit sub-block scales ls (low 4 bits in
    scales_l, high 2 in scales_h)."""
    d = load_fp16(q, _IQ4_XS.d)
    sh = np.int32(q[_IQ4_XS.scales_h]) | (np.int32(q[_IQ4_XS.scales_h + 1]) << 8)
    for ib in range(8):
        ls = ((np.int32(q[_IQ4_XS.scales_l + ib // 2]) >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4)
        dl = d * f32(ls - 32)
        p = _IQ4_XS.qs + 16 * ib
        qs, lo, hi = q[p:p + 16], y[32 * ib:32 * ib + 16], y[32 * ib + 16:32 * ib + 32]
        for j in range(qs.shape[0]):
            lo[j] = dl * _KVF[qs[j] & 0xF]
            hi[j] = dl * _KVF[qs[j] >> 4]


@ginline
def _dequant_mxfp4(q, y):  # type: ignore[no-untyped-def]
    """y = kvalues_mxfp4[nibble]·2^(e − 128)."""
    d = e8m0_to_fp32_half(q[_MXFP4.e])
    qs, lo, hi = q[_MXFP4.qs:_MXFP4.qs + 16], y[:16], y[16:]
    for j in range(qs.shape[0]):
        lo[j] = _KMF[qs[j] & 0xF] * d
        hi[j] = _KMF[qs[j] >> 4] * d


@ginline
def _dequant_nvfp4(q, y):  # type: ignore[no-untyped-def]
    """Per 16 values: y = kvalues_mxfp4[nibble]·(UE4M3 scale / 2)."""
    for s in range(4):
        d = _UE4M3_HALF[q[_NVFP4.d + s]]
        qs, lo, hi = q[_NVFP4.qs + 8 * s:_NVFP4.qs + 8 * s + 8], y[16 * s:16 * s + 8], y[16 * s + 8:16 * s + 16]
        for j in range(qs.shape[0]):
            lo[j] = _KMF[qs[j] & 0xF] * d
            hi[j] = _KMF[qs[j] >> 4] * d


_KERNELS = {  # (quantize, dequantize) per type, from accel.numba.gguf_blocks.gguf_kernels
    "iq4_nl": gguf_kernels(FORMATS["iq4_nl"], _iq4nl_chunk, _dequant_iq4nl, chunk=CHUNK),
    "iq4_xs": gguf_kernels(FORMATS["iq4_xs"], _iq4xs_chunk, _dequant_iq4xs, chunk=CHUNK // 8),
    "mxfp4": gguf_kernels(FORMATS["mxfp4"], _blockwise_chunk("mxfp4", _mxfp4_block), _dequant_mxfp4, chunk=CHUNK),
    "nvfp4": gguf_kernels(FORMATS["nvfp4"], _blockwise_chunk("nvfp4", _nvfp4_block), _dequant_nvfp4, chunk=CHUNK),
}
QUANTIZE = {name: kernels[0] for name, kernels in _KERNELS.items()}
DEQUANTIZE = {name: kernels[1] for name, kernels in _KERNELS.items()}
