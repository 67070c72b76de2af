"""Affine choose_qparams / quantize / dequantize (every granularity) as Numba kernels.

Mirrors :mod:`refquant.mapping`. ``choose_qparams`` reduces each group's min and max
in one pass (``_minmax``, also counting NaN/inf) and hands the small grid of ranges to
the reference's :func:`~refquant.mapping.qparams_from_range`, so the scale/zero-point
arithmetic exists once. Quantize and dequantize repeat the reference's float32 steps:
codes are ``clamp(round(x / scale) + zp, qmin, qmax)`` with a true float32 division and
the clamp done in float32 before the integer add; dequantization is
``float32(q - zp) * scale``. The scale grid is never
expanded to the input's shape: each element finds its group from per-axis run lengths
(a granularity's ``block_size``), with the array padded to :data:`NDIM` axes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import get_num_threads, prange

from accel.numba._jit import helper, kernel
from refquant.errors import UnsupportedError
from refquant.granularity import Granularity, PerGroup, checked_geometry
from refquant.mapping import ROUNDINGS, QuantParams, qparams_from_range

NDIM = 6  # arrays up to this many dimensions (axes beyond it: UnsupportedError)


def _layout(gran: Granularity, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shape, run, grid stride) per axis, left-padded to NDIM; run 0 = the whole axis.

    The runs and grid come from :func:`refquant.granularity.checked_geometry`, the same
    numbers the preparation checked the scale grid against."""
    if len(shape) > NDIM:
        raise UnsupportedError(f"the numba backend handles arrays of up to {NDIM} dimensions, got {len(shape)}")
    block, grid = checked_geometry(gran, shape)
    runs = [0 if b is None else b for b in block]
    strides = np.ones(len(grid), np.int64)
    for a in range(len(grid) - 2, -1, -1):
        strides[a] = strides[a + 1] * grid[a + 1]
    pad = NDIM - len(shape)
    return (np.array((1,) * pad + tuple(shape), np.int64), np.array((0,) * pad + tuple(runs), np.int64),
            np.concatenate([np.zeros(pad, np.int64), strides]))


def _rows_of(x: np.ndarray, scale: np.ndarray, zp: np.ndarray, has_zp: bool, shape: np.ndarray, *rest: Any) -> int:
    """Trip count of the row loops: rows of the padded shape (0 for an empty last axis)."""
    return x.size // int(shape[-1]) if shape[-1] else 0


@helper
def _row_group_base(row, shape, run, stride):  # type: ignore[no-untyped-def]
    """Grid offset of the first NDIM-1 coordinates of flat row ``row``."""
    base = np.int64(0)
    rem = row
    for a in range(shape.size - 2, -1, -1):
        i = rem % shape[a]
        rem //= shape[a]
        if run[a] != 0:
            base += (i // run[a]) * stride[a]
    return base


@helper
def _round(t, mode, u):  # type: ignore[no-untyped-def]
    if mode == 0:
        return np.rint(t)
    if mode == 1:  # C roundf: trunc(|t|) + (fraction >= 0.5), both exact in float32
        a = np.abs(t)
        f = np.trunc(a)
        r = f + np.float32(1.0) if a - f >= np.float32(0.5) else f
        return np.copysign(r, t)
    f = np.floor(t)
    return f + np.float32(1.0) if u < np.float64(t - f) else f


@helper
def _quantize_run(x, k0, k1, s, z, lo, hi, mode, out):  # type: ignore[no-untyped-def]
    """Codes of x[k0:k1] (one group): branch-free, so LLVM vectorizes it. NaN gives an
    arbitrary code here; the caller counts NaN and raises."""
    bad = 0
    # unsigned bounds: LLVM then knows no index is negative (numba wraps negative
    # indices), which is what lets it vectorize the loop
    if mode == 0:
        for k in range(np.uint64(k0), np.uint64(k1)):
            v = x[k]
            bad += v != v
            t = min(max(np.rint(v / s), lo), hi)       # clamp in float32, then the exact integer add
            out[k] = np.int32(t) + z
    else:  # C roundf: trunc(|t|) + (fraction >= 0.5), both exact in float32
        for k in range(np.uint64(k0), np.uint64(k1)):
            v = x[k]
            bad += v != v
            t = v / s
            a = np.abs(t)
            f = np.trunc(a)
            r = np.copysign(f + np.float32(1.0) if a - f >= np.float32(0.5) else f, t)
            out[k] = np.int32(min(max(r, lo), hi)) + z
    return bad


@helper
def _stochastic(t, u):  # type: ignore[no-untyped-def]
    f = np.floor(t)
    return f + np.float32(1.0) if u < np.float64(t - f) else f


@kernel(iterations=_rows_of)
def _quantize(x, scale, zp, has_zp, shape, run, stride, qmin, qmax, mode, u, out):  # type: ignore[no-untyped-def]
    n_inner = shape[shape.size - 1]
    r_last = run[run.size - 1]
    n_rows = np.int64(0)
    if n_inner > 0:
        n_rows = x.size // n_inner
    width = n_inner if r_last == 0 else r_last           # elements of a row sharing one scale
    bad = 0
    for prow in prange(n_rows):
        row = np.int64(prow)  # prange indices may be unsigned; uint64 // int64 is float64 in numba
        base = _row_group_base(row, shape, run, stride)
        for j0 in range(0, n_inner, width):
            g = base + (0 if r_last == 0 else j0 // r_last)
            s = scale[g]
            z = zp[g] if has_zp else np.int32(0)
            lo = np.float32(qmin - z)
            hi = np.float32(qmax - z)
            k0 = row * n_inner + j0
            k1 = k0 + min(width, n_inner - j0)
            if mode != 2:
                bad += _quantize_run(x, k0, k1, s, z, lo, hi, mode, out)
                continue
            for k in range(k0, k1):
                v = x[k]
                bad += v != v
                t = min(max(_stochastic(v / s, u[k]), lo), hi)
                out[k] = np.int32(t) + z
    return bad


@kernel(iterations=_rows_of)
def _dequantize(q, scale, zp, has_zp, shape, run, stride, qmin, qmax, out):  # type: ignore[no-untyped-def]
    """float32(q - zp) * scale; returns the number of codes outside [qmin, qmax]."""
    n_inner = shape[shape.size - 1]
    r_last = run[run.size - 1]
    n_rows = np.int64(0)
    if n_inner > 0:
        n_rows = q.size // n_inner
    width = n_inner if r_last == 0 else r_last
    bad = 0
    for prow in prange(n_rows):
        row = np.int64(prow)  # prange indices may be unsigned; uint64 // int64 is float64 in numba
        base = _row_group_base(row, shape, run, stride)
        for j0 in range(0, n_inner, width):
            g = base + (0 if r_last == 0 else j0 // r_last)
            s = scale[g]
            z = zp[g] if has_zp else np.int32(0)
            k0 = row * n_inner + j0
            for k in range(np.uint64(k0), np.uint64(k0 + min(width, n_inner - j0))):
                c = np.int64(q[k])
                bad += (c < qmin) | (c > qmax)
                out[k] = np.float32(np.int32(c) - z) * s
    return bad


@kernel(iterations=lambda xb, shape, run, stride, chunks, *a: chunks)
def _minmax(xb, shape, run, stride, chunks, exclusive, lo, hi):  # type: ignore[no-untyped-def]
    """Per-group min and max (starting from 0) into ``lo``/``hi`` of shape (chunks, groups),
    as order-preserving int32 keys of the float bits (:func:`_float_keys`): integer
    min/max vectorize, float ones do not without fast-math.

    Rows are split into ``chunks``; each chunk reduces into its own buffer row unless
    every group lies within one row (``exclusive``), when all write buffer row 0.
    Returns the number of rows holding NaN or inf.
    """
    n_inner = shape[shape.size - 1]
    r_last = run[run.size - 1]
    n_rows = np.int64(0)
    if n_inner > 0:
        n_rows = xb.size // n_inner
    per = (n_rows + chunks - 1) // chunks
    bad = 0
    for pc in prange(chunks):
        c = np.int64(pc)
        buf = 0 if exclusive else c
        for row in range(c * per, min(n_rows, (c + 1) * per)):
            base = _row_group_base(row, shape, run, stride)
            width = n_inner if r_last == 0 else r_last
            top = np.int32(0)
            for j0 in range(0, n_inner, width):
                g = base + (0 if r_last == 0 else j0 // r_last)
                mn = lo[buf, g]
                mx = hi[buf, g]
                seg = xb[row * n_inner + j0:row * n_inner + min(j0 + width, n_inner)]
                for k in range(seg.size):
                    b = np.int32(seg[k])
                    top = max(top, b & np.int32(0x7FFFFFFF))
                    key = b ^ ((b >> 31) & np.int32(0x7FFFFFFF))
                    mn = min(mn, key)
                    mx = max(mx, key)
                lo[buf, g] = mn
                hi[buf, g] = mx
            bad += top > np.int32(0x7F7FFFFF)
    return bad


def _float_keys(keys: np.ndarray) -> np.ndarray:
    """float32 values of int32 keys ``b ^ ((b >> 31) & 0x7FFFFFFF)`` (the map is its own inverse)."""
    return (keys ^ ((keys >> 31) & np.int32(0x7FFFFFFF))).view(np.float32)


def _zp(params: QuantParams) -> tuple[np.ndarray, bool]:
    if params.zero_point is None:
        return np.zeros(1, np.int32), False
    return params.zero_point.reshape(-1), True


def quantize_affine(x: np.ndarray, params: QuantParams, *, rounding: str = "half_even",
                    rng: np.random.Generator | None = None, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.mapping.quantize_affine` on prepared arguments
    (``refquant.prepare.affine``: NaN-free float32 ``x``, consistent params with contiguous
    grids fitting it, ``out`` of ``params.code_dtype``)."""
    shape, run, stride = _layout(params.granularity, x.shape)
    mode = ROUNDINGS.index(rounding)
    # the reference's draw: float64, C order
    u = rng.random(x.shape).reshape(-1) if mode == 2 else np.zeros(1, np.float64)
    zp, has_zp = _zp(params)
    _quantize(x.reshape(-1), params.scale.reshape(-1), zp, has_zp, shape, run, stride, params.qmin, params.qmax,
              mode, u, out.reshape(-1))
    return out


def dequantize_affine(q: np.ndarray, params: QuantParams, *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.mapping.dequantize_affine` on prepared arguments (codes
    within the params' range, C-contiguous; ``out`` float32)."""
    shape, run, stride = _layout(params.granularity, q.shape)
    zp, has_zp = _zp(params)
    _dequantize(q.reshape(-1), params.scale.reshape(-1), zp, has_zp, shape, run, stride, params.qmin, params.qmax,
                out.reshape(-1))
    return out


def quantize_row_groups(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, group_size: int, qmax: int,
                        out: np.ndarray) -> np.ndarray:
    """Half-even codes ``clamp(round(x / scale) + zero_point, 0, qmax)`` of every group of
    ``group_size`` consecutive elements of each row (the last group may be shorter): the
    weight quantizers' per-group round-to-nearest (:mod:`accel.numba.groupwise`).

    ``x`` (rows, cols) float32 or float64, C-contiguous; ``scale`` (rows, n_groups) of
    ``x``'s dtype (the division runs in it); ``zero_point`` int32 (rows, n_groups) in
    ``[0, qmax]``; ``out`` (rows, cols) of an integer dtype holding ``[0, qmax]``."""
    shape, run, stride = _layout(PerGroup(group_size), x.shape)
    _quantize(x.reshape(-1), scale.reshape(-1), zero_point.reshape(-1), True, shape, run, stride, 0, qmax, 0,
              np.zeros(1, np.float64), out.reshape(-1))
    return out


def dequantize_row_groups(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, group_size: int, qmax: int,
                          out: np.ndarray) -> np.ndarray:
    """``float32(q - zero_point) * scale`` of the row groups of :func:`quantize_row_groups`,
    the product in ``scale``'s dtype, stored in ``out``'s (rows, cols)."""
    shape, run, stride = _layout(PerGroup(group_size), q.shape)
    _dequantize(q.reshape(-1), scale.reshape(-1), zero_point.reshape(-1), True, shape, run, stride, 0, qmax,
                out.reshape(-1))
    return out


def choose_qparams(x: np.ndarray, bits: int, symmetric: bool, *, signed: bool, restricted_range: bool | None,
                   granularity: Granularity, clip: tuple[float, float] | float | None) -> QuantParams:
    """Backend op :func:`refquant.mapping.choose_qparams` on prepared arguments (finite
    float32 ``x``, the granularity resolved and fitting it, clip checked); the ranges are
    reduced here and turned into params by :func:`refquant.mapping.qparams_from_range`."""
    gran = granularity
    arr = x
    shape, run, stride = _layout(gran, arr.shape)
    _, grid = checked_geometry(gran, arr.shape)
    exclusive = bool(np.all((shape[:-1] == 1) | (run[:-1] == 1)))
    n_rows = arr.size // arr.shape[-1] if arr.ndim and arr.shape[-1] else 0
    chunks = max(1, min(get_num_threads() * 4, n_rows))
    n_groups = math.prod(grid)
    lo = np.zeros((1 if exclusive else chunks, n_groups), np.int32)    # key 0 is +0.0, the initial value
    hi = np.zeros_like(lo)
    _minmax(arr.reshape(-1).view(np.uint32), shape, run, stride, chunks, exclusive, lo, hi)
    lo, hi = _float_keys(lo.min(axis=0)).reshape(grid), _float_keys(hi.max(axis=0)).reshape(grid)
    if isinstance(clip, tuple):
        lo, hi = np.full(grid, clip[0], np.float32), np.full(grid, clip[1], np.float32)
    elif clip is not None:
        ratio = np.float32(clip)
        lo, hi = lo * ratio, hi * ratio
    return qparams_from_range(lo, hi, bits, symmetric, signed=signed, restricted_range=restricted_range,
                              granularity=gran)
