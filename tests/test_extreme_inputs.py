"""The rule for extreme finite input (issue 13): finite in -> finite out, or a ValueError
naming the limit; where a format itself cannot represent the result (ggml's fp16 block
scales), the format's own tool's result.

* Algorithms (RTN, GPTQ, AWQ, SpQR, mixed, BitNet): finite for |W| up to
  ``MAX_ABS_WEIGHT`` (2**125, FLT_MAX / 8), ValueError naming it above.
* Affine: every grid value finite (QuantParams.validate); a range so close to FLT_MAX
  that a grid end code lands past it is refused with ValueError (torch.ao's grid holds
  inf/NaN there, so there is no tool result to saturate to).
* bitsandbytes 4-bit / 8-bit, int8 vector-wise: finite up to FLT_MAX (their scales are
  float32 ranges divided by the code range, computed without overflow).
* GGUF: the block scales are fp16 (f16 / bf16 rows are their own values): a block whose
  scale exceeds 65504 stores inf, as ggml's ``GGML_FP32_TO_FP16`` does (Q4_0 from about
  8 * 65504 = 5.2e5); refquant reproduces ggml's bytes and does not hide that.
"""

from __future__ import annotations

import numpy as np
import pytest

from refquant import bnb, gguf
from refquant.algorithms import _quantizer, awq, bitnet_b158, gptq, mixed, rtn, spqr
from refquant.mapping import choose_qparams, dequantize_affine, quantize_affine

F32 = np.float32
LIMIT = _quantizer.MAX_ABS_WEIGHT


def _layer(mag: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    W = rng.uniform(-1, 1, (16, 128))
    W[0, 0], W[1, 1] = 1.0, -1.0
    X = rng.standard_normal((64, 128)).astype(F32)
    return (W * mag).astype(F32), X, (2 * X.T @ X / 64).astype(F32)


ALGORITHMS = {
    "rtn": lambda W, X, H: rtn(W, 4, 128).dequantized,
    "gptq": lambda W, X, H: gptq(W, H, 4, 128).dequantized,
    "awq": lambda W, X, H: awq(W, X, 4, 128).dequantized,
    "spqr": lambda W, X, H: spqr(W, H).dequantized,
    "mixed": lambda W, X, H: mixed(W, X).dequantized,   # salient columns in float16: see below
    "bitnet": lambda W, X, H: bitnet_b158(W).dequantized,
}


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("mag", [1e30, LIMIT])
def test_algorithms_finite_up_to_the_limit(name, mag):
    if name == "mixed":
        mag = 6e4   # mixed keeps salient columns in float16 (max 65504): beyond, ValueError (next test)
    W, X, H = _layer(mag)
    with np.errstate(all="ignore"):
        out = ALGORITHMS[name](W, X, H)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_algorithms_refuse_weights_beyond_the_limit(name):
    W, X, H = _layer(2.0**126)
    with pytest.raises(ValueError, match=r"2\*\*125"):
        ALGORITHMS[name](W, X, H)
    if name == "mixed":
        with pytest.raises(ValueError, match="float16's maximum"):
            ALGORITHMS[name](*_layer(1e30))


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", [2, 8, 16])
def test_affine_finite_up_to_2_pow_126(symmetric, bits):
    """Ranges up to 2**126 keep every grid value finite."""
    x = np.array([[2.0**126, -(2.0**126), 1.0, 0.0]], F32)
    p = choose_qparams(x, bits, symmetric)
    assert np.isfinite(dequantize_affine(quantize_affine(x, p), p)).all()


FLT_MAX = float(np.finfo(F32).max)


@pytest.mark.parametrize("x, symmetric, restricted", [
    ([FLT_MAX, -FLT_MAX], True, None),       # restricted [-127, 127]: the rounded scale puts 127 * s past FLT_MAX
    ([FLT_MAX, 0.0], True, None),
    ([3.39e38, 0.0], True, False),           # full range: -128 * amax / 127.5 > FLT_MAX for amax > FLT_MAX * 127.5/128
    ([FLT_MAX, -FLT_MAX], False, None),      # affine: the width overflows; code -128 lands past FLT_MAX
])
def test_affine_grid_past_float32_max_is_refused(x, symmetric, restricted):
    """A grid whose end code would dequantize to inf is refused, not saturated: torch.ao
    computes the same scale and its grid holds inf (or NaN) there (QuantParams.validate)."""
    with pytest.raises(ValueError, match=r"beyond float32's maximum 3\.40282346638528\d*e\+38"):
        choose_qparams(np.array(x, F32), 8, symmetric, restricted_range=restricted)


def test_affine_largest_accepted_ranges_dequantize_finite():
    ok = [([3.38e38, 0.0], True, False), ([FLT_MAX / 2, -FLT_MAX / 2], True, None), ([FLT_MAX, 1.0], False, None),
          ([float(np.nextafter(F32(FLT_MAX), F32(0)) * F32(0.999)), 0.0], True, None)]
    for x, symmetric, restricted in ok:
        arr = np.array(x, F32)
        p = choose_qparams(arr, 8, symmetric, restricted_range=restricted)
        grid = np.arange(p.qmin, p.qmax + 1).astype(p.code_dtype)   # every code, the ends included
        assert np.isfinite(dequantize_affine(grid, p)).all() and np.isfinite(dequantize_affine(quantize_affine(arr, p), p)).all()


def test_hand_built_params_with_an_overflowing_grid_are_refused():
    from refquant.granularity import PerTensor
    from refquant.mapping import QuantParams

    p = QuantParams(np.array(3e36, F32), None, 8, -127, 127, PerTensor(), True)   # 127 * 3e36 > FLT_MAX
    with pytest.raises(ValueError, match="end code -127"):
        dequantize_affine(np.array([1], np.int8), p)
    with pytest.raises(ValueError, match="end code -127"):
        quantize_affine(np.array([1.0], F32), p)


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_bnb_finite_up_to_flt_max(quant_type):
    x = np.array([3.4028235e38, -3.4028235e38, 1.0, -2e38] * 16, F32)
    assert np.isfinite(bnb.dequantize_4bit(bnb.quantize_4bit(x, quant_type, 64))).all()
    assert np.isfinite(bnb.dequantize_blockwise(bnb.quantize_blockwise(x, 64))).all()
    # int8 rows: bitsandbytes dequantizes (q * row_stat) * (1/127), finite for row_stat up to
    # FLT_MAX / 127 and inf beyond, as bitsandbytes itself computes it (the format's order)
    q, stats, _ = bnb.int8_vectorwise_quant((x / F32(128)).reshape(4, 16))
    assert np.isfinite(bnb.int8_vectorwise_dequant(q, stats)).all()


def test_gguf_fp16_block_scale_limit_is_ggmls():
    """Q4_0's scale is max / -8 in fp16: below 8 * 65504 finite, beyond it inf, as ggml writes."""
    ok = np.full((1, 32), 5.0e5, F32)
    assert np.isfinite(gguf.dequantize(gguf.quantize(ok, "q4_0"), "q4_0", ok.shape)).all()
    big = np.full((1, 32), 6.0e5, F32)
    assert np.isinf(gguf.dequantize(gguf.quantize(big, "q4_0"), "q4_0", big.shape)).any()


@pytest.mark.parametrize("name", ["rtn", "gptq", "awq", "spqr"])
def test_group_size_beyond_int64_is_one_group_per_row(name):
    """A group size above the row (even above int64) is clamped to the row: nothing is sized
    by it and nothing overflows (SpQR raised OverflowError from 2**63)."""
    W, X, H = _layer(1.0)
    run = {"rtn": lambda g: rtn(W, 4, g), "gptq": lambda g: gptq(W, H, 4, g), "awq": lambda g: awq(W, X, 4, g),
           "spqr": lambda g: spqr(W, H, group_size=g)}[name]
    np.testing.assert_array_equal(run(2**64).dequantized, run(W.shape[1]).dequantized)
