"""Broken backends for BitNet's ternary GEMM (issue 15).

====================================  =======================================================
mutant                                bug
====================================  =======================================================
ternary_matmul_int8_accumulator       the add/subtract loop accumulated in int8 (the codes'
                                      own type), wrapping once a sum leaves [-128, 127]
====================================  =======================================================
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from conformance.mutants import MutantBackend


def ternary_matmul_int8_accumulator() -> MutantBackend:
    def ternary_matmul(a_q: Any, t: Any) -> np.ndarray:
        a = np.asarray(a_q, np.int64)
        w = np.asarray(t, np.int64)
        return (a @ w).astype(np.int8).astype(np.int32)  # two's-complement wrap, as an int8 register does

    return MutantBackend("ternary_matmul_int8_accumulator", {"ternary_matmul": ternary_matmul})


MUTANTS: dict[str, Callable[[], MutantBackend]] = {
    "ternary_matmul_int8_accumulator": ternary_matmul_int8_accumulator,
}
