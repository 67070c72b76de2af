"""The min-max group quantizers of GPTQ, AWQ and SpQR, as one rule table.

All three papers quantize a weight ``w`` of one row and one group with an affine grid
``w_hat = scale * (q - zero)``, ``q`` an integer in ``[0, maxq]``, ``maxq = 2**bits - 1``,
and choose ``(scale, zero)`` from the row-group's minimum and maximum. They differ in
small, consequential details, which are data here (:class:`MinMaxRule`), not three
copies of the code:

================  ====================  =====================  =========================
detail            GPTQ (``quant.py``)   AWQ (``quantizer.py``) SpQR (``quant_groups.py``)
================  ====================  =====================  =========================
range             [min(x,0), max(x,0)]  [min x, max x]         [min x, max x]
empty range       [0,0] -> [-1, 1]      max-min >= 1e-5        xmin == xmax -> [-1, 1]
symmetric         ±absmax, 2^b-1 steps  absmax/(2^(b-1)-1)     as GPTQ
sym zero          (maxq+1)/2            2^(b-1) (signed codes) (maxq+1)/2
zero-point        round(-xmin/scale)    clamp(-round(xmin/s))  -xmin/scale (unrounded)
code              round(x/s) + zero     round(x/s) + zero      round(x/max(s,1e-9) + zero)
================  ====================  =====================  =========================

Sources: GPTQ ``quant.py`` ``Quantizer.find_params`` / ``quantize`` (IST-DASLab/gptq),
AWQ ``pseudo_quantize_tensor`` (mit-han-lab/llm-awq) and SpQR ``quant_groups.Quantizer``. Rounding is
half-to-even (``np.rint``) everywhere, as ``torch.round`` is.

Scales are float32 values (every implementation keeps them in a float32 tensor): the
scale is computed in the working dtype, rounded to float32 (a scale that would round to
0 becomes 2**-149, our rule for subnormal weights), and the zero-point is derived from
the rounded scale. A float32 ``scale * (q - zero)`` with integer ``zero``
is then exact in float64, so ``dequantize`` gives the same float32 bits in either dtype.

A consequence worth knowing: with SpQR's unrounded zero-point, an all-zero row
(range [-1, 1], zero 7.5 at 4 bits) reconstructs as ``scale / 2``, not 0.

AWQ's symmetric branch stores signed codes ``[-2^(b-1), 2^(b-1)-1]``; here they are
offset by ``zero = 2^(b-1)`` so that every rule returns unsigned codes in
``[0, maxq]`` and one ``dequantize`` serves all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refquant._validate import check_int
from refquant.formats.groupwise import group_bits_per_weight  # noqa: F401  (the format owns the cost)

__all__: list[str] = []  # internal module: used by rtn, gptq, awq, spqr, mixed


@dataclass(frozen=True)
class MinMaxRule:
    """How one paper's min-max quantizer turns a row's range into ``(scale, zero)``.

    Attributes
    ----------
    name : str
        The paper / tool.
    include_zero : bool
        Extend the range to contain 0 (GPTQ: ``xmin = min(xmin, 0)``).
    unit_range_if_empty : bool
        A row with ``xmin == xmax`` gets the range [-1, 1] (GPTQ, SpQR).
    range_floor : float
        Lower bound of ``xmax - xmin`` (asymmetric) or of ``absmax`` (symmetric) before
        dividing by the number of steps (AWQ: ``clamp(min=1e-5)``); 0 for none.
    sym_half_range : bool
        Symmetric scale ``absmax / (2^(b-1) - 1)`` with zero ``2^(b-1)`` (AWQ) instead of
        ``2 absmax / (2^b - 1)`` with zero ``(maxq + 1) / 2`` (GPTQ, SpQR).
    round_zero : bool
        Round the asymmetric zero-point to an integer (GPTQ, AWQ) or keep it (SpQR).
    clamp_zero : bool
        Clamp the zero-point to ``[0, maxq]`` (AWQ).
    zero_inside_round : bool
        Codes are ``round(x / scale + zero)`` (SpQR) instead of ``round(x / scale) + zero``.
    scale_eps : float
        Divide by ``max(scale, scale_eps)`` (SpQR: 1e-9); 0 for a plain division.
    """

    name: str
    include_zero: bool
    unit_range_if_empty: bool
    range_floor: float = 0.0
    sym_half_range: bool = False
    round_zero: bool = True
    clamp_zero: bool = False
    zero_inside_round: bool = False
    scale_eps: float = 0.0
    notes: str = field(default="", compare=False)


#: GPTQ ``quant.py`` (IST-DASLab/gptq, AutoGPTQ).
GPTQ_RULE = MinMaxRule("gptq", include_zero=True, unit_range_if_empty=True)
#: AWQ ``pseudo_quantize_tensor`` (mit-han-lab/llm-awq).
AWQ_RULE = MinMaxRule("awq", include_zero=False, unit_range_if_empty=False, range_floor=1e-5,
                      sym_half_range=True, clamp_zero=True)
#: SpQR ``quant_groups.Quantizer`` (round_zero=False, its default).
SPQR_RULE = MinMaxRule("spqr", include_zero=False, unit_range_if_empty=True, round_zero=False,
                       zero_inside_round=True, scale_eps=1e-9)

RULES = {rule.name: rule for rule in (GPTQ_RULE, AWQ_RULE, SPQR_RULE)}


def check_bits(bits: Any, allowed: tuple[int, ...] = (2, 3, 4, 8)) -> int:
    """Validate a weight bit width (the widths the checkpoint formats store)."""
    bits = check_int("bits", bits, min=1, max=16)
    if bits not in allowed:
        raise ValueError(f"bits={bits} is not supported; allowed: {', '.join(map(str, allowed))}")
    return bits


def check_group_size(group_size: Any, in_features: int) -> int:
    """Validate ``group_size``: -1 (one group per row) or 1 <= group_size; return the
    effective size (``in_features`` for -1, and for sizes larger than the row)."""
    group_size = check_int("group_size", group_size, min=-1)
    if group_size == 0:
        raise ValueError("group_size=0 is not allowed; use -1 for per-channel or a positive group size")
    # larger than the row: one group per row (clamped, so nothing is sized by group_size)
    return max(in_features, 1) if group_size == -1 else min(group_size, max(in_features, 1))


def find_params(x: np.ndarray, bits: int, sym: bool, rule: MinMaxRule) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``(scale, zero)`` of the min-max quantizer ``rule``.

    Parameters
    ----------
    x : ndarray of float32 or float64, shape (rows, n)
        One group of columns of a weight matrix (``n >= 1``).
    bits : int
        Code width; ``maxq = 2**bits - 1``.
    sym : bool
        Symmetric grid (the zero-point is fixed) or asymmetric (min-max zero-point).
    rule : MinMaxRule
        Which paper's variant.

    Returns
    -------
    scale : ndarray, shape (rows,)
        Float32-valued scales, in ``x``'s dtype.
    zero : ndarray, shape (rows,)
        Zero-points (integer-valued unless ``rule.round_zero`` is False), ``x``'s dtype.
    """
    dtype = x.dtype
    maxq = 2**bits - 1
    xmin = x.min(axis=1)
    xmax = x.max(axis=1)
    if rule.include_zero:
        xmin = np.minimum(xmin, 0)
        xmax = np.maximum(xmax, 0)
    if sym and rule.sym_half_range:
        # AWQ's symmetric branch: absmax / (2^(b-1) - 1), signed codes offset by 2^(b-1)
        absmax = np.maximum(np.maximum(np.abs(xmin), np.abs(xmax)), rule.range_floor)
        scale = _as_f32(absmax / (2 ** (bits - 1) - 1), dtype)
        return scale, np.full_like(scale, 2 ** (bits - 1))
    if sym:
        # GPTQ: xmax = max(|xmin|, xmax); xmin = -xmax only where xmin < 0 (a row with no
        # negative value keeps xmin = 0: GPTQ's "sym quirk")
        xmax = np.maximum(np.abs(xmin), xmax)
        xmin = np.where(xmin < 0, -xmax, xmin)
    if rule.unit_range_if_empty:
        empty = xmin == xmax
        xmin = np.where(empty, -1, xmin).astype(dtype, copy=False)
        xmax = np.where(empty, 1, xmax).astype(dtype, copy=False)
    span = np.maximum(xmax - xmin, rule.range_floor) if rule.range_floor else xmax - xmin
    scale = _as_f32(span / maxq, dtype)
    if sym:
        return scale, np.full_like(scale, (maxq + 1) / 2)
    zero = -xmin / np.maximum(scale, rule.scale_eps) if rule.scale_eps else -xmin / scale
    if rule.round_zero:
        zero = np.rint(zero)
    if rule.clamp_zero:
        zero = np.clip(zero, 0, maxq)
    return scale, zero.astype(dtype, copy=False)


def quantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int, rule: MinMaxRule) -> np.ndarray:
    """Integer codes ``clamp(round(x / scale) + zero, 0, maxq)`` (SpQR: ``round(x/s + zero)``).

    ``scale`` and ``zero`` broadcast against ``x`` (per-row values as ``(rows, 1)``, or a
    column ``x`` of shape (rows,) with (rows,) parameters). Returns codes as floats of
    ``x``'s dtype (exact small integers), ready for :func:`dequantize`.
    """
    maxq = 2**bits - 1
    s = np.maximum(scale, rule.scale_eps) if rule.scale_eps else scale
    if rule.zero_inside_round:
        q = np.rint(x / s + zero)
    else:
        q = np.rint(x / s) + zero
    return np.clip(q, 0, maxq)


def dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """``scale * (q - zero)`` (the grid value of code ``q``)."""
    return scale * (q - zero)


def quantize_groups(W: np.ndarray, bits: int, group_size: int, sym: bool, rule: MinMaxRule
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Round-to-nearest of every contiguous group of ``group_size`` columns.

    The last group may be shorter when ``in_features % group_size != 0`` (its min/max
    are taken over the columns it has, as GPTQ's ``W[:, i:i + groupsize]`` slice does).

    Parameters
    ----------
    W : ndarray of float32 or float64, shape (out_features, in_features)
    bits, sym, rule
        As in :func:`find_params`.
    group_size : int
        Effective group size (>= 1; see :func:`check_group_size`).

    Returns
    -------
    codes : ndarray, W's dtype, shape (out_features, in_features)
    scales, zeros : ndarray, W's dtype, shape (out_features, n_groups)
    """
    rows, cols = W.shape
    n_groups = -(-cols // group_size)
    pad = n_groups * group_size - cols
    # pad the last group with copies of its own first column: min/max unchanged
    Wp = W if pad == 0 else np.concatenate([W, np.repeat(W[:, [cols - (cols % group_size)]], pad, axis=1)], axis=1)
    groups = Wp.reshape(rows * n_groups, group_size)  # (rows * n_groups, group_size)
    scale, zero = find_params(groups, bits, sym, rule)
    codes = quantize(groups, scale[:, None], zero[:, None], bits, rule)
    codes = codes.reshape(rows, n_groups * group_size)[:, :cols]
    return codes, scale.reshape(rows, n_groups), zero.reshape(rows, n_groups)


def dequantize_groups(codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray, g_idx: np.ndarray) -> np.ndarray:
    """``scales[r, g_idx[c]] * (codes[r, c] - zeros[r, g_idx[c]])`` for every weight."""
    return scales[:, g_idx] * (codes - zeros[:, g_idx])


def natural_g_idx(in_features: int, group_size: int) -> np.ndarray:
    """``g_idx[c] = c // group_size`` (int32), the group of each input column."""
    return (np.arange(in_features) // group_size).astype(np.int32)


def _as_f32(scale: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round ``scale`` to a float32 value, kept in the working ``dtype``.

    Degenerate rule (ours): a scale that rounds to 0 in float32 (a range below about
    ``2**-149 * maxq``, i.e. subnormal weights) becomes the smallest float32 subnormal,
    so that no division by zero can happen; the tools would produce NaN there.
    """
    scale32 = np.asarray(scale, dtype=np.float32)
    scale32 = np.where(scale32 == 0, _F32_TINIEST, scale32)
    return scale32.astype(dtype, copy=False)


_F32_TINIEST = np.float32(2.0**-149)


def check_weight(W: Any, name: str = "W") -> np.ndarray:
    """``W`` as a finite 2-D float32/float64 array (out_features, in_features), not copied."""
    from refquant._validate import as_float_array

    W = as_float_array(name, W, allow_nan=False, min_ndim=2)
    if W.ndim != 2:
        raise ValueError(f"{name} must be 2-D (out_features, in_features), got shape {W.shape}")
    if W.shape[0] == 0 or W.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {W.shape}")
    check_magnitude(W, name)
    return W


#: Largest |weight| the algorithms take (2**125, about 4.3e37: FLT_MAX / 8). Min-max ranges
#: span up to twice it and a grid point lies up to one step beyond the range, so every
#: scale, code and dequantized value stays finite in float32 (finite in, finite out);
#: larger weights are refused with ValueError naming this limit.
MAX_ABS_WEIGHT = float(2.0**125)


def check_magnitude(W: np.ndarray, name: str = "W") -> None:
    """ValueError if ``max |W|`` exceeds :data:`MAX_ABS_WEIGHT`."""
    top = float(np.max(np.abs(W))) if W.size else 0.0
    if top > MAX_ABS_WEIGHT:
        raise ValueError(f"{name} has |value| {top:.4g} > {MAX_ABS_WEIGHT:.4g} (2**125, FLT_MAX / 8), the largest "
                         "weight the quantization algorithms keep finite; rescale the layer (e.g. divide by a power of 2)")
