"""BitNet weight and activation quantizers: binary (b1) and ternary (b1.58).

* BitNet b1: Wang et al., "BitNet: Scaling 1-bit Transformers for Large Language
  Models", 2023, sec. 2.1 (eq. 1-6). **[unverified]** against code:
  ``alpha = mean(W)``, ``W~ = Sign(W - alpha)`` (+1 where > 0, else -1),
  ``beta = mean(|W|)``; activations are absmax-quantized to ``b`` bits with
  ``Q_b = 2^(b-1)``, ``gamma = max|x|``: ``x~ = Clip(x Q_b / gamma, -Q_b + eps, Q_b - eps)``.
  The paper leaves the rounding implicit; here codes are ``round_half_even(x Q_b / gamma)``
  clipped to ``[-(Q_b - 1), Q_b - 1]`` (the integers strictly inside ``(-Q_b, Q_b)``,
  which is what the ``eps`` margin keeps), and ``gamma`` is clamped to >= 1e-5 as in
  b1.58 so that all-zero activations give zero codes.
* BitNet b1.58: Ma et al., "The Era of 1-bit LLMs", 2024, and the reference code of
  Microsoft's "Training Tips, Code and FAQ": per-tensor weights
  ``scale = 1 / clamp(mean|W|, 1e-5)``, ``W_q = clamp(round(W scale), -1, 1)``,
  ``W_deq = W_q / scale``; per-token activations ``scale = 127 / clamp(max|x|, 1e-5)``,
  ``x_q = clamp(round(x scale), -128, 127)``, ``x_deq = x_q / scale``. round is half-to-even
  (``torch.round``); the arithmetic is float32 as in the reference code, including
  torch's evaluation of ``127.0 / t`` as ``t.reciprocal() * 127.0``. The mean is
  accumulated in float64 and rounded once (torch's float32 reduction can differ from
  it in the last bit, and so can the scale).

``bits_per_weight`` counts the codes plus one float32 scale per tensor: ``1 + 32/n``
(binary) and ``log2(3) + 32/n`` (ternary, the information content that gives b1.58 its
name; packed formats spend more, e.g. 2 bits or ggml TQ1_0's 1.6875).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from refquant.algorithms import _quantizer
from refquant._validate import as_float_array, check_int
from refquant.quantized_tensor import QuantizedTensor

__all__ = ["bitnet_b1", "bitnet_b158", "activation_quant_b1", "activation_quant_b158",
           "BitNetWeight", "QuantizedActivation"]

_EPS = np.float32(1e-5)


@dataclass(frozen=True, kw_only=True, eq=False)
class BitNetWeight(QuantizedTensor):
    """A BitNet-quantized weight (a :class:`refquant.QuantizedTensor`, ``format`` = ``method``).

    Attributes
    ----------
    method : str
        ``"bitnet_b1"`` or ``"bitnet_b158"``.
    dequantized : ndarray of float32, W's shape
        ``beta * W~`` (b1) or ``W_q / scale`` (b1.58).
    codes : ndarray of int8, W's shape
        {-1, +1} (b1) or {-1, 0, +1} (b1.58).
    scale : float
        b1: ``beta = mean|W|`` (multiply); b1.58: ``1 / clamp(mean|W|, 1e-5)`` (divide),
        as the reference code names them. float32 values.
    alpha : float
        b1's centring ``mean(W)`` (0.0 for b1.58).
    bits_per_weight : float
    """

    method: str
    dequantized: np.ndarray
    codes: np.ndarray
    scale: float
    alpha: float
    bits_per_weight: float

    @property
    def format(self) -> str:
        return self.method

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)

    def dequantize(self) -> np.ndarray:
        """Rebuilt from the codes: ``codes * scale`` (b1) or ``codes / scale`` (b1.58), float32;
        equal to :attr:`dequantized`."""
        codes, scale = self.codes.astype(np.float32), np.float32(self.scale)
        return codes * scale if self.method == "bitnet_b1" else codes / scale


@dataclass(frozen=True, kw_only=True, eq=False)
class QuantizedActivation(QuantizedTensor):
    """Absmax-quantized activations: ``dequantized = codes / scale`` (a
    :class:`refquant.QuantizedTensor` of format ``"int8_absmax"``).

    Attributes
    ----------
    codes : ndarray of int8, x's shape
    scale : ndarray of float32
        ``Q / clamp(max|x|, 1e-5)`` per token, shape ``x.shape[:-1] + (1,)`` (or ``()``
        for a per-tensor scale).
    dequantized : ndarray of float32, x's shape
    """

    codes: np.ndarray
    scale: np.ndarray
    dequantized: np.ndarray

    format = "int8_absmax"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)

    @property
    def bits_per_weight(self) -> float:
        """8 bits per code plus one float32 scale per token (or per tensor)."""
        return 8 + 32 * self.scale.size / self.codes.size if self.codes.size else float("nan")

    def dequantize(self) -> np.ndarray:
        """``codes / scale`` (float32), equal to :attr:`dequantized`."""
        return self.codes.astype(np.float32) / self.scale


def _weight(W: Any) -> np.ndarray:
    W = as_float_array("W", W, allow_nan=False, min_ndim=1)
    _quantizer.check_magnitude(W)
    if W.size == 0:
        raise ValueError(f"W must be non-empty, got shape {W.shape}")
    return W.astype(np.float32)


def _abs_mean(W: np.ndarray) -> np.float32:
    return np.float32(np.mean(np.abs(W), dtype=np.float64))


def bitnet_b1(W: Any) -> BitNetWeight:
    """BitNet b1 binarization: ``W~ = Sign(W - mean(W))``, ``beta = mean|W|`` (eq. 1-3).

    Parameters
    ----------
    W : ndarray of float32 or float64, any shape (non-empty, finite)

    Returns
    -------
    BitNetWeight
        ``codes`` in {-1, +1}; ``dequantized = beta * codes``.
    """
    W = _weight(W)
    alpha = np.float32(np.mean(W, dtype=np.float64))
    codes = np.where(W - alpha > 0, 1, -1).astype(np.int8)
    beta = _abs_mean(W)
    return BitNetWeight(method="bitnet_b1", dequantized=(codes.astype(np.float32) * beta), codes=codes,
                        scale=float(beta), alpha=float(alpha), bits_per_weight=1 + 32 / W.size)


def bitnet_b158(W: Any) -> BitNetWeight:
    """BitNet b1.58 absmean ternarization (the reference ``weight_quant``).

    Parameters
    ----------
    W : ndarray of float32 or float64, any shape (non-empty, finite)

    Returns
    -------
    BitNetWeight
        ``codes`` in {-1, 0, +1}; ``scale = 1 / clamp(mean|W|, 1e-5)``;
        ``dequantized = codes / scale`` (float32).
    """
    W = _weight(W)
    scale = np.float32(1) / np.maximum(_abs_mean(W), _EPS)
    codes = np.clip(np.rint(W * scale), -1, 1)
    return BitNetWeight(method="bitnet_b158", dequantized=(codes / scale).astype(np.float32),
                        codes=codes.astype(np.int8), scale=float(scale), alpha=0.0,
                        bits_per_weight=float(np.log2(3)) + 32 / W.size)


def activation_quant_b158(x: Any) -> QuantizedActivation:
    """BitNet b1.58 per-token 8-bit absmax activation quantization (``activation_quant``).

    Parameters
    ----------
    x : ndarray of float32 or float64, shape (..., features)
        Finite activations; the last axis is the token's features.

    Returns
    -------
    QuantizedActivation
        ``scale = 127 / clamp(max|x|, 1e-5)`` per token; codes in [-128, 127] (-128 is
        never produced since ``|x scale| <= 127``).
    """
    x = as_float_array("x", x, allow_nan=False, min_ndim=1).astype(np.float32)
    # torch evaluates ``127.0 / t`` as ``t.reciprocal() * 127.0``: two float32 roundings
    scale = (np.float32(1) / np.maximum(np.max(np.abs(x), axis=-1, keepdims=True, initial=0), _EPS)) * np.float32(127)
    codes = np.clip(np.rint(x * scale), -128, 127)
    return QuantizedActivation(codes=codes.astype(np.int8), scale=scale.astype(np.float32),
                               dequantized=(codes / scale).astype(np.float32))


def activation_quant_b1(x: Any, bits: int = 8, per_token: bool = False) -> QuantizedActivation:
    """BitNet b1 absmax activation quantization (eq. 4-5) **[unverified]**, see the module notes.

    Parameters
    ----------
    x : ndarray of float32 or float64, shape (..., features)
        Finite activations.
    bits : int
        Activation width ``b`` (8), 2..8.
    per_token : bool
        One ``gamma`` per token (last axis) instead of one per tensor (the paper uses
        per-tensor in training and per-token in inference).

    Returns
    -------
    QuantizedActivation
        ``scale = Q_b / clamp(gamma, 1e-5)``; codes in ``[-(Q_b - 1), Q_b - 1]``.
    """
    x = as_float_array("x", x, allow_nan=False, min_ndim=1).astype(np.float32)
    bits = check_int("bits", bits, min=2, max=8)
    q_b = np.float32(2 ** (bits - 1))
    if per_token:
        gamma = np.max(np.abs(x), axis=-1, keepdims=True, initial=0)
    else:
        gamma = np.max(np.abs(x), initial=0)
    scale = q_b / np.maximum(np.float32(gamma), _EPS)
    codes = np.clip(np.rint(x * scale), -(q_b - 1), q_b - 1)
    return QuantizedActivation(codes=codes.astype(np.int8), scale=np.asarray(scale, dtype=np.float32),
                               dequantized=(codes / scale).astype(np.float32))
