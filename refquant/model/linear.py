"""Linear layers whose weight (and input activations) may be quantized.

Each class computes ``y = x Wᵀ + b`` for ``x`` of shape (tokens, in_features) and returns float32
(tokens, out_features); only how W and x are represented differs. :mod:`refquant.ptq` builds
them from a float :class:`Linear`; :class:`refquant.model.Encoder` accepts any of them.

Every layer exposes the same read-only facts, so a report can compare them:

- ``weight``: the float32 weight the layer actually multiplies by (dequantized), (out, in);
- ``weight_bytes``: bytes needed to store the weight with its scales / zero points;
- ``bits_per_weight``: ``8 · weight_bytes / weight.size``;
- ``scheme``: a short name (``"fp32"``, ``"int8-dynamic"``, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Linear"]


def _as_weight(weight: Any) -> np.ndarray:
    w = np.asarray(weight)
    if w.ndim != 2 or w.dtype.kind != "f":
        raise ValueError(f"weight must be a 2-D float array (out_features, in_features), got shape {w.shape} "
                         f"dtype {w.dtype}")
    return np.array(w, dtype=np.float32, order="C")  # a private copy: it is made read-only below


def _as_bias(bias: Any, out_features: int) -> np.ndarray | None:
    if bias is None:
        return None
    b = np.array(bias, dtype=np.float32)
    if b.shape != (out_features,):
        raise ValueError(f"bias must have shape ({out_features},) to match the weight, got {b.shape}")
    return b


def _check_input(x: Any, in_features: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[-1] != in_features or x.dtype.kind != "f":
        raise ValueError(f"x must be a float array (..., {in_features}), got shape {x.shape} dtype {x.dtype}")
    return x.astype(np.float32, copy=False)


class Linear:
    """A float32 dense layer, ``y = x Wᵀ + b`` (``torch.nn.Linear``'s layout).

    Parameters
    ----------
    weight : ndarray of float, shape (out_features, in_features)
    bias : ndarray of float, shape (out_features,), optional
    """

    scheme = "fp32"

    def __init__(self, weight: Any, bias: Any = None) -> None:
        self.weight = _as_weight(weight)
        self.bias = _as_bias(bias, self.weight.shape[0])
        self.weight.flags.writeable = False

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def weight_bytes(self) -> int:
        return self.weight.size * 4

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.weight_bytes / self.weight.size

    def _affine(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        y = x @ w.T
        if self.bias is not None:
            y = y + self.bias
        return y.astype(np.float32, copy=False)

    def __call__(self, x: Any) -> np.ndarray:
        """Apply the layer to ``x`` of shape (..., in_features); returns float32 (..., out_features)."""
        return self._affine(_check_input(x, self.in_features), self.weight)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scheme={self.scheme!r}, out={self.out_features}, in={self.in_features})"
