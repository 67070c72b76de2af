"""Round-to-nearest (RTN): the baseline every weight-quantization paper compares with.

Each row of ``W`` is split into groups of ``group_size`` consecutive input columns (or
one group per row, ``group_size=-1``), and each row-group is quantized on its own
min-max grid, with no calibration data. The grid rule is a parameter: GPTQ's
``Quantizer`` (the default; GPTQ with an identity Hessian reproduces it exactly), AWQ's
``pseudo_quantize_tensor`` or SpQR's (see :mod:`refquant.algorithms._quantizer`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import check_name
from refquant.algorithms import _quantizer
from refquant.algorithms._result import QuantizedWeight

__all__ = ["rtn"]


def rtn(W: Any, bits: int = 4, group_size: int = 128, sym: bool = True, *, rule: str = "gptq") -> QuantizedWeight:
    """Quantize every row-group of ``W`` to the nearest point of its min-max grid.

    Parameters
    ----------
    W : ndarray of float32 or float64, shape (out_features, in_features)
        Weight of a linear layer (finite). The arithmetic runs in ``W``'s dtype.
    bits : {2, 3, 4, 8}
        Code width.
    group_size : int
        Input columns per group; -1 for one group per row (per-channel). A last group
        shorter than ``group_size`` takes its range over the columns it has.
    sym : bool
        Symmetric grid (fixed zero-point) instead of a min-max zero-point.
    rule : {"gptq", "awq", "spqr"}
        Whose min-max quantizer.

    Returns
    -------
    QuantizedWeight
        ``method="rtn"``; ``g_idx[c] = c // group_size``.

    Raises
    ------
    ValueError, TypeError
        Non-finite or non-2-D ``W``, unsupported ``bits``, ``group_size`` of 0 or < -1,
        unknown ``rule``.
    """
    W = _quantizer.check_weight(W)
    bits = _quantizer.check_bits(bits)
    g = _quantizer.check_group_size(group_size, W.shape[1])
    grid = _quantizer.RULES[check_name("rule", rule, _quantizer.RULES)]
    codes, scales, zeros = _quantizer.quantize_groups(W, bits, g, bool(sym), grid)
    g_idx = _quantizer.natural_g_idx(W.shape[1], g)
    dequantized = _quantizer.dequantize_groups(codes, scales, zeros, g_idx)
    return QuantizedWeight(
        method="rtn",
        dequantized=dequantized.astype(np.float32),
        codes=codes.astype(np.uint8),
        scales=scales.astype(np.float32),
        zeros=zeros.astype(np.float32),
        g_idx=g_idx,
        bits=bits,
        group_size=int(group_size),
        sym=bool(sym),
        bits_per_weight=_quantizer.group_bits_per_weight(bits, g, W.shape[1]),
    )
