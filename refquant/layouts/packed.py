"""GPTQ and AWQ checkpoint tensors as :class:`refquant.QuantizedTensor` containers.

One layer's packed tensors, as they sit in a GPTQ (:mod:`refquant.layouts.gptq`) or
AutoAWQ GEMM (:mod:`refquant.layouts.awq`) checkpoint, with the few numbers needed to read
them: ``dequantize()`` unpacks them, ``parts()`` are the state-dict tensors themselves.
``QuantizedWeight.to_layout("gptq" | "awq")`` builds one from an algorithm's result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from refquant.quantized_tensor import QuantizedTensor

__all__ = ["GPTQPacked", "AWQPacked"]


def _storage_bytes(*arrays: np.ndarray) -> int:
    return int(sum(a.nbytes for a in arrays))


@dataclass(frozen=True, eq=False)
class GPTQPacked(QuantizedTensor):
    """A layer in the GPTQ layout (AutoGPTQ v1 / GPTQModel v2), ``format`` ``"gptq"``.

    Attributes
    ----------
    qweight : ndarray of int32, shape (in * bits / 32, out)
    qzeros : ndarray of int32, shape (G, out * bits / 32)
    scales : ndarray of float16, shape (G, out)
    g_idx : ndarray of int32, shape (in,)
    bits : {2, 3, 4, 8}
    version : {1, 2}
        v1 stores ``zero - 1``, v2 the zero itself.
    """

    qweight: np.ndarray
    qzeros: np.ndarray
    scales: np.ndarray
    g_idx: np.ndarray
    bits: int
    version: int = 1

    format = "gptq"

    @classmethod
    def from_state_dict(cls, tensors: dict[str, Any], bits: int, version: int = 1, prefix: str = "") -> GPTQPacked:
        """The tensors ``prefix + "qweight"`` ... of a checkpoint (``prefix`` e.g.
        ``"model.layers.0.mlp.up_proj."``)."""
        return cls(*(np.asarray(tensors[prefix + k]) for k in ("qweight", "qzeros", "scales", "g_idx")), bits, version)

    @property
    def shape(self) -> tuple[int, int]:
        """``(out_features, in_features)``."""
        return int(self.scales.shape[1]), int(self.g_idx.shape[0])

    @property
    def bits_per_weight(self) -> float:
        """:func:`refquant.formats.groupwise.group_bits_per_weight` at ``bits`` and
        ``in_features / G`` columns per group (``g_idx`` not counted)."""
        from refquant.formats.groupwise import group_bits_per_weight

        return group_bits_per_weight(self.bits, max(1, self.shape[1] // self.scales.shape[0]))

    @property
    def nbytes(self) -> int:
        """Bytes of ``qweight``, ``qzeros`` and ``scales``."""
        return _storage_bytes(self.qweight, self.qzeros, self.scales)

    def dequantize(self) -> np.ndarray:
        """:func:`refquant.layouts.gptq.gptq_dequantize`: float32 (out, in)."""
        from refquant.layouts.gptq import gptq_dequantize

        return gptq_dequantize(self.qweight, self.qzeros, self.scales, self.g_idx, self.bits, self.version)


@dataclass(frozen=True, eq=False)
class AWQPacked(QuantizedTensor):
    """A layer in AutoAWQ's GEMM layout (4-bit), ``format`` ``"awq"``. Its weight is the
    *scaled* ``Q(W diag(s))`` (see :mod:`refquant.layouts.awq`).

    Attributes
    ----------
    qweight : ndarray of int32, shape (in, out / 8)
    qzeros : ndarray of int32, shape (in / group_size, out / 8)
    scales : ndarray of float16, shape (in / group_size, out)
    group_size : int
    """

    qweight: np.ndarray
    qzeros: np.ndarray
    scales: np.ndarray
    group_size: int

    format = "awq"

    @classmethod
    def from_state_dict(cls, tensors: dict[str, Any], group_size: int, prefix: str = "") -> AWQPacked:
        """The tensors ``prefix + "qweight"`` ... of a checkpoint."""
        return cls(*(np.asarray(tensors[prefix + k]) for k in ("qweight", "qzeros", "scales")), group_size)

    @property
    def shape(self) -> tuple[int, int]:
        """``(out_features, in_features)``."""
        return int(self.scales.shape[1]), int(self.qweight.shape[0])

    @property
    def bits_per_weight(self) -> float:
        """:func:`refquant.formats.groupwise.group_bits_per_weight` (4 bits, ``group_size``)."""
        from refquant.formats.groupwise import group_bits_per_weight

        return group_bits_per_weight(4, self.group_size)

    @property
    def nbytes(self) -> int:
        """Bytes of ``qweight``, ``qzeros`` and ``scales``."""
        return _storage_bytes(self.qweight, self.qzeros, self.scales)

    def dequantize(self) -> np.ndarray:
        """:func:`refquant.layouts.awq.awq_dequantize`: float32 (out, in)."""
        from refquant.layouts.awq import awq_dequantize

        return awq_dequantize(self.qweight, self.qzeros, self.scales, self.group_size)
