"""ggml's non-linear 4-bit types IQ4_NL and IQ4_XS (codebook ``kvalues_iq4nl``).

=======  ==  =====  ===========================================  ===========================
type     id  bytes  fields (memory order)                        value
=======  ==  =====  ===========================================  ===========================
IQ4_NL   20  18     d:f16, qs[16]                                d·kv[q]; 32 per block
IQ4_XS   23  136    d:f16, scales_h:u16, scales_l[4], qs[128]    d·(ls_i - 32)·kv[q]; 256
=======  ==  =====  ===========================================  ===========================

kv = ``kvalues_iq4nl`` (ggml-common.h), the 16 int8 values -127 ... 113 of the ``iq4_nl``
codebook (:mod:`refquant.dtypes.codebooks` holds the one table). Nibbles: in each 32-element sub-block, byte j holds element j (low) and j + 16
(high). IQ4_XS sub-block scale ls_i (6 bits, i = 0..7): low nibble in ``scales_l[i/2]``
(even i low half, odd i high half), top 2 bits at bits 2i of ``scales_h``.

Quantizer: ``quantize_row_iq4_nl_impl`` (``ggml-quants.c``, ggml-org/ggml @ d99724f2)
as ``quantize_iq4_nl`` / ``quantize_iq4_xs`` call it, i.e. what
``ggml_quantize_chunk`` writes (ntry = 7; *not* ``quantize_row_iq4_nl_ref``, ntry = -1):

1. weights w = x² without an imatrix, else qw·sqrt(sigma2 + x²) with
   sigma2 = 2·Σx²/(super-block size) (32 for IQ4_NL, 256 for IQ4_XS);
2. per 32-element sub-block with amax >= 1e-15: start from d = max/127 (max = signed
   largest-magnitude element), codes = nearest codebook entry of x/d (ties to the upper
   entry), least-squares d = Σw·q·x/Σw·q² (0 when Σw·q² = 0); then for
   itry = -7..7 re-pick codes with id = (itry - 127)/max and keep the LS d whose
   (Σwqx)² > best·Σwq²;
3. IQ4_NL: store fp16(d); codes = nearest entry of x·(1/d) with the float32 d
   (1/d = 0, i.e. entry 8, for an all-zero block);
   IQ4_XS: d = -max_scale/32 (fp16), ls_i = clamp(nearest_int(scale_i/d), -32, 31), codes
   = nearest entry of x·(1/(d·ls_i)) with the float32 d.
"""

from __future__ import annotations

import numpy as np

from refquant.dtypes.codebooks import get_codebook
from refquant.formats._ggml_math import (
    F32, GROUP_MAX_EPS, fp16_to_fp32, fp32_to_fp16, nearest_int, pack_nibbles_halves, safe_divide,
    safe_reciprocal, seq_sum, signed_absmax, unpack_nibbles_halves,
)
from refquant.formats.base import BlockFormat, Field

__all__ = ["IQ4_NL", "IQ4_XS", "KVALUES_IQ4NL", "best_index_iq4nl"]

# ggml's kvalues_iq4nl, from the one table of them (the "iq4_nl" codebook: small integers,
# exact in float32)
KVALUES_IQ4NL = get_codebook("iq4_nl").table.astype(np.int8)
KVALUES_IQ4NL.flags.writeable = False
_KV = KVALUES_IQ4NL.astype(F32)
NTRY = 7  # quantize_iq4_nl / quantize_iq4_xs
# mu for floor(x) = -128..113: the number of codebook entries <= floor(x), clamped to 1..15
_MU_BY_FLOOR = np.clip((_KV[None, :] <= np.arange(-128, 114, dtype=F32)[:, None]).sum(axis=1), 1, 15)


def best_index_iq4nl(x: np.ndarray) -> np.ndarray:
    """``best_index_int8(16, kvalues_iq4nl, x)``: index of the nearest codebook entry.

    x <= -127 gives 0 and x >= 113 gives 15; otherwise, with val[mu-1] <= x < val[mu], the
    lower neighbour is taken only when strictly closer (x - val[mu-1] < val[mu] - x), so
    a tie goes to the upper entry. Returns uint8 indices, same shape as ``x``.

    Parameters
    ----------
    x : ndarray of float32, any shape
        Values on the codebook's int8 scale (any value: the ends clamp, NaN gives 15).
    """
    x = np.asarray(x, dtype=F32)
    # The codebook holds integers, so val[k] <= x exactly when val[k] <= floor(x): the
    # upper neighbour mu (the count of entries <= x, clamped to 1..15) is a table lookup.
    # A NaN reads as "above every entry" (index 15), as the C comparisons do.
    fl = np.floor(x)
    fl = np.where(np.isnan(fl), F32(113), np.clip(fl, F32(-128), F32(113)))
    mu = _MU_BY_FLOOR[(fl + F32(128)).astype(np.intp)]
    lower_closer = (x - _KV[mu - 1]) < (_KV[mu] - x)
    return np.where(lower_closer, mu - 1, mu).astype(np.uint8)


def _iq4_weights(x: np.ndarray, qw: np.ndarray | None) -> np.ndarray:
    """Step 1: x², or qw·sqrt(sigma2 + x²) with sigma2 = Σx² · (2/super-block size).

    x, qw : float32 (n, super_block_size)."""
    if qw is None:
        return x * x
    sigma2 = seq_sum(x * x) * F32(2.0 / x.shape[-1])
    return qw * np.sqrt(sigma2[:, None] + x * x)


def _sub_block_scales(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Step 2 on sub-blocks x, w: float32 (m, 32) -> scales float32 (m,)."""
    mx, amax = signed_absmax(x)
    zero = amax < GROUP_MAX_EPS
    mx = np.where(zero, F32(1), mx)[:, None]  # dummy divisor; zero sub-blocks get scale 0

    def sums(iscale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = _KV[best_index_iq4nl(iscale * x)]
        wq = w * q
        return seq_sum(wq * x), seq_sum(wq * q)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = -mx / F32(KVALUES_IQ4NL[0])  # ntry > 0: d = -max/values[0]
        sumqx, sumq2 = sums(F32(1) / d)
        d = np.where(sumq2 > 0, safe_divide(sumqx, sumq2), F32(0))
        best = d * sumqx
        for itry in range(-NTRY, NTRY + 1):
            sumqx, sumq2 = sums(F32(itry + int(KVALUES_IQ4NL[0])) / mx)
            take = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
            d = np.where(take, safe_divide(sumqx, sumq2), d)
            best = np.where(take, d * sumqx, best)
    return np.where(zero, F32(0), d).astype(F32)


class IQ4_NL(BlockFormat, name="iq4_nl"):
    """Non-linear 4-bit codebook, one fp16 scale per 32 (4.5 bpw)."""

    fields = (Field("d", "<f2"), Field("qs", "u1", 16))

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        d = _sub_block_scales(x, _iq4_weights(x, weights))
        codes = best_index_iq4nl(x * safe_reciprocal(d)[:, None])
        blocks = cls.empty_blocks(x.shape[0])
        blocks["d"] = fp32_to_fp16(d)
        blocks["qs"] = pack_nibbles_halves(codes)
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return fp16_to_fp32(blocks["d"])[:, None] * _KV[unpack_nibbles_halves(blocks["qs"])]


class IQ4_XS(BlockFormat, name="iq4_xs"):
    """IQ4_NL codebook with 6-bit sub-block scales under one fp16 scale per 256 (4.25 bpw)."""

    fields = (Field("d", "<f2"), Field("scales_h", "<u2"), Field("scales_l", "u1", 4), Field("qs", "u1", 128))

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        n = x.shape[0]
        w = _iq4_weights(x, weights)
        scales = _sub_block_scales(x.reshape(n * 8, 32), w.reshape(n * 8, 32)).reshape(n, 8)
        max_scale, _ = signed_absmax(scales)
        d = -max_scale / F32(32)  # an all-zero block gives d = -0.0 (stored 0x8000)
        ls = np.clip(nearest_int(safe_reciprocal(d)[:, None] * scales), -32, 31)  # (n, 8)
        dl = d[:, None] * ls.astype(F32)
        codes = best_index_iq4nl(x.reshape(n, 8, 32) * safe_reciprocal(dl)[:, :, None])
        ls = (ls + 32).astype(np.uint16)
        blocks = cls.empty_blocks(n)
        blocks["d"] = fp32_to_fp16(d)
        lo = (ls & 0xF).astype(np.uint8)
        blocks["scales_l"] = lo[:, 0::2] | (lo[:, 1::2] << np.uint8(4))
        shifts = (2 * np.arange(8)).astype(np.uint16)
        blocks["scales_h"] = np.bitwise_or.reduce((ls >> np.uint16(4)) << shifts, axis=1)
        blocks["qs"] = pack_nibbles_halves(codes).reshape(n, 128)
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        n = blocks.shape[0]
        ib = np.arange(8)
        lo = (blocks["scales_l"][:, ib // 2] >> (4 * (ib % 2)).astype(np.uint8)) & np.uint8(0xF)
        hi = (blocks["scales_h"][:, None] >> (2 * ib).astype(np.uint16)) & np.uint16(3)
        ls = lo.astype(np.int32) | (hi.astype(np.int32) << 4)
        dl = fp16_to_fp32(blocks["d"])[:, None] * (ls - 32).astype(F32)  # (n, 8)
        q = _KV[unpack_nibbles_halves(blocks["qs"].reshape(n, 8, 16))]  # (n, 8, 32)
        return (dl[:, :, None] * q).reshape(n, 256)
