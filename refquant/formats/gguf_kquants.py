"""ggml's K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K, bit-exact with ggml.

=====  ==  =====  ======  ===========================================  ===========================
type   id  bytes  bpw     fields (memory order)                        value
=====  ==  =====  ======  ===========================================  ===========================
Q2_K   10   84    2.625   scales[16], qs[64], d:f16, dmin:f16          d·sc·q − dmin·m, q in 0..3
Q3_K   11  110    3.4375  hmask[32], qs[64], scales[12], d:f16         d·(s − 32)·q, q in −4..3
Q4_K   12  144    4.5     d:f16, dmin:f16, scales[12], qs[128]         d·sc·q − dmin·m, q in 0..15
Q5_K   13  176    5.5     d:f16, dmin:f16, scales[12], qh[32], qs[128] d·sc·q − dmin·m, q in 0..31
Q6_K   14  210    6.5625  ql[128], qh[64], scales[16]:i8, d:f16        d·s·q, q in −32..31
Q8_K   15  292    9.125   d:f32, qs[256]:i8, bsums[16]:i16             d·q
=====  ==  =====  ======  ===========================================  ===========================

A super-block holds QK_K = 256 values in sub-blocks of 16 (Q2_K, Q3_K, Q6_K: 4-, 6- and
8-bit sub-block scales ``sc``/``s`` and mins ``m``) or 32 (Q4_K, Q5_K: 6-bit). Structs are
``block_qX_K`` of ``ggml-common.h``; the bit layouts are drawn at the packing helpers.

The bytes are those of ``ggml_quantize_chunk`` (``ggml-quants.c``, ggml-org/ggml @
d99724f2): without an importance matrix ``quantize_row_qX_K_ref``,
with one ``quantize_row_qX_K_impl``. Q8_K is an intermediate type of the dot-product
kernels that ggml_quantize_chunk does not handle; its bytes are
``quantize_row_q8_K_ref``'s and it takes no importance matrix. Every type follows one
recipe, and only the pieces differ:

1. a scale search per sub-block (:mod:`refquant.formats.gguf_kquants_search`) gives a
   float scale, and a min for the affine types;
2. the sub-block scales are quantized against one fp16 super-block scale: by
   ``nearest_int(iscale·scale)`` in the ``_ref`` quantizers, by ``make_qp_quants`` /
   ``make_qx_quants`` in the imatrix paths;
3. "requantize": codes are recomputed from the *decoded* scales,
   ``q = nearest_int((x + dmin·m)/(d·sc))`` with a true division, except in a sub-block
   whose decoded scale is 0, which keeps the codes of step 1;
4. bit packing.

All arithmetic is float32 without FMA and with sequential sums.
Super-blocks are independent: the result does not depend on how they are chunked.
"""

from __future__ import annotations

import numpy as np

from refquant.formats._ggml_math import F32, GROUP_MAX_EPS, fp16_to_fp32, fp32_to_fp16, nearest_int, seq_sum
from refquant.formats.base import BlockFormat, Field
from refquant.formats.gguf_kquants_search import (
    make_q3_quants,
    make_qkx_quants,
    make_qp_quants,
    make_qx_quants,
    scan_absmax,
    scan_max,
)

__all__ = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"]

QK_K = 256
_DEQUANT_CHUNK = 2048  # super-blocks per decoding step (keeps temporaries in cache)
_SHIFT2 = np.array([0, 2, 4, 6], dtype=np.uint8)  # the four 2-bit fields of a byte


# --- rules shared by the family -------------------------------------------------------------


def _sigma2(x: np.ndarray, factor: int) -> np.ndarray:
    """``factor·Σx²/QK_K`` per super-block (sequential sum), the sigma² of the imatrix
    weights: factor 1 in Q2_K, 2 in Q3_K/Q4_K/Q5_K. Shape (n, 1)."""
    sumx2 = seq_sum(x * x)
    if factor != 1:
        sumx2 = F32(factor) * sumx2
    return (sumx2 / F32(QK_K))[:, None]


def _imatrix_weights(x: np.ndarray, importance: np.ndarray, factor: int) -> np.ndarray:
    """``qw·sqrt(sigma2 + x²)`` (``qw`` the importance of each value), the element
    weights of the ``_impl`` quantizers."""
    return importance * np.sqrt(_sigma2(x, factor) + x * x)


def _requantize(x: np.ndarray, codes: np.ndarray, d: np.ndarray, lo: int, hi: int,
                dm: np.ndarray | None = None) -> np.ndarray:
    """Step 3: ``clamp(nearest_int((x + dm)/d), lo, hi) - lo`` per sub-block; a sub-block
    with ``d == 0`` keeps ``codes`` (ggml's ``if (!d) continue;``).

    x : float32 (n, n_sub, size); codes : (n·n_sub, size); d, dm : float32 (n, n_sub).
    Returns uint8 (n, 256).
    """
    d3 = d[..., None]
    num = x if dm is None else x + dm[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        new = np.clip(nearest_int(num / d3), lo, hi) - lo
    return np.where(d3 != 0, new, codes.reshape(x.shape)).astype(np.uint8).reshape(-1, QK_K)


def _decoded(blocks: np.ndarray, field: str, sub: np.ndarray) -> np.ndarray:
    """``GGML_FP16_TO_FP32(block.field) * sub`` as float32, shape of ``sub``."""
    return fp16_to_fp32(blocks[field])[:, None] * sub.astype(F32)


# --- bit packing --------------------------------------------------------------------------


def _pack_2bit(q: np.ndarray) -> np.ndarray:
    """Codes 0..3 (n, 256) → qs (n, 64) (Q2_K, and the low bits of Q3_K)::

        qs[32h + l] = q[128h + l] | q[128h + l + 32] << 2 | q[128h + l + 64] << 4
                      | q[128h + l + 96] << 6            (h = 0, 1; l = 0..31)
    """
    q4 = q.reshape(-1, 2, 4, 32)  # (n, h, k, l): element 128h + 32k + l
    return np.bitwise_or.reduce(q4 << _SHIFT2[:, None], axis=2).reshape(-1, 64)


def _unpack_2bit(qs: np.ndarray) -> np.ndarray:
    return ((qs.reshape(-1, 2, 1, 32) >> _SHIFT2[:, None]) & 3).reshape(-1, QK_K)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """Codes 0..15 (n, 256) → qs (n, 128) (Q4_K, low bits of Q5_K)::

        qs[32c + l] = q[64c + l] | q[64c + 32 + l] << 4     (c = 0..3; l = 0..31)
    """
    q4 = q.reshape(-1, 4, 2, 32)
    return (q4[:, :, 0] | (q4[:, :, 1] << 4)).reshape(-1, 128)


def _unpack_nibbles(qs: np.ndarray) -> np.ndarray:
    q = qs.reshape(-1, 4, 1, 32)
    return np.concatenate([q & 0xF, q >> 4], axis=2).reshape(-1, QK_K)


def _pack_bit_planes(bits: np.ndarray) -> np.ndarray:
    """One bit per value (n, 256) → (n, 32): value e goes to byte e % 32, bit e // 32
    (Q3_K ``hmask``; Q5_K ``qh``, where it reads "bit 2c and 2c + 1 of qh[l] are values
    64c + l and 64c + 32 + l")."""
    shifts = np.arange(8, dtype=np.uint8)[:, None]
    return np.bitwise_or.reduce(bits.reshape(-1, 8, 32) << shifts, axis=1)


def _unpack_bit_planes(b: np.ndarray) -> np.ndarray:
    shifts = np.arange(8, dtype=np.uint8)[:, None]
    return ((b[:, None, :] >> shifts) & 1).reshape(-1, QK_K)


def _pack_scales_q3(s: np.ndarray) -> np.ndarray:
    """Sixteen 6-bit scales (n, 16) → Q3_K ``scales[12]``::

        byte j     (j = 0..7): s[j] & 0xF | (s[j + 8] & 0xF) << 4
        byte 8 + r (r = 0..3): bits 2q..2q+1 = s[4q + r] >> 4     (q = 0..3)
    """
    low = s & 0xF
    hi = (s >> 4).reshape(-1, 4, 4)  # (n, q, r)
    top = np.bitwise_or.reduce(hi << _SHIFT2[:, None], axis=1)
    return np.concatenate([low[:, :8] | (low[:, 8:] << 4), top], axis=1)


def _unpack_scales_q3(b: np.ndarray) -> np.ndarray:
    """Q3_K ``scales[12]`` (n, 12) → the sixteen 6-bit values (n, 16), 0..63."""
    low = np.concatenate([b[:, :8] & 0xF, b[:, :8] >> 4], axis=1)
    hi = ((b[:, None, 8:] >> _SHIFT2[:, None]) & 3).reshape(-1, 16)
    return low | (hi << 4)


def _pack_scale_min_k4(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Eight scales and eight mins (n, 8) → ``scales[12]`` of Q4_K/Q5_K::

        byte j     (j = 0..3): ls[j] | (ls[j + 4] >> 4) << 6
        byte 4 + j (j = 0..3): lm[j] | (lm[j + 4] >> 4) << 6
        byte 8 + j (j = 0..3): ls[j + 4] & 0xF | (lm[j + 4] & 0xF) << 4

    In uint8 arithmetic, as ggml's stores into ``uint8_t``.
    """
    ls, lm = ls.astype(np.uint8), lm.astype(np.uint8)
    return np.concatenate([
        ls[:, :4] | ((ls[:, 4:] >> 4) << 6),
        lm[:, :4] | ((lm[:, 4:] >> 4) << 6),
        (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4),
    ], axis=1)


def _unpack_scale_min_k4(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's ``get_scale_min_k4`` for j = 0..7: ``scales[12]`` (n, 12) → sc, m (n, 8)."""
    sc = np.concatenate([b[:, 0:4] & 63, (b[:, 8:12] & 0xF) | ((b[:, 0:4] >> 6) << 4)], axis=1)
    m = np.concatenate([b[:, 4:8] & 63, (b[:, 8:12] >> 4) | ((b[:, 4:8] >> 6) << 4)], axis=1)
    return sc, m


# --- the family ---------------------------------------------------------------------------


class _KQuant(BlockFormat):
    """The K-quant family: each type's ``quantize_blocks`` and ``_dequantize`` work on
    (n, 256) super-blocks; decoding runs in cache-sized chunks (the codec in
    :mod:`refquant.gguf` already hands the quantizers cache-sized chunks)."""

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        out = np.empty((blocks.shape[0], QK_K), dtype=F32)
        for start in range(0, blocks.shape[0], _DEQUANT_CHUNK):
            part = slice(start, start + _DEQUANT_CHUNK)
            out[part] = cls._dequantize(blocks[part])
        return out

    @classmethod
    def _dequantize(cls, blocks: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError(cls.__name__)


class Q2_K(_KQuant, name="q2_k"):
    """2-bit affine: 16 sub-blocks of 16, 4-bit scale and min each (2.625 bpw)."""

    fields = (Field("scales", "u1", 16), Field("qs", "u1", 64), Field("d", "<f2"), Field("dmin", "<f2"))

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        n = x.shape[0]
        xs = x.reshape(n * 16, 16)
        blocks = cls.empty_blocks(n)
        if weights is None:  # quantize_row_q2_K_ref
            fit = make_qkx_quants(xs, np.abs(xs), 3, -0.5, 0.1, 15, use_mad=True)
            scales, mins = fit.scale.reshape(n, 16), fit.the_min.reshape(n, 16)
            max_scale, max_min = scan_max(scales), scan_max(mins)
            with np.errstate(divide="ignore", invalid="ignore"):
                ls = nearest_int((F32(15) / max_scale)[:, None] * scales)
                lm = nearest_int((F32(15) / max_min)[:, None] * mins)
            ls = np.where(max_scale[:, None] > 0, ls, 0)
            lm = np.where(max_min[:, None] > 0, lm, 0)
            blocks["scales"] = (ls | (lm << 4)) & 0xFF  # uint8_t scales[j] = ls; |= lm << 4
            blocks["d"] = fp32_to_fp16(np.where(max_scale > 0, max_scale / F32(15), F32(0)))
            blocks["dmin"] = fp32_to_fp16(np.where(max_min > 0, max_min / F32(15), F32(0)))
        else:  # quantize_row_q2_K_impl
            ws = _imatrix_weights(x, weights, 1).reshape(n * 16, 16)
            fit = make_qkx_quants(xs, ws, 3, -0.9, 0.05, 36, use_mad=False)
            sw = seq_sum(ws).reshape(n, 16)
            d, ls = make_qp_quants(fit.scale.reshape(n, 16), 15, sw)
            dmin, lm = make_qp_quants(fit.the_min.reshape(n, 16), 15, sw)
            blocks["scales"] = ls | (lm << 4)
            blocks["d"], blocks["dmin"] = fp32_to_fp16(d), fp32_to_fp16(dmin)
        sc = blocks["scales"]
        q = _requantize(x.reshape(n, 16, 16), fit.codes, _decoded(blocks, "d", sc & 0xF), 0, 3,
                        _decoded(blocks, "dmin", sc >> 4))
        blocks["qs"] = _pack_2bit(q)
        return blocks

    @classmethod
    def _dequantize(cls, blocks: np.ndarray) -> np.ndarray:
        """``dequantize_row_q2_K``: (d·(sc & 0xF))·q − dmin·(sc >> 4)."""
        sc = blocks["scales"]
        dl, ml = _decoded(blocks, "d", sc & 0xF), _decoded(blocks, "dmin", sc >> 4)
        q = _unpack_2bit(blocks["qs"]).reshape(-1, 16, 16).astype(F32)
        return (dl[..., None] * q - ml[..., None]).reshape(-1, QK_K)


class Q3_K(_KQuant, name="q3_k"):
    """3-bit symmetric: 16 sub-blocks of 16, 6-bit scale each (3.4375 bpw). Codes are
    stored as q + 4 (0..7): bits 0-1 in ``qs``, bit 2 in ``hmask``."""

    fields = (Field("hmask", "u1", 32), Field("qs", "u1", 64), Field("scales", "u1", 12), Field("d", "<f2"))
    # make_q3_quants' descent steps through the 16 elements of a sub-block in Python:
    # 2^18 elements per call (16384 sub-blocks) keep NumPy's per-call cost small.
    chunk_elems = 1 << 18

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        n = x.shape[0]
        xs = x.reshape(n * 16, 16)
        blocks = cls.empty_blocks(n)
        if weights is None:  # quantize_row_q3_K_ref
            scale, codes = make_q3_quants(xs, 4)
            scales = scale.reshape(n, 16)
            max_scale, _ = scan_absmax(scales)
            live = max_scale != 0
            with np.errstate(divide="ignore", invalid="ignore"):
                iscale = np.where(live, F32(-32) / max_scale, F32(1))
                ls = nearest_int(iscale[:, None] * scales).astype(np.int8)  # int8_t l = ...
            s = np.where(live[:, None], np.clip(ls, -32, 31) + 32, 0)
            blocks["d"] = fp32_to_fp16(np.where(live, F32(1) / iscale, F32(0)))
        else:  # quantize_row_q3_K_impl
            ws = _imatrix_weights(x, weights, 2).reshape(n * 16, 16)
            scale, codes = make_qx_quants(xs, 4, ws)
            d_block, s = make_qx_quants(scale.reshape(n, 16), 32, seq_sum(ws).reshape(n, 16))
            blocks["d"] = fp32_to_fp16(d_block)
        blocks["scales"] = _pack_scales_q3(s.astype(np.uint8))
        sc = _unpack_scales_q3(blocks["scales"]).astype(np.int8) - np.int8(32)
        q = _requantize(x.reshape(n, 16, 16), codes, _decoded(blocks, "d", sc), -4, 3)
        high = q >> 2  # 1 where the 3-bit code is > 3
        blocks["hmask"] = _pack_bit_planes(high)
        blocks["qs"] = _pack_2bit(q & 3)
        return blocks

    @classmethod
    def _dequantize(cls, blocks: np.ndarray) -> np.ndarray:
        """``dequantize_row_q3_K``: (d·(s − 32))·(low2 − (hmask bit ? 0 : 4))."""
        sc = _unpack_scales_q3(blocks["scales"]).astype(np.int8) - np.int8(32)
        dl = _decoded(blocks, "d", sc)
        q = (_unpack_2bit(blocks["qs"]) | (_unpack_bit_planes(blocks["hmask"]) << 2)).astype(np.int8) - np.int8(4)
        return (dl[..., None] * q.reshape(-1, 16, 16).astype(F32)).reshape(-1, QK_K)


def _quantize_q45(fmt: type[_KQuant], x: np.ndarray, weights: np.ndarray | None,
                  nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """``quantize_row_q4_K_ref``/``_impl`` (nmax 15) and ``quantize_row_q5_K_ref``/``_impl``
    (nmax 31): 8 sub-blocks of 32, 6-bit scale and min each. Returns the blocks with
    ``d``, ``dmin``, ``scales`` set and the codes 0..nmax (n, 256)."""
    n = x.shape[0]
    xs = x.reshape(n * 8, 32)
    if weights is None:  # _ref: weights av_x + |x| with av_x = sqrt(Σx²/32) per sub-block
        ws = np.sqrt(seq_sum(xs * xs) / F32(32))[:, None] + np.abs(xs)
        rmin, nstep = (-1.0, 20) if nmax == 15 else (-0.5, 15)
        fit = make_qkx_quants(xs, ws, nmax, rmin, 0.1, nstep, use_mad=False)
        scales, mins = fit.scale.reshape(n, 8), fit.the_min.reshape(n, 8)
        max_scale, max_min = scan_max(scales), scan_max(mins)
        with np.errstate(divide="ignore"):
            inv_scale = np.where(max_scale > 0, F32(63) / max_scale, F32(0))
            inv_min = np.where(max_min > 0, F32(63) / max_min, F32(0))
        # uint8_t ls = nearest_int(inv_scale*scales[j]); ls = MIN(63, ls);
        ls = np.minimum(nearest_int(inv_scale[:, None] * scales).astype(np.uint8), 63)
        lm = np.minimum(nearest_int(inv_min[:, None] * mins).astype(np.uint8), 63)
        d, dmin = max_scale / F32(63), max_min / F32(63)
    else:  # _impl: both levels weighted, scales and mins through make_qp_quants
        ws = _imatrix_weights(x, weights, 2).reshape(n * 8, 32)
        fit = make_qkx_quants(xs, ws, nmax, -0.9, 0.05, 36, use_mad=False)
        sw = seq_sum(ws).reshape(n, 8)
        d, ls = make_qp_quants(fit.scale.reshape(n, 8), 63, sw)
        dmin, lm = make_qp_quants(fit.the_min.reshape(n, 8), 63, sw)
        if nmax == 31:  # only quantize_row_q5_K_impl applies MIN(63, ...) again
            ls, lm = np.minimum(ls, 63), np.minimum(lm, 63)
    blocks = fmt.empty_blocks(n)
    blocks["scales"] = _pack_scale_min_k4(ls, lm)
    blocks["d"], blocks["dmin"] = fp32_to_fp16(d), fp32_to_fp16(dmin)
    sc, m = _unpack_scale_min_k4(blocks["scales"])
    q = _requantize(x.reshape(n, 8, 32), fit.codes, _decoded(blocks, "d", sc), 0, nmax, _decoded(blocks, "dmin", m))
    return blocks, q


def _dequantize_q45(blocks: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``dequantize_row_q4_K`` / ``_q5_K``: (d·sc)·q − dmin·m for codes q (n, 256)."""
    sc, m = _unpack_scale_min_k4(blocks["scales"])
    d1, m1 = _decoded(blocks, "d", sc), _decoded(blocks, "dmin", m)
    return (d1[..., None] * q.reshape(-1, 8, 32).astype(F32) - m1[..., None]).reshape(-1, QK_K)


class Q4_K(_KQuant, name="q4_k"):
    """4-bit affine: 8 sub-blocks of 32, 6-bit scale and min each (4.5 bpw)."""

    fields = (Field("d", "<f2"), Field("dmin", "<f2"), Field("scales", "u1", 12), Field("qs", "u1", 128))

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        blocks, q = _quantize_q45(cls, x, weights, 15)
        blocks["qs"] = _pack_nibbles(q)
        return blocks

    @classmethod
    def _dequantize(cls, blocks: np.ndarray) -> np.ndarray:
        return _dequantize_q45(blocks, _unpack_nibbles(blocks["qs"]))


class Q5_K(_KQuant, name="q5_k"):
    """5-bit affine: as Q4_K, plus a fifth code bit per value in ``qh`` (5.5 bpw)."""

    fields = (Field("d", "<f2"), Field("dmin", "<f2"), Field("scales", "u1", 12),
              Field("qh", "u1", 32), Field("qs", "u1", 128))

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        blocks, q = _quantize_q45(cls, x, weights, 31)
        blocks["qs"] = _pack_nibbles(q & 0xF)
        blocks["qh"] = _pack_bit_planes(q >> 4)
        return blocks

    @classmethod
    def _dequantize(cls, blocks: np.ndarray) -> np.ndarray:
        q = _unpack_nibbles(blocks["qs"]) | (_unpack_bit_planes(blocks["qh"]) << 4)
        return _dequantize_q45(blocks, q)


class Q6_K(_KQuant, name="q6_k"):
    """6-bit symmetric: 16 sub-blocks of 16, int8 scale each (6.5625 bpw). Codes are
    stored as q + 32 (0..63): 4 bits in ``ql``, 2 in ``qh``. The imatrix path weights
    the search by the raw importance (no sigma² term)."""

    fields = (Field("ql", "u1", 128), Field("qh", "u1", 64), Field("scales", "i1", 16), Field("d", "<f2"))

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        n = x.shape[0]
        ws = None if weights is None else weights.reshape(n * 16, 16)
        scale, codes = make_qx_quants(x.reshape(n * 16, 16), 32, ws)
        scales = scale.reshape(n, 16)
        max_scale, max_abs_scale = scan_absmax(scales)
        live = ~(max_abs_scale < GROUP_MAX_EPS)  # else the whole block is zero bytes
        with np.errstate(divide="ignore", invalid="ignore"):
            iscale = np.where(live, F32(-128) / max_scale, F32(1))
            s = np.minimum(nearest_int(iscale[:, None] * scales), 127)
        blocks = cls.empty_blocks(n)
        blocks["scales"] = np.where(live[:, None], s, 0).astype(np.int8)
        blocks["d"] = fp32_to_fp16(np.where(live, F32(1) / iscale, F32(0)))
        q = _requantize(x.reshape(n, 16, 16), codes, _decoded(blocks, "d", blocks["scales"]), -32, 31)
        q = np.where(live[:, None], q, 0).astype(np.uint8)
        # per 128-value chunk c, value 128c + 32k + l (k = 0..3, l = 0..31):
        #   ql[64c + l]      = q[k=0] & 0xF | (q[k=2] & 0xF) << 4
        #   ql[64c + 32 + l] = q[k=1] & 0xF | (q[k=3] & 0xF) << 4
        #   qh[32c + l]      = bits 2k..2k+1: q[k] >> 4
        q4 = q.reshape(n, 2, 4, 32)  # (n, c, k, l)
        lo = q4 & 0xF
        blocks["ql"] = (lo[:, :, 0:2] | (lo[:, :, 2:4] << 4)).reshape(n, 128)
        blocks["qh"] = np.bitwise_or.reduce((q4 >> 4) << _SHIFT2[:, None], axis=2).reshape(n, 64)
        return blocks

    @classmethod
    def _dequantize(cls, blocks: np.ndarray) -> np.ndarray:
        """``dequantize_row_q6_K``: (d·s)·(q − 32)."""
        ql = blocks["ql"].reshape(-1, 2, 2, 32)  # (n, c, half, l)
        lo = np.concatenate([ql & 0xF, ql >> 4], axis=2)  # (n, c, k, l)
        hi = (blocks["qh"].reshape(-1, 2, 1, 32) >> _SHIFT2[:, None]) & 3
        q = (lo | (hi << 4)).astype(np.int8) - np.int8(32)
        ds = _decoded(blocks, "d", blocks["scales"])
        return (ds[..., None] * q.reshape(-1, 16, 16).astype(F32)).reshape(-1, QK_K)


class Q8_K(_KQuant, name="q8_k"):
    """8-bit symmetric with a float32 scale and per-16 sums (9.125 bpw), the activation
    type of the K-quant dot products: ``quantize_row_q8_K_ref``. ggml leaves ``bsums``
    of an all-zero block unwritten; here they are 0, the sum of its codes."""

    fields = (Field("d", "<f4"), Field("qs", "i1", 256), Field("bsums", "<i2", 16))
    uses_imatrix = False

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        n = x.shape[0]
        vmax, amax = scan_absmax(x)
        live = amax != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iscale = np.where(live, F32(-127) / vmax, F32(0))
            d = np.where(live, F32(1) / iscale, F32(0))
        q = np.where(live[:, None], np.minimum(nearest_int(iscale[:, None] * x), 127), 0).astype(np.int8)
        blocks = cls.empty_blocks(n)
        blocks["d"] = d
        blocks["qs"] = q
        blocks["bsums"] = q.reshape(n, 16, 16).sum(axis=2, dtype=np.int32)
        return blocks

    @classmethod
    def _dequantize(cls, blocks: np.ndarray) -> np.ndarray:
        """``dequantize_row_q8_K``: d·q."""
        return blocks["d"][:, None] * blocks["qs"].astype(F32)
