"""Preparation of the float-format and codebook ops (encode/decode).

Same rules as :func:`refquant.dtypes.floatspec.encode_float` / ``decode_float`` and
:func:`refquant.dtypes.codebooks.codebook_encode` / ``codebook_decode``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_float_array
from refquant.dtypes.codebooks import CODEBOOKS, Codebook, get_codebook
from refquant.dtypes.floatspec import FloatSpec, check_codes, float_input, get_float_spec
from refquant.prepare import Prepared, output

__all__ = ["prepare_encode_float", "prepare_decode_float", "prepare_codebook_encode", "prepare_codebook_decode",
           "float32_input"]


def float32_input(name: str, x: Any, dtypes: tuple[type, ...] = (np.float32, np.float64)) -> np.ndarray:
    """``x`` as a C-contiguous float32 array (float64 rounds to nearest, overflow -> inf)."""
    arr = as_float_array(name, x, dtypes=dtypes)
    if arr.dtype != np.float32:
        with np.errstate(over="ignore", invalid="ignore"):  # |x| > FLT_MAX -> inf; sNaN -> NaN
            arr = arr.astype(np.float32)
    return np.require(arr, requirements="C")


def _spec(fmt: Any) -> FloatSpec:
    return get_float_spec(fmt)


def _name_or_spec(spec: FloatSpec) -> str | FloatSpec:
    """The canonical name of a registered format (what backends key their kernels by), else the spec."""
    try:
        return spec.name if get_float_spec(spec.name) == spec else spec
    except ValueError:
        return spec


def prepare_encode_float(x: Any, fmt: str | FloatSpec, *, saturate: bool = False, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.dtypes.floatspec.encode_float`: x -> C-contiguous float32 or
    float64 (float64 is kept: it is rounded once, from its exact value), fmt -> FloatSpec."""
    spec = _spec(fmt)
    if not isinstance(saturate, (bool, np.bool_)):
        raise TypeError(f"saturate must be a bool, got {saturate!r} ({type(saturate).__name__})")
    arr = np.require(float_input(x), requirements="C")
    return Prepared((arr, _name_or_spec(spec)), {"saturate": bool(saturate)},
                    output(out, arr.shape, spec.storage_dtype, (x,)))


def prepare_decode_float(bits: Any, fmt: str | FloatSpec, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.dtypes.floatspec.decode_float`: codes of the storage dtype, in range."""
    spec = _spec(fmt)
    check_codes(bits, spec)
    return Prepared((np.require(bits, requirements="C"), _name_or_spec(spec)), {},
                    output(out, bits.shape, np.float32, (bits,)))


def canonical_codebook(name: str | Codebook) -> str | Codebook:
    """A registered codebook's name (what backends key their kernels by), or a plain
    :class:`Codebook` rebuilt from a custom one's fields (a subclass cannot change the
    derived tables kernels index)."""
    cb = get_codebook(name)
    if type(cb) is Codebook and CODEBOOKS.get(cb.name) is cb:
        return cb.name
    return cb if type(cb) is Codebook else Codebook(str(cb.name), tuple(float(v) for v in cb.values), cb.tie)


def prepare_codebook_encode(x: Any, name: str | Codebook, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.dtypes.codebooks.codebook_encode`."""
    cb = canonical_codebook(name)
    arr = float32_input("x", x)
    return Prepared((arr, cb), {}, output(out, arr.shape, np.uint8, (x,)))


def prepare_codebook_decode(codes: Any, name: str | Codebook, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.dtypes.codebooks.codebook_decode`: integer codes in 0..size-1."""
    cb = canonical_codebook(name)
    c = get_codebook(cb).check_codes(codes)
    return Prepared((np.require(c, requirements="C"), cb), {}, output(out, c.shape, np.float32, (codes,)))
