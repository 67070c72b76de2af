"""GPTQ checkpoint layout (AutoGPTQ "gptq" v1 and GPTQModel "gptq_v2").

The tensors of one quantized Linear layer (AutoGPTQ
``qlinear_cuda_old.py`` ``pack``, GPTQModel's v2 format):

=============  ======================  ============================================================
tensor         dtype, shape            content
=============  ======================  ============================================================
``qweight``    int32 (in*b/32, out)    codes packed along the **input** dim: word r of column o
                                       holds input rows r*(32/b) + k at bits b*k (k=0 lowest);
                                       3-bit codes straddle words (32 codes per 3 words)
``qzeros``     int32 (G, out*b/32)     zero-points packed along the **output** dim, same order;
                                       v1 stores ``zero - 1`` (the kernels add 1), v2 ``zero``
``scales``     float16 (G, out)        one scale per group and output channel
``g_idx``      int32 (in,)             group of each input column (act-order permutes it)
=============  ======================  ============================================================

``G`` = number of groups = ``ceil(in / group_size)`` (1 for per-channel).
The bit order is :func:`refquant.packing.pack`'s ``low_first`` in int32 containers.
A weight is ``W[o, c] = scales[g, o] * (q[c, o] - zero[g, o])``, ``g = g_idx[c]``;
:func:`gptq_dequantize` evaluates it in float32, where it is exact (a difference of
at most 9 bits times an 11-bit fp16 significand).

v1 vs v2. In v1 a zero-point of 0 would be stored as -1, which
AutoGPTQ's packing ORs into the word as 0xFFFFFFFF and so corrupts its neighbours;
:func:`gptq_pack` refuses it (use v2). Read as v1, a stored field of ``2^b - 1`` means
zero ``2^b``, which no b-bit quantizer produces: :func:`gptq_unpack` raises, naming the
likely cause (a v2 checkpoint read as v1, or a v1 file written with a zero of 0).
A v1 file read as v2 cannot be detected from the data alone (every field is valid).

Codes are written as the algorithm chose them (:class:`~refquant.algorithms.QuantizedWeight`),
not re-rounded with the fp16 scale as AutoGPTQ's ``pack`` does; scales are rounded to
float16, so ``decode(encode(r))`` equals ``r.dequantize()`` up to that rounding, and
exactly when the scales are float16 values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant import packing
from refquant._validate import as_float_array, as_int_array, check_choice, check_int, check_name
from refquant.prepare import into

__all__ = ["gptq_pack", "gptq_unpack", "gptq_dequantize", "encode", "decode", "TENSOR_NAMES", "FORMATS"]

TENSOR_NAMES = ("qweight", "qzeros", "scales", "g_idx")
_BITS = (2, 3, 4, 8)
#: The conformance format axis: ``"v{version}_{bits}bit"``.
FORMATS = tuple(f"v{v}_{b}bit" for v in (1, 2) for b in _BITS)


def format_args(fmt: str) -> dict[str, int]:
    """``"v1_4bit"`` -> ``{"bits": 4, "version": 1}``."""
    fmt = check_name("fmt", fmt, FORMATS)
    version, bits = fmt.split("_")
    return {"bits": int(bits[:-3]), "version": int(version[1:])}


def _check_bits_version(bits: Any, version: Any) -> tuple[int, int]:
    bits = check_int("bits", bits)
    check_choice("bits", bits, _BITS)
    version = check_int("version", version)
    check_choice("version", version, (1, 2))
    return bits, version


def per_word(bits: int) -> int:
    """Codes per 32-bit word run (32 codes per 3 words for 3 bits)."""
    return 32 if bits == 3 else 32 // bits


def _check_multiple(name: str, value: int, bits: int) -> None:
    step = per_word(bits)
    if value % step:
        raise ValueError(f"{name}={value} must be a multiple of {step} for {bits}-bit GPTQ packing "
                         f"(int32 words hold whole runs of codes)")


def gptq_pack(codes: Any, zeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1, *, out: Any = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pack codes and parameters into GPTQ's ``(qweight, qzeros, scales, g_idx)``.

    Parameters
    ----------
    codes : ndarray of int, shape (out, in), values in 0..2**bits - 1
    zeros : ndarray of int (or integer-valued float), shape (out, G), values in 0..2**bits - 1
        (1..2**bits - 1 for version 1).
    scales : ndarray of float, shape (out, G)
        Finite, representable in float16 (rounded to it).
    g_idx : ndarray of int, shape (in,), values in 0..G - 1
    bits : {2, 3, 4, 8}
    version : {1, 2}
    out : tuple of ndarray or None, optional
        Arrays to write the results into, in order (:func:`refquant.prepare.into`).

    Returns
    -------
    qweight : int32 (in*bits/32, out)
    qzeros : int32 (G, out*bits/32)
    scales : float16 (G, out)
    g_idx : int32 (in,)

    Raises
    ------
    ValueError
        Shapes that do not fit, codes or zeros out of range, a zero of 0 in v1, scales
        that overflow (or underflow to 0 in) float16.
    """
    given = (codes, zeros, scales, g_idx)  # the caller's arrays, which out must not overlap
    bits, codes, stored_zeros, scales16, g_idx = _pack_args(codes, zeros, scales, g_idx, bits, version)
    qweight = packing.pack(codes, bits, "low_first", "int32").T  # (in*bits/32, out)
    qzeros = packing.pack(stored_zeros.T, bits, "low_first", "int32")  # (G, out*bits/32)
    return into(out, (np.ascontiguousarray(qweight), np.ascontiguousarray(qzeros),
                      np.ascontiguousarray(scales16.T), g_idx.astype(np.int32)), given)


def gptq_unpack(qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1, *,
                out: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Unpack GPTQ tensors into ``(codes, zeros)``, validating their consistency.

    Parameters
    ----------
    qweight : int32 or uint32 (in*bits/32, out)
    qzeros : int32 or uint32 (G, out*bits/32)
    scales : float16 (G, out)
    g_idx : int (in,), values in 0..G - 1
    bits : {2, 3, 4, 8}
    version : {1, 2}
    out : tuple of ndarray or None, optional
        Arrays to write the results into, in order (:func:`refquant.prepare.into`).

    Returns
    -------
    codes : uint8 (out, in)
    zeros : uint8 (out, G)  (stored value + 1 for version 1)

    Raises
    ------
    ValueError
        Inconsistent shapes, or (version 1) a zero field of ``2^bits - 1``.
    """
    given = (qweight, qzeros, scales, g_idx)  # the caller's arrays, which out must not overlap
    qweight, qzeros, scales, g_idx, bits, version, in_features = _unpack_args(qweight, qzeros, scales, g_idx,
                                                                                bits, version)
    out_features = scales.shape[1]
    codes = packing.unpack(qweight.T, bits, in_features, "low_first", "int32")  # (out, in)
    stored = packing.unpack(qzeros, bits, out_features, "low_first", "int32")  # (G, out)
    zeros = stored + 1 if version == 1 else stored
    return into(out, (codes, np.ascontiguousarray(zeros.T.astype(np.uint8))), given)


def gptq_dequantize(qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1, *,
                    out: Any = None) -> np.ndarray:
    """The float32 weight (out, in) of GPTQ tensors: ``scales[g, o] * (q - zero[g, o])``.

    Parameters
    ----------
    qweight : ndarray of int32 or uint32, shape (in * bits / 32, out)
    qzeros : ndarray of int32 or uint32, shape (G, out * bits / 32)
    scales : ndarray of float, shape (G, out)
    g_idx : ndarray of int, shape (in,)
        Each column's group, in 0 .. G - 1.
    bits : {2, 3, 4, 8}
    version : {1, 2}
        GPTQ v1 stores ``zero - 1``; v2 the zero itself.
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).
    """
    codes, zeros = gptq_unpack(qweight, qzeros, scales, g_idx, bits, version)
    group = np.asarray(g_idx).astype(np.intp)
    scale = np.asarray(scales).astype(np.float32).T[:, group]  # (out, in)
    diff = codes.astype(np.float32) - zeros[:, group].astype(np.float32)
    return into(out, scale * diff, (qweight, qzeros, scales, g_idx))


def encode(result: Any, version: int = 1) -> dict[str, np.ndarray]:
    """The state-dict tensors of a quantized weight (``qweight``, ``qzeros``, ``scales``, ``g_idx``).

    Parameters
    ----------
    result : QuantizedWeight
        From :func:`~refquant.algorithms.rtn`, :func:`~refquant.algorithms.gptq`,
        :func:`~refquant.algorithms.awq` (its scaled weight) or ``mixed`` (RTN part);
        integer zero-points required (SpQR's are not).
    version : {1, 2}
    """
    _check_result(result)
    qweight, qzeros, scales, g_idx = gptq_pack(result.codes, result.zeros, result.scales, result.g_idx,
                                               result.bits, version)
    return {"qweight": qweight, "qzeros": qzeros, "scales": scales, "g_idx": g_idx}


def decode(tensors: dict[str, Any], bits: int, group_size: int, version: int = 1) -> np.ndarray:
    """Dequantize a GPTQ layer's tensors to float32 (out, in), checking ``group_size``.

    Parameters
    ----------
    tensors : mapping
        ``qweight``, ``qzeros``, ``scales`` and optionally ``g_idx`` (old checkpoints
        without it use ``c // group_size``).
    bits : {2, 3, 4, 8}
    group_size : int
        The checkpoint's group size (-1: per-channel); the number of groups must be
        ``ceil(in / group_size)`` and no group may hold more than ``group_size`` columns.
    version : {1, 2}

    Raises
    ------
    ValueError
        Missing tensors, inconsistent shapes or ``g_idx``, v1/v2 confusion (see module).
    """
    missing = [k for k in ("qweight", "qzeros", "scales") if k not in tensors]
    if missing:
        raise ValueError(f"GPTQ tensors missing: {', '.join(missing)} (have {', '.join(sorted(tensors))})")
    bits, version = _check_bits_version(bits, version)
    group_size = check_int("group_size", group_size, min=-1)
    if group_size == 0:
        raise ValueError("group_size=0 is not allowed; use -1 for per-channel or a positive group size")
    qweight = _words("qweight", tensors["qweight"])
    in_features = qweight.shape[0] * 32 // bits
    n_groups = np.asarray(tensors["scales"]).shape[0]
    expected = 1 if group_size == -1 else -(-in_features // group_size)
    if n_groups != expected:
        raise ValueError(f"scales has {n_groups} groups, but in_features={in_features} with group_size={group_size} "
                         f"needs {expected}")
    g_idx = tensors.get("g_idx")
    if g_idx is None:
        g_idx = (np.arange(in_features) // (in_features if group_size == -1 else group_size)).astype(np.int32)
    if group_size != -1:
        counts = np.bincount(np.asarray(g_idx).astype(np.intp).clip(0), minlength=n_groups)
        if counts.max(initial=0) > group_size:
            raise ValueError(f"g_idx assigns {int(counts.max())} columns to group {int(counts.argmax())}, more than "
                             f"group_size={group_size}")
    return gptq_dequantize(qweight, tensors["qzeros"], tensors["scales"], g_idx, bits, version)


def _pack_args(codes: Any, zeros: Any, scales: Any, g_idx: Any, bits: Any, version: Any
               ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate :func:`gptq_pack`'s arguments (shared with backends, so errors read the same).

    Returns ``(bits, codes, stored_zeros, scales16, g_idx)``: ``stored_zeros`` is what the
    checkpoint holds (zero - 1 in v1), ``scales16`` the float16 scales (out, G).
    """
    bits, version = _check_bits_version(bits, version)
    codes = as_int_array("codes", codes, min_ndim=2)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (out_features, in_features), got shape {codes.shape}")
    out_features, in_features = codes.shape
    zeros = _integer_valued("zeros", zeros)
    scales = np.asarray(scales)
    if zeros.ndim != 2 or zeros.shape[0] != out_features or scales.shape != zeros.shape:
        raise ValueError(f"zeros and scales must both have shape (out_features, n_groups) = ({out_features}, G), "
                         f"got zeros {zeros.shape} and scales {scales.shape}")
    n_groups = zeros.shape[1]
    g_idx = _check_g_idx(g_idx, in_features, n_groups)
    _check_multiple("in_features", in_features, bits)
    _check_multiple("out_features", out_features, bits)
    maxq = 2**bits - 1
    _check_range("codes", codes, 0, maxq)
    _check_range("zeros", zeros, 1 if version == 1 else 0, maxq,
                 hint=" (GPTQ v1 stores zero - 1, so a zero-point of 0 cannot be written; use version=2)"
                 if version == 1 else "")
    scales16 = _to_float16("scales", scales)
    stored_zeros = zeros - 1 if version == 1 else zeros
    return bits, codes, stored_zeros, scales16, g_idx


def _unpack_args(qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: Any, version: Any
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int, int]:
    """Validate GPTQ tensors' shapes (shared with backends, so errors read the same).

    Returns ``(qweight, qzeros, scales, g_idx, bits, version, in_features)``.
    """
    bits, version = _check_bits_version(bits, version)
    qweight, qzeros = _words("qweight", qweight), _words("qzeros", qzeros)
    scales = as_float_array("scales", scales, dtypes=(np.float16, np.float32, np.float64))
    if scales.ndim != 2:
        raise ValueError(f"scales must be 2-D (n_groups, out_features), got shape {scales.shape}")
    n_groups, out_features = scales.shape
    n_word = per_word(bits)
    words = bits if bits == 3 else 1  # int32 words per run of n_word codes
    in_features = qweight.shape[0] // words * n_word
    if qweight.shape != (in_features * bits // 32, out_features) or qweight.shape[0] % words:
        raise ValueError(f"qweight has shape {qweight.shape}; with scales {scales.shape} it must be "
                         f"(in_features*{bits}/32, {out_features})")
    if qzeros.shape != (n_groups, out_features * bits // 32) or out_features % n_word:
        raise ValueError(f"qzeros has shape {qzeros.shape}; with scales {scales.shape} and {bits} bits it must be "
                         f"({n_groups}, {out_features * bits // 32}) (out_features a multiple of {n_word})")
    g_idx = _check_g_idx(g_idx, in_features, n_groups)
    if version == 1:
        stored = packing.unpack(qzeros, bits, out_features, "low_first", "int32")  # (G, out), small
        if np.any(stored == 2**bits - 1):
            g, o = (int(i) for i in np.argwhere(stored == 2**bits - 1)[0])
            raise ValueError(
                f"qzeros[{g}] field {o} is {2**bits - 1}: read as GPTQ v1 (zero - 1) that is a zero-point of "
                f"{2**bits}, which no {bits}-bit quantizer produces. This is a gptq_v2 checkpoint (pass version=2), "
                f"or a v1 file written with a zero-point of 0, whose packed words are corrupt")
    return qweight, qzeros, scales, g_idx, bits, version, in_features


def _check_result(result: Any) -> None:
    for name in ("codes", "zeros", "scales", "g_idx", "bits"):
        if not hasattr(result, name):
            raise TypeError(f"result must be a QuantizedWeight (with codes, zeros, scales, g_idx, bits), "
                            f"got {type(result).__name__}")


def _integer_valued(name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.rint(arr)):
            raise ValueError(f"{name} must be integer-valued (GPTQ stores integer zero-points; SpQR's "
                             f"unrounded zeros have no GPTQ layout)")
        return arr.astype(np.int64)
    return as_int_array(name, arr).astype(np.int64)


def _check_range(name: str, x: np.ndarray, lo: int, hi: int, hint: str = "") -> None:
    bad = (x < lo) | (x > hi)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}{list(where)} = {int(x[where])} is outside {lo}..{hi}{hint}")


def _check_g_idx(g_idx: Any, in_features: int, n_groups: int) -> np.ndarray:
    g_idx = as_int_array("g_idx", g_idx)
    if g_idx.shape != (in_features,):
        raise ValueError(f"g_idx must have shape (in_features,) = ({in_features},), got {g_idx.shape}")
    _check_range("g_idx", g_idx, 0, n_groups - 1)
    return g_idx


def _to_float16(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)) or np.any(np.abs(x) > 65504):
        raise ValueError(f"{name} must be finite and within the float16 range (|s| <= 65504)")
    x16 = x.astype(np.float16)
    if np.any((x16 == 0) & (x != 0)):
        raise ValueError(f"{name} has a non-zero value that underflows to 0 in float16 (|s| < 2**-25)")
    return x16


def _words(name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype not in (np.dtype(np.int32), np.dtype(np.uint32)):
        raise TypeError(f"{name} must be int32 (or uint32) packed words, got {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
    return arr
