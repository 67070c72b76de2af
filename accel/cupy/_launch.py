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
    """Recompute in float64, on the device, the outputs of a fused dequant-matmul that came
    out non-finite (``src/matmul.cu``: ``count_nonfinite``, ``recompute_nonfinite_f64``).

    The kernels accumulate in float32, so a product or partial sum past FLT_MAX gives
    inf - inf = NaN where the reference's float64 sum rounds to +-inf once. Such outputs
    are rare (weights and activations near float32's limits): one flag is read back, and
    only when it is set is the weight decoded by the backend's own dequantize kernel
    (``dequantized_weight()``: float32 (out, in)) and the affected dot products summed in
    float64 by one thread each. ``out`` (rows, out) float32 is fixed in place and returned.
    """
    rows, out_f = out.shape
    flag = dev.zeros(1, np.int32)
    grid, block = stride_grid(dev, out.size)
    dev.launch("matmul", "count_nonfinite", grid, block, [out.reshape(-1).view(np.uint32), i64(out.size), flag])
    if not int(flag[0]):
        return out
    w = dev.contiguous(dequantized_weight(), np.float32)
    dev.launch("matmul", "recompute_nonfinite_f64", grid, block,
               [dev.contiguous(x2, np.float32), w, i64(rows), i64(out_f), i64(x2.shape[1]), out])
    return out


def empty_matmul(dev: Any, lead: tuple[int, ...], in_f: int, out_f: int) -> Any | None:
    """The result of a matmul with no rows, no columns or no reduction (zeros allocated on
    the device), else None: a decision on the shapes alone, no data leaves the device."""
    rows = int(np.prod(lead, dtype=np.int64))
    if rows and in_f and out_f:
        return None
    return dev.zeros((*lead, out_f), np.float32)
