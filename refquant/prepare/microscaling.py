"""Preparation of the microscaling ops (OCP MX v1.0, NVIDIA NVFP4). Same rules as
:mod:`refquant.formats.mx` and :mod:`refquant.formats.nvfp4`: float input of whole blocks
along the last axis, uint8 scales/codes whose shapes agree block for block.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_float_array, check_float
from refquant.formats.mx import MXFormat, _blocks, check_uint8, get_mx_format
from refquant.formats.nvfp4 import NVFP4_BLOCK
from refquant.formats.nvfp4 import _blocks as _nvfp4_blocks
from refquant.prepare import Prepared

__all__ = ["prepare_mx_quantize", "prepare_mx_dequantize", "prepare_nvfp4_quantize", "prepare_nvfp4_dequantize"]


def _c(a: np.ndarray) -> np.ndarray:
    return np.require(a, requirements="C")


def prepare_mx_quantize(x: Any, fmt: str | MXFormat) -> Prepared:
    """Arguments of :func:`refquant.formats.mx.mx_quantize`: float32 rows of whole 32-element blocks."""
    f = get_mx_format(fmt)
    arr = as_float_array("x", x)
    with np.errstate(over="ignore", invalid="ignore"):   # the reference's float32 view of the input
        arr = arr.astype(np.float32, copy=False)
    _blocks(f, arr)
    return Prepared((_c(arr), f.name))


def prepare_mx_dequantize(scales: Any, codes: Any, fmt: str | MXFormat) -> Prepared:
    """Arguments of :func:`refquant.formats.mx.mx_dequantize`: one E8M0 scale per block of codes."""
    f = get_mx_format(fmt)
    check_uint8(scales=scales, codes=codes)
    blocks = _blocks(f, codes)
    if scales.shape != blocks.shape[:-1]:
        raise ValueError(f"scales has shape {scales.shape}, but codes of shape {codes.shape} need "
                         f"{blocks.shape[:-1]} (one per {f.block_size} elements)")
    return Prepared((_c(scales), _c(codes), f.name))


def prepare_nvfp4_quantize(x: Any, *, global_amax: float | None = None) -> Prepared:
    """Arguments of :func:`refquant.formats.nvfp4.nvfp4_quantize`: finite float32 of whole 16-element blocks."""
    arr = as_float_array("x", x, allow_nan=False)
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError("x contains values that overflow float32, which NVFP4 does not define")
    _nvfp4_blocks("x", arr, NVFP4_BLOCK)
    amax = None if global_amax is None else check_float("global_amax", global_amax, min=0.0)
    return Prepared((_c(arr),), {"global_amax": amax})


def prepare_nvfp4_dequantize(packed: Any, block_scales: Any, global_scale: Any) -> Prepared:
    """Arguments of :func:`refquant.formats.nvfp4.nvfp4_dequantize`: two nibbles a byte, one scale per 16."""
    check_uint8(packed=packed, block_scales=block_scales)
    g = np.float32(check_float("global_scale", global_scale))
    n_blocks = packed.shape[:-1] + ((packed.shape[-1] * 2) // NVFP4_BLOCK,) if packed.ndim else ()
    if packed.ndim == 0 or (packed.shape[-1] * 2) % NVFP4_BLOCK or block_scales.shape != n_blocks:
        raise ValueError(f"packed of shape {packed.shape} needs block_scales of shape {n_blocks} "
                         f"(whole blocks of {NVFP4_BLOCK} elements, one scale each), got {block_scales.shape}")
    return Prepared((_c(packed), _c(block_scales), g))

