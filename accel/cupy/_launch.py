"""Launch geometry shared by the ops of the CUDA backends (one place, both devices)."""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.reference import reference_function

__all__ = ["THREADS", "stride_grid", "i64", "i32", "u32", "f32", "raise_reference_error"]

THREADS = 256   # threads per block of the element-wise (grid-stride) kernels


def stride_grid(dev: Any, n: int, threads: int = THREADS) -> tuple[tuple[int], tuple[int]]:
    """``(grid, block)`` for a grid-stride kernel over ``n`` items: enough blocks to give
    every thread one item, capped at the device's ``max_blocks``."""
    return (max(1, min(-(-int(n) // threads), dev.max_blocks)),), (threads,)


def i64(v: Any) -> np.int64:
    return np.int64(v)


def i32(v: Any) -> np.int32:
    return np.int32(v)


def u32(v: Any) -> np.uint32:
    return np.uint32(v)


def f32(v: Any) -> np.float32:
    return np.float32(v)


def raise_reference_error(dev: Any, op: str, *args: Any, **kwargs: Any) -> None:
    """A kernel flagged an input the op refuses: run the reference on the same inputs so
    the error (type and message) is the reference's own."""
    host = [dev.to_numpy(a) if hasattr(a, "shape") else a for a in args]
    reference_function(op)(*host, **kwargs)
    raise RuntimeError(f"{op}: the kernel flagged an invalid input that the reference accepts")  # pragma: no cover


def require(dev: Any, ok: bool, op: str, *args: Any, **kwargs: Any) -> None:
    """Guard a launch: unless ``ok`` (the sizes the kernel will index hold), the reference
    raises its own error for these arguments, so no kernel ever reads out of bounds."""
    if not ok:
        raise_reference_error(dev, op, *args, **kwargs)


def fix_nonfinite_products(dev: Any, out: Any, x2: Any, dequantized_weight: Any) -> Any:
    """Recompute in float64 the outputs of a fused dequant-matmul that came out non-finite.

    The kernels accumulate in float32, so a product or partial sum past FLT_MAX gives
    inf - inf = NaN where the reference's float64 sum rounds to +-inf once. Such outputs
    are rare (weights and activations near float32's limits); for them the weight is
    decoded by the backend's own dequantize kernel (``dequantized_weight()``: float32
    (out, in)) and the affected dot products are summed in float64 on the host.
    """
    host = np.array(dev.to_numpy(out), copy=True)
    bad = ~np.isfinite(host)
    if not bad.any():
        return out
    rows, cols = np.nonzero(bad)
    x64 = np.asarray(dev.to_numpy(x2), np.float64)
    w64 = np.asarray(dev.to_numpy(dequantized_weight()), np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        host[rows, cols] = np.einsum("ij,ij->i", x64[rows], w64[cols]).astype(np.float32)
    return dev.asarray(host)


def empty_matmul(dev: Any, lead: tuple[int, ...], in_f: int, out_f: int) -> Any | None:
    """The result of a matmul with no rows, no columns or no reduction (zeros), else None."""
    rows = int(np.prod(lead, dtype=np.int64))
    if rows and in_f and out_f:
        return None
    return dev.zeros((*lead, out_f), np.float32)
