"""Conformance: the safety boundary and the extremes (issue 13).

Every call goes through the dispatcher (``accel.dispatch``), which runs the reference's
argument preparation before the backend's kernel. These tests draw the inputs that
boundary exists for and hold every backend to the reference on them:

* inconsistent and degenerate parameter objects (QuantParams whose fields disagree,
  zero / non-finite scales, code ranges beyond 16 bits, a granularity that lies about
  its geometry, a BlockFormat whose sizes disagree): refused with the reference's kind
  of error, never a result, a crash or another error;
* zero-width and empty shapes: the reference's (empty) result or its error;
* products that overflow float32 in the fused dequant-matmuls: the reference's ±inf
  (float64 accumulation, one rounding), not the NaN of inf - inf in float32 partial sums.

Tiny-absmax rows (1e-45 ... 1e-36) and magnitudes near the float32 maximum are drawn by
the bitsandbytes strategies (``strategies.TINY_ABSMAX``), so every bnb test sees them.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel.ops import GGUF_FORMATS, GRANULARITIES
from conformance import strategies
from conformance.harness import call, check, check_like_reference, check_refused, ref, require

F32 = np.float32


def _params(data, fmt):  # type: ignore[no-untyped-def]
    x, kwargs = data.draw(strategies.affine_cases(fmt))
    return x, ref("choose_qparams", x, **kwargs)


@pytest.mark.op("quantize_affine")
@pytest.mark.parametrize("fmt", GRANULARITIES)
@given(data=st.data())
def test_quantize_affine_refuses_inconsistent_params(refquant_backend, fmt, data):
    require(refquant_backend, "quantize_affine", fmt)
    x, params = _params(data, fmt)
    bad = data.draw(strategies.inconsistent_qparams(params, x.shape), label="params")
    check_refused(refquant_backend, "quantize_affine", fmt, x, bad)


@pytest.mark.op("dequantize_affine")
@pytest.mark.parametrize("fmt", GRANULARITIES)
@given(data=st.data())
def test_dequantize_affine_refuses_inconsistent_params(refquant_backend, fmt, data):
    require(refquant_backend, "dequantize_affine", fmt)
    x, params = _params(data, fmt)
    bad = data.draw(strategies.inconsistent_qparams(params, x.shape), label="params")
    q = np.zeros(x.shape, np.int32)
    check_refused(refquant_backend, "dequantize_affine", fmt, q, bad)


@pytest.mark.op("gguf_dequantize")
@pytest.mark.parametrize("fmt", GGUF_FORMATS)
def test_gguf_dequantize_refuses_degenerate_format(refquant_backend, fmt):
    require(refquant_backend, "gguf_dequantize", fmt)
    from refquant.gguf import get_format

    imatrix = np.ones(256, F32) if getattr(get_format(fmt), "requires_imatrix", False) else None
    real = ref("gguf_quantize", np.ones((2, 256), F32), fmt, imatrix)
    check_refused(refquant_backend, "gguf_dequantize", fmt, real, strategies.degenerate_block_format(fmt), (2, 256))


@pytest.mark.op("gguf_quantize")
@pytest.mark.parametrize("fmt", GGUF_FORMATS)
def test_gguf_quantize_refuses_degenerate_format(refquant_backend, fmt):
    require(refquant_backend, "gguf_quantize", fmt)
    check_refused(refquant_backend, "gguf_quantize", fmt, np.ones((2, 256), F32), strategies.degenerate_block_format(fmt))


def _empty_cases(shape: tuple[int, ...]) -> list[tuple[str, str | None, tuple, dict]]:
    """(op, fmt, args, kwargs) of every op on an input of ``shape`` (some with zero width)."""
    from refquant.granularity import PerTensor
    from refquant.mapping import QuantParams

    x = np.zeros(shape, F32)
    codes = np.zeros(shape, np.uint8)
    rows = shape if len(shape) == 2 else (0, 0)
    x2, c2 = np.zeros(rows, F32), np.zeros(rows, np.int8)
    params = QuantParams(np.ones((), F32).reshape((1,) * len(shape)), None, 8, -127, 127, PerTensor())
    k = rows[1]
    cases = [
        ("encode_float", "float16", (x, "float16"), {}),
        ("decode_float", "float8_e4m3fn", (codes, "float8_e4m3fn"), {}),
        ("codebook_encode", "nf4", (x, "nf4"), {}),
        ("codebook_decode", "nf4", (codes, "nf4"), {}),
        ("quantize_affine", "per_tensor", (x, params), {}),
        ("dequantize_affine", "per_tensor", (codes.astype(np.int8), params), {}),
        ("pack", "4bit", (codes, 4), {}),
        ("pack_ternary", None, (codes,), {}),
        ("bnb_quantize_4bit", "nf4", (x, "nf4", 64), {}),
        ("bnb_quantize_blockwise", "dynamic8", (x, 256), {}),
        ("int8_vectorwise_quant", None, (x2,), {}),
        ("int8_vectorwise_dequant", None, (c2, np.ones(rows[0], F32)), {}),
        ("int8_matmul", None, (c2, np.zeros((k, 3), np.int8)), {}),
        ("dequantize_int32", None, (np.zeros(rows, np.int32), 1.0, 1.0), {}),
        ("llm_int8_matmul", None, (x2, np.zeros((3, k), F32)), {}),
        ("bnb_dequant_matmul_4bit", "nf4", (x2, np.zeros(-(-3 * k // 2), np.uint8),
                                            np.ones(-(-3 * k // 64), F32), "nf4", 64, (3, k)), {}),
    ]
    if shape[-1] % 32 == 0:
        cases += [("gguf_quantize", "q4_0", (x, "q4_0"), {}),
                  ("gguf_dequantize", "q4_0", (np.zeros(0, np.uint8), "q4_0", (0,) + shape[1:]), {}),
                  ("gguf_dequant_matmul", "q4_0", (np.zeros(rows[:1] + (32,), F32),
                                                   np.zeros((3, 18), np.uint8), "q4_0", (3, 32)), {})]
    return cases


_EMPTY = [pytest.param(op, fmt, shape, marks=pytest.mark.op(op), id=f"{op}-{shape}")
          for shape in strategies.EMPTY_SHAPES for op, fmt, _, _ in _empty_cases(shape)]


@pytest.mark.parametrize(("op", "fmt", "shape"), _EMPTY)
def test_empty_and_zero_width_shapes(refquant_backend, op, fmt, shape):
    require(refquant_backend, op, fmt)
    (args, kwargs), = [(a, kw) for o, _, a, kw in _empty_cases(shape) if o == op]
    check_like_reference(refquant_backend, op, fmt, *args, **kwargs)


@pytest.mark.op("bnb_dequant_matmul_4bit")
@pytest.mark.parametrize("fmt", ("nf4", "fp4"))
@given(data=st.data())
def test_bnb_dequant_matmul_products_that_overflow(refquant_backend, fmt, data):
    """Activations and absmax large enough that products and sums leave float32."""
    require(refquant_backend, "bnb_dequant_matmul_4bit", fmt, blocksize=64)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    out_f, in_f = data.draw(st.sampled_from([(3, 64), (5, 128), (1, 192)]), label="shape")
    w = (rng.uniform(-1, 1, (out_f, in_f)) * data.draw(st.sampled_from([1e20, 3e38]))).astype(F32)
    packed, absmax = ref("bnb_quantize_4bit", w, fmt, 64)
    x = (rng.standard_normal((2, in_f)) * data.draw(st.sampled_from([1e20, 1e30]))).astype(F32)
    check("bnb_dequant_matmul_4bit", fmt, call(refquant_backend, "bnb_dequant_matmul_4bit", x, packed, absmax, fmt, 64,
                                               (out_f, in_f)),
          ref("bnb_dequant_matmul_4bit", x, packed, absmax, fmt, 64, (out_f, in_f)), backend=refquant_backend,
          inputs={"x": x, "packed": packed, "absmax": absmax, "quant_type": fmt, "blocksize": 64,
                  "shape": (out_f, in_f)})


@pytest.mark.op("gguf_dequant_matmul")
@pytest.mark.parametrize("fmt", ("q4_0", "q4_k", "q8_0"))
@given(data=st.data())
def test_gguf_dequant_matmul_products_that_overflow(refquant_backend, fmt, data):
    """Weights near the fp16 scales' limit and activations near 1e35: float32 products
    overflow and partial sums of both signs meet (inf - inf)."""
    require(refquant_backend, "gguf_dequant_matmul", fmt)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    w = (rng.uniform(-1, 1, (4, 256)) * 6e4).astype(F32)
    q = ref("gguf_quantize", w, fmt)
    x = (rng.standard_normal((3, 256)) * data.draw(st.sampled_from([1e33, 1e35]))).astype(F32)
    check("gguf_dequant_matmul", fmt, call(refquant_backend, "gguf_dequant_matmul", x, q, fmt, w.shape),
          ref("gguf_dequant_matmul", x, q, fmt, w.shape), backend=refquant_backend,
          inputs={"x": x, "data": q, "qtype": fmt, "shape": w.shape})
