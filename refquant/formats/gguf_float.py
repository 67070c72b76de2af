"""F16 and BF16: ggml's float tensor types, as block formats of one element.

=====  ======  =====  =============================================
type   id      bytes  meaning
=====  ======  =====  =============================================
F16    1       2      IEEE binary16 (``ggml_half``), little-endian
BF16   30      2      bfloat16: the top 16 bits of the float32
=====  ======  =====  =============================================

Encoders: ``ggml_fp32_to_fp16_row`` and ``ggml_fp32_to_bf16_row_ref`` (``ggml.c``), which
``ggml_quantize_chunk`` calls; decoders: ``ggml_fp16_to_fp32_row`` /
``ggml_bf16_to_fp32_row`` (exact widening). Rounding is to nearest even in both; NaN and
±inf are encoded: an fp16 NaN becomes 0x7E00 with the input's sign, a
bf16 NaN keeps its sign and top payload bits and gets the quiet bit. Golden vectors:
ggml-org/ggml @ d99724f2.
"""

from __future__ import annotations

import numpy as np

from refquant.formats._ggml_math import bf16_bits_to_fp32, fp16_to_fp32, fp32_to_bf16_bits, fp32_to_fp16
from refquant.formats.base import BlockFormat, Field

__all__ = ["F16", "BF16"]


class F16(BlockFormat, name="f16"):
    """IEEE half precision (``GGML_FP32_TO_FP16``)."""

    fields = (Field("x", "<f2"),)
    uses_imatrix = False
    allows_nonfinite = True

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        blocks = cls.empty_blocks(x.shape[0])
        blocks["x"] = fp32_to_fp16(x[:, 0])
        return blocks

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return fp16_to_fp32(blocks["x"])[:, None]


class BF16(BlockFormat, name="bf16"):
    """bfloat16 (``ggml_compute_fp32_to_bf16``); stored as its uint16 bit pattern."""

    fields = (Field("x", "<u2"),)
    uses_imatrix = False
    allows_nonfinite = True
    # one integer expression per element: 2^18 per call (1 MiB of float32) halves the
    # number of calls for the same cache traffic (measured fastest of 2^14..2^20)
    chunk_elems = 1 << 18

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        return fp32_to_bf16_bits(x[:, 0]).view(cls.dtype)   # the block is its one uint16 field

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return bf16_bits_to_fp32(blocks["x"])[:, None]
