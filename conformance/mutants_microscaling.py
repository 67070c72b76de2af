"""Mutants for the microscaling formats (issue 17): OCP MX and NVIDIA NVFP4.

Each is a mistake real implementations make: a shared exponent one binade off (``ceil``
for ``floor``, or forgetting that ``emax_elem`` is the top binade's exponent), an E8M0
NaN scale decoded as the power of two 2**128, NaN elements skipped by a NaN-ignoring
max (``nanmax``, C's ``if (amax < fabsf(v))``) so the block gets a finite scale, and FP4
pairs packed with the first element in the high nibble (bitsandbytes' order).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from conformance.mutants import MutantBackend
from refquant.dtypes.e8m0 import E8M0_NAN
from refquant.formats import mx
from refquant.formats.nvfp4 import nvfp4_quantize as _nvfp4_quantize

__all__ = ["MUTANTS"]


def mx_scale_exponent_off_by_one() -> MutantBackend:
    """X = 2**(floor(log2 amax) - emax_elem + 1): every element lands one binade low."""

    def mx_quantize(x: Any, fmt: str) -> tuple[np.ndarray, np.ndarray]:
        f = mx.get_mx_format(fmt)
        arr = np.asarray(x, dtype=np.float32)
        blocks = arr.reshape(arr.shape[:-1] + (-1, f.block_size))
        with np.errstate(invalid="ignore"):
            amax = np.max(np.abs(blocks), axis=-1)
        scales = mx.shared_exponent(amax, f)
        scales = np.where((scales != E8M0_NAN) & (scales < 254), scales + np.uint8(1), scales).astype(np.uint8)
        nan = scales == E8M0_NAN
        v = np.ldexp(np.where(nan[..., None], np.float32(0), blocks), -(scales.astype(np.int32) - 127)[..., None])
        codes = np.where(nan[..., None], np.uint8(0), mx._encode_elements(f, v.astype(np.float32)))
        return scales, codes.reshape(arr.shape)

    return MutantBackend("mx_scale_exponent_off_by_one", {"mx_quantize": mx_quantize})


def e8m0_nan_as_power_of_two() -> MutantBackend:
    """Scale byte 0xFF decoded as 2**128 (= inf in float32) instead of NaN."""

    def mx_dequantize(scales: Any, codes: Any, fmt: str) -> np.ndarray:
        f = mx.get_mx_format(fmt)
        values = mx._decode_elements(f, codes.reshape(codes.shape[:-1] + (-1, f.block_size)))
        X = np.ldexp(np.float32(1.0), scales.astype(np.int32) - 127).astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            return (values * X[..., None]).astype(np.float32).reshape(codes.shape)

    return MutantBackend("e8m0_nan_as_power_of_two", {"mx_dequantize": mx_dequantize})


def mx_nan_ignored() -> MutantBackend:
    """NaN elements skipped when taking the block max: a finite scale instead of 0xFF."""

    def mx_quantize(x: Any, fmt: str) -> tuple[np.ndarray, np.ndarray]:
        arr = np.asarray(x, dtype=np.float32)
        return mx.mx_quantize(np.where(np.isnan(arr), np.float32(0), arr), fmt)

    return MutantBackend("mx_nan_ignored", {"mx_quantize": mx_quantize})


def nvfp4_nibbles_high_first() -> MutantBackend:
    """NVFP4 pairs packed with the first element in the high nibble."""

    def nvfp4_quantize(x: Any, **kw: Any) -> tuple[np.ndarray, np.ndarray, np.float32]:
        packed, scales, g = _nvfp4_quantize(x, **kw)
        return ((packed << np.uint8(4)) | (packed >> np.uint8(4))).astype(np.uint8), scales, g

    return MutantBackend("nvfp4_nibbles_high_first", {"nvfp4_quantize": nvfp4_quantize})


MUTANTS: dict[str, Callable[[], MutantBackend]] = {
    "mx_scale_exponent_off_by_one": mx_scale_exponent_off_by_one,
    "e8m0_nan_as_power_of_two": e8m0_nan_as_power_of_two,
    "mx_nan_ignored": mx_nan_ignored,
    "nvfp4_nibbles_high_first": nvfp4_nibbles_high_first,
}
