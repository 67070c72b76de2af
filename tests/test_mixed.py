"""Mixed-precision baseline (refquant.algorithms.mixed): salient channels in fp16, RTN the rest."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.algorithms import mixed, rtn
from refquant.apps.evaluate import relative_error, synthetic_activations


@pytest.fixture
def layer(rng):
    W = (rng.standard_normal((64, 384)) * 0.05).astype(np.float32)
    X = synthetic_activations(rng, 512, 384, n_outliers=3)
    return W, X


def test_selects_the_most_activated_channels(rng):
    W = rng.standard_normal((16, 200)).astype(np.float32)
    X = rng.standard_normal((64, 200)).astype(np.float32)
    X[:, [7, 150]] *= 50
    r = mixed(W, X, 4, 64, salient_fraction=0.01)  # round(0.01 * 200) = 2 channels
    np.testing.assert_array_equal(r.salient, [7, 150])
    np.testing.assert_array_equal(r.dequantized[:, [7, 150]], W[:, [7, 150]].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(r.dequantize(), r.dequantized)


def test_salient_weights_do_not_stretch_the_grid(rng):
    W = rng.standard_normal((8, 128)).astype(np.float32)
    X = rng.standard_normal((32, 128)).astype(np.float32)
    X[:, 3] *= 100
    W_big = W.copy()
    W_big[:, 3] = 1e4  # a huge salient column would otherwise dominate its group's range
    a, b = mixed(W, X, 4, 64), mixed(W_big, X, 4, 64)
    others = np.r_[0:3, 4:128]
    np.testing.assert_array_equal(a.dequantized[:, others], b.dequantized[:, others])


@pytest.mark.parametrize("bits", (3, 4))
def test_beats_rtn(layer, bits):
    W, X = layer
    base = relative_error(W, rtn(W, bits, 128, sym=False, rule="awq").dequantized, X)
    assert relative_error(W, mixed(W, X, bits, 128).dequantized, X) < 0.7 * base


def test_zero_fraction_is_rtn(layer):
    W, X = layer
    r = mixed(W, X, 4, 128, salient_fraction=0.0)
    assert r.salient.size == 0
    np.testing.assert_array_equal(r.dequantized, rtn(W.astype(np.float64), 4, 128, sym=False, rule="awq").dequantized)
    assert r.bits_per_weight == pytest.approx(4 + 20 / 128)


def test_bits_per_weight(layer):
    W, X = layer
    r = mixed(W, X, 4, 128)  # 4 of 384 channels
    f = 4 / 384
    assert r.bits_per_weight == pytest.approx(4 * (1 - f) + 16 * f + 20 / 128 + 32 * 4 / (64 * 384))


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(salient_fraction=1.5), ValueError, "salient_fraction"),
    (dict(rule="x"), ValueError, "rule='x'"),
    (dict(X=np.ones((4, 3), np.float32)), ValueError, "X must have"),
])
def test_bad_parameters(kwargs, exc, words):
    args = dict(W=np.ones((4, 16), np.float32), X=np.ones((4, 16), np.float32))
    args.update(kwargs)
    with pytest.raises(exc, match=words):
        mixed(**args)
