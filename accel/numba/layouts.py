"""Checkpoint layouts (GPTQ v1/v2, AWQ GEMM) as Numba kernels.

Mirrors :mod:`refquant.layouts.gptq` and :mod:`refquant.layouts.awq`. Packing and
unpacking are the reference's compositions with this backend's
:func:`accel.numba.packing.pack` / ``unpack`` kernels, after the reference's own
parameter checks (same messages). Dequantization is fused: codes are read straight
from the int32 words and ``W[o, c] = float32(scale) * (float32(q) - float32(zero))``
is written in one pass, the reference's float32 operations (exact, so Exact).

* ``_gptq_dequantize``: ``qweight`` (in*b/32, out) holds input rows along its first
  axis; a run of ``per_word`` codes (32/b, or 32 for 3 bits) spans one int32 word (3 for
  3 bits), code ``k`` at stream bits ``[b*k, b*k+b)`` (low first, possibly straddling two
  words). The words are transposed first (tiled), so each output row reads its words
  and writes its values in order; a run whose columns share a group (no act-order)
  uses one scale and zero.
* ``_awq_dequantize``: ``qweight`` (in, out/8); nibble ``i`` of word ``j`` is output
  ``8j + AWQ_ORDER[i]``; tasks are runs of input columns inside one group.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from accel.numba import packing as nb_packing
from accel.numba._jit import kernel
from refquant.layouts.gptq import per_word
from refquant.packing import AWQ_ORDER

__all__ = ["gptq_pack", "gptq_unpack", "gptq_dequantize", "awq_pack", "awq_unpack", "awq_dequantize"]

TILE_C = 16   # input columns per task when packing AWQ words
_AWQ = np.array(AWQ_ORDER, np.int64)
_AWQ_SHIFTS = (4 * np.argsort(AWQ_ORDER)).astype(np.uint32)   # output 8j + k sits at bit 4 * position of k


@kernel(iterations=lambda qweight_t, *a: qweight_t.shape[0])
def _gptq_dequantize(qweight_t, zeros_t, scales_t, g_idx, run_group, bits, out):  # type: ignore[no-untyped-def]
    """qweight_t uint32 (out, in*b/32) (qweight transposed, so one output row's words are
    contiguous); zeros_t, scales_t float32 (out, G); run_group[r]: the group shared by
    every column of run r, or -1 (act-order); out float32 (out, in)."""
    n_out, n_in = out.shape
    per_word = 32 if bits == 3 else 32 // bits
    mask = np.uint64((1 << bits) - 1)
    for po in prange(n_out):
        o = np.int64(po)
        words = qweight_t[o]
        st = scales_t[o]
        zt = zeros_t[o]
        orow = out[o]
        for run in range(n_in // per_word):
            c0 = run * per_word
            cols = orow[c0:c0 + per_word]
            g0 = run_group[run]
            if bits != 3:                                      # 2/4/8 bits: whole codes per word
                v = np.uint64(words[run])
                if g0 >= 0:
                    s = st[g0]
                    z = zt[g0]
                    for k in range(per_word):
                        cols[k] = s * (np.float32((v >> np.uint64(bits * k)) & mask) - z)
                else:
                    for k in range(per_word):
                        g = g_idx[c0 + k]
                        cols[k] = st[g] * (np.float32((v >> np.uint64(bits * k)) & mask) - zt[g])
            else:                                              # 3 bits: 32 codes in 3 words
                v = np.uint64(words[3 * run]) | (np.uint64(words[3 * run + 1]) << np.uint64(32))
                hi = np.uint64(words[3 * run + 2])
                for k in range(per_word):
                    p = 3 * k                                  # stream bit of code k in the 96-bit run
                    if p < 62:
                        q = (v >> np.uint64(p)) & mask
                    elif p < 64:                               # code 21 straddles words 1 and 2
                        q = ((v >> np.uint64(p)) | (hi << np.uint64(64 - p))) & mask
                    else:
                        q = (hi >> np.uint64(p - 64)) & mask
                    g = g_idx[c0 + k]
                    cols[k] = st[g] * (np.float32(q) - zt[g])


@kernel(iterations=lambda qweight, zeros, scales, group_size, tile, *a: qweight.shape[0] // tile)
def _awq_dequantize(qweight, zeros, scales, group_size, tile, order, out):  # type: ignore[no-untyped-def]
    """qweight uint32 (in, out/8); zeros, scales float32 (G, out); out float32 (out, in).

    Tasks are ``tile`` input columns within one group (``tile`` divides ``group_size``),
    so an output row's scale and zero are scalars there and its ``tile`` outputs come
    from a contiguous buffer of words: a loop LLVM vectorizes."""
    n_in, n_words = qweight.shape
    for pt in prange(n_in // tile):
        c0 = np.int64(pt) * tile
        g = c0 // group_size
        wbuf = np.empty(tile, np.uint32)
        for j in range(n_words):
            for t in range(tile):
                wbuf[t] = qweight[c0 + t, j]
            for i in range(8):
                o = 8 * j + order[i]
                s = scales[g, o]
                z = zeros[g, o]
                shift = np.uint32(4 * i)
                orow = out[o, c0:c0 + tile]
                for t in range(tile):
                    orow[t] = s * (np.float32((wbuf[t] >> shift) & np.uint32(15)) - z)


@kernel(iterations=lambda codes, sh, out: -(-codes.shape[1] // TILE_C))
def _awq_pack_words(codes, sh, out):  # type: ignore[no-untyped-def]
    """AWQ qweight (in, out/8) straight from codes (out, in): word j of input column c holds
    outputs 8j..8j+7, output 8j+k at bit sh[k]. Tiles of TILE_C input columns."""
    n_out, n_in = codes.shape
    tiles = (n_in + TILE_C - 1) // TILE_C
    for pt in prange(tiles):
        c0 = np.int64(pt) * TILE_C
        c1 = min(c0 + TILE_C, n_in)
        for j in range(n_out // 8):
            for c in range(c0, c1):
                v = np.uint32(0)
                for k in range(8):
                    v |= np.uint32(codes[8 * j + k, c]) << sh[k]
                out[c, j] = v


@kernel(iterations=lambda a, out: -(-a.shape[0] // 32) * -(-a.shape[1] // 32))
def _transpose_u32(a, out):  # type: ignore[no-untyped-def]
    """out (n, m) = a (m, n).T in 32 x 32 tiles."""
    m, n = a.shape
    tm = (m + 31) // 32
    tn = (n + 31) // 32
    for pt in prange(tm * tn):
        t = np.int64(pt)
        i0 = (t // tn) * 32
        j0 = (t % tn) * 32
        for j in range(j0, min(j0 + 32, n)):
            for i in range(i0, min(i0 + 32, m)):
                out[j, i] = a[i, j]


def _as_u32(words: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(words).view(np.uint32)


# --------------------------------------------------------------------------- GPTQ


def gptq_pack(codes: np.ndarray, zeros: np.ndarray, scales: np.ndarray, g_idx: np.ndarray, bits: int,
              version: int = 1, *, out: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backend op :func:`refquant.layouts.gptq.gptq_pack` on prepared arguments
    (``refquant.prepare.layouts``: uint8 codes and int64 zero points in range, float16
    scales (out, G), int64 g_idx; ``out`` the four result arrays)."""
    qweight, qzeros, scales_t, g_idx32 = out
    stored_zeros = zeros - 1 if version == 1 else zeros                 # v1 stores zero - 1
    packed = nb_packing.pack_array(codes, bits, "low_first", "int32")  # (out, in*bits/32)
    _transpose_u32(packed.view(np.uint32), qweight.view(np.uint32))     # (in*bits/32, out)
    qzeros[...] = nb_packing.pack_array(stored_zeros.T, bits, "low_first", "int32")  # (G, out*bits/32), small
    scales_t[...] = scales.T
    g_idx32[...] = g_idx
    return out


def _gptq_zeros(qzeros: np.ndarray, bits: int, version: int, out_features: int) -> np.ndarray:
    """Zero-points (G, out) from qzeros (v1 fields were checked by preparation: none is 2**bits - 1)."""
    stored = nb_packing.unpack_array(qzeros, bits, out_features, "low_first", "int32")  # (G, out)
    return stored + 1 if version == 1 else stored


def gptq_unpack(qweight: np.ndarray, qzeros: np.ndarray, scales: np.ndarray, g_idx: np.ndarray, bits: int,
                version: int = 1, *, out: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Backend op :func:`refquant.layouts.gptq.gptq_unpack` on prepared arguments (consistent word
    tensors; ``out`` codes uint8 (out, in), zeros uint8 (out, G))."""
    codes, zeros = out
    nb_packing.unpack(np.ascontiguousarray(qweight.T), bits, g_idx.shape[0], "low_first", "int32", out=codes)
    zeros[...] = _gptq_zeros(qzeros, bits, version, scales.shape[1]).T
    return out


def gptq_dequantize(qweight: np.ndarray, qzeros: np.ndarray, scales: np.ndarray, g_idx: np.ndarray, bits: int,
                    version: int = 1, *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.layouts.gptq.gptq_dequantize` on prepared arguments (fused)."""
    zeros = _gptq_zeros(qzeros, bits, version, scales.shape[1]).astype(np.float32)   # (G, out)
    words = _as_u32(qweight)
    words_t = np.empty(words.shape[::-1], np.uint32)
    _transpose_u32(words, words_t)                                                  # (out, in*bits/32)
    runs = g_idx.reshape(-1, per_word(bits))
    run_group = np.where((runs == runs[:, :1]).all(axis=1), runs[:, 0], -1)          # -1: act-order run
    _gptq_dequantize(words_t, np.ascontiguousarray(zeros.T), np.ascontiguousarray(scales.T, dtype=np.float32),
                     g_idx, run_group, bits, out)
    return out


# ---------------------------------------------------------------------------- AWQ


def awq_pack(codes: np.ndarray, zeros: np.ndarray, scales: np.ndarray, *,
             out: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backend op :func:`refquant.layouts.awq.awq_pack` on prepared arguments (uint8 codes
    and zeros in 0..15, float16 scales (out, G); ``out`` the three result arrays)."""
    qweight, qzeros, scales_t = out
    _awq_pack_words(codes, _AWQ_SHIFTS, qweight.view(np.uint32))        # (in, out/8)
    qzeros[...] = nb_packing.pack_array(zeros.T, 4, "awq", "int32")     # (G, out/8), small
    scales_t[...] = scales.T
    return out


def awq_unpack(qweight: np.ndarray, qzeros: np.ndarray, *,
               out: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Backend op :func:`refquant.layouts.awq.awq_unpack` on prepared arguments (``out`` codes
    uint8 (out, in), zeros uint8 (out, G))."""
    out_features = qweight.shape[1] * 8
    out[0][...] = nb_packing.unpack_array(qweight, 4, out_features, "awq", "int32").T  # from (in, out)
    out[1][...] = nb_packing.unpack_array(qzeros, 4, out_features, "awq", "int32").T   # from (G, out)
    return out


def awq_dequantize(qweight: np.ndarray, qzeros: np.ndarray, scales: np.ndarray, group_size: int, *,
                   out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.layouts.awq.awq_dequantize` on prepared arguments (fused)."""
    in_features, words = qweight.shape
    zeros = nb_packing.unpack_array(qzeros, 4, words * 8, "awq", "int32").astype(np.float32)   # (G, out)
    _awq_dequantize(_as_u32(qweight), zeros, np.ascontiguousarray(scales, dtype=np.float32), group_size,
                    math.gcd(group_size, 64), _AWQ, out)
    return out
