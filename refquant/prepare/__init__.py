"""Argument preparation of every backend op: the one safety boundary.

Each op of :data:`accel.ops.OP_SPECS` names a ``prepare`` function here, with the op's
signature (plus ``out=`` for the ops whose ``OpSpec.out`` is set: one array, or a tuple of
arrays in the order of the op's result tuple, as NumPy ufuncs take it). It validates every
argument (types, dtypes, shapes, ranges, values the op does not define, consistency of
parameter objects), normalizes them (contiguous arrays of the dtype the op computes in,
canonical parameter objects, format names resolved) and allocates the output, and
returns a :class:`Prepared`. ``accel``'s dispatcher runs it once before any backend's
kernel, so kernels receive only inputs that passed these checks: a backend holds
kernels and no argument checks, and a third-party backend gets the same safety.

The prepared arguments still satisfy the reference function's signature (so the
reference backend computes from them unchanged); the reference functions take the same
``out=`` and write their result into it through :func:`into`, with the same checks. The error messages are the
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

__all__ = ["Prepared", "output", "outputs", "into", "checked_size", "MAX_ELEMENTS"]

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
    out : ndarray, tuple or None
        The result array of an ``OpSpec.out`` op (caller's ``out=`` after checks, or newly
        allocated); for an op with a tuple result, a tuple of them in the result's order
        (:func:`outputs`), None at a result whose size depends on the data (the kernel
        allocates it). None for the other ops.
    """

    args: tuple
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    out: np.ndarray | tuple[np.ndarray | None, ...] | None = None


def checked_size(shape: tuple[int, ...], what: str = "shape") -> int:
    """Number of elements of ``shape``, in Python integers (no int64 wrap-around).

    Raises ValueError above :data:`MAX_ELEMENTS`, naming ``what``.
    """
    n = math.prod(int(s) for s in shape)
    if n > MAX_ELEMENTS:
        raise ValueError(f"{what}={tuple(shape)} has {n} elements, more than the {MAX_ELEMENTS} any op allocates")
    return n


def output(out: Any, shape: tuple[int, ...], dtype: Any, inputs: tuple[Any, ...] = (), name: str = "out"
           ) -> np.ndarray:
    """The result array: a new ``np.empty(shape, dtype)``, or the caller's ``out`` checked.

    A caller's ``out`` must be a writeable C-contiguous ndarray of exactly ``shape`` and
    ``dtype`` that shares no memory with any of ``inputs`` (kernels write it while
    reading them); ``name`` is the parameter the errors name.
    """
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    checked_size(shape, "result shape")
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(f"{name} must have shape {shape} and dtype {dtype}, "
                         f"got shape {out.shape} and dtype {out.dtype}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"{name} must be a writeable C-contiguous array")
    for a in inputs:
        if isinstance(a, np.ndarray) and np.shares_memory(out, a):
            raise ValueError(f"{name} shares memory with an input; pass a separate array")
    return out


def outputs(out: Any, specs: tuple[Any, ...], inputs: tuple[Any, ...] = ()) -> tuple[np.ndarray | None, ...]:
    """The result arrays of an op with a tuple result, in the result's order.

    ``specs`` holds each result's ``(shape, dtype)``, or None for a result the op
    allocates itself (a scalar, or an array whose size depends on the data). ``out`` is
    None (all allocated) or a tuple of as many entries as results (as NumPy ufuncs take
    it): an entry None is allocated, an array is checked as :func:`output` checks it
    (errors name ``out[i]``) and must share no memory with the other entries; the entry
    of a result the op allocates must be None, and is None in the returned tuple.
    """
    if out is None:
        out = (None,) * len(specs)
    elif not isinstance(out, tuple):
        raise TypeError(f"out must be None or a tuple of {len(specs)} arrays or None (the op's results, in order), "
                        f"got {type(out).__name__}")
    elif len(out) != len(specs):
        raise ValueError(f"out must have {len(specs)} entries (the op's results, in order), got {len(out)}")
    result: list[np.ndarray | None] = []
    for i, (o, spec) in enumerate(zip(out, specs)):
        if spec is None:
            if o is not None:
                raise ValueError(f"out[{i}] must be None: the op allocates that result itself "
                                 "(a scalar, or an array whose size depends on the data)")
            result.append(None)
            continue
        result.append(output(o, spec[0], spec[1], inputs, f"out[{i}]"))
    given = [(i, o) for i, o in enumerate(out) if o is not None]
    for i, a in given:
        for j, b in given:
            if i < j and np.shares_memory(a, b):
                raise ValueError(f"out[{i}] and out[{j}] share memory; pass separate arrays")
    return tuple(result)


def into(out: Any, result: Any, inputs: tuple[Any, ...] = (), fresh: tuple[int, ...] = ()) -> Any:
    """``result`` (an array or a tuple of arrays) as a reference function returns it: itself
    when ``out`` is None, else written into the caller's ``out`` and that returned.

    ``out`` is what the reference functions' ``out=`` takes: for one array result an
    ndarray of exactly the result's shape and dtype, C-contiguous, writeable, sharing no
    memory with ``inputs`` (the caller's arrays); for a tuple result a tuple of such
    arrays in the result's order (as NumPy ufuncs take it), an entry None where a new
    array will do, and the returned tuple holds the caller's arrays and the computed
    results at the None entries. It is checked before anything is written (:func:`output`
    / :func:`outputs`), so a refused ``out`` is left unchanged. ``fresh``: indices of tuple
    results the op allocates itself (a scalar, or an array whose size depends on the
    data); their ``out`` entry must be None.
    """
    if out is None:
        return result
    if not isinstance(result, tuple):
        checked = output(out, result.shape, result.dtype, inputs)
        np.copyto(checked, result, casting="no")
        return checked
    specs = tuple(None if i in fresh else (r.shape, r.dtype) for i, r in enumerate(result))
    checked = outputs(out, specs, inputs)
    for o, given, r in zip(checked, out, result):
        if given is not None:
            np.copyto(o, r, casting="no")
    return tuple(r if given is None else o for o, given, r in zip(checked, out, result))
