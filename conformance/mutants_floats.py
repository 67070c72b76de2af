"""Mutants for the float and codebook element types (issue 3).

Each is a plausible real bug: a quantizer that breaks codebook ties the other way
(``searchsorted(side="right")`` for bitsandbytes' ``bucketize``; ``<=`` for ggml's
strict ``<``), or an fp8 cast that saturates where ml_dtypes writes NaN (torch's
``.to(float8_e4m3fn)`` does this), or a cast that narrows float64 to float32 first.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from conformance.mutants import MutantBackend
from refquant.dtypes.codebooks import Codebook, get_codebook
from refquant.dtypes.floatspec import encode_float as _encode_float
from refquant.dtypes.floatspec import get_float_spec

__all__ = ["MUTANTS"]


def _encode_with_ties(ties: dict[str, str]) -> Callable[..., np.ndarray]:
    def codebook_encode(x: Any, name: str) -> np.ndarray:
        cb = get_codebook(name)
        return Codebook(cb.name, cb.values, ties.get(cb.name, cb.tie)).encode(x)

    return codebook_encode


def nf4_ties_upper() -> MutantBackend:
    """nf4 / bnb fp4 midpoints go to the upper code (bucketize with right=True)."""
    return MutantBackend("nf4_ties_upper", {"codebook_encode": _encode_with_ties({"nf4": "upper", "fp4": "upper"})})


def iq4_nl_ties_lower() -> MutantBackend:
    """iq4_nl ties go to the lower index (``<=`` instead of ggml's strict ``<``)."""
    return MutantBackend("iq4_nl_ties_lower", {"codebook_encode": _encode_with_ties({"iq4_nl": "lower"})})


def e4m3_saturating() -> MutantBackend:
    """float8_e4m3fn overflow clamps to ±448 instead of ml_dtypes' NaN code."""

    def encode_float(x: Any, fmt: str, *, saturate: bool = False) -> np.ndarray:
        if get_float_spec(fmt).name == "float8_e4m3fn":
            saturate = True
        return _encode_float(x, fmt, saturate=saturate)

    return MutantBackend("e4m3_saturating", {"encode_float": encode_float})


def float64_via_float32() -> MutantBackend:
    """float64 input narrowed to float32 before the cast: two roundings (ml_dtypes < 0.7, torch)."""

    def encode_float(x: Any, fmt: str, *, saturate: bool = False) -> np.ndarray:
        arr = np.asarray(x)
        if arr.dtype == np.float64:
            with np.errstate(over="ignore"):
                arr = arr.astype(np.float32)
        return _encode_float(arr, fmt, saturate=saturate)

    return MutantBackend("float64_via_float32", {"encode_float": encode_float})


MUTANTS: dict[str, Callable[[], MutantBackend]] = {
    "nf4_ties_upper": nf4_ties_upper,
    "iq4_nl_ties_lower": iq4_nl_ties_lower,
    "e4m3_saturating": e4m3_saturating,
    "float64_via_float32": float64_via_float32,
}
