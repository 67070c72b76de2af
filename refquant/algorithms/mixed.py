"""Mixed precision baseline: the most salient input channels in fp16, the rest RTN.

The AWQ paper (Lin et al., MLSys 2024, sec. 2.1 and Table 1) motivates AWQ with this
experiment: keeping the 1 % of weight channels whose *activations* are largest
(mean ``|x|`` per input channel) in FP16 and rounding the rest to nearest recovers much
of the quantization loss, while choosing them by weight magnitude does not.

Salient columns are kept as float16 values. So that they do not stretch the grid of
the other weights in their group, they are replaced by the mean of the group's other
weights in that row before the min-max parameters are fitted (the trick SpQR uses for
its outliers); their codes are then meaningless and ignored. Ties between equally
salient channels go to the lower index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from refquant._validate import check_float, check_name
from refquant.algorithms import _quantizer
from refquant.algorithms._result import QuantizedWeight
from refquant.algorithms.awq import _check_activations, activation_scale

__all__ = ["mixed", "MixedResult"]


@dataclass(frozen=True, kw_only=True, eq=False)
class MixedResult(QuantizedWeight):
    """:class:`QuantizedWeight` of :func:`mixed`, plus

    Attributes
    ----------
    salient : ndarray of int64, shape (n_salient,)
        The input channels kept in fp16 (sorted).
    salient_values : ndarray of float16, shape (out_features, n_salient)
        ``W[:, salient]`` in fp16.
    """

    salient: np.ndarray
    salient_values: np.ndarray

    def dequantize(self) -> np.ndarray:
        """RTN codes rebuilt, with the salient columns replaced by their fp16 values."""
        out = super().dequantize()
        out[:, self.salient] = self.salient_values.astype(np.float32)
        return out


_FP16_MAX = float(np.finfo(np.float16).max)


def mixed(W: Any, X: Any, bits: int = 4, group_size: int = 128, sym: bool = False, *,
          salient_fraction: float = 0.01, rule: str = "awq") -> MixedResult:
    """Keep the ``salient_fraction`` most activated input channels in fp16, RTN the rest.

    Parameters
    ----------
    W : ndarray of float32 or float64, shape (out_features, in_features)
        Weight (finite). Not modified.
    X : ndarray of float32 or float64, shape (tokens, in_features)
        Calibration inputs: channel saliency is ``mean |X[:, c]|``.
    bits : {2, 3, 4, 8}
        Code width of the RTN part.
    group_size : int
        RTN group size (-1: per-channel).
    sym : bool
        Symmetric RTN grid (default False: the zero-point RTN of the AWQ paper).
    salient_fraction : float
        Fraction of input channels kept (0.01); at least one channel when > 0.
    rule : {"awq", "gptq", "spqr"}
        Whose min-max quantizer the RTN part uses.

    Returns
    -------
    MixedResult
        ``bits_per_weight`` = ``bits`` for the rounded weights, 16 for the salient ones,
        the group scales and zeros, and one int32 index per salient channel.
    """
    W_in = _quantizer.check_weight(W)
    rows, columns = W_in.shape
    X = _check_activations(X, columns)
    bits = _quantizer.check_bits(bits)
    groupsize = _quantizer.check_group_size(group_size, columns)
    fraction = check_float("salient_fraction", salient_fraction, min=0.0, max=1.0)
    grid = _quantizer.RULES[check_name("rule", rule, _quantizer.RULES)]

    n_salient = 0 if fraction == 0 else max(1, int(round(fraction * columns)))
    salient = np.sort(np.argsort(-activation_scale(X), kind="stable")[:n_salient])

    W64 = W_in.astype(np.float64)
    fitted = _fill_with_group_mean(W64, salient, groupsize)
    codes, scales, zeros = _quantizer.quantize_groups(fitted, bits, groupsize, bool(sym), grid)
    g_idx = _quantizer.natural_g_idx(columns, groupsize)
    dequantized = _quantizer.dequantize_groups(codes, scales, zeros, g_idx).astype(np.float32)
    top = float(np.max(np.abs(W_in[:, salient]))) if n_salient else 0.0
    if top > _FP16_MAX:  # the format's limit: salient columns are stored in float16
        raise ValueError(f"W has salient weights up to |{top:.4g}|, beyond float16's maximum {_FP16_MAX:g}, "
                         "in which mixed precision keeps its salient columns; rescale the layer")
    salient_values = W_in[:, salient].astype(np.float16)
    dequantized[:, salient] = salient_values.astype(np.float32)

    kept = n_salient / columns
    bpw = (bits * (1 - kept) + 16 * kept + (16 + bits) / min(groupsize, columns)
           + 32 * n_salient / (rows * columns))
    return MixedResult(
        method="mixed",
        dequantized=dequantized,
        codes=codes.astype(np.uint8),
        scales=scales.astype(np.float32),
        zeros=zeros.astype(np.float32),
        g_idx=g_idx,
        bits=bits,
        group_size=int(group_size),
        sym=bool(sym),
        bits_per_weight=bpw,
        salient=salient.astype(np.int64),
        salient_values=salient_values,
    )


def _fill_with_group_mean(W: np.ndarray, salient: np.ndarray, groupsize: int) -> np.ndarray:
    """``W`` with each salient weight replaced by its row-group's mean over the other
    weights (0 if the group has no other weight), so it does not move the group's range."""
    if salient.size == 0:
        return W
    rows, columns = W.shape
    keep = np.ones(columns, dtype=bool)
    keep[salient] = False
    out = W.copy()
    for start in range(0, columns, groupsize):
        cols = np.arange(start, min(start + groupsize, columns))
        hidden = cols[~keep[cols]]
        if hidden.size == 0:
            continue
        others = cols[keep[cols]]
        mean = W[:, others].mean(axis=1) if others.size else np.zeros(rows)
        out[:, hidden] = mean[:, None]
    return out
