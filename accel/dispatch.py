"""The dispatcher: every op call on every backend goes through the reference's preparation.

``accel.get_backend(name)`` returns a :class:`Dispatched` backend. Calling an op on it
runs the op's prepare function (``OpSpec.prepare``, in :mod:`refquant.prepare`) once:
arguments are validated, normalized to contiguous arrays of the dtype the op computes in
and parameter objects rebuilt in their canonical class, and the output array allocated
(or the caller's ``out=`` checked). Only then is the backend's kernel called, with the
prepared arguments converted by its ``asarray``. So a backend holds kernels only: it
needs no argument checks, and one written by a third party gets the same safety.

Ops whose ``OpSpec.out`` is set accept ``out=`` (an array, or for a tuple result a
tuple of arrays or None in the result's order): a backend whose capability declares
``out=True`` writes the prepared arrays directly; for any other backend the result is
copied into them.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass, replace
from typing import Any

import numpy as np

from accel.ops import OP_SPECS, OpSpec
from refquant.prepare import Prepared

__all__ = ["Dispatched", "dispatched", "prepare_function", "prepare_by_signature", "to_backend"]


def _import(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def prepare_by_signature(spec: OpSpec) -> Callable[..., Prepared]:
    """The documented default for a row without ``prepare``: bind the arguments to the
    reference function's signature (TypeError when they do not fit, as a call would) and
    make array arguments C-contiguous. No value is checked."""
    signature = inspect.signature(_import(spec.reference))

    def prepare(*args: Any, **kwargs: Any) -> Prepared:
        bound = signature.bind(*args, **kwargs)
        contiguous = {k: np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v
                      for k, v in bound.arguments.items()}
        bound.arguments.update(contiguous)
        return Prepared(tuple(bound.args), dict(bound.kwargs))

    return prepare


@functools.lru_cache(maxsize=None)
def prepare_function(op: str) -> Callable[..., Prepared]:
    """The prepare function of ``op`` (KeyError naming the op if unknown)."""
    try:
        spec = OP_SPECS[op]
    except KeyError:
        raise KeyError(f"unknown op {op!r}; known: {', '.join(sorted(OP_SPECS))}") from None
    return prepare_by_signature(spec) if spec.prepare is None else _import(spec.prepare)


def to_backend(backend: Any, x: Any) -> Any:
    """NumPy arrays in ``x`` (also inside tuples, lists and dataclasses) as the backend's arrays."""
    if isinstance(x, np.ndarray):
        return backend.asarray(x)
    if isinstance(x, tuple):
        return tuple(to_backend(backend, v) for v in x)
    if isinstance(x, list):
        return [to_backend(backend, v) for v in x]
    if is_dataclass(x) and not isinstance(x, type):
        return replace(x, **{f.name: to_backend(backend, getattr(x, f.name)) for f in fields(x) if f.init})
    return x


def _copy_into(out: Any, result: Any) -> Any:
    """``result`` (NumPy) written into the prepared ``out``: an array, or a tuple whose None
    entries (results the op allocates itself) take the result's own."""
    if not isinstance(out, tuple):
        np.copyto(out, np.asarray(result), casting="no")
        return out
    return tuple(r if o is None else _copy_into(o, r) for o, r in zip(out, result))


class Dispatched:
    """A backend behind the boundary (see the module docstring).

    Parameters
    ----------
    backend : Backend
        The kernels (``accel.protocol.Backend``).
    preparers : mapping of op -> prepare function, optional
        Replacements of the OP_SPECS prepare functions. Only for tests of the boundary
        itself (the conformance mutants model a backend that skips it); never needed
        by a backend.
    """

    def __init__(self, backend: Any, preparers: Mapping[str, Callable[..., Prepared]] | None = None) -> None:
        self.raw = backend
        self._preparers = dict(preparers or {})

    @property
    def name(self) -> str:
        return self.raw.name

    @property
    def device(self) -> str:
        return self.raw.device

    def capabilities(self) -> Any:
        return self.raw.capabilities()

    def asarray(self, x: Any) -> Any:
        return self.raw.asarray(x)

    def to_numpy(self, x: Any) -> Any:
        return self.raw.to_numpy(x)

    def prepare(self, op: str, *args: Any, **kwargs: Any) -> Prepared:
        """The prepared arguments of ``op`` (what the kernel will receive, as NumPy)."""
        prepare = self._preparers.get(op) or prepare_function(op)
        return prepare(*args, **kwargs)

    def call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """Prepare, then run the backend's kernel of ``op``."""
        caller_out = kwargs.get("out")
        p = self.prepare(op, *args, **kwargs)
        kernel = getattr(self.raw, op)
        b_args = to_backend(self.raw, p.args)
        b_kwargs = {k: to_backend(self.raw, v) for k, v in p.kwargs.items()}
        cap = self.raw.capabilities().get(op)
        if p.out is not None and getattr(cap, "out", False):
            return kernel(*b_args, out=p.out, **b_kwargs)
        result = kernel(*b_args, **b_kwargs)
        if caller_out is None:
            return result
        return _copy_into(p.out, self.raw.to_numpy(result))

    def __getattr__(self, op: str) -> Any:
        if op.startswith("__") or op in ("raw", "_preparers"):
            raise AttributeError(op)
        if op in OP_SPECS:
            return functools.partial(self.call, op)
        return getattr(self.raw, op)

    def __repr__(self) -> str:
        return f"<dispatched {self.raw!r}>"


def dispatched(backend: Any) -> Dispatched:
    """``backend`` behind the boundary (itself when it already is)."""
    return backend if isinstance(backend, Dispatched) else Dispatched(backend)
