"""ggml's FP4 block types: MXFP4 (OCP microscaling FP4) and NVFP4 (E2M1 with UE4M3 scales).

======  ==  =====  ========================  ===============================================
type    id  bytes  fields (memory order)     value
======  ==  =====  ========================  ===============================================
MXFP4   39  17     e:u8 (E8M0), qs[16]       kv[q] · 2^(e - 128), kv = doubled E2M1 values
NVFP4   40  36     d[4]:u8 (UE4M3), qs[32]   kv[q] · ue4m3(d[s]) / 2 for sub-block s of 16
======  ==  =====  ========================  ===============================================

``kvalues_mxfp4`` = 0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12 (E2M1 codes
0..15 times 2), so the scale is applied as half the E8M0 value
(``ggml_e8m0_to_fp32_half``). Nibbles as in Q4_0: byte j = element j (low) | j + 16 (high).

Quantizer ``quantize_row_mxfp4_ref`` (``ggml-quants.c``, ggml-org/ggml @ d99724f2;
``quantize_mxfp4`` ignores the imatrix):

1. amax over the block; e = (uint8)(floorf(log2f(amax)) - 2 + 127), or 0 for amax = 0.
   ``log2f`` is float32: just below a power of two it rounds up to the integer (e.g.
   amax = 8·(1 - 2^-24) gives log2f = 3 exactly), which changes e. It is reproduced as the
   float64 log2 rounded to float32 (checked against glibc's ``log2f`` on every float32
   within 4096 ulps of each power of two and 2·10^7 random ones);
2. each code is the argmin over the 16 entries of |kv[i]·d - x| with d = 2^(e - 128),
   the first index winning a tie (so +0 is preferred to -0, and ties between magnitudes go
   to the smaller code index). With d a power of two this argmin is a count of midpoints
   below |x| (:func:`nearest_fp4_pow2`).
"""

from __future__ import annotations

import numpy as np

from refquant.formats._ggml_math import F32, c_int, e8m0_to_fp32_half, pack_nibbles_halves, unpack_nibbles_halves
from refquant.formats.base import BlockFormat, Field

__all__ = ["MXFP4", "NVFP4", "KVALUES_MXFP4", "fp32_to_ue4m3", "ue4m3_to_fp32_half"]

KVALUES_MXFP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.int8)
_KV = KVALUES_MXFP4.astype(F32)


def _log2f(x: np.ndarray) -> np.ndarray:
    """float32 log2 as C ``log2f`` returns it (see the module notes)."""
    with np.errstate(divide="ignore"):
        return np.log2(x.astype(np.float64)).astype(F32)


def shared_exponent(amax: np.ndarray) -> np.ndarray:
    """Step 1: the E8M0 byte of a block with abs max ``amax`` (float32 (n,)) -> uint8 (n,)."""
    e = np.floor(_log2f(amax)) - F32(2) + F32(127)
    return np.where(amax > 0, c_int(np.where(amax > 0, e, F32(0))).astype(np.uint8), np.uint8(0))


def nearest_fp4(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Step 2 (``best_index_mxfp4``): argmin_i |kv[i]·d - x| over the 16 entries, the first
    index winning a tie.

    Only 8 entries can win: for x >= 0 (and -0.0) the non-negative entries 0..7, since
    each negative entry is at least as far and comes later; for x < 0 the mirror image,
    entries 0 and 9..15, whose float32 errors are those of |x| against entries 0..7
    (negation is exact). So the search runs on |x| and moves a non-zero pick to the
    negative half for negative x.

    x : float32 (n, 32); d : float32 (n,). Returns uint8 codes (n, 32).
    """
    ax = np.abs(x)
    dd = d[:, None]
    best = np.zeros(x.shape, np.uint8)
    best_err = np.abs(_KV[0] * dd - ax)
    for i in range(1, 8):
        err = np.abs(_KV[i] * dd - ax)
        better = err < best_err
        best[better] = i
        best_err = np.where(better, err, best_err)
    return best + ((x < 0) & (best > 0)).astype(np.uint8) * np.uint8(8)


# Midpoints of consecutive magnitudes kv[0..7] = 0, 1, 2, 3, 4, 6, 8, 12.
_KV_MIDPOINTS = ((_KV[1:8] + _KV[:7]) / F32(2)).astype(F32)


def nearest_fp4_pow2(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Step 2 for a power-of-two ``d`` (MXFP4): :func:`nearest_fp4`'s argmin as the number
    of midpoints ``(kv[i-1] + kv[i])/2 · d``, i = 1..7, strictly below ``|x|``.

    Why it is the same bits: the float32 errors e_i = |kv[i]·d - |x|| fall and then rise
    with i (rounding is monotone), so the first argmin is the number of i with
    e_i < e_(i-1). Each such comparison is exact: between kv[i-1]·d and kv[i]·d both
    subtractions are exact (Sterbenz: consecutive magnitudes are within a factor 2; for
    i = 1 on [d/2, d]), so there e_i < e_(i-1) exactly when |x| is above the midpoint,
    a tie going to i-1; outside that interval the two errors differ by at least d while
    |x| < 16·d (step 1), so rounding cannot make them equal. The products kv·d and the
    midpoints are exact (few significant bits times a power of two, subnormals included).
    Step 1 gives e <= 252 (d <= 2^124, every kv·d finite) except where the byte cast wraps
    a negative exponent (amax < 2^-125, d >= 2^104): there every |x| is below d/2 and both
    rules give code 0.

    x : float32 (n, 32) with |x| <= amax; d : float32 (n,), the step-1 scale of each
    block's amax. Returns uint8 codes (n, 32).
    """
    ax = np.abs(x)
    best = np.zeros(x.shape, np.uint8)
    with np.errstate(over="ignore"):                                # wrapped bytes: inf, never below |x|
        thresholds = _KV_MIDPOINTS[:, None] * d                     # (7, n)
    for t in thresholds:
        best += ax > t[:, None]
    return best + ((x < 0) & (best > 0)).astype(np.uint8) * np.uint8(8)


class MXFP4(BlockFormat, name="mxfp4"):
    """OCP MXFP4: E2M1 codes with one E8M0 scale per 32 (4.25 bpw); ignores the imatrix."""

    fields = (Field("e", "u1"), Field("qs", "u1", 16))
    uses_imatrix = False

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        e = shared_exponent(np.max(np.abs(x), axis=-1))
        blocks = cls.empty_blocks(x.shape[0])
        blocks["e"] = e
        blocks["qs"] = pack_nibbles_halves(nearest_fp4_pow2(x, e8m0_to_fp32_half(e)))
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return _KV[unpack_nibbles_halves(blocks["qs"])] * e8m0_to_fp32_half(blocks["e"])[:, None]


# --- NVFP4 ----------------------------------------------------------------------------------
#
# ggml's NVFP4 (ggml-org/ggml @ d99724f2, ``quantize_row_nvfp4_ref`` / ``dequantize_row_nvfp4``
# in ggml-quants.c, ``ggml_fp32_to_ue4m3`` / ``ggml_ue4m3_to_fp32`` in ggml-impl.h): a block of
# 64 is four sub-blocks of 16, each with its own unsigned E4M3 scale byte and no per-tensor
# scale (NVIDIA's two-level NVFP4 is refquant.formats.nvfp4). Per sub-block:
#
# 1. amax over the 16 values; ue = fp32_to_ue4m3(amax / 6.0f);
# 2. d = ue4m3_to_fp32_half(ue); each code is best_index_mxfp4(x, d) (the MXFP4 argmin);
# 3. qs[8s + j] = code j (low nibble) | code j + 8 (high nibble).
#
# ggml's UE4M3 is not the OCP E4M3 cast: its encoder rounds half *up* (it adds float32
# mantissa bit 19), rounds subnormals with (int)(x * 512 + 0.5f), and returns 0x7E (448)
# for everything from 256 up (exponent field 15 is never written); its decoder ignores
# bit 7, maps 0x7F to 0 (not NaN) and 0xFF to 240.

def _ue4m3_table() -> np.ndarray:
    """``ggml_ue4m3_to_fp32`` for all 256 bytes (exact: ldexpf of a 4-bit significand)."""
    code = np.arange(256)
    exp, man = (code >> 3) & 0xF, code & 0x7
    raw = np.where(exp == 0, np.ldexp(man.astype(np.float64), -9), np.ldexp(1.0 + man / 8.0, exp - 7))
    raw[(code == 0) | (code == 0x7F)] = 0.0
    table = (raw * 0.5).astype(F32)
    table.flags.writeable = False
    return table


_UE4M3_HALF = _ue4m3_table()


def ue4m3_to_fp32_half(ue: np.ndarray) -> np.ndarray:
    """``ggml_ue4m3_to_fp32``: half the UE4M3 value of each byte (uint8 (...) -> float32 (...)).

    Parameters
    ----------
    ue : ndarray of uint8, any shape
        Any byte (the table has an entry for each of the 256).
    """
    return _UE4M3_HALF[np.asarray(ue, dtype=np.uint8)]


def fp32_to_ue4m3(x: np.ndarray) -> np.ndarray:
    """``ggml_fp32_to_ue4m3`` on float32 ``x`` (...) -> uint8 (...): 0 unless x > 0.

    Parameters
    ----------
    x : ndarray of float32, any shape
        Any values; those not > 0 (NaN included) give 0.
    """
    x = np.asarray(x, dtype=F32)
    pos = x > 0                                                    # False for NaN
    xc = np.where(pos, np.minimum(x, F32(448.0)), F32(1.0))
    bits = xc.view(np.uint32)
    exp = ((bits >> np.uint32(23)) & np.uint32(0xFF)).astype(np.int32) - 127 + 7
    man = ((bits >> np.uint32(20)) & np.uint32(0x7)).astype(np.int32) + ((bits >> np.uint32(19)) & np.uint32(1)).astype(np.int32)
    exp = exp + (man > 7)                                          # the mantissa carry
    normal = np.where(exp >= 15, 0x7E, (exp << 3) | np.where(man > 7, 0, man))
    sub = np.minimum(c_int(xc * F32(512.0) + F32(0.5)), 7)         # exp <= 0 before the carry
    code = np.where(exp - (man > 7) <= 0, np.where(sub < 1, 0, sub), normal)
    return np.where(pos, code, 0).astype(np.uint8)


class NVFP4(BlockFormat, name="nvfp4"):
    """ggml's NVFP4: E2M1 codes with a UE4M3 scale per 16 (4.5 bpw); ignores the imatrix."""

    fields = (Field("d", "u1", 4), Field("qs", "u1", 32))
    uses_imatrix = False

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        sub = x.reshape(-1, 16)                                    # (4 n, 16) sub-blocks
        ue = fp32_to_ue4m3(np.max(np.abs(sub), axis=-1) / F32(6.0))
        codes = nearest_fp4(sub, ue4m3_to_fp32_half(ue))
        blocks = cls.empty_blocks(x.shape[0])
        blocks["d"] = ue.reshape(-1, 4)
        blocks["qs"] = pack_nibbles_halves(codes).reshape(-1, 32)
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        codes = unpack_nibbles_halves(blocks["qs"].reshape(-1, 8))  # (4 n, 16)
        d = ue4m3_to_fp32_half(blocks["d"].reshape(-1))
        return (_KV[codes] * d[:, None]).reshape(-1, 64)
