"""Conformance: affine mapping (choose_qparams, quantize_affine, dequantize_affine) per granularity.

Contract: Exact for all three (``conformance/contracts.py`` lists no exception). The
reference fixes the float32 operation order (``refquant.mapping`` docstring): the scale is
one float32 division of the range by ``(qmax - qmin)`` (or its half), codes come from the
true quotient ``x / scale`` (not ``x * (1 / scale)``), and dequantization is one float32
multiplication ``float32(q - zero_point) * scale``. A backend that multiplies by a
reciprocal or fuses a multiply-add differs in a few elements and fails here by design.

quantize_affine and dequantize_affine are checked with the reference's parameters, so a
backend's quantizer is tested on its own and not through its own choose_qparams.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel.ops import GRANULARITIES
from conformance import strategies
from conformance.harness import call, check, ref, require


@pytest.mark.op("choose_qparams")
@pytest.mark.parametrize("fmt", GRANULARITIES)
@given(case=st.data())
def test_choose_qparams(refquant_backend, fmt, case):
    require(refquant_backend, "choose_qparams", fmt)
    x, kwargs = case.draw(strategies.affine_cases(fmt))
    check("choose_qparams", fmt, call(refquant_backend, "choose_qparams", x, **kwargs), ref("choose_qparams", x, **kwargs),
          backend=refquant_backend, inputs={"x": x, **kwargs})


@pytest.mark.op("quantize_affine")
@pytest.mark.parametrize("fmt", GRANULARITIES)
@given(data=st.data())
def test_quantize_affine(refquant_backend, fmt, data):
    require(refquant_backend, "quantize_affine", fmt)
    x, kwargs = data.draw(strategies.affine_cases(fmt))
    params = ref("choose_qparams", x, **kwargs)
    if data.draw(st.booleans()):      # infinities clamp to qmin / qmax
        x = x.copy()
        x.flat[data.draw(st.integers(0, x.size - 1))] = data.draw(st.sampled_from([np.inf, -np.inf, 3e38]))
    rounding = data.draw(st.sampled_from(["half_even", "half_even", "half_away"]))
    check("quantize_affine", fmt, call(refquant_backend, "quantize_affine", x, params, rounding=rounding),
          ref("quantize_affine", x, params, rounding=rounding),
          backend=refquant_backend, inputs={"x": x, "params": params, "rounding": rounding})


@pytest.mark.op("dequantize_affine")
@pytest.mark.parametrize("fmt", GRANULARITIES)
@given(data=st.data())
def test_dequantize_affine(refquant_backend, fmt, data):
    require(refquant_backend, "dequantize_affine", fmt)
    x, kwargs = data.draw(strategies.affine_cases(fmt))
    params = ref("choose_qparams", x, **kwargs)
    seed = data.draw(st.integers(0, 2**32 - 1))
    q = np.random.default_rng(seed).integers(params.qmin, params.qmax + 1, size=x.shape).astype(params.code_dtype)
    check("dequantize_affine", fmt, call(refquant_backend, "dequantize_affine", q, params), ref("dequantize_affine", q, params),
          backend=refquant_backend, inputs={"q": q, "params": params})


def test_granularity_axis_matches_refquant():
    from refquant.granularity import GRANULARITY_NAMES

    assert tuple(GRANULARITIES) == tuple(GRANULARITY_NAMES)
