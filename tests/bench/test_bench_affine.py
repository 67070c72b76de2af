"""Benchmarks of the NumPy reference: affine quantize/dequantize and sub-byte packing on one
4096 x 4096 layer. Run with ``pytest tests/bench/test_bench_affine.py --benchmark-only``;
each reports GB/s (bytes in + bytes out) and its fraction of the copy bandwidth."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.granularity import PerChannel, PerGroup, PerTensor
from refquant.mapping import choose_qparams, dequantize, quantize
from refquant.packing import pack, unpack
from tests.bench._bandwidth import record

SHAPE = (4096, 4096)


@pytest.fixture(scope="module")
def weight():
    return np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)


@pytest.mark.parametrize("gran", [PerTensor(), PerChannel(0), PerGroup(128)], ids=repr)
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_quantize(benchmark, weight, gran, symmetric):
    params = choose_qparams(weight, bits=4, symmetric=symmetric, granularity=gran)
    q = benchmark(quantize, weight, params)
    record(benchmark, weight.nbytes + q.nbytes)


@pytest.mark.parametrize("gran", [PerChannel(0), PerGroup(128)], ids=repr)
def test_dequantize(benchmark, weight, gran):
    params = choose_qparams(weight, bits=4, symmetric=False, granularity=gran)
    q = quantize(weight, params)
    out = benchmark(dequantize, q, params)
    record(benchmark, q.nbytes + out.nbytes)


def test_choose_qparams_per_group(benchmark, weight):
    benchmark(choose_qparams, weight, 4, False, granularity=PerGroup(128))
    record(benchmark, weight.nbytes)


@pytest.mark.parametrize("bits,order,container", [(4, "low_first", "uint8"), (4, "awq", "int32"),
                                                  (3, "low_first", "int32")], ids=["4bit", "awq", "gptq3"])
def test_pack_unpack(benchmark, bits, order, container):
    codes = np.random.default_rng(1).integers(0, 2**bits, SHAPE, dtype=np.uint8)
    packed = benchmark(pack, codes, bits, order, container)
    record(benchmark, codes.nbytes + packed.nbytes)
    np.testing.assert_array_equal(unpack(packed, bits, SHAPE[1], order, container), codes)
