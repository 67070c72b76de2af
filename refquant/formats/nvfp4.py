"""NVIDIA NVFP4: E2M1 values, an FP8 E4M3 scale per 16, and one FP32 scale per tensor.

A value is ``e2m1(q) * e4m3(block_scale) * global_scale``. The two-level scaling lets the
E4M3 block scales (max 448) use their full range whatever the tensor's magnitude:

==============  ======================  ==============================================
array           dtype, shape            meaning
==============  ======================  ==============================================
packed          uint8 (..., n / 2)      E2M1 codes, element 2j in the low nibble of byte j
block_scales    uint8 (..., n / 16)     float8_e4m3fn bit patterns (checkpoint key
                                        ``weight_scale``)
global_scale    float32 ()              the decode scale ``amax / (6 * 448)``
                                        (``weight_scale_2``)
==============  ======================  ==============================================

4.5 bits per weight (plus 32 bits per tensor). The rules are those of NVIDIA's
TensorRT Model Optimizer, whose exported checkpoints TensorRT-LLM and vLLM load
(NVIDIA/Model-Optimizer @ 211c6b34, ``modelopt/torch/quantization/qtensor/nvfp4_tensor.py``,
``NVFP4QTensor.get_weights_scaling_factor_2`` / ``get_weights_scaling_factor`` /
``quantize`` / ``dequantize``), all in float32, one rounding per operation:

1. ``global_scale = amax / 2688`` (``6 * 448``: the largest E2M1 times the largest E4M3),
   ``amax = max |x|`` over the tensor, or a calibrated ``global_amax``;
2. per block of 16: ``s = block_amax / (6 * global_scale)`` (the product rounded, then the
   division); ``s = 1`` where ``s == 0``; ``s = max(s, 2**-9)`` (E4M3's smallest
   subnormal, so a tiny block never gets a zero scale); ``block_scale = e4m3(s)``, round to
   nearest even, saturating at 448 (torch's ``.to(float8_e4m3fn)``);
3. ``q = e2m1(x / (float32(block_scale) * global_scale))``: round to nearest even on the
   magnitude, saturating at 6, the sign bit set for ``x < 0`` (so -0.0 gets +0's code);
4. dequantize: ``e2m1(q) * (float32(block_scale) * global_scale)``.

One deliberate difference from Model Optimizer: an all-zero tensor (``amax = 0``) gets
``global_scale = 1`` as in NVIDIA Transformer Engine's ``compute_global_encode_scaling_factor_FP4``
(Model Optimizer divides 0 by 0 there and writes NaN scales). Non-finite input is rejected:
the tools' result for NaN/inf is an artefact of their kernels.

Transformer Engine computes the same quantities through the reciprocal *encode* scale
(``2688 / amax``, multiplied in), so its scales and codes can differ from these in the last
bit of E4M3 / at E2M1 ties; the format (and any decoder) is the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_float_array, check_float
from refquant.dtypes.floatspec import decode_float, encode_float, get_float_spec
from refquant.formats.mx import check_uint8
from refquant.prepare import into

__all__ = ["NVFP4_BLOCK", "nvfp4_quantize", "nvfp4_dequantize", "nvfp4_global_scale"]

F32 = np.float32
NVFP4_BLOCK = 16
_E2M1 = get_float_spec("float4_e2m1fn")
_E4M3 = get_float_spec("float8_e4m3fn")
_SCALE_RANGE = F32(_E2M1.max * _E4M3.max)     # 2688
_MIN_BLOCK_SCALE = F32(_E4M3.smallest_subnormal)   # 2**-9


def nvfp4_global_scale(amax: float) -> np.float32:
    """Step 1: the per-tensor decode scale ``float32(amax) / 2688`` (1.0 for ``amax == 0``).

    Raises ValueError for a negative or non-finite ``amax``.

    Parameters
    ----------
    amax : float >= 0
        Finite per-tensor absmax (reported as ``global_amax``, the public argument).
    """
    amax = F32(check_float("global_amax", amax, min=0.0))
    return F32(1.0) if amax == 0 else F32(amax / _SCALE_RANGE)


def _blocks(name: str, a: np.ndarray, per: int) -> np.ndarray:
    if a.ndim == 0 or a.shape[-1] % per:
        raise ValueError(f"{name} has shape {a.shape}; its last axis must be a multiple of {per}")
    return a.reshape(a.shape[:-1] + (a.shape[-1] // per, per))


def check_nvfp4_input(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """``x`` as finite float32 and its blocks (..., n_blocks, 16): :func:`nvfp4_quantize`'s rule."""
    arr = as_float_array("x", x, allow_nan=False)
    with np.errstate(over="ignore"):
        arr = arr.astype(F32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError("x contains values that overflow float32, which NVFP4 does not define")
    return arr, _blocks("x", arr, NVFP4_BLOCK)


def check_nvfp4_packed(packed: Any, block_scales: Any, global_scale: Any) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """Unpacked codes, their blocks and the float32 global scale: :func:`nvfp4_dequantize`'s rule."""
    check_uint8(packed=packed, block_scales=block_scales)
    g = F32(check_float("global_scale", global_scale))
    q = np.stack([packed & np.uint8(0xF), packed >> np.uint8(4)], axis=-1).reshape(packed.shape[:-1] + (-1,))
    blocks = _blocks("packed (unpacked)", q, NVFP4_BLOCK)
    if block_scales.shape != blocks.shape[:-1]:
        raise ValueError(f"block_scales has shape {block_scales.shape}, but packed of shape {packed.shape} "
                         f"needs {blocks.shape[:-1]} (one per {NVFP4_BLOCK} elements)")
    return q, blocks, g


def nvfp4_quantize(x: Any, *, global_amax: float | None = None, out: Any = None
                   ) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """Quantize to NVFP4 along the last axis (module docstring, steps 1-3).

    Parameters
    ----------
    x : array_like of float32 (float64 is rounded to float32 first), shape (..., n)
        ``n`` a multiple of 16; finite.
    global_amax : float, optional
        The tensor's absolute maximum for the global scale (a calibrated value for
        activations); default ``max |x|``. Values beyond it saturate.
    out : tuple of ndarray or None, optional
        One array per result, in order (an entry None: allocated; the scalar global scale's
        entry is None), written and returned instead of new arrays; checked by
        :func:`refquant.prepare.outputs`.

    Returns
    -------
    packed : ndarray of uint8, shape (..., n // 2)
    block_scales : ndarray of uint8, shape (..., n // 16)
        float8_e4m3fn bit patterns.
    global_scale : numpy.float32
        The per-tensor decode scale.

    Raises
    ------
    TypeError
        For non-float input.
    ValueError
        For NaN/inf in ``x``, a last axis that is not a multiple of 16, or a bad ``global_amax``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([0.0, 0.5, 1.0, -2.0] * 4, np.float32)
    >>> packed, scales, g = nvfp4_quantize(x)
    >>> packed[:2], scales, g       # block scale 0x7E = 448: values / (448 g) = 0, 1.5, 3, -6
    (array([ 48, 245], dtype=uint8), array([126], dtype=uint8), np.float32(0.00074404763))
    """
    arr, blocks = check_nvfp4_input(x)                                       # (..., n_blocks, 16)
    if global_amax is None:
        global_amax = float(np.max(np.abs(arr))) if arr.size else 0.0
    g = nvfp4_global_scale(global_amax)
    s = np.max(np.abs(blocks), axis=-1) / (F32(_E2M1.max) * g)              # (..., n_blocks)
    s = np.maximum(np.where(s == 0, F32(1.0), s), _MIN_BLOCK_SCALE)
    block_scales = encode_float(s, _E4M3, saturate=True)
    d = decode_float(block_scales, _E4M3) * g                                # float32 product
    with np.errstate(over="ignore", divide="ignore"):   # a scale that underflowed: saturates, as in torch
        v = blocks / d[..., None]
    q = encode_float(np.abs(v), _E2M1, saturate=True) | (np.signbit(v) & (v != 0)).astype(np.uint8) << np.uint8(3)
    q = q.reshape(arr.shape)
    packed = q[..., 0::2] | (q[..., 1::2] << np.uint8(4))
    return into(out, (packed, block_scales, g), (x,), fresh=(2,))


def nvfp4_dequantize(packed: Any, block_scales: Any, global_scale: Any, *, out: Any = None) -> np.ndarray:
    """Decode NVFP4 (step 4): ``e2m1(q) * (float32(block_scale) * global_scale)``.

    Parameters
    ----------
    packed : ndarray of uint8, shape (..., n // 2)
    block_scales : ndarray of uint8, shape (..., n // 16)
        float8_e4m3fn bit patterns (NaN codes decode to NaN blocks).
    global_scale : float
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of float32, shape (..., n)

    Raises
    ------
    TypeError
        If ``packed`` or ``block_scales`` is not a uint8 array.
    ValueError
        For mismatched shapes.
    """
    q, blocks, g = check_nvfp4_packed(packed, block_scales, global_scale)
    with np.errstate(over="ignore"):
        d = decode_float(block_scales, _E4M3) * g
        result = (decode_float(blocks, _E2M1) * d[..., None]).astype(F32).reshape(q.shape)
    return into(out, result, (packed, block_scales))
