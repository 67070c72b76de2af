"""Preparation of the algorithm ops (rtn_quantize, gptq_quantize, awq_quantize).

Same rules as :mod:`refquant.algorithms`: a finite 2-D float weight (out, in), bits of
the quantizer's list, group_size -1 or >= 1 (clamped to the row), a Hessian (in, in)
or activations (tokens, in) of the weight's width.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant.algorithms import _quantizer
from refquant.algorithms.awq import _check_activations
from refquant.algorithms.gptq import _check_hessian
from refquant.prepare import Prepared

__all__ = ["prepare_rtn_quantize", "prepare_gptq_quantize", "prepare_awq_quantize"]


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
    return bool(value)


def _weight(W: Any, bits: Any, group_size: Any) -> tuple[np.ndarray, int, int]:
    W = np.require(_quantizer.check_weight(W), requirements="C")
    bits = _quantizer.check_bits(bits)
    _quantizer.check_group_size(group_size, W.shape[1])
    return W, bits, int(group_size)


def prepare_rtn_quantize(W: Any, bits: int = 4, group_size: int = 128, sym: bool = True) -> Prepared:
    """Arguments of :func:`refquant.algorithms.ops.rtn_quantize`."""
    W, bits, group_size = _weight(W, bits, group_size)
    return Prepared((W, bits, group_size, _bool("sym", sym)))


def prepare_gptq_quantize(W: Any, H: Any, bits: int = 4, group_size: int = 128, act_order: bool = False,
                          sym: bool = True) -> Prepared:
    """Arguments of :func:`refquant.algorithms.ops.gptq_quantize`."""
    W, bits, group_size = _weight(W, bits, group_size)
    H = np.require(_check_hessian(H, W.shape[1]), requirements="C")
    return Prepared((W, H, bits, group_size, _bool("act_order", act_order), _bool("sym", sym)))


def prepare_awq_quantize(W: Any, X: Any, bits: int = 4, group_size: int = 128) -> Prepared:
    """Arguments of :func:`refquant.algorithms.ops.awq_quantize`."""
    W, bits, group_size = _weight(W, bits, group_size)
    X = np.require(_check_activations(X, W.shape[1]), requirements="C")
    return Prepared((W, X, bits, group_size))
