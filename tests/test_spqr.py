"""SpQR (refquant.algorithms.spqr): bilevel statistics, outliers, bits per weight."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from refquant.algorithms import rtn, spqr
from refquant.algorithms.gptq import reconstruction_error
from refquant.algorithms.spqr import average_bits
from refquant.apps.evaluate import synthetic_activations


@pytest.fixture
def layer(rng):
    W = (rng.standard_normal((64, 128)) * 0.05).astype(np.float32)
    X = synthetic_activations(rng, 512, 128)
    H = 2.0 / X.shape[0] * X.T.astype(np.float64) @ X
    return W, X, H


def test_average_bits_formula():
    assert average_bits(3, 16, 3, 3, 16) == 3.625
    assert average_bits(3, 16, 3, 3, 16, 0.01) == pytest.approx(3.945)
    assert average_bits(4, 16, 3, 3, 16) == 4.625


def test_no_outliers_costs_3_625_bits(layer):
    W, X, H = layer
    r = spqr(W, H, outlier_threshold=np.inf)
    assert r.outliers.nnz == 0 and r.bits_per_weight == 3.625
    np.testing.assert_array_equal(r.dequantize(), r.dequantized)


def test_outliers_are_sparse_fp16_and_counted(layer):
    W, X, H = layer
    r = spqr(W, H)
    assert isinstance(r.outliers, scipy.sparse.csr_matrix) and r.outliers.shape == W.shape
    assert 0 < r.outlier_fraction < 0.05
    data = r.outliers.data
    np.testing.assert_array_equal(data.astype(np.float16).astype(np.float32), data)  # float16 values
    assert r.bits_per_weight == pytest.approx(3.625 + 32 * r.outlier_fraction)
    np.testing.assert_array_equal(r.dequantize(), r.dequantized)


def test_second_level_statistics_rebuild_the_first_level(layer):
    W, X, H = layer
    r = spqr(W, H)
    # scale of row o, group g = s2 * (code - z2) of chunk o // 16 (float32 arithmetic)
    chunk = np.arange(64) // 16
    s2, z2 = r.scale_stats[:, chunk, 0].T, r.scale_stats[:, chunk, 1].T  # (out, groups)
    np.testing.assert_allclose(r.scales, s2 * (r.scale_codes - z2), rtol=1e-6)
    s2, z2 = r.zero_stats[:, chunk, 0].T, r.zero_stats[:, chunk, 1].T
    np.testing.assert_allclose(r.zeros, s2 * (r.zero_codes - z2), rtol=1e-5, atol=1e-6)
    assert r.scale_codes.max() <= 7 and r.zero_codes.max() <= 7 and r.codes.max() <= 7
    assert r.scales.shape == (64, 8) and r.scale_stats.shape == (8, 4, 2)


def test_planted_outlier_is_kept(layer):
    W, X, H = layer
    W = W.copy()
    W[10, 37] = 3.0  # 60 standard deviations
    r = spqr(W, H)
    assert r.outliers[10, 37] != 0
    # the rest of its group is fitted without it: a fine grid for row 10
    group = r.g_idx[37]
    assert r.scales[10, group] < 0.5


def test_approaches_4bit_rtn_and_beats_3bit(layer):
    W, X, H = layer
    r = spqr(W, H)
    assert r.bits_per_weight < 4.1
    assert r.error < reconstruction_error(W, rtn(W, 4, 128, sym=False).dequantized, H)
    assert r.error < 0.3 * reconstruction_error(W, rtn(W, 3, 128, sym=False).dequantized, H)


def test_natural_order_and_simplified_outliers(layer):
    W, X, H = layer
    a = spqr(W, H, act_order=False, simplified_outliers=True)
    assert a.perm is None
    np.testing.assert_array_equal(a.g_idx, np.arange(128) // 16)
    np.testing.assert_array_equal(a.dequantize(), a.dequantized)


def test_dead_column_and_determinism(layer):
    W, X, _ = layer
    X = X.copy()
    X[:, 9] = 0
    H = 2.0 / X.shape[0] * X.T.astype(np.float64) @ X
    W0 = W.copy()
    a, b = spqr(W, H), spqr(W, H)
    np.testing.assert_array_equal(W, W0)
    assert a.dequantized.tobytes() == b.dequantized.tobytes()
    assert np.isfinite(a.dequantized).all()
    # the dead column was zeroed before quantization (its input is always 0)
    assert np.abs(a.dequantized[:, 9]).max() <= a.scales.max() / 2 * 1.01
    assert a.error < reconstruction_error(W, rtn(W, 3, 128, sym=False).dequantized, H)


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(W=np.ones((10, 16), np.float32)), ValueError, "multiple of qq_groupsize=16"),
    (dict(outlier_threshold=-1.0), ValueError, "outlier_threshold"),
    (dict(outlier_threshold="high"), TypeError, "outlier_threshold"),
    (dict(qq_scale_bits=0), ValueError, "qq_scale_bits"),
    (dict(group_size=0), ValueError, "group_size"),
])
def test_bad_parameters(kwargs, exc, words):
    args = dict(W=np.ones((16, 16), np.float32), H=np.eye(16))
    args.update(kwargs)
    with pytest.raises(exc, match=words):
        spqr(**args)
