"""ggml's legacy 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.

======  ==  =====  =================================  ==================================
type    id  bytes  fields (memory order)              value
======  ==  =====  =================================  ==================================
Q4_0    2   18     d:f16, qs[16]                      (q - 8)·d, q in 0..15
Q4_1    3   20     d:f16, m:f16, qs[16]               q·d + m, q in 0..15
Q5_0    6   22     d:f16, qh[4], qs[16]               (q - 16)·d, q in 0..31
Q5_1    7   24     d:f16, m:f16, qh[4], qs[16]        q·d + m, q in 0..31
Q8_0    8   34     d:f16, qs[32] int8                 q·d
Q8_1    9   36     d:f16, s:f16, qs[32] int8          q·d; s = fp16(Σq · d)
======  ==  =====  =================================  ==================================

Nibbles: byte j of ``qs`` holds element j (low) and element j + 16 (high). ``qh`` is a
little-endian 32-bit word whose bit j is bit 4 of element j's code.

Quantizers (``ggml-quants.c``, ggml-org/ggml @ d99724f2):

- without an imatrix, ``quantize_row_<type>_ref``: the scale comes from the block's
  extremes and codes use the **unrounded** float32 scale; Q4_0/Q5_0/Q4_1 round half up
  by truncating (v + 8.5) / (v + 16.5) / (v + 0.5), Q8 uses C ``roundf``;
- with an imatrix (``quantize_row_<type>_impl``): weights w = qw·sqrt(sigma2 + x²) with
  sigma2 = Σx²/n_per_row over the **whole row**; Q4_0/Q5_0 search a scale with
  ``make_qx_quants``, Q4_1/Q5_1 a scale and min with ``make_qkx3_quants`` (the searches
  shared with the K-quants, :mod:`refquant.formats.gguf_kquants_search`);
- Q8_0 and Q8_1 ignore the imatrix. Q8_1 is an intermediate type of the dot-product
  kernels; its bytes are ``quantize_row_q8_1_ref``'s, and its values decode as q·d (ggml
  has no dequantizer for it).
"""

from __future__ import annotations

import numpy as np

from refquant.formats._ggml_math import (
    F32, c_int, first_max_cols, first_min_cols, fp16_to_fp32, fp32_to_fp16, pack_nibbles_halves, roundf,
    safe_reciprocal, seq_sum, signed_absmax_cols, unpack_nibbles_halves,
)
from refquant.formats.gguf_kquants_search import make_qkx_quants, make_qx_quants
from refquant.formats.base import BlockFormat, Field

__all__ = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1"]

QK = 32


# --- rules shared by the family -------------------------------------------------------------

def _row_importance(x: np.ndarray, imatrix: np.ndarray) -> np.ndarray:
    """qw·sqrt(sigma2 + x²), sigma2 = Σx²/n_per_row over the row (``quantize_row_q4_0_impl``)."""
    sigma2 = seq_sum(x * x) / F32(x.shape[-1])
    return imatrix * np.sqrt(sigma2[:, None] + x * x)


_BIT_VALUE = (np.uint32(1) << np.arange(QK, dtype=np.uint32))[:, None]  # 2^j for code j


def _pack_high_bits(codes: np.ndarray) -> np.ndarray:
    """qh: bit j of the little-endian word = bit 4 of code j. (n, 32) -> uint8 (n, 4).

    The word is Σ bit_j·2^j, summed down the columns of ``codes.T`` (one block per column:
    contiguous for the codes of :func:`_symmetric_ref` / :func:`_affine_ref`)."""
    bit = ((codes.T >> 4) & 1).astype(np.uint32)
    word = (bit * _BIT_VALUE).sum(axis=0, dtype=np.uint32)
    return word.astype("<u4").view(np.uint8).reshape(-1, 4)


def _unpack_high_bits(qh: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_pack_high_bits`: uint8 (n, 4) -> 0/1 (n, 32)."""
    return np.unpackbits(qh, axis=-1, bitorder="little")


def _codes5(blocks: np.ndarray) -> np.ndarray:
    """5-bit codes of Q5_0/Q5_1 blocks: nibble | (qh bit << 4), as float32 (n, 32)."""
    return (unpack_nibbles_halves(blocks["qs"]) | (_unpack_high_bits(blocks["qh"]) << 4)).astype(F32)


def _columns(x: np.ndarray) -> np.ndarray:
    """Blocks (n, 32) -> (32, n), element j of every block in row j: the per-block scans and
    the per-block scale then run along contiguous memory. The codes computed on it come back
    to the caller as ``.T``, an (n, 32) view that the byte packing reads in that order.
    Always a copy, which the callers then scale in place: for one block ``x.T`` is already
    contiguous, and ``ascontiguousarray`` would hand back the caller's own memory."""
    return np.array(x.T, order="C", copy=True)


def _clamp_above(q: np.ndarray, top: int) -> np.ndarray:
    """``(uint8_t)MIN(top, q)`` for int8 codes q, computed in place: the bytes C stores. The
    bound is a full array: NumPy's int8 minimum has no vectorized loop for a scalar operand
    (ten times slower)."""
    return np.minimum(q, np.full_like(q, top), out=q).view(np.uint8)


def _symmetric_ref(x: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """``quantize_row_q4_0_ref`` / ``_q5_0_ref``: d = max/-levels with max the signed
    largest-magnitude element; q = min(2·levels - 1, (int8)(x·id + levels + 0.5)).
    Returns (d float32 (n,), codes uint8 (n, 32))."""
    xt = _columns(x)
    mx, _ = signed_absmax_cols(xt)
    d = mx / F32(-levels)
    v = np.multiply(xt, safe_reciprocal(d), out=xt)  # xt is this function's own copy
    v += F32(levels + 0.5)
    q = c_int(v).astype(np.int8)
    return d, _clamp_above(q, 2 * levels - 1).T


def _affine_ref(x: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``quantize_row_q4_1_ref`` / ``_q5_1_ref``: d = (max - min)/levels, codes
    trunc((x - min)·id + 0.5). Returns (d, min, raw int32 codes (n, 32) before the type's clamp)."""
    xt = _columns(x)
    mn, mx = first_min_cols(xt), first_max_cols(xt)
    d = (mx - mn) / F32(levels)
    v = np.subtract(xt, mn, out=xt)  # xt is this function's own copy
    v *= safe_reciprocal(d)
    v += F32(0.5)
    return d, mn, c_int(v).T


class _Legacy(BlockFormat):
    """Shared imatrix weighting of the legacy types (row-level sigma2)."""

    @classmethod
    def importance_weights(cls, x: np.ndarray, imatrix: np.ndarray) -> np.ndarray:
        return _row_importance(x, imatrix)


# --- the types ------------------------------------------------------------------------------

class Q4_0(_Legacy, name="q4_0"):
    """4-bit symmetric, one fp16 scale per 32 (4.5 bpw)."""

    fields = (Field("d", "<f2"), Field("qs", "u1", 16))

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        if weights is None:
            d, q = _symmetric_ref(x, 8)
        else:
            d, q = make_qx_quants(x, 8, weights)  # rmse_type 1; codes straight from the search
        blocks = cls.empty_blocks(x.shape[0])
        blocks["d"] = fp32_to_fp16(d)
        blocks["qs"] = pack_nibbles_halves(q)
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        q = unpack_nibbles_halves(blocks["qs"]).astype(F32) - F32(8)
        return q * fp16_to_fp32(blocks["d"])[:, None]


class Q4_1(_Legacy, name="q4_1"):
    """4-bit affine, fp16 scale and min per 32 (5.0 bpw)."""

    fields = (Field("d", "<f2"), Field("m", "<f2"), Field("qs", "u1", 16))

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        if weights is None:
            d, m, q = _affine_ref(x, 15)
            q = _clamp_above(q.astype(np.int8), 15)
        else:
            d, the_min, q = make_qkx_quants(x, weights, 15, -0.9, 0.05, 36, use_mad=False)  # make_qkx3_quants
            m = -the_min
        blocks = cls.empty_blocks(x.shape[0])
        blocks["d"] = fp32_to_fp16(d)
        blocks["m"] = fp32_to_fp16(m)
        blocks["qs"] = pack_nibbles_halves(q)
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        q = unpack_nibbles_halves(blocks["qs"]).astype(F32)
        return q * fp16_to_fp32(blocks["d"])[:, None] + fp16_to_fp32(blocks["m"])[:, None]


class Q5_0(_Legacy, name="q5_0"):
    """5-bit symmetric, one fp16 scale per 32 (5.5 bpw)."""

    fields = (Field("d", "<f2"), Field("qh", "u1", 4), Field("qs", "u1", 16))

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        if weights is None:
            d, q = _symmetric_ref(x, 16)
        else:
            d, q = make_qx_quants(x, 16, weights)
        q = q.astype(np.uint8, copy=False)
        blocks = cls.empty_blocks(x.shape[0])
        blocks["d"] = fp32_to_fp16(d)
        blocks["qh"] = _pack_high_bits(q)
        blocks["qs"] = pack_nibbles_halves(q)
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return (_codes5(blocks) - F32(16)) * fp16_to_fp32(blocks["d"])[:, None]


class Q5_1(_Legacy, name="q5_1"):
    """5-bit affine, fp16 scale and min per 32 (6.0 bpw)."""

    fields = (Field("d", "<f2"), Field("m", "<f2"), Field("qh", "u1", 4), Field("qs", "u1", 16))

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        if weights is None:
            d, m, q = _affine_ref(x, 31)  # (uint8_t)(v + 0.5f): no clamp to 31
        else:
            d, the_min, q = make_qkx_quants(x, weights, 31, -0.9, 0.05, 36, use_mad=False)  # make_qkx3_quants
            m = -the_min
        q = q.astype(np.uint8)
        blocks = cls.empty_blocks(x.shape[0])
        blocks["d"] = fp32_to_fp16(d)
        blocks["m"] = fp32_to_fp16(m)
        blocks["qh"] = _pack_high_bits(q)
        blocks["qs"] = pack_nibbles_halves(q)
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return _codes5(blocks) * fp16_to_fp32(blocks["d"])[:, None] + fp16_to_fp32(blocks["m"])[:, None]


def _q8_codes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``quantize_row_q8_0_ref``: d = amax/127, q = (int8)roundf(x·id)."""
    xt = _columns(x)
    d = np.abs(xt).max(axis=0) / F32(127)
    q = c_int(roundf(xt * safe_reciprocal(d))).astype(np.int8)
    return d.astype(F32), q.T


class Q8_0(BlockFormat, name="q8_0"):
    """8-bit symmetric, one fp16 scale per 32 (8.5 bpw); ignores the imatrix."""

    fields = (Field("d", "<f2"), Field("qs", "i1", 32))
    uses_imatrix = False

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        d, q = _q8_codes(x)
        blocks = cls.empty_blocks(x.shape[0])
        blocks["d"] = fp32_to_fp16(d)
        blocks["qs"] = q
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return blocks["qs"].astype(F32) * fp16_to_fp32(blocks["d"])[:, None]


class Q8_1(BlockFormat, name="q8_1"):
    """Q8_0 plus s = fp16(Σq · d) with the float32 d (9.0 bpw); ignores the imatrix."""

    fields = (Field("d", "<f2"), Field("s", "<f2"), Field("qs", "i1", 32))
    uses_imatrix = False

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        d, q = _q8_codes(x)
        total = q.astype(np.int32).sum(axis=-1)  # an exact integer sum
        blocks = cls.empty_blocks(x.shape[0])
        blocks["d"] = fp32_to_fp16(d)
        blocks["s"] = fp32_to_fp16(total.astype(F32) * d)
        blocks["qs"] = q
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return blocks["qs"].astype(F32) * fp16_to_fp32(blocks["d"])[:, None]
