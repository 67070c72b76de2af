"""fp16 / bf16 / fp8 / fp4 encode and decode as Numba kernels.

Numba cannot take float16 / bfloat16 arrays, so everything works on bit patterns:
the float32 input is viewed as uint32 and each code is built with explicit
round-to-nearest-even integer arithmetic (float64 input is first rounded to odd in
float32, which keeps the final rounding single, see ``_float64_to_float32_odd``), the same rule as
:func:`refquant.dtypes.floatspec.encode_float` (read that module for the derivation;
the format's constants come from its :class:`FloatSpec`, never typed in here). The
generic kernels are branch-free (every case computed, one selected) so they vectorize.
Fast paths, chosen from the spec's fields: a format with float32's exponent (bfloat16)
is float32's top bits (round-to-nearest-even by one add, decode by one shift), and an
8-bit (or narrower) format decodes through a 256-entry table built by the generic decoder.
"""

from __future__ import annotations

import numpy as np
from numba import prange
from numba.cpython.unsafe.numbers import leading_zeros

from accel.numba._jit import helper, kernel
from refquant.dtypes.floatspec import FloatSpec, float_input, get_float_spec


@helper
def _rne_shift(v, shift):  # type: ignore[no-untyped-def]
    """``v >> shift`` rounded to nearest, ties to even (int32, 1 <= shift <= 25)."""
    q = v >> shift
    rem = v - (q << shift)
    half = np.int32(1) << (shift - 1)
    return q + np.int32((rem > half) | ((rem == half) & ((q & 1) == 1)))


@kernel(iterations=lambda u, *a: u.size)
def _encode(u, out, m, bias, bits, exp_bits, min_exp, max_code, over_code, payload_nan, nan_code):  # type: ignore[no-untyped-def]
    # Every case is computed and the right one selected (no branches), so the loop
    # vectorizes; all values fit int32 (subnormal shifts beyond 25 give 0 as 25 does).
    rebias = np.int32(127 - bias) << 23
    min_normal_bits = np.int32(min_exp + 127) << 23
    sign_bit = np.int32(bits - 1)
    nan_exp = ((np.int32(1) << exp_bits) - 1) << m
    for i in prange(u.size):
        x = np.int32(u[i])
        sign = (x >> 31) & 1
        a = x & np.int32(0x7FFFFFFF)
        normal = _rne_shift(a - rebias, np.int32(23 - m))
        e32 = a >> 23
        sig = (a & np.int32(0x7FFFFF)) | (np.int32(0x800000) if e32 > 0 else np.int32(0))
        e = e32 - 127 if e32 > 0 else np.int32(-126)
        sub = _rne_shift(sig, min(np.int32(23 + min_exp - m) - e, np.int32(25)))
        mag = normal if a >= min_normal_bits else sub
        mag = over_code if (mag > max_code) | (a == np.int32(0x7F800000)) else mag
        code = mag | (sign << sign_bit)
        if payload_nan:
            p = (a & np.int32(0x7FFFFF)) >> (23 - m)
            nan = nan_exp | (p if p != 0 else np.int32(1)) | (sign << sign_bit)
        else:
            nan = np.int32(nan_code) ^ (sign << sign_bit)
        out[i] = nan if a > np.int32(0x7F800000) else code


@kernel(iterations=lambda u, *a: u.size)
def _float64_to_float32_odd(u, out):  # type: ignore[no-untyped-def]
    """float64 bit patterns (uint64) -> float32 bit patterns (uint32) rounded to odd.

    Round to odd (Boldo & Melquiond, "Emulation of FMA and correctly rounded sums:
    proved algorithms using rounding to odd", IEEE Trans. Computers 57(4), 2008): truncate,
    then set the last bit when anything nonzero was dropped. Rounding that result to
    nearest-even in a format whose grid is at least 4x coarser than float32's everywhere
    (every FloatSpec: at most 10 mantissa bits, exponents within float32's) equals rounding
    the float64 value once, so the float32 kernels serve float64 input. Beyond float32's
    range the result is FLT_MAX (odd), which overflows every format as the value does.
    NaN keeps the top 23 mantissa bits (1 if they vanish), so float16's payload rule sees
    float64's top mantissa bits, as the reference's does.
    """
    for i in prange(u.size):
        x = u[i]
        sign = np.uint32(x >> np.uint64(63)) << np.uint32(31)
        a = x & np.uint64(0x7FFFFFFFFFFFFFFF)
        mant = a & np.uint64(0xFFFFFFFFFFFFF)
        e = np.int64(a >> np.uint64(52))                   # float64 exponent field, 0..2047
        # float32 normal range (field e - 896 in 1..254): keep 23 mantissa bits, OR the sticky bit
        sticky = np.uint64(1) if (mant & np.uint64(0x1FFFFFFF)) != 0 else np.uint64(0)
        normal = (np.uint64(max(e - 896, 0)) << np.uint64(23)) | (mant >> np.uint64(29)) | sticky
        # below it: count units of 2**-149 (|x| = sig * 2**(max(e, 1) - 1075)), truncated, sticky OR'd
        sig = mant | (np.uint64(1) << np.uint64(52) if e > 0 else np.uint64(0))
        shift = np.uint64(min(max(926 - max(e, 1), 0), 63))            # (only used below float32 normals)
        dropped = sig & ((np.uint64(1) << shift) - np.uint64(1))
        sub = (sig >> shift) | (np.uint64(1) if dropped != 0 else np.uint64(0))
        mag = np.uint32(normal if e >= 897 else sub)
        mag = np.uint32(0x7F7FFFFF) if e >= 1151 else mag           # past float32's range: FLT_MAX
        p = np.uint32(mant >> np.uint64(29))
        special = np.uint32(0x7F800000) | (p if p != 0 or mant == 0 else np.uint32(1))
        out[i] = sign | (special if e == 2047 else mag)


@kernel(iterations=lambda c, *a: c.size)
def _decode(c, out, m, bias, bits, exp_bits, min_exp, nan_kind, payload_nan):  # type: ignore[no-untyped-def]
    # nan_kind: 0 = ieee (inf + NaN), 1 = fn (all-ones is NaN), 2 = none. Branch-free
    # (selects), so the loop vectorizes. A subnormal code's value mant * 2**(min_exp - m)
    # is built from the position p of its leading one: exponent field p + min_exp - m + 127
    # (or, below float32's normal range (bfloat16), the bits themselves).
    ones = (np.int32(1) << exp_bits) - 1
    mant_mask = (np.int32(1) << m) - 1
    sub_exp = np.int32(min_exp - m + 127)
    for i in prange(c.size):
        v = np.int32(c[i])
        sign = (v >> (bits - 1)) << 31
        expf = (v >> m) & ones
        mant = v & mant_mask
        normal = ((expf - bias + 127) << 23) | (mant << (23 - m))
        p = np.int32(31) - np.int32(leading_zeros(np.uint32(mant | 1)))   # (mant == 0 is masked below)
        e = p + sub_exp
        sub = (e << 23) | ((mant - (np.int32(1) << p)) << (23 - p)) if e >= 1 else mant << ((sub_exp + 22) & 31)
        sub = sub if mant != 0 else np.int32(0)
        mag = sub if expf == 0 else normal
        all_ones = expf == ones
        is_inf = (nan_kind == 0) & all_ones & (mant == 0)
        is_nan = ((nan_kind == 0) & all_ones & (mant != 0)) | ((nan_kind == 1) & all_ones & (mant == mant_mask))
        nan = (np.int32(0x7F800000) | (mant << (23 - m))) if payload_nan else np.int32(0x7FC00000)
        mag = np.int32(0x7F800000) if is_inf else mag
        mag = nan if is_nan else mag
        out[i] = np.uint32(mag | sign)


@kernel(iterations=lambda u, *a: u.size)
def _encode_truncated(u, out, shift, max_code, over_code, nan_code, sign_bit):  # type: ignore[no-untyped-def]
    """Formats with float32's exponent (8 bits, bias 127: bfloat16): the code is float32's
    top bits rounded to nearest even, ``(a + 2**(shift-1) - 1 + lsb) >> shift``; that also
    rounds float32 subnormals and carries into the exponent (up to inf) correctly."""
    half = (np.uint32(1) << np.uint32(shift - 1)) - np.uint32(1)
    sh = np.uint32(shift)
    for i in prange(u.size):
        x = u[i]
        sign = x >> np.uint32(31)
        a = x & np.uint32(0x7FFFFFFF)
        mag = (a + half + ((a >> sh) & np.uint32(1))) >> sh
        mag = over_code if (mag > max_code) | (a == np.uint32(0x7F800000)) else mag
        code = mag | (sign << sign_bit)
        out[i] = (np.uint32(nan_code) ^ (sign << sign_bit)) if a > np.uint32(0x7F800000) else code


@kernel(iterations=lambda c, *a: c.size)
def _decode_truncated(c, out, shift):  # type: ignore[no-untyped-def]
    """Formats with float32's exponent whose NaN payloads decode as they are: the code is
    float32's top bits, ``code << shift``."""
    for i in prange(c.size):
        out[i] = np.uint32(c[i]) << np.uint32(shift)


@kernel(iterations=lambda words, *a: words.size)
def _decode_table(words, table, out):  # type: ignore[no-untyped-def]
    """8-bit codes read as uint64 words and unpacked with shifts: scalar lookups in the
    256-entry table of float32 bit patterns (no vector gathers)."""
    for pw in prange(words.size):
        w = np.int64(pw)
        v = words[w]
        for k in range(8):
            out[8 * w + k] = table[(v >> np.uint64(8 * k)) & np.uint64(0xFF)]


def _truncated(spec: FloatSpec) -> bool:
    """Whether ``spec`` is float32 with fewer mantissa bits (bfloat16)."""
    return spec.exp_bits == 8 and spec.bias == 127 and spec.nan == "ieee"


def _decode_args(spec: FloatSpec) -> tuple:
    nan_kind = {"ieee": 0, "fn": 1, "none": 2}[spec.nan]
    return (spec.mant_bits, spec.bias, spec.bits, spec.exp_bits, spec.min_exp, nan_kind, spec.decode_nan == "payload")


def _spec_args(spec: FloatSpec, saturate: bool) -> tuple:
    if saturate or spec.nan == "none":
        over = spec.max_code
    elif spec.has_inf:
        over = spec.inf_code
    else:
        over = spec.nan_code
    return (spec.mant_bits, spec.bias, spec.bits, spec.exp_bits, spec.min_exp, spec.max_code, over,
            spec.encode_nan == "payload", spec.nan_code)


def encode_float(x, spec, *, saturate=False, out):  # type: ignore[no-untyped-def]
    """Backend op :func:`refquant.dtypes.floatspec.encode_float` on prepared arguments
    (``refquant.prepare.floats``: float32 or float64 ``x`` C-contiguous, ``spec`` a FloatSpec,
    ``out`` of the spec's storage dtype and x's shape)."""
    spec = get_float_spec(spec)                         # a registered name or a FloatSpec
    if x.dtype == np.float64:
        # one rounding from the float64 value (the reference's rule), via round-to-odd
        u = np.empty(x.size, np.uint32)
        _float64_to_float32_odd(x.reshape(-1).view(np.uint64), u)
    else:
        u = x.reshape(-1).view(np.uint32)
    flat = out.reshape(-1)
    args = _spec_args(spec, saturate)
    if _truncated(spec) and spec.encode_nan == "quiet":
        _encode_truncated(u, flat, 23 - spec.mant_bits, np.uint32(spec.max_code), np.uint32(args[6]),
                          np.uint32(spec.nan_code), np.uint32(spec.bits - 1))
    else:
        _encode(u, flat, *args)
    return out


def decode_float(bits, spec, *, out):  # type: ignore[no-untyped-def]
    """Backend op :func:`refquant.dtypes.floatspec.decode_float` on prepared arguments
    (codes of the storage dtype within ``spec.bits``, C-contiguous; ``out`` float32)."""
    spec = get_float_spec(spec)
    c = bits.reshape(-1)
    res = out.reshape(-1).view(np.uint32)
    if _truncated(spec) and spec.decode_nan == "payload":
        _decode_truncated(c, res, 23 - spec.mant_bits)
    elif spec.bits <= 8:
        # every code decoded once into a 256-entry table (wider codes were refused by preparation)
        table = np.empty(256, np.uint32)
        _decode(np.arange(256, dtype=np.uint8) & np.uint8((1 << spec.bits) - 1), table, *_decode_args(spec))
        head = c.size - c.size % 8
        _decode_table(c[:head].view(np.uint64), table, res[:head])
        _decode(c[head:], res[head:], *_decode_args(spec))
    else:
        _decode(c, res, *_decode_args(spec))
    return out
