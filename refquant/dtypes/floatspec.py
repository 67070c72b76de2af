"""Small floating-point element types as data, and one generic encoder/decoder.

A :class:`FloatSpec` states a format's sign/exponent/mantissa layout, exponent bias,
and what its all-ones exponent means; everything ``finfo``-like (``max``, ``tiny``,
``eps``, ...) is derived from those fields, never typed in. One encoder,
:func:`encode_float`, turns float32 or float64 into any spec's bit patterns by integer
manipulation of the input's bit pattern (round to nearest, ties to even), and one
decoder, :func:`decode_float`, turns bit patterns back into float32 (always exact:
every value of these formats is a float32).

=================  ===  ===  ====  ====  ===========  =========  =====================
name               exp  man  bias  bits  max          NaN codes  overflow (default)
=================  ===  ===  ====  ====  ===========  =========  =====================
float16            5    10   15    16    65504        ieee       ±inf
bfloat16           8    7    127   16    3.39e38      ieee       ±inf
float8_e4m3fn      4    3    7     8     448          0x7F/0xFF  NaN (0x7F/0xFF)
float8_e5m2        5    2    15    8     57344        ieee       ±inf
float6_e3m2fn      3    2    3     6     28           none       ±28 (saturates)
float6_e2m3fn      2    3    1     6     7.5          none       ±7.5 (saturates)
float4_e2m1fn      2    1    1     4     6            none       ±6 (saturates)
=================  ===  ===  ====  ====  ===========  =========  =====================

Conventions, chosen to equal NumPy (``float16``) and ml_dtypes (the others; 0.7 or later
for float64 input) bit for bit, including the NaN bit patterns:

* Rounding is round-to-nearest, ties to even, with subnormals produced (never flushed)
  and the sign of zero kept. A value rounds first and is then checked against the
  largest finite code, so the overflow threshold is the midpoint above ``max``
  (65520 for float16, 464 is still 448 for e4m3fn, 61440 overflows e5m2, 7 is 6 for
  e2m1).
* Overflow and ±inf become what ml_dtypes writes for its ``infinity()``: ±inf where
  the format has it; the NaN code for ``fn`` formats (e4m3fn: 465 -> 0x7F, not 448);
  ±max for formats with neither (e2m1, the float6 pair). ``saturate=True`` instead clamps finite
  overflow *and* ±inf to ±max (the Transformer-Engine / torch e4m3fn behaviour); NaN
  input still gives the NaN code below.
* NaN input: float16 keeps NumPy's payload rule (sign, then the top 10 float32
  mantissa bits; a payload that would vanish becomes 1, so 0x7F800001 -> 0x7C01).
  bfloat16 and e5m2 write the quiet NaN with the sign kept (0x7FC0/0xFFC0, 0x7E/0xFE);
  e4m3fn writes 0x7F/0xFF. e2m1 has no NaN: ml_dtypes writes its ``quiet_NaN()``
  stand-in, code 8 (-0.0), negated for a negative NaN, so +NaN -> 0x8 and -NaN -> 0x0;
  the float6 types likewise (+NaN -> 0x20, -NaN -> 0x00).
* NaN codes decode to the float32 NaN whose payload is the code's mantissa (the exact
  bit widening of NumPy ``float16`` and Eigen ``bfloat16``) for the 16-bit formats,
  and to the quiet NaN 0x7FC00000 with the sign for the 8-bit ones (ml_dtypes).
* float64 input is rounded once, from its exact value (IEEE 754-2019 clauses 4.3 and
  5.4.2: a conversion delivers the infinitely precise value rounded to the destination),
  as NumPy's ``x64.astype(float16)`` and ml_dtypes 0.7 do. Going through float32 first
  would round twice and can lose by one code on a value just off a midpoint of the
  target: 1 + 2^-11 + 2^-40 is 0x3C01 in float16 (it lies above the midpoint 1 + 2^-11),
  but float32 rounds it onto the midpoint, which then ties to even, 0x3C00. Libraries
  that convert through float32 (ml_dtypes before 0.7, torch's c10 types, ggml's float32
  rows) equal ``encode_float(x64.astype(float32), f)``. A float64 NaN keeps the top
  ``mant_bits`` of its own mantissa as the float16 payload (NumPy's
  ``npy_doublebits_to_halfbits``).

Bit patterns are stored unsigned: uint16 for 16-bit formats, uint8 for the 8-, 6- and
4-bit ones (one fp6/fp4 code per byte in its low bits, as ml_dtypes stores it; packing
them densely is :mod:`refquant.packing`'s job).

References
----------
IEEE 754-2019; OCP 8-bit Floating Point Specification (OFP8) rev. 1.0; OCP
Microscaling Formats (MX) v1.0, sections 5.3.2 (FP6 E3M2 / E2M3) and 5.3.3 (FP4 E2M1); NumPy
``npy_floatbits_to_halfbits`` / ``npy_halfbits_to_floatbits`` (``halffloat.c``);
ml_dtypes ``float8.h`` ``ConvertImpl`` and ``mxfloat.h``; Eigen ``BFloat16.h``
``float_to_bfloat16_rtne``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from refquant._validate import as_float_array, normalize_name
from refquant.prepare import into

__all__ = [
    "FloatSpec", "FLOAT_SPECS", "FLOAT_ALIASES", "get_float_spec", "encode_float", "decode_float",
    "to_ml_dtypes", "from_ml_dtypes", "NAN_POLICIES", "float_input",
]

#: What the all-ones exponent field means.
#: ``"ieee"``: mantissa 0 is ±inf, any other mantissa is NaN.
#: ``"fn"``: a normal binade, except that the all-ones mantissa is NaN (no inf).
#: ``"none"``: a normal binade; the format has neither inf nor NaN.
NAN_POLICIES = ("ieee", "fn", "none")


@dataclass(frozen=True)
class FloatSpec:
    """A sign / exponent / mantissa floating-point format.

    Parameters
    ----------
    name : str
        ml_dtypes-style name (``"float8_e4m3fn"``).
    exp_bits, mant_bits : int
        Exponent and (stored) mantissa field widths; one sign bit is implied.
    bias : int
        Exponent bias: a normal code with exponent field ``e`` is
        ``(1 + m / 2**mant_bits) * 2**(e - bias)``.
    has_inf : bool
        Whether the all-ones exponent with a zero mantissa is ±inf. True exactly when
        ``nan == "ieee"``.
    nan : {"ieee", "fn", "none"}
        Meaning of the all-ones exponent (see :data:`NAN_POLICIES`).
    encode_nan : {"quiet", "payload"}
        Code written for a NaN input. ``"quiet"``: the format's quiet NaN with the
        input's sign (``nan_code`` XOR the sign bit, ml_dtypes). ``"payload"``: the
        sign and the top ``mant_bits`` of the float32 mantissa, 1 if those are all
        zero (NumPy's float16).
    decode_nan : {"quiet", "payload"}
        float32 produced for a NaN code. ``"quiet"``: 0x7FC00000 with the sign
        (ml_dtypes float8). ``"payload"``: the code's mantissa shifted into the float32
        mantissa (NumPy float16, Eigen bfloat16).
    aliases : tuple of str
        Other accepted names (lower case).
    """

    name: str
    exp_bits: int
    mant_bits: int
    bias: int
    has_inf: bool
    nan: str
    encode_nan: str = "quiet"
    decode_nan: str = "quiet"
    aliases: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.nan not in NAN_POLICIES:
            raise ValueError(f"nan={self.nan!r} is not supported; allowed: {', '.join(map(repr, NAN_POLICIES))}")
        if self.has_inf != (self.nan == "ieee"):
            raise ValueError(f"has_inf={self.has_inf} contradicts nan={self.nan!r}: only 'ieee' formats have inf")
        for attr in ("encode_nan", "decode_nan"):
            if getattr(self, attr) not in ("quiet", "payload"):
                raise ValueError(f"{attr}={getattr(self, attr)!r} is not supported; allowed: 'quiet', 'payload'")
        if not (1 <= self.exp_bits <= 8 and 1 <= self.mant_bits <= 22 and self.exp_bits + self.mant_bits <= 15):
            raise ValueError(f"exp_bits={self.exp_bits}, mant_bits={self.mant_bits}: this module handles formats "
                             "narrower than float32 (1 <= exp_bits <= 8, 1 <= mant_bits <= 22, total <= 16 bits)")
        if not (1 - self.bias >= -126 and self._emax_field - self.bias <= 127):
            raise ValueError(f"bias={self.bias}: the format's exponents must lie within float32's")

    # ---- layout -------------------------------------------------------------------
    @property
    def bits(self) -> int:
        """Total width: sign + exponent + mantissa."""
        return 1 + self.exp_bits + self.mant_bits

    @property
    def storage_dtype(self) -> np.dtype:
        """Unsigned container of one code: uint16 for 16-bit formats, uint8 up to 8 bits."""
        return np.dtype(np.uint16) if self.bits > 8 else np.dtype(np.uint8)

    @property
    def sign_mask(self) -> int:
        """The sign bit of a code."""
        return 1 << (self.bits - 1)

    @property
    def _emax_field(self) -> int:
        """Largest exponent field that holds finite values."""
        ones = (1 << self.exp_bits) - 1
        return ones - 1 if self.nan == "ieee" else ones

    @property
    def max_code(self) -> int:
        """Code (magnitude, sign clear) of the largest finite value."""
        mant_ones = (1 << self.mant_bits) - 1
        mant = mant_ones - 1 if self.nan == "fn" else mant_ones
        return (self._emax_field << self.mant_bits) | mant

    @property
    def inf_code(self) -> int | None:
        """Code of +inf, or None for formats without inf."""
        return ((1 << self.exp_bits) - 1) << self.mant_bits if self.has_inf else None

    @property
    def nan_code(self) -> int:
        """Code written for a positive NaN when ``encode_nan == "quiet"``.

        The quiet NaN (top mantissa bit set) for ``ieee``, all ones for ``fn``, and for
        a format without NaN ml_dtypes' ``quiet_NaN()`` stand-in, the -0.0 code.
        """
        if self.nan == "ieee":
            return self.inf_code | (1 << (self.mant_bits - 1))  # type: ignore[operator]
        if self.nan == "fn":
            return (1 << (self.bits - 1)) - 1
        return self.sign_mask

    # ---- finfo-like values (derived) -------------------------------------------
    @property
    def min_exp(self) -> int:
        """Exponent of the smallest normal value: ``tiny == 2.0**min_exp``."""
        return 1 - self.bias

    @property
    def max_exp(self) -> int:
        """Exponent of the largest binade holding finite values."""
        return self._emax_field - self.bias

    @property
    def max(self) -> float:
        """Largest finite value (decoded from :attr:`max_code`)."""
        return float(decode_float(np.array([self.max_code], self.storage_dtype), self)[0])

    @property
    def tiny(self) -> float:
        """Smallest positive normal value, ``2**(1 - bias)``."""
        return 2.0 ** self.min_exp

    @property
    def smallest_subnormal(self) -> float:
        """Smallest positive value, ``2**(1 - bias - mant_bits)``."""
        return 2.0 ** (self.min_exp - self.mant_bits)

    @property
    def eps(self) -> float:
        """Distance from 1.0 to the next larger value, ``2**-mant_bits``."""
        return 2.0 ** -self.mant_bits

    def __repr__(self) -> str:
        return (f"FloatSpec({self.name!r}, exp_bits={self.exp_bits}, mant_bits={self.mant_bits}, "
                f"bias={self.bias}, nan={self.nan!r})")


FLOAT_SPECS: dict[str, FloatSpec] = {s.name: s for s in (
    FloatSpec("float16", 5, 10, 15, True, "ieee", encode_nan="payload", decode_nan="payload",
              aliases=("fp16", "half", "f16", "ieee_half")),
    FloatSpec("bfloat16", 8, 7, 127, True, "ieee", encode_nan="quiet", decode_nan="payload",
              aliases=("bf16",)),
    FloatSpec("float8_e4m3fn", 4, 3, 7, False, "fn",
              aliases=("fp8_e4m3", "fp8_e4m3fn", "e4m3", "e4m3fn", "f8e4m3fn")),
    FloatSpec("float8_e5m2", 5, 2, 15, True, "ieee",
              aliases=("fp8_e5m2", "e5m2", "f8e5m2")),
    FloatSpec("float6_e3m2fn", 3, 2, 3, False, "none",
              aliases=("fp6_e3m2", "e3m2", "e3m2fn", "f6e3m2fn")),
    FloatSpec("float6_e2m3fn", 2, 3, 1, False, "none",
              aliases=("fp6_e2m3", "e2m3", "e2m3fn", "f6e2m3fn")),
    FloatSpec("float4_e2m1fn", 2, 1, 1, False, "none",
              aliases=("fp4", "fp4_e2m1", "fp4_e2m1fn", "e2m1", "e2m1fn", "f4e2m1fn")),
)}

#: Every accepted name (canonical names and aliases, lower case) -> canonical name.
FLOAT_ALIASES: dict[str, str] = {
    **{alias: s.name for s in FLOAT_SPECS.values() for alias in s.aliases},
    **{name: name for name in FLOAT_SPECS},
}


def get_float_spec(fmt: str | FloatSpec) -> FloatSpec:
    """The :class:`FloatSpec` named ``fmt`` (canonical name or alias, any case).

    Note that ``"fp4"`` here is OCP ``float4_e2m1fn``; bitsandbytes' FP4 is a different
    table, :func:`refquant.dtypes.codebooks.get_codebook` ``("fp4")``.

    Parameters
    ----------
    fmt : str or FloatSpec
        A key or alias of :data:`FLOAT_SPECS` (any case; ``"fp8"`` is refused as ambiguous), or a
        FloatSpec (returned as is).

    Raises
    ------
    ValueError
        For an unknown name, listing the allowed ones.
    TypeError
        If ``fmt`` is neither a string nor a FloatSpec.
    """
    if isinstance(fmt, FloatSpec):
        return fmt
    if not isinstance(fmt, str):
        raise TypeError(f"fmt must be a format name (str) or FloatSpec, got {fmt!r} ({type(fmt).__name__})")
    if normalize_name(fmt) in ("fp8", "float8", "f8"):
        raise ValueError(f"fmt={fmt!r} is ambiguous: 8-bit floats are 'float8_e4m3fn' ('e4m3': weights and "
                         "activations) or 'float8_e5m2' ('e5m2': gradients); name one")
    try:
        return FLOAT_SPECS[FLOAT_ALIASES[normalize_name(fmt)]]
    except KeyError:
        raise ValueError(f"fmt={fmt!r} is not a known float format; allowed: "
                         f"{', '.join(FLOAT_SPECS)} (aliases: {', '.join(sorted(set(FLOAT_ALIASES) - set(FLOAT_SPECS)))})"
                         ) from None


# ---- encode ---------------------------------------------------------------------------

class _Binary(NamedTuple):
    """An IEEE 754 binary interchange format an input arrives in (float32 or float64)."""

    uint: type           # unsigned integer of the same width, holding the bit pattern
    exp_bits: int
    mant_bits: int
    bias: int

    @property
    def width(self) -> int:
        return 1 + self.exp_bits + self.mant_bits


_BINARY32 = _Binary(np.uint32, 8, 23, 127)
_BINARY64 = _Binary(np.uint64, 11, 52, 1023)


def _shift_right_rne(v: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    """``round_half_even(v / 2**shift)`` for unsigned ``v`` and ``1 <= shift < v``'s width."""
    t = v.dtype.type
    shift = np.asarray(shift, dtype=v.dtype)
    q = v >> shift
    rem = v - (q << shift)
    half = np.left_shift(t(1), shift - t(1))
    return q + ((rem > half) | ((rem == half) & ((q & t(1)) == 1))).astype(v.dtype)


def _encode_bits(u: np.ndarray, src: _Binary, spec: FloatSpec, saturate: bool) -> np.ndarray:
    """Codes for bit patterns ``u`` (``src.uint``) of ``src`` values; the heart of :func:`encode_float`.

    Every value of ``src`` is rounded once, from its exact value, to the nearest code
    (ties to even). The arithmetic stays in ``src.uint``, so float32 input costs 32-bit
    operations and float64 input is never narrowed to float32 first.
    """
    t = src.uint
    M, m = src.mant_bits, spec.mant_bits
    a = u & t((1 << (src.width - 1)) - 1)              # |x| as bits
    inf_bits = t(((1 << src.exp_bits) - 1) << M)

    # Normal results: move the exponent from the source's bias to the format's, then drop
    # the low M - m mantissa bits with round-half-even. A mantissa that rounds up past
    # all ones carries into the exponent, which is exactly the next binade.
    #   source: s eeeeeeee(eee) mmmmmmmmmm...m          (M = 23 or 52 mantissa bits)
    #   target: s   eee..e      mmm..m | dropped (rounded away) -> M - m bits
    rebias = t((src.bias - spec.bias) << M)
    mag = _shift_right_rne(np.maximum(a, rebias) - rebias, M - m)

    # Subnormal results (|x| below the format's smallest normal): count units of the
    # smallest subnormal 2**(min_exp - m), rounded half-even. With the significand
    # sig (M + 1 bits, implicit bit included) and exponent e, |x| = sig * 2**(e - M), so
    # the count is sig / 2**shift with shift = M + min_exp - m - e (> M - m here; a
    # shift of width - 1 or more gives 0, the significand being narrower). A count that
    # reaches 2**m is the smallest normal code, so the carry is again automatic.
    small = a < t((spec.min_exp + src.bias) << M)
    if small.any():
        s = a[small]
        e_field = s >> t(M)                                              # 0 for source subnormals
        sig = np.where(e_field > 0, (s & t((1 << M) - 1)) | t(1 << M), s)
        e_plus_bias = np.maximum(e_field, t(1))                          # source subnormals: e = 1 - bias
        shift = np.minimum(t(M + src.bias + spec.min_exp - m) - e_plus_bias, t(src.width - 1))
        mag[small] = _shift_right_rne(sig, shift)

    # Overflow after rounding; ±inf (and NaN, replaced below) land here too because the
    # source's top binade is past every format's.
    if saturate or spec.nan == "none":
        over_code = spec.max_code
    elif spec.has_inf:
        over_code = spec.inf_code
    else:
        over_code = spec.nan_code
    mag = np.where(mag > spec.max_code, t(over_code), mag)
    sign = (u >> t(src.width - 1)) << t(spec.bits - 1)
    code = mag | sign

    # NaN.
    is_nan = a > inf_bits
    if is_nan.any():
        if spec.encode_nan == "payload":
            payload = (a & t((1 << M) - 1)) >> t(M - m)
            payload = np.where(payload == 0, t(1), payload)               # keep it a NaN, as NumPy does
            nan = t(((1 << spec.exp_bits) - 1) << m) | payload | sign
        else:
            nan = t(spec.nan_code) ^ sign
        code = np.where(is_nan, nan, code)
    return code


def float_input(x: Any) -> np.ndarray:
    """``x`` as the float32 or float64 array :func:`encode_float` rounds (no copy when it is one).

    float16 and ml_dtypes bfloat16 arrays are widened to float32, which is exact; Python
    floats and lists are float64; a CPU torch tensor is its own dtype.

    Parameters
    ----------
    x : array_like of float
        float16, bfloat16, float32 or float64 values (Python floats and lists are float64); any shape.

    Raises
    ------
    TypeError
        Integer, boolean, complex or object input, or another float dtype.
    """
    import ml_dtypes

    arr = as_float_array("x", x, dtypes=(np.float32, np.float64, np.float16, ml_dtypes.bfloat16))
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)


def encode_float(x: Any, fmt: str | FloatSpec, *, saturate: bool = False, out: Any = None) -> np.ndarray:
    """Round float32 or float64 values to the format ``fmt`` and return the bit patterns.

    Parameters
    ----------
    x : array_like of float32 or float64 (float16 and bfloat16 are widened exactly), any shape
        Each value is rounded once, from its exact value, to the nearest code (ties to
        even): float64 input is *not* narrowed to float32 first (module docstring).
        Python floats and lists are float64 values.
    fmt : str or FloatSpec
        ``"float16"``, ``"bfloat16"``, ``"float8_e4m3fn"``, ``"float8_e5m2"``,
        ``"float4_e2m1fn"`` or an alias (``"fp16"``, ``"half"``, ``"bf16"``,
        ``"fp8_e4m3"``, ``"e4m3"``, ``"fp8_e5m2"``, ``"e5m2"``, ``"fp4"``, ``"e2m1"``, ...).
    saturate : bool, default False
        False: overflow and ±inf follow ml_dtypes (±inf, the NaN code for fn formats,
        ±max for e2m1). True: finite overflow and ±inf become ±max; NaN input is
        still encoded as NaN (as far as the format has one; e2m1 writes ∓0).
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of uint16 (16-bit formats) or uint8 (8- and 4-bit formats), shape of ``x``
        Round-to-nearest-even codes; equal to ``x.astype(float16).view(uint16)`` and
        to ml_dtypes' ``x.astype(ml_dtypes.<fmt>).view(uint8/uint16)`` (ml_dtypes >=
        0.7 for float64 ``x``), NaN patterns included.

    Raises
    ------
    TypeError
        If ``x`` is an integer, boolean, complex or object array, or ``saturate`` is not
        a bool.
    ValueError
        If ``fmt`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> encode_float(np.array([1.0, 65519.99, 65520.0], np.float32), "fp16")
    array([15360, 31743, 31744], dtype=uint16)
    >>> encode_float(np.array([464.0, 465.0, 1e9], np.float32), "e4m3", saturate=True)
    array([126, 126, 126], dtype=uint8)
    >>> encode_float(np.array([1 + 2**-11 + 2**-40]), "fp16")  # float64: one rounding, up
    array([15361], dtype=uint16)
    """
    spec = get_float_spec(fmt)
    if not isinstance(saturate, (bool, np.bool_)):
        raise TypeError(f"saturate must be a bool, got {saturate!r} ({type(saturate).__name__})")
    arr = float_input(x)
    src = _BINARY64 if arr.dtype == np.float64 else _BINARY32
    u = np.ascontiguousarray(arr).reshape(-1).view(src.uint)  # (n,)
    codes = _encode_bits(u, src, spec, bool(saturate)).astype(spec.storage_dtype).reshape(arr.shape)
    return into(out, codes, (x,))


# ---- decode ---------------------------------------------------------------------------

def decode_float(bits: Any, fmt: str | FloatSpec, *, out: Any = None) -> np.ndarray:
    """Decode bit patterns of format ``fmt`` to float32 (exact for every code).

    A lookup in the table of all ``2**bits`` codes, which is built once per format from
    the spec by integer manipulation (``_decode_table``).

    Parameters
    ----------
    bits : ndarray of uint16 (16-bit formats) or uint8 (8- and 4-bit formats), any shape
        As returned by :func:`encode_float`. Codes of the sub-byte formats must fit
        their width (float4_e2m1fn < 16, float6 < 64).
    fmt : str or FloatSpec
        Format name or alias, as for :func:`encode_float`.
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of float32, shape of ``bits``
        NaN codes decode as described in the module docstring (``decode_nan``).

    Raises
    ------
    TypeError
        If ``bits`` is not an array of the format's storage dtype (use
        :func:`from_ml_dtypes` for ml_dtypes / float16 arrays).
    ValueError
        If ``fmt`` is unknown, or a 4-bit code is larger than 15.
    """
    spec = get_float_spec(fmt)
    return into(out, _decode_table(spec)[check_codes(bits, spec)], (bits,))


def check_codes(bits: Any, spec: FloatSpec) -> np.ndarray:
    """``bits`` if it is an ndarray of ``spec``'s storage dtype holding only ``spec.bits``-bit
    codes, else TypeError / ValueError (the argument rule of :func:`decode_float`)."""
    if not isinstance(bits, np.ndarray) or bits.dtype != spec.storage_dtype:
        got = f"dtype {bits.dtype}" if isinstance(bits, np.ndarray) else type(bits).__name__
        raise TypeError(f"bits must be an ndarray of {spec.storage_dtype} for fmt={spec.name!r}, got {got}; "
                        "for float arrays use encode_float, for ml_dtypes arrays from_ml_dtypes")
    if spec.bits < 8 and bits.size and int(bits.max()) >> spec.bits:
        raise ValueError(f"bits contains {int(bits.max())}, but {spec.name} codes are {spec.bits}-bit "
                         f"(0..{(1 << spec.bits) - 1}); unpack packed bytes first")
    return bits


@functools.lru_cache(maxsize=None)
def _decode_table(spec: FloatSpec) -> np.ndarray:
    """float32 value of every code of ``spec`` (2**bits entries), computed from the spec."""
    m = spec.mant_bits
    c = np.arange(1 << spec.bits, dtype=np.int64)
    sign = (c >> (spec.bits - 1)) << 31
    mag_code = c & (spec.sign_mask - 1)
    expf = mag_code >> m
    mant = c & ((1 << m) - 1)

    # Normal codes: the code's exponent|mantissa bits shifted to float32's positions,
    # plus the difference of the biases in the exponent field.
    normal = (mag_code << (23 - m)) + ((127 - spec.bias) << 23)
    # Subnormal codes: mant * 2**(min_exp - m), exact in float32 (also for bfloat16,
    # whose subnormals are float32 subnormals).
    unit = np.float32(2.0 ** (spec.min_exp - m))
    subnormal = (mant.astype(np.float32) * unit).view(np.uint32).astype(np.int64)
    mag = np.where(expf == 0, subnormal, normal)

    ones = (1 << spec.exp_bits) - 1
    if spec.nan == "ieee":
        is_inf = (expf == ones) & (mant == 0)
        is_nan = (expf == ones) & (mant != 0)
        mag = np.where(is_inf, 0x7F800000, mag)
    elif spec.nan == "fn":
        is_nan = (expf == ones) & (mant == (1 << m) - 1)
    else:
        is_nan = np.zeros(c.shape, bool)
    if spec.decode_nan == "payload":
        nan = 0x7F800000 | (mant << (23 - m))
    else:
        nan = np.full(c.shape, 0x7FC00000, np.int64)
    mag = np.where(is_nan, nan, mag)
    table = (mag | sign).astype(np.uint32).view(np.float32)
    table.flags.writeable = False
    return table


# ---- ml_dtypes interop ----------------------------------------------------------------

def _ml_dtype(spec: FloatSpec) -> np.dtype:
    if spec.name == "float16":
        return np.dtype(np.float16)
    import ml_dtypes  # runtime dependency for interop only

    if not hasattr(ml_dtypes, spec.name):
        from refquant.errors import UnsupportedError

        raise UnsupportedError(f"the installed ml_dtypes {ml_dtypes.__version__} has no {spec.name} type "
                               "(ml_dtypes 0.5 added it); upgrade ml_dtypes, or use decode_float")
    return np.dtype(getattr(ml_dtypes, spec.name))


def to_ml_dtypes(bits: Any, fmt: str | FloatSpec) -> np.ndarray:
    """View bit patterns as the matching NumPy / ml_dtypes array (no copy).

    Parameters
    ----------
    bits : ndarray of the format's storage dtype (see :func:`decode_float`)
    fmt : str or FloatSpec

    Returns
    -------
    ndarray of numpy.float16 or ``ml_dtypes.<fmt>``
        A view sharing memory with ``bits`` (float4_e2m1fn: one code per byte).

    Raises
    ------
    TypeError, ValueError
        As :func:`decode_float`.
    """
    spec = get_float_spec(fmt)
    if not isinstance(bits, np.ndarray) or bits.dtype != spec.storage_dtype:
        got = f"dtype {bits.dtype}" if isinstance(bits, np.ndarray) else type(bits).__name__
        raise TypeError(f"bits must be an ndarray of {spec.storage_dtype} for fmt={spec.name!r}, got {got}")
    if spec.bits < 8 and bits.size and int(bits.max()) >> spec.bits:
        raise ValueError(f"bits contains {int(bits.max())}, but {spec.name} codes are 0..{(1 << spec.bits) - 1}")
    return bits.view(_ml_dtype(spec))


def from_ml_dtypes(arr: Any) -> tuple[np.ndarray, FloatSpec]:
    """Bit patterns and format of a NumPy float16 or ml_dtypes array (no copy).

    Parameters
    ----------
    arr : ndarray of numpy.float16, ml_dtypes.bfloat16, float8_e4m3fn, float8_e5m2,
        float6_e3m2fn, float6_e2m3fn or float4_e2m1fn

    Returns
    -------
    bits : ndarray of the format's storage dtype, a view of ``arr``
    spec : FloatSpec

    Raises
    ------
    TypeError
        If ``arr`` is not an array of one of those dtypes.
    """
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"arr must be an ndarray of float16 or an ml_dtypes float type, got {type(arr).__name__}")
    name = "float16" if arr.dtype == np.float16 else arr.dtype.name
    if name not in FLOAT_SPECS or _ml_dtype(FLOAT_SPECS[name]) != arr.dtype:
        raise TypeError(f"arr has dtype {arr.dtype}; allowed: {', '.join(FLOAT_SPECS)}")
    spec = FLOAT_SPECS[name]
    return arr.view(spec.storage_dtype), spec
