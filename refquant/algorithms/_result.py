"""Result types of the weight-quantization algorithms.

Every result exposes ``dequantized`` (float32, the shape of ``W``: what the layer
computes with) and ``bits_per_weight`` (storage cost including the quantization
parameters), plus its codes and parameters, so that a checkpoint layout
(:mod:`refquant.layouts`) can store it and ``dequantize()`` can rebuild it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refquant.algorithms import _quantizer
from refquant.quantized_tensor import QuantizedTensor

__all__ = ["QuantizedWeight"]


@dataclass(frozen=True, kw_only=True, eq=False)
class QuantizedWeight(QuantizedTensor):
    """A weight matrix quantized by a min-max group quantizer (RTN, GPTQ, AWQ, mixed);
    a :class:`refquant.QuantizedTensor` whose ``format`` is ``method``.

    Attributes
    ----------
    method : str
        The algorithm that produced it (``"rtn"``, ``"gptq"``, ...).
    dequantized : ndarray of float32, shape (out_features, in_features)
        The quantized weight as the layer uses it.
    codes : ndarray of uint8, shape (out_features, in_features)
        Integer codes in ``[0, 2**bits - 1]``, in the original column order.
    scales : ndarray of float32, shape (out_features, n_groups)
        Scale of each row and group.
    zeros : ndarray of float32, shape (out_features, n_groups)
        Zero-point of each row and group (integer-valued except for SpQR).
    g_idx : ndarray of int32, shape (in_features,)
        Group of each input column (``c // group_size`` unless act-order permuted them).
    bits : int
        Code width.
    group_size : int
        Columns per group as requested (-1: one group per row).
    sym : bool
        Symmetric grid (fixed zero-point) or zero-point quantization.
    bits_per_weight : float
        Storage cost per weight: codes plus one fp16 scale and one ``bits``-wide zero
        per group (``g_idx`` not counted), plus what the method adds.
    """

    method: str
    dequantized: np.ndarray
    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    g_idx: np.ndarray
    bits: int
    group_size: int
    sym: bool
    bits_per_weight: float

    @property
    def format(self) -> str:
        """``method``: the container's format name."""
        return self.method

    @property
    def shape(self) -> tuple[int, int]:
        """``(out_features, in_features)``."""
        return tuple(self.dequantized.shape)  # type: ignore[return-value]

    def to_layout(self, layout: str = "gptq", *, version: int = 1) -> QuantizedTensor:
        """This weight packed as a checkpoint stores it (``layout`` case-insensitive):
        ``"gptq"`` (:class:`~refquant.layouts.packed.GPTQPacked`, ``version`` 1 or 2;
        :func:`refquant.layouts.gptq.encode`) or ``"awq"`` (AutoAWQ GEMM,
        :class:`~refquant.layouts.packed.AWQPacked`; :func:`refquant.layouts.awq.encode`).
        Its ``parts()`` are the state-dict tensors (``qweight``, ``qzeros``, ``scales`` ...)."""
        from refquant._validate import check_name
        from refquant.layouts import awq, gptq
        from refquant.layouts.packed import AWQPacked, GPTQPacked

        if check_name("layout", layout, ("gptq", "awq")) == "gptq":
            return GPTQPacked.from_state_dict(gptq.encode(self, version), self.bits, version)
        return AWQPacked.from_state_dict(awq.encode(self), self.shape[1] // self.scales.shape[1])

    def dequantize(self) -> np.ndarray:
        """Rebuild ``scales[r, g_idx[c]] * (codes[r, c] - zeros[r, g_idx[c]])`` (float32).

        Equals :attr:`dequantized` for RTN and GPTQ; methods that change the weight
        further (AWQ's input scaling, fp16 channels, outliers) override it.
        """
        return _quantizer.dequantize_groups(
            self.codes.astype(np.float64), self.scales.astype(np.float64),
            self.zeros.astype(np.float64), self.g_idx).astype(np.float32)
