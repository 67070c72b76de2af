"""Conformance: ggml block formats (gguf_quantize / gguf_dequantize per qtype).

Contract: Exact for a backend that claims bit-exactness (the reference does). Its
quantizer must write ggml's bytes (``ggml_quantize_chunk``) for the same float32 rows
and importance matrix; its dequantizer must return ggml's float32 values (NaN payloads
excepted: ``conformance/contracts.py``). The format axis is the lowercase GGUF type
name. Inputs come from :func:`conformance.strategies.gguf_cases`: the adversarial row
kinds (±0 rows, constants, outliers, ~1e-11, near 65504, ties) with no imatrix, a random
one, or one with zero columns.

A quantizer declared ``bit_exact=False`` is held to ``NoWorseThanRef`` (F16/BF16 stay
Exact): its bytes must have the layout's shape, decode (with the *reference* decoder)
to finite values wherever the reference's bytes do, and reconstruct ``x`` no worse than
``r`` times the reference's error plus a float16-resolution floor
(:func:`reconstruction_errors`). The error is the importance-weighted squared error
``sum_i w_i (x_i - x_hat_i)^2`` with ``w`` the imatrix (1 without one): what an imatrix
estimates, the layer's squared output error in the diagonal approximation (``w_i`` is
the mean square of input ``i``). It is the objective ggml's searches serve; each search
minimizes its own surrogate of it (weights ``x^2``, ``|x| + rms``, ``w sqrt(sigma^2 +
x^2)``), so a different search may beat the reference here. Columns of
zero importance do not count; elements the reference decodes to inf/NaN (ggml's own
overflow near 65504) are not compared.

Dequantization is checked on the reference's bytes and on arbitrary bytes (every bit
pattern is a valid block for these types).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel.ops import OP_SPECS
from conformance import strategies
from conformance.contracts import Exact, contract_for
from conformance.harness import call, check, ref, repro_line, require
from refquant.gguf import get_format

QTYPES = OP_SPECS["gguf_quantize"].formats
# code grids whose midpoints are the rounding boundaries of the simple types (levels per side)
GRID_LEVELS = {"q4_0": (8,), "q5_0": (16,), "q8_0": (127,), "q8_1": (127,)}


def _cases(fmt):
    block = get_format(fmt)
    return strategies.gguf_cases(block.block_size, allow_nonfinite=block.allows_nonfinite,
                                 grid_levels=GRID_LEVELS.get(fmt, (8, 16, 127)),
                                 require_imatrix=block.requires_imatrix)


# Relative resolution a stored value may lose without being worse: a float16 rounding
# (half an ulp, 2^-11 of the value); squared, times the weighted energy of x.
FP16_FLOOR = 2.0**-22


def reconstruction_errors(got: np.ndarray, expected: np.ndarray, x: np.ndarray, fmt: str,
                          imatrix: np.ndarray | None) -> dict[str, float]:
    """``got_error``, ``ref_error`` and ``error_floor`` for :class:`NoWorseThanRef`.

    Both byte arrays are decoded with the reference decoder. Errors are
    ``sum w_i (x_i - x_hat_i)^2`` in float64 with ``w`` the imatrix broadcast over rows
    (ones without one), over the elements where ``x`` and the reference's decoded value
    are finite; ``error_floor = 2^-22 sum w_i x_i^2`` over the same elements.

    Raises
    ------
    AssertionError
        When ``got`` is not a uint8 array of the reference's shape, or decodes to inf/NaN
        where the reference's bytes decode to finite values.
    """
    if got.dtype != expected.dtype or got.shape != expected.shape:
        raise AssertionError(f"gguf_quantize[{fmt}] returned {got.dtype} {got.shape}, the layout is "
                             f"{expected.dtype} {expected.shape}")
    x64 = x.astype(np.float64)
    x_ref = ref("gguf_dequantize", expected, fmt, x.shape).astype(np.float64)
    x_got = ref("gguf_dequantize", got, fmt, x.shape).astype(np.float64)
    compared = np.isfinite(x_ref) & np.isfinite(x64)
    broken = compared & ~np.isfinite(x_got)
    if broken.any():
        at = tuple(int(i) for i in np.argwhere(broken)[0])
        raise AssertionError(f"gguf_quantize[{fmt}]: the bytes decode to inf/NaN at {int(broken.sum())} elements "
                             f"where the reference's decode to finite values; first at {at}: {x_got[at]!r} "
                             f"(reference {x_ref[at]!r}, x {x64[at]!r})")
    w = np.broadcast_to(np.ones(x.shape[-1]) if imatrix is None else imatrix.astype(np.float64), x.shape)

    def weighted(values: np.ndarray) -> float:
        return float(np.sum(np.where(compared, w * values * values, 0.0)))

    with np.errstate(invalid="ignore", over="ignore"):
        return {"got_error": weighted(x64 - x_got), "ref_error": weighted(x64 - x_ref),
                "error_floor": FP16_FLOOR * weighted(x64)}


@pytest.mark.op("gguf_quantize")
@pytest.mark.parametrize("fmt", QTYPES)
@given(data=st.data())
def test_gguf_quantize(refquant_backend, fmt, data):
    require(refquant_backend, "gguf_quantize", fmt)
    x, imatrix = data.draw(_cases(fmt))
    got = call(refquant_backend, "gguf_quantize", x, fmt, imatrix)
    expected = ref("gguf_quantize", x, fmt, imatrix)
    inputs = {"x": x, "qtype": fmt, "imatrix": imatrix}
    errors = {}
    if not isinstance(contract_for("gguf_quantize", fmt, refquant_backend), Exact):
        try:
            errors = reconstruction_errors(got, expected, x, fmt, imatrix)
        except AssertionError as problem:
            raise AssertionError(f"[{refquant_backend.name}] {problem}\n"
                                 f"repro: {repro_line(refquant_backend, 'gguf_quantize', inputs)}") from None
    check("gguf_quantize", fmt, got, expected, backend=refquant_backend, inputs=inputs, **errors)


@pytest.mark.op("gguf_dequantize")
@pytest.mark.parametrize("fmt", QTYPES)
@given(data=st.data())
def test_gguf_dequantize(refquant_backend, fmt, data):
    require(refquant_backend, "gguf_dequantize", fmt)
    block = get_format(fmt)
    x, imatrix = data.draw(_cases(fmt))
    if data.draw(st.booleans()):
        q = ref("gguf_quantize", x, fmt, imatrix)
    else:  # arbitrary block bytes
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        q = rng.integers(0, 256, size=x.shape[:-1] + (x.shape[-1] // block.block_size * block.type_size,),
                         dtype=np.uint8)
    check("gguf_dequantize", fmt, call(refquant_backend, "gguf_dequantize", q, fmt, x.shape),
          ref("gguf_dequantize", q, fmt, x.shape), backend=refquant_backend, inputs={"data": q, "qtype": fmt, "shape": x.shape})
