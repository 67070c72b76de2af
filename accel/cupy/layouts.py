"""Checkpoint layouts (GPTQ v1/v2, AutoAWQ GEMM): launch code for ``src/layouts.cu``.

Arguments arrive prepared by the dispatcher (``refquant.prepare.layouts``: uint8 codes and
int64 zero points in range, float16 scales, int64 ``g_idx``, consistent int32 word
tensors, GPTQ v1 zero fields that decode to a real zero point), so nothing is checked here.
Packing and unpacking compose the packing kernels (:mod:`accel.cupy.packing`);
dequantization is one fused kernel per layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.cupy import packing
from accel.cupy._launch import i32, i64, raise_reference_error, stride_grid

__all__ = ["gptq_pack", "gptq_unpack", "gptq_dequantize", "awq_pack", "awq_unpack", "awq_dequantize"]


def _t(dev: Any, a: Any) -> Any:
    """The transpose of a 2-D array, contiguous, on the device."""
    a = dev.asarray(a)
    return dev.contiguous(a.T, a.dtype)


def gptq_pack(dev: Any, codes: Any, zeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1
              ) -> tuple[Any, Any, Any, Any]:
    """Backend op: same contract as :func:`refquant.layouts.gptq.gptq_pack`."""
    stored = dev.asarray(zeros) - (1 if version == 1 else 0)                          # v1 stores zero - 1
    packed = packing.pack(dev, dev.contiguous(codes, np.uint8), bits, "low_first", "int32")   # (out, in*bits/32)
    qzeros = packing.pack(dev, _t(dev, stored), bits, "low_first", "int32")          # (G, out*bits/32)
    return _t(dev, packed), qzeros, _t(dev, scales), dev.contiguous(g_idx, np.int32)


def _gptq_zeros(dev: Any, qzeros: Any, bits: int, version: int, out_features: int) -> Any:
    """Zero points (G, out) from qzeros (v1 fields checked by preparation)."""
    stored = packing.unpack(dev, dev.asarray(qzeros), bits, out_features, "low_first", "int32")  # (G, out)
    return stored + np.uint8(1) if version == 1 else stored


def gptq_unpack(dev: Any, qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1
                ) -> tuple[Any, Any]:
    """Backend op: same contract as :func:`refquant.layouts.gptq.gptq_unpack`."""
    codes = packing.unpack(dev, _t(dev, qweight), bits, g_idx.shape[0], "low_first", "int32")   # (out, in)
    return codes, _t(dev, _gptq_zeros(dev, qzeros, bits, version, scales.shape[1]))


def gptq_dequantize(dev: Any, qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1) -> Any:
    """Backend op: same contract as :func:`refquant.layouts.gptq.gptq_dequantize` (fused)."""
    out_f, in_f = scales.shape[1], g_idx.shape[0]
    out, bad = dev.empty((out_f, in_f), np.float32), dev.zeros(1, np.int32)
    grid, block = stride_grid(dev, out_f * in_f)
    dev.launch("layouts", "gptq_dequantize", grid, block,
               [dev.contiguous(qweight, np.int32).view(np.uint32), dev.contiguous(qzeros, np.int32).view(np.uint32),
                dev.contiguous(scales, np.float32), dev.contiguous(g_idx, np.int32), i64(out_f), i64(in_f),
                i64(qweight.shape[0]), i64(qzeros.shape[1]), i32(bits), i32(version), out, bad])
    if int(bad[0]):   # a v1 zero field 2**bits - 1: preparation refuses it, so only unprepared calls land here
        raise_reference_error(dev, "gptq_dequantize", qweight, qzeros, scales, g_idx, bits, version)
    return out


def awq_pack(dev: Any, codes: Any, zeros: Any, scales: Any) -> tuple[Any, Any, Any]:
    """Backend op: same contract as :func:`refquant.layouts.awq.awq_pack`."""
    qweight = packing.pack(dev, _t(dev, codes), 4, "awq", "int32")     # (in, out/8)
    qzeros = packing.pack(dev, _t(dev, zeros), 4, "awq", "int32")      # (G, out/8)
    return qweight, qzeros, _t(dev, scales)


def awq_unpack(dev: Any, qweight: Any, qzeros: Any) -> tuple[Any, Any]:
    """Backend op: same contract as :func:`refquant.layouts.awq.awq_unpack`."""
    out_features = qweight.shape[1] * 8
    codes = packing.unpack(dev, dev.asarray(qweight), 4, out_features, "awq", "int32")   # (in, out)
    zeros = packing.unpack(dev, dev.asarray(qzeros), 4, out_features, "awq", "int32")    # (G, out)
    return _t(dev, codes), _t(dev, zeros)


def awq_dequantize(dev: Any, qweight: Any, qzeros: Any, scales: Any, group_size: int) -> Any:
    """Backend op: same contract as :func:`refquant.layouts.awq.awq_dequantize` (fused)."""
    in_f, words = qweight.shape
    out_f = words * 8
    out = dev.empty((out_f, in_f), np.float32)
    grid, block = stride_grid(dev, out_f * in_f)
    dev.launch("layouts", "awq_dequantize", grid, block,
               [dev.contiguous(qweight, np.int32).view(np.uint32), dev.contiguous(qzeros, np.int32).view(np.uint32),
                dev.contiguous(scales, np.float32), i64(out_f), i64(in_f), i64(group_size), out])
    return out
