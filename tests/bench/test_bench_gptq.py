"""Benchmark: GPTQ on one 4096 x 4096 layer with a given Hessian (DESIGN target: under
15 s on 2 CPU cores). Run with ``pytest tests/bench/test_bench_gptq.py --benchmark-only``;
besides seconds it reports GB/s of W + H in and the dequantized weight out, and its
fraction of the copy bandwidth (small: GPTQ is compute-bound, ~d^3 flops)."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.algorithms import gptq, rtn
from tests.bench._bandwidth import record

N = 4096


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((N, N)) * 0.02).astype(np.float32)
    X = rng.standard_normal((N, N)).astype(np.float32)
    X[:, rng.choice(N, 32, replace=False)] *= 20
    H = (2.0 / N) * (X.T @ X)  # float32, as GPTQ accumulates it
    return W, H


@pytest.mark.parametrize("act_order", [False, True], ids=["natural", "act_order"])
def test_gptq_4096(benchmark, layer, act_order):
    W, H = layer
    result = benchmark.pedantic(gptq, args=(W, H, 4, 128), kwargs=dict(act_order=act_order), rounds=1, iterations=1)
    record(benchmark, W.nbytes + H.nbytes + result.dequantized.nbytes)
    benchmark.extra_info["seconds"] = round(benchmark.stats.stats.min, 2)
    base = rtn(W, 4, 128).dequantized
    delta = (W - base).astype(np.float32)
    benchmark.extra_info["error_vs_rtn"] = round(result.error / (0.5 * float(np.sum((delta @ H) * delta))), 4)
