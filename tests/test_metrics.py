"""Metrics: error measures with defined degenerate cases; bits per weight and memory."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from refquant.metrics import (GGUF_BLOCKS, bits_per_weight, known_formats, cosine_similarity, gguf_block_bytes, kl_divergence,
                              max_abs_error, model_memory, mse, sqnr)

# format -> (bpw, GB, GiB) for 70e9 weights; GB/GiB as printed (3 decimals).
BPW_TABLE = {
    ("fp32", ()): (32, 280.000, 260.770),
    ("fp16", ()): (16, 140.000, 130.385),
    ("bf16", ()): (16, 140.000, 130.385),
    ("int8", ()): (8, 70.000, 65.193),
    ("int4", ()): (4, 35.000, 32.596),
    ("q8_0", ()): (8.5, 74.375, 69.267),
    ("q6_k", ()): (6.5625, 57.422, 53.478),
    ("q5_1", ()): (6.0, 52.500, 48.894),
    ("q5_0", ()): (5.5, 48.125, 44.820),
    ("q5_k", ()): (5.5, 48.125, 44.820),
    ("q4_1", ()): (5.0, 43.750, 40.745),
    ("q4_0", ()): (4.5, 39.375, 36.671),
    ("q4_k", ()): (4.5, 39.375, 36.671),
    ("iq4_nl", ()): (4.5, 39.375, 36.671),
    ("iq4_xs", ()): (4.25, 37.188, 34.634),
    ("q3_k", ()): (3.4375, 30.078, 28.012),
    ("q2_k", ()): (2.625, 22.969, 21.391),
    ("tq2_0", ()): (2.0625, 18.047, 16.807),
    ("tq1_0", ()): (1.6875, 14.766, 13.752),
    ("q8_k", ()): (9.125, 79.844, 74.360),
    ("nf4", (("blocksize", 64),)): (4.5, 39.375, 36.671),
    ("fp4", (("blocksize", 64),)): (4.5, 39.375, 36.671),
    ("nf4", (("double_quant", True),)): (4 + 8 / 64 + 32 / (64 * 256), 36.111, 33.631),
    ("gptq", (("bits", 4), ("group_size", 128))): (4.15625, 36.367, 33.870),
    ("awq", (("bits", 4), ("group_size", 128))): (4.15625, 36.367, 33.870),
    ("spqr", ()): (3.625, 31.719, 29.540),
}


@pytest.mark.parametrize("fmt,params", list(BPW_TABLE), ids=[f"{f}{dict(p) or ''}" for f, p in BPW_TABLE])
def test_facts_11_table(fmt, params):
    bpw, gb, gib = BPW_TABLE[(fmt, params)]
    kw = dict(params)
    assert bits_per_weight(fmt, **kw) == bpw
    assert round(model_memory(70e9, fmt, "GB", **kw), 3) == gb
    assert round(model_memory(70e9, fmt, "GiB", **kw), 3) == gib


def test_exact_headline_values():
    assert model_memory(70e9, "fp32") == 280.0
    assert model_memory(70e9, "q4_0") == 39.375
    assert model_memory(70e9, "Q8_0") == 74.375                   # case-insensitive
    assert bits_per_weight("nf4", double_quant=True) == 4.126953125
    assert f"{bits_per_weight('nf4', double_quant=True):.6f}" == "4.126953"
    assert model_memory(2**30, "int8", "GiB") == 1.0
    assert model_memory(8, "int4", "B") == 4.0


def test_block_layout_arithmetic():
    # bit accounting
    assert gguf_block_bytes("q4_0") == (32, 2 + 16)
    assert gguf_block_bytes("q4_k") == (256, 4 + 12 + 128)
    assert gguf_block_bytes("q6_k") == (256, 128 + 64 + 16 + 2)
    assert gguf_block_bytes("tq1_0") == (256, 2 + 4 * 13)
    assert gguf_block_bytes("iq4_xs") == (256, 2 + 2 + 128 + 4)


@pytest.mark.oracle
def test_block_sizes_match_gguf_py():
    gguf = pytest.importorskip("gguf")
    sizes = {t.name.lower(): v for t, v in gguf.constants.GGML_QUANT_SIZES.items()}
    checked = 0
    for name in GGUF_BLOCKS:
        if name not in sizes:
            continue  # newer ggml types (q1_0, q2_0) that gguf-py 0.19 does not list
        if name == "q8_1":
            # gguf-py still lists the old float d/s layout (32, 4 + 4 + 32); ggml-common.h's
            # block_q8_1 is ggml_half d, s (ggml-common.h: 36 bytes).
            assert sizes[name] == (32, 40) and gguf_block_bytes(name) == (32, 36)
            continue
        assert gguf_block_bytes(name) == sizes[name], name
        checked += 1
    assert checked >= 25


def test_other_formats():
    assert bits_per_weight("nf4", blocksize=4096) == 4 + 32 / 4096
    assert bits_per_weight("gptq", bits=3, group_size=64) == 3 + 19 / 64
    assert bits_per_weight("spqr", outlier_fraction=0.01) == pytest.approx(3.625 + 0.32)
    assert bits_per_weight("spqr", round_zero=True) == 3 + 6 / 16 + 0.25
    assert bits_per_weight("uint3") == 3.0
    assert bits_per_weight("float8_e4m3fn") == 8.0
    assert bits_per_weight("float6_e2m3fn") == 6.0


@pytest.mark.parametrize("fmt, bpw", [
    ("mxfp8_e4m3", 8.25), ("mxfp8_e5m2", 8.25), ("mxfp6_e3m2", 6.25), ("mxfp6_e2m3", 6.25),
    ("mxfp4", 4.25), ("mxint8", 8.25), ("nvfp4", 4.5),
])
def test_microscaling_bits_per_weight(fmt, bpw):
    """OCP MX v1.0: element bits + one E8M0 byte per 32; NVFP4: 4 + 8 / 16."""
    assert bits_per_weight(fmt) == bpw
    assert fmt in known_formats()
    assert bits_per_weight("mxfp4") == 4.25


def test_format_errors():
    with pytest.raises(ValueError, match="q9_9"):
        bits_per_weight("q9_9")
    with pytest.raises(TypeError, match="blocksize"):
        bits_per_weight("q4_0", blocksize=32)
    with pytest.raises(ValueError, match="blocksize=0"):
        bits_per_weight("nf4", blocksize=0)
    with pytest.raises(ValueError, match="unit='gb'"):
        model_memory(1e9, "fp16", unit="gb")
    with pytest.raises(ValueError, match="n_params"):
        model_memory(-1, "fp16")


# --- error metrics ----------------------------------------------------------------------


def test_error_metrics_known_values():
    x = np.array([1.0, -2.0, 3.0, 0.0], dtype=np.float32)
    y = np.array([1.0, -2.5, 3.0, 0.5], dtype=np.float32)
    assert mse(x, y) == 0.125
    assert max_abs_error(x, y) == 0.5
    assert sqnr(x, y) == pytest.approx(10 * np.log10(14 / 0.5))
    assert cosine_similarity(x, y) == pytest.approx(15 / np.sqrt(14 * 16.5))
    assert cosine_similarity(x, -x) == -1.0
    np.testing.assert_allclose(cosine_similarity(np.eye(3), np.eye(3) * 2, axis=1), [1, 1, 1])


def test_error_metric_degenerate_cases():
    z = np.zeros(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sqnr(z, z) == np.inf
        assert sqnr(z, z + 1) == -np.inf
        assert sqnr(np.ones(3), np.ones(3)) == np.inf
        assert cosine_similarity(z, z) == 1.0
        assert cosine_similarity(z, np.ones(4)) == 0.0
        assert mse([], []) == 0.0 and max_abs_error([], []) == 0.0
        np.testing.assert_array_equal(cosine_similarity(np.zeros((2, 3)), np.ones((2, 3)), axis=1), [0, 0])
    with pytest.raises(ValueError, match="same shape"):
        mse(np.zeros(3), np.zeros(4))
    with pytest.raises(TypeError, match="numeric"):
        mse(np.array(["a"]), np.array(["b"]))


def test_kl_divergence(rng):
    scipy_stats = pytest.importorskip("scipy.stats")
    p, q = rng.random(50), rng.random(50)
    assert kl_divergence(p, q) == pytest.approx(scipy_stats.entropy(p, q), rel=1e-12)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-15)
    rows_p, rows_q = rng.random((3, 8)), rng.random((3, 8))
    np.testing.assert_allclose(kl_divergence(rows_p, rows_q, axis=1), scipy_stats.entropy(rows_p, rows_q, axis=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kl_divergence([1, 0], [0, 1]) == np.inf             # mass where q has none
        assert kl_divergence([0, 1], [0.5, 0.5]) == pytest.approx(np.log(2))   # 0 log 0 = 0
    with pytest.raises(ValueError, match="non-negative"):
        kl_divergence([1, -1], [1, 1])
    with pytest.raises(ValueError, match="sums to 0"):
        kl_divergence([0, 0], [1, 1])
