"""Affine (uniform integer) quantization: choose_qparams, quantize, dequantize, fake_quantize.

The mapping between a float ``x`` and an integer code ``q`` in ``[qmin, qmax]``::

    q  = clamp(round(x / scale) + zero_point, qmin, qmax)        # quantize
    x' = (q - zero_point) * scale                                 # dequantize

``scale`` here is the *step size* (the float value of one code), as torch.ao, GPTQ,
AWQ and ggml (``d``) store it. Maarten Grootendorst's "A Visual Guide to Quantization"
writes the same mapping with the reciprocal, the *multiplier* ``s = 1 / scale``::

    symmetric:   s = 127 / alpha,                 q = round(s * x)
    asymmetric:  s = 255 / (alpha - beta),        z = round(-s * beta) - 128,
                 q = round(s * x + z)

with ``alpha``/``beta`` the largest/smallest value. :attr:`QuantParams.multiplier` is
that ``s``. For the guide's vector with absmax 10.8, ``scale = 10.8 / 127`` and
``multiplier = 127 / 10.8``; 3.08 and 3.02 both quantize to 36 and dequantize to
36 * 10.8 / 127 = 3.0614. With range [-7.59, 10.8] the asymmetric zero point is -23.

Choosing the parameters (:func:`choose_qparams`), per group of the granularity
(``refquant.granularity``):

* The range is ``lo = min(min(x), 0)``, ``hi = max(max(x), 0)``: it always contains 0,
  so 0 is exactly representable and the zero point lies in ``[qmin, qmax]``
  (torch.ao ``_calculate_qparams``; AWQ does not extend its range).
  ``clip=(a, b)`` replaces the observed range by ``[a, b]`` (then extended to 0);
  ``clip=r`` (0 < r <= 1) shrinks it to ``[r * lo, r * hi]``.
* Symmetric: ``scale = max(-lo, hi) / ((qmax - qmin) / 2)``, zero point 0 (signed
  codes) or ``2**(bits-1)`` (unsigned codes; torch ``quint8`` 128, GPTQ ``(maxq+1)/2``).
  The default *restricted* signed range ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` makes
  the divisor ``2**(bits-1) - 1`` = 127 for int8: the visual guide's, LLM.int8's and
  ggml ``Q8_0``'s rule. ``restricted_range=False`` uses the full range ``[-128, 127]``
  and then the divisor is torch.ao's **127.5**, as for the unsigned
  symmetric range ``[0, 255]`` with zero point 128 (torch ``quint8``).
* Asymmetric: ``scale = (hi - lo) / (qmax - qmin)``, ``zero_point = clamp(qmin -
  round_half_even(lo / scale), qmin, qmax)`` (torch.ao ``_calculate_qparams``; equal to
  the visual guide's ``round(-s * beta) - 128`` up to the rounding of ``lo / scale``).
* Every scale is at least ``SCALE_MIN = 2**-126``, the smallest normal float32. This
  one rule covers the degenerate groups: an all-zero or empty group (range 0) gets
  ``scale = 2**-126``, and all its codes are the zero point, which dequantizes to 0; a
  group of subnormal values gets a normal scale, so ``x / scale`` stays accurate and
  the round-trip error stays within half a step (a subnormal scale has too few
  significant bits for that). No NaN, no warnings. torch.ao clamps every scale to at
  least float32 eps (2**-23) instead, which also flattens tensors whose values are all
  below ~1.5e-5; refquant keeps their resolution.

Arithmetic (what a bit-exact backend must do): the input is cast to float32 first;
range statistics are exact float32 min/max; ``scale`` is one float32 division (the
asymmetric ``hi - lo`` is a float32 subtraction, evaluated in float64 only where it
overflows float32); quantize computes the float32 quotient ``x / scale`` (a true
division, as GPTQ/AWQ do, not a multiplication by a reciprocal), rounds it, clamps it
and adds the zero point exactly in integers; dequantize computes ``float32(q - zp) *
scale`` (one float32 multiplication, no fused operation).

References
----------
M. Grootendorst, "A Visual Guide to Quantization" (2024), sections "Symmetric
Quantization", "Asymmetric Quantization", "Range Mapping and Clipping".
PyTorch ``torch/ao/quantization/observer.py``, ``UniformQuantizationObserverBase._calculate_qparams``.

"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from refquant._validate import as_float_array, as_int_array, check_choice, check_float, check_int
from refquant.dtypes.intspec import IntSpec, get_int_spec
from refquant.errors import ValidationError
from refquant.granularity import (Granularity, PerChannel, PerGroup, PerTensor, canonical_granularity,
                                  checked_geometry, granularity_from_name)
from refquant.rounding import round_half_away, round_half_even, round_stochastic
from refquant.prepare import into

__all__ = ["QuantParams", "choose_qparams", "qparams_from_range", "quantize", "dequantize", "fake_quantize",
           "quantize_affine", "dequantize_affine", "ROUNDINGS", "SCALE_MIN"]

ROUNDINGS = ("half_even", "half_away", "stochastic")
MAX_BITS = 16
#: Smallest scale: the smallest normal float32, 2**-126 (module docstring).
SCALE_MIN = np.float32(2.0**-126)
#: Code range limits: codes are at most 16 bits, signed or unsigned.
CODE_MIN, CODE_MAX = -(1 << 15), (1 << 16) - 1
_INPUT_DTYPES = (np.float16, np.float32, np.float64)


def _code_dtype(qmin: int, qmax: int) -> np.dtype:
    """Smallest NumPy integer dtype holding every code in ``[qmin, qmax]``."""
    for dt in ((np.uint8, np.uint16) if qmin >= 0 else (np.int8, np.int16)):
        info = np.iinfo(dt)
        if info.min <= qmin and qmax <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int32)


@dataclass(frozen=True, eq=False)   # array fields: compare with np.array_equal, not ==
class QuantParams:
    """Parameters of an affine quantization, one scale (and zero point) per group.

    Attributes
    ----------
    scale : ndarray of float32, shape ``granularity.grid_shape(x.shape)``
        Step size: ``x ~ (q - zero_point) * scale``. Finite and > 0.
    zero_point : ndarray of int32, same shape as ``scale``, or None
        Code of the value 0, in ``[qmin, qmax]``. None means 0 (signed symmetric).
    bits : int
        Code width, 1..16.
    qmin, qmax : int
        Code range.
    granularity : Granularity
        Which elements share a scale; the params apply to any array whose
        ``granularity.grid_shape`` equals ``scale.shape`` (so per-tensor and per-channel
        parameters apply to any number of tokens).
    symmetric : bool
        Whether the range was symmetric around 0 when the params were chosen.
    """

    scale: np.ndarray
    zero_point: np.ndarray | None
    bits: int
    qmin: int
    qmax: int
    granularity: Granularity
    symmetric: bool = True

    @property
    def multiplier(self) -> np.ndarray:
        """The visual guide's scale factor ``s = 1 / scale`` (float32), e.g. 127 / absmax."""
        return np.float32(1.0) / self.scale

    @property
    def code_dtype(self) -> np.dtype:
        """Smallest integer dtype holding ``[qmin, qmax]`` (int8/uint8 up to 8 bits)."""
        return _code_dtype(self.qmin, self.qmax)

    @property
    def axis(self) -> int | None:
        """The channel / group axis of a PerChannel / PerGroup granularity, else None."""
        return getattr(self.granularity, "axis", None)

    @property
    def group_size(self) -> int | None:
        """The group size of a PerGroup granularity, else None."""
        return getattr(self.granularity, "group_size", None)

    def validate(self, shape: tuple[int, ...] | None = None) -> "QuantParams":
        """Check consistency; return self or raise ValidationError.

        Checks: bits in 1..16 and ``qmin < qmax`` fitting in ``bits``; scale float32,
        finite and > 0; zero_point int32, same shape, within ``[qmin, qmax]``; every grid
        end finite (below); and, if ``shape`` is given, that the scale grid matches an
        array of that shape.

        Grid ends: ``float32(qmin - zero_point) * scale`` and ``float32(qmax -
        zero_point) * scale``, what :func:`dequantize_affine` computes for the end codes,
        must be finite float32. A range close to float32's maximum F = 3.4028235e38 can
        put an end past it: symmetric int8 with the full range [-128, 127] (scale
        amax / 127.5) for amax above F * 127.5 / 128, the restricted range when the
        rounded scale lands an end one rounding past F, affine ranges whose end code is
        past F. torch.ao (``MinMaxObserver`` + ``fake_quantize_per_tensor_affine``,
        torch 2.x) computes the same scales and its grid then holds inf, or, when the range
        width itself overflows float32, an inf scale and NaN. No finite grid has torch.ao's
        scale there, so refquant refuses such params (choose_qparams raises) instead of
        saturating to a scale torch.ao would not produce: finite codes always dequantize
        to finite values.
        """
        if not isinstance(self.granularity, Granularity):
            raise ValidationError(f"granularity={self.granularity!r} is not a refquant.granularity object")
        if not (isinstance(self.bits, (int, np.integer)) and 1 <= self.bits <= MAX_BITS):
            raise ValidationError(f"bits={self.bits!r} must be an int in 1..{MAX_BITS}")
        for name in ("qmin", "qmax"):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise ValidationError(f"{name}={v!r} must be an int")
        if not (CODE_MIN <= self.qmin and self.qmax <= CODE_MAX):
            raise ValidationError(f"code range [{self.qmin}, {self.qmax}] must lie within [{CODE_MIN}, {CODE_MAX}] "
                                  "(codes of at most 16 bits, signed or unsigned)")
        if not (self.qmin < self.qmax and self.qmax - self.qmin < (1 << self.bits)):
            raise ValidationError(f"code range [{self.qmin}, {self.qmax}] is empty or does not fit in {self.bits} bits")
        scale = np.asarray(self.scale)
        if scale.dtype != np.float32:
            raise ValidationError(f"scale must be float32, got {scale.dtype}")
        if scale.size and not (np.isfinite(scale).all() and (scale > 0).all()):
            bad = scale[~(np.isfinite(scale) & (scale > 0))].flat[0]
            raise ValidationError(f"scale contains {float(bad)!r}; every scale must be finite and > 0")
        if self.zero_point is not None:
            zp = np.asarray(self.zero_point)
            if zp.dtype != np.int32 or zp.shape != scale.shape:
                raise ValidationError(f"zero_point must be int32 of the scale's shape {scale.shape}, "
                                      f"got {zp.dtype} {zp.shape}")
            if zp.size and (zp.min() < self.qmin or zp.max() > self.qmax):
                bad = zp[(zp < self.qmin) | (zp > self.qmax)].flat[0]
                raise ValidationError(f"zero_point contains {int(bad)}, outside the code range [{self.qmin}, {self.qmax}]")
        if scale.size:
            _check_grid_ends(self, scale)
        if shape is not None:
            _check_grid(self, tuple(shape))
        return self


def _check_grid_ends(params: QuantParams, scale: np.ndarray) -> None:
    """ValidationError if an end code of some group dequantizes to inf (:meth:`QuantParams.validate`)."""
    zp = np.int32(0) if params.zero_point is None else np.asarray(params.zero_point, np.int32)
    with np.errstate(over="ignore"):
        ends = [(np.int32(k) - zp).astype(np.float32) * scale for k in (params.qmin, params.qmax)]
    for k, end in zip((params.qmin, params.qmax), ends):
        if not np.isfinite(end).all():
            i = np.flatnonzero(~np.isfinite(end))[0]
            z = int(np.broadcast_to(zp, scale.shape).flat[i])
            raise ValidationError(
                f"scale {float(scale.flat[i])!r} (zero point {z}) puts end code {k} at ({k} - {z}) * scale, beyond "
                f"float32's maximum {float(np.finfo(np.float32).max)!r}, where it would dequantize to inf (torch.ao's "
                "grid holds inf/NaN there); the range is too close to float32's maximum: scale the input down or clip it")


def _check_grid(params: QuantParams, shape: tuple[int, ...]) -> None:
    _, grid = checked_geometry(params.granularity, shape)
    if np.shape(params.scale) != grid:
        raise ValueError(f"params (scale shape {np.shape(params.scale)}, {params.granularity!r}) do not fit an "
                         f"array of shape {shape}: its scale grid would be {grid}")


def check_codes(codes: np.ndarray, params: QuantParams) -> np.ndarray:
    """``codes`` (an integer array) if every code lies in ``[params.qmin, params.qmax]``, else ValueError."""
    if codes.size and (codes.min() < params.qmin or codes.max() > params.qmax):
        bad = codes[(codes < params.qmin) | (codes > params.qmax)].flat[0]
        raise ValueError(f"q contains code {int(bad)}, outside the code range [{params.qmin}, {params.qmax}]")
    return codes


def check_params(params: Any, shape: tuple[int, ...]) -> QuantParams:
    """``params`` checked (:meth:`QuantParams.validate`) against an array of ``shape``, as a
    plain QuantParams with C-contiguous float32 scale / int32 zero-point grids.

    The argument rule of :func:`quantize_affine` and :func:`dequantize_affine`: scale and
    zero point of the grid's shape, finite scales > 0, zero points and the code range
    within 16-bit codes, a granularity whose geometry is consistent. Subclasses are
    rebuilt as QuantParams and custom granularities fixed
    (:func:`refquant.granularity.canonical_granularity`), so no overridden method reaches a kernel.
    """
    if not isinstance(params, QuantParams):
        raise TypeError(f"params must be a QuantParams (from choose_qparams), got {type(params).__name__}")
    params.validate(shape)
    return QuantParams(np.require(params.scale, np.float32, requirements="C"),
                       None if params.zero_point is None else np.require(params.zero_point, np.int32, requirements="C"),
                       int(params.bits), int(params.qmin), int(params.qmax),
                       canonical_granularity(params.granularity, shape), bool(params.symmetric))


def _as_input(x: Any, *, allow_nan: bool) -> np.ndarray:
    """float16/32/64 array -> float32 (float64 rounds to nearest; overflow becomes inf)."""
    arr = as_float_array("x", x, dtypes=_INPUT_DTYPES)
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32, copy=False)
    if not allow_nan and arr.size and np.isnan(arr).any():
        raise ValueError("x contains NaN; no integer code represents NaN (remove or replace it first)")
    return arr


def finite_input(x: Any) -> np.ndarray:
    """``x`` as float32 (:func:`_as_input`), refusing NaN and inf (the rule of :func:`choose_qparams`)."""
    arr = _as_input(x, allow_nan=False)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError("x contains inf; choose_qparams needs finite values (pass clip=(lo, hi) "
                         "and quantize() clamps infinities)")
    return arr


def check_clip(clip: Any) -> tuple[float, float] | float | None:
    """``clip`` of :func:`choose_qparams` checked: None, a ``(lo, hi)`` pair of finite floats
    with ``lo <= hi``, or a ratio in (0, 1]."""
    if clip is None:
        return None
    if isinstance(clip, tuple):
        if len(clip) != 2:
            raise ValueError(f"clip={clip!r} must be a (lo, hi) pair or a ratio in (0, 1]")
        c_lo, c_hi = check_float("clip[0]", clip[0]), check_float("clip[1]", clip[1])
        if c_lo > c_hi:
            raise ValueError(f"clip={clip!r} must satisfy lo <= hi")
        return c_lo, c_hi
    return check_float("clip", clip, min=0.0, max=1.0, min_inclusive=False)


def resolve_granularity(granularity: Granularity | str | None, axis: int | None,
                         group_size: int | None) -> Granularity:
    if isinstance(granularity, Granularity):
        if axis is not None or group_size is not None:
            raise ValueError(f"axis={axis!r}/group_size={group_size!r} conflict with granularity={granularity!r}; "
                             "set them inside the granularity object")
        return granularity
    if isinstance(granularity, str):
        return granularity_from_name(granularity, axis=axis, group_size=group_size)
    if granularity is None:
        if group_size is not None:
            return PerGroup(group_size, -1 if axis is None else axis)
        return PerTensor() if axis is None else PerChannel(axis)
    raise TypeError(f"granularity must be a refquant.granularity object (PerTensor(), PerChannel(axis), "
                    f"PerGroup(size), PerToken(), PerBlock(shape)) or its name, got {granularity!r}")


def _range_arg(name: str, value: Any) -> np.ndarray:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return np.asarray(value, dtype=np.float32)
    with np.errstate(over="ignore"):
        return as_float_array(name, value, dtypes=_INPUT_DTYPES).astype(np.float32, copy=False)


def code_spec(bits: Any, symmetric: Any, signed: Any, restricted_range: Any) -> IntSpec:
    """The code type of ``bits``/``symmetric``/``signed``/``restricted_range`` (as in
    :func:`choose_qparams`), checked: bools, bits in 2..16 (symmetric) or 1..16."""
    if not isinstance(symmetric, (bool, np.bool_)) or not isinstance(signed, (bool, np.bool_)):
        raise TypeError(f"symmetric={symmetric!r} and signed={signed!r} must be bools")
    restricted = bool(symmetric and signed) if restricted_range is None else restricted_range
    if not isinstance(restricted, (bool, np.bool_)):
        raise TypeError(f"restricted_range={restricted_range!r} must be True, False or None")
    bits = check_int("bits", bits, min=2 if symmetric else 1, max=MAX_BITS)
    return get_int_spec(bits=bits, signed=bool(signed), restricted=bool(restricted))


def qparams_from_range(lo: Any, hi: Any, bits: int = 8, symmetric: bool = True, *, signed: bool = True,
                       restricted_range: bool | None = None,
                       granularity: Granularity | str | None = None) -> QuantParams:
    """Quantization parameters from per-group ranges (what observers call).

    Parameters
    ----------
    lo, hi : array_like of float, shape ``granularity.grid_shape(x.shape)`` (or broadcastable to each other)
        Smallest and largest value of each group; both must be finite with ``lo <= hi``.
        They are extended to contain 0.
    bits : int
        Code width: 2..16 for symmetric, 1..16 for asymmetric mappings.
    symmetric : bool
        True: absmax mapping; False: min/max mapping with an integer zero point.
    signed : bool
        Signed codes ``[-2**(bits-1), 2**(bits-1)-1]`` or unsigned ``[0, 2**bits-1]``.
    restricted_range : bool or None
        Signed codes only: drop the lowest code; None: True for signed symmetric (as
        :func:`choose_qparams`).
    granularity : Granularity or str, default PerTensor()

    Returns
    -------
    QuantParams
        ``scale`` (and ``zero_point``) of shape ``broadcast(lo, hi)``.
    """
    gran = resolve_granularity(granularity, None, None)
    spec = code_spec(bits, symmetric, signed, restricted_range)
    bits, qmin, qmax = spec.bits, spec.qmin, spec.qmax

    lo32, hi32 = np.broadcast_arrays(_range_arg("lo", lo), _range_arg("hi", hi))
    if not (np.isfinite(lo32).all() and np.isfinite(hi32).all()):
        raise ValueError("lo and hi must be finite (no NaN or inf)")
    if (lo32 > hi32).any():
        raise ValueError(f"lo must be <= hi in every group, got lo={float(lo32[lo32 > hi32].flat[0])!r} > "
                         f"hi={float(hi32[lo32 > hi32].flat[0])!r}")
    lo32 = np.minimum(lo32, np.float32(0))   # the range always contains 0 (torch.ao min_val_neg)
    hi32 = np.maximum(hi32, np.float32(0))   # (torch.ao max_val_pos)

    if symmetric:
        amax = np.maximum(-lo32, hi32)
        scale = np.array(amax / np.float32((qmax - qmin) / 2), dtype=np.float32)  # 127 or 127.5 for int8
    else:
        with np.errstate(over="ignore"):
            width = hi32 - lo32
        scale = np.array(width / np.float32(qmax - qmin), dtype=np.float32)
        wide = np.isinf(width)                                   # |hi| + |lo| > FLT_MAX
        if wide.any():
            exact = (hi32[wide].astype(np.float64) - lo32[wide].astype(np.float64)) / (qmax - qmin)
            scale[wide] = exact.astype(np.float32)
    scale = np.maximum(scale, SCALE_MIN)                         # zero range, subnormal ranges

    if symmetric:
        zero_point = None if signed else np.full(scale.shape, 1 << (bits - 1), dtype=np.int32)
    else:
        zp = np.float32(qmin) - round_half_even(lo32 / scale)    # lo <= 0, so -lo/scale in [0, qmax-qmin]
        zero_point = np.clip(zp, qmin, qmax).astype(np.int32)
    return QuantParams(scale=scale, zero_point=zero_point, bits=bits, qmin=qmin, qmax=qmax,
                       granularity=gran, symmetric=bool(symmetric)).validate()



def choose_qparams(x: Any, bits: int = 8, symmetric: bool = True, *, signed: bool = True,
                   restricted_range: bool | None = None, granularity: Granularity | str | None = None,
                   axis: int | None = None, group_size: int | None = None,
                   clip: tuple[float, float] | float | None = None) -> QuantParams:
    """Choose scale (and zero point) per group from the min/max of ``x``.

    Parameters
    ----------
    x : ndarray of float16, float32 or float64, any shape
        Finite values (cast to float32 first). An all-zero or empty group gets
        ``scale = SCALE_MIN`` (2**-126).
    bits : int
        Code width: 2..16 for symmetric, 1..16 for asymmetric mappings.
    symmetric : bool
        True: absmax mapping, zero point 0 (signed) or ``2**(bits-1)`` (unsigned).
        False: min/max mapping with an integer zero point.
    signed : bool
        Signed codes ``[-2**(bits-1), 2**(bits-1)-1]`` (default) or unsigned ``[0, 2**bits-1]``.
    restricted_range : bool or None
        Signed codes only: drop the lowest code (``[-127, 127]`` for int8; code ranges
        come from ``refquant.dtypes.intspec.IntSpec``). None: True for signed symmetric
        mappings (the visual guide's 127 divisor), False otherwise.
    granularity : Granularity or str or None
        ``PerTensor()`` (default), ``PerChannel(axis)``, ``PerGroup(size, axis)``,
        ``PerToken()``, ``PerBlock(shape)``, or a name from
        ``refquant.granularity.GRANULARITY_NAMES`` combined with ``axis``/``group_size``.
    axis, group_size : int or None
        Shorthand when ``granularity`` is None or a name: ``group_size`` gives
        ``PerGroup(group_size, axis or -1)``, ``axis`` alone gives ``PerChannel(axis)``.
    clip : (float, float) or float or None
        A fixed range ``(lo, hi)`` used for every group instead of the observed one, or
        a ratio ``0 < r <= 1`` that shrinks each group's observed range. Values outside
        the range quantize to ``qmin``/``qmax``.

    Returns
    -------
    QuantParams

    Raises
    ------
    TypeError
        ``x`` not a floating-point array; ``granularity`` of the wrong type.
    ValueError
        NaN or inf in ``x``; ``bits`` outside the allowed range; an unknown granularity
        name; a group size or axis that does not fit ``x``; a bad ``clip``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([10.8, -7.59, 3.08, 3.02, 0.0], dtype=np.float32)
    >>> p = choose_qparams(x)                      # symmetric int8, restricted: s = 127 / 10.8
    >>> quantize(x, p)
    array([127, -89,  36,  36,   0], dtype=int8)
    >>> int(choose_qparams(x, symmetric=False).zero_point.item())   # s = 255 / 18.39
    -23
    """
    gran = resolve_granularity(granularity, axis, group_size)
    arr = finite_input(x)
    if clip is None:
        lo = gran.reduce(arr, np.minimum, initial=0.0)
        hi = gran.reduce(arr, np.maximum, initial=0.0)
    elif isinstance(clip, tuple):
        c_lo, c_hi = check_clip(clip)
        grid = gran.grid_shape(arr.shape)
        lo, hi = np.full(grid, c_lo, np.float32), np.full(grid, c_hi, np.float32)
    else:
        ratio = np.float32(check_clip(clip))
        lo = gran.reduce(arr, np.minimum, initial=0.0) * ratio
        hi = gran.reduce(arr, np.maximum, initial=0.0) * ratio
    return qparams_from_range(lo, hi, bits, symmetric, signed=signed, restricted_range=restricted_range,
                              granularity=gran)


def _round(t: np.ndarray, rounding: str, rng: np.random.Generator | None) -> np.ndarray:
    check_choice("rounding", rounding, ROUNDINGS)
    if rounding == "half_even":
        return round_half_even(t)
    if rounding == "half_away":
        return round_half_away(t)
    if rng is None:
        raise ValueError("rounding='stochastic' needs rng (a numpy.random.Generator)")
    return round_stochastic(t, rng)


def quantize_affine(x: Any, params: QuantParams, *, rounding: str = "half_even",
                    rng: np.random.Generator | None = None, out: Any = None) -> np.ndarray:
    """Integer codes ``clamp(round(x / scale) + zero_point, qmin, qmax)``.

    Parameters
    ----------
    x : ndarray of float16, float32 or float64
        Cast to float32 first. ``+-inf`` clamp to ``qmax``/``qmin``.
    params : QuantParams
        Its scale grid must fit ``x.shape`` (``granularity.grid_shape(x.shape)``).
    rounding : {"half_even", "half_away", "stochastic"}
        Rounding of ``x / scale`` (``refquant.rounding``); half-even is torch.ao's.
    rng : numpy.random.Generator, optional
        Required for ``rounding="stochastic"``.
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray, shape ``x.shape``, dtype ``params.code_dtype`` (int8/uint8 up to 8 bits, int16/uint16 up to 16)

    Raises
    ------
    ValueError
        NaN in ``x``; params that do not fit ``x``; an unknown ``rounding``.
    """
    arr = _as_input(x, allow_nan=False)
    params = check_params(params, arr.shape)
    gran = params.granularity
    scale = gran.expand(params.scale, arr.shape)
    with np.errstate(over="ignore"):                   # huge x / tiny scale -> inf, clamped below
        r = _round(arr / scale, rounding, rng)
    if params.zero_point is None:
        zp = np.int32(0)
    else:
        zp = gran.expand(params.zero_point, arr.shape).astype(np.int32)
    # clamp before adding zp, in float32 (exact: |bounds| <= 2**17), so the integer add is exact
    r = np.clip(r, (params.qmin - zp).astype(np.float32), (params.qmax - zp).astype(np.float32))
    return into(out, (r.astype(np.int32) + zp).astype(params.code_dtype), (x,))


def dequantize_affine(q: Any, params: QuantParams, *, out: Any = None) -> np.ndarray:
    """Float values ``float32(q - zero_point) * scale``.

    Parameters
    ----------
    q : ndarray of any integer dtype
        Codes within ``[params.qmin, params.qmax]``.
    params : QuantParams
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of float32, shape ``q.shape``

    Raises
    ------
    TypeError
        Non-integer ``q``.
    ValueError
        A code outside ``[qmin, qmax]`` (named in the message); params that do not fit.
    """
    codes = as_int_array("q", q)
    params = check_params(params, codes.shape)
    check_codes(codes, params)
    gran = params.granularity
    centered = codes.astype(np.int32)
    if params.zero_point is not None:
        centered = centered - gran.expand(params.zero_point, codes.shape).astype(np.int32)
    return into(out, centered.astype(np.float32) * gran.expand(params.scale, codes.shape), (q,))


def quantize(x: Any, params: QuantParams, *, rounding: str = "half_even",
             rng: np.random.Generator | None = None) -> np.ndarray:
    """Integer codes of ``x`` (public name of :func:`quantize_affine`, same arguments).

    Parameters
    ----------
    x : ndarray of float16, float32 or float64 (cast to float32; ``+-inf`` clamp)
    params : QuantParams whose scale grid fits ``x.shape``
    rounding : {"half_even", "half_away", "stochastic"}
    rng : numpy.random.Generator, required for ``rounding="stochastic"``, or None
    """
    return quantize_affine(x, params, rounding=rounding, rng=rng)


def dequantize(q: Any, params: QuantParams) -> np.ndarray:
    """float32 values of codes ``q`` under ``params`` (public name of :func:`dequantize_affine`,
    same arguments and rules).

    Parameters
    ----------
    q : ndarray of int
        Codes in ``params``' range ``[qmin, qmax]``, shaped as the tensor.
    params : QuantParams
        Its scale grid must fit ``q.shape``.
    """
    return dequantize_affine(q, params)


def fake_quantize(x: Any, params: QuantParams, *, rounding: str = "half_even",
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """``dequantize(quantize(x, params), params)``: float32 values on the quantization grid.

    Idempotent for the deterministic roundings: ``fake_quantize(fake_quantize(x)) ==
    fake_quantize(x)`` bit for bit (the grid point ``k * scale`` divided by ``scale``
    is within ``2**16 * 2**-23`` of ``k``, far from a rounding boundary).

    Parameters
    ----------
    x : ndarray of float16, float32 or float64 (cast to float32; ``+-inf`` clamp)
    params : QuantParams whose scale grid fits ``x.shape``
    rounding : {"half_even", "half_away", "stochastic"}
    rng : numpy.random.Generator, required for ``rounding="stochastic"``, or None
    """
    return dequantize_affine(quantize_affine(x, params, rounding=rounding, rng=rng), params)
