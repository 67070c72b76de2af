"""Preparation of the checkpoint-layout ops (GPTQ v1/v2, AutoAWQ GEMM).

Same rules as :mod:`refquant.layouts.gptq` and :mod:`refquant.layouts.awq`: consistent
tensor shapes, codes / zero points within their width, scales within float16, group
indices within the group count, GPTQ v1 zero fields that decode to a real zero point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant.layouts.awq import _dequantize_args as _awq_dequantize_args
from refquant.layouts.awq import _pack_args as _awq_pack_args
from refquant.layouts.awq import _unpack_args as _awq_unpack_args
from refquant.layouts.gptq import _pack_args as _gptq_pack_args
from refquant.layouts.gptq import _unpack_args as _gptq_unpack_args
from refquant.prepare import Prepared, output, outputs

__all__ = ["prepare_gptq_pack", "prepare_gptq_unpack", "prepare_gptq_dequantize", "prepare_awq_pack",
           "prepare_awq_unpack", "prepare_awq_dequantize"]


def _c(a: np.ndarray) -> np.ndarray:
    return np.require(a, requirements="C")


def prepare_gptq_pack(codes: Any, zeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1, *,
                      out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.layouts.gptq.gptq_pack`: codes (uint8) and zero points
    (int64) in range, scales as float16 (out, G), g_idx (int64); results qweight int32
    (in*bits/32, out), qzeros int32 (G, out*bits/32), scales float16 (G, out), g_idx int32 (in,)."""
    bits, codes_, stored, scales16, g_idx_ = _gptq_pack_args(codes, zeros, scales, g_idx, bits, version)
    zeros_ = stored + 1 if version == 1 else stored
    (n_out, n_in), n_groups = codes_.shape, scales16.shape[1]
    specs = (((n_in * bits // 32, n_out), np.int32), ((n_groups, n_out * bits // 32), np.int32),
             ((n_groups, n_out), np.float16), ((n_in,), np.int32))
    return Prepared((_c(codes_.astype(np.uint8)), _c(zeros_), _c(scales16), _c(g_idx_.astype(np.int64)), bits,
                     int(version)), {}, outputs(out, specs, (codes, zeros, scales, g_idx)))


def _gptq_tensors(qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: int, version: int) -> tuple:
    qweight, qzeros, scales, g_idx, bits, version, _ = _gptq_unpack_args(qweight, qzeros, scales, g_idx, bits, version)
    return _c(qweight), _c(qzeros), _c(scales), _c(g_idx.astype(np.int64)), bits, version


def _codes_and_zeros(out: Any, n_out: int, n_in: int, n_groups: int, inputs: tuple) -> tuple:
    """Result arrays of an unpack: codes uint8 (out, in), zeros uint8 (out, G)."""
    return outputs(out, (((n_out, n_in), np.uint8), ((n_out, n_groups), np.uint8)), inputs)


def prepare_gptq_unpack(qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1, *,
                        out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.layouts.gptq.gptq_unpack`: consistent word tensors."""
    args = _gptq_tensors(qweight, qzeros, scales, g_idx, bits, version)
    (n_groups, n_out), n_in = args[2].shape, args[3].shape[0]
    return Prepared(args, {}, _codes_and_zeros(out, n_out, n_in, n_groups, (qweight, qzeros, scales, g_idx)))


def prepare_gptq_dequantize(qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1, *,
                            out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.layouts.gptq.gptq_dequantize`; the result is float32 (out, in)."""
    args = _gptq_tensors(qweight, qzeros, scales, g_idx, bits, version)
    shape = (args[2].shape[1], args[3].shape[0])
    return Prepared(args, {}, output(out, shape, np.float32, (qweight, qzeros, scales, g_idx)))


def prepare_awq_pack(codes: Any, zeros: Any, scales: Any, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.layouts.awq.awq_pack`: codes / zeros as uint8 in 0..15, scales float16;
    results qweight int32 (in, out/8), qzeros int32 (G, out/8), scales float16 (G, out)."""
    codes_, zeros_, scales16 = _awq_pack_args(codes, zeros, scales)
    (n_out, n_in), n_groups = codes_.shape, scales16.shape[1]
    specs = (((n_in, n_out // 8), np.int32), ((n_groups, n_out // 8), np.int32), ((n_groups, n_out), np.float16))
    return Prepared((_c(codes_.astype(np.uint8)), _c(zeros_.astype(np.uint8)), _c(scales16)), {},
                    outputs(out, specs, (codes, zeros, scales)))


def prepare_awq_unpack(qweight: Any, qzeros: Any, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.layouts.awq.awq_unpack`."""
    inputs = (qweight, qzeros)
    qweight, qzeros = _awq_unpack_args(qweight, qzeros)
    return Prepared((_c(qweight), _c(qzeros)), {},
                    _codes_and_zeros(out, qweight.shape[1] * 8, qweight.shape[0], qzeros.shape[0], inputs))


def prepare_awq_dequantize(qweight: Any, qzeros: Any, scales: Any, group_size: int, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.layouts.awq.awq_dequantize`; the result is float32 (out, in)."""
    qweight, qzeros, scales, group_size, _ = _awq_dequantize_args(qweight, qzeros, scales, group_size)
    shape = (qweight.shape[1] * 8, qweight.shape[0])
    return Prepared((_c(qweight), _c(qzeros), _c(scales), group_size), {},
                    output(out, shape, np.float32, (qweight, qzeros, scales)))
