"""Preparation of the GGUF ops (gguf_quantize, gguf_dequantize, gguf_dequant_matmul).

Same rules as :mod:`refquant.gguf`; the format is resolved and checked
(:func:`refquant.gguf.checked_format`: declared sizes that agree), and handed over as its
registered name, or as the class itself when it is not the registered one (a backend
then has no kernel for it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant.formats import FORMATS
from refquant.formats.gguf_matmul import matmul_args
from refquant.gguf import _check_data, _missing_shape, _quantize_args, checked_format
from refquant.prepare import Prepared, output

__all__ = ["prepare_gguf_quantize", "prepare_gguf_dequantize", "prepare_gguf_dequant_matmul"]


def _name_or_format(fmt: Any) -> Any:
    """A registered format's name (what backends key their kernels by), else the class itself."""
    return fmt.name if FORMATS.get(fmt.name) is fmt else fmt


def prepare_gguf_quantize(x: Any, qtype: Any, imatrix: Any = None, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.gguf.quantize`: float32 rows (finite unless f16/bf16)
    whose length is a multiple of the block size, a checked imatrix or None."""
    fmt, rows, im = _quantize_args(x, qtype, imatrix)
    n_per_row = rows.shape[-1]
    shape = rows.shape[:-1] + (n_per_row // fmt.block_size * fmt.type_size,)
    im = None if im is None else np.require(im, requirements="C")
    return Prepared((np.require(rows, requirements="C"), _name_or_format(fmt), im), {},
                    output(out, shape, np.uint8, (x, imatrix)))


def prepare_gguf_dequantize(data: Any, qtype: Any, shape: Any = None, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.gguf.dequantize`: flat uint8 bytes of exactly ``shape``'s blocks."""
    fmt = checked_format(qtype)
    if shape is None:
        raise TypeError(_missing_shape(data, fmt))
    flat, shape = _check_data(data, fmt, shape)
    return Prepared((flat, _name_or_format(fmt), shape), {}, output(out, shape, np.float32, (data,)))


def prepare_gguf_dequant_matmul(x: Any, data: Any, qtype: Any, shape: Any) -> Prepared:
    """Arguments of :func:`refquant.gguf.dequant_matmul`."""
    xa, flat, fmt, shape = matmul_args(x, data, qtype, shape)
    return Prepared((np.require(xa, requirements="C"), flat, _name_or_format(fmt), shape))
