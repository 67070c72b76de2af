"""Conformance: float element types (``encode_float`` / ``decode_float``).

encode_float is held to Exact on the codes, NaN codes included (the reference writes
NumPy's float16 NaN and ml_dtypes' NaN codes, reproducible with integer operations);
decode_float is Exact with any NaN accepted for a NaN code (contracts.py).
Hypothesis draws tie-heavy inputs per format; a fixed large set of random float32 bit
patterns per format covers every class of float in bulk. float64 input is drawn next to
the format's midpoints, where rounding once (the reference) and rounding through float32
first differ.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel.ops import FLOAT_FORMATS
from conformance import strategies
from conformance.harness import call, check, ref, require

F32 = np.float32


@pytest.mark.op("encode_float")
@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
@given(data=st.data())
def test_encode_float(refquant_backend, fmt, data):
    require(refquant_backend, "encode_float", fmt)
    x = data.draw(strategies.float_format_inputs(fmt), label="x")
    check("encode_float", fmt, call(refquant_backend, "encode_float", x, fmt), ref("encode_float", x, fmt),
          backend=refquant_backend, inputs={"x": x, "fmt": fmt})


@pytest.mark.op("encode_float")
@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
@given(data=st.data())
def test_encode_float_saturate(refquant_backend, fmt, data):
    require(refquant_backend, "encode_float", fmt)
    x = data.draw(strategies.float_format_inputs(fmt), label="x")
    check("encode_float", fmt, call(refquant_backend, "encode_float", x, fmt, saturate=True),
          ref("encode_float", x, fmt, saturate=True), backend=refquant_backend, inputs={"x": x, "fmt": fmt, "saturate": True})


@pytest.mark.op("encode_float")
@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_encode_float_random_bit_patterns(refquant_backend, fmt):
    """2^18 uniformly random float32 bit patterns plus every adversarial value, 2-D."""
    require(refquant_backend, "encode_float", fmt)
    x = strategies.random_bit_patterns_f32(np.random.default_rng(1234), 1 << 18)
    x = np.concatenate([x, np.array(strategies.ADVERSARIAL_FLOAT32, F32)])
    x = np.concatenate([x, -x]).reshape(-1, 2)
    check("encode_float", fmt, call(refquant_backend, "encode_float", x, fmt), ref("encode_float", x, fmt),
          backend=refquant_backend, inputs={"x": x, "fmt": fmt})


@pytest.mark.op("encode_float")
@pytest.mark.parametrize("saturate", [False, True], ids=["default", "saturate"])
@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
@given(data=st.data())
def test_encode_float_float64(refquant_backend, fmt, saturate, data):
    """float64 input is rounded once, from its exact value (never through float32)."""
    require(refquant_backend, "encode_float", fmt)
    x = data.draw(strategies.float64_format_inputs(fmt), label="x")
    check("encode_float", fmt, call(refquant_backend, "encode_float", x, fmt, saturate=saturate),
          ref("encode_float", x, fmt, saturate=saturate), backend=refquant_backend,
          inputs={"x": x, "fmt": fmt, "saturate": saturate})


@pytest.mark.op("encode_float")
@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_encode_float_float64_every_near_tie(refquant_backend, fmt):
    """Every near-midpoint float64 value of the format (those double rounding gets wrong), 2-D."""
    require(refquant_backend, "encode_float", fmt)
    x = np.array(strategies.float64_tie_pool(fmt) + strategies.FLOAT64_SPECIALS, np.float64)
    x = x[: x.size - x.size % 2].reshape(-1, 2)
    check("encode_float", fmt, call(refquant_backend, "encode_float", x, fmt), ref("encode_float", x, fmt),
          backend=refquant_backend, inputs={"x": x, "fmt": fmt})


@pytest.mark.op("decode_float")
@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
@given(data=st.data())
def test_decode_float(refquant_backend, fmt, data):
    require(refquant_backend, "decode_float", fmt)
    bits = data.draw(strategies.float_format_codes(fmt), label="bits")
    check("decode_float", fmt, call(refquant_backend, "decode_float", bits, fmt), ref("decode_float", bits, fmt),
          backend=refquant_backend, inputs={"bits": bits, "fmt": fmt})


@pytest.mark.op("decode_float")
@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_decode_float_every_code(refquant_backend, fmt):
    """Every code of the format (all 65536 for the 16-bit ones), as a 2-D array."""
    require(refquant_backend, "decode_float", fmt)
    from refquant.dtypes.floatspec import get_float_spec

    spec = get_float_spec(fmt)
    bits = np.arange(1 << spec.bits, dtype=spec.storage_dtype).reshape(-1, 4)
    check("decode_float", fmt, call(refquant_backend, "decode_float", bits, fmt), ref("decode_float", bits, fmt),
          backend=refquant_backend, inputs={"bits": bits, "fmt": fmt})
