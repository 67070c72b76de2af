"""Conformance: ggml block formats (gguf_quantize / gguf_dequantize per qtype).

Contract: Exact. A backend's quantizer must write ggml's bytes (``ggml_quantize_chunk``)
for the same float32 rows and importance matrix; its dequantizer must return ggml's
float32 values (NaN payloads excepted: ``conformance/contracts.py``). The format axis is
the lowercase GGUF type name. Inputs come from :func:`conformance.strategies.gguf_cases`:
the adversarial row kinds (±0 rows, constants, outliers, ~1e-11, near 65504, ties) with
no imatrix, a random one, or one with zero columns.

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
from conformance.harness import call, check, ref, require
from refquant.gguf import get_format

QTYPES = OP_SPECS["gguf_quantize"].formats
# code grids whose midpoints are the rounding boundaries of the simple types (levels per side)
GRID_LEVELS = {"q4_0": (8,), "q5_0": (16,), "q8_0": (127,), "q8_1": (127,)}


def _cases(fmt):
    block = get_format(fmt)
    return strategies.gguf_cases(block.block_size, allow_nonfinite=block.allows_nonfinite,
                                 grid_levels=GRID_LEVELS.get(fmt, (8, 16, 127)))


@pytest.mark.op("gguf_quantize")
@pytest.mark.parametrize("fmt", QTYPES)
@given(data=st.data())
def test_gguf_quantize(backend, fmt, data):
    require(backend, "gguf_quantize", fmt)
    x, imatrix = data.draw(_cases(fmt))
    check("gguf_quantize", fmt, call(backend, "gguf_quantize", x, fmt, imatrix),
          ref("gguf_quantize", x, fmt, imatrix), backend=backend, inputs={"x": x, "qtype": fmt, "imatrix": imatrix})


@pytest.mark.op("gguf_dequantize")
@pytest.mark.parametrize("fmt", QTYPES)
@given(data=st.data())
def test_gguf_dequantize(backend, fmt, data):
    require(backend, "gguf_dequantize", fmt)
    block = get_format(fmt)
    x, imatrix = data.draw(_cases(fmt))
    if data.draw(st.booleans()):
        q = ref("gguf_quantize", x, fmt, imatrix)
    else:  # arbitrary block bytes
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        q = rng.integers(0, 256, size=x.shape[:-1] + (x.shape[-1] // block.block_size * block.type_size,),
                         dtype=np.uint8)
    check("gguf_dequantize", fmt, call(backend, "gguf_dequantize", q, fmt, x.shape),
          ref("gguf_dequantize", q, fmt, x.shape), backend=backend, inputs={"data": q, "qtype": fmt, "shape": x.shape})
