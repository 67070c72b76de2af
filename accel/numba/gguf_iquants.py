"""GGUF IQ4_NL, IQ4_XS (codebook ``kvalues_iq4nl``) and MXFP4 as Numba kernels.

``_iq4_block`` is ggml's ``quantize_row_iq4_nl_impl`` (``ggml-quants.c`` @ d99724f2)
with ntry = 7, as ``quantize_iq4_nl`` / ``quantize_iq4_xs`` (what ``ggml_quantize_chunk``
writes) call it: per 32-element sub-block a least-squares scale refined over 15
candidate reciprocals, then IQ4_NL stores fp16(d) and re-picks the codes with 1/d,
IQ4_XS quantizes the eight sub-block scales to 6 bits under d = -max_scale/32 and
re-picks each sub-block's codes with 1/(d·l) (the float32 d, a reciprocal multiply).
``_mxfp4_block`` is ``quantize_row_mxfp4_ref`` (E8M0 exponent from float32 ``log2f``,
argmin over the 16 doubled E2M1 values, first index on a tie). Byte layouts:
:mod:`refquant.formats.gguf_iquants`, :mod:`refquant.formats.gguf_mx` (FACTS.md 3.14-3.16).

=======  =====  ==============================================================
type     bytes  fields
=======  =====  ==============================================================
IQ4_NL    18    d @0, qs[16] @2
IQ4_XS   136    d @0, scales_h:u16 @2, scales_l[4] @4, qs[128] @8
MXFP4     17    e @0, qs[16] @1
=======  =====  ==============================================================
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from accel.numba.gguf_math import (
    GROUP_MAX_EPS, e8m0_to_fp32_half, f32, gkernel, ghelper, load_fp16, nearest_int, store_fp16,
)

__all__ = ["QUANTIZE", "DEQUANTIZE"]

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int32)
KVALUES_MXFP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.int32)
_KVF = KVALUES_IQ4NL.astype(np.float32)
_KMF = KVALUES_MXFP4.astype(np.float32)
NTRY = 7
CHUNK = 64  # 32-element blocks per prange iteration (IQ4_XS: 8 super-blocks)


@ghelper
def best_index_iq4nl(x):  # type: ignore[no-untyped-def]
    """``best_index_int8(16, kvalues_iq4nl, x)``: binary search, ties to the upper entry."""
    if x <= _KVF[0]:
        return 0
    if x >= _KVF[15]:
        return 15
    ml = 0
    mu = 15
    while mu - ml > 1:
        mav = (ml + mu) // 2
        if x < _KVF[mav]:
            mu = mav
        else:
            ml = mav
    return mu - 1 if x - _KVF[mu - 1] < _KVF[mu] - x else mu


@ghelper
def _sub_block_scale(xb, w):  # type: ignore[no-untyped-def]
    """The per-sub-block part of ``quantize_row_iq4_nl_impl`` (ntry = 7): the scale d
    (0 for a sub-block with amax < GROUP_MAX_EPS)."""
    amax = _ZERO
    mx = _ZERO
    for j in range(32):
        ax = np.abs(xb[j])
        if ax > amax:
            amax = ax
            mx = xb[j]
    if amax < GROUP_MAX_EPS:
        return _ZERO
    d = -mx / _KVF[0]
    idd = _ONE / d
    sumqx = _ZERO
    sumq2 = _ZERO
    for j in range(32):
        q = _KVF[best_index_iq4nl(idd * xb[j])]
        sumqx += w[j] * q * xb[j]
        sumq2 += w[j] * q * q
    d = sumqx / sumq2 if sumq2 > _ZERO else _ZERO
    best = d * sumqx
    for itry in range(-NTRY, NTRY + 1):
        idd = f32(itry - 127) / mx
        sumqx = _ZERO
        sumq2 = _ZERO
        for j in range(32):
            q = _KVF[best_index_iq4nl(idd * xb[j])]
            sumqx += w[j] * q * xb[j]
            sumq2 += w[j] * q * q
        if sumq2 > _ZERO and sumqx * sumqx > best * sumq2:
            d = sumqx / sumq2
            best = d * sumqx
    return d


@ghelper
def _weights(xb, qw, has_im, sigma2, w):  # type: ignore[no-untyped-def]
    for j in range(32):
        v = xb[j]
        w[j] = qw[j] * np.sqrt(sigma2 + v * v) if has_im else v * v


@ghelper
def _sigma2(xb, n):  # type: ignore[no-untyped-def]
    """``sigma2 = Σx²; sigma2 *= 2.f/super_block_size``."""
    s = _ZERO
    for j in range(n):
        s += xb[j] * xb[j]
    return s * (np.float32(2.0) / f32(n))


@ghelper
def _iq4nl_block(xb, ob, qw, has_im, w):  # type: ignore[no-untyped-def]
    _weights(xb, qw, has_im, _sigma2(xb, 32), w)
    d = _sub_block_scale(xb, w)
    store_fp16(ob, 0, d)
    idd = _ONE / d if d != _ZERO else _ZERO
    for j in range(16):
        ob[2 + j] = np.uint8(best_index_iq4nl(idd * xb[j]) | (best_index_iq4nl(idd * xb[j + 16]) << 4))


@ghelper
def _iq4xs_block(xb, ob, qw, has_im, w, scales):  # type: ignore[no-untyped-def]
    sigma2 = _sigma2(xb, 256)
    max_scale = _ZERO
    amax_scale = _ZERO
    for ib in range(8):
        xs = xb[32 * ib:32 * ib + 32]
        _weights(xs, qw[32 * ib:32 * ib + 32] if has_im else qw, has_im, sigma2, w)
        s = _sub_block_scale(xs, w)
        scales[ib] = s
        a = np.abs(s)
        if a > amax_scale:
            amax_scale = a
            max_scale = s
    d = -max_scale / np.float32(32.0)
    store_fp16(ob, 0, d)
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
            ob[8 + 16 * ib + j] = np.uint8(best_index_iq4nl(idl * xb[base + j])
                                           | (best_index_iq4nl(idl * xb[base + 16 + j]) << 4))
        l += 32
        if ib % 2 == 0:
            ob[4 + ib // 2] = np.uint8(l & 0xF)
        else:
            ob[4 + ib // 2] = np.uint8(np.int64(ob[4 + ib // 2]) | ((l & 0xF) << 4))
        scales_h |= (l >> 4) << (2 * ib)
    ob[2] = np.uint8(scales_h & 0xFF)
    ob[3] = np.uint8((scales_h >> 8) & 0xFF)


@ghelper
def _best_index_mxfp4(x, e):  # type: ignore[no-untyped-def]
    best = 0
    best_err = np.abs(_KMF[0] * e - x)
    for i in range(1, 16):
        err = np.abs(_KMF[i] * e - x)
        if err < best_err:
            best = i
            best_err = err
    return best


@ghelper
def _mxfp4_block(xb, ob):  # type: ignore[no-untyped-def]
    amax = _ZERO
    for j in range(32):
        a = np.abs(xb[j])
        if amax < a:
            amax = a
    e = 0
    if amax > _ZERO:
        # log2f: the float64 log2 rounded to float32 (see refquant.formats.gguf_mx)
        lg = np.float32(math.log2(np.float64(amax)))
        e = np.int64(np.int32(np.floor(lg) - np.float32(2.0) + np.float32(127.0))) & 0xFF
    d = e8m0_to_fp32_half(e)
    ob[0] = np.uint8(e)
    for j in range(16):
        ob[1 + j] = np.uint8(_best_index_mxfp4(xb[j], d) | (_best_index_mxfp4(xb[j + 16], d) << 4))


IQ4_NL, IQ4_XS, MXFP4 = range(3)


@gkernel
def _quantize(kind, x, imatrix, has_im, out):  # type: ignore[no-untyped-def]
    rows, n = x.shape
    qk = 256 if kind == IQ4_XS else 32
    size = 18
    if kind == IQ4_XS:
        size = 136
    elif kind == MXFP4:
        size = 17
    nbr = n // qk
    total = rows * nbr
    chunk = CHUNK // 8 if kind == IQ4_XS else CHUNK
    for c in prange((total + chunk - 1) // chunk):
        w = np.empty(32, np.float32)
        scales = np.empty(8, np.float32)
        for b in range(c * chunk, min(total, (c + 1) * chunk)):
            r = b // nbr
            j = b - r * nbr
            xb = x[r, j * qk:(j + 1) * qk]
            ob = out[r, j * size:(j + 1) * size]
            qw = imatrix[j * qk:(j + 1) * qk] if has_im else imatrix
            if kind == IQ4_NL:
                _iq4nl_block(xb, ob, qw, has_im, w)
            elif kind == IQ4_XS:
                _iq4xs_block(xb, ob, qw, has_im, w, scales)
            else:
                _mxfp4_block(xb, ob)


@gkernel
def _dequantize(kind, data, out):  # type: ignore[no-untyped-def]
    """``dequantize_row_iq4_nl`` / ``_iq4_xs`` / ``_mxfp4``."""
    nb = data.shape[0]
    for c in prange((nb + CHUNK - 1) // CHUNK):
        for b in range(c * CHUNK, min(nb, (c + 1) * CHUNK)):
            q = data[b]
            y = out[b]
            if kind == IQ4_NL:
                d = load_fp16(q, 0)
                for j in range(16):
                    y[j] = d * _KVF[q[2 + j] & 0xF]
                    y[j + 16] = d * _KVF[q[2 + j] >> 4]
            elif kind == IQ4_XS:
                d = load_fp16(q, 0)
                sh = np.int32(q[2]) | (np.int32(q[3]) << 8)
                for ib in range(8):
                    ls = ((np.int32(q[4 + ib // 2]) >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4)
                    dl = d * f32(ls - 32)
                    for j in range(16):
                        v = q[8 + 16 * ib + j]
                        y[32 * ib + j] = dl * _KVF[v & 0xF]
                        y[32 * ib + 16 + j] = dl * _KVF[v >> 4]
            else:
                d = e8m0_to_fp32_half(q[0])
                for j in range(16):
                    y[j] = _KMF[q[1 + j] & 0xF] * d
                    y[j + 16] = _KMF[q[1 + j] >> 4] * d


_NAMES = ("iq4_nl", "iq4_xs", "mxfp4")
QUANTIZE = {name: (lambda x, im, s2, has, out, k=k: _quantize(k, x, im, has, out)) for k, name in enumerate(_NAMES)}
DEQUANTIZE = {name: (lambda data, out, k=k: _dequantize(k, data, out)) for k, name in enumerate(_NAMES)}
