"""Benchmarks of the K-quants (Q2_K ... Q6_K, Q8_K) on one 4096 x 4096 float32 layer.

Run with ``pytest tests/bench/test_bench_gguf_kquants.py --benchmark-only``. Each test
reports GB/s (bytes in + bytes out, with its fraction of the copy bandwidth) and, in
``extra_info``, MB/s of float32 weights processed. Dequantize is also timed for gguf-py's
NumPy dequantizer on the same bytes (gguf-py cannot quantize the K-quants), and, when
``REFQUANT_GGML_LIB`` names a build of ggml-base (see ``tests/golden/gguf/README.md``),
ggml's own C quantizer for the same rows (the NumPy reference's target: within
3x of it). The quantizers run one round per test: a K-quant scale search over 16.8 M
weights takes seconds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import refquant.gguf as gguf_api
from tests.bench._bandwidth import record

SHAPE = (4096, 4096)
KQUANTS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_k")


@pytest.fixture(scope="module")
def weight() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def imatrix() -> np.ndarray:
    return np.random.default_rng(1).random(SHAPE[1]).astype(np.float32)


def _weights_mbs(benchmark, n_weights: int) -> None:
    benchmark.extra_info["MB/s (float32 weights)"] = round(n_weights * 4 / benchmark.stats.stats.min / 1e6, 1)


@pytest.mark.parametrize("use_imatrix", [False, True], ids=["ref", "imatrix"])
@pytest.mark.parametrize("qtype", KQUANTS)
def test_quantize(benchmark, weight, imatrix, qtype, use_imatrix):
    if use_imatrix and qtype == "q8_k":
        pytest.skip("q8_k has no imatrix path")
    im = imatrix if use_imatrix else None
    data = benchmark.pedantic(gguf_api.quantize, (weight, qtype, im), rounds=1, iterations=1)
    record(benchmark, weight.nbytes + data.nbytes)
    _weights_mbs(benchmark, weight.size)


@pytest.mark.parametrize("qtype", KQUANTS)
def test_dequantize(benchmark, weight, qtype):
    data = gguf_api.quantize(weight[:256], qtype)  # bytes of a slice, tiled: decode speed only
    data = np.tile(data, (SHAPE[0] // 256, 1))
    out = benchmark(gguf_api.dequantize, data, qtype, SHAPE)
    record(benchmark, data.nbytes + out.nbytes)
    _weights_mbs(benchmark, out.size)


@pytest.mark.parametrize("qtype", [q for q in KQUANTS if q != "q8_k"])
def test_dequantize_gguf_py(benchmark, weight, qtype):
    """gguf-py's dequantizer on the same bytes, for comparison (it has no Q8_K)."""
    gq = pytest.importorskip("gguf.quants")
    from gguf.constants import GGMLQuantizationType

    data = np.tile(gguf_api.quantize(weight[:256], qtype), (SHAPE[0] // 256, 1))
    out = benchmark(gq.dequantize, data, GGMLQuantizationType[qtype.upper()])
    record(benchmark, data.nbytes + out.nbytes)
    _weights_mbs(benchmark, out.size)
    np.testing.assert_array_equal(out.view(np.uint32), gguf_api.dequantize(data, qtype, SHAPE).view(np.uint32))


@pytest.mark.parametrize("use_imatrix", [False, True], ids=["ref", "imatrix"])
@pytest.mark.parametrize("qtype", KQUANTS)
def test_quantize_ggml(benchmark, weight, imatrix, qtype, use_imatrix):
    """ggml's ``ggml_quantize_chunk`` (single thread) on the same rows, for the ratio."""
    lib = os.environ.get("REFQUANT_GGML_LIB")
    if not lib:
        pytest.skip("set REFQUANT_GGML_LIB to a ggml-base build to time ggml itself")
    if use_imatrix and qtype == "q8_k":
        pytest.skip("q8_k has no imatrix path")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    from gguf_oracle import GGML

    fmt = gguf_api.get_format(qtype)
    ggml = GGML(lib)
    im = imatrix if use_imatrix else None
    args = (qtype, fmt.type_id, weight, gguf_api.row_bytes(qtype, SHAPE[1]), im)
    data, _ = benchmark.pedantic(ggml.quantize, args, rounds=1, iterations=1)
    record(benchmark, weight.nbytes + data.nbytes)
    _weights_mbs(benchmark, weight.size)
