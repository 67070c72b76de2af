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
from typing import Any

import numpy as np
from numba import prange

from accel.numba import packing as nb_packing
from accel.numba._jit import kernel
from refquant.layouts.awq import _dequantize_args as _awq_dequantize_args
from refquant.layouts.awq import _pack_args as _awq_pack_args
from refquant.layouts.gptq import _pack_args as _gptq_pack_args
from refquant.layouts.gptq import _per_word, _words
from refquant.layouts.gptq import _unpack_args as _gptq_unpack_args
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


def gptq_pack(codes: Any, zeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backend op: same contract as :func:`refquant.layouts.gptq.gptq_pack`."""
    bits, codes, stored_zeros, scales16, g_idx = _gptq_pack_args(codes, zeros, scales, g_idx, bits, version)
    packed = nb_packing.pack(codes, bits, "low_first", "int32")           # (out, in*bits/32)
    qweight = np.empty(packed.shape[::-1], np.int32)
    _transpose_u32(packed.view(np.uint32), qweight.view(np.uint32))     # (in*bits/32, out)
    qzeros = nb_packing.pack(stored_zeros.T, bits, "low_first", "int32")  # (G, out*bits/32)
    return qweight, np.ascontiguousarray(qzeros), np.ascontiguousarray(scales16.T), g_idx.astype(np.int32)


def _gptq_zeros(qzeros: np.ndarray, bits: int, version: int, out_features: int) -> np.ndarray:
    """Zero-points (G, out) uint8 from qzeros, with the reference's v1 check."""
    stored = nb_packing.unpack(qzeros, bits, out_features, "low_first", "int32")  # (G, out)
    if version == 1:
        if np.any(stored == 2**bits - 1):
            g, o = (int(i) for i in np.argwhere(stored == 2**bits - 1)[0])
            raise ValueError(
                f"qzeros[{g}] field {o} is {2**bits - 1}: read as GPTQ v1 (zero - 1) that is a zero-point of "
                f"{2**bits}, which no {bits}-bit quantizer produces. This is a gptq_v2 checkpoint (pass version=2), "
                f"or a v1 file written with a zero-point of 0, whose packed words are corrupt")
        return stored + 1
    return stored


def gptq_unpack(qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1
                ) -> tuple[np.ndarray, np.ndarray]:
    """Backend op: same contract as :func:`refquant.layouts.gptq.gptq_unpack`."""
    qweight, qzeros, scales, g_idx, bits, version, in_features = _gptq_unpack_args(qweight, qzeros, scales, g_idx,
                                                                              bits, version)
    codes = nb_packing.unpack(qweight.T, bits, in_features, "low_first", "int32")  # (out, in)
    zeros = _gptq_zeros(qzeros, bits, version, scales.shape[1])
    return codes, np.ascontiguousarray(zeros.T.astype(np.uint8))


def gptq_dequantize(qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1) -> np.ndarray:
    """Backend op: same contract as :func:`refquant.layouts.gptq.gptq_dequantize` (fused)."""
    qweight, qzeros, scales, g_idx, bits, version, in_features = _gptq_unpack_args(qweight, qzeros, scales, g_idx,
                                                                              bits, version)
    zeros = _gptq_zeros(qzeros, bits, version, scales.shape[1]).astype(np.float32)   # (G, out)
    words = _as_u32(qweight)
    words_t = np.empty(words.shape[::-1], np.uint32)
    _transpose_u32(words, words_t)                                                  # (out, in*bits/32)
    g_idx = np.ascontiguousarray(g_idx, dtype=np.int64)
    runs = g_idx.reshape(-1, _per_word(bits))
    run_group = np.where((runs == runs[:, :1]).all(axis=1), runs[:, 0], -1)          # -1: act-order run
    out = np.empty((scales.shape[1], in_features), np.float32)
    _gptq_dequantize(words_t, np.ascontiguousarray(zeros.T), np.ascontiguousarray(scales.T, dtype=np.float32),
                     g_idx, run_group, bits, out)
    return out


# ---------------------------------------------------------------------------- AWQ


def awq_pack(codes: Any, zeros: Any, scales: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backend op: same contract as :func:`refquant.layouts.awq.awq_pack`."""
    codes, zeros, scales16 = _awq_pack_args(codes, zeros, scales)
    out_features, in_features = codes.shape
    qweight = np.empty((in_features, out_features // 8), np.int32)
    _awq_pack_words(np.ascontiguousarray(codes, dtype=np.uint8), _AWQ_SHIFTS, qweight.view(np.uint32))  # (in, out/8)
    qzeros = nb_packing.pack(zeros.T, 4, "awq", "int32")    # (G, out/8)
    return qweight, qzeros, np.ascontiguousarray(scales16.T)


def awq_unpack(qweight: Any, qzeros: Any) -> tuple[np.ndarray, np.ndarray]:
    """Backend op: same contract as :func:`refquant.layouts.awq.awq_unpack`."""
    qweight, qzeros = _words("qweight", qweight), _words("qzeros", qzeros)
    if qweight.shape[1] != qzeros.shape[1]:
        raise ValueError(f"qweight {qweight.shape} and qzeros {qzeros.shape} must have the same number of "
                         f"words per row (out_features / 8)")
    out_features = qweight.shape[1] * 8
    codes = nb_packing.unpack(qweight, 4, out_features, "awq", "int32")  # (in, out)
    zeros = nb_packing.unpack(qzeros, 4, out_features, "awq", "int32")   # (G, out)
    return np.ascontiguousarray(codes.T), np.ascontiguousarray(zeros.T)


def awq_dequantize(qweight: Any, qzeros: Any, scales: Any, group_size: int) -> np.ndarray:
    """Backend op: same contract as :func:`refquant.layouts.awq.awq_dequantize` (fused)."""
    qweight, group_size, n_groups = _awq_dequantize_args(qweight, qzeros, scales, group_size)
    in_features, words = qweight.shape
    scales = np.asarray(scales)
    qzeros = _words("qzeros", qzeros)
    zeros = nb_packing.unpack(qzeros, 4, words * 8, "awq", "int32").astype(np.float32)   # (G, out)
    out = np.empty((words * 8, in_features), np.float32)
    _awq_dequantize(_as_u32(qweight), zeros, np.ascontiguousarray(scales, dtype=np.float32), group_size,
                    math.gcd(group_size, 64), _AWQ, out)
    return out
