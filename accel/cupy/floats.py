"""encode_float / decode_float: launch code for ``src/floats.cu``."""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.cupy._launch import i32, i64, raise_reference_error, stride_grid
from refquant.dtypes.floatspec import FloatSpec, get_float_spec

__all__ = ["encode_float", "decode_float", "format_fields"]


def _over_code(spec: FloatSpec, saturate: bool) -> int:
    if saturate or spec.nan == "none":
        return spec.max_code
    return spec.inf_code if spec.has_inf else spec.nan_code


def format_fields(spec: FloatSpec, saturate: bool) -> np.ndarray:
    """int32 (11,): the fields of ``FloatFormat`` (``src/float_codes.cuh``) for ``spec``, in order."""
    return np.array([spec.mant_bits, spec.bias, spec.bits, spec.exp_bits, spec.min_exp, spec.max_code,
                     _over_code(spec, saturate), spec.encode_nan == "payload", spec.nan_code,
                     {"ieee": 0, "fn": 1, "none": 2}[spec.nan], spec.decode_nan == "payload"], np.int32)


def encode_float(dev: Any, x: Any, fmt: str, *, saturate: bool = False) -> Any:
    """Backend op: same contract as :func:`refquant.dtypes.floatspec.encode_float`."""
    spec = get_float_spec(fmt)
    if np.dtype(x.dtype) == np.float64:
        # Rounded once: to odd in float32 on the device, then the float32 kernel (see floats.cu).
        u64 = dev.contiguous(x, np.float64).reshape(-1).view(np.uint64)
        u = dev.empty(u64.size, np.uint32)
        grid, block = stride_grid(dev, u64.size)
        dev.launch("floats", "float64_to_float32_odd", grid, block, [u64, u, i64(u64.size)])
    else:
        u = dev.contiguous(x, np.float32).reshape(-1).view(np.uint32)
    out = dev.empty(u.size, spec.storage_dtype)
    kernel = "encode_float_u16" if spec.bits > 8 else "encode_float_u8"
    grid, block = stride_grid(dev, u.size)
    dev.launch("floats", kernel, grid, block,
               [u, out, i64(u.size), i32(spec.mant_bits), i32(spec.bias), i32(spec.bits), i32(spec.exp_bits),
                i32(spec.min_exp), i32(spec.max_code), i32(_over_code(spec, bool(saturate))),
                i32(spec.encode_nan == "payload"), i32(spec.nan_code)])
    return out.reshape(x.shape)


def decode_float(dev: Any, bits: Any, fmt: str) -> Any:
    """Backend op: same contract as :func:`refquant.dtypes.floatspec.decode_float`."""
    spec = get_float_spec(fmt)
    if np.dtype(bits.dtype) != spec.storage_dtype:
        raise_reference_error(dev, "decode_float", bits, fmt)
    c = dev.contiguous(bits, spec.storage_dtype).reshape(-1)
    out = dev.empty(c.size, np.uint32)
    bad = dev.zeros(1, np.int32)
    kernel = "decode_float_u16" if spec.bits > 8 else "decode_float_u8"
    grid, block = stride_grid(dev, c.size)
    dev.launch("floats", kernel, grid, block,
               [c, out, i64(c.size), i32(spec.mant_bits), i32(spec.bias), i32(spec.bits), i32(spec.exp_bits),
                i32(spec.min_exp), i32({"ieee": 0, "fn": 1, "none": 2}[spec.nan]), i32(spec.decode_nan == "payload"),
                bad])
    if int(bad[0]):
        raise_reference_error(dev, "decode_float", bits, fmt)
    return out.view(np.float32).reshape(bits.shape)
