"""Conformance: integer matmul (int8 GEMM, zero-point expansion, int32 dequantization),
LLM.int8(), the bitsandbytes W4A16 dequant-matmul and BitNet's ternary GEMM.

Integer results are Exact: an int8 GEMM with int32 accumulation has one right answer.
A float32 accumulator (bitsandbytes' CPU fallback does ``A.float() @ B.float()``) is
wrong once a dot product passes 2**24, which the fixed large-k case forces. Float
results (``llm_int8_matmul``, ``bnb_dequant_matmul_4bit``) are Nmse against the float64
reference; on planted outlier features, skipping the decomposition fails it by orders
of magnitude.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel.ops import OP_SPECS
from conformance import strategies
from conformance.harness import call, check, ref, require

F32 = np.float32
QUANT_TYPES = OP_SPECS["bnb_dequant_matmul_4bit"].formats


def _large_k_extremes() -> tuple[np.ndarray, np.ndarray]:
    """k = 4096: -128 * -128 throughout (2**26), random extreme codes, and large codes of
    one sign whose dot products (~5e7, arbitrary low bits) float32 cannot hold exactly."""
    rng = np.random.default_rng(11)
    a = np.full((3, 4096), -128, np.int8)
    a[1] = np.where(rng.random(4096) < 0.5, -128, 127)
    a[2] = rng.integers(100, 128, 4096)
    b = np.full((4096, 3), -128, np.int8)
    b[:, 1] = np.where(rng.random(4096) < 0.5, 127, -128)
    b[:, 2] = rng.integers(100, 128, 4096)
    return a, b


@pytest.mark.op("int8_matmul")
@given(ops=strategies.int8_matmul_operands(dtypes=(np.int8, np.int8, np.uint8)))
def test_int8_matmul(refquant_backend, ops):
    a, b = ops
    require(refquant_backend, "int8_matmul")
    check("int8_matmul", None, call(refquant_backend, "int8_matmul", a, b), ref("int8_matmul", a, b),
          backend=refquant_backend, inputs={"a_q": a, "b_q": b})


@pytest.mark.op("int8_matmul")
def test_int8_matmul_large_k_extremes(refquant_backend):
    require(refquant_backend, "int8_matmul")
    a, b = _large_k_extremes()
    check("int8_matmul", None, call(refquant_backend, "int8_matmul", a, b), ref("int8_matmul", a, b),
          backend=refquant_backend, inputs={"a_q": a, "b_q": b})


@pytest.mark.op("int8_matmul_zp")
@given(ops=strategies.int8_matmul_operands(dtypes=(np.int8, np.uint8)), data=st.data())
def test_int8_matmul_zp(refquant_backend, ops, data):
    a, b = ops
    require(refquant_backend, "int8_matmul_zp")
    za = data.draw(strategies.zero_points(a, a.shape[0]), label="a_zero")
    zb = data.draw(strategies.zero_points(b, b.shape[1]), label="b_zero")
    check("int8_matmul_zp", None, call(refquant_backend, "int8_matmul_zp", a, b, za, zb), ref("int8_matmul_zp", a, b, za, zb),
          backend=refquant_backend, inputs={"a_q": a, "b_q": b, "a_zero": za, "b_zero": zb})


@pytest.mark.op("int8_matmul_zp")
def test_int8_matmul_zp_extreme_zero_points(refquant_backend):
    require(refquant_backend, "int8_matmul_zp")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (4, 700)).astype(np.uint8)
    b = rng.integers(-128, 128, (700, 5)).astype(np.int8)
    for za, zb in ((255, -128), (0, 127), (np.array([0, 255, 128, 1]), np.array([-128, 127, 0, 5, -1]))):
        check("int8_matmul_zp", None, call(refquant_backend, "int8_matmul_zp", a, b, za, zb),
              ref("int8_matmul_zp", a, b, za, zb), backend=refquant_backend, inputs={"a_q": a, "b_q": b, "a_zero": za, "b_zero": zb})


@pytest.mark.op("dequantize_int32")
@given(acc=strategies.hnp.arrays(np.int32, strategies.hnp.array_shapes(min_dims=2, max_dims=2, max_side=20)),
       data=st.data())
def test_dequantize_int32(refquant_backend, acc, data):
    require(refquant_backend, "dequantize_int32")
    scale = st.floats(2.0**-20, 1e3, width=32)
    if data.draw(st.booleans(), label="vector-wise"):
        sa = data.draw(strategies.hnp.arrays(np.float32, (acc.shape[0],), elements=scale), label="a_scale")
        sb = data.draw(strategies.hnp.arrays(np.float32, (acc.shape[1],), elements=scale), label="b_scale")
    else:
        sa, sb = data.draw(scale, label="a_scale"), data.draw(scale, label="b_scale")
    check("dequantize_int32", None, call(refquant_backend, "dequantize_int32", acc, sa, sb), ref("dequantize_int32", acc, sa, sb),
          backend=refquant_backend, inputs={"acc": acc, "a_scale": sa, "b_scale": sb})


@pytest.mark.op("llm_int8_matmul")
@given(case=strategies.outlier_activations())
def test_llm_int8_matmul(refquant_backend, case):
    x, w, threshold = case
    require(refquant_backend, "llm_int8_matmul")
    check("llm_int8_matmul", None, call(refquant_backend, "llm_int8_matmul", x, w, threshold),
          ref("llm_int8_matmul", x, w, threshold), backend=refquant_backend, inputs={"x": x, "w": w, "threshold": threshold})


@pytest.mark.op("llm_int8_matmul")
def test_llm_int8_matmul_planted_outliers(refquant_backend):
    """Two outlier features of magnitude ~60 in every token (LLM.int8() section 4)."""
    require(refquant_backend, "llm_int8_matmul")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((32, 256)).astype(F32)
    x[:, [17, 200]] *= 60
    w = (rng.standard_normal((64, 256)) * 0.05).astype(F32)
    check("llm_int8_matmul", None, call(refquant_backend, "llm_int8_matmul", x, w, 6.0), ref("llm_int8_matmul", x, w, 6.0),
          backend=refquant_backend, inputs={"x": x, "w": w, "threshold": 6.0})


@pytest.mark.op("bnb_dequant_matmul_4bit")
@pytest.mark.parametrize("fmt", QUANT_TYPES)
@given(case=strategies.bnb_block_inputs((32, 64, 128, 256), max_blocks=4), data=st.data())
def test_bnb_dequant_matmul_4bit(refquant_backend, fmt, case, data):
    w, blocksize = case
    w = w.reshape(w.shape[0], -1) if w.ndim == 2 else w.reshape(1, -1)
    w = np.clip(w, F32(-1e30), F32(1e30))  # keep x @ W.T finite in float32
    require(refquant_backend, "bnb_dequant_matmul_4bit", fmt, blocksize=blocksize)
    packed, absmax = ref("bnb_quantize_4bit", w, fmt, blocksize)
    tokens = data.draw(st.sampled_from([1, 1, 3, 16]), label="tokens")
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal((tokens, w.shape[1])).astype(F32)
    check("bnb_dequant_matmul_4bit", fmt,
          call(refquant_backend, "bnb_dequant_matmul_4bit", x, packed, absmax, fmt, blocksize, w.shape),
          ref("bnb_dequant_matmul_4bit", x, packed, absmax, fmt, blocksize, w.shape), backend=refquant_backend,
          inputs={"x": x, "packed": packed, "absmax": absmax, "quant_type": fmt, "blocksize": blocksize, "shape": w.shape})


@pytest.mark.op("ternary_matmul")
@given(ops=strategies.int8_matmul_operands(), data=st.data())
def test_ternary_matmul(refquant_backend, ops, data):
    """Exact against the plain integer product ``a_q @ t`` (and the reference)."""
    a, b = ops
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    zeros = data.draw(st.sampled_from([0.0, 0.3, 1.0]))
    t = np.where(rng.random(b.shape) < zeros, 0, np.where(rng.random(b.shape) < 0.5, -1, 1)).astype(np.int8)
    require(refquant_backend, "ternary_matmul")
    got = call(refquant_backend, "ternary_matmul", a, t)
    check("ternary_matmul", None, got, ref("ternary_matmul", a, t), backend=refquant_backend,
          inputs={"a_q": a, "t": t})
    np.testing.assert_array_equal(got, a.astype(np.int64) @ t.astype(np.int64))
