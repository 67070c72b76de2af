"""AWQ (refquant.algorithms.awq): scale search, clip search, float64 safety."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.algorithms import awq, rtn
from refquant.algorithms.awq import (activation_scale, clip_stride, group_grams, quantize_scaled, search_clip,
                                      search_scale)
from refquant.apps.evaluate import relative_error, synthetic_activations


@pytest.fixture
def layer(rng):
    W = (rng.standard_normal((96, 256)) * 0.05).astype(np.float32)
    X = synthetic_activations(rng, 512, 256, n_outliers=4)
    return W, X


def output_mse(W, W_hat, X):
    X = X.astype(np.float64)
    return float(np.mean((X @ W.astype(np.float64).T - X @ W_hat.astype(np.float64).T) ** 2))


def test_scale_search_never_worse_than_rtn(layer):
    W, X = layer
    base = rtn(W, 4, 128, sym=False, rule="awq")
    r = awq(W, X, 4, 128, clip=False)
    # ratio 0 is plain RTN, and the first strictly smaller loss wins
    assert r.loss <= output_mse(W, base.dequantized, X) * (1 + 1e-12)
    assert r.loss == pytest.approx(output_mse(W, r.dequantized, X), rel=1e-6)
    assert 0 < r.ratio < 1


@pytest.mark.parametrize("bits", (3, 4))
def test_beats_rtn(layer, bits):
    W, X = layer
    base = relative_error(W, rtn(W, bits, 128, sym=False, rule="awq").dequantized, X)
    assert relative_error(W, awq(W, X, bits, 128).dequantized, X) < 0.7 * base


def test_uniform_activations_give_rtn(rng):
    # equal mean |x| in every channel: s = 1 for every ratio, so AWQ without clipping is RTN
    W = rng.standard_normal((16, 128)).astype(np.float32)
    X = np.ones((32, 128), np.float32)
    r = awq(W, X, 4, 64, clip=False)
    np.testing.assert_array_equal(r.input_scale, 1)
    assert r.ratio == 0.0
    # (AWQ searches in float64: the same arithmetic as RTN on a float64 W)
    np.testing.assert_array_equal(r.dequantized, rtn(W.astype(np.float64), 4, 64, sym=False, rule="awq").dequantized)


def test_stored_weight_and_input_scale_fold(layer):
    W, X = layer
    r = awq(W, X, 4, 128)
    np.testing.assert_allclose(r.dequantize(), r.dequantized, rtol=1e-6, atol=1e-9)
    stored = (r.scales[:, r.g_idx].astype(np.float64) * (r.codes - r.zeros[:, r.g_idx]))
    # the previous op divides by s: (X / s) @ stored^T == X @ dequantized^T
    lhs = (X / r.input_scale) @ stored.T
    np.testing.assert_allclose(lhs, X.astype(np.float64) @ r.dequantized.T.astype(np.float64), rtol=1e-4, atol=1e-4)
    assert r.clip_max.shape == (96, 2)
    assert r.codes.max() <= 15 and r.zeros.max() <= 15 and r.zeros.min() >= 0


def test_clip_thresholds_on_the_shrink_grid(layer):
    W, X = layer
    r = awq(W, X, 3, 128)
    scaled = W.astype(np.float64) * r.input_scale
    org = np.abs(scaled).reshape(96, 2, 128).max(axis=2)
    factor = r.clip_max / org
    grid = 1 - np.arange(10) / 20  # 1.00 .. 0.55
    assert np.all(np.min(np.abs(factor[..., None] - grid), axis=-1) < 1e-5)
    assert (factor < 1).any()


def test_near_fp16_max_and_zero_channels_stay_finite(rng):
    # weights near 65504 overflow fp16 after scaling, zero channels give 0/0
    W = rng.uniform(-65504, 65504, (32, 256)).astype(np.float32)
    W[:, 5] = 65504.0
    X = synthetic_activations(rng, 256, 256)
    X[:, :16] = 0.0  # dead channels: mean |x| = 0
    X[:, 100] *= 1e3
    r = awq(W, X, 4, 128)
    assert np.isfinite(r.dequantized).all() and np.isfinite(r.input_scale).all() and np.isfinite(r.loss)
    assert (r.input_scale > 0).all()
    base = relative_error(W, rtn(W, 4, 128, sym=False, rule="awq").dequantized, X)
    assert relative_error(W, r.dequantized, X) <= base


def test_all_zero_activations(rng):
    W = rng.standard_normal((8, 64)).astype(np.float32)
    r = awq(W, np.zeros((10, 64), np.float32), 4, 32)
    assert np.isfinite(r.dequantized).all() and r.loss == 0.0


def test_symmetric_branch_and_partial_group(rng):
    W = rng.standard_normal((8, 100)).astype(np.float32)
    X = synthetic_activations(rng, 64, 100)
    r = awq(W, X, 4, 64, zero_point=False)
    assert r.sym and r.scales.shape == (8, 2)
    np.testing.assert_array_equal(r.zeros, 8)


def test_activation_scale_and_3d_inputs(rng):
    X = rng.standard_normal((2, 5, 16)).astype(np.float32)
    np.testing.assert_allclose(activation_scale(X.reshape(-1, 16)), np.abs(X).reshape(-1, 16).mean(0), rtol=1e-6)
    W = rng.standard_normal((8, 16)).astype(np.float32)
    a, b = awq(W, X, 4, 16), awq(W, X.reshape(10, 16), 4, 16)
    np.testing.assert_array_equal(a.dequantized, b.dequantized)


def test_deterministic_and_inputs_unchanged(layer):
    W, X = layer
    W0, X0 = W.copy(), X.copy()
    a, b = awq(W, X, 3, 64), awq(W, X, 3, 64)
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(X, X0)
    assert a.dequantized.tobytes() == b.dequantized.tobytes()


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(X=np.ones((4, 8), np.float32)), ValueError, "X must have in_features = 16"),
    (dict(X=np.full((4, 16), np.nan, np.float32)), ValueError, "NaN"),
    (dict(X=np.ones((0, 16), np.float32)), ValueError, "at least one token"),
    (dict(n_grid=0), ValueError, "n_grid"),
    (dict(max_shrink=1.5), ValueError, "max_shrink"),
    (dict(bits=6), ValueError, "bits=6"),
])
def test_bad_parameters(kwargs, exc, words):
    args = dict(W=np.ones((4, 16), np.float32), X=np.ones((4, 16), np.float32))
    args.update(kwargs)
    with pytest.raises(exc, match=words):
        awq(**args)


def test_statistics_summed_over_shards_give_awq(layer):
    """The public steps from statistics that are sums over tokens, computed on two shards and
    added, give awq()'s scale, clip thresholds and codes (what a sharded checkpoint run relies on)."""
    W, X = layer
    X = X.astype(np.float64)
    ref = awq(W, X, 4, 32)
    cut = X.shape[0] // 3
    parts = (X[:cut], X[cut:])
    s, ratio, _ = search_scale(W, sum(np.abs(p).sum(0) for p in parts) / X.shape[0], sum(p.T @ p for p in parts),
                               X.shape[0], 4, 32)
    np.testing.assert_allclose(s, ref.input_scale, rtol=1e-6)  # sums in another order: last-bit differences
    assert ratio == ref.ratio
    s = ref.input_scale
    stride = clip_stride(X.shape[0], 7)
    a, b = (group_grams(p / s.astype(np.float64), 32, stride, offset) for p, offset in zip(parts, (0, cut)))
    whole = group_grams(X / s.astype(np.float64), 32, stride)
    for x, y, z in zip(a, b, whole):
        np.testing.assert_allclose(x + y, z, rtol=1e-12, atol=1e-12)
    Ws = W.astype(np.float64) * s.astype(np.float64)
    clip_max = search_clip(Ws, whole, 4, 32)
    np.testing.assert_allclose(clip_max, awq(W, X, 4, 32, n_sample_tokens=7).clip_max, rtol=1e-6)
    q = quantize_scaled(Ws, clip_max, 4, 32)
    np.testing.assert_array_equal(q.codes, awq(W, X, 4, 32, n_sample_tokens=7).codes)
    with pytest.raises(ValueError, match="grams must be"):
        search_clip(Ws, whole[:-1], 4, 32)
    with pytest.raises(ValueError, match="x_mean and G"):
        search_scale(W, np.ones(3), np.eye(3), 5)
