"""RTN and the min-max group quantizers of GPTQ / AWQ / SpQR (refquant.algorithms.rtn, _quantizer)."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.algorithms import rtn
from refquant.algorithms import _quantizer as Q

BITS = (2, 3, 4, 8)


def test_gptq_rule_golden_2bit_asym():
    # row [-1, 0, 0.5, 1]: range [-1, 1], scale 2/3, zero round(1.5) = 2 (half-even)
    W = np.array([[-1.0, 0.0, 0.5, 1.0]], dtype=np.float32)
    r = rtn(W, bits=2, group_size=-1, sym=False)
    s = np.float32(2) / np.float32(3)
    assert r.scales[0, 0] == s and r.zeros[0, 0] == 2
    # -1/s = -1.5 -> -2 (half-even) + 2 = 0; 0.5/s = 0.75 -> 1 + 2 = 3; 1/s = 1.5 -> 2 + 2 = 4 -> 3
    assert r.codes.tolist() == [[0, 2, 3, 3]]
    np.testing.assert_array_equal(r.dequantized, np.array([[-2 * s, 0, s, s]], dtype=np.float32))


def test_gptq_sym_quirk_row_without_negatives():
    # GPTQ quant.py: xmin stays 0, scale = xmax / maxq, zero = 8 -> values above 7*scale clip
    W = np.array([[0.0, 1.0, 2.0, 3.0]], dtype=np.float32)
    r = rtn(W, bits=4, group_size=-1, sym=True)
    assert r.scales[0, 0] == np.float32(0.2) and r.zeros[0, 0] == 8
    assert r.codes.tolist() == [[8, 13, 15, 15]]
    np.testing.assert_allclose(r.dequantized, [[0.0, 1.0, 1.4, 1.4]], rtol=1e-6)


def test_zero_rows_and_subnormal_rows_are_finite():
    W = np.zeros((3, 64), dtype=np.float32)
    W[1] = 1e-42  # subnormal float32: scale would round to 0
    W[2, ::2] = -3e-45
    for rule in Q.RULES:
        for sym in (True, False):
            r = rtn(W, 4, 32, sym, rule=rule)
            assert np.isfinite(r.dequantized).all() and np.isfinite(r.scales).all()
            assert (r.scales > 0).all()
            if rule != "spqr" or sym:
                np.testing.assert_array_equal(r.dequantized[0], 0)
            else:
                # SpQR's unrounded zero (about 7.5 for 4 bits on [-1, 1]): 0 lands half a step off
                np.testing.assert_allclose(np.abs(r.dequantized[0]), np.float32(2 / 15) / 2, rtol=1e-5)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("sym", [True, False])
def test_gptq_rule_matches_torch_transcription(rng, bits, sym):
    torch = pytest.importorskip("torch")
    W = (rng.standard_normal((16, 96)) * rng.uniform(0.1, 3, (16, 1))).astype(np.float32)
    W[3] = np.abs(W[3])  # a row without negatives (sym quirk)
    W[5] = 0.0
    # quant.py's find_params / quantize on each group of 32 columns, in torch float32
    maxq = 2**bits - 1
    x = torch.from_numpy(W).reshape(-1, 32)
    xmin = torch.minimum(x.min(1).values, torch.zeros(1))
    xmax = torch.maximum(x.max(1).values, torch.zeros(1))
    if sym:
        xmax = torch.maximum(torch.abs(xmin), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    empty = (xmin == 0) & (xmax == 0)
    xmin[empty], xmax[empty] = -1, 1
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) / 2) if sym else torch.round(-xmin / scale)
    q = torch.clamp(torch.round(x / scale[:, None]) + zero[:, None], 0, maxq)
    expected = (scale[:, None] * (q - zero[:, None])).reshape(W.shape).numpy()
    r = rtn(W, bits, 32, sym)
    np.testing.assert_array_equal(r.codes, q.reshape(W.shape).numpy().astype(np.uint8))
    np.testing.assert_array_equal(r.dequantized, expected)


@pytest.mark.parametrize("bits", (3, 4))
def test_awq_rule_matches_torch_transcription(rng, bits):
    torch = pytest.importorskip("torch")
    W = (rng.standard_normal((8, 256)) * 0.05).astype(np.float32)
    W[2, :128] = 0.0  # all-zero group: range clamped to 1e-5
    # pseudo_quantize_tensor (zero_point=True) in torch float32
    w = torch.from_numpy(W).reshape(-1, 128)
    max_int = 2**bits - 1
    scales = (w.amax(dim=1, keepdim=True) - w.amin(dim=1, keepdim=True)).clamp(min=1e-5) / max_int
    zeros = (-torch.round(w.amin(dim=1, keepdim=True) / scales)).clamp_(0, max_int)
    expected = ((torch.clamp(torch.round(w / scales) + zeros, 0, max_int) - zeros) * scales).reshape(W.shape)
    r = rtn(W, bits, 128, sym=False, rule="awq")
    np.testing.assert_array_equal(r.dequantized, expected.numpy())


def test_awq_symmetric_branch():
    # absmax / (2^(b-1) - 1), signed codes [-8, 7] stored offset by 8
    W = np.array([[-7.0, -3.5, 0.0, 3.5, 7.0, 8.0, -9.0, 1.0]], dtype=np.float32)
    r = rtn(W, 4, -1, sym=True, rule="awq")
    assert r.scales[0, 0] == np.float32(9 / 7) and r.zeros[0, 0] == 8
    signed = r.codes.astype(int) - 8
    assert signed.min() >= -8 and signed.max() <= 7
    np.testing.assert_array_equal(signed, np.clip(np.rint(W / np.float32(9 / 7)), -8, 7))


def test_spqr_rule_unrounded_zero():
    x = np.array([[0.3, 0.5, 1.0, 2.1]])
    scale, zero = Q.find_params(x, 3, False, Q.SPQR_RULE)
    assert scale[0] == np.float64(np.float32(1.8 / 7))
    assert zero[0] == pytest.approx(-0.3 / scale[0])  # not rounded
    q = Q.quantize(x, scale[:, None], zero[:, None], 3, Q.SPQR_RULE)
    np.testing.assert_array_equal(q, np.clip(np.rint(x / scale[0] + zero[0]), 0, 7))
    # a constant row becomes the range [-1, 1]
    s, z = Q.find_params(np.full((1, 4), 0.7), 3, False, Q.SPQR_RULE)
    assert s[0] == np.float64(np.float32(2 / 7)) and z[0] == pytest.approx(3.5)


@pytest.mark.parametrize("bits", BITS)
def test_error_bound_and_dequantize(rng, bits):
    W = rng.standard_normal((32, 200)).astype(np.float32)  # 200 % 64 != 0: short last group
    r = rtn(W, bits, 64, sym=False)
    assert r.scales.shape == (32, 4) and r.codes.dtype == np.uint8 and r.dequantized.dtype == np.float32
    assert r.codes.max() <= 2**bits - 1
    # asymmetric GPTQ grids cover [min, max]: the error is at most half a step
    err = np.abs(W - r.dequantized)
    assert (err <= r.scales[:, r.g_idx] / 2 * (1 + 1e-5) + 1e-7).all()
    np.testing.assert_array_equal(r.dequantize(), r.dequantized)
    np.testing.assert_array_equal(r.g_idx, np.arange(200) // 64)


def test_short_last_group_uses_its_own_columns(rng):
    W = rng.standard_normal((8, 100)).astype(np.float32)
    r = rtn(W, 4, 32, sym=False)
    tail = rtn(W[:, 96:], 4, -1, sym=False)
    np.testing.assert_array_equal(r.dequantized[:, 96:], tail.dequantized)
    np.testing.assert_array_equal(r.scales[:, 3], tail.scales[:, 0])


def test_bits_per_weight():
    W = np.ones((4, 256), dtype=np.float32)
    assert rtn(W, 4, 128).bits_per_weight == 4.15625
    assert rtn(W, 3, 64).bits_per_weight == 3 + 19 / 64
    assert rtn(W, 4, -1).bits_per_weight == 4 + 20 / 256
    assert rtn(W, 4, 1024).bits_per_weight == 4 + 20 / 256  # one group spans the row


def test_deterministic_and_input_unchanged(rng):
    W = rng.standard_normal((16, 64)).astype(np.float32)
    before = W.copy()
    a, b = rtn(W, 3, 16, False), rtn(W, 3, 16, False)
    np.testing.assert_array_equal(W, before)
    assert a.dequantized.tobytes() == b.dequantized.tobytes() and a.codes.tobytes() == b.codes.tobytes()


def test_float64_input(rng):
    W = rng.standard_normal((4, 32))
    r = rtn(W, 4, 16)
    assert r.dequantized.dtype == np.float32 and r.scales.dtype == np.float32


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(bits=5), ValueError, "bits=5"),
    (dict(bits=4.0), TypeError, "bits"),
    (dict(group_size=0), ValueError, "group_size=0"),
    (dict(group_size=-2), ValueError, "group_size=-2"),
    (dict(rule="nf4"), ValueError, "rule='nf4'"),
])
def test_bad_parameters(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        rtn(np.ones((2, 8), np.float32), **kwargs)


def test_bad_weights():
    with pytest.raises(ValueError, match="2-D"):
        rtn(np.ones((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        rtn(np.array([[1.0, np.nan]], np.float32))
    with pytest.raises(TypeError, match="W must be"):
        rtn(np.ones((2, 2), np.int32))
    with pytest.raises(ValueError, match="non-empty"):
        rtn(np.ones((0, 4), np.float32))
