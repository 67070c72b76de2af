"""ggml K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K, bit-exact with ggml.

The bytes are those of ggml's ``ggml_quantize_chunk`` (``src/ggml-quants.c``,
ggml-org/ggml @ d99724f2): without an importance matrix ``quantize_row_qX_K_ref``,
with one the ``quantize_row_qX_K_impl`` path of ``quantize_qX_K``. Q8_K is not a
storage type (ggml_quantize_chunk has no Q8_K case); it is ``quantize_row_q8_K_ref``
and takes no importance matrix. Block layouts are ``block_qX_K`` of ``ggml-common.h``
(little-endian, packed, QK_K = 256 values per super-block):

======  =====  ====  =========================================================
type    bytes  bpw   fields in memory order
======  =====  ====  =========================================================
Q2_K     84    2.625 scales[16] (lo nibble: scale, hi: min), qs[64], d:f16, dmin:f16
Q3_K    110    3.4375 hmask[32], qs[64], scales[12] (16 × 6 bit), d:f16
Q4_K    144    4.5   d:f16, dmin:f16, scales[12] (8 scales + 8 mins, 6 bit), qs[128]
Q5_K    176    5.5   d:f16, dmin:f16, scales[12], qh[32], qs[128]
Q6_K    210    6.5625 ql[128], qh[64], scales[16]:int8, d:f16
Q8_K    292    9.125 d:f32, qs[256]:int8, bsums[16]:int16
======  =====  ====  =========================================================

Every K-quant follows one recipe; only the pieces differ:

1. per sub-block (16 or 32 values) a scale search from
   :mod:`refquant.formats.gguf_kquants_search` gives a float scale (and min);
2. the sub-block scales are quantized to 4, 6 or 8 bits against one fp16 super-block
   scale (by ``nearest_int`` of ``iscale·scale``, or with an imatrix by
   ``make_qp_quants`` / ``make_qx_quants``);
3. "requantize": the codes are recomputed from the *decoded* fp16 scales,
   ``l = nearest_int((x + dmin·m)/(d·sc))`` (a true division), except in a sub-block
   whose decoded scale is 0, which keeps the codes of step 1;
4. bit packing.

Arithmetic is float32 with no FMA and sequential sums (FACTS.md section 3).
Each function takes or returns all super-blocks of a tensor at once; the searches
are vectorized over sub-blocks, and super-blocks are processed in chunks of
``_CHUNK`` only to keep the working set in cache.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .gguf_kquants_search import (
    GROUP_MAX_EPS,
    make_q3_quants,
    make_qkx_quants,
    make_qp_quants,
    make_qx_quants,
    nearest_int,
    scan_absmax,
    scan_max,
    seq_sum,
)

__all__ = ["QK_K", "KQUANT_DTYPES", "quantize_kquant", "dequantize_kquant"]

F32 = np.float32
QK_K = 256
_CHUNK = 2048  # super-blocks per chunk (a working set of a few MB)

_u1, _i1, _f2 = np.uint8, np.int8, np.dtype("<f2")

#: Structured dtype of each block, field order and sizes as in ggml-common.h.
KQUANT_DTYPES: dict[str, np.dtype] = {
    "q2_k": np.dtype([("scales", _u1, 16), ("qs", _u1, 64), ("d", _f2), ("dmin", _f2)]),
    "q3_k": np.dtype([("hmask", _u1, 32), ("qs", _u1, 64), ("scales", _u1, 12), ("d", _f2)]),
    "q4_k": np.dtype([("d", _f2), ("dmin", _f2), ("scales", _u1, 12), ("qs", _u1, 128)]),
    "q5_k": np.dtype(
        [("d", _f2), ("dmin", _f2), ("scales", _u1, 12), ("qh", _u1, 32), ("qs", _u1, 128)]
    ),
    "q6_k": np.dtype([("ql", _u1, 128), ("qh", _u1, 64), ("scales", _i1, 16), ("d", _f2)]),
    "q8_k": np.dtype([("d", "<f4"), ("qs", _i1, 256), ("bsums", "<i2", 16)]),
}


# --------------------------------------------------------------------------- helpers


def _to_fp16(v: np.ndarray) -> np.ndarray:
    """ggml ``GGML_FP32_TO_FP16``: float32 → IEEE half, round to nearest even."""
    return np.asarray(v, dtype=F32).astype(np.float16)


def _row_sigma2(x: np.ndarray, factor: int) -> np.ndarray:
    """``factor·Σx²/QK_K`` per super-block with a sequential sum, as the ``_impl``
    quantizers compute sigma² (factor 1 for Q2_K, 2 for Q3_K/Q4_K/Q5_K).
    Returns shape (n_blocks, 1)."""
    sumx2 = seq_sum(x * x)
    if factor != 1:
        sumx2 = F32(factor) * sumx2
    return (sumx2 / F32(QK_K))[:, None]


def _imatrix_weights(x: np.ndarray, qw: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """``qw·sqrt(sigma2 + x²)``: the imatrix weighting of every ``_impl`` quantizer."""
    return qw * np.sqrt(sigma2 + x * x)


def _requantize(
    x: np.ndarray,
    L: np.ndarray,
    d: np.ndarray,
    lo: int,
    hi: int,
    dm: np.ndarray | None = None,
) -> np.ndarray:
    """Recompute codes from the decoded sub-block scales (step 3 of the recipe).

    ``l = clamp(nearest_int((x + dm)/d), lo, hi) - lo``; sub-blocks with ``d == 0``
    keep ``L``. ``x`` is (n_blocks, n_sub, size), ``d`` and ``dm`` (n_blocks, n_sub).
    """
    d3 = d[..., None]
    num = x if dm is None else x + dm[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        new = np.clip(nearest_int(num / d3), lo, hi) - lo
    return np.where(d3 != 0, new, L.reshape(x.shape)).astype(np.uint8)


# --------------------------------------------------------------------------- packing


def _pack_2bit(L: np.ndarray) -> np.ndarray:
    """Codes 0..3 (n, 256) → qs (n, 64): byte 32h + l holds elements 128h + l + 32k
    at bits 2k (k = 0..3)."""
    L4 = L.reshape(-1, 2, 4, 32)  # (n, half, k, l)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)[None, None, :, None]
    return np.bitwise_or.reduce(L4 << shifts, axis=2).reshape(-1, 64)


def _unpack_2bit(qs: np.ndarray) -> np.ndarray:
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)[None, None, :, None]
    return ((qs.reshape(-1, 2, 1, 32) >> shifts) & 3).reshape(-1, QK_K)


def _pack_nibbles_k(L: np.ndarray) -> np.ndarray:
    """Codes 0..15 (n, 256) → qs (n, 128): byte 32c + l holds element 64c + l in the
    low nibble and 64c + 32 + l in the high nibble."""
    L4 = L.reshape(-1, 4, 2, 32)
    return (L4[:, :, 0] | (L4[:, :, 1] << 4)).reshape(-1, 128)


def _unpack_nibbles_k(qs: np.ndarray) -> np.ndarray:
    q = qs.reshape(-1, 4, 1, 32)
    return np.concatenate([q & 0xF, q >> 4], axis=2).reshape(-1, QK_K)


def _pack_scales_3k(s: np.ndarray) -> np.ndarray:
    """Sixteen 6-bit scales (n, 16) → Q3_K ``scales[12]``.

    ::

        byte 0..7 : lo nibble = s[j] & 0xF (j = 0..7), hi nibble = s[j + 8] & 0xF
        byte 8..11: byte 8 + r holds s[4q + r] >> 4 at bits 2q (q = 0..3)
    """
    low = s & 0xF
    out = np.empty((s.shape[0], 12), dtype=np.uint8)
    out[:, :8] = low[:, :8] | (low[:, 8:] << 4)
    hi = (s >> 4).reshape(-1, 4, 4)  # (n, q, r)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)[None, :, None]
    out[:, 8:] = np.bitwise_or.reduce(hi << shifts, axis=1)
    return out


def _unpack_scales_3k(b: np.ndarray) -> np.ndarray:
    """Q3_K ``scales[12]`` (n, 12) → sixteen 6-bit values (n, 16), 0..63."""
    low = np.concatenate([b[:, :8] & 0xF, b[:, :8] >> 4], axis=1)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)[None, :, None]
    hi = ((b[:, None, 8:] >> shifts) & 3).reshape(-1, 16)
    return low | (hi << 4)


def _pack_scale_min_k4(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Eight scales and eight mins (n, 8) uint8 → ``scales[12]`` (Q4_K, Q5_K).

    ::

        byte 0..3 : ls[j] (bits 0-5) | (ls[j+4] >> 4) << 6
        byte 4..7 : lm[j] (bits 0-5) | (lm[j+4] >> 4) << 6
        byte 8..11: (ls[j+4] & 0xF) | (lm[j+4] & 0xF) << 4

    uint8 arithmetic throughout, as ggml's ``|=`` on ``uint8_t``.
    """
    out = np.empty((ls.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = ls[:, :4] | ((ls[:, 4:] >> 4) << 6)
    out[:, 4:8] = lm[:, :4] | ((lm[:, 4:] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4)
    return out


def _unpack_scale_min_k4(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml ``get_scale_min_k4`` for j = 0..7: ``scales[12]`` (n, 12) → sc, m (n, 8)."""
    sc = np.concatenate([b[:, 0:4] & 63, (b[:, 8:12] & 0xF) | ((b[:, 0:4] >> 6) << 4)], axis=1)
    m = np.concatenate([b[:, 4:8] & 63, (b[:, 8:12] >> 4) | ((b[:, 4:8] >> 6) << 4)], axis=1)
    return sc, m


def _pack_high_bits(h: np.ndarray, groups: int) -> np.ndarray:
    """Bits (n, 256) → (n, 256/groups... ) bytes: element ``e`` goes to byte
    ``e % (256/groups)``, bit ``e // (256/groups)``; ``groups`` = 8 (Q3_K hmask,
    Q5_K qh)."""
    width = QK_K // groups
    shifts = np.arange(groups, dtype=np.uint8)[None, :, None]
    return np.bitwise_or.reduce(h.reshape(-1, groups, width) << shifts, axis=1)


def _unpack_high_bits(b: np.ndarray, groups: int) -> np.ndarray:
    shifts = np.arange(groups, dtype=np.uint8)[None, :, None]
    return ((b[:, None, :] >> shifts) & 1).reshape(-1, QK_K)


# --------------------------------------------------------------------------- Q2_K


def _quantize_q2_k(x: np.ndarray, qw: np.ndarray | None) -> np.ndarray:
    """``quantize_row_q2_K_ref`` / ``quantize_row_q2_K_impl``: 16 sub-blocks of 16,
    x ≈ d·sc·l − dmin·m with 4-bit sc, m and 2-bit l."""
    n = x.shape[0]
    xs = x.reshape(n * 16, 16)
    blocks = np.zeros(n, dtype=KQUANT_DTYPES["q2_k"])
    if qw is None:
        fit = make_qkx_quants(xs, np.abs(xs), 3, -0.5, 0.1, 15, use_mad=True)
        scales, mins = fit.scale.reshape(n, 16), fit.the_min.reshape(n, 16)
        max_scale, max_min = scan_max(scales), scan_max(mins)
        with np.errstate(divide="ignore", invalid="ignore"):
            ls = nearest_int((F32(15) / max_scale)[:, None] * scales) & 0xFF
            lm = nearest_int((F32(15) / max_min)[:, None] * mins)
        ls = np.where(max_scale[:, None] > 0, ls, 0)
        lm = np.where(max_min[:, None] > 0, lm, 0)
        blocks["scales"] = (ls | (lm << 4)) & 0xFF
        blocks["d"] = _to_fp16(np.where(max_scale > 0, max_scale / F32(15), F32(0)))
        blocks["dmin"] = _to_fp16(np.where(max_min > 0, max_min / F32(15), F32(0)))
    else:
        ws = _imatrix_weights(x, qw, _row_sigma2(x, 1)).reshape(n * 16, 16)
        fit = make_qkx_quants(xs, ws, 3, -0.9, 0.05, 36, use_mad=False)
        sw = seq_sum(ws).reshape(n, 16)
        dm, ls = make_qp_quants(fit.scale.reshape(n, 16), 15, sw)
        mm, lm = make_qp_quants(fit.the_min.reshape(n, 16), 15, sw)
        blocks["scales"] = ls | (lm << 4)
        blocks["d"], blocks["dmin"] = _to_fp16(dm), _to_fp16(mm)
    sc = blocks["scales"]
    d = blocks["d"].astype(F32)[:, None] * (sc & 0xF).astype(F32)
    dm = blocks["dmin"].astype(F32)[:, None] * (sc >> 4).astype(F32)
    L = _requantize(x.reshape(n, 16, 16), fit.codes, d, 0, 3, dm)
    blocks["qs"] = _pack_2bit(L.reshape(n, QK_K))
    return blocks


def _dequantize_q2_k(blocks: np.ndarray) -> np.ndarray:
    """``dequantize_row_q2_K``: y = (d·(sc & 0xF))·l − dmin·(sc >> 4)."""
    sc = blocks["scales"]
    dl = blocks["d"].astype(F32)[:, None] * (sc & 0xF).astype(F32)
    ml = blocks["dmin"].astype(F32)[:, None] * (sc >> 4).astype(F32)
    q = _unpack_2bit(blocks["qs"]).reshape(-1, 16, 16).astype(F32)
    return (dl[..., None] * q - ml[..., None]).reshape(-1, QK_K)


# --------------------------------------------------------------------------- Q3_K


def _quantize_q3_k(x: np.ndarray, qw: np.ndarray | None) -> np.ndarray:
    """``quantize_row_q3_K_ref`` / ``_impl``: 16 sub-blocks of 16, x ≈ d·(s − 32)·l
    with 6-bit s and 3-bit l in −4..3 (stored as l + 4: 2 bits in qs, 1 in hmask)."""
    n = x.shape[0]
    xs = x.reshape(n * 16, 16)
    blocks = np.zeros(n, dtype=KQUANT_DTYPES["q3_k"])
    if qw is None:
        scale, codes = make_q3_quants(xs, 4)
        scales = scale.reshape(n, 16)
        max_scale, _ = scan_absmax(scales)
        nonzero = max_scale != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iscale = np.where(nonzero, F32(-32) / max_scale, F32(1))
            l = nearest_int(iscale[:, None] * scales)
            l = ((l + 128) & 0xFF) - 128  # int8_t l = nearest_int(...)
        s = np.where(nonzero[:, None], np.clip(l, -32, 31) + 32, 0).astype(np.uint8)
        blocks["d"] = _to_fp16(np.where(nonzero, F32(1) / iscale, F32(0)))
    else:
        ws = _imatrix_weights(x, qw, _row_sigma2(x, 2)).reshape(n * 16, 16)
        scale, codes = make_qx_quants(xs, 4, ws)
        sw = seq_sum(ws).reshape(n, 16)
        d_block, s = make_qx_quants(scale.reshape(n, 16), 32, sw)
        blocks["d"] = _to_fp16(d_block)
    blocks["scales"] = _pack_scales_3k(s)
    sc = _unpack_scales_3k(blocks["scales"]).astype(np.int32) - 32
    d = blocks["d"].astype(F32)[:, None] * sc.astype(F32)
    L = _requantize(x.reshape(n, 16, 16), codes, d, -4, 3).reshape(n, QK_K)
    high = (L > 3).astype(np.uint8)
    blocks["hmask"] = _pack_high_bits(high, 8)
    blocks["qs"] = _pack_2bit(L - 4 * high)
    return blocks


def _dequantize_q3_k(blocks: np.ndarray) -> np.ndarray:
    """``dequantize_row_q3_K``: y = (d·(s − 32))·(l2 − (hmask bit ? 0 : 4))."""
    sc = _unpack_scales_3k(blocks["scales"]).astype(np.int32) - 32
    dl = blocks["d"].astype(F32)[:, None] * sc.astype(F32)
    q = _unpack_2bit(blocks["qs"]).astype(np.int32)
    q = q - 4 * (1 - _unpack_high_bits(blocks["hmask"], 8).astype(np.int32))
    return (dl[..., None] * q.reshape(-1, 16, 16).astype(F32)).reshape(-1, QK_K)


# --------------------------------------------------------------------------- Q4_K / Q5_K


def _quantize_q45_k(x: np.ndarray, qw: np.ndarray | None, nmax: int) -> np.ndarray:
    """``quantize_row_q4_K_ref``/``_impl`` (nmax 15) and ``quantize_row_q5_K_ref``/
    ``_impl`` (nmax 31): 8 sub-blocks of 32, x ≈ d·sc·l − dmin·m, 6-bit sc and m."""
    n = x.shape[0]
    xs = x.reshape(n * 8, 32)
    if qw is None:
        av_x = np.sqrt(seq_sum(xs * xs) / F32(32))
        ws = av_x[:, None] + np.abs(xs)
        rmin, nstep = (-1.0, 20) if nmax == 15 else (-0.5, 15)
        fit = make_qkx_quants(xs, ws, nmax, rmin, 0.1, nstep, use_mad=False)
        scales, mins = fit.scale.reshape(n, 8), fit.the_min.reshape(n, 8)
        max_scale, max_min = scan_max(scales), scan_max(mins)
        with np.errstate(divide="ignore"):
            inv_scale = np.where(max_scale > 0, F32(63) / max_scale, F32(0))
            inv_min = np.where(max_min > 0, F32(63) / max_min, F32(0))
        # uint8_t ls = nearest_int(...); ls = MIN(63, ls)
        ls = np.minimum(nearest_int(inv_scale[:, None] * scales) & 0xFF, 63).astype(np.uint8)
        lm = np.minimum(nearest_int(inv_min[:, None] * mins) & 0xFF, 63).astype(np.uint8)
        d, dmin = max_scale / F32(63), max_min / F32(63)
    else:
        ws = _imatrix_weights(x, qw, _row_sigma2(x, 2)).reshape(n * 8, 32)
        fit = make_qkx_quants(xs, ws, nmax, -0.9, 0.05, 36, use_mad=False)
        sw = seq_sum(ws).reshape(n, 8)
        d, ls = make_qp_quants(fit.scale.reshape(n, 8), 63, sw)
        dmin, lm = make_qp_quants(fit.the_min.reshape(n, 8), 63, sw)
        if nmax == 31:  # only quantize_row_q5_K_impl clamps again
            ls, lm = np.minimum(ls, 63), np.minimum(lm, 63)
    blocks = np.zeros(n, dtype=KQUANT_DTYPES["q4_k" if nmax == 15 else "q5_k"])
    blocks["scales"] = _pack_scale_min_k4(ls, lm)
    blocks["d"], blocks["dmin"] = _to_fp16(d), _to_fp16(dmin)
    sc, m = _unpack_scale_min_k4(blocks["scales"])
    d_sub = blocks["d"].astype(F32)[:, None] * sc.astype(F32)
    dm_sub = blocks["dmin"].astype(F32)[:, None] * m.astype(F32)
    L = _requantize(x.reshape(n, 8, 32), fit.codes, d_sub, 0, nmax, dm_sub)
    L = L.reshape(n, QK_K)
    if nmax == 15:
        blocks["qs"] = _pack_nibbles_k(L)
    else:
        blocks["qs"] = _pack_nibbles_k(L & 0xF)
        # qh[l] bit 2c: element 64c + l; bit 2c + 1: element 64c + 32 + l
        blocks["qh"] = _pack_high_bits(L >> 4, 8)
    return blocks


def _dequantize_q45_k(blocks: np.ndarray) -> np.ndarray:
    """``dequantize_row_q4_K`` / ``dequantize_row_q5_K``: y = (d·sc)·l − dmin·m."""
    sc, m = _unpack_scale_min_k4(blocks["scales"])
    d1 = blocks["d"].astype(F32)[:, None] * sc.astype(F32)
    m1 = blocks["dmin"].astype(F32)[:, None] * m.astype(F32)
    q = _unpack_nibbles_k(blocks["qs"])
    if "qh" in blocks.dtype.names:
        q = q | (_unpack_high_bits(blocks["qh"], 8) << 4)
    return (d1[..., None] * q.reshape(-1, 8, 32).astype(F32) - m1[..., None]).reshape(-1, QK_K)


# --------------------------------------------------------------------------- Q6_K


def _quantize_q6_k(x: np.ndarray, qw: np.ndarray | None) -> np.ndarray:
    """``quantize_row_q6_K_ref`` / ``_impl``: 16 sub-blocks of 16, x ≈ d·s·l with
    int8 s and l in −32..31 (stored +32, 4 bits in ql, 2 in qh). The imatrix path
    passes the raw importance as the weights (no sigma² term)."""
    n = x.shape[0]
    scale, codes = make_qx_quants(
        x.reshape(n * 16, 16), 32, None if qw is None else qw.reshape(n * 16, 16)
    )
    scales = scale.reshape(n, 16)
    max_scale, max_abs_scale = scan_absmax(scales)
    live = ~(max_abs_scale < GROUP_MAX_EPS)  # else the block is all zero bytes
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(live, F32(-128) / max_scale, F32(1))
        s = np.minimum(nearest_int(iscale[:, None] * scales), 127)
    blocks = np.zeros(n, dtype=KQUANT_DTYPES["q6_k"])
    blocks["scales"] = np.where(live[:, None], ((s + 128) & 0xFF) - 128, 0)
    blocks["d"] = _to_fp16(np.where(live, F32(1) / iscale, F32(0)))
    d = blocks["d"].astype(F32)[:, None] * blocks["scales"].astype(F32)
    L = _requantize(x.reshape(n, 16, 16), codes, d, -32, 31)
    L = np.where(live[:, None], L.reshape(n, QK_K), 0).astype(np.uint8)
    L4 = L.reshape(n, 2, 4, 32)  # (block, 128-chunk c, k, l): element 128c + 32k + l
    ql = np.stack(
        [L4[:, :, 0] & 0xF | (L4[:, :, 2] & 0xF) << 4, L4[:, :, 1] & 0xF | (L4[:, :, 3] & 0xF) << 4],
        axis=2,
    )  # (n, c, 2, 32): ql[64c + l], ql[64c + 32 + l]
    blocks["ql"] = ql.reshape(n, 128)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)[None, None, :, None]
    blocks["qh"] = np.bitwise_or.reduce((L4 >> 4) << shifts, axis=2).reshape(n, 64)
    return blocks


def _dequantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    """``dequantize_row_q6_K``: y = (d·s)·(l − 32)."""
    ql = blocks["ql"].reshape(-1, 2, 2, 32)  # (n, c, half, l)
    low = np.stack([ql[:, :, 0] & 0xF, ql[:, :, 1] & 0xF, ql[:, :, 0] >> 4, ql[:, :, 1] >> 4], axis=2)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)[None, None, :, None]
    high = (blocks["qh"].reshape(-1, 2, 1, 32) >> shifts) & 3
    q = (low | (high << 4)).astype(np.int32) - 32
    ds = blocks["d"].astype(F32)[:, None] * blocks["scales"].astype(F32)
    return (ds[..., None] * q.reshape(-1, 16, 16).astype(F32)).reshape(-1, QK_K)


# --------------------------------------------------------------------------- Q8_K


def _quantize_q8_k(x: np.ndarray, qw: np.ndarray | None) -> np.ndarray:
    """``quantize_row_q8_K_ref``: q = min(127, nearest_int(−127/max·x)), d = 1/iscale
    kept as float32, bsums = Σq per 16. The importance matrix is ignored (ggml has no
    imatrix path for Q8_K). For an all-zero block ggml leaves bsums unwritten; here
    they are 0, which is what they sum to."""
    n = x.shape[0]
    vmax, amax = scan_absmax(x)
    live = amax != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(live, F32(-127) / vmax, F32(0))
    q = np.minimum(nearest_int(iscale[:, None] * x), 127)
    q = np.where(live[:, None], ((q + 128) & 0xFF) - 128, 0)
    blocks = np.zeros(n, dtype=KQUANT_DTYPES["q8_k"])
    blocks["qs"] = q
    blocks["bsums"] = q.reshape(n, 16, 16).sum(axis=2)
    with np.errstate(divide="ignore"):
        blocks["d"] = np.where(live, F32(1) / iscale, F32(0))
    return blocks


def _dequantize_q8_k(blocks: np.ndarray) -> np.ndarray:
    """``dequantize_row_q8_K``: y = d·q."""
    return blocks["d"][:, None] * blocks["qs"].astype(F32)


# --------------------------------------------------------------------------- dispatch

_QUANTIZERS: dict[str, Callable[[np.ndarray, np.ndarray | None], np.ndarray]] = {
    "q2_k": _quantize_q2_k,
    "q3_k": _quantize_q3_k,
    "q4_k": lambda x, qw: _quantize_q45_k(x, qw, 15),
    "q5_k": lambda x, qw: _quantize_q45_k(x, qw, 31),
    "q6_k": _quantize_q6_k,
    "q8_k": _quantize_q8_k,
}

_DEQUANTIZERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "q2_k": _dequantize_q2_k,
    "q3_k": _dequantize_q3_k,
    "q4_k": _dequantize_q45_k,
    "q5_k": _dequantize_q45_k,
    "q6_k": _dequantize_q6_k,
    "q8_k": _dequantize_q8_k,
}


def quantize_kquant(name: str, x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Quantize super-blocks to one K-quant type.

    Parameters
    ----------
    name : {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_k"}
    x : ndarray of float32, shape (n_blocks, 256)
    weights : ndarray of float32, shape (n_blocks, 256), optional
        The importance matrix entries of each value (the row's imatrix repeated for
        every row). None selects ggml's ``_ref`` quantizer.

    Returns
    -------
    ndarray of ``KQUANT_DTYPES[name]``, shape (n_blocks,)
    """
    x = np.asarray(x, dtype=F32)
    quantize = _QUANTIZERS[name]
    parts = []
    for start in range(0, x.shape[0], _CHUNK):
        stop = start + _CHUNK
        qw = None if weights is None else np.asarray(weights[start:stop], dtype=F32)
        parts.append(quantize(x[start:stop], qw))
    if not parts:
        return np.zeros(0, dtype=KQUANT_DTYPES[name])
    return np.concatenate(parts)


def dequantize_kquant(name: str, blocks: np.ndarray) -> np.ndarray:
    """Decode K-quant blocks (structured, ``KQUANT_DTYPES[name]``, shape (n_blocks,))
    to float32 of shape (n_blocks, 256), as ggml's ``dequantize_row_qX_K``."""
    return _DEQUANTIZERS[name](blocks).astype(F32, copy=False)
