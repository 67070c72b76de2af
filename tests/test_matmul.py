"""refquant.matmul: exact int8 GEMM, the zero-point expansion, int32 dequantization,
LLM.int8()'s mixed decomposition and the bitsandbytes W4A16 dequant-matmul."""

from __future__ import annotations

import numpy as np
import pytest

import refquant
from refquant import bnb
from refquant.matmul import bnb_dequant_matmul_4bit, dequantize_int32, int8_matmul, int8_matmul_zp, llm_int8_matmul

F32 = np.float32
SHAPES = [(1, 1, 1), (1, 37, 1), (1, 64, 9), (9, 64, 1), (5, 1, 7), (13, 300, 11), (2, 0, 3)]


def direct(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer product by broadcasting, in Python's unbounded ints for small sizes."""
    return (a.astype(np.int64)[:, :, None] * b.astype(np.int64)[None, :, :]).sum(axis=1)


def codes(rng, shape, dtype=np.int8, extremes=True):
    info = np.iinfo(dtype)
    q = rng.integers(info.min, info.max + 1, shape).astype(dtype)
    if extremes and q.size:
        q.flat[:: max(1, q.size // 7)] = info.min
        q.flat[1:: max(1, q.size // 5)] = info.max
    return q


@pytest.mark.parametrize("m, k, n", SHAPES)
def test_int8_matmul_equals_direct_integer_product(rng, m, k, n):
    a, b = codes(rng, (m, k)), codes(rng, (k, n))
    out = int8_matmul(a, b)
    assert out.dtype == np.int32 and out.shape == (m, n)
    np.testing.assert_array_equal(out, direct(a, b))


def test_int8_matmul_extremes_and_mixed_signedness(rng):
    k = 4096
    a = np.full((2, k), -128, np.int8)
    b = np.full((k, 3), -128, np.int8)
    assert (int8_matmul(a, b) == 128 * 128 * k).all()
    b[:, 1] = 127
    assert (int8_matmul(a, b)[:, 1] == -128 * 127 * k).all()
    au = codes(rng, (4, 50), np.uint8)
    bs = codes(rng, (50, 6))
    np.testing.assert_array_equal(int8_matmul(au, bs), direct(au, bs))


def test_int8_matmul_detects_int32_overflow():
    k = 131073  # 131073 * 128 * 128 = 2**31 + 16384
    a = np.full((1, k), -128, np.int8)
    b = np.full((k, 1), -128, np.int8)
    with pytest.raises(ValueError, match="does not fit int32"):
        int8_matmul(a, b)
    assert int8_matmul(a[:, :131071], b[:131071]) == 131071 * 16384  # the largest safe k


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_zero_point_expansion_equals_direct(rng, m, k, n, dtype):
    info = np.iinfo(dtype)
    a, b = codes(rng, (m, k), dtype), codes(rng, (k, n), dtype)
    for za, zb in [(0, 0), (int(info.max), int(info.min)), (int(info.min), int(info.max)),
                   (rng.integers(info.min, info.max + 1, m), rng.integers(info.min, info.max + 1, n)),
                   (np.full(m, info.min), 17)]:
        expected = direct(a.astype(np.int64) - np.asarray(za).reshape(-1, 1) if np.ndim(za) else a.astype(np.int64) - za,
                          b.astype(np.int64) - (np.asarray(zb).reshape(1, -1) if np.ndim(zb) else zb))
        out = int8_matmul_zp(a, b, za, zb)
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, expected)


def test_zero_point_expansion_terms():
    # (A - za)(B - zb) = AB - zb*rowsum(A) - za*colsum(B) + k*za*zb, worked by hand:
    a = np.array([[1, 2]], np.int8)
    b = np.array([[3], [4]], np.int8)
    # (1-1)(3-2) + (2-1)(4-2) = 2 = 11 - 2*3 - 1*7 + 2*1*2
    assert int8_matmul_zp(a, b, 1, 2).tolist() == [[2]]


def test_dequantize_int32_per_tensor_and_vectorwise(rng):
    acc = rng.integers(-(2**31), 2**31, (4, 5)).astype(np.int32)
    out = dequantize_int32(acc, 0.5, 2.0)
    np.testing.assert_array_equal(out, acc.astype(np.float64).astype(F32))
    sa, sb = rng.random(4).astype(F32), rng.random(5).astype(F32)
    expected = (acc.astype(np.float64) * sa[:, None] * sb[None, :]).astype(F32)
    np.testing.assert_array_equal(dequantize_int32(acc, sa, sb), expected)
    # Vector-wise int8 round trip: x ~ q_x * sx / 127 and w ~ q_w * sw / 127.
    x, w = rng.standard_normal((6, 40)).astype(F32), rng.standard_normal((3, 40)).astype(F32)
    qx, sx, _ = bnb.int8_vectorwise_quant(x)
    qw, sw, _ = bnb.int8_vectorwise_quant(w)
    approx = dequantize_int32(int8_matmul(qx, qw.T), sx / 127, sw / 127)
    np.testing.assert_allclose(approx, x @ w.T, atol=0.05 * np.abs(x @ w.T).max())


def nmse(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sum((got.astype(np.float64) - ref) ** 2) / np.sum(ref**2))


def planted_outliers(rng, tokens=64, d_in=512, d_out=256, n_outlier=4, magnitude=60.0):
    """Activations with a few systematic outlier feature columns (LLM.int8() section 4:
    a handful of hidden dimensions carry values up to ~20x larger, in most tokens)."""
    x = rng.standard_normal((tokens, d_in)).astype(F32)
    cols = np.sort(rng.choice(d_in, n_outlier, replace=False))
    x[:, cols] = (rng.standard_normal((tokens, n_outlier)) * magnitude).astype(F32)
    w = (rng.standard_normal((d_out, d_in)) * 0.05).astype(F32)
    return x, w, cols


def test_llm_int8_decomposition_beats_plain_int8_on_outliers(rng):
    x, w, cols = planted_outliers(rng)
    exact = x.astype(np.float64) @ w.astype(np.float64).T
    mixed, found = llm_int8_matmul(x, w, threshold=6.0)
    plain, none = llm_int8_matmul(x, w, threshold=0.0)
    assert found.tolist() == cols.tolist() and none.size == 0
    err_mixed, err_plain = nmse(mixed, exact), nmse(plain, exact)
    # Outliers inflate every row's absmax ~60x, so plain int8 rounds the ordinary features
    # away; with them split off, only the weights' and normal features' 8-bit error is left.
    assert err_plain / err_mixed > 100, (err_plain, err_mixed)
    assert err_mixed < 1e-4


def test_llm_int8_without_outliers_is_plain_int8(rng):
    x = rng.standard_normal((7, 33)).astype(F32)
    w = rng.standard_normal((5, 33)).astype(F32)
    a, cols_a = llm_int8_matmul(x, w, threshold=6.0)
    b, cols_b = llm_int8_matmul(x, w, threshold=0.0)
    assert cols_a.size == 0 and cols_b.size == 0
    np.testing.assert_array_equal(a, b)
    qx, sx, _ = bnb.int8_vectorwise_quant(x)
    qw, sw, _ = bnb.int8_vectorwise_quant(w)
    expected = (int8_matmul(qx, qw.T).astype(np.float64) * sx[:, None] * sw[None, :] / 127**2).astype(F32)
    np.testing.assert_array_equal(a, expected)


def test_llm_int8_all_outlier_columns_is_float_matmul(rng):
    x = (rng.standard_normal((3, 8)) * 100).astype(F32)
    x[np.abs(x) < 7] = 7.0
    w = rng.standard_normal((4, 8)).astype(F32)
    out, cols = llm_int8_matmul(x, w)
    assert cols.tolist() == list(range(8))
    np.testing.assert_array_equal(out, (x.astype(np.float64) @ w.astype(np.float64).T).astype(F32))


def test_llm_int8_shapes(rng):
    x = rng.standard_normal((2, 3, 16)).astype(np.float16)
    w = rng.standard_normal((5, 16)).astype(np.float16)
    out, _ = llm_int8_matmul(x, w)
    assert out.shape == (2, 3, 5) and out.dtype == F32
    out1, _ = llm_int8_matmul(x[0, 0], w)
    assert out1.shape == (5,)


def test_bnb_dequant_matmul_4bit_is_dequantize_then_matmul(rng):
    w = rng.standard_normal((24, 70)).astype(F32)
    x = rng.standard_normal((5, 70)).astype(F32)
    for qt in ("nf4", "fp4"):
        q = bnb.quantize_4bit(w, qt, 64)
        out = bnb_dequant_matmul_4bit(x, q.packed, q.absmax, qt, 64, (24, 70))
        expected = (x.astype(np.float64) @ bnb.dequantize_4bit(q).astype(np.float64).T).astype(F32)
        np.testing.assert_array_equal(out, expected)
        assert nmse(out, x.astype(np.float64) @ w.T.astype(np.float64)) < 0.02


# ---- bad input --------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(rng):
    a8, b8 = codes(rng, (3, 4)), codes(rng, (4, 2))
    with pytest.raises(TypeError, match="a_q must be int8 or uint8"):
        int8_matmul(a8.astype(np.int16), b8)
    with pytest.raises(TypeError, match="integer array"):
        int8_matmul(a8.astype(F32), b8)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        int8_matmul(a8, b8.T)
    with pytest.raises(ValueError, match="2-D"):
        int8_matmul(a8[0], b8)
    with pytest.raises(ValueError, match=r"a_zero must lie in the code range \[-128, 127\]"):
        int8_matmul_zp(a8, b8, 200, 0)
    with pytest.raises(ValueError, match=r"b_zero must be a scalar or have shape \(2,\)"):
        int8_matmul_zp(a8, b8, 0, np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="acc must be a 2-D int32"):
        dequantize_int32(np.zeros((2, 2), np.int64), 1.0, 1.0)
    with pytest.raises(ValueError, match="a_scale must be a scalar or have shape"):
        dequantize_int32(np.zeros((2, 2), np.int32), np.ones(3), 1.0)
    x, w = rng.standard_normal((2, 4)).astype(F32), rng.standard_normal((3, 4)).astype(F32)
    with pytest.raises(ValueError, match="threshold"):
        llm_int8_matmul(x, w, threshold=-1)
    with pytest.raises(ValueError, match="input features"):
        llm_int8_matmul(x, w[:, :3])
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        llm_int8_matmul(bad, w)
    with pytest.raises(TypeError, match="x must be"):
        llm_int8_matmul(x.astype(np.float64), w)


def test_inputs_are_never_mutated(rng):
    a, b = codes(rng, (3, 5)), codes(rng, (5, 4))
    x, w, _ = planted_outliers(rng, tokens=4, d_in=32, d_out=8, n_outlier=2)
    arrays = [a, b, x, w]
    before = [v.copy() for v in arrays]
    for v in arrays:
        v.setflags(write=False)
    int8_matmul(a, b)
    int8_matmul_zp(a, b, np.arange(3), 5)
    llm_int8_matmul(x, w)
    for v, orig in zip(arrays, before):
        np.testing.assert_array_equal(v, orig)


def test_public_api_exports():
    assert refquant.int8_matmul is int8_matmul and refquant.llm_int8_matmul is llm_int8_matmul
