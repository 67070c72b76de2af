"""Checkpoint layouts (GPTQ v1/v2, AutoAWQ GEMM): launch code for ``src/layouts.cu``.

Arguments are normalized by the reference's own helpers (``refquant.layouts.*._pack_args``
/ ``_unpack_args`` / ``_dequantize_args``, same messages; they run on the host, so a
CuPy input makes one host round trip there). Packing and unpacking compose the packing
kernels (:mod:`accel.cupy.packing`); dequantization is one fused kernel per layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.cupy import packing
from accel.cupy._launch import i32, i64, raise_reference_error, stride_grid
from refquant.layouts.awq import _dequantize_args as _awq_dequantize_args
from refquant.layouts.awq import _pack_args as _awq_pack_args
from refquant.layouts.gptq import _pack_args as _gptq_pack_args
from refquant.layouts.gptq import _unpack_args as _gptq_unpack_args
from refquant.layouts.gptq import _words

__all__ = ["gptq_pack", "gptq_unpack", "gptq_dequantize", "awq_pack", "awq_unpack", "awq_dequantize"]


def _host(dev: Any, *arrays: Any) -> list[Any]:
    return [dev.to_numpy(a) if hasattr(a, "shape") else a for a in arrays]


def _t(dev: Any, a: Any) -> Any:
    """The transpose of a 2-D array, contiguous, on the device."""
    return dev.contiguous(dev.asarray(a).T, dev.asarray(a).dtype)


def gptq_pack(dev: Any, codes: Any, zeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1
              ) -> tuple[Any, Any, Any, Any]:
    """Backend op: same contract as :func:`refquant.layouts.gptq.gptq_pack`."""
    bits, codes_h, stored_zeros, scales16, g_idx_h = _gptq_pack_args(*_host(dev, codes, zeros, scales, g_idx),
                                                                     bits, version)
    packed = packing.pack(dev, dev.asarray(codes_h), bits, "low_first", "int32")      # (out, in*bits/32)
    qzeros = packing.pack(dev, _t(dev, stored_zeros), bits, "low_first", "int32")      # (G, out*bits/32)
    return (_t(dev, packed), qzeros, _t(dev, scales16), dev.contiguous(g_idx_h, np.int32))


def _gptq_zeros(dev: Any, qzeros: Any, bits: int, version: int, out_features: int, args: tuple) -> Any:
    stored = packing.unpack(dev, dev.asarray(qzeros), bits, out_features, "low_first", "int32")  # (G, out)
    if version == 1:
        if bool((stored == 2**bits - 1).any()):
            raise_reference_error(dev, "gptq_unpack", *args)
        return stored + np.uint8(1)
    return stored


def gptq_unpack(dev: Any, qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1
                ) -> tuple[Any, Any]:
    """Backend op: same contract as :func:`refquant.layouts.gptq.gptq_unpack`."""
    qw, qz, sc, gi, bits, version, in_features = _gptq_unpack_args(*_host(dev, qweight, qzeros, scales, g_idx),
                                                                   bits, version)
    codes = packing.unpack(dev, _t(dev, qw), bits, in_features, "low_first", "int32")   # (out, in)
    zeros = _gptq_zeros(dev, qz, bits, version, sc.shape[1], (qweight, qzeros, scales, g_idx, bits, version))
    return codes, _t(dev, zeros)


def gptq_dequantize(dev: Any, qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1) -> Any:
    """Backend op: same contract as :func:`refquant.layouts.gptq.gptq_dequantize` (fused)."""
    qw, qz, sc, gi, bits, version, in_features = _gptq_unpack_args(*_host(dev, qweight, qzeros, scales, g_idx),
                                                                   bits, version)
    out_f = sc.shape[1]
    out, bad = dev.empty((out_f, in_features), np.float32), dev.zeros(1, np.int32)
    grid, block = stride_grid(dev, out_f * in_features)
    dev.launch("layouts", "gptq_dequantize", grid, block,
               [dev.contiguous(qw, qw.dtype).view(np.uint32), dev.contiguous(qz, qz.dtype).view(np.uint32),
                dev.contiguous(sc, np.float32), dev.contiguous(gi, np.int32), i64(out_f), i64(in_features),
                i64(qw.shape[0]), i64(qz.shape[1]), i32(bits), i32(version), out, bad])
    if int(bad[0]):
        raise_reference_error(dev, "gptq_dequantize", qweight, qzeros, scales, g_idx, bits, version)
    return out


def awq_pack(dev: Any, codes: Any, zeros: Any, scales: Any) -> tuple[Any, Any, Any]:
    """Backend op: same contract as :func:`refquant.layouts.awq.awq_pack`."""
    codes_h, zeros_h, scales16 = _awq_pack_args(*_host(dev, codes, zeros, scales))
    qweight = packing.pack(dev, _t(dev, codes_h), 4, "awq", "int32")     # (in, out/8)
    qzeros = packing.pack(dev, _t(dev, zeros_h), 4, "awq", "int32")      # (G, out/8)
    return qweight, qzeros, _t(dev, scales16)


def awq_unpack(dev: Any, qweight: Any, qzeros: Any) -> tuple[Any, Any]:
    """Backend op: same contract as :func:`refquant.layouts.awq.awq_unpack`."""
    qw, qz = (_words(name, a) for name, a in zip(("qweight", "qzeros"), _host(dev, qweight, qzeros)))
    if qw.shape[1] != qz.shape[1]:
        raise_reference_error(dev, "awq_unpack", qweight, qzeros)
    out_features = qw.shape[1] * 8
    codes = packing.unpack(dev, dev.asarray(qw), 4, out_features, "awq", "int32")   # (in, out)
    zeros = packing.unpack(dev, dev.asarray(qz), 4, out_features, "awq", "int32")   # (G, out)
    return _t(dev, codes), _t(dev, zeros)


def awq_dequantize(dev: Any, qweight: Any, qzeros: Any, scales: Any, group_size: int) -> Any:
    """Backend op: same contract as :func:`refquant.layouts.awq.awq_dequantize` (fused)."""
    qw_h, qz_h, sc_h = _host(dev, qweight, qzeros, scales)
    qw, _, _, group_size, _ = _awq_dequantize_args(qw_h, qz_h, sc_h, group_size)
    in_f, words = qw.shape
    out_f = words * 8
    out = dev.empty((out_f, in_f), np.float32)
    grid, block = stride_grid(dev, out_f * in_f)
    dev.launch("layouts", "awq_dequantize", grid, block,
               [dev.contiguous(qw, qw.dtype).view(np.uint32),
                dev.contiguous(_words("qzeros", qz_h), qz_h.dtype).view(np.uint32),
                dev.contiguous(sc_h, np.float32), i64(out_f), i64(in_f), i64(group_size), out])
    return out
