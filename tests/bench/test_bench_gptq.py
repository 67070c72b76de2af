"""Benchmark: GPTQ on one 4096 x 4096 layer with a given Hessian, the reference
(:func:`refquant.algorithms.gptq`, target <= 10 s on 2 CPU cores) and the Numba
backend's ``gptq_quantize`` (target <= 3 s). Run with
``pytest tests/bench/test_bench_gptq.py --benchmark-only``; besides seconds it reports
the process CPU seconds (comparable on a shared machine), the load average, GB/s of
W + H in and the dequantized weight out with its fraction of the copy bandwidth (small:
GPTQ is compute-bound, ~d^3 flops) and the layer error relative to round-to-nearest."""

from __future__ import annotations

import os
import time

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


def _quantizer(impl: str):  # type: ignore[no-untyped-def]
    """``f(W, H, act_order) -> Q`` (float32) of ``impl``, compiled before timing."""
    if impl == "reference":
        return lambda W, H, act_order: gptq(W, H, 4, 128, act_order=act_order).dequantized
    pytest.importorskip("numba")
    import accel

    backend = accel.get_backend(impl)
    backend.gptq_quantize(np.ones((8, 256), np.float32), np.eye(256, dtype=np.float32), 4, 128)  # compile / load
    return lambda W, H, act_order: backend.gptq_quantize(W, H, 4, 128, act_order=act_order)


@pytest.mark.parametrize("impl", ["reference", "numba"])
@pytest.mark.parametrize("act_order", [False, True], ids=["natural", "act_order"])
def test_gptq_4096(benchmark, layer, act_order, impl):
    W, H = layer
    quantize = _quantizer(impl)
    cpu = time.process_time()
    Q = benchmark.pedantic(quantize, args=(W, H, act_order), rounds=1, iterations=1)
    benchmark.extra_info["cpu_seconds"] = round(time.process_time() - cpu, 2)
    benchmark.extra_info["load_average"] = round(os.getloadavg()[0], 2)
    benchmark.extra_info["impl"] = impl
    record(benchmark, W.nbytes + H.nbytes + Q.nbytes)
    benchmark.extra_info["seconds"] = round(benchmark.stats.stats.min, 2)

    def error(Q_: np.ndarray) -> float:
        delta = (W - Q_).astype(np.float32)
        return 0.5 * float(np.sum((delta @ H) * delta))

    benchmark.extra_info["error_vs_rtn"] = round(error(Q) / error(rtn(W, 4, 128).dequantized), 4)
