"""Broken backends for the safety boundary (issue 13).

===============================  ============================================================
mutant                           bug
===============================  ============================================================
trusts_inconsistent_params       affine quantize/dequantize behind its own lax argument
                                 handling: it takes QuantParams as given (zero or NaN scales,
                                 zero points of another shape or outside the code range, code
                                 ranges beyond 16 bits) and computes something instead of
                                 refusing them, as the Numba kernels did before the boundary
flushes_tiny_absmax              LLM.int8() vector-wise rows whose absmax is below 127 / FLT_MAX
                                 (1e-45 ... ~3.7e-37) quantized to 0: the float32 scale
                                 127 / absmax overflows and a DAZ/FTZ kernel writes zeros
===============================  ============================================================
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from accel.dispatch import Dispatched
from conformance.mutants import MutantBackend, _ref
from refquant.prepare import Prepared

__all__ = ["MUTANTS"]

F32 = np.float32


def _grid_values(a: Any, grid: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``a`` forced onto ``grid`` (repeated or cut): what a kernel indexing a flat buffer reads."""
    flat = np.asarray(a).astype(dtype, copy=False).reshape(-1)
    if flat.size == 0:
        flat = np.zeros(1, dtype)
    return np.resize(flat, grid)


def trusts_inconsistent_params() -> Dispatched:
    def lax(*args: Any, **kwargs: Any) -> Prepared:   # skips the reference's preparation
        return Prepared(args, kwargs)

    ref_quantize, ref_dequantize = _ref("quantize_affine"), _ref("dequantize_affine")

    def trusting(reference: Callable[..., Any], kernel: Callable[..., Any]) -> Callable[..., Any]:
        def op(*args: Any, **kw: Any) -> Any:   # the reference's result on valid input, a result anyway otherwise
            try:
                return reference(*args, **kw)
            except (ValueError, TypeError):
                return kernel(*args, **kw)
        return op

    def dequantize_affine(q: Any, params: Any) -> np.ndarray:
        q = np.asarray(q)
        gran = params.granularity
        grid = tuple(1 if b is None else -(-n // b) for n, b in zip(q.shape, gran.block_size(q.shape)))
        scale = gran.expand(_grid_values(params.scale, grid, F32), q.shape)
        zp = 0 if params.zero_point is None else gran.expand(_grid_values(params.zero_point, grid, np.int32), q.shape)
        with np.errstate(all="ignore"):
            return ((q.astype(np.int64) - zp).astype(F32) * scale).astype(F32)

    def quantize_affine(x: Any, params: Any, **kw: Any) -> np.ndarray:
        x = np.asarray(x, F32)
        gran = params.granularity
        grid = tuple(1 if b is None else -(-n // b) for n, b in zip(x.shape, gran.block_size(x.shape)))
        scale = gran.expand(_grid_values(params.scale, grid, F32), x.shape)
        zp = 0 if params.zero_point is None else gran.expand(_grid_values(params.zero_point, grid, np.int32), x.shape)
        with np.errstate(all="ignore"):
            q = np.nan_to_num(np.rint(x / scale)) + zp
        return np.clip(q, params.qmin, params.qmax).astype(np.int64).astype(np.int32)

    backend = MutantBackend("trusts_inconsistent_params",
                            {"quantize_affine": trusting(ref_quantize, quantize_affine),
                             "dequantize_affine": trusting(ref_dequantize, dequantize_affine)})
    return Dispatched(backend, preparers={"quantize_affine": lax, "dequantize_affine": lax})


def flushes_tiny_absmax() -> MutantBackend:
    quant = _ref("int8_vectorwise_quant")

    def int8_vectorwise_quant(x: Any, threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q, stats, cols = quant(x, threshold)
        with np.errstate(over="ignore"):
            overflow = np.isinf(F32(127) / np.where(stats == 0, F32(1), stats))
        q = q.copy()
        q[overflow] = 0
        return q, stats, cols

    return MutantBackend("flushes_tiny_absmax", {"int8_vectorwise_quant": int8_vectorwise_quant})


MUTANTS: dict[str, Callable[[], Any]] = {
    "trusts_inconsistent_params": trusts_inconsistent_params,
    "flushes_tiny_absmax": flushes_tiny_absmax,
}
