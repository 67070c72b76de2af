"""Affine quantize / dequantize (every granularity) as Numba kernels.

Same arithmetic as :mod:`refquant.mapping`: codes are ``clamp(round(x / scale) + zp,
qmin, qmax)`` with a true float32 division and the clamp done in float32 before the
integer add; dequantization is ``float32(q - zp) * scale``. The scale grid is never
expanded to the input's shape: each element finds its group from per-axis run lengths
(a granularity's ``block_size``), with the array padded to :data:`NDIM` axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from accel.numba._jit import helper, kernel
from refquant._validate import as_int_array, check_choice
from refquant.errors import UnsupportedError
from refquant.mapping import QuantParams

NDIM = 6  # arrays up to this many dimensions (axes beyond it: UnsupportedError)
ROUNDINGS = ("half_even", "half_away", "stochastic")


def _geometry(params: QuantParams, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shape, run, grid stride) per axis, left-padded to NDIM; run 0 = the whole axis."""
    if len(shape) > NDIM:
        raise UnsupportedError(f"the numba backend handles arrays of up to {NDIM} dimensions, got {len(shape)}")
    gran = params.granularity
    grid = gran.grid_shape(shape)
    if np.shape(params.scale) != grid:
        raise ValueError(f"params do not fit an array of shape {shape}: scale has shape {np.shape(params.scale)}, "
                         f"{gran!r} needs {grid}")
    runs = [0 if b is None else b for b in gran.block_size(shape)]
    strides = np.ones(len(grid), np.int64)
    for a in range(len(grid) - 2, -1, -1):
        strides[a] = strides[a + 1] * grid[a + 1]
    pad = NDIM - len(shape)
    return (np.array((1,) * pad + tuple(shape), np.int64), np.array((0,) * pad + tuple(runs), np.int64),
            np.concatenate([np.zeros(pad, np.int64), strides]))


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


@kernel
def _quantize(x, scale, zp, has_zp, shape, run, stride, qmin, qmax, mode, u, out):  # type: ignore[no-untyped-def]
    n_inner = shape[shape.size - 1]
    r_last = run[run.size - 1]
    n_rows = np.int64(0)
    if n_inner > 0:
        n_rows = x.size // n_inner
    bad = 0
    for prow in prange(n_rows):
        row = np.int64(prow)  # prange indices may be unsigned; uint64 // int64 is float64 in numba
        base = _row_group_base(row, shape, run, stride)
        for j in range(n_inner):
            k = row * n_inner + j
            g = base
            if r_last != 0:
                g += j // r_last
            v = x[k]
            if np.isnan(v):
                bad += 1
                out[k] = 0
                continue
            uk = 0.0
            if mode == 2:
                uk = u[k]
            t = _round(v / scale[g], mode, uk)
            z = np.int32(0)
            if has_zp:
                z = zp[g]
            lo = np.float32(qmin - z)
            hi = np.float32(qmax - z)
            if t < lo:
                t = lo
            elif t > hi:
                t = hi
            out[k] = np.int32(t) + z
    return bad


@kernel
def _dequantize(q, scale, zp, has_zp, shape, run, stride, out):  # type: ignore[no-untyped-def]
    n_inner = shape[shape.size - 1]
    r_last = run[run.size - 1]
    n_rows = np.int64(0)
    if n_inner > 0:
        n_rows = q.size // n_inner
    for prow in prange(n_rows):
        row = np.int64(prow)  # prange indices may be unsigned; uint64 // int64 is float64 in numba
        base = _row_group_base(row, shape, run, stride)
        for j in range(n_inner):
            k = row * n_inner + j
            g = base
            if r_last != 0:
                g += j // r_last
            c = np.int32(q[k])
            if has_zp:
                c -= zp[g]
            out[k] = np.float32(c) * scale[g]


def _check_params(params: Any) -> QuantParams:
    if not isinstance(params, QuantParams):
        raise TypeError(f"params must be a QuantParams (from choose_qparams), got {type(params).__name__}")
    return params


def _zp(params: QuantParams) -> tuple[np.ndarray, bool]:
    if params.zero_point is None:
        return np.zeros(1, np.int32), False
    return np.ascontiguousarray(params.zero_point, np.int32).reshape(-1), True


def quantize_affine(x: Any, params: QuantParams, *, rounding: str = "half_even",
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Backend op: same contract as :func:`refquant.mapping.quantize_affine`."""
    from refquant._validate import as_float_array

    params = _check_params(params)
    check_choice("rounding", rounding, ROUNDINGS)
    arr = as_float_array("x", x, dtypes=(np.float16, np.float32, np.float64)).astype(np.float32, copy=False)
    shape, run, stride = _geometry(params, arr.shape)
    mode = ROUNDINGS.index(rounding)
    if mode == 2:
        if not isinstance(rng, np.random.Generator):
            raise ValueError("rounding='stochastic' needs rng (a numpy.random.Generator)")
        u = rng.random(arr.shape).reshape(-1)  # the reference's draw: float64, C order
    else:
        u = np.zeros(1, np.float64)
    zp, has_zp = _zp(params)
    out = np.empty(arr.size, np.int32)
    bad = _quantize(np.ascontiguousarray(arr).reshape(-1), np.ascontiguousarray(params.scale, np.float32).reshape(-1),
                    zp, has_zp, shape, run, stride, params.qmin, params.qmax, mode, u, out)
    if bad:
        raise ValueError("x contains NaN, which affine quantization does not define")
    return out.astype(params.code_dtype).reshape(arr.shape)


def dequantize_affine(q: Any, params: QuantParams) -> np.ndarray:
    """Backend op: same contract as :func:`refquant.mapping.dequantize_affine`."""
    params = _check_params(params)
    codes = as_int_array("q", q)
    shape, run, stride = _geometry(params, codes.shape)
    if codes.size and (codes.min() < params.qmin or codes.max() > params.qmax):
        bad = codes[(codes < params.qmin) | (codes > params.qmax)].flat[0]
        raise ValueError(f"q contains code {int(bad)}, outside the code range [{params.qmin}, {params.qmax}]")
    zp, has_zp = _zp(params)
    out = np.empty(codes.size, np.float32)
    _dequantize(np.ascontiguousarray(codes).reshape(-1), np.ascontiguousarray(params.scale, np.float32).reshape(-1),
                zp, has_zp, shape, run, stride, out)
    return out.reshape(codes.shape)
