"""BitNet b1 / b1.58 quantizers (refquant.algorithms.bitnet)."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.algorithms import (activation_quant_b1, activation_quant_b158, bitnet_b1, bitnet_b158,
                                 ste_backward, ste_forward)


def test_b158_golden():
    W = np.array([[0.5, -1.0, 0.1], [2.0, -0.25, 0.0]], dtype=np.float32)  # mean |W| = 0.641666...
    r = bitnet_b158(W)
    gamma = np.float32(np.mean(np.abs(W), dtype=np.float64))
    assert r.scale == np.float32(1) / gamma
    # W * scale = [0.78, -1.56, 0.16, 3.12, -0.39, 0] -> [1, -1, 0, 1, 0, 0]
    assert r.codes.tolist() == [[1, -1, 0], [1, 0, 0]]
    np.testing.assert_array_equal(r.dequantized, r.codes / np.float32(r.scale))
    assert r.bits_per_weight == pytest.approx(np.log2(3) + 32 / 6)


def test_b158_half_even_ties():
    # mean |W| = 1: codes of +-0.5 round to 0 (half-to-even), 1.5 -> 2 -> clamp 1
    W = np.array([0.5, -0.5, 1.5, -1.5, 1.0, 1.0], dtype=np.float32)
    assert bitnet_b158(W).codes.tolist() == [0, 0, 1, -1, 1, 1]


def test_b158_matches_reference_code(rng):
    torch = pytest.importorskip("torch")
    W = (rng.standard_normal((64, 96)) * 0.02).astype(np.float32)
    r = bitnet_b158(W)
    w = torch.from_numpy(W)
    scale = 1.0 / w.abs().mean().clamp_(min=1e-5)
    u = (w * scale).round().clamp_(-1, 1)
    # the mean is float64-exact here; torch's float32 reduction may differ by an ulp
    assert r.scale == pytest.approx(float(scale), rel=1e-6)
    np.testing.assert_array_equal(r.codes, u.numpy().astype(np.int8))
    np.testing.assert_allclose(r.dequantized, (u / scale).numpy(), rtol=2e-7)


def test_b158_zero_weight():
    r = bitnet_b158(np.zeros((4, 4), np.float32))
    np.testing.assert_array_equal(r.codes, 0)
    np.testing.assert_array_equal(r.dequantized, 0)
    assert r.scale == np.float32(1) / np.float32(1e-5)


def test_activation_b158_matches_reference_code(rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((3, 7, 64)) * 4).astype(np.float32)
    x[1, 2] = 0.0  # all-zero token
    a = activation_quant_b158(x)
    t = torch.from_numpy(x)
    scale = 127.0 / t.abs().max(dim=-1, keepdim=True).values.clamp_(min=1e-5)
    q = (t * scale).round().clamp_(-128, 127)
    np.testing.assert_array_equal(a.codes, q.numpy().astype(np.int8))
    np.testing.assert_array_equal(a.scale, scale.numpy())
    np.testing.assert_array_equal(a.dequantized, (q / scale).numpy())
    assert a.codes.min() >= -127 and np.isfinite(a.dequantized).all()
    np.testing.assert_array_equal(a.dequantized[1, 2], 0)


def test_b1_weights():
    W = np.array([[1.0, 2.0, 3.0, 6.0]], dtype=np.float32)  # alpha = 3: W - alpha = [-2, -1, 0, 3]
    r = bitnet_b1(W)
    assert r.alpha == 3.0 and r.scale == 3.0
    assert r.codes.tolist() == [[-1, -1, -1, 1]]  # Sign(0) = -1
    np.testing.assert_array_equal(r.dequantized, [[-3.0, -3.0, -3.0, 3.0]])
    assert r.bits_per_weight == 1 + 32 / 4


def test_b1_activations():
    x = np.array([[0.0, 1.0, -2.0, 4.0], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    a = activation_quant_b1(x, bits=8)  # gamma = 4, Q_b = 128: 4 -> 128 -> clipped to 127
    assert a.codes.tolist() == [[0, 32, -64, 127], [0, 0, 0, 0]]
    t = activation_quant_b1(x, bits=8, per_token=True)
    assert t.scale.shape == (2, 1) and np.isfinite(t.dequantized).all()
    np.testing.assert_array_equal(t.dequantized[1], 0)
    with pytest.raises(ValueError, match="bits"):
        activation_quant_b1(x, bits=1)


def test_ste_matches_torch_detach(rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal(1000) * 3).astype(np.float32)
    q = activation_quant_b158(x).dequantized
    t = torch.from_numpy(x).requires_grad_(True)
    y = t + (torch.from_numpy(q) - t).detach()
    dy = rng.standard_normal(1000).astype(np.float32)
    y.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(ste_forward(x, q), y.detach().numpy())  # not always bit-equal to q
    np.testing.assert_array_equal(ste_backward(dy), t.grad.numpy())


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        bitnet_b158(np.array([np.nan], np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        bitnet_b1(np.zeros((0,), np.float32))
    with pytest.raises(TypeError):
        activation_quant_b158(np.ones(3, np.int8))
