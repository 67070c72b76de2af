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
