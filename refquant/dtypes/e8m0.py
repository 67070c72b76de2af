"""E8M0: the unsigned power-of-two scale type of the OCP Microscaling formats.

One byte, no sign and no mantissa: code ``c`` in 0..254 is ``2**(c - 127)`` (so code 0 is
``2**-127``, a float32 subnormal, and 127 is 1.0), and 0xFF is NaN. There is no zero and
no infinity (OCP Microscaling Formats (MX) v1.0, section 5.4.1; ml_dtypes
``float8_e8m0fnu``). It does not fit :class:`~refquant.dtypes.floatspec.FloatSpec`
(no sign bit, no mantissa), so it has this small codec of its own.

Two conversions exist and they differ on purpose:

* :func:`encode_e8m0` is the *cast* of a float32 value to E8M0, bit for bit as ml_dtypes
  0.7 ``x.astype(float8_e8m0fnu)``: round to the nearest power of two with ties
  (``1.5 * 2**k``) going **up**, i.e. a mantissa >= 0.5 carries into the exponent; float32
  subnormals below ``2**-127`` go to code 0 unless they reach ``1.5 * 2**-127``; zero,
  negative values, ±inf, NaN and anything that rounds past ``2**127`` give 0xFF.
* The MX quantizer (:mod:`refquant.formats.mx`) does not cast: its scale is
  ``floor(log2(amax)) - emax_elem`` (MX v1.0 section 6.3), computed exactly from the
  float32 exponent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_float_array

__all__ = ["E8M0_BIAS", "E8M0_NAN", "encode_e8m0", "decode_e8m0"]

E8M0_BIAS = 127
#: The NaN code (MX v1.0 section 5.4.1): a block whose scale is NaN decodes to NaN throughout.
E8M0_NAN = 0xFF


def encode_e8m0(x: Any) -> np.ndarray:
    """Cast float32 values to E8M0 codes (ml_dtypes ``float8_e8m0fnu`` rounding).

    Parameters
    ----------
    x : array_like of float32 (float64 is rounded to float32 first), any shape

    Returns
    -------
    ndarray of uint8, shape of ``x``
        ``2**(code - 127)`` is the power of two nearest to ``x``, ties up; 0xFF for
        ``x <= 0`` (including -0.0), NaN, ±inf and ``x >= 1.5 * 2**127``.

    Raises
    ------
    TypeError
        For integer, boolean, complex or object input.
    """
    arr = as_float_array("x", x)
    with np.errstate(over="ignore", invalid="ignore"):
        u = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
    a = u & np.uint32(0x7FFFFFFF)
    e = a >> np.uint32(23)
    m = a & np.uint32(0x7FFFFF)
    # normal float32: 2**(e-127) * (1 + m/2**23), rounds up from m = 2**22 (1.5);
    # subnormal float32 (e = 0): m * 2**-149, so 2**-127 is m = 2**22 and the tie 1.5 * 2**-127 is 3 * 2**21
    code = np.where(e > 0, e + (m >= np.uint32(1 << 22)), (m >= np.uint32(3 << 21)).astype(np.uint32))
    invalid = (u >> np.uint32(31) == 1) | (a == 0) | (a >= np.uint32(0x7F800000)) | (code > np.uint32(254))
    return np.where(invalid, np.uint32(E8M0_NAN), code).astype(np.uint8)


def decode_e8m0(bits: Any) -> np.ndarray:
    """Decode E8M0 codes to float32: ``2**(code - 127)``, NaN for 0xFF (exact).

    Parameters
    ----------
    bits : ndarray of uint8, any shape

    Returns
    -------
    ndarray of float32, shape of ``bits``

    Raises
    ------
    TypeError
        If ``bits`` is not a uint8 array.
    """
    if not isinstance(bits, np.ndarray) or bits.dtype != np.uint8:
        got = f"dtype {bits.dtype}" if isinstance(bits, np.ndarray) else type(bits).__name__
        raise TypeError(f"bits must be an ndarray of uint8 (E8M0 codes), got {got}")
    return _TABLE[bits]


def _table() -> np.ndarray:
    codes = np.arange(E8M0_NAN)
    table = np.empty(256, np.float32)
    table[:E8M0_NAN] = np.ldexp(np.float32(1.0), codes - E8M0_BIAS)   # 2**-127 is a float32 subnormal, exact
    table[E8M0_NAN] = np.float32(np.nan)
    table.flags.writeable = False
    return table


_TABLE = _table()
