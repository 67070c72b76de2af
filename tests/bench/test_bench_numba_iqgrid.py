"""Benchmarks of the Numba kernels added for issue 17: the IQ grid types and the microscaling ops.

Run with ``pytest tests/bench/test_bench_numba_iqgrid.py --benchmark-only``. Every case runs
the kernel with 1 and 2 Numba threads and records, in pytest-benchmark's ``extra_info``,
``Melem/s`` (elements per second of the best round, in millions), the NumPy reference's
``ref_Melem/s`` for the same call (timed once per case) and ``speedup_vs_ref``.

- ``test_iqgrid_quantize``: :func:`refquant.gguf.quantize` of a 4096 x 256 float32 block of
  rows with an importance matrix (llama.cpp requires one for the IQ1/IQ2 types), per type;
  a 4096 x 4096 layer takes 16 times as long;
- ``test_iqgrid_dequantize``: decoding a 4096 x 4096 layer;
- ``test_mx_quantize`` / ``test_mx_dequantize``: OCP MX per element type, 4096 x 4096;
- ``test_nvfp4``: NVFP4 quantize and dequantize, 4096 x 4096.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

numba = pytest.importorskip("numba")

import accel  # noqa: E402
import refquant.gguf as G  # noqa: E402
from accel.ops import MX_FORMATS  # noqa: E402
from refquant.formats import mx, nvfp4  # noqa: E402

N = accel.get_backend("numba")
GRID = ("iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m")
LAYER = (4096, 4096)
ROWS = (4096, 256)
THREADS = [t for t in (1, 2) if t <= numba.config.NUMBA_NUM_THREADS]


@pytest.fixture(scope="module")
def layer():
    return np.random.default_rng(0).standard_normal(LAYER).astype(np.float32)


@pytest.fixture(scope="module")
def imatrix():
    return np.random.default_rng(1).gamma(1.0, 1.0, ROWS[1]).astype(np.float32)


@pytest.fixture
def threads(request):  # type: ignore[no-untyped-def]
    before = numba.get_num_threads()
    numba.set_num_threads(request.param)
    yield request.param
    numba.set_num_threads(before)


def _run(benchmark, fn, args, elements, ref=None, ref_args=None, rounds=3):  # type: ignore[no-untyped-def]
    fn(*args)                                                  # compile / load from the cache
    benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=0)
    best = benchmark.stats.stats.min
    benchmark.extra_info["Melem/s"] = round(elements / best / 1e6, 3)
    if ref is not None:
        t0 = time.perf_counter()
        ref(*(ref_args or args))
        ref_s = time.perf_counter() - t0
        benchmark.extra_info["ref_Melem/s"] = round(elements / ref_s / 1e6, 3)
        benchmark.extra_info["speedup_vs_ref"] = round(ref_s / best, 1)


@pytest.mark.parametrize("threads", THREADS, indirect=True)
@pytest.mark.parametrize("qtype", GRID)
def test_iqgrid_quantize(benchmark, layer, imatrix, qtype, threads):
    x = np.ascontiguousarray(layer[:, :ROWS[1]])
    _run(benchmark, N.gguf_quantize, (x, qtype, imatrix), x.size, G.quantize if threads == 1 else None)


@pytest.mark.parametrize("threads", THREADS, indirect=True)
@pytest.mark.parametrize("qtype", GRID)
def test_iqgrid_dequantize(benchmark, layer, qtype, threads):
    x = layer[:16]
    im = np.ones(LAYER[1], np.float32)
    data = np.tile(N.gguf_quantize(x, qtype, im), (LAYER[0] // 16, 1))   # a layer of real blocks, quickly
    _run(benchmark, N.gguf_dequantize, (data, qtype, LAYER), layer.size, G.dequantize if threads == 1 else None)


@pytest.mark.parametrize("threads", THREADS, indirect=True)
@pytest.mark.parametrize("fmt", MX_FORMATS)
def test_mx_quantize(benchmark, layer, fmt, threads):
    _run(benchmark, N.mx_quantize, (layer, fmt), layer.size, mx.mx_quantize if threads == 1 else None)


@pytest.mark.parametrize("threads", THREADS, indirect=True)
@pytest.mark.parametrize("fmt", MX_FORMATS)
def test_mx_dequantize(benchmark, layer, fmt, threads):
    scales, codes = mx.mx_quantize(layer, fmt)
    _run(benchmark, N.mx_dequantize, (scales, codes, fmt), layer.size, mx.mx_dequantize if threads == 1 else None)


@pytest.mark.parametrize("threads", THREADS, indirect=True)
@pytest.mark.parametrize("op", ["quantize", "dequantize"])
def test_nvfp4(benchmark, layer, op, threads):
    ref = None
    if op == "quantize":
        if threads == 1:
            ref = nvfp4.nvfp4_quantize
        _run(benchmark, N.nvfp4_quantize, (layer,), layer.size, ref)
    else:
        args = nvfp4.nvfp4_quantize(layer)
        _run(benchmark, N.nvfp4_dequantize, args, layer.size, nvfp4.nvfp4_dequantize if threads == 1 else None)
