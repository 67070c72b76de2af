"""A complete third-party backend in plain NumPy: the example of docs/backends.md.

It implements four ops of :data:`accel.ops.OP_SPECS` (``decode_float`` for float16 and
bfloat16 only, ``codebook_decode`` for every codebook, ``int8_matmul``,
``int8_vectorwise_dequant``) and declares exactly those in :meth:`capabilities`; the
conformance matrix shows every other op and format as "not implemented".

Check it from the repository root, without installing anything::

    python -m conformance --backend examples.minimal_backend:make_backend \\
        --ops decode_float,codebook_decode,int8_matmul,int8_vectorwise_dequant

or with pytest's own output::

    python -m pytest --pyargs conformance --backend examples.minimal_backend:make_backend \\
        --ops decode_float,codebook_decode,int8_matmul,int8_vectorwise_dequant

Use it like any backend (every call passes through refquant's argument preparation)::

    import accel
    b = accel.get_backend("examples.minimal_backend:make_backend")
    b.int8_matmul(a_q, b_q)

The kernels receive the arguments the op's prepare function (``OpSpec.prepare``, in
:mod:`refquant.prepare`) produced: validated, C-contiguous, of the documented dtypes, so
they contain no argument checks. ``tests/test_examples.py`` runs this backend through
the conformance suite, so the guide cannot drift from the protocol.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.protocol import OpCapability
from refquant.dtypes.codebooks import Codebook, get_codebook
from refquant.errors import UnsupportedError

__all__ = ["MinimalBackend", "make_backend"]

_FLOATS = ("float16", "bfloat16")
_CODEBOOKS = ("nf4", "fp4", "iq4_nl", "ternary", "binary")


class MinimalBackend:
    """Four ops in NumPy, bit-exact with the reference."""

    name = "minimal"
    device = "cpu"

    def capabilities(self) -> dict[str, OpCapability]:
        # What is declared here is what the conformance suite checks; anything else is
        # "not implemented" in the matrix, never failed.
        return {
            "decode_float": OpCapability(formats=frozenset(_FLOATS), bit_exact=True,
                                         notes="16-bit formats only"),
            "codebook_decode": OpCapability(formats=frozenset(_CODEBOOKS), bit_exact=True, out=True),
            "int8_matmul": OpCapability(bit_exact=True, notes="int64 accumulation, int32 result"),
            "int8_vectorwise_dequant": OpCapability(bit_exact=True),
        }

    # --- array conversion (a GPU backend would copy to and from the device here) ---
    def asarray(self, x: Any) -> Any:
        return np.asarray(x)

    def to_numpy(self, x: Any) -> Any:
        if isinstance(x, (tuple, list)):
            return type(x)(self.to_numpy(v) for v in x)
        return np.asarray(x)

    # --- ops: the names and signatures of OP_SPECS ---
    def decode_float(self, bits: np.ndarray, fmt: str) -> np.ndarray:
        """uint16 codes (...) -> float32 (...), exact (both formats widen without rounding)."""
        if fmt == "float16":
            return bits.view(np.float16).astype(np.float32)
        if fmt == "bfloat16":
            # bfloat16 is the upper half of a float32: shift the code into place.
            return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
        # An undeclared format must raise UnsupportedError, never fall back to the reference.
        raise UnsupportedError(f"the minimal backend does not implement decode_float[{fmt}]")

    def codebook_decode(self, codes: np.ndarray, name: str | Codebook, *, out: np.ndarray) -> np.ndarray:
        """uint8 codes (...) -> float32 table values (...), written into ``out``
        (capability ``out=True``: the dispatcher allocated it, or took the caller's)."""
        table = np.asarray(get_codebook(name).values, dtype=np.float32)
        np.take(table, codes, out=out)
        return out

    def int8_matmul(self, a_q: np.ndarray, b_q: np.ndarray) -> np.ndarray:
        """int8/uint8 (m, k) @ (k, n) -> int32 (m, n), exact."""
        return (a_q.astype(np.int64) @ b_q.astype(np.int64)).astype(np.int32)

    def int8_vectorwise_dequant(self, q: np.ndarray, row_stats: np.ndarray) -> np.ndarray:
        """int8 (rows, k), float32 (rows,) -> float32 (rows, k): (q * row_stat) * float32(1/127),
        two float32 roundings in this order, as the reference."""
        scaled = q.astype(np.float32) * row_stats.astype(np.float32)[:, None]
        return scaled * np.float32(1.0 / 127.0)


def make_backend() -> MinimalBackend:
    """The factory named in ``--backend examples.minimal_backend:make_backend``."""
    return MinimalBackend()
