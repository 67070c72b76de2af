"""Codebook encode / decode (nf4, fp4, iq4_nl, ternary, binary) as Numba kernels.

Mirrors :func:`refquant.dtypes.codebooks.codebook_encode` / ``codebook_decode``: a
code is the position of ``x`` among the float32 midpoints of the stably sorted table
(how many midpoints lie strictly below it), mapped back through the sort order; an
input exactly on a midpoint goes to the neighbour the codebook's tie rule names, and
NaN sorts after every midpoint. The tables (values, order, midpoints) come from the
:class:`~refquant.dtypes.codebooks.Codebook`, never typed in here.

The search is branch-free: the midpoints are padded with +inf to ``2**k - 1`` entries
and ``k`` halving steps count the ones below ``x`` (:func:`count_below`), which
:mod:`accel.numba.bnb` reuses for NF4/FP4.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from accel.numba._jit import helper, kernel
from refquant._validate import as_float_array, as_int_array
from refquant.dtypes.codebooks import Codebook, get_codebook

__all__ = ["codebook_encode", "codebook_decode", "search_table", "count_below"]

_TIES = {"lower": 0, "upper": 1, "toward_zero": 2, "away_from_zero": 3}


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


@kernel
def _encode(x, padded, steps, nmid, order, tie, out):  # type: ignore[no-untyped-def]
    for i in prange(x.size):
        v = x[i]
        if np.isnan(v):
            out[i] = order[nmid]
            continue
        lo = count_below(v, padded, steps)
        pos = lo
        if tie != 0:
            hi = lo
            while hi < nmid and padded[hi] == v:      # midpoints equal to v: a tie
                hi += 1
            if hi != lo:
                if tie == 1:
                    pos = hi
                else:
                    # the midpoint v sits on is negative: the upper neighbour is nearer zero
                    upper_is_smaller = padded[lo] < 0
                    if (tie == 2) == upper_is_smaller:
                        pos = hi
        out[i] = order[pos]


@kernel
def _decode(codes, table, out):  # type: ignore[no-untyped-def]
    n_codes = table.size
    bad = 0
    for i in prange(codes.size):
        c = np.int64(codes[i])
        if c < 0 or c >= n_codes:
            bad += 1
            out[i] = np.float32(0.0)
        else:
            out[i] = table[c]
    return bad


def codebook_encode(x: Any, name: str | Codebook) -> np.ndarray:
    """Backend op: same contract as :func:`refquant.dtypes.codebooks.codebook_encode`."""
    cb = get_codebook(name)
    arr = as_float_array("x", x, dtypes=(np.float32, np.float64))
    if arr.dtype == np.float64:
        with np.errstate(over="ignore", invalid="ignore"):  # |x| > FLT_MAX -> inf; sNaN -> NaN
            arr = arr.astype(np.float32)
    padded, steps = search_table(cb)
    out = np.empty(arr.size, np.uint8)
    _encode(np.ascontiguousarray(arr).reshape(-1), padded, steps, cb.midpoints.size,
            np.ascontiguousarray(cb.order, np.uint8), _TIES[cb.tie], out)
    return out.reshape(arr.shape)


def codebook_decode(codes: Any, name: str | Codebook) -> np.ndarray:
    """Backend op: same contract as :func:`refquant.dtypes.codebooks.codebook_decode`."""
    cb = get_codebook(name)
    c = as_int_array("codes", codes)
    out = np.empty(c.size, np.float32)
    # np.int64(code) in the kernel wraps uint64 codes >= 2**63 to negatives: also refused
    if _decode(np.ascontiguousarray(c).reshape(-1), np.ascontiguousarray(cb.table), out):
        bad = int(c.min()) if int(c.min()) < 0 else int(c.max())
        raise ValueError(f"codes contains {bad}, outside 0..{cb.size - 1} for codebook {cb.name!r}")
    return out.reshape(c.shape)
