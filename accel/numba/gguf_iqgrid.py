"""GGUF grid-codebook types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) as Numba kernels.

Decoding is ``dequantize_row_iq2_xxs`` ... ``dequantize_row_iq1_m`` (``ggml-quants.c``,
ggml-org/ggml @ d99724f2) per 256-element super-block, read from the raw block bytes:
every value is ``(db · grid[idx][j]) · ±1`` in float32 (IQ1: ``dl · (grid[idx][j] + delta)``),
with the field positions and bit rules of :mod:`refquant.formats.gguf_iqgrid`. The grids
are the reference's tables (:mod:`refquant.formats._iq_grids`), passed to the kernels as
arrays. The searches (quantization) are in :mod:`accel.numba.gguf_iqgrid_search`.

========  =====  ========================================================
type      bytes  fields (byte offsets)
========  =====  ========================================================
IQ2_XXS   66     d @0, qs:u16[32] @2 (per 32: 4 index bytes, u32 signs/scale)
IQ2_XS    74     d @0, qs:u16[32] @2, scales[8] @66
IQ2_S     82     d @0, qs[64] @2, qh[8] @66, scales[8] @74
IQ3_XXS   98     d @0, qs[64] @2, signs/scales:u32[8] @66
IQ3_S     110    d @0, qs[64] @2, qh[8] @66, signs[32] @74, scales[4] @106
IQ1_S     50     d @0, qs[32] @2, qh:u16[8] @34
IQ1_M     56     qs[32] @0, qh[16] @32, scales:u16[4] @48 (fp16 d in their top nibbles)
========  =====  ========================================================
"""

from __future__ import annotations

import numpy as np
from numba import prange

from accel.numba.gguf_math import f32, fp16_to_fp32, gkernel, ginline, load_fp16
from refquant.formats._iq_grids import KSIGNS_IQ2XS, grid

__all__ = ["DEQUANTIZE", "KINDS"]

_HALF = np.float32(0.5)
_QUARTER = np.float32(0.25)
_ONE = np.float32(1.0)
_DELTA = np.float32(0.125)
CHUNK = 16  # super-blocks per prange iteration

KINDS = ("iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m")
IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M = range(7)
_GRID = ("iq2xxs_grid", "iq2xs_grid", "iq2s_grid", "iq3xxs_grid", "iq3s_grid", "iq1s_grid", "iq1s_grid")


@ginline
def _u32(q, pos):  # type: ignore[no-untyped-def]
    return (np.uint32(q[pos]) | (np.uint32(q[pos + 1]) << np.uint32(8)) | (np.uint32(q[pos + 2]) << np.uint32(16))
            | (np.uint32(q[pos + 3]) << np.uint32(24)))


@ginline
def _group(y, off, db, g, gi, signs, width, k):  # type: ignore[no-untyped-def]
    """``width`` values of grid row ``gi`` at ``y[off + k·width ...]``: ``(db · g) · ±1``, sign
    bit ``k·width + j`` of ``signs``."""
    for j in range(width):
        v = db * f32(g[gi, j])
        y[off + k * width + j] = -v if (signs >> (k * width + j)) & 1 else v


@ginline
def _iq1_group(y, off, dl, g, gi, delta):  # type: ignore[no-untyped-def]
    for j in range(8):
        y[off + j] = dl * (f32(g[gi, j]) + delta)


@ginline
def _half_scale(d, nibble, factor):  # type: ignore[no-untyped-def]
    """``d · (0.5f + s) · factor``, left to right."""
    return (d * (_HALF + f32(nibble))) * factor


@ginline
def _block(kind, q, y, g, ksigns):  # type: ignore[no-untyped-def]
    if kind == IQ1_M:
        s0 = np.int32(q[48]) | (np.int32(q[49]) << 8)
        s1 = np.int32(q[50]) | (np.int32(q[51]) << 8)
        s2 = np.int32(q[52]) | (np.int32(q[53]) << 8)
        s3 = np.int32(q[54]) | (np.int32(q[55]) << 8)
        d = fp16_to_fp32((s0 >> 12) | ((s1 >> 8) & 0xF0) | ((s2 >> 4) & 0xF00) | (s3 & 0xF000))
    else:
        d = load_fp16(q, 0)
    for ib in range(8):
        off = 32 * ib
        if kind == IQ2_XXS:
            a1 = _u32(q, 2 + 8 * ib + 4)
            db = _half_scale(d, a1 >> np.uint32(28), _QUARTER)
            for l in range(4):
                _group(y, off + 8 * l, db, g, q[2 + 8 * ib + l], ksigns[(a1 >> np.uint32(7 * l)) & np.uint32(127)], 8, 0)
        elif kind == IQ2_XS or kind == IQ2_S:
            sc = np.int32(q[66 + ib]) if kind == IQ2_XS else np.int32(q[74 + ib])
            for l in range(4):
                db = _half_scale(d, (sc >> 4) if l >= 2 else (sc & 0xF), _QUARTER)
                if kind == IQ2_XS:
                    v = np.int32(q[2 + 8 * ib + 2 * l]) | (np.int32(q[3 + 8 * ib + 2 * l]) << 8)
                    gi = v & 511
                    signs = ksigns[v >> 9]
                else:
                    gi = np.int32(q[2 + 4 * ib + l]) | ((np.int32(q[66 + ib]) << (8 - 2 * l)) & 0x300)
                    signs = q[34 + 4 * ib + l]
                _group(y, off + 8 * l, db, g, gi, signs, 8, 0)
        elif kind == IQ3_XXS:
            a = _u32(q, 66 + 4 * ib)
            db = _half_scale(d, a >> np.uint32(28), _HALF)
            for l in range(4):
                signs = ksigns[(a >> np.uint32(7 * l)) & np.uint32(127)]
                _group(y, off + 8 * l, db, g, q[2 + 8 * ib + 2 * l], signs, 4, 0)
                _group(y, off + 8 * l, db, g, q[3 + 8 * ib + 2 * l], signs, 4, 1)
        elif kind == IQ3_S:
            nib = (np.int32(q[106 + ib // 2]) >> (4 * (ib % 2))) & 0xF
            db = d * f32(1 + 2 * nib)
            h = np.int32(q[66 + ib])
            for l in range(4):
                signs = q[74 + 4 * ib + l]
                for k in range(2):
                    gi = np.int32(q[2 + 8 * ib + 2 * l + k]) | ((h << (8 - 2 * l - k)) & 256)
                    _group(y, off + 8 * l, db, g, gi, signs, 4, k)
        elif kind == IQ1_S:
            h = np.int32(q[34 + 2 * ib]) | (np.int32(q[35 + 2 * ib]) << 8)
            dl = d * f32(2 * ((h >> 12) & 7) + 1)
            delta = -_DELTA if h & 0x8000 else _DELTA
            for l in range(4):
                _iq1_group(y, off + 8 * l, dl, g, np.int32(q[2 + 4 * ib + l]) | (((h >> (3 * l)) & 7) << 8), delta)
        else:  # IQ1_M
            word = np.int32(q[48 + 2 * (ib // 2)]) | (np.int32(q[49 + 2 * (ib // 2)]) << 8)
            base = 6 * (ib % 2)
            for l in range(4):
                hb = np.int32(q[32 + 2 * ib + l // 2])
                odd = l % 2
                gi = np.int32(q[4 * ib + l]) | ((hb << (4 if odd else 8)) & 0x700)
                delta = -_DELTA if hb & (0x80 if odd else 0x08) else _DELTA
                s = (word >> (base + (3 if l >= 2 else 0))) & 7
                _iq1_group(y, off + 8 * l, d * f32(2 * s + 1), g, gi, delta)


@gkernel
def _dequantize(kind, data, out, g, ksigns):  # type: ignore[no-untyped-def]
    nb = data.shape[0]
    for c in prange((nb + CHUNK - 1) // CHUNK):
        for b in range(c * CHUNK, min(nb, (c + 1) * CHUNK)):
            _block(kind, data[b], out[b], g, ksigns)


def _dequantizer(kind: int):  # type: ignore[no-untyped-def]
    g = np.ascontiguousarray(grid(_GRID[kind]))
    ksigns = np.ascontiguousarray(KSIGNS_IQ2XS)
    return lambda data, out: _dequantize(kind, data, out, g, ksigns)


DEQUANTIZE = {name: _dequantizer(k) for k, name in enumerate(KINDS)}
