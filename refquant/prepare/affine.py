"""Preparation of the affine ops (choose_qparams, quantize_affine, dequantize_affine).

Same rules as :mod:`refquant.mapping`; parameter objects are checked for consistency
(:func:`refquant.mapping.check_params`: grid shapes, dtypes, scales finite and > 0,
16-bit code ranges, a granularity whose geometry is consistent) and rebuilt as plain
QuantParams with contiguous grids.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_int_array, check_choice
from refquant.granularity import Granularity, canonical_granularity
from refquant.mapping import (ROUNDINGS, QuantParams, _as_input, check_clip, check_codes, check_params, code_spec,
                              finite_input, resolve_granularity)
from refquant.prepare import Prepared, output

__all__ = ["prepare_choose_qparams", "prepare_quantize_affine", "prepare_dequantize_affine"]


def prepare_choose_qparams(x: Any, bits: int = 8, symmetric: bool = True, *, signed: bool = True,
                           restricted_range: bool | None = None, granularity: Granularity | str | None = None,
                           axis: int | None = None, group_size: int | None = None,
                           clip: tuple[float, float] | float | None = None) -> Prepared:
    """Arguments of :func:`refquant.mapping.choose_qparams`: finite float32 ``x``, the
    granularity resolved (axis/group_size folded in) and fitting ``x``, checked code type and clip."""
    gran = resolve_granularity(granularity, axis, group_size)
    arr = np.require(finite_input(x), requirements="C")
    gran = canonical_granularity(gran, arr.shape)
    spec = code_spec(bits, symmetric, signed, restricted_range)
    return Prepared((arr, spec.bits, bool(symmetric)),
                    {"signed": bool(signed), "restricted_range": restricted_range,
                     "granularity": gran, "clip": check_clip(clip)})


def prepare_quantize_affine(x: Any, params: QuantParams, *, rounding: str = "half_even",
                            rng: np.random.Generator | None = None, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.mapping.quantize_affine`: NaN-free float32 ``x``
    (inf clamps), consistent params fitting it, a known rounding (stochastic needs ``rng``)."""
    arr = np.require(_as_input(x, allow_nan=False), requirements="C")
    params = check_params(params, arr.shape)
    check_choice("rounding", rounding, ROUNDINGS)
    if rounding == "stochastic" and not isinstance(rng, np.random.Generator):
        raise ValueError("rounding='stochastic' needs rng (a numpy.random.Generator)")
    return Prepared((arr, params), {"rounding": rounding, "rng": rng},
                    output(out, arr.shape, params.code_dtype, (x,)))


def prepare_dequantize_affine(q: Any, params: QuantParams, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.mapping.dequantize_affine`: integer codes within the
    params' code range, consistent params fitting them."""
    codes = as_int_array("q", q)
    params = check_params(params, codes.shape)
    check_codes(codes, params)
    return Prepared((np.require(codes, requirements="C"), params), {}, output(out, codes.shape, np.float32, (q,)))
