"""ggml's MXFP4: OCP microscaling FP4 (E2M1 elements, one E8M0 scale per 32).

======  ==  =====  =====================  =============================================
type    id  bytes  fields (memory order)  value
======  ==  =====  =====================  =============================================
MXFP4   39  17     e:u8 (E8M0), qs[16]    kv[q] · 2^(e - 128), kv = doubled E2M1 values
======  ==  =====  =====================  =============================================

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
   to the smaller code index).
"""

from __future__ import annotations

import numpy as np

from refquant.formats._ggml_math import F32, c_int, e8m0_to_fp32_half, pack_nibbles_halves, unpack_nibbles_halves
from refquant.formats.base import BlockFormat, Field

__all__ = ["MXFP4", "KVALUES_MXFP4"]

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


class MXFP4(BlockFormat, name="mxfp4", type_id=39, block_size=32):
    """OCP MXFP4: E2M1 codes with one E8M0 scale per 32 (4.25 bpw); ignores the imatrix."""

    fields = (Field("e", "u1"), Field("qs", "u1", 16))
    uses_imatrix = False

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        e = shared_exponent(np.max(np.abs(x), axis=-1))
        blocks = cls.empty_blocks(x.shape[0])
        blocks["e"] = e
        blocks["qs"] = pack_nibbles_halves(nearest_fp4(x, e8m0_to_fp32_half(e)))
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return _KV[unpack_nibbles_halves(blocks["qs"])] * e8m0_to_fp32_half(blocks["e"])[:, None]
