"""Conformance: weight-quantization algorithms (rtn_quantize, gptq_quantize, awq_quantize).

Each op returns the dequantized weight (float32, ``W``'s shape). The format axis is
``{bits}bit_g{group_size}`` or ``{bits}bit_perchannel``
(:data:`refquant.algorithms.ops.FORMATS`). Inputs are small linear layers from
:func:`conformance.strategies.linear_layer_cases`: correlated activations with outlier
and dead input channels, weights with zero rows, outliers, tiny values or values near
the float16 maximum; ``in_features`` 128 or 192 (a partial last group of 64), or the
values a backend lists under the capability constraint ``"in_features"``.

Contracts (``conformance/contracts.py``): RTN is Exact. GPTQ and AWQ are searches: a
backend that claims bit-exactness (the reference does) is held to Exact, any other to
``NoWorseThanRef`` on the layer's squared output error (:func:`layer_errors`):

- GPTQ: ``1/2 tr((W - Q) H (W - Q)^T)``, which is ``||X W^T - X Q^T||^2`` for
  ``H = 2 X^T X`` (what GPTQ minimizes, and its ``.error``);
- AWQ: ``||X W^T - X Q^T||^2`` over the calibration inputs (what its scale search
  minimizes, up to the constant 1/(tokens x out)).

The backend's weight must be float32 of ``W``'s shape and finite (for finite input the
reference's always is: no float16 overflow). The bound gets a floor of
``2^-22`` times the layer's output energy (weights rounded to float16 lose that much),
so that where the reference is exact an equally good result is not failed.
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
from refquant.algorithms.ops import FORMATS, format_args

ALGORITHM_FORMATS = OP_SPECS["rtn_quantize"].formats
# float16 rounding of a weight: half an ulp, 2^-11 relative; squared.
FP16_FLOOR = 2.0**-22


def _gptq_error(H: np.ndarray):  # type: ignore[no-untyped-def]
    H64 = H.astype(np.float64)

    def error(delta: np.ndarray) -> float:
        return 0.5 * float(np.sum((delta @ H64) * delta))

    return error


def _output_error(X: np.ndarray):  # type: ignore[no-untyped-def]
    X64 = X.astype(np.float64)

    def error(delta: np.ndarray) -> float:
        out = X64 @ delta.T
        return float(np.sum(out * out))

    return error


def layer_errors(op: str, got: np.ndarray, expected: np.ndarray, W: np.ndarray, error) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """``got_error``, ``ref_error`` and ``error_floor`` for :class:`NoWorseThanRef`, with
    ``error(delta)`` the layer's squared output error of a weight difference (float64).

    Raises
    ------
    AssertionError
        When ``got`` is not float32 of ``W``'s shape or is not finite.
    """
    if got.dtype != expected.dtype or got.shape != expected.shape:
        raise AssertionError(f"{op} returned {got.dtype} {got.shape}, expected {expected.dtype} {expected.shape}")
    if not np.isfinite(got).all():
        at = tuple(int(i) for i in np.argwhere(~np.isfinite(got))[0])
        raise AssertionError(f"{op}: {int((~np.isfinite(got)).sum())} non-finite weights (the reference's are "
                             f"finite); first at {at}: {got[at]!r}, W {W[at]!r}")
    W64 = W.astype(np.float64)
    return {"got_error": error(W64 - got.astype(np.float64)), "ref_error": error(W64 - expected.astype(np.float64)),
            "error_floor": FP16_FLOOR * error(W64)}


def _layers(refquant_backend, op: str):  # type: ignore[no-untyped-def]
    allowed = refquant_backend.capabilities()[op].constraints.get("in_features")
    return strategies.linear_layer_cases() if allowed is None else strategies.linear_layer_cases(
        in_features=tuple(allowed))


def _check_search(refquant_backend, op: str, fmt: str, got, expected, W, error, inputs) -> None:  # type: ignore[no-untyped-def]
    context = {}
    if not isinstance(contract_for(op, fmt, refquant_backend), Exact):
        try:
            context = layer_errors(op, got, expected, W, error)
        except AssertionError as problem:
            raise AssertionError(f"[{refquant_backend.name}] {problem}\n"
                                 f"repro: {repro_line(refquant_backend, op, inputs)}") from None
    check(op, fmt, got, expected, backend=refquant_backend, inputs=inputs, **context)


@pytest.mark.op("rtn_quantize")
@pytest.mark.parametrize("fmt", ALGORITHM_FORMATS)
@given(data=st.data(), sym=st.booleans())
def test_rtn_quantize(refquant_backend, fmt, data, sym):
    require(refquant_backend, "rtn_quantize", fmt)
    W, _ = data.draw(_layers(refquant_backend, "rtn_quantize"))
    kw = dict(format_args(fmt), sym=sym)
    check("rtn_quantize", fmt, call(refquant_backend, "rtn_quantize", W, **kw), ref("rtn_quantize", W, **kw),
          backend=refquant_backend, inputs={"W": W, **kw})


@pytest.mark.op("gptq_quantize")
@pytest.mark.parametrize("fmt", ALGORITHM_FORMATS)
@given(data=st.data(), act_order=st.booleans(), sym=st.booleans())
def test_gptq_quantize(refquant_backend, fmt, data, act_order, sym):
    require(refquant_backend, "gptq_quantize", fmt)
    W, X = data.draw(_layers(refquant_backend, "gptq_quantize"))
    H = strategies.hessian(X)
    kw = dict(format_args(fmt), act_order=act_order, sym=sym)
    _check_search(refquant_backend, "gptq_quantize", fmt, call(refquant_backend, "gptq_quantize", W, H, **kw),
                  ref("gptq_quantize", W, H, **kw), W, _gptq_error(H), {"W": W, "H": H, **kw})


@pytest.mark.op("awq_quantize")
@pytest.mark.parametrize("fmt", ALGORITHM_FORMATS)
@given(data=st.data())
def test_awq_quantize(refquant_backend, fmt, data):
    require(refquant_backend, "awq_quantize", fmt)
    W, X = data.draw(_layers(refquant_backend, "awq_quantize"))
    kw = format_args(fmt)
    _check_search(refquant_backend, "awq_quantize", fmt, call(refquant_backend, "awq_quantize", W, X, **kw),
                  ref("awq_quantize", W, X, **kw), W, _output_error(X), {"W": W, "X": X, **kw})


def test_algorithm_axis_matches_refquant():
    assert tuple(ALGORITHM_FORMATS) == FORMATS
    assert OP_SPECS["gptq_quantize"].formats == ALGORITHM_FORMATS == OP_SPECS["awq_quantize"].formats
