"""choose_qparams / quantize_affine / dequantize_affine: launch code for ``src/affine.cu``.

The scale grid is never expanded to the input's shape: each element finds its group
from the granularity's per-axis run lengths (``geo``, the input left-padded to
:data:`NDIM` axes). choose_qparams reduces each group's range on the device and hands
the small grid to the reference's :func:`~refquant.mapping.qparams_from_range`, so the
scale / zero-point arithmetic exists once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.cupy._launch import i32, i64, raise_reference_error, stride_grid
from refquant.errors import UnsupportedError
from refquant.granularity import Granularity
from refquant.mapping import QuantParams, qparams_from_range

__all__ = ["NDIM", "choose_qparams", "quantize_affine", "dequantize_affine"]

NDIM = 6   # arrays up to this many dimensions (more: UnsupportedError)
_ROUNDINGS = ("half_even", "half_away", "stochastic")


def _geo(dev: Any, gran: Granularity, shape: tuple[int, ...]) -> Any:
    """shape, run (0 = whole axis) and grid stride per axis, left-padded to NDIM: int64 (18,)."""
    if len(shape) > NDIM:
        raise UnsupportedError(f"the CUDA backends handle arrays of up to {NDIM} dimensions, got {len(shape)}")
    grid = gran.grid_shape(shape)
    runs = [0 if b is None else b for b in gran.block_size(shape)]
    strides = np.cumprod((1,) + tuple(grid[:0:-1]))[::-1] if grid else np.zeros(0, np.int64)
    pad = NDIM - len(shape)
    geo = np.concatenate([np.ones(pad, np.int64), np.asarray(shape, np.int64), np.zeros(pad, np.int64),
                          np.asarray(runs, np.int64), np.zeros(pad, np.int64), np.asarray(strides, np.int64)])
    return dev.contiguous(geo, np.int64)


def _float32(dev: Any, x: Any) -> Any:
    with np.errstate(over="ignore"):
        return dev.contiguous(x, np.float32).reshape(-1)


def _zero_points(dev: Any, params: QuantParams) -> tuple[Any, np.int32]:
    if params.zero_point is None:
        return dev.zeros(1, np.int32), i32(0)
    return dev.contiguous(params.zero_point, np.int32).reshape(-1), i32(1)


def choose_qparams(dev: Any, x: Any, bits: int = 8, symmetric: bool = True, *, signed: bool = True,
                   restricted_range: bool | None = None, granularity: Granularity | str | None = None,
                   axis: int | None = None, group_size: int | None = None,
                   clip: tuple[float, float] | float | None = None) -> QuantParams:
    """Backend op: same contract as :func:`refquant.mapping.choose_qparams`, on prepared
    arguments (``refquant.prepare.affine``: finite float32 ``x``, ``granularity`` resolved
    and fitting ``x``, ``clip`` checked; ``axis`` / ``group_size`` already folded in)."""
    gran = granularity
    geo = _geo(dev, gran, tuple(x.shape))
    grid = gran.grid_shape(tuple(x.shape))
    n_groups = int(np.prod(grid, dtype=np.int64))
    flat = _float32(dev, x)
    lo, hi, bad = dev.zeros(max(n_groups, 1), np.int32), dev.zeros(max(n_groups, 1), np.int32), dev.zeros(1, np.int32)
    g, b = stride_grid(dev, flat.size)
    dev.launch("affine", "group_minmax", g, b, [flat.view(np.int32), i64(flat.size), geo, lo, hi, bad])
    if int(bad[0]):
        raise_reference_error(dev, "choose_qparams", x, bits, symmetric, granularity=gran)
    keys = [dev.to_numpy(k)[:n_groups] for k in (lo, hi)]
    lo_f, hi_f = [(k ^ ((k >> 31) & np.int32(0x7FFFFFFF))).view(np.float32).reshape(grid) for k in keys]
    if isinstance(clip, tuple):
        lo_f, hi_f = np.full(grid, clip[0], np.float32), np.full(grid, clip[1], np.float32)
    elif clip is not None:
        ratio = np.float32(clip)
        lo_f, hi_f = lo_f * ratio, hi_f * ratio
    return qparams_from_range(lo_f, hi_f, bits, symmetric, signed=signed, restricted_range=restricted_range,
                              granularity=gran)


def quantize_affine(dev: Any, x: Any, params: QuantParams, *, rounding: str = "half_even",
                    rng: np.random.Generator | None = None) -> Any:
    """Backend op: same contract as :func:`refquant.mapping.quantize_affine`."""
    if not isinstance(params, QuantParams) or rounding not in _ROUNDINGS or np.dtype(x.dtype).kind != "f" \
            or (rounding == "stochastic" and not isinstance(rng, np.random.Generator)) \
            or tuple(np.shape(params.scale)) != params.granularity.grid_shape(tuple(x.shape)):
        raise_reference_error(dev, "quantize_affine", x, params, rounding=rounding, rng=rng)
    geo = _geo(dev, params.granularity, tuple(x.shape))
    flat = _float32(dev, x)
    # the reference's draw: float64 in C order, one per element
    u = dev.contiguous(rng.random(tuple(x.shape)).reshape(-1), np.float64) if rounding == "stochastic" \
        else dev.zeros(1, np.float64)
    zp, has_zp = _zero_points(dev, params)
    out, bad = dev.empty(flat.size, np.int32), dev.zeros(1, np.int32)
    g, b = stride_grid(dev, flat.size)
    dev.launch("affine", "quantize_affine", g, b,
               [flat, out, i64(flat.size), dev.contiguous(params.scale, np.float32).reshape(-1), zp, has_zp, geo,
                i32(params.qmin), i32(params.qmax), i32(_ROUNDINGS.index(rounding)), u, bad])
    if int(bad[0]):
        raise_reference_error(dev, "quantize_affine", x, params, rounding=rounding)
    return out.astype(params.code_dtype).reshape(x.shape)


def dequantize_affine(dev: Any, q: Any, params: QuantParams) -> Any:
    """Backend op: same contract as :func:`refquant.mapping.dequantize_affine`."""
    if not isinstance(params, QuantParams) or np.dtype(q.dtype).kind not in "iu" \
            or tuple(np.shape(params.scale)) != params.granularity.grid_shape(tuple(q.shape)):
        raise_reference_error(dev, "dequantize_affine", q, params)
    geo = _geo(dev, params.granularity, tuple(q.shape))
    codes = dev.contiguous(q, np.int64).reshape(-1)
    zp, has_zp = _zero_points(dev, params)
    out, bad = dev.empty(codes.size, np.float32), dev.zeros(1, np.int32)
    g, b = stride_grid(dev, codes.size)
    dev.launch("affine", "dequantize_affine", g, b,
               [codes, out, i64(codes.size), dev.contiguous(params.scale, np.float32).reshape(-1), zp, has_zp, geo,
                i64(params.qmin), i64(params.qmax), bad])
    if int(bad[0]):
        raise_reference_error(dev, "dequantize_affine", q, params)
    return out.reshape(q.shape)
