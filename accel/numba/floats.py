"""fp16 / bf16 / fp8 / fp4 encode and decode as Numba kernels.

Numba cannot take float16 / bfloat16 arrays, so everything works on bit patterns:
the float32 input is viewed as uint32 and each code is built with explicit
round-to-nearest-even integer arithmetic, the same rule as
:func:`refquant.dtypes.floatspec.encode_float` (read that module for the derivation;
the format's constants come from its :class:`FloatSpec`, never typed in here).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from accel.numba._jit import helper, kernel
from refquant.dtypes.floatspec import FloatSpec, get_float_spec


@helper
def _rne_shift(v, shift):  # type: ignore[no-untyped-def]
    q = v >> shift
    rem = v - (q << shift)
    half = np.int64(1) << (shift - 1)
    if rem > half or (rem == half and (q & 1) == 1):
        q += 1
    return q


@kernel
def _encode(u, out, m, bias, bits, exp_bits, min_exp, max_code, over_code, payload_nan, nan_code):  # type: ignore[no-untyped-def]
    rebias = np.int64(127 - bias) << 23
    min_normal_bits = np.int64(min_exp + 127) << 23
    for i in prange(u.size):
        x = np.int64(u[i])
        sign = x >> 31
        a = x & 0x7FFFFFFF
        if a > 0x7F800000:  # NaN
            if payload_nan:
                p = (a & 0x7FFFFF) >> (23 - m)
                if p == 0:
                    p = 1
                code = (((np.int64(1) << exp_bits) - 1) << m) | p | (sign << (bits - 1))
            else:
                code = nan_code ^ (sign << (bits - 1))
        else:
            if a == 0x7F800000:
                mag = over_code
            else:
                if a >= min_normal_bits:
                    mag = _rne_shift(a - rebias, 23 - m)
                else:
                    e32 = a >> 23
                    if e32 > 0:
                        sig = (a & 0x7FFFFF) | 0x800000
                        e = e32 - 127
                    else:
                        sig = a & 0x7FFFFF
                        e = np.int64(-126)
                    shift = 23 + min_exp - m - e
                    if shift > 40:
                        shift = 40
                    mag = _rne_shift(sig, shift)
                if mag > max_code:
                    mag = over_code
            code = mag | (sign << (bits - 1))
        out[i] = code


@helper
def _subnormal_bits(mant, m, min_exp):  # type: ignore[no-untyped-def]
    """float32 bits of ``mant * 2**(min_exp - m)`` (exact: a format subnormal)."""
    if mant == 0:
        return np.int64(0)
    p = np.int64(0)                      # position of the leading one
    while (mant >> (p + 1)) != 0:
        p += 1
    e = p + min_exp - m + 127            # float32 exponent field of the result
    if e >= 1:
        return (e << 23) | ((mant - (np.int64(1) << p)) << (23 - p))
    return mant << (149 + min_exp - m)   # a float32 subnormal itself (bfloat16)


@kernel
def _decode(c, out, m, bias, bits, exp_bits, min_exp, nan_kind, payload_nan):  # type: ignore[no-untyped-def]
    # nan_kind: 0 = ieee (inf + NaN), 1 = fn (all-ones is NaN), 2 = none
    ones = (np.int64(1) << exp_bits) - 1
    mant_mask = (np.int64(1) << m) - 1
    for i in prange(c.size):
        v = np.int64(c[i])
        sign = (v >> (bits - 1)) << 31
        expf = (v >> m) & ones
        mant = v & mant_mask
        if expf == 0:
            mag = _subnormal_bits(mant, m, min_exp)
        else:
            mag = ((expf - bias + 127) << 23) | (mant << (23 - m))
        is_nan = False
        if nan_kind == 0 and expf == ones:
            if mant == 0:
                mag = 0x7F800000
            else:
                is_nan = True
        elif nan_kind == 1 and expf == ones and mant == mant_mask:
            is_nan = True
        if is_nan:
            mag = (0x7F800000 | (mant << (23 - m))) if payload_nan else 0x7FC00000
        out[i] = np.uint32(mag | sign)


def _spec_args(spec: FloatSpec, saturate: bool) -> tuple:
    if saturate or spec.nan == "none":
        over = spec.max_code
    elif spec.has_inf:
        over = spec.inf_code
    else:
        over = spec.nan_code
    return (spec.mant_bits, spec.bias, spec.bits, spec.exp_bits, spec.min_exp, spec.max_code, over,
            spec.encode_nan == "payload", spec.nan_code)


def encode_float(x, fmt, *, saturate=False):  # type: ignore[no-untyped-def]
    """Backend op: same contract as :func:`refquant.dtypes.floatspec.encode_float`."""
    from refquant._validate import as_float_array

    spec = get_float_spec(fmt)
    if not isinstance(saturate, (bool, np.bool_)):
        raise TypeError(f"saturate must be a bool, got {saturate!r} ({type(saturate).__name__})")
    arr = as_float_array("x", x, dtypes=(np.float32, np.float64))
    if arr.dtype == np.float64:
        with np.errstate(over="ignore", invalid="ignore"):
            arr = arr.astype(np.float32)
    u = np.ascontiguousarray(arr).reshape(-1).view(np.uint32)
    out = np.empty(u.size, dtype=spec.storage_dtype)
    _encode(u, out, *_spec_args(spec, bool(saturate)))
    return out.reshape(arr.shape)


def decode_float(bits, fmt):  # type: ignore[no-untyped-def]
    """Backend op: same contract as :func:`refquant.dtypes.floatspec.decode_float`."""
    spec = get_float_spec(fmt)
    if not isinstance(bits, np.ndarray) or bits.dtype != spec.storage_dtype:
        got = f"dtype {bits.dtype}" if isinstance(bits, np.ndarray) else type(bits).__name__
        raise TypeError(f"bits must be an ndarray of {spec.storage_dtype} for fmt={spec.name!r}, got {got}")
    if spec.bits < 8 and bits.size and int(bits.max()) >> spec.bits:
        raise ValueError(f"bits contains {int(bits.max())}, but {spec.name} codes are {spec.bits}-bit")
    c = np.ascontiguousarray(bits).reshape(-1)
    out = np.empty(c.size, dtype=np.uint32)
    nan_kind = {"ieee": 0, "fn": 1, "none": 2}[spec.nan]
    _decode(c, out, spec.mant_bits, spec.bias, spec.bits, spec.exp_bits, spec.min_exp, nan_kind,
            spec.decode_nan == "payload")
    return out.view(np.float32).reshape(bits.shape)
