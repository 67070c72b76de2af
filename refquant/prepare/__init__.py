"""Argument preparation of every backend op: the one safety boundary.

Each op of :data:`accel.ops.OP_SPECS` names a ``prepare`` function here, with the op's
signature (plus ``out=`` for ops with a single array result). It validates every
argument (types, dtypes, shapes, ranges, values the op does not define, consistency of
parameter objects), normalizes them (contiguous arrays of the dtype the op computes in,
canonical parameter objects, format names resolved) and allocates the output, and
returns a :class:`Prepared`. ``accel``'s dispatcher runs it once before any backend's
kernel, so kernels receive only inputs that passed these checks: a backend holds
kernels and no argument checks, and a third-party backend gets the same safety.

The prepared arguments still satisfy the reference function's signature (so the
reference backend computes from them unchanged). The error messages are the
reference's: the checks are the reference's own helpers.

Resource rule (every parameter has a stated range): outputs are allocated from shapes
whose sizes are computed in Python integers (:func:`checked_size`), so no product
wraps, and every allocation is proportional to the input plus the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["Prepared", "output", "checked_size", "MAX_ELEMENTS"]

#: Largest element count of any array an op allocates (2**48: 1 PiB of float32, beyond
#: any machine); larger shapes are refused before allocating, whatever the dtype.
MAX_ELEMENTS = 1 << 48


@dataclass(frozen=True)
class Prepared:
    """What a prepare function hands the kernel.

    Attributes
    ----------
    args : tuple
        Positional arguments, normalized (the reference signature still accepts them).
    kwargs : mapping
        Keyword arguments, normalized.
    out : ndarray or None
        The result array of an op with one array result (caller's ``out=`` after
        checks, or newly allocated); None for ops with tuple or object results.
    """

    args: tuple
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    out: np.ndarray | None = None


def checked_size(shape: tuple[int, ...], what: str = "shape") -> int:
    """Number of elements of ``shape``, in Python integers (no int64 wrap-around).

    Raises ValueError above :data:`MAX_ELEMENTS`, naming ``what``.
    """
    n = math.prod(int(s) for s in shape)
    if n > MAX_ELEMENTS:
        raise ValueError(f"{what}={tuple(shape)} has {n} elements, more than the {MAX_ELEMENTS} any op allocates")
    return n


def output(out: Any, shape: tuple[int, ...], dtype: Any, inputs: tuple[Any, ...] = ()) -> np.ndarray:
    """The result array: a new ``np.empty(shape, dtype)``, or the caller's ``out`` checked.

    A caller's ``out`` must be a writeable C-contiguous ndarray of exactly ``shape`` and
    ``dtype`` that shares no memory with any of ``inputs`` (kernels write it while
    reading them).
    """
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    checked_size(shape, "result shape")
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(f"out must have shape {shape} and dtype {dtype}, got shape {out.shape} and dtype {out.dtype}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("out must be a writeable C-contiguous array")
    for a in inputs:
        if isinstance(a, np.ndarray) and np.shares_memory(out, a):
            raise ValueError("out shares memory with an input; pass a separate array")
    return out
