"""Codebook encode / decode (nf4, fp4, iq4_nl, ternary, binary) as Numba kernels.

Mirrors :func:`refquant.dtypes.codebooks.codebook_encode` / ``codebook_decode``: a
code is the position of ``x`` among the float32 midpoints of the stably sorted table
(how many midpoints lie strictly below it), mapped back through the sort order; an
input exactly on a midpoint goes to the neighbour the codebook's tie rule names, and
NaN sorts after every midpoint. The tables (values, order, midpoints) come from the
:class:`~refquant.dtypes.codebooks.Codebook`, never typed in here.

Small tables (all registered ones) count the midpoints below each value with one
vectorized pass per midpoint; larger ones search (:func:`count_below`: the midpoints
padded with +inf to ``2**k - 1`` entries, ``k`` halving steps). Ties, NaN and the table
lookup run in a scalar pass (LLVM would turn vectorized lookups into slow gathers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from accel.numba._jit import helper, kernel
from refquant.dtypes.codebooks import Codebook, get_codebook

__all__ = ["codebook_encode", "codebook_decode", "search_table", "count_below"]

_TIES = {"lower": 0, "upper": 1, "toward_zero": 2, "away_from_zero": 3}
_CHUNK = 8192  # elements per parallel task


def search_table(cb: Codebook) -> tuple[np.ndarray, int]:
    """The codebook's midpoints padded with +inf to ``2**k - 1`` entries, and ``k``."""
    mid = cb.midpoints
    steps = max(1, int(mid.size).bit_length())          # 2**steps - 1 >= mid.size
    padded = np.full((1 << steps) - 1, np.inf, np.float32)
    padded[: mid.size] = mid
    return padded, steps


@helper
def count_below(v, padded, steps):  # type: ignore[no-untyped-def]
    """How many of the sorted ``padded`` midpoints are strictly below ``v`` (NaN: 0)."""
    pos = 0
    half = 1 << steps
    for _ in range(steps):
        half >>= 1
        if padded[pos + half - 1] < v:
            pos += half
    return pos


@helper
def _resolve(v, lo, padded, nmid, tie):  # type: ignore[no-untyped-def]
    """Final sorted position of ``v`` given ``lo`` midpoints strictly below it: NaN goes
    after every midpoint; a value on a midpoint goes where the tie rule says."""
    if v != v:
        return nmid
    if tie == 0 or lo >= nmid or padded[lo] != v:
        return lo
    hi = lo
    while hi < nmid and padded[hi] == v:          # midpoints equal to v (several if values repeat)
        hi += 1
    if tie == 1:
        return hi
    # the midpoint v sits on is negative: the upper neighbour is nearer zero
    upper_is_smaller = padded[lo] < 0
    return hi if (tie == 2) == upper_is_smaller else lo


@kernel(iterations=lambda x, padded, steps, nmid, order, tie, chunk, out: -(-x.size // chunk))
def _encode(x, padded, steps, nmid, order, tie, chunk, out):  # type: ignore[no-untyped-def]
    n = x.size
    for pt in prange((n + chunk - 1) // chunk):
        a = np.int64(pt) * chunk
        xs = x[a:min(a + chunk, n)]
        os = out[a:min(a + chunk, n)]
        pos = np.zeros(xs.size, np.uint8)
        if nmid <= 32:
            # small tables: count the midpoints below, one vectorized pass per midpoint
            for j in range(nmid):
                m = padded[j]
                for i in range(xs.size):
                    pos[i] += xs[i] > m
        else:
            for i in range(xs.size):
                pos[i] = count_below(xs[i], padded, steps)
        i = 0
        while i < xs.size:                        # scalar on purpose: table lookups, no gathers
            p = _resolve(xs[i], np.int64(pos[i]), padded, nmid, tie)
            if p < 0:
                break                             # never taken (keeps the loop unvectorized)
            os[i] = order[p]
            i += 1


@kernel(iterations=lambda codes, *a: codes.size)
def _decode(codes, table, out):  # type: ignore[no-untyped-def]
    """Integer codes (preparation keeps them in ``0..table.size - 1``; the guard is the
    kernel's own memory safety, a code outside would decode to 0)."""
    n_codes = table.size
    for i in prange(codes.size):
        c = np.int64(codes[i])
        out[i] = table[c] if 0 <= c < n_codes else np.float32(0.0)


@kernel(iterations=lambda words, *a: words.size)
def _decode_bytes(words, table, out):  # type: ignore[no-untyped-def]
    """uint8 codes read as uint64 words (8 codes each) and unpacked with shifts: scalar
    lookups (no vector gathers) in a 256-entry ``table``, so every byte indexes within it."""
    for pw in prange(words.size):
        w = np.int64(pw)
        v = words[w]
        for k in range(8):
            c = (v >> np.uint64(8 * k)) & np.uint64(0xFF)
            out[8 * w + k] = table[c]


def codebook_encode(x: np.ndarray, cb: Codebook, *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.dtypes.codebooks.codebook_encode` on prepared arguments
    (float32 ``x`` C-contiguous, ``cb`` a plain Codebook, ``out`` uint8 of x's shape)."""
    cb = get_codebook(cb)                               # a registered name or a plain Codebook
    padded, steps = search_table(cb)
    _encode(x.reshape(-1), padded, steps, cb.midpoints.size, np.ascontiguousarray(cb.order, np.uint8),
            _TIES[cb.tie], _CHUNK, out.reshape(-1))
    return out


def codebook_decode(codes: np.ndarray, cb: Codebook, *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.dtypes.codebooks.codebook_decode` on prepared arguments
    (integer codes in ``0..cb.size - 1``, C-contiguous; ``out`` float32)."""
    cb = get_codebook(cb)
    flat = codes.reshape(-1)
    res = out.reshape(-1)
    if codes.dtype == np.uint8:
        # 256-entry table (codes are < cb.size): lookups read packed words and shift
        wide = np.zeros(256, np.float32)
        wide[: cb.size] = cb.table
        head = flat.size - flat.size % 8
        _decode_bytes(flat[:head].view(np.uint64), wide, res[:head])
        _decode(flat[head:], np.ascontiguousarray(cb.table), res[head:])
    else:
        _decode(flat, np.ascontiguousarray(cb.table), res)
    return out
