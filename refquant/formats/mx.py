"""OCP Microscaling (MX) v1.0: one table of element types and one generic block codec.

An MX block is ``k = 32`` elements ``P_i`` of a narrow type sharing one E8M0 scale ``X``
(:mod:`refquant.dtypes.e8m0`); its values are ``X * P_i`` (MX v1.0 section 5, Table 1).

===========  ==================  =========  ===========  ====  =====================
format       element             emax_elem  elem max     bits  packed elements
===========  ==================  =========  ===========  ====  =====================
mxfp8_e4m3   float8_e4m3fn       8          448          8     1 per byte
mxfp8_e5m2   float8_e5m2         15         57344        8     1 per byte
mxfp6_e3m2   float6_e3m2fn       4          28           6     4 per 3 bytes
mxfp6_e2m3   float6_e2m3fn       2          7.5          6     4 per 3 bytes
mxfp4        float4_e2m1fn       2          6            4     2 per byte
mxint8       int8 · 2**-6        0          127/64       8     1 per byte
===========  ==================  =========  ===========  ====  =====================

``emax_elem`` is the exponent of the element type's largest normal binade, derived from
its :class:`~refquant.dtypes.floatspec.FloatSpec` (``max_exp``); MXINT8's elements are
two's-complement int8 with an implicit scale of ``2**-6`` (section 5.3.4), so
``emax_elem = 0``. Every format costs ``bits + 8/32`` bits per element.

Quantization (section 6.3, "Conversion from vector of FP32 to MX format"), per block:

1. ``shared_exp = floor(log2(max_i |V_i|)) - emax_elem``, computed exactly from the float32
   exponent of the block's absolute maximum (no ``log2`` rounding);
2. ``X = 2**shared_exp``, stored as the E8M0 code ``shared_exp + 127``;
3. ``P_i = quantize_to_element_format(V_i / X)``: round to nearest, ties to even, and
   normal numbers clamped to the element type's largest normal (``saturate=True`` of
   :func:`~refquant.dtypes.floatspec.encode_float`; for MXINT8 ``rint(64 V_i / X)``
   clamped to ±127).

The spec leaves three cases to implementations; this codec follows Microsoft's MX
emulation library (microsoft/microxcaling ``mx/mx_ops.py``, by the spec's authors):

* a shared exponent below E8M0's range (tiny blocks) is clamped to -127 (code 0), and an
  all-zero block gets code 0 too, with all elements +0 / -0;
* a block containing NaN or ±inf gets the NaN scale 0xFF (its ``floor(log2)`` is not
  finite); its element codes are then written as 0 (the spec ignores ``P_i`` when ``X``
  is NaN);
* MXINT8 never writes -128 (the symmetric range ±127/64, as microxcaling clamps it);
  -128 (-2.0) decodes as the spec defines it.

Dequantization is ``X * P_i`` in float32 (one rounding, exact unless the product is a
float32 subnormal); a NaN scale makes the whole block NaN (section 5.4.1).

Packing (:func:`mx_pack`): codes as a little-endian bit stream (:mod:`refquant.packing`,
``order="low_first"``): element ``i`` occupies bits ``[b*i, b*(i+1))``. For FP4 that puts
element ``2j`` in the low nibble of byte ``j``, as ``torch.float4_e2m1fn_x2`` and NVIDIA's
``__nv_fp4x2_e2m1`` store pairs; for FP6 four elements fill three bytes (24 bits), the
dense layout of the same bit stream. Scales stay a separate uint8 array, one per block,
as in PyTorch's and NVIDIA's scaled-matmul APIs (the spec prescribes no memory layout).

References
----------
Open Compute Project, "OCP Microscaling Formats (MX) Specification", v1.0 (2023),
sections 5 (Table 1, element and scale types) and 6.3 (conversion).
ggml's MXFP4 (:mod:`refquant.formats.gguf_mx`) is a different, ggml-defined codec of the
same format (scale ``floor(log2f(amax)) - 2``, argmin element search).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from refquant._validate import as_float_array, as_int_array, check_int, normalize_name
from refquant.dtypes.e8m0 import E8M0_BIAS, E8M0_NAN, decode_e8m0
from refquant.dtypes.floatspec import FloatSpec, decode_float, encode_float, get_float_spec
from refquant.packing import pack, unpack
from refquant.rounding import round_half_even
from refquant.prepare import into

__all__ = ["MXFormat", "MX_FORMATS", "get_mx_format", "mx_quantize", "mx_dequantize", "mx_pack", "mx_unpack",
           "shared_exponent"]

F32 = np.float32
_INT8_FRAC_BITS = 6          # MXINT8: element value = int8 * 2**-6 (section 5.3.4)
_SCALE_MIN_EXP = -E8M0_BIAS  # code 0


@dataclass(frozen=True)
class MXFormat:
    """One concrete MX format: its element type and block size.

    Attributes
    ----------
    name : str
        ``"mxfp8_e4m3"``, ``"mxfp8_e5m2"``, ``"mxfp6_e3m2"``, ``"mxfp6_e2m3"``, ``"mxfp4"``, ``"mxint8"``.
    element : str
        A :data:`~refquant.dtypes.floatspec.FLOAT_SPECS` name, or ``"int8"``.
    block_size : int
        ``k``, elements per shared scale (32 for every concrete format of v1.0).
    """

    name: str
    element: str
    block_size: int = 32

    @property
    def spec(self) -> FloatSpec | None:
        """The element's FloatSpec (None for MXINT8)."""
        return None if self.element == "int8" else get_float_spec(self.element)

    @property
    def emax_elem(self) -> int:
        """Exponent of the element type's largest normal binade (section 6.3)."""
        spec = self.spec
        return 0 if spec is None else spec.max_exp

    @property
    def bits(self) -> int:
        """Bits per element."""
        spec = self.spec
        return 8 if spec is None else spec.bits

    def bits_per_weight(self) -> float:
        """``bits + 8 / block_size`` (one E8M0 byte per block)."""
        return self.bits + 8.0 / self.block_size


MX_FORMATS: dict[str, MXFormat] = {f.name: f for f in (
    MXFormat("mxfp8_e4m3", "float8_e4m3fn"),
    MXFormat("mxfp8_e5m2", "float8_e5m2"),
    MXFormat("mxfp6_e3m2", "float6_e3m2fn"),
    MXFormat("mxfp6_e2m3", "float6_e2m3fn"),
    MXFormat("mxfp4", "float4_e2m1fn"),
    MXFormat("mxint8", "int8"),
)}


def get_mx_format(fmt: str | MXFormat) -> MXFormat:
    """The :class:`MXFormat` named ``fmt`` (case-insensitive); ValueError lists the allowed names.

    Parameters
    ----------
    fmt : str or MXFormat
        A key of :data:`MX_FORMATS` (any case), or an MXFormat (returned as is).
    """
    if isinstance(fmt, MXFormat):
        return fmt
    if not isinstance(fmt, str):
        raise TypeError(f"fmt must be an MX format name (str), got {fmt!r} ({type(fmt).__name__})")
    try:
        return MX_FORMATS[normalize_name(fmt)]
    except KeyError:
        raise ValueError(f"fmt={fmt!r} is not an MX format; allowed: {', '.join(MX_FORMATS)}") from None


def check_uint8(**arrays: Any) -> None:
    """TypeError naming the first argument that is not an ndarray of uint8 (codes, scales, bytes)."""
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8:
            got = f"dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
            raise TypeError(f"{name} must be an ndarray of uint8, got {got}")


def check_mx_blocks(scales: Any, codes: Any, fmt: MXFormat) -> np.ndarray:
    """``codes`` as blocks (..., n_blocks, block_size) after checking that both are uint8 and
    that there is one scale per block (the argument rule of :func:`mx_dequantize`)."""
    check_uint8(scales=scales, codes=codes)
    blocks = _blocks(fmt, codes)
    if scales.shape != blocks.shape[:-1]:
        raise ValueError(f"scales has shape {scales.shape}, but codes of shape {codes.shape} need "
                         f"{blocks.shape[:-1]} (one per {fmt.block_size} elements)")
    return blocks


def _blocks(fmt: MXFormat, x: np.ndarray) -> np.ndarray:
    n = x.shape[-1] if x.ndim else 0
    if x.ndim == 0 or n % fmt.block_size:
        raise ValueError(f"x has shape {x.shape}; its last axis must be a multiple of the block size "
                         f"{fmt.block_size} of {fmt.name}")
    return x.reshape(x.shape[:-1] + (n // fmt.block_size, fmt.block_size))   # (..., n_blocks, k)


def shared_exponent(amax: np.ndarray, fmt: str | MXFormat) -> np.ndarray:
    """Steps 1-2: the E8M0 code of blocks with absolute maxima ``amax``.

    Parameters
    ----------
    amax : ndarray of float32, any shape
        ``max_i |V_i|`` per block (NaN if the block holds a NaN).
    fmt : str or MXFormat

    Returns
    -------
    ndarray of uint8, shape of ``amax``
        ``clamp(floor(log2(amax)) - emax_elem, -127) + 127``; code 0 for ``amax == 0``;
        0xFF for NaN or inf.
    """
    f = get_mx_format(fmt)
    finite = np.isfinite(amax)
    # frexp gives amax = m * 2**e with 0.5 <= m < 1 exactly (float32 subnormals too), so floor(log2) = e - 1
    _, e = np.frexp(np.where(finite & (amax > 0), amax, F32(1)))
    shared = np.maximum(e.astype(np.int32) - 1 - f.emax_elem, _SCALE_MIN_EXP)
    shared = np.where(amax > 0, shared, _SCALE_MIN_EXP)
    return np.where(finite, shared + E8M0_BIAS, E8M0_NAN).astype(np.uint8)


def _encode_elements(fmt: MXFormat, v: np.ndarray) -> np.ndarray:
    """Step 3 on ``v = V / X`` (float32, exact): element codes, uint8 (int8 bits for MXINT8)."""
    if fmt.spec is None:
        q = np.clip(round_half_even(np.ldexp(v, _INT8_FRAC_BITS)), -127, 127).astype(np.int8)
        return q.view(np.uint8)
    return encode_float(v, fmt.spec, saturate=True)


def _decode_elements(fmt: MXFormat, codes: np.ndarray) -> np.ndarray:
    if fmt.spec is None:
        return np.ldexp(codes.view(np.int8).astype(F32), -_INT8_FRAC_BITS).astype(F32)
    return decode_float(codes, fmt.spec)


def mx_quantize(x: Any, fmt: str | MXFormat, *, out: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Quantize to an MX format along the last axis (MX v1.0 section 6.3).

    Parameters
    ----------
    x : array_like of float32 (float64 is rounded to float32 first), shape (..., n)
        ``n`` a multiple of 32. NaN/inf are allowed (their block's scale is NaN).
    fmt : str or MXFormat
        A key of :data:`MX_FORMATS`.
    out : tuple of ndarray or None, optional
        Arrays to write the results into, in order (:func:`refquant.prepare.into`).

    Returns
    -------
    scales : ndarray of uint8, shape (..., n // 32)
        E8M0 codes.
    codes : ndarray of uint8, shape (..., n)
        One element code per byte in its low bits (ml_dtypes' layout; MXINT8: the int8's
        two's-complement byte). :func:`mx_pack` packs them densely.

    Raises
    ------
    TypeError
        For non-float input.
    ValueError
        For an unknown format or a last axis that is not a multiple of 32.

    Examples
    --------
    >>> import numpy as np
    >>> s, q = mx_quantize(np.linspace(-6, 6, 32, dtype=np.float32), "mxfp4")
    >>> int(s[0]), float(decode_e8m0(s)[0]), q[:4]
    (127, 1.0, array([15, 15, 15, 14], dtype=uint8))
    """
    f = get_mx_format(fmt)
    arr = as_float_array("x", x)
    with np.errstate(over="ignore", invalid="ignore"):
        arr = arr.astype(F32, copy=False)
    blocks = _blocks(f, arr)                                            # (..., n_blocks, k)
    with np.errstate(invalid="ignore"):
        amax = np.max(np.abs(blocks), axis=-1)                          # NaN propagates
    scales = shared_exponent(amax, f)
    nan_block = scales == E8M0_NAN
    exp = scales.astype(np.int32) - E8M0_BIAS
    v = np.ldexp(np.where(nan_block[..., None], F32(0), blocks), -exp[..., None]).astype(F32)   # V / X, exact
    codes = _encode_elements(f, v)
    codes = np.where(nan_block[..., None], np.uint8(0), codes)
    return into(out, (scales, codes.reshape(arr.shape)), (x,))


def mx_dequantize(scales: Any, codes: Any, fmt: str | MXFormat, *, out: Any = None) -> np.ndarray:
    """Decode MX blocks: ``X * P_i`` in float32, NaN for blocks with the NaN scale.

    Parameters
    ----------
    scales : ndarray of uint8, shape (..., n // 32)
    codes : ndarray of uint8, shape (..., n)
        As returned by :func:`mx_quantize` (unpack packed bytes with :func:`mx_unpack`).
    fmt : str or MXFormat
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of float32, shape (..., n)

    Raises
    ------
    TypeError
        If ``scales`` or ``codes`` is not a uint8 array.
    ValueError
        For mismatched shapes or element codes wider than the format.
    """
    f = get_mx_format(fmt)
    blocks = check_mx_blocks(scales, codes, f)                          # (..., n_blocks, k)
    values = _decode_elements(f, blocks)
    with np.errstate(over="ignore"):   # e.g. 57344 * 2**127: float32 inf, as the hardware's float32 result
        result = (values * decode_e8m0(scales)[..., None]).astype(F32).reshape(codes.shape)
    return into(out, result, (scales, codes))


def mx_pack(codes: Any, fmt: str | MXFormat) -> np.ndarray:
    """Pack element codes densely along the last axis (module docstring: bit-stream order).

    codes : uint8 (..., n) -> uint8 (..., n * bits // 8); FP8 and INT8 are returned as a copy.

    Parameters
    ----------
    codes : ndarray of int, shape (..., n)
        Element codes in 0 .. 2**bits - 1 of ``fmt`` (ValueError otherwise); at least 1-D.
    fmt : str or MXFormat
        As :func:`get_mx_format`.
    """
    f = get_mx_format(fmt)
    arr = as_int_array("codes", codes, min_ndim=1)
    if f.bits == 8:
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
            raise ValueError(f"codes must be in 0..255 for {f.name}, got values in {int(arr.min())}..{int(arr.max())}")
        return arr.astype(np.uint8, copy=True)
    return pack(arr, f.bits, order="low_first", container="uint8")


def mx_unpack(packed: Any, fmt: str | MXFormat, count: int) -> np.ndarray:
    """Inverse of :func:`mx_pack`: uint8 (..., ceil(count * bits / 8)) -> uint8 codes (..., count).

    Parameters
    ----------
    packed : ndarray of uint8, shape (..., ceil(count * bits / 8))
        At least 1-D.
    fmt : str or MXFormat
        As :func:`get_mx_format`.
    count : int >= 0
        Codes per row, at most what ``packed`` holds (``packed.shape[-1] * 8 // bits``).
    """
    f = get_mx_format(fmt)
    if f.bits == 8:
        arr = as_int_array("packed", packed, min_ndim=1)
        count = check_int("count", count, min=0, max=arr.shape[-1])
        return arr[..., :count].astype(np.uint8, copy=True)
    return unpack(packed, f.bits, count, order="low_first", container="uint8")
