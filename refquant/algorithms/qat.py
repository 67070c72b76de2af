"""Fake quantization for quantization-aware training: forward and backward as plain
NumPy functions (no autograd), so each gradient rule is written out.

Three estimators:

* **torch FakeQuantize** (``torch.fake_quantize_per_tensor_affine`` /
  ``_per_channel_affine``, CPU kernels ``fake_quantize_tensor_cachemask_kernel`` and
  ``_fake_quant_per_channel_cachemask_cpu_helper``): ``q = zero_point + rint(x * (1/scale))``
  in float32, output ``(clamp(q, qmin, qmax) - zero_point) * scale``; the backward is a
  *masked* straight-through estimator: ``dx = dy`` where ``qmin <= q <= qmax`` (tested on
  the rounded, unclamped ``q``, so values that round onto a bound still pass), else 0.
* **BitNet STE**: the forward is ``x + (quant(x) - x)`` (``.detach()`` on the difference)
  in float32 -- not always bit-identical to ``quant(x)`` -- and the gradient is the
  identity everywhere, clipped region included.
* **LSQ** (Esser et al., "Learned Step Size Quantization", ICLR 2020; torch
  ``_fake_quantize_learnable_per_tensor_affine`` and its ``_backward``, CPU kernel
  ``fake_quantize_learnable_tensor_grad_kernel_cpu``): forward as FakeQuantize with
  ``zero_point`` rounded half-to-even and clamped; backward, with ``g = grad_factor``
  (``1 / sqrt(numel * qmax)`` under LSQ's gradient scaling, :func:`lsq_grad_factor`),
  ``xq = rint(zero_point + x / scale)`` and ``zero_point`` here ``trunc(clamp(zp + 0.5))``
  (the backward's own rounding):

  ========================  ===========  ==============================  ================
  region                    ``dx``       ``dscale`` (summed)             ``dzero_point``
  ========================  ===========  ==============================  ================
  ``qmin <= xq <= qmax``    ``dy``       ``dy (xfq - x) / scale g``      0
  ``xq < qmin``             0            ``dy (qmin - zp) g``            ``-dy scale g``
  ``xq > qmax``             0            ``dy (qmax - zp) g``            ``-dy scale g``
  ========================  ===========  ==============================  ================

  where ``xfq = (clamp(xq) - zp) scale`` -- so inside the range ``dscale`` is the
  rounding residual ``round(x/s) - x/s``, the LSQ paper's eq. 3.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_float_array, check_int

__all__ = ["fake_quantize", "fake_quantize_backward", "ste_forward", "ste_backward",
           "lsq_forward", "lsq_backward", "lsq_grad_factor"]


def _check_range(quant_min: Any, quant_max: Any) -> tuple[int, int]:
    quant_min = check_int("quant_min", quant_min, min=-(2**31), max=2**31 - 1)
    quant_max = check_int("quant_max", quant_max, min=-(2**31), max=2**31 - 1)
    if quant_min > quant_max:
        raise ValueError(f"quant_min={quant_min} must be <= quant_max={quant_max}")
    return quant_min, quant_max


def _check_scale(scale: np.ndarray) -> np.ndarray:
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    return scale


def _broadcast_param(p: np.ndarray, x: np.ndarray, axis: int | None, name: str) -> np.ndarray:
    if axis is None:
        if p.ndim != 0 and p.size != 1:
            raise ValueError(f"{name} must be a scalar for per-tensor fake quantization (axis=None), got shape {p.shape}")
        return p.reshape(())
    if p.shape != (x.shape[axis],):
        raise ValueError(f"{name} must have shape ({x.shape[axis]},) = x.shape[axis={axis}], got {p.shape}")
    shape = [1] * x.ndim
    shape[axis] = -1
    return p.reshape(shape)


def fake_quantize(x: Any, scale: Any, zero_point: Any, quant_min: int, quant_max: int,
                  axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """torch FakeQuantize forward: the fake-quantized values and the gradient mask.

    Parameters
    ----------
    x : ndarray of float32, any shape
        Input (float64 is converted to float32, the dtype of the torch kernels' math).
    scale : float or ndarray of float32, shape (x.shape[axis],)
        Positive scale(s); per tensor when ``axis`` is None.
    zero_point : int or ndarray of int, same shape as ``scale``
        Integer zero-point(s) in ``[quant_min, quant_max]``.
    quant_min, quant_max : int
        Integer range, e.g. (0, 255) for quint8, (-128, 127) for qint8.
    axis : int or None
        Channel axis for per-channel fake quantization.

    Returns
    -------
    y : ndarray of float32, x's shape
        ``(clamp(zp + rint(x * (1/scale)), qmin, qmax) - zp) * scale``.
    mask : ndarray of bool, x's shape
        Where the unclamped integer lies in ``[quant_min, quant_max]`` (NaN input: False).
    """
    x = as_float_array("x", x).astype(np.float32, copy=False)
    quant_min, quant_max = _check_range(quant_min, quant_max)
    if axis is not None:
        axis = check_int("axis", axis, min=-x.ndim, max=x.ndim - 1) % x.ndim
    scale = _check_scale(_broadcast_param(np.asarray(scale, dtype=np.float32), x, axis, "scale"))
    zp = np.asarray(zero_point)
    if zp.dtype.kind not in "iu" and not np.all(zp == np.rint(zp)):
        raise TypeError(f"zero_point must be integer-valued, got {zero_point!r}")
    zp = _broadcast_param(zp.astype(np.int64), x, axis, "zero_point")
    if np.any(zp < quant_min) or np.any(zp > quant_max):
        raise ValueError(f"zero_point={zero_point!r} must lie in [quant_min, quant_max] = [{quant_min}, {quant_max}]")
    inv_scale = np.float32(1) / scale
    with np.errstate(invalid="ignore", over="ignore"):
        q = zp.astype(np.float32) + np.rint(x * inv_scale)  # float32, like the kernel's qval_f
        mask = (q >= quant_min) & (q <= quant_max)
        y = (np.clip(q, quant_min, quant_max) - zp.astype(np.float32)) * scale
    return y.astype(np.float32, copy=False), mask


def fake_quantize_backward(dy: Any, mask: Any) -> np.ndarray:
    """Masked straight-through estimator: ``dx = dy * mask``.

    Parameters
    ----------
    dy : ndarray of float, any shape
        Upstream gradient.
    mask : ndarray of bool, dy's shape
        True where the forward value was not clamped (:func:`fake_quantize`'s second result).
    """
    dy = as_float_array("dy", dy)
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.shape != dy.shape:
        raise ValueError(f"mask must be a bool array of dy's shape {dy.shape}, got {mask.dtype} {mask.shape}")
    return dy * mask


def ste_forward(x: Any, x_quant: Any) -> np.ndarray:
    """BitNet's straight-through forward ``x + (x_quant - x)`` in x's float dtype.

    Parameters
    ----------
    x : ndarray of float, any shape
        The full-precision input.
    x_quant : ndarray of float, x's shape
        Its quantized value (cast to x's dtype).
    """
    x = as_float_array("x", x)
    x_quant = as_float_array("x_quant", x_quant)
    if x.shape != x_quant.shape:
        raise ValueError(f"x_quant must have x's shape {x.shape}, got {x_quant.shape}")
    return x + (x_quant.astype(x.dtype) - x)


def ste_backward(dy: Any) -> np.ndarray:
    """BitNet's straight-through backward: the identity (clipped values included).

    Parameters
    ----------
    dy : ndarray of float, any shape
        Upstream gradient (returned as a copy).
    """
    return np.array(as_float_array("dy", dy), copy=True)


def lsq_grad_factor(numel: int, quant_max: int) -> float:
    """LSQ's gradient scale ``g = 1 / sqrt(numel * quant_max)`` (``use_grad_scaling``).

    Parameters
    ----------
    numel : int >= 1
        Elements of the tensor the scale applies to.
    quant_max : int >= 1
        Upper end of the integer range.
    """
    numel = check_int("numel", numel, min=1)
    quant_max = check_int("quant_max", quant_max, min=1)
    return 1.0 / float(np.sqrt(numel * quant_max))


def _lsq_params(scale: Any, zero_point: Any) -> tuple[np.float32, np.float32]:
    s = np.asarray(scale, dtype=np.float32).reshape(-1)
    z = np.asarray(zero_point, dtype=np.float32).reshape(-1)
    if s.size != 1 or z.size != 1:
        raise ValueError("scale and zero_point must be scalars (per-tensor LSQ)")
    _check_scale(s)
    return s[0], z[0]


def lsq_forward(x: Any, scale: Any, zero_point: Any, quant_min: int, quant_max: int) -> np.ndarray:
    """LSQ forward (``_fake_quantize_learnable_per_tensor_affine``).

    ``zero_point`` (a float, learnable) is rounded half-to-even and clamped to the
    range, then :func:`fake_quantize` runs with it. Returns float32, x's shape.

    Parameters
    ----------
    x : ndarray of float32, any shape
        The input.
    scale : float > 0
        Finite per-tensor scale (a one-element array is accepted).
    zero_point : float
        Per-tensor learnable zero-point, rounded half-to-even and clamped to the range.
    quant_min, quant_max : int in -2**31 .. 2**31 - 1
        The integer range, ``quant_min <= quant_max``.
    """
    quant_min, quant_max = _check_range(quant_min, quant_max)
    s, z = _lsq_params(scale, zero_point)
    zp = int(np.clip(np.rint(z), quant_min, quant_max))
    return fake_quantize(x, s, zp, quant_min, quant_max)[0]


def lsq_backward(dy: Any, x: Any, scale: Any, zero_point: Any, quant_min: int, quant_max: int,
                 grad_factor: float = 1.0) -> tuple[np.ndarray, float, float]:
    """LSQ backward (``_fake_quantize_learnable_per_tensor_affine_backward``).

    Parameters
    ----------
    dy : ndarray of float32, x's shape
        Gradient of the loss with respect to the forward's output.
    x : ndarray of float32
        The forward's input.
    scale, zero_point : float
        The learnable parameters (per tensor).
    quant_min, quant_max : int
        Integer range; it must contain 0 (as torch checks).
    grad_factor : float
        ``g`` (1.0, or :func:`lsq_grad_factor` for LSQ's gradient scaling).

    Returns
    -------
    dx : ndarray of float32, x's shape
    dscale : float
        Sum over elements (float64 accumulation of float32 terms).
    dzero_point : float
        Sum over elements.
    """
    x = as_float_array("x", x).astype(np.float32, copy=False)
    dy = as_float_array("dy", dy).astype(np.float32, copy=False)
    if dy.shape != x.shape:
        raise ValueError(f"dy must have x's shape {x.shape}, got {dy.shape}")
    quant_min, quant_max = _check_range(quant_min, quant_max)
    if quant_min > 0 or quant_max < 0:
        raise ValueError(f"[quant_min, quant_max] = [{quant_min}, {quant_max}] must contain 0 for LSQ")
    s, z = _lsq_params(scale, zero_point)
    g = np.float32(grad_factor)
    zp = np.float32(np.trunc(np.clip(z + np.float32(0.5), quant_min, quant_max)))  # the backward's rounding
    inv_scale = np.float32(1) / s
    with np.errstate(invalid="ignore", over="ignore"):
        xq = np.rint(zp + x * inv_scale)
        inside = (xq >= quant_min) & (xq <= quant_max)
        below = xq < quant_min
        xfq = (np.clip(xq, quant_min, quant_max) - zp) * s
        dx = dy * inside
        dscale = np.where(inside, dy * (xfq - x) * inv_scale * g,
                          np.where(below, dy * np.float32(quant_min - zp), dy * np.float32(quant_max - zp)) * g)
        dzero = np.where(inside, np.float32(0), dy * np.float32(-1) * s * g)
    return (dx.astype(np.float32), float(np.sum(dscale, dtype=np.float64)), float(np.sum(dzero, dtype=np.float64)))
