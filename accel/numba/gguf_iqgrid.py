"""GGUF grid-codebook types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) as Numba kernels.

Decoding is ``dequantize_row_iq2_xxs`` ... ``dequantize_row_iq1_m`` (``ggml-quants.c``,
ggml-org/ggml @ d99724f2) per 256-element super-block, read from the raw block bytes:
every value is ``(db · grid[idx][j]) · ±1`` in float32 (IQ1: ``dl · (grid[idx][j] + delta)``),
with the field positions and bit rules of :mod:`refquant.formats.gguf_iqgrid` (byte offsets
from its declared block types). One block decoder per type; its dequantize kernel is built
by :func:`accel.numba.gguf_blocks.dequantize_kernel`. The grids are the reference's tables
(:mod:`refquant.formats.iq_grids`), compiled in as constants. The searches (quantization)
are in :mod:`accel.numba.gguf_iqgrid_search`.

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

from accel.numba.gguf_blocks import dequantize_kernel, field_offsets
from accel.numba.gguf_math import f32, fp16_to_fp32, ginline, load_fp16
from refquant.formats import FORMATS
from refquant.formats.iq_grids import KSIGNS_IQ2XS, grid

__all__ = ["DEQUANTIZE", "KINDS"]

_HALF = np.float32(0.5)
_QUARTER = np.float32(0.25)
_DELTA = np.float32(0.125)
CHUNK = 16  # super-blocks per prange iteration

KINDS = ("iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m")
# byte offsets of the fields, from the declared block types
_IQ2_XXS, _IQ2_XS, _IQ2_S, _IQ3_XXS, _IQ3_S, _IQ1_S, _IQ1_M = (field_offsets(FORMATS[t]) for t in KINDS)
_IQ2_S_SIGNS = _IQ2_S.qs + 32     # qs[32:64]: the sign bytes
_IQ3_XXS_SCALES = _IQ3_XXS.qs + 64  # qs[64:96]: per 32 a u32 of signs and scale
_KSIGNS = np.ascontiguousarray(KSIGNS_IQ2XS)
_GRID_IQ2XXS, _GRID_IQ2XS, _GRID_IQ2S, _GRID_IQ3XXS, _GRID_IQ3S, _GRID_IQ1S = (
    np.ascontiguousarray(grid(name)) for name in ("iq2xxs_grid", "iq2xs_grid", "iq2s_grid", "iq3xxs_grid", "iq3s_grid",
                                                  "iq1s_grid"))


@ginline
def _u32(q, pos):  # type: ignore[no-untyped-def]
    return (np.uint32(q[pos]) | (np.uint32(q[pos + 1]) << np.uint32(8)) | (np.uint32(q[pos + 2]) << np.uint32(16))
            | (np.uint32(q[pos + 3]) << np.uint32(24)))


@ginline
def _u16(q, pos):  # type: ignore[no-untyped-def]
    return np.int32(q[pos]) | (np.int32(q[pos + 1]) << 8)


@ginline
def _group(y, off, db, g, gi, signs, width, k):  # type: ignore[no-untyped-def]
    """``width`` values of grid row ``gi`` at ``y[off + k·width ...]``: ``(db · g) · ±1``, sign
    bit ``k·width + j`` of ``signs``."""
    for j in range(width):
        v = db * f32(g[gi, j])
        y[off + k * width + j] = -v if (signs >> (k * width + j)) & 1 else v


@ginline
def _iq1_group(y, off, dl, gi, delta):  # type: ignore[no-untyped-def]
    for j in range(8):
        y[off + j] = dl * (f32(_GRID_IQ1S[gi, j]) + delta)


@ginline
def _half_scale(d, nibble, factor):  # type: ignore[no-untyped-def]
    """``d · (0.5f + s) · factor``, left to right."""
    return (d * (_HALF + f32(nibble))) * factor


@ginline
def _pair_scale(d, sc, l):  # type: ignore[no-untyped-def]
    """IQ2_XS / IQ2_S: the 8 values of group ``l`` of a 32 take the low nibble of its scale
    byte ``sc`` (l = 0, 1) or the high one (l = 2, 3): ``d · (0.5f + s) · 0.25f``."""
    return _half_scale(d, (sc >> 4) if l >= 2 else (sc & 0xF), _QUARTER)


@ginline
def _dequant_iq2xxs(q, y):  # type: ignore[no-untyped-def]
    """Per 32: 4 index bytes, then a u32 with four 7-bit sign indices and the 4-bit scale."""
    d = load_fp16(q, _IQ2_XXS.d)
    for ib in range(8):
        p = _IQ2_XXS.qs + 8 * ib
        a1 = _u32(q, p + 4)
        db = _half_scale(d, a1 >> np.uint32(28), _QUARTER)
        for l in range(4):
            _group(y, 32 * ib + 8 * l, db, _GRID_IQ2XXS, q[p + l], _KSIGNS[(a1 >> np.uint32(7 * l)) & np.uint32(127)],
                   8, 0)


@ginline
def _dequant_iq2xs(q, y):  # type: ignore[no-untyped-def]
    """Per 8 values a u16: 9-bit grid index, 7-bit sign index; two 4-bit scales per 32."""
    d = load_fp16(q, _IQ2_XS.d)
    for ib in range(8):
        sc = np.int32(q[_IQ2_XS.scales + ib])
        for l in range(4):
            db = _pair_scale(d, sc, l)
            v = _u16(q, _IQ2_XS.qs + 8 * ib + 2 * l)
            _group(y, 32 * ib + 8 * l, db, _GRID_IQ2XS, v & 511, _KSIGNS[v >> 9], 8, 0)


@ginline
def _dequant_iq2s(q, y):  # type: ignore[no-untyped-def]
    """10-bit grid indices (low bytes in qs, 2 high bits each in qh), explicit sign bytes."""
    d = load_fp16(q, _IQ2_S.d)
    for ib in range(8):
        sc = np.int32(q[_IQ2_S.scales + ib])
        for l in range(4):
            db = _pair_scale(d, sc, l)
            gi = np.int32(q[_IQ2_S.qs + 4 * ib + l]) | ((np.int32(q[_IQ2_S.qh + ib]) << (8 - 2 * l)) & 0x300)
            _group(y, 32 * ib + 8 * l, db, _GRID_IQ2S, gi, q[_IQ2_S_SIGNS + 4 * ib + l], 8, 0)


@ginline
def _dequant_iq3xxs(q, y):  # type: ignore[no-untyped-def]
    """Two 4-value grid rows per 8 values; per 32 a u32 of four sign indices and the scale."""
    d = load_fp16(q, _IQ3_XXS.d)
    for ib in range(8):
        a = _u32(q, _IQ3_XXS_SCALES + 4 * ib)
        db = _half_scale(d, a >> np.uint32(28), _HALF)
        for l in range(4):
            signs = _KSIGNS[(a >> np.uint32(7 * l)) & np.uint32(127)]
            p = _IQ3_XXS.qs + 8 * ib + 2 * l
            _group(y, 32 * ib + 8 * l, db, _GRID_IQ3XXS, q[p], signs, 4, 0)
            _group(y, 32 * ib + 8 * l, db, _GRID_IQ3XXS, q[p + 1], signs, 4, 1)


@ginline
def _dequant_iq3s(q, y):  # type: ignore[no-untyped-def]
    """9-bit indices of 4-value rows (high bit in qh), sign bytes, db = d·(1 + 2·nibble)."""
    d = load_fp16(q, _IQ3_S.d)
    for ib in range(8):
        nib = (np.int32(q[_IQ3_S.scales + ib // 2]) >> (4 * (ib % 2))) & 0xF
        db = d * f32(1 + 2 * nib)
        h = np.int32(q[_IQ3_S.qh + ib])
        for l in range(4):
            signs = q[_IQ3_S.signs + 4 * ib + l]
            for k in range(2):
                gi = np.int32(q[_IQ3_S.qs + 8 * ib + 2 * l + k]) | ((h << (8 - 2 * l - k)) & 256)
                _group(y, 32 * ib + 8 * l, db, _GRID_IQ3S, gi, signs, 4, k)


@ginline
def _dequant_iq1s(q, y):  # type: ignore[no-untyped-def]
    """11-bit indices (3 high bits per 8 in the u16 qh), dl = d·(2·s + 1), delta ±1/8."""
    d = load_fp16(q, _IQ1_S.d)
    for ib in range(8):
        h = _u16(q, _IQ1_S.qh + 2 * ib)
        dl = d * f32(2 * ((h >> 12) & 7) + 1)
        delta = -_DELTA if h & 0x8000 else _DELTA
        for l in range(4):
            _iq1_group(y, 32 * ib + 8 * l, dl, np.int32(q[_IQ1_S.qs + 4 * ib + l]) | (((h >> (3 * l)) & 7) << 8), delta)


@ginline
def _dequant_iq1m(q, y):  # type: ignore[no-untyped-def]
    """As IQ1_S with 3-bit scales per 16 values and the fp16 d spread over the scales'
    top nibbles."""
    s0 = _u16(q, _IQ1_M.scales)
    s1 = _u16(q, _IQ1_M.scales + 2)
    s2 = _u16(q, _IQ1_M.scales + 4)
    s3 = _u16(q, _IQ1_M.scales + 6)
    d = fp16_to_fp32((s0 >> 12) | ((s1 >> 8) & 0xF0) | ((s2 >> 4) & 0xF00) | (s3 & 0xF000))
    for ib in range(8):
        word = _u16(q, _IQ1_M.scales + 2 * (ib // 2))
        base = 6 * (ib % 2)
        for l in range(4):
            hb = np.int32(q[_IQ1_M.qh + 2 * ib + l // 2])
            odd = l % 2
            gi = np.int32(q[_IQ1_M.qs + 4 * ib + l]) | ((hb << (4 if odd else 8)) & 0x700)
            delta = -_DELTA if hb & (0x80 if odd else 0x08) else _DELTA
            s = (word >> (base + (3 if l >= 2 else 0))) & 7
            _iq1_group(y, 32 * ib + 8 * l, d * f32(2 * s + 1), gi, delta)


_DECODE = {"iq2_xxs": _dequant_iq2xxs, "iq2_xs": _dequant_iq2xs, "iq2_s": _dequant_iq2s, "iq3_xxs": _dequant_iq3xxs,
           "iq3_s": _dequant_iq3s, "iq1_s": _dequant_iq1s, "iq1_m": _dequant_iq1m}
DEQUANTIZE = {name: dequantize_kernel(FORMATS[name], _DECODE[name], chunk=CHUNK) for name in KINDS}
