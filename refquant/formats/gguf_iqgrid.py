"""ggml's grid-codebook types: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M.

Each super-block of 256 is cut into groups of 8 (4 for IQ3's grids) whose magnitudes are
one entry of a fixed lattice grid (:mod:`refquant.formats.iq_grids`), with signs stored
separately (IQ1's grid holds signed values and a shared ±1/8 shift instead).

========  ==  =====  ====================================================  ============
type      id  bytes  fields (memory order)                                 bits/weight
========  ==  =====  ====================================================  ============
IQ2_XXS   16  66     d:f16, qs:u16[32]                                     2.0625
IQ2_XS    17  74     d:f16, qs:u16[32], scales[8]                          2.3125
IQ3_XXS   18  98     d:f16, qs[96]                                         3.0625
IQ1_S     19  50     d:f16, qs[32], qh:u16[8]                              1.5625
IQ3_S     21  110    d:f16, qs[64], qh[8], signs[32], scales[4]            3.4375
IQ2_S     22  82     d:f16, qs[64], qh[8], scales[8]                       2.5625
IQ1_M     29  56     qs[32], qh[16], scales[8] (d:f16 spread over scales)  1.75
========  ==  =====  ====================================================  ============

Decoding, per 32-element sub-block ``ib`` and group ``l`` (``dequantize_row_iq2_xxs`` ...
``dequantize_row_iq1_m`` in ``ggml-quants.c``, ggml-org/ggml @ d99724f2), every value
``y = (db * grid[idx][j]) * sign_j`` (one float32 rounding, the sign exact):

* IQ2_XXS: the sub-block's 8 bytes are two little-endian uint32 ``a0, a1``; group indices
  are the bytes of ``a0``, signs ``ksigns[(a1 >> 7l) & 127]``, ``db = d·(0.5 + (a1 >> 28))·0.25``;
* IQ2_XS: ``q = qs[4ib + l]``: index ``q & 511``, signs ``ksigns[q >> 9]``; ``db = d·(0.5 +
  nibble)·0.25`` with the low nibble of ``scales[ib]`` for groups 0-1, the high for 2-3;
* IQ2_S: index ``qs[4ib + l] | ((qh[ib] << (8 - 2l)) & 0x300)``, sign byte
  ``qs[32 + 4ib + l]``, ``db`` as IQ2_XS;
* IQ3_XXS: indices ``qs[8ib + 2l]``, ``qs[8ib + 2l + 1]`` (two groups of 4), the uint32 ``a`` at
  ``qs[64 + 4ib]`` gives signs ``ksigns[(a >> 7l) & 127]`` and ``db = d·(0.5 + (a >> 28))·0.5``;
* IQ3_S: indices ``qs[8ib + 2l + k] | ((qh[ib] << (8 - 2l - k)) & 256)`` (k = 0, 1), sign byte
  ``signs[4ib + l]``, ``db = d·(1 + 2·nibble)`` from ``scales[ib / 2]`` (low nibble for even ib);
* IQ1_S: ``h = qh[ib]``: index ``qs[4ib + l] | ((h >> 3l) & 7) << 8``, ``dl = d·(2·((h >> 12)
  & 7) + 1)``, ``y = dl·(grid[j] + delta)`` with ``delta = -1/8`` if ``h & 0x8000`` else ``+1/8``;
* IQ1_M: ``d`` is the float16 whose bits are the top nibbles of the four little-endian uint16
  ``sc[0..3]`` of ``scales`` (sc0 >> 12 | sc1 >> 8 & 0xF0 | sc2 >> 4 & 0xF00 | sc3 & 0xF000);
  index ``qs[4ib + l] | (qh[2ib + l/2] << (8 if l even else 4)) & 0x700``, delta sign bit
  ``0x08`` (even l) / ``0x80`` (odd l) of the same qh byte, ``dl = d·(2·s + 1)`` with s the
  3 bits at ``6·(ib % 2)`` (groups 0-1) or ``6·(ib % 2) + 3`` (groups 2-3) of ``sc[ib / 2]``.

ggml requires an importance matrix to quantize IQ2_XXS, IQ2_XS and IQ1_S
(``ggml_quantize_requires_imatrix`` in ``ggml.c``); IQ1_M's requirement is commented out
there. All seven quantize bit-exactly as ggml's ``quantize_iq2_xxs`` ... ``quantize_iq1_m``
(what ``ggml_quantize_chunk`` writes): the searches are in
:mod:`refquant.formats.gguf_iqgrid_search`. IQ1_M follows llama.cpp @ 0c1e57098, whose split
search (PR #28706, prefix sums) writes other bytes than d99724f2's on near-ties.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np

from refquant.formats._ggml_math import F32
from refquant.formats.iq_grids import KSIGNS_IQ2XS, grid, signs_from_bits
from refquant.formats.base import BlockFormat, Field
from refquant.formats.gguf_iqgrid_search import (
    quantize_iq1_m, quantize_iq1_s, quantize_iq2_s, quantize_iq2_xs, quantize_iq2_xxs, quantize_iq3_s, quantize_iq3_xxs,
)

__all__ = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"]

IQ1S_DELTA = F32(0.125)


def _bytes(field: np.ndarray) -> np.ndarray:
    """A block field as its little-endian bytes: (n, ...) -> uint8 (n, nbytes)."""
    a = np.ascontiguousarray(field)
    return a.astype(a.dtype.newbyteorder("<"), copy=False).view(np.uint8).reshape(a.shape[0], -1)


def _u32(b: np.ndarray) -> np.ndarray:
    """Little-endian uint32 words of bytes (..., 4k) -> (..., k)."""
    return np.ascontiguousarray(b).view("<u4").astype(np.uint32)


def _d(blocks: np.ndarray) -> np.ndarray:
    return blocks["d"].astype(F32)                                  # (n,)


def _half_scales(d: np.ndarray, nibbles: np.ndarray, factor: float) -> np.ndarray:
    """``d * (0.5f + s) * factor`` in float32, left to right."""
    return (d[:, None] * (F32(0.5) + nibbles.astype(F32))) * F32(factor)


def _expand(db: np.ndarray, values: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """``(db * grid) * sign`` -> float32 (n, 256); db (n, 8 sub-blocks, 4 groups)."""
    return ((db[..., None] * values) * signs).reshape(db.shape[0], 256)


class _GridFormat(BlockFormat):
    """The grid types' family base: each type names its ggml search
    (:mod:`refquant.formats.gguf_iqgrid_search`), which returns the block's fields in order."""

    #: ``search(x (n, 256) float32, weights (n, 256) or None) -> the fields, as stored``
    search: ClassVar[Callable[..., tuple[np.ndarray, ...]]]

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        if weights is None and cls.requires_imatrix:  # refquant.gguf.quantize refuses this first (ggml asserts)
            raise ValueError(f"{cls.name} needs importance weights")
        blocks = cls.empty_blocks(x.shape[0])
        for field, value in zip(cls.fields, cls.search(x, weights), strict=True):
            blocks[field.name] = value
        return blocks


class IQ2_XXS(_GridFormat, name="iq2_xxs"):
    """2.0625 bpw: 8-element groups from a 256-entry grid, 7 sign bits + parity, 4-bit scale per 32."""

    fields = (Field("d", "<f2"), Field("qs", "<u2", 32))
    search = staticmethod(quantize_iq2_xxs)
    requires_imatrix = True

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        b = _bytes(blocks["qs"]).reshape(-1, 8, 8)                   # (n, ib, 8 bytes)
        a1 = _u32(b[..., 4:8])[..., 0]                               # (n, ib)
        db = _half_scales(_d(blocks), a1 >> np.uint32(28), 0.25)     # (n, ib)
        values = grid("iq2xxs_grid")[b[..., :4]].astype(F32)         # (n, ib, l, 8)
        shifts = np.uint32(7) * np.arange(4, dtype=np.uint32)
        signs = signs_from_bits(KSIGNS_IQ2XS[(a1[..., None] >> shifts) & np.uint32(127)])
        return _expand(np.repeat(db[..., None], 4, axis=-1), values, signs)


class IQ2_XS(_GridFormat, name="iq2_xs"):
    """2.3125 bpw: 9-bit grid index + 7 sign bits per group, two 4-bit scales per 32."""

    fields = (Field("d", "<f2"), Field("qs", "<u2", 32), Field("scales", "u1", 8))
    search = staticmethod(quantize_iq2_xs)
    requires_imatrix = True

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        q = blocks["qs"].astype(np.uint32).reshape(-1, 8, 4)        # (n, ib, l)
        values = grid("iq2xs_grid")[q & np.uint32(511)].astype(F32)
        signs = signs_from_bits(KSIGNS_IQ2XS[q >> np.uint32(9)])
        return _expand(_pair_scales(blocks), values, signs)


def _pair_scales(blocks: np.ndarray) -> np.ndarray:
    """IQ2_XS / IQ2_S: db (n, ib, l), low nibble of scales[ib] for l = 0, 1, high for 2, 3."""
    sc = blocks["scales"]
    db = np.stack([_half_scales(_d(blocks), sc & 0xF, 0.25), _half_scales(_d(blocks), sc >> 4, 0.25)], -1)
    return np.repeat(db, 2, axis=-1)                                 # (n, ib, [lo, lo, hi, hi])


class IQ2_S(_GridFormat, name="iq2_s"):
    """2.5625 bpw: 10-bit grid index (1024 entries), a full sign byte per group."""

    fields = (Field("d", "<f2"), Field("qs", "u1", 64), Field("qh", "u1", 8), Field("scales", "u1", 8))
    search = staticmethod(quantize_iq2_s)

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        qs = blocks["qs"].astype(np.uint32)
        low = qs[:, :32].reshape(-1, 8, 4)                           # (n, ib, l)
        shift = np.uint32(8) - np.uint32(2) * np.arange(4, dtype=np.uint32)
        idx = low | ((blocks["qh"].astype(np.uint32)[..., None] << shift) & np.uint32(0x300))
        values = grid("iq2s_grid")[idx].astype(F32)
        signs = signs_from_bits(blocks["qs"][:, 32:].reshape(-1, 8, 4))
        return _expand(_pair_scales(blocks), values, signs)


def _two_quads(g: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """IQ3 groups of 8 from two 4-entry grid rows: idx (n, ib, l, 2) -> float32 (n, ib, l, 8)."""
    return g[idx].astype(F32).reshape(idx.shape[:-1] + (8,))


class IQ3_XXS(_GridFormat, name="iq3_xxs"):
    """3.0625 bpw: two 8-bit indices into a 256-entry 4-element grid per group of 8."""

    fields = (Field("d", "<f2"), Field("qs", "u1", 96))
    search = staticmethod(quantize_iq3_xxs)

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        qs = blocks["qs"]
        idx = qs[:, :64].reshape(-1, 8, 4, 2)                        # (n, ib, l, 2)
        a = _u32(qs[:, 64:]).reshape(-1, 8)                          # (n, ib)
        db = _half_scales(_d(blocks), a >> np.uint32(28), 0.5)
        shifts = np.uint32(7) * np.arange(4, dtype=np.uint32)
        signs = signs_from_bits(KSIGNS_IQ2XS[(a[..., None] >> shifts) & np.uint32(127)])
        return _expand(np.repeat(db[..., None], 4, axis=-1), _two_quads(grid("iq3xxs_grid"), idx), signs)


class IQ3_S(_GridFormat, name="iq3_s"):
    """3.4375 bpw: 9-bit indices into a 512-entry 4-element grid, sign bytes, odd 4-bit scales."""

    fields = (Field("d", "<f2"), Field("qs", "u1", 64), Field("qh", "u1", 8), Field("signs", "u1", 32),
              Field("scales", "u1", 4))
    search = staticmethod(quantize_iq3_s)

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        low = blocks["qs"].astype(np.uint32).reshape(-1, 8, 4, 2)   # (n, ib, l, k)
        shift = (np.uint32(8) - np.uint32(2) * np.arange(4, dtype=np.uint32))[:, None] - np.arange(2, dtype=np.uint32)
        idx = low | ((blocks["qh"].astype(np.uint32)[..., None, None] << shift) & np.uint32(256))
        nib = np.stack([blocks["scales"] & 0xF, blocks["scales"] >> 4], -1).reshape(-1, 8)   # (n, ib)
        db = _d(blocks)[:, None] * (1 + 2 * nib.astype(np.int32)).astype(F32)
        signs = signs_from_bits(blocks["signs"].reshape(-1, 8, 4))
        return _expand(np.repeat(db[..., None], 4, axis=-1), _two_quads(grid("iq3s_grid"), idx), signs)


def _iq1_values(idx: np.ndarray, delta: np.ndarray, dl: np.ndarray) -> np.ndarray:
    """``dl * (grid[j] + delta)``: idx, delta, dl (n, ib, l) -> float32 (n, 256)."""
    g = grid("iq1s_grid")[idx].astype(F32)                          # (n, ib, l, 8)
    return (dl[..., None] * (g + delta[..., None])).reshape(idx.shape[0], 256)


class IQ1_S(_GridFormat, name="iq1_s"):
    """1.5625 bpw: 11-bit indices into a 2048-entry {-1, 0, 1} grid, a ±1/8 shift per 32."""

    fields = (Field("d", "<f2"), Field("qs", "u1", 32), Field("qh", "<u2", 8))
    search = staticmethod(quantize_iq1_s)
    requires_imatrix = True

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        h = blocks["qh"].astype(np.uint32)                           # (n, ib)
        shifts = np.uint32(3) * np.arange(4, dtype=np.uint32)
        idx = blocks["qs"].astype(np.uint32).reshape(-1, 8, 4) | (((h[..., None] >> shifts) & np.uint32(7)) << np.uint32(8))
        dl = _d(blocks)[:, None] * (2 * ((h >> np.uint32(12)) & np.uint32(7)).astype(np.int32) + 1).astype(F32)
        delta = np.where(h & np.uint32(0x8000), -IQ1S_DELTA, IQ1S_DELTA)
        return _iq1_values(idx, np.repeat(delta[..., None], 4, -1), np.repeat(dl[..., None], 4, -1))


class IQ1_M(_GridFormat, name="iq1_m"):
    """1.75 bpw: IQ1_S's grid, a ±1/8 shift per 8, 3-bit scales per 16, fp16 d in the scales' top nibbles."""

    fields = (Field("qs", "u1", 32), Field("qh", "u1", 16), Field("scales", "u1", 8))
    search = staticmethod(quantize_iq1_m)

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        sc = _bytes(blocks["scales"]).view("<u2").astype(np.uint32)  # (n, 4)
        bits = ((sc[:, 0] >> 12) | ((sc[:, 1] >> 8) & 0xF0) | ((sc[:, 2] >> 4) & 0xF00) | (sc[:, 3] & 0xF000))
        d = bits.astype(np.uint16).view(np.float16).astype(F32)       # (n,)
        qh = blocks["qh"].astype(np.uint32).reshape(-1, 8, 2)       # (n, ib, 2)
        qh4 = np.repeat(qh, 2, axis=-1)                              # (n, ib, l): byte qh[2ib + l/2]
        odd = np.arange(4) % 2 == 1
        idx = blocks["qs"].astype(np.uint32).reshape(-1, 8, 4) | ((qh4 << np.where(odd, 4, 8).astype(np.uint32)) & np.uint32(0x700))
        delta = np.where(qh4 & np.where(odd, 0x80, 0x08).astype(np.uint32), -IQ1S_DELTA, IQ1S_DELTA)
        ib = np.arange(8)
        word = sc[:, ib // 2]                                         # (n, ib)
        base = (6 * (ib % 2)).astype(np.uint32)
        s = np.stack([(word >> base) & 7, (word >> (base + 3)) & 7], -1)   # (n, ib, 2)
        dl = d[:, None, None] * (2 * s.astype(np.int32) + 1).astype(F32)
        return _iq1_values(idx, delta, np.repeat(dl, 2, axis=-1))
