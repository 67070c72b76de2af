"""Benchmarks of the NumPy reference for the bitsandbytes family and integer matmul on one
4096 x 4096 layer. Run with ``pytest tests/bench/test_bench_bnb.py --benchmark-only``;
each reports GB/s (bytes in + bytes out) and its fraction of the copy bandwidth."""

from __future__ import annotations

import numpy as np
import pytest

from refquant import bnb
from refquant.matmul import int8_matmul, llm_int8_matmul
from tests.bench._bandwidth import record

SHAPE = (4096, 4096)


@pytest.fixture(scope="module")
def weight():
    return np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)


def _state_bytes(q: bnb.QuantState) -> int:
    return q.storage_bits // 8


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("double_quant", [False, True], ids=["plain", "double_quant"])
def test_quantize_4bit(benchmark, weight, quant_type, double_quant):
    q = benchmark(bnb.quantize_4bit, weight, quant_type, 64, double_quant)
    record(benchmark, weight.nbytes + _state_bytes(q))


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_dequantize_4bit(benchmark, weight, quant_type):
    q = bnb.quantize_4bit(weight, quant_type, 64)
    out = benchmark(bnb.dequantize_4bit, q)
    record(benchmark, _state_bytes(q) + out.nbytes)


def test_quantize_blockwise(benchmark, weight):
    q = benchmark(bnb.quantize_blockwise, weight, 4096)
    record(benchmark, weight.nbytes + _state_bytes(q))


def test_dequantize_blockwise(benchmark, weight):
    q = bnb.quantize_blockwise(weight, 4096)
    out = benchmark(bnb.dequantize_blockwise, q)
    record(benchmark, _state_bytes(q) + out.nbytes)


def test_int8_vectorwise_quant(benchmark, weight):
    q, stats, _ = benchmark(bnb.int8_vectorwise_quant, weight, 6.0)
    record(benchmark, weight.nbytes + q.nbytes + stats.nbytes)


def test_int8_matmul(benchmark):
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (512, 4096)).astype(np.int8)
    b = rng.integers(-128, 128, (4096, 4096)).astype(np.int8)
    out = benchmark(int8_matmul, a, b)
    record(benchmark, a.nbytes + b.nbytes + out.nbytes)


def test_llm_int8_matmul(benchmark, weight):
    x = np.random.default_rng(2).standard_normal((512, SHAPE[1])).astype(np.float32)
    x[:, [10, 900, 3000]] *= 60
    out, _ = benchmark(llm_int8_matmul, x, weight, 6.0)
    record(benchmark, x.nbytes + weight.nbytes + out.nbytes)
