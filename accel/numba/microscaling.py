"""OCP Microscaling (MX v1.0) and NVIDIA NVFP4 as Numba kernels.

Same contract as :func:`refquant.formats.mx.mx_quantize` / ``mx_dequantize`` and
:func:`refquant.formats.nvfp4.nvfp4_quantize` / ``nvfp4_dequantize``, on arguments prepared
by :mod:`refquant.prepare.microscaling`. The scale rules are kernels here; the element
casts are the Numba float codecs of :mod:`accel.numba.floats` (round to nearest even,
saturating), the same ones the ``encode_float`` op uses, so every byte is the reference's:

- MX (section 6.3): the shared exponent ``floor(log2 amax) - emax_elem`` is read from the
  float32 bits of the block's absolute maximum (no ``log2``), clamped to E8M0's -127, and a
  NaN/inf block gets the NaN scale 0xFF and zero codes; ``V / X`` is the float64 product
  ``x · 2**-shared`` (exact) rounded once to float32, as ``ldexp`` rounds;
- NVFP4 (NVIDIA Model Optimizer ``NVFP4QTensor``): ``s = block_amax / (6 · g)``, 1 where 0,
  at least 2**-9 (NaN kept, as ``np.maximum``), cast to E4M3; codes of ``|x / d|`` with the
  sign bit of the float32 quotient (``d = e4m3(s) · g``);
- decoding multiplies a 256-entry table of element values by the block's float32 scale
  (one rounding).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from accel.numba import floats
from accel.numba.gguf_math import f32_bits, gkernel
from refquant.dtypes.floatspec import decode_float, get_float_spec
from refquant.formats.mx import get_mx_format

__all__ = ["mx_quantize", "mx_dequantize", "nvfp4_quantize", "nvfp4_dequantize"]

_F32 = np.float32
_E2M1 = get_float_spec("float4_e2m1fn")
_E4M3 = get_float_spec("float8_e4m3fn")
_E2M1_MAX = _F32(_E2M1.max)
_SCALE_RANGE = _F32(_E2M1.max * _E4M3.max)          # 2688
_MIN_BLOCK_SCALE = _F32(_E4M3.smallest_subnormal)   # 2**-9
_INT8_FRAC_BITS = 6                                  # MXINT8 elements are int8 * 2**-6


@gkernel
def _mx_scale_blocks(x, emax, is_int8, scales, v):  # type: ignore[no-untyped-def]
    """Per block of x float32 (nb, k): the E8M0 code into ``scales`` (nb,) and ``V / X`` into
    ``v`` float32 (nb, k) (for MXINT8 already ``rint(64 V / X)`` clamped to ±127)."""
    for b in prange(x.shape[0]):
        amax = _F32(0.0)
        bad = False
        for i in range(x.shape[1]):
            a = np.abs(x[b, i])
            bad |= not (a < np.inf)                          # NaN or inf
            amax = a if a > amax else amax
        if bad:
            scales[b] = 0xFF
            for i in range(x.shape[1]):
                v[b, i] = _F32(0.0)
            continue
        bits = f32_bits(amax)
        e = (bits >> 23) & 0xFF
        if e > 0:
            fl = e - 127
        else:                                                # subnormal: position of the leading one
            m = bits & 0x7FFFFF
            p = 0
            while (m >> (p + 1)) != 0:
                p += 1
            fl = p - 149
        shared = max(fl - emax, -127) if amax > 0 else -127
        scales[b] = np.uint8(shared + 127)
        factor = math.ldexp(1.0, -shared)                    # float64, exact
        for i in range(x.shape[1]):
            q = _F32(np.float64(x[b, i]) * factor)            # one rounding, as ldexp
            if is_int8:
                r = np.rint(q * _F32(64.0))
                q = min(max(r, _F32(-127.0)), _F32(127.0))
            v[b, i] = q


def mx_quantize(x: np.ndarray, fmt: str, *, out: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Backend op :func:`refquant.formats.mx.mx_quantize` (prepared: C-contiguous float32,
    last axis a multiple of 32, ``fmt`` a format name; ``out`` the scales (..., k) and codes
    (..., 32k) uint8 arrays)."""
    f = get_mx_format(fmt)
    blocks = x.reshape(-1, f.block_size)
    scales, codes = out[0].reshape(-1), out[1].reshape(blocks.shape)          # views: out is C-contiguous
    v = np.empty(blocks.shape, _F32)
    if blocks.shape[0]:
        _mx_scale_blocks(blocks, f.emax_elem, f.spec is None, scales, v)
    if f.spec is None:
        codes[...] = v.astype(np.int8).view(np.uint8)
    else:
        floats.encode_float(v, f.spec, saturate=True, out=codes)
    return out


@gkernel
def _scaled_lookup(codes, scales, table, out):  # type: ignore[no-untyped-def]
    """``out[b, i] = table[codes[b, i]] * scales[b]`` in float32 (one rounding)."""
    for b in prange(codes.shape[0]):
        s = scales[b]
        for i in range(codes.shape[1]):
            out[b, i] = table[codes[b, i]] * s


def _e8m0_values() -> np.ndarray:
    """float32 value of each E8M0 byte: 2**(c - 127), 0xFF NaN (code 0 is the subnormal 2**-127)."""
    c = np.arange(256, dtype=np.uint32)
    bits = np.where(c == 0, np.uint32(0x00400000), c << np.uint32(23))
    return np.where(c == 255, _F32(np.nan), bits.view(_F32)).astype(_F32)


_E8M0_VALUES = _e8m0_values()


def _element_table(spec_name: str | None, bits: int) -> np.ndarray:
    """float32 value of every code byte (codes beyond ``bits`` were refused by preparation)."""
    if spec_name is None:
        return np.ldexp(np.arange(256, dtype=np.uint8).view(np.int8).astype(_F32), -_INT8_FRAC_BITS).astype(_F32)
    codes = np.arange(256, dtype=np.uint8) & np.uint8((1 << bits) - 1)
    return decode_float(codes, get_float_spec(spec_name))


_TABLES: dict[str, np.ndarray] = {}


def mx_dequantize(scales: np.ndarray, codes: np.ndarray, fmt: str, *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.formats.mx.mx_dequantize` (prepared: uint8, one scale per
    32 codes, codes within the element width; ``out`` float32 of codes' shape)."""
    f = get_mx_format(fmt)
    table = _TABLES.get(f.name)
    if table is None:
        table = _TABLES[f.name] = _element_table(None if f.spec is None else f.spec.name, f.bits)
    blocks = codes.reshape(-1, f.block_size)
    if blocks.shape[0]:
        _scaled_lookup(blocks, _E8M0_VALUES[scales.reshape(-1)], table, out.reshape(blocks.shape))
    return out


@gkernel
def _abs_max(x, part):  # type: ignore[no-untyped-def]
    """Per-chunk absolute maxima of a flat float32 array into ``part`` (exact: max is)."""
    n = x.size
    chunk = (n + part.size - 1) // part.size
    for c in prange(part.size):
        m = _F32(0.0)
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            a = np.abs(x[i])
            m = a if a > m else m
        part[c] = m


@gkernel
def _nvfp4_block_scales(x, six_g, s):  # type: ignore[no-untyped-def]
    """``max(where(s == 0, 1, s), 2**-9)`` with ``s = block_amax / (6 g)`` (a NaN stays NaN)."""
    for b in prange(x.shape[0]):
        m = _F32(0.0)
        for i in range(x.shape[1]):
            a = np.abs(x[b, i])
            m = a if a > m else m
        t = m / six_g
        t = _F32(1.0) if t == 0 else t
        s[b] = t if (t != t or t > _MIN_BLOCK_SCALE) else _MIN_BLOCK_SCALE


@gkernel
def _nvfp4_divide(x, d, mag, neg):  # type: ignore[no-untyped-def]
    """``v = x / d`` per block: |v| into ``mag``, 8 into ``neg`` where v's sign bit is set and v != 0."""
    for b in prange(x.shape[0]):
        for i in range(x.shape[1]):
            v = x[b, i] / d[b]
            mag[b, i] = np.abs(v)
            neg[b, i] = np.uint8(8) if (f32_bits(v) < 0 and v != 0) else np.uint8(0)


_E4M3_VALUES = decode_float(np.arange(256, dtype=np.uint8), _E4M3)
_E2M1_VALUES = decode_float(np.arange(256, dtype=np.uint8) & np.uint8(15), _E2M1)


def _amax(x: np.ndarray) -> float:
    flat = x.reshape(-1)
    if not flat.size:
        return 0.0
    part = np.empty(min(flat.size, 256), _F32)
    _abs_max(flat, part)
    return float(part.max())


def nvfp4_quantize(x: np.ndarray, *, global_amax: float | None = None,
                   out: tuple[np.ndarray, np.ndarray, None]) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """Backend op :func:`refquant.formats.nvfp4.nvfp4_quantize` (prepared: finite C-contiguous
    float32, last axis a multiple of 16, ``global_amax`` a float >= 0 or None; ``out`` the
    packed (..., 8k) and block scales (..., k) uint8 arrays, and None for the scalar)."""
    amax = _F32(_amax(x) if global_amax is None else global_amax)
    g = _F32(1.0) if amax == 0 else _F32(amax / _SCALE_RANGE)
    blocks = x.reshape(-1, 16)
    s = np.empty(blocks.shape[0], _F32)
    packed, scales = out[0], out[1].reshape(-1)
    mag = np.empty(blocks.shape, _F32)
    neg = np.empty(blocks.shape, np.uint8)
    codes = np.empty(blocks.shape, np.uint8)
    if blocks.shape[0]:
        with np.errstate(over="ignore"):
            six_g = _F32(_E2M1_MAX * g)
        _nvfp4_block_scales(blocks, six_g, s)
        floats.encode_float(s, _E4M3, saturate=True, out=scales)
        with np.errstate(over="ignore"):
            d = _E4M3_VALUES[scales] * g                                  # float32 products
        _nvfp4_divide(blocks, d, mag, neg)
        floats.encode_float(mag, _E2M1, saturate=True, out=codes)
        codes |= neg
    q = codes.reshape(x.shape)
    np.bitwise_or(q[..., 0::2], q[..., 1::2] << np.uint8(4), out=packed)
    return packed, out[1], g


def nvfp4_dequantize(packed: np.ndarray, block_scales: np.ndarray, global_scale: np.float32, *,
                     out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.formats.nvfp4.nvfp4_dequantize` (prepared: two codes a byte,
    one E4M3 scale per 16 values, ``global_scale`` float32; ``out`` float32 (..., 16k))."""
    q = np.stack([packed & np.uint8(0xF), packed >> np.uint8(4)], axis=-1).reshape(packed.shape[:-1] + (-1,))
    blocks = q.reshape(-1, 16)
    if blocks.shape[0]:
        with np.errstate(over="ignore"):
            d = _E4M3_VALUES[block_scales.reshape(-1)] * _F32(global_scale)
        _scaled_lookup(blocks, d, _E2M1_VALUES, out.reshape(blocks.shape))
    return out
