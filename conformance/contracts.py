"""Tolerance contracts, declared per (op, format) in ONE table.

| contract          | meaning                                                                 |
|-------------------|-------------------------------------------------------------------------|
| Exact             | identical bits/bytes (NaNs compared as NaN, by position)                |
| Ulp(n)            | <= n units in the last place of the output dtype                        |
| Codes(delta,rate) | integer codes differ by <= delta, at a fraction <= rate of elements     |
| NoWorseThanRef(r) | the backend's reconstruction error <= r x the reference's               |
| Nmse(tau)         | ||out - ref||^2 / ||ref||^2 <= tau                                      |

A backend that claims ``bit_exact`` for an op is held to Exact whatever this table says
(:func:`contract_for`). Each contract is a callable ``(got, expected, **context)`` that
returns None when satisfied and a human-readable failure description otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Contract", "Exact", "Ulp", "Codes", "NoWorseThanRef", "Nmse", "CONTRACTS", "contract_for"]


def _leaves(x: Any) -> list[np.ndarray]:
    if isinstance(x, (tuple, list)):
        return [leaf for v in x for leaf in _leaves(v)]
    if hasattr(x, "__dataclass_fields__") and not isinstance(x, np.ndarray):
        return [leaf for name in x.__dataclass_fields__ for leaf in _leaves(getattr(x, name))]
    return [np.asarray(x)]


def _as_bits(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f" or a.dtype.kind == "V":
        return a.view(f"u{a.dtype.itemsize}") if a.dtype.itemsize in (1, 2, 4, 8) else a
    return a


class Contract:
    """Base class: ``check(got, expected, **context) -> str | None``."""

    name = "contract"

    def check(self, got: Any, expected: Any, **context: Any) -> str | None:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


def _shape_problem(g: np.ndarray, e: np.ndarray) -> str | None:
    if g.shape != e.shape:
        return f"shape {g.shape} != expected {e.shape}"
    if g.dtype != e.dtype:
        return f"dtype {g.dtype} != expected {e.dtype}"
    return None


def _first_diffs(mask: np.ndarray, g: np.ndarray, e: np.ndarray, limit: int = 5) -> str:
    idx = np.argwhere(mask)[:limit]
    parts = []
    for i in idx:
        t = tuple(int(v) for v in i)
        gv, ev = g[t], e[t]
        extra = ""
        if g.dtype.kind == "f":
            gb, eb = _as_bits(np.asarray(gv)), _as_bits(np.asarray(ev))
            extra = f" (bits {int(gb):#x} vs {int(eb):#x})"
        parts.append(f"at {t}: got {gv!r}, expected {ev!r}{extra}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Exact(Contract):
    """Identical bits. NaN equals NaN only where the format allows several NaN codes
    and ``nan_equal=True`` (payloads then need not match)."""

    nan_equal: bool = False
    name: str = "Exact"

    def check(self, got: Any, expected: Any, **context: Any) -> str | None:
        gl, el = _leaves(got), _leaves(expected)
        if len(gl) != len(el):
            return f"returned {len(gl)} arrays, expected {len(el)}"
        for k, (g, e) in enumerate(zip(gl, el)):
            if (p := _shape_problem(g, e)) is not None:
                return f"output {k}: {p}"
            if g.dtype.kind == "f":
                both_nan = np.isnan(g) & np.isnan(e) if self.nan_equal else np.zeros(g.shape, bool)
                bad = (_as_bits(g) != _as_bits(e)) & ~both_nan
            else:
                bad = g != e
            if bad.any():
                return f"output {k}: {int(bad.sum())} of {bad.size} elements differ; {_first_diffs(bad, g, e)}"
        return None


@dataclass(frozen=True)
class Ulp(Contract):
    """Within ``n`` units in the last place of the output dtype (NaN must match NaN)."""

    n: int = 1
    name: str = "Ulp"

    def check(self, got: Any, expected: Any, **context: Any) -> str | None:
        for k, (g, e) in enumerate(zip(_leaves(got), _leaves(expected))):
            if (p := _shape_problem(g, e)) is not None:
                return f"output {k}: {p}"
            if g.dtype.kind != "f":
                bad = g != e
            else:
                nan_mismatch = np.isnan(g) != np.isnan(e)
                with np.errstate(invalid="ignore"):
                    ulp = np.spacing(np.abs(e).astype(e.dtype))
                    diff = np.abs(g.astype(np.float64) - e.astype(np.float64))
                    bad = nan_mismatch | (~np.isnan(e) & (diff > self.n * ulp.astype(np.float64)))
                    bad &= ~((g == e) | (np.isinf(e) & (g == e)))
            if bad.any():
                return f"output {k}: {int(bad.sum())} elements beyond {self.n} ulp; {_first_diffs(bad, g, e)}"
        return None


@dataclass(frozen=True)
class Codes(Contract):
    """Integer codes within ``delta``; at most ``rate`` of elements may differ at all."""

    delta: int = 1
    rate: float = 1e-3
    name: str = "Codes"

    def check(self, got: Any, expected: Any, **context: Any) -> str | None:
        for k, (g, e) in enumerate(zip(_leaves(got), _leaves(expected))):
            if (p := _shape_problem(g, e)) is not None:
                return f"output {k}: {p}"
            d = np.abs(g.astype(np.int64) - e.astype(np.int64)) if g.dtype.kind in "iu" else np.abs(g.astype(np.float64) - e.astype(np.float64))
            if (d > self.delta).any():
                return f"output {k}: codes differ by more than {self.delta}; {_first_diffs(d > self.delta, g, e)}"
            if g.size and (d > 0).mean() > self.rate:
                return f"output {k}: {(d > 0).mean():.2%} of codes differ (allowed {self.rate:.2%})"
        return None


@dataclass(frozen=True)
class NoWorseThanRef(Contract):
    """The backend's reconstruction error is at most ``r`` times the reference's.

    Needs ``got_error`` and ``ref_error`` (non-negative floats) in the context. An
    optional ``error_floor`` (>= 0) is added to the bound: the error a result may carry
    without being worse in any meaningful sense (e.g. its values rounded to float16),
    so that where the reference is exact (error 0) an equally good result that lands a
    rounding away is not failed.
    """

    r: float = 1.0
    name: str = "NoWorseThanRef"

    def check(self, got: Any, expected: Any, *, got_error: float | None = None,
              ref_error: float | None = None, error_floor: float = 0.0, **context: Any) -> str | None:
        if got_error is None or ref_error is None:
            return "NoWorseThanRef needs got_error and ref_error"
        if not np.isfinite(got_error):
            return f"backend error is {got_error}"
        if got_error > self.r * ref_error + error_floor + 1e-30:
            floor = f" + floor {error_floor:.3g}" if error_floor else ""
            return f"reconstruction error {got_error:.6g} > {self.r} x reference {ref_error:.6g}{floor}"
        return None


@dataclass(frozen=True)
class Nmse(Contract):
    """Normalised squared error ``||got - ref||^2 / ||ref||^2 <= tau`` (float64)."""

    tau: float = 1e-6
    name: str = "Nmse"

    def check(self, got: Any, expected: Any, **context: Any) -> str | None:
        for k, (g, e) in enumerate(zip(_leaves(got), _leaves(expected))):
            if g.shape != e.shape:
                return f"output {k}: shape {g.shape} != expected {e.shape}"
            g64, e64 = g.astype(np.float64), e.astype(np.float64)
            finite = np.isfinite(e64)
            # where the reference itself is inf/NaN (e.g. a weight that decodes to inf),
            # the backend must give the same non-finite value; elsewhere it must be finite
            same_nonfinite = (np.isnan(g64) & np.isnan(e64)) | (g64 == e64)
            if (~finite & ~same_nonfinite).any():
                return f"output {k}: differs where the reference is non-finite; {_first_diffs(~finite & ~same_nonfinite, g, e)}"
            if not np.isfinite(g64[finite]).all():
                return f"output {k}: non-finite values where the reference is finite"
            g64, e64 = g64[finite], e64[finite]
            den = float(np.sum(e64 * e64))
            num = float(np.sum((g64 - e64) ** 2))
            if (den == 0 and num > 0) or (den > 0 and num / den > self.tau):
                return f"output {k}: nmse {num / den if den else float('inf'):.3g} > {self.tau:g}"
        return None


# (op, format) -> contract; format "*" is the op's default. Ops absent here are Exact.
CONTRACTS: dict[tuple[str, str], Contract] = {
    # --- floats (issue 3) ---
    # encode_float stays Exact, NaN codes included: the reference writes one documented
    # NaN code per format (NumPy float16 / ml_dtypes), which integer code reproduces.
    # decode_float: any float32 NaN for a NaN code (payloads are not portable).
    ("decode_float", "*"): Exact(nan_equal=True),
    # --- affine mapping (issue 3) ---
    # choose_qparams, quantize_affine, dequantize_affine stay Exact: refquant.mapping fixes
    # the float32 operation order (one division for the scale, a true division x / scale
    # for codes, one multiplication float32(q - zp) * scale to dequantize).
    # --- packing (issue 3) ---
    # pack, unpack, pack_ternary, unpack_ternary stay Exact (integer bit layout).
    # --- bitsandbytes family (issue 4) ---
    # bnb_quantize_4bit / bnb_quantize_blockwise / bnb_double_quantize bytes and absmax,
    # and both dequantizes (one float32 multiply), stay Exact: bitsandbytes' CPU bytes.
    # int8_vectorwise_quant stays Exact (bitsandbytes' float32 operation order).
    # Dequantizing with q * (stat / 127) instead of (q * stat) / 127 moves the last bit.
    ("int8_vectorwise_dequant", "*"): Ulp(1),
    # --- integer matmul (issue 4) ---
    # int8_matmul and int8_matmul_zp stay Exact (integer results).
    # float32 evaluation: acc, the scale product and the result each round once.
    ("dequantize_int32", "*"): Ulp(3),
    # float matmuls against the float64 reference (fp16 outputs fit within 1e-5).
    ("llm_int8_matmul", "*"): Nmse(1e-5),
    ("bnb_dequant_matmul_4bit", "*"): Nmse(1e-5),
    # --- gguf (issue 5) ---
    # bytes are Exact (the default); decoded values too, except that a NaN (decoded from
    # a NaN scale in arbitrary bytes) may carry any payload
    ("gguf_dequantize", "*"): Exact(nan_equal=True),
    # fused dequant-matmul: float32 accumulation against the float64 emulated reference
    ("gguf_dequant_matmul", "*"): Nmse(1e-5),
    # A quantizer that does not claim bit-exactness is held to its reconstruction error
    # (conformance/test_gguf.py: imatrix-weighted squared error of the reference decoder's
    # values of its bytes, plus a float16-resolution floor). r = 1.25: ggml's scale
    # searches are heuristics on surrogate objectives (weights x^2, |x| + rms, ...), so an
    # equally good search lands on either side of them on the suite's small inputs (1-6
    # blocks): make_qkx2_quants on a twice-finer grid stays within 1.02x on Q2_K/Q4_K/
    # Q4_1/Q5_1 but reaches 1.17x on single Q5_K blocks (Hypothesis-targeted worst case).
    # Gross errors stay far outside: min-max codes without the search 3.5-29x, the imatrix
    # ignored 1.7-2500x, IQ4_NL without its scale search 1.4x (conformance/mutants_gguf.py).
    ("gguf_quantize", "*"): NoWorseThanRef(1.25),
    # F16/BF16 are casts with one right answer (and NaN/inf inputs), not searches.
    ("gguf_quantize", "f16"): Exact(),
    ("gguf_quantize", "bf16"): Exact(),
    # --- microscaling (issue 17) ---
    # mx_quantize / nvfp4_quantize stay Exact: integer exponent arithmetic and RNE casts
    # (MX), one float32 rounding per operation in Model Optimizer's order (NVFP4).
    # Decoded values: one float32 product; any NaN payload for a NaN scale.
    ("mx_dequantize", "*"): Exact(nan_equal=True),
    ("nvfp4_dequantize", "*"): Exact(nan_equal=True),
    # --- layouts (issue 7) ---
    # --- algorithms (issue 7) ---
    # rtn_quantize stays Exact (one min-max grid, float32 operation order as refquant's).
    # The searches are held to the layer's output error (conformance/test_algorithms.py).
    # GPTQ, error 1/2 tr(dW H dW^T): its greedy column sweep is chaotic, so the same
    # algorithm in float64 came out up to 1.02x the float32 reference (up to 1.04x with
    # 256 inputs; Hypothesis-targeted worst cases over 300 layers per format). Without
    # the error propagation (plain RTN) it is > 1.10x on >= 97% of layers (median 18-48x).
    ("gptq_quantize", "*"): NoWorseThanRef(1.10),
    # AWQ's scale search, error ||X dW^T||^2: the search minimizes exactly this error over
    # 20 candidates, so a finer or differently evaluated search is no worse (a 40-ratio
    # grid: <= 1.00x); 1.05 leaves room for float32 loss evaluation. Without the search
    # (alpha = 0) it is > 1.05x on >= 98% of layers (median 5-6x, up to 700x).
    ("awq_quantize", "*"): NoWorseThanRef(1.05),
}


def contract_for(op: str, fmt: str | None, backend: Any = None) -> Contract:
    """The contract a backend's result for ``(op, fmt)`` is held to.

    A backend whose capabilities claim ``bit_exact`` for the op is held to Exact.
    """
    declared = CONTRACTS.get((op, fmt or "*"), CONTRACTS.get((op, "*"), Exact()))
    if backend is not None:
        cap = backend.capabilities().get(op)
        if cap is not None and cap.bit_exact and not isinstance(declared, Exact):
            return Exact(nan_equal=getattr(declared, "nan_equal", False))
    return declared
