"""Microscaling ops (OCP MX v1.0, NVIDIA NVFP4): launch code for ``src/microscaling.cu``.

Arguments arrive prepared by the dispatcher (``refquant.prepare.microscaling``): float32
input of whole blocks, uint8 scales and codes of matching shapes, the format's name. The
element formats' fields go to the kernels as a small int32 table (:func:`accel.cupy.floats.format_fields`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.cupy._launch import f32, i32, i64, raise_reference_error, stride_grid
from accel.cupy.floats import format_fields
from refquant.dtypes.floatspec import get_float_spec
from refquant.formats.mx import get_mx_format

__all__ = ["mx_quantize", "mx_dequantize", "nvfp4_quantize", "nvfp4_dequantize"]

_E4M3 = format_fields(get_float_spec("float8_e4m3fn"), True)
_E2M1 = format_fields(get_float_spec("float4_e2m1fn"), True)


def _element(dev: Any, fmt: str) -> tuple[Any, int, int]:
    """The MX format's element table (saturating), emax_elem and whether it is MXINT8."""
    f = get_mx_format(fmt)
    fields = format_fields(f.spec, True) if f.spec is not None else np.zeros(11, np.int32)
    return dev.constant(f"float_format:{f.name}", fields), f.emax_elem, int(f.spec is None)


def mx_quantize(dev: Any, x: Any, fmt: str) -> tuple[Any, Any]:
    """Backend op: same contract as :func:`refquant.formats.mx.mx_quantize` (bit-exact)."""
    table, emax_elem, is_int8 = _element(dev, fmt)
    flat = dev.contiguous(x, np.float32).reshape(-1)
    nb = flat.size // 32
    scales, codes = dev.empty(nb, np.uint8), dev.empty(flat.size, np.uint8)
    grid, block = stride_grid(dev, flat.size)   # one lane per element, a warp per MX block
    dev.launch("microscaling", "mx_quantize", grid, block,
               [flat.view(np.uint32), i64(flat.size), table, i32(emax_elem), i32(is_int8), scales, codes])
    return scales.reshape(tuple(x.shape[:-1]) + (x.shape[-1] // 32,)), codes.reshape(x.shape)


def mx_dequantize(dev: Any, scales: Any, codes: Any, fmt: str) -> Any:
    """Backend op: same contract as :func:`refquant.formats.mx.mx_dequantize` (bit-exact)."""
    table, _, is_int8 = _element(dev, fmt)
    c = dev.contiguous(codes, np.uint8).reshape(-1)
    out, bad = dev.empty(c.size, np.float32), dev.zeros(1, np.int32)
    grid, block = stride_grid(dev, c.size)
    dev.launch("microscaling", "mx_dequantize", grid, block,
               [dev.contiguous(scales, np.uint8).reshape(-1), c, i64(c.size), table, i32(is_int8), out, bad])
    if int(bad[0]):
        raise_reference_error(dev, "mx_dequantize", scales, codes, fmt)
    return out.reshape(codes.shape)


def nvfp4_quantize(dev: Any, x: Any, *, global_amax: float | None = None) -> tuple[Any, Any, np.float32]:
    """Backend op: same contract as :func:`refquant.formats.nvfp4.nvfp4_quantize` (bit-exact);
    ``global_amax=None``: the tensor's max |x| by a device reduction."""
    flat = dev.contiguous(x, np.float32).reshape(-1)
    nb = flat.size // 16
    if global_amax is None:
        amax = dev.zeros(1, np.uint32)
        grid, block = stride_grid(dev, flat.size)
        dev.launch("microscaling", "abs_max_bits", grid, block, [flat.view(np.uint32), i64(flat.size), amax])
    else:
        amax = dev.contiguous(np.array([global_amax], np.float32).view(np.uint32), np.uint32)
    packed, scales, g = dev.empty(flat.size // 2, np.uint8), dev.empty(nb, np.uint8), dev.empty(1, np.float32)
    grid, block = stride_grid(dev, flat.size)   # one lane per element, 16 per NVFP4 block
    dev.launch("microscaling", "nvfp4_quantize", grid, block,
               [flat.view(np.uint32), i64(flat.size), amax, dev.constant("float_format:e4m3", _E4M3), dev.constant("float_format:e2m1", _E2M1),
                packed, scales, g])
    lead = tuple(x.shape[:-1])
    return (packed.reshape(lead + (x.shape[-1] // 2,)), scales.reshape(lead + (x.shape[-1] // 16,)),
            np.float32(dev.to_numpy(g)[0]))


def nvfp4_dequantize(dev: Any, packed: Any, block_scales: Any, global_scale: Any) -> Any:
    """Backend op: same contract as :func:`refquant.formats.nvfp4.nvfp4_dequantize` (bit-exact)."""
    p = dev.contiguous(packed, np.uint8).reshape(-1)
    out = dev.empty(2 * p.size, np.float32)
    grid, block = stride_grid(dev, p.size)
    dev.launch("microscaling", "nvfp4_dequantize", grid, block,
               [p, dev.contiguous(block_scales, np.uint8).reshape(-1), i64(p.size), f32(global_scale),
                dev.constant("float_format:e4m3", _E4M3), dev.constant("float_format:e2m1", _E2M1), out])
    return out.reshape(tuple(packed.shape[:-1]) + (2 * packed.shape[-1],))
