"""refquant as a Backend: every op in OP_SPECS, computed by its reference function.

This is the oracle the conformance suite compares other backends against, and the
backend the suite checks first (it must pass every cell). Fused ops are the emulated
composition defined by their reference function (dequantize, then the float op).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np

from accel.ops import OP_SPECS, OpSpec
from accel.protocol import OpCapability

__all__ = ["ReferenceBackend", "backend", "reference_function"]


def reference_function(op: str) -> Callable[..., Any]:
    """The refquant function that defines ``op`` (KeyError naming the op if unknown)."""
    try:
        spec: OpSpec = OP_SPECS[op]
    except KeyError:
        raise KeyError(f"unknown op {op!r}; known: {', '.join(sorted(OP_SPECS))}") from None
    module_name, _, attr = spec.reference.partition(":")
    return getattr(importlib.import_module(module_name), attr)


class ReferenceBackend:
    """The NumPy reference, exposed through the Backend protocol."""

    name = "reference"
    device = "cpu"

    def capabilities(self) -> dict[str, OpCapability]:
        return {
            op: OpCapability(formats=None if spec.formats is None else frozenset(spec.formats), bit_exact=True,
                             out=spec.out)
            for op, spec in OP_SPECS.items()
        }

    def asarray(self, x: Any) -> Any:
        return np.asarray(x)

    def to_numpy(self, x: Any) -> Any:
        if isinstance(x, (tuple, list)):
            return type(x)(self.to_numpy(v) for v in x)
        return x

    def __getattr__(self, op: str) -> Callable[..., Any]:
        if op.startswith("__") or op not in OP_SPECS:
            raise AttributeError(f"reference backend has no op {op!r}")
        return reference_function(op)

    def __repr__(self) -> str:
        return "<refquant reference backend>"


def backend() -> ReferenceBackend:
    """Entry-point factory (``refquant.backends: reference``)."""
    return ReferenceBackend()
