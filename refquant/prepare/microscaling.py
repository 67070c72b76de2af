"""Preparation of the microscaling ops (OCP MX v1.0, NVIDIA NVFP4): the argument rules of
:mod:`refquant.formats.mx` and :mod:`refquant.formats.nvfp4`, called from there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_float_array, check_float
from refquant.dtypes.floatspec import check_codes
from refquant.formats.mx import MXFormat, _blocks, check_mx_blocks, get_mx_format
from refquant.formats.nvfp4 import check_nvfp4_input, check_nvfp4_packed
from refquant.prepare import Prepared, output, outputs

__all__ = ["prepare_mx_quantize", "prepare_mx_dequantize", "prepare_nvfp4_quantize", "prepare_nvfp4_dequantize"]


def _c(a: np.ndarray) -> np.ndarray:
    return np.require(a, requirements="C")


def prepare_mx_quantize(x: Any, fmt: str | MXFormat, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.formats.mx.mx_quantize`: float32 rows of whole 32-element blocks;
    results scales uint8 (..., k), codes uint8 (..., 32k)."""
    f = get_mx_format(fmt)
    arr = as_float_array("x", x)
    with np.errstate(over="ignore", invalid="ignore"):   # the reference's float32 view of the input
        arr = arr.astype(np.float32, copy=False)
    scales_shape = _blocks(f, arr).shape[:-1]
    return Prepared((_c(arr), f.name), {}, outputs(out, ((scales_shape, np.uint8), (arr.shape, np.uint8)), (x,)))


def prepare_mx_dequantize(scales: Any, codes: Any, fmt: str | MXFormat, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.formats.mx.mx_dequantize`: one E8M0 scale per block of codes."""
    f = get_mx_format(fmt)
    check_mx_blocks(scales, codes, f)
    if f.spec is not None:
        check_codes(codes, f.spec)          # decode_float's rule, which mx_dequantize applies
    scales, codes = _c(scales), _c(codes)
    return Prepared((scales, codes, f.name), {}, output(out, codes.shape, np.float32, (scales, codes)))


def prepare_nvfp4_quantize(x: Any, *, global_amax: float | None = None, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.formats.nvfp4.nvfp4_quantize`: finite float32 of whole 16-element blocks;
    results packed uint8 (..., 8k), block scales uint8 (..., k) (``out`` entry 2, the scalar
    global scale, is None)."""
    arr, blocks = check_nvfp4_input(x)
    amax = None if global_amax is None else check_float("global_amax", global_amax, min=0.0)
    specs = ((arr.shape[:-1] + (arr.shape[-1] // 2,), np.uint8), (blocks.shape[:-1], np.uint8), None)
    return Prepared((_c(arr),), {"global_amax": amax}, outputs(out, specs, (x,)))


def prepare_nvfp4_dequantize(packed: Any, block_scales: Any, global_scale: Any, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.formats.nvfp4.nvfp4_dequantize`: two nibbles a byte, one scale per 16;
    the result is float32 (..., 16k)."""
    q, _, g = check_nvfp4_packed(packed, block_scales, global_scale)     # q: the codes, (..., 16k)
    return Prepared((_c(packed), _c(block_scales), g), {}, output(out, q.shape, np.float32, (packed, block_scales)))
