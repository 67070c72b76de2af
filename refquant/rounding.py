"""Rounding primitives, one meaning per name.

Bit-exactness with a tool depends on using the rounding that tool uses at each call
site. Every quantizer in refquant names one of these:

================  ===========================  ================================================
name              rule on an exact .5           used by
================  ===========================  ================================================
round_half_even   to the even neighbour         ``np.rint``/``np.round``, ``torch.round``, C
                                                ``rintf``/``nearbyint`` (default FP mode):
                                                torch.ao, bitsandbytes int8, GPTQ, AWQ, SpQR,
                                                BitNet reference code
round_half_away   away from zero                C ``roundf``/``lroundf``: ggml ``Q8_0``,
                                                ``Q8_1``, ``TQ1_0``, ``TQ2_0``
nearest_int       to even (via a float trick)   ggml ``nearest_int``: every K-quant, IQ4 scales
round_stochastic  (no ties: random)             stochastic rounding, ``floor(x + u)``
================  ===========================  ================================================

Examples
--------
>>> import numpy as np
>>> x = np.array([0.5, 1.5, 2.5, -0.5, -2.5], dtype=np.float32)
>>> round_half_even(x)
array([ 0.,  2.,  2., -0., -2.], dtype=float32)
>>> round_half_away(x)
array([ 1.,  2.,  3., -1., -3.], dtype=float32)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_float_array

__all__ = ["round_half_even", "round_half_away", "round_stochastic", "nearest_int", "NEAREST_INT_MAX"]

_FLOATS = (np.float16, np.float32, np.float64)

#: Largest ``abs(x)`` ggml's ``nearest_int`` handles (it asserts ``fabsf(fval) <= 4194303.f``).
NEAREST_INT_MAX = 4194303.0


def round_half_even(x: Any) -> np.ndarray:
    """Round to the nearest integer, ties to even (IEEE default; NumPy ``rint``).

    Parameters
    ----------
    x : array_like of float16, float32 or float64
        Python floats and lists become float64 (NumPy's default).

    Returns
    -------
    ndarray of the input's float dtype, same shape
        Integral values; ±0, ±inf and NaN are kept (``-0.4 -> -0.0``).

    Raises
    ------
    TypeError
        If ``x`` is not a floating-point array.

    References
    ----------
    IEEE 754-2019 roundTiesToEven; ``numpy.rint``; C ``nearbyintf`` in the default
    rounding mode.
    """
    arr = as_float_array("x", x, dtypes=_FLOATS)
    with np.errstate(invalid="ignore"):  # a signalling NaN raises the invalid flag; it stays NaN
        return np.rint(arr)


def round_half_away(x: Any) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (C ``roundf``).

    Computed without ``floor(x + 0.5)``, which is wrong twice: at 0.49999997
    (``x + 0.5`` rounds up to 1.0 in float32) and for odd integers at or above 2^23
    (``8388609 + 0.5`` rounds to 8388610). Here ``t = trunc(|x|)`` and the fraction
    ``|x| - t`` are both exact, so the only decision is ``fraction >= 0.5``.

    Parameters
    ----------
    x : array_like of float16, float32 or float64
        Python floats and lists become float64 (NumPy's default).

    Returns
    -------
    ndarray of the input's float dtype, same shape
        ``sign(x) * floor(|x| + 1/2)`` in exact arithmetic; the sign of zero follows
        ``x`` (``roundf(-0.4) == -0.0``); ±inf and NaN are kept.

    Raises
    ------
    TypeError
        If ``x`` is not a floating-point array.

    References
    ----------
    ISO C99 7.12.9.6 ``round``; gguf-py ``np_roundf`` (``quants.py``), the helper its
    ``Q8_0`` uses to match ggml's ``roundf``.
    """
    arr = as_float_array("x", x, dtypes=_FLOATS)
    # invalid: inf - inf for infinite inputs (the compare is then False, so inf stays
    # inf), and signalling NaNs (they stay NaN)
    with np.errstate(invalid="ignore"):
        a = np.abs(arr)
        t = np.trunc(a)
        up = (a - t) >= 0.5
        return np.copysign(t + up.astype(arr.dtype), arr)


def round_stochastic(x: Any, rng: np.random.Generator) -> np.ndarray:
    """Stochastic rounding: ``floor(x + u)`` with ``u ~ U[0, 1)`` drawn from ``rng``.

    ``x`` rounds up with probability equal to its fractional part, so the result is an
    unbiased estimate of ``x``: ``E[round_stochastic(x)] == x``. The sum ``x + u`` is
    never formed in floating point (it would itself round, biasing the result); the
    same event is computed exactly as ``floor(x) + (u < x - floor(x))``.

    Parameters
    ----------
    x : array_like of float16, float32 or float64
        Python floats and lists become float64 (NumPy's default).
    rng : numpy.random.Generator
        Source of ``u`` (one float64 draw per element, in C order). Global NumPy
        random state is never used, so equal seeds give equal results.

    Returns
    -------
    ndarray of the input's float dtype, same shape
        Integral values; ±inf and NaN are kept; integers stay unchanged.

    Raises
    ------
    TypeError
        If ``x`` is not a floating-point array, or ``rng`` is not a
        ``numpy.random.Generator`` (a seed, ``None`` or a ``RandomState`` is refused).

    References
    ----------
    Gupta et al., "Deep Learning with Limited Numerical Precision", ICML 2015, eq. 3.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), "
                        f"got {rng!r} ({type(rng).__name__})")
    arr = as_float_array("x", x, dtypes=_FLOATS)
    u = rng.random(arr.shape)  # float64 in [0, 1)
    with np.errstate(invalid="ignore"):  # inf - inf (the compare is then False: inf stays inf), sNaN
        f = np.floor(arr)
        up = u < (arr - f)
        return f + up.astype(arr.dtype)


def nearest_int(x: Any) -> np.ndarray:
    """ggml's ``nearest_int``: round a float32 to int32, ties to even.

    ggml adds 1.5 * 2^23 = 12582912.0f, so the float32 addition performs the rounding
    (round to nearest even), then reads the integer back out of the low 23 mantissa
    bits (``(bits & 0x007fffff) - 0x00400000``). It is only valid for
    ``abs(x) <= 4194303`` (:data:`NEAREST_INT_MAX`); ggml asserts that, and so does
    this function (ValueError). Inside that range it equals ``round_half_even`` of the
    float32 value; the float32 addition is spelled out so that a port can see why.

    Parameters
    ----------
    x : array_like of float32 (float64 is first rounded to float32, as in C)

    Returns
    -------
    ndarray of int32, same shape

    Raises
    ------
    TypeError
        If ``x`` is not a floating-point array.
    ValueError
        If any element is NaN, infinite or larger than 4194303 in magnitude.

    References
    ----------
    ggml ``src/ggml-quants.c``, ``static inline int nearest_int(float fval)``.
    """
    arr = as_float_array("x", x, dtypes=(np.float32, np.float64))
    with np.errstate(over="ignore", invalid="ignore"):
        f = arr.astype(np.float32)
    if f.size and not (np.abs(f) <= NEAREST_INT_MAX).all():  # also catches NaN
        bad = f[~(np.abs(f) <= NEAREST_INT_MAX)].flat[0]
        raise ValueError(f"x contains {float(bad)!r}; nearest_int is defined only for |x| <= {NEAREST_INT_MAX:.0f} "
                         "(finite); use round_half_even for larger values")
    bits = np.asarray(f + np.float32(12582912.0)).view(np.int32)
    return ((bits & 0x007FFFFF) - 0x00400000).astype(np.int32)
