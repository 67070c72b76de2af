"""ggml's ternary types TQ1_0 and TQ2_0 (BitNet b1.58 / TriLM weights), 256 per block.

======  ==  =====  ==========================  ============================================
type    id  bytes  fields (memory order)       codes
======  ==  =====  ==========================  ============================================
TQ1_0   34  54     qs[48], qh[4], d:f16        5 trits per byte (base 3), 1.6875 bpw
TQ2_0   35  66     qs[64], d:f16               4 two-bit codes per byte, 2.0625 bpw
======  ==  =====  ==========================  ============================================

Both quantizers (``quantize_row_tq1_0_ref`` / ``quantize_row_tq2_0_ref`` in
``ggml-quants.c``, ggml-org/ggml @ d99724f2) take d = amax of the
256 elements (stored as fp16), id = 1/d (0 for an all-zero block) and the trit
t = lroundf(x·id) + 1 in {0, 1, 2} (half away from zero); the value is (t - 1)·d.
ggml ignores the imatrix for both.

TQ1_0 trit packing (first listed element = most significant trit, Horner q = 3q + t):

- ``qs[m]``, m = 0..31: elements m, m+32, m+64, m+96, m+128;
- ``qs[32+m]``, m = 0..15: elements 160+m, 176+m, 192+m, 208+m, 224+m;
- ``qh[j]``, j = 0..3: elements 240+j, 244+j, 248+j, 252+j, then one more ·3 (an empty slot);
- the 5-trit value q (0..242) is stored as ceil(q·256/243), so trit n (0 = most
  significant) of a byte b reads back as ((b·3^n mod 256)·3) >> 8 (the byte rule is
  :func:`refquant.packing.pack_ternary`; this module only chooses which elements share
  a byte).

TQ2_0: byte ``qs[32k + m]`` holds elements 128k + m + 32n at bits 2n..2n+1 (n = 0..3).
"""

from __future__ import annotations

import numpy as np

from refquant.formats._ggml_math import F32, c_int, fp16_to_fp32, fp32_to_fp16, roundf, safe_reciprocal
from refquant.formats.base import BlockFormat, Field
from refquant.packing import pack_ternary, unpack_ternary

__all__ = ["TQ1_0", "TQ2_0"]

QK_K = 256


def _trits(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d = amax (float32) and trits lroundf(x·id) + 1 as int32 (n, 256)."""
    d = np.max(np.abs(x), axis=-1).astype(F32)
    t = c_int(roundf(x * safe_reciprocal(d)[:, None])) + 1
    return d, t


def _pack_strided(t: np.ndarray, trits_per_byte: int, nbytes: int) -> np.ndarray:
    """Bytes whose trits are ``nbytes`` elements apart: (n, trits_per_byte * nbytes) ->
    uint8 (n, nbytes); byte m holds elements m, m + nbytes, ... (first most significant)."""
    groups = t.reshape(t.shape[0], trits_per_byte, nbytes).transpose(0, 2, 1)  # (n, byte, trit)
    return pack_ternary(groups.astype(np.uint8))[..., 0]


def _unpack_strided(b: np.ndarray, trits_per_byte: int) -> np.ndarray:
    """Inverse of :func:`_pack_strided`: uint8 (n, nbytes) -> trits (n, trits_per_byte * nbytes)."""
    t = unpack_ternary(b[..., None], trits_per_byte)  # (n, byte, trit)
    return t.transpose(0, 2, 1).reshape(b.shape[0], -1)


class TQ1_0(BlockFormat, name="tq1_0"):
    """Ternary, 5 trits per byte (1.6875 bpw)."""

    fields = (Field("qs", "u1", 48), Field("qh", "u1", 4), Field("d", "<f2"))
    uses_imatrix = False

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        n = x.shape[0]
        d, t = _trits(x)
        blocks = cls.empty_blocks(n)
        blocks["qs"][:, :32] = _pack_strided(t[:, :160], 5, 32)
        blocks["qs"][:, 32:] = _pack_strided(t[:, 160:240], 5, 16)
        blocks["qh"] = _pack_strided(t[:, 240:], 4, 4)  # 4 trits, then a zero trit slot
        blocks["d"] = fp32_to_fp16(d)
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        n = blocks.shape[0]
        t = np.concatenate([
            _unpack_strided(blocks["qs"][:, :32], 5),
            _unpack_strided(blocks["qs"][:, 32:], 5),
            _unpack_strided(blocks["qh"], 4),
        ], axis=1)
        return (t.astype(F32) - F32(1)) * fp16_to_fp32(blocks["d"])[:, None]


class TQ2_0(BlockFormat, name="tq2_0"):
    """Ternary, 2 bits per weight (2.0625 bpw); code 3 is never written (it would read +2d)."""

    fields = (Field("qs", "u1", 64), Field("d", "<f2"))
    uses_imatrix = False

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        n = x.shape[0]
        d, t = _trits(x)
        t = (t & 3).astype(np.uint8).reshape(n, 2, 4, 32)  # (block, half k, shift n, byte m)
        shifts = (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]
        blocks = cls.empty_blocks(n)
        blocks["qs"] = np.bitwise_or.reduce(t << shifts, axis=2).reshape(n, 64)
        blocks["d"] = fp32_to_fp16(d)
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        n = blocks.shape[0]
        qs = blocks["qs"].reshape(n, 2, 1, 32)
        shifts = (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]
        q = ((qs >> shifts) & np.uint8(3)).reshape(n, 256)
        return (q.astype(F32) - F32(1)) * fp16_to_fp32(blocks["d"])[:, None]
