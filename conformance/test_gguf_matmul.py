"""Conformance: fused dequant-matmul with a GGUF weight (gguf_dequant_matmul per qtype).

Contract: Nmse against the emulated reference (dequantize with ggml's to_float, multiply
in float64, round once: :func:`refquant.formats.gguf_matmul.dequant_matmul`). Weights are
the reference's bytes for the adversarial GGUF rows of
:func:`conformance.strategies.gguf_cases` (all-zero and constant rows, outliers, values
near the fp16 maximum, ~1e-11), with and without an importance matrix; activations are
float32 or float16 GEMV (1 token) and small GEMM batches.
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

QTYPES = OP_SPECS["gguf_dequant_matmul"].formats


@pytest.mark.op("gguf_dequant_matmul")
@pytest.mark.parametrize("fmt", QTYPES)
@given(data=st.data())
def test_gguf_dequant_matmul(refquant_backend, fmt, data):
    require(refquant_backend, "gguf_dequant_matmul", fmt)
    block = get_format(fmt)
    w, imatrix = data.draw(strategies.gguf_cases(block.block_size, max_rows=5, max_blocks=2, allow_nonfinite=False,
                                                 require_imatrix=block.requires_imatrix), label="weight")
    q = ref("gguf_quantize", w, fmt, imatrix)
    tokens = data.draw(st.sampled_from([(1,), (3,), (2, 4), (16,)]), label="tokens")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    dtype = data.draw(st.sampled_from([np.float32, np.float16]), label="dtype")
    x = rng.standard_normal(tokens + (w.shape[1],)).astype(dtype)
    check("gguf_dequant_matmul", fmt, call(refquant_backend, "gguf_dequant_matmul", x, q, fmt, w.shape),
          ref("gguf_dequant_matmul", x, q, fmt, w.shape), backend=refquant_backend,
          inputs={"x": x, "data": q, "qtype": fmt, "shape": w.shape})
