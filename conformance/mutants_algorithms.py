"""Broken backends for the weight-quantization algorithms and checkpoint layouts (issue 7).

Each mutant is the reference backend with one op replaced by a plausible wrong
implementation. The two search mutants declare their op *not* bit-exact, so the suite
holds them to ``NoWorseThanRef`` on the layer's output error rather than to Exact; the
layout mutants claim bit-exactness like the reference.

====================================  =======================================================
mutant                                bug
====================================  =======================================================
gptq_no_error_propagation             GPTQ without the OBS update of the later columns: each
                                      column rounded to its grid, i.e. plain RTN
awq_no_scale_search                   AWQ with the activation-aware scale search reduced to
                                      its first candidate (alpha = 0, s = 1): plain RTN on
                                      AWQ's zero-point grid
awq_order_missing                     AWQ GEMM words packed in plain low-first order (output
                                      8c + i in nibble i) instead of 0,2,4,6,1,3,5,7
gptq_v1_zeros_without_minus_one       GPTQ v1 ``qzeros`` stored as the zero-points themselves
                                      (the v2 rule) instead of zero - 1
====================================  =======================================================

Not bit-exact but as good as the reference, which the suite must pass
(``tests/meta/test_no_worse_than_ref.py``), in :data:`EQUIVALENTS`:

====================================  =======================================================
gptq_float64                          GPTQ computed in float64 instead of float32 (another
                                      greedy path; up to 1.02-1.04x on targeted inputs)
awq_finer_scale_grid                  AWQ's scale search over 40 ratios instead of 20
====================================  =======================================================
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from conformance.mutants import MutantBackend, _ref
from conformance.mutants_gguf import NotBitExactBackend

__all__ = ["MUTANTS", "EQUIVALENTS"]


def gptq_no_error_propagation() -> NotBitExactBackend:
    from refquant.algorithms import rtn

    def gptq_quantize(W: Any, H: Any, bits: int = 4, group_size: int = 128, act_order: bool = False,
                      sym: bool = True) -> np.ndarray:
        return rtn(W, bits, group_size, sym).dequantized

    return NotBitExactBackend("gptq_no_error_propagation", {"gptq_quantize": gptq_quantize})


def awq_no_scale_search() -> NotBitExactBackend:
    from refquant.algorithms import awq

    def awq_quantize(W: Any, X: Any, bits: int = 4, group_size: int = 128) -> np.ndarray:
        return awq(W, X, bits, group_size, clip=False, n_grid=1).dequantized  # ratios k/1, k < 1: alpha = 0 only

    return NotBitExactBackend("awq_no_scale_search", {"awq_quantize": awq_quantize})


def awq_order_missing() -> MutantBackend:
    from refquant import packing

    pack = _ref("awq_pack")

    def awq_pack(codes: Any, zeros: Any, scales: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _, _, scales16 = pack(codes, zeros, scales)
        qweight = packing.pack(np.asarray(codes).T, 4, "low_first", "int32")
        qzeros = packing.pack(np.asarray(zeros).astype(np.int64).T, 4, "low_first", "int32")
        return qweight, qzeros, scales16

    return MutantBackend("awq_order_missing", {"awq_pack": awq_pack})


def gptq_v1_zeros_without_minus_one() -> MutantBackend:
    pack = _ref("gptq_pack")

    def gptq_pack(codes: Any, zeros: Any, scales: Any, g_idx: Any, bits: int, version: int = 1
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return pack(codes, zeros, scales, g_idx, bits, version=2)  # v2 stores zeros as-is

    return MutantBackend("gptq_v1_zeros_without_minus_one", {"gptq_pack": gptq_pack})


MUTANTS: dict[str, Callable[[], MutantBackend]] = {
    "gptq_no_error_propagation": gptq_no_error_propagation,
    "awq_no_scale_search": awq_no_scale_search,
    "awq_order_missing": awq_order_missing,
    "gptq_v1_zeros_without_minus_one": gptq_v1_zeros_without_minus_one,
}


# --- not bit-exact, as good as the reference (must pass) ------------------------------


def gptq_float64() -> NotBitExactBackend:
    from refquant.algorithms import gptq

    def gptq_quantize(W: Any, H: Any, bits: int = 4, group_size: int = 128, act_order: bool = False,
                      sym: bool = True) -> np.ndarray:
        return gptq(W, H, bits, group_size, act_order, sym, dtype=np.float64).dequantized

    return NotBitExactBackend("gptq_float64", {"gptq_quantize": gptq_quantize})


def awq_finer_scale_grid() -> NotBitExactBackend:
    from refquant.algorithms import awq

    def awq_quantize(W: Any, X: Any, bits: int = 4, group_size: int = 128) -> np.ndarray:
        return awq(W, X, bits, group_size, clip=False, n_grid=40).dequantized

    return NotBitExactBackend("awq_finer_scale_grid", {"awq_quantize": awq_quantize})


EQUIVALENTS: dict[str, Callable[[], MutantBackend]] = {
    "gptq_float64": gptq_float64,
    "awq_finer_scale_grid": awq_finer_scale_grid,
}
