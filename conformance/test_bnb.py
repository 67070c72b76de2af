"""Conformance: the bitsandbytes family (NF4/FP4 4-bit blockwise, 8-bit dynamic
blockwise, double quantization, int8 vector-wise).

Codes, absmax and double-quantization fields are Exact (bitsandbytes' CPU bytes);
dequantization is one float32 multiply, also Exact. Besides the Hypothesis draws, each
op has fixed adversarial cases, so the cells that matter are exercised in every run:
a partial last block after larger blocks (its absmax must come from its own elements),
values tiny relative to the block absmax (FP4's +-0 codes), odd lengths (the pad
nibble), zeros in a non-zero 8-bit block (code 131, not 127).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel.ops import OP_SPECS
from conformance import strategies
from conformance.harness import call, check, ref, require
from refquant.formats.bnb import BLOCKSIZES_4BIT, BLOCKSIZES_8BIT

F32 = np.float32
QUANT_TYPES = OP_SPECS["bnb_quantize_4bit"].formats


def _fixed_cases() -> list[tuple[str, np.ndarray, int]]:
    rng = np.random.default_rng(404)
    partial = rng.standard_normal(64 + 64 + 5).astype(F32)
    partial[:128] *= 100                                 # full blocks dwarf the 5-element tail
    outlier = rng.standard_normal(2 * 64).astype(F32)
    outlier[3], outlier[70] = 1e4, -3e4                  # the rest tiny relative to absmax
    zeros = np.zeros(3 * 32 + 7, F32)
    zeros[40:60] = rng.standard_normal(20)
    big = rng.standard_t(2, 4096 + 1000).astype(F32)
    return [("partial_tail", partial, 64), ("outliers", outlier, 64), ("zero_blocks", zeros, 32),
            ("odd_length", rng.standard_normal(65).astype(F32), 64), ("one_element", np.array([-3.0], F32), 32),
            ("blocksize_4096", big, 4096), ("matrix", rng.standard_normal((7, 45)).astype(F32), 128)]


FIXED = _fixed_cases()


# ---- 4-bit ------------------------------------------------------------------------------


@pytest.mark.op("bnb_quantize_4bit")
@pytest.mark.parametrize("fmt", QUANT_TYPES)
@given(case=strategies.bnb_block_inputs(BLOCKSIZES_4BIT))
def test_bnb_quantize_4bit(refquant_backend, fmt, case):
    x, blocksize = case
    require(refquant_backend, "bnb_quantize_4bit", fmt, blocksize=blocksize)
    check("bnb_quantize_4bit", fmt, call(refquant_backend, "bnb_quantize_4bit", x, fmt, blocksize),
          ref("bnb_quantize_4bit", x, fmt, blocksize), backend=refquant_backend,
          inputs={"x": x, "quant_type": fmt, "blocksize": blocksize})


@pytest.mark.op("bnb_quantize_4bit")
@pytest.mark.parametrize("fmt", QUANT_TYPES)
@pytest.mark.parametrize("name, x, blocksize", FIXED, ids=[c[0] for c in FIXED])
def test_bnb_quantize_4bit_fixed(refquant_backend, fmt, name, x, blocksize):
    require(refquant_backend, "bnb_quantize_4bit", fmt, blocksize=blocksize)
    check("bnb_quantize_4bit", fmt, call(refquant_backend, "bnb_quantize_4bit", x, fmt, blocksize),
          ref("bnb_quantize_4bit", x, fmt, blocksize), backend=refquant_backend,
          inputs={"x": x, "quant_type": fmt, "blocksize": blocksize})


@pytest.mark.op("bnb_quantize_4bit")
@pytest.mark.parametrize("fmt", QUANT_TYPES)
def test_bnb_quantize_4bit_every_blocksize(refquant_backend, fmt):
    """A layer-sized input at every block size (bitsandbytes#1160: one block size had the
    wrong kernel instantiation and only a full grid found it)."""
    x = np.random.default_rng(7).standard_t(3, (96, 130)).astype(F32)
    for blocksize in BLOCKSIZES_4BIT:
        require(refquant_backend, "bnb_quantize_4bit", fmt, blocksize=blocksize)
        check("bnb_quantize_4bit", fmt, call(refquant_backend, "bnb_quantize_4bit", x, fmt, blocksize),
              ref("bnb_quantize_4bit", x, fmt, blocksize), backend=refquant_backend,
              inputs={"x": x, "quant_type": fmt, "blocksize": blocksize})


@pytest.mark.op("bnb_dequantize_4bit")
@pytest.mark.parametrize("fmt", QUANT_TYPES)
@given(case=strategies.bnb_packed_inputs(BLOCKSIZES_4BIT, 0.5))
def test_bnb_dequantize_4bit(refquant_backend, fmt, case):
    packed, absmax, blocksize, shape = case
    require(refquant_backend, "bnb_dequantize_4bit", fmt, blocksize=blocksize)
    check("bnb_dequantize_4bit", fmt, call(refquant_backend, "bnb_dequantize_4bit", packed, absmax, fmt, blocksize, shape),
          ref("bnb_dequantize_4bit", packed, absmax, fmt, blocksize, shape), backend=refquant_backend,
          inputs={"packed": packed, "absmax": absmax, "quant_type": fmt, "blocksize": blocksize, "shape": shape})


@pytest.mark.op("bnb_dequantize_4bit")
@pytest.mark.parametrize("fmt", QUANT_TYPES)
@pytest.mark.parametrize("name, x, blocksize", FIXED, ids=[c[0] for c in FIXED])
def test_bnb_dequantize_4bit_fixed(refquant_backend, fmt, name, x, blocksize):
    require(refquant_backend, "bnb_dequantize_4bit", fmt, blocksize=blocksize)
    packed, absmax = ref("bnb_quantize_4bit", x, fmt, blocksize)
    check("bnb_dequantize_4bit", fmt, call(refquant_backend, "bnb_dequantize_4bit", packed, absmax, fmt, blocksize, x.shape),
          ref("bnb_dequantize_4bit", packed, absmax, fmt, blocksize, x.shape), backend=refquant_backend,
          inputs={"packed": packed, "absmax": absmax, "quant_type": fmt, "blocksize": blocksize, "shape": x.shape})


# ---- 8-bit dynamic ------------------------------------------------------------------


@pytest.mark.op("bnb_quantize_blockwise")
@pytest.mark.parametrize("fmt", ["dynamic8"])
@given(case=strategies.bnb_block_inputs(BLOCKSIZES_8BIT, max_blocks=2))
def test_bnb_quantize_blockwise(refquant_backend, fmt, case):
    x, blocksize = case
    require(refquant_backend, "bnb_quantize_blockwise", fmt, blocksize=blocksize)
    check("bnb_quantize_blockwise", fmt, call(refquant_backend, "bnb_quantize_blockwise", x, blocksize),
          ref("bnb_quantize_blockwise", x, blocksize), backend=refquant_backend, inputs={"x": x, "blocksize": blocksize})


@pytest.mark.op("bnb_quantize_blockwise")
@pytest.mark.parametrize("fmt", ["dynamic8"])
@pytest.mark.parametrize("name, x, blocksize", FIXED, ids=[c[0] for c in FIXED])
def test_bnb_quantize_blockwise_fixed(refquant_backend, fmt, name, x, blocksize):
    blocksize = max(blocksize, 64)
    require(refquant_backend, "bnb_quantize_blockwise", fmt, blocksize=blocksize)
    check("bnb_quantize_blockwise", fmt, call(refquant_backend, "bnb_quantize_blockwise", x, blocksize),
          ref("bnb_quantize_blockwise", x, blocksize), backend=refquant_backend, inputs={"x": x, "blocksize": blocksize})


@pytest.mark.op("bnb_dequantize_blockwise")
@pytest.mark.parametrize("fmt", ["dynamic8"])
@given(case=strategies.bnb_packed_inputs(BLOCKSIZES_8BIT, 1.0, max_blocks=2))
def test_bnb_dequantize_blockwise(refquant_backend, fmt, case):
    codes, absmax, blocksize, shape = case
    require(refquant_backend, "bnb_dequantize_blockwise", fmt, blocksize=blocksize)
    check("bnb_dequantize_blockwise", fmt, call(refquant_backend, "bnb_dequantize_blockwise", codes, absmax, blocksize, shape),
          ref("bnb_dequantize_blockwise", codes, absmax, blocksize, shape), backend=refquant_backend,
          inputs={"codes": codes, "absmax": absmax, "blocksize": blocksize, "shape": shape})


@pytest.mark.op("bnb_double_quantize")
@given(absmax=strategies.bnb_absmax_vectors())
def test_bnb_double_quantize(refquant_backend, absmax):
    require(refquant_backend, "bnb_double_quantize")
    check("bnb_double_quantize", None, call(refquant_backend, "bnb_double_quantize", absmax),
          ref("bnb_double_quantize", absmax), backend=refquant_backend, inputs={"absmax": absmax})


@pytest.mark.op("bnb_double_quantize")
def test_bnb_double_quantize_layer(refquant_backend):
    """The absmax of a 4096 x 4096 NF4 weight at block size 64 has 262144 entries: the
    mean's float32 summation order (torch's, one thread) decides the offset's last bit."""
    require(refquant_backend, "bnb_double_quantize")
    absmax = (np.abs(np.random.default_rng(5).standard_t(4, 262144)) * 2).astype(F32)
    check("bnb_double_quantize", None, call(refquant_backend, "bnb_double_quantize", absmax),
          ref("bnb_double_quantize", absmax), backend=refquant_backend, inputs={"absmax": absmax})


# ---- int8 vector-wise ---------------------------------------------------------------


@pytest.mark.op("int8_vectorwise_quant")
@given(case=strategies.int8_rowwise_inputs())
def test_int8_vectorwise_quant(refquant_backend, case):
    x, threshold = case
    require(refquant_backend, "int8_vectorwise_quant")
    check("int8_vectorwise_quant", None, call(refquant_backend, "int8_vectorwise_quant", x, threshold),
          ref("int8_vectorwise_quant", x, threshold), backend=refquant_backend, inputs={"x": x, "threshold": threshold})


@pytest.mark.op("int8_vectorwise_dequant")
@given(q=strategies.hnp.arrays(np.int8, strategies.hnp.array_shapes(min_dims=2, max_dims=2, max_side=40)),
       data=st.data())
def test_int8_vectorwise_dequant(refquant_backend, q, data):
    require(refquant_backend, "int8_vectorwise_dequant")
    stats = data.draw(strategies.hnp.arrays(np.float32, (q.shape[0],), elements=st.floats(0, 6e4, width=32)))
    check("int8_vectorwise_dequant", None, call(refquant_backend, "int8_vectorwise_dequant", q, stats),
          ref("int8_vectorwise_dequant", q, stats), backend=refquant_backend, inputs={"q": q, "row_stats": stats})
