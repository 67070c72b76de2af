"""ggml's scalar arithmetic, vectorized and bit-faithful.

ggml's quantizers are C on float32. To reproduce their bytes, every helper here keeps
the rules of the oracle build (x86-64 ggml-base, no FMA):

- every intermediate is float32, one rounding per operation, no fused multiply-add;
- sums run one element at a time in index order from 0 (:func:`seq_sum`), never pairwise;
- the max scans use strict comparisons, so the first element wins a tie
  (:func:`signed_absmax`, :func:`first_min`, :func:`first_max`);
- integer rounding uses ggml's own :func:`nearest_int`, C ``roundf`` (:func:`roundf`), or a
  truncating C cast (:func:`c_int`), as the C line being reproduced does.

References: ``ggml-quants.c`` (``nearest_int``, the block quantizers) and ``ggml-impl.h``
(``ggml_compute_fp32_to_fp16``, ``ggml_compute_fp32_to_bf16``, ``ggml_e8m0_to_fp32_half``)
of ggml-org/ggml @ d99724f2.
"""

from __future__ import annotations

import numpy as np

__all__: list[str] = []  # internal module

F32 = np.float32
GROUP_MAX_EPS = F32(1e-15)  # ggml-quants.c: blocks with abs max below this are "all zero"


def f32(value: float) -> np.float32:
    """A C float literal (``0.1f``): the float32 nearest to ``value``."""
    return F32(value)


# --- conversions ----------------------------------------------------------------------

def fp32_to_fp16(x: np.ndarray) -> np.ndarray:
    """ggml's ``GGML_FP32_TO_FP16``: round to nearest even, subnormals kept, overflow to inf.

    Finite values round exactly as NumPy's float32 -> float16 cast; every NaN
    becomes the quiet NaN 0x7E00 with the input's sign (NumPy would keep payload bits).

    Parameters
    ----------
    x : ndarray of float32

    Returns
    -------
    ndarray of float16, same shape
    """
    x = np.asarray(x, dtype=F32)
    with np.errstate(over="ignore", invalid="ignore"):
        h = x.astype(np.float16)
    nan = np.isnan(x)
    if nan.any():
        bits = h.view(np.uint16).copy()
        sign = (x.view(np.uint32) >> 16).astype(np.uint16) & np.uint16(0x8000)
        bits[nan] = np.uint16(0x7E00) | sign[nan]
        h = bits.view(np.float16)
    return h


def fp16_to_fp32(h: np.ndarray) -> np.ndarray:
    """``GGML_FP16_TO_FP32``: exact widening (float16 array or uint16 bits in, float32 out)."""
    h = np.asarray(h)
    if h.dtype == np.uint16:
        h = h.view(np.float16)
    return h.astype(F32)


def fp32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """``ggml_compute_fp32_to_bf16`` (ggml-impl.h, ggml-org/ggml @ d99724f2): round to
    nearest even with the integer trick (u + 0x7FFF + ((u >> 16) & 1)) >> 16; a NaN keeps
    its sign and top payload bits and gets the quiet bit (``(u >> 16) | 0x40``).
    Returns uint16 bit patterns.

    The rounding is done in place on one uint32 temporary (the input is not written);
    uint32 wrap-around can only happen for NaN patterns, which are then overwritten.
    """
    x = np.asarray(x, dtype=F32)
    u = x.view(np.uint32)
    r = u >> np.uint32(16)
    r &= np.uint32(1)
    r += np.uint32(0x7FFF)
    r += u
    r >>= np.uint32(16)
    nan = np.isnan(x)
    if nan.any():
        r[nan] = (u[nan] >> np.uint32(16)) | np.uint32(0x40)
    return r.astype(np.uint16)


def bf16_bits_to_fp32(bits: np.ndarray) -> np.ndarray:
    """bf16 bit patterns -> float32 (``bits << 16``, exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(F32)


def e8m0_to_fp32_half(e: np.ndarray) -> np.ndarray:
    """``ggml_e8m0_to_fp32_half``: 2^(e - 128) as float32 (half the E8M0 scale, because
    ``kvalues_mxfp4`` holds doubled E2M1 values); e = 0, 1 give the subnormals 2^-128, 2^-127."""
    e = np.asarray(e, dtype=np.uint8).astype(np.uint32)
    bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - np.uint32(1)) << np.uint32(23))
    return bits.astype(np.uint32).view(F32)


# --- rounding ---------------------------------------------------------------------------

def nearest_int(x: np.ndarray) -> np.ndarray:
    """ggml's ``nearest_int``: add 1.5 * 2^23 in float32 and read the low mantissa bits.

    Rounds half to even for abs(x) <= 4194303 (ggml asserts that range); outside it the
    bit trick is reproduced as is. Returns int32.
    """
    v = np.asarray(x, dtype=F32) + F32(12582912.0)
    return (v.view(np.int32) & np.int32(0x007FFFFF)) - np.int32(0x00400000)


def roundf(x: np.ndarray) -> np.ndarray:
    """C ``roundf``: half away from zero, as float32.

    Written as sign(x) * (floor(|x|) + floor(2 * frac(|x|))) so that 0.49999997 rounds to 0
    (``floor(x + 0.5)`` would give 1).
    """
    x = np.asarray(x, dtype=F32)
    a = np.abs(x)
    fl = np.floor(a)
    return np.copysign(fl + np.floor(F32(2) * (a - fl)), x).astype(F32)


def c_int(x: np.ndarray) -> np.ndarray:
    """A C cast float -> int (``(int)v``, and the ``(int8_t)v`` / ``(uint8_t)v`` casts that
    x86-64 compiles as ``cvttss2si`` followed by keeping the low byte): truncation toward
    zero; NaN and out-of-range values give INT32_MIN, as that instruction does. Returns int32.
    Take ``.astype(np.int8)`` / ``.astype(np.uint8)`` of the result for the byte casts
    (NumPy's integer narrowing keeps the low byte, like the C code generated).
    """
    x = np.asarray(x, dtype=F32)
    # two whole-array reductions (NaN propagates into both) decide the common all-in-range case
    if x.size == 0 or (x.min() > F32(-2147483648.0) and x.max() < F32(2147483648.0)):
        return x.astype(np.int32)  # float -> int casts truncate toward zero
    ok = np.abs(x) < F32(2147483648.0)  # False for NaN and +-inf too
    return np.where(ok, np.where(ok, x, F32(0)).astype(np.int32), np.int32(-2147483648))


# --- sums and scans ---------------------------------------------------------------------

def seq_sum(a: np.ndarray, *, from_zero: bool = True) -> np.ndarray:
    """Sum over the last axis one element at a time in index order, in float32.

    ``np.add.accumulate`` is a sequential loop, so its last column is the C loop
    ``s += a[i]``. With ``from_zero`` the C loop starts from ``s = 0`` (the usual case):
    adding +0 at the end turns an all-(-0) sum into +0, exactly as 0 + (-0) does first in C,
    and changes nothing else. ``from_zero=False`` starts from ``a[0]`` (make_qkx3_quants'
    ``sum_w``).

    Parameters
    ----------
    a : ndarray of float32, shape (..., k), k >= 1

    Returns
    -------
    ndarray of float32, shape (...)
    """
    a = np.asarray(a, dtype=F32)
    if a.shape[-1] <= 64 and a.ndim > 1:
        # the same loop written out: faster than accumulate along a short last axis
        total = a[..., 0].copy()
        for j in range(1, a.shape[-1]):
            total += a[..., j]
    else:
        total = np.add.accumulate(a, axis=-1, dtype=F32)[..., -1]
    return total + F32(0) if from_zero else total


def signed_absmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scan ``if (amax < fabsf(v)) { amax = fabsf(v); max = v; }`` from amax = max = 0.

    Returns ``(max, amax)`` over the last axis: the signed element of largest magnitude
    (the first one on a tie, so +a before -a when +a comes first) and its magnitude; an
    all-zero block (of either sign) gives max = +0.0. NaN elements are skipped, as the C
    comparison skips them (they arise from overflowing sums in the scale searches).
    """
    ax = np.abs(x)
    nan = np.isnan(ax)
    if nan.any():  # C's `amax < fabsf(v)` is false for NaN: skip them (np.argmax would pick them)
        ax = np.where(nan, F32(-1), ax)
    idx = np.argmax(ax, axis=-1)[..., None]
    amax = np.take_along_axis(ax, idx, axis=-1)[..., 0]
    mx = np.take_along_axis(x, idx, axis=-1)[..., 0]
    return np.where(amax > 0, mx, F32(0)).astype(F32), np.maximum(amax, F32(0)).astype(F32)


def first_min(x: np.ndarray) -> np.ndarray:
    """``if (v < min) min = v`` over the last axis: the first minimal element (keeps the
    sign of a first -0.0 or +0.0, which ``np.min`` does not promise)."""
    return np.take_along_axis(x, np.argmin(x, axis=-1)[..., None], axis=-1)[..., 0]


def first_max(x: np.ndarray) -> np.ndarray:
    """``if (v > max) max = v`` over the last axis: the first maximal element."""
    return np.take_along_axis(x, np.argmax(x, axis=-1)[..., None], axis=-1)[..., 0]


# The same scans over blocks stored as columns: xt of shape (k, n) holds element j of block b
# at xt[j, b]. NumPy reduces axis 0 of such an array along contiguous memory (an order of
# magnitude faster than a scan of each short block), but max/min do not say which of two
# equal elements they return; the few blocks where that choice shows (a +a/-a tie, a zero
# whose sign is kept, a NaN) are redone with the scans above.

def signed_absmax_cols(xt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`signed_absmax` of each column of ``xt`` (k, n) -> ``(max, amax)``, float32 (n,)."""
    hi, lo = xt.max(axis=0), xt.min(axis=0)
    mx = np.where(hi > -lo, hi, lo)  # the extreme of larger magnitude
    mx = np.where(mx != 0, mx, F32(0))  # an all-zero block: +0.0
    redo = ((hi == -lo) & (hi != 0)) | np.isnan(hi)  # +a and -a: the first wins; NaN: skipped
    if redo.any():
        mx[redo] = signed_absmax(xt[:, redo].T)[0]
    return mx, np.abs(mx)


def first_min_cols(xt: np.ndarray) -> np.ndarray:
    """:func:`first_min` of each column of ``xt`` (k, n) -> float32 (n,)."""
    lo = xt.min(axis=0)
    redo = (lo == 0) | np.isnan(lo)  # the sign of a zero minimum is the first zero's
    if redo.any():
        lo[redo] = first_min(xt[:, redo].T)
    return lo


def first_max_cols(xt: np.ndarray) -> np.ndarray:
    """:func:`first_max` of each column of ``xt`` (k, n) -> float32 (n,)."""
    hi = xt.max(axis=0)
    redo = (hi == 0) | np.isnan(hi)
    if redo.any():
        hi[redo] = first_max(xt[:, redo].T)
    return hi


def safe_reciprocal(d: np.ndarray) -> np.ndarray:
    """``d ? 1.0f/d : 0.0f`` (±0 gives 0)."""
    d = np.asarray(d, dtype=F32)
    with np.errstate(divide="ignore"):
        return np.where(d != 0, F32(1) / np.where(d != 0, d, F32(1)), F32(0)).astype(F32)


def safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``den ? num/den : 0.0f`` in float32 (a NaN denominator counts as non-zero, as in C)."""
    num = np.asarray(num, dtype=F32)
    den = np.asarray(den, dtype=F32)
    nz = den != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(nz, num / np.where(nz, den, F32(1)), F32(0)).astype(F32)


# --- packing shared by several types -------------------------------------------------------

def pack_nibbles_halves(codes: np.ndarray) -> np.ndarray:
    """The Q4_0 nibble order: for 2h codes, byte j = code j (low) | code j+h (high).

    Parameters
    ----------
    codes : ndarray of int, shape (..., 2h), values 0..15 (h = 16 for Q4_0 / MXFP4, 8 for
        NVFP4's 16-element sub-blocks)
    Returns
    -------
    ndarray of uint8, shape (..., h)
    """
    c = np.asarray(codes).astype(np.uint8, copy=False)
    h = c.shape[-1] // 2
    # * 16 is << 4 on uint8 (the high bits drop out), and NumPy vectorizes it (not the shift)
    return (c[..., :h] & np.uint8(0x0F)) | (c[..., h:] * np.uint8(16))


def unpack_nibbles_halves(qs: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_nibbles_halves`: uint8 (..., h) -> uint8 codes (..., 2h)."""
    qs = np.asarray(qs, dtype=np.uint8)
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=-1)
