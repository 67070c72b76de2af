"""NumbaBackend: refquant's ops as Numba CPU kernels.

Capabilities are declared honestly in :data:`CAPABILITIES` (op -> formats, whether
bit-exact); an op or format not declared there raises UnsupportedError and never
falls back to the reference.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from accel.numba import affine, floats
from accel.numba._threads import configure_threads
from accel.ops import FLOAT_FORMATS, GRANULARITIES, OP_SPECS
from accel.protocol import OpCapability
from refquant.errors import UnsupportedError

# op -> (implementation, capability)
_OPS: dict[str, tuple[Callable[..., Any], OpCapability]] = {
    "encode_float": (floats.encode_float, OpCapability(frozenset(FLOAT_FORMATS), bit_exact=True)),
    "decode_float": (floats.decode_float, OpCapability(frozenset(FLOAT_FORMATS), bit_exact=True)),
    "quantize_affine": (affine.quantize_affine,
                        OpCapability(frozenset(GRANULARITIES), bit_exact=True, constraints={"max_ndim": affine.NDIM})),
    "dequantize_affine": (affine.dequantize_affine,
                          OpCapability(frozenset(GRANULARITIES), bit_exact=True, constraints={"max_ndim": affine.NDIM})),
}


class NumbaBackend:
    """CPU backend: parallel Numba kernels (threads from ``REFQUANT_NUMBA_THREADS``)."""

    name = "numba"
    device = "cpu"

    def __init__(self) -> None:
        self.threads = configure_threads()
        unknown = set(_OPS) - set(OP_SPECS)
        if unknown:  # an op the contract does not define cannot be checked
            raise RuntimeError(f"numba backend implements ops missing from OP_SPECS: {sorted(unknown)}")

    def capabilities(self) -> dict[str, OpCapability]:
        return {op: cap for op, (_, cap) in _OPS.items()}

    def asarray(self, x: Any) -> Any:
        return np.asarray(x)

    def to_numpy(self, x: Any) -> Any:
        if isinstance(x, (tuple, list)):
            return type(x)(self.to_numpy(v) for v in x)
        return x

    def __getattr__(self, op: str) -> Callable[..., Any]:
        if op.startswith("__"):
            raise AttributeError(op)
        if op not in _OPS:
            if op in OP_SPECS:
                def unsupported(*args: Any, **kwargs: Any) -> Any:
                    raise UnsupportedError(f"the numba backend does not implement {op!r}")
                return unsupported
            raise AttributeError(f"numba backend has no op {op!r}")
        return _OPS[op][0]

    def __repr__(self) -> str:
        return f"<refquant numba backend, {self.threads} threads>"
