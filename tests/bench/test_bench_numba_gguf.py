"""Benchmarks of the Numba GGUF kernels on one 4096 x 4096 float32 layer, per type.

Run with ``pytest tests/bench/test_bench_numba_gguf.py --benchmark-only``. Each case
records, in pytest-benchmark's ``extra_info``: GB/s (bytes in + bytes out), its fraction
of this machine's copy bandwidth measured in the same run (``tests/bench/_bandwidth.py``),
and ``speedup_vs_ref``, the NumPy reference's time for the same call (timed once per
case; the searches take seconds) over the kernel's best time.

- ``test_quantize`` / ``test_quantize_imatrix``: :func:`accel.numba.gguf.gguf_quantize`.
- ``test_dequantize``: the op, which allocates its float32 output: fresh pages are zeroed
  by the OS on first touch, which alone costs about as much as the decode;
  ``test_dequantize_kernel``: the decode into a preallocated buffer, the figure that
  compares with the copy bandwidth (itself measured into a preallocated buffer).
- ``test_dequant_matmul``: the fused product, every type, GEMV (1 token) and GEMM (16
  tokens); the weight is the bytes of 256 quantized rows repeated (a whole layer of the
  grid types' searches takes minutes, and the product's speed does not depend on the values).
- ``test_first_call``: compile cost (cold Numba cache) and cached first call, each in a
  fresh process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

import accel  # noqa: E402
import refquant.gguf as G  # noqa: E402
from accel.numba import gguf as kernels  # noqa: E402
from refquant.formats import FORMATS  # noqa: E402
from refquant.formats.gguf_matmul import dequant_matmul  # noqa: E402
from tests.bench._bandwidth import record  # noqa: E402

N = accel.get_backend("numba")  # ops behind the dispatcher: arguments prepared by refquant, as users call them
SHAPE = (4096, 4096)
# the grid types (IQ1/IQ2/IQ3) have their own benchmarks on fewer rows (test_bench_numba_iqgrid.py):
# their reference searches take minutes on a 4096 x 4096 layer
QTYPES = tuple(sorted((n for n in FORMATS if not n.startswith(("iq1", "iq2", "iq3"))), key=lambda n: FORMATS[n].type_id))
IMATRIX_TYPES = tuple(t for t in QTYPES if FORMATS[t].uses_imatrix)
REPO = Path(__file__).resolve().parents[2]


def _ref_seconds(fn, *args) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _finish(benchmark, nbytes: int, ref_seconds: float) -> None:  # type: ignore[no-untyped-def]
    record(benchmark, nbytes)
    benchmark.extra_info["speedup_vs_ref"] = round(ref_seconds / benchmark.stats.stats.min, 1)


@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize(benchmark, weight, qtype):
    N.gguf_quantize(weight[:1], qtype)  # compile / load from the cache
    q = benchmark.pedantic(N.gguf_quantize, args=(weight, qtype), rounds=3, iterations=1, warmup_rounds=1)
    _finish(benchmark, weight.nbytes + q.nbytes, _ref_seconds(G.quantize, weight, qtype))


@pytest.mark.parametrize("qtype", IMATRIX_TYPES)
def test_quantize_imatrix(benchmark, weight, imatrix, qtype):
    N.gguf_quantize(weight[:1], qtype, imatrix)
    q = benchmark.pedantic(N.gguf_quantize, args=(weight, qtype, imatrix), rounds=3, iterations=1, warmup_rounds=1)
    _finish(benchmark, weight.nbytes + q.nbytes, _ref_seconds(G.quantize, weight, qtype, imatrix))


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize(benchmark, weight, qtype):
    q = N.gguf_quantize(weight, qtype)
    y = benchmark(N.gguf_dequantize, q, qtype, SHAPE)
    _finish(benchmark, q.nbytes + y.nbytes, _ref_seconds(G.dequantize, q, qtype, SHAPE))


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize_kernel(benchmark, weight, qtype):
    fmt = G.get_format(qtype)
    q = N.gguf_quantize(weight, qtype)
    blocks = q.reshape(-1, fmt.type_size)
    out = np.empty((blocks.shape[0], fmt.block_size), np.float32)
    kernel = kernels._DEQUANTIZE[qtype]
    benchmark(kernel, blocks, out)
    np.testing.assert_array_equal(out.reshape(SHAPE).view(np.uint32),
                                  G.dequantize(q, qtype, SHAPE).view(np.uint32))
    _finish(benchmark, q.nbytes + out.nbytes, _ref_seconds(G.dequantize, q, qtype, SHAPE))


@pytest.mark.parametrize("tokens", [1, 16], ids=["gemv", "gemm16"])
@pytest.mark.parametrize("qtype", sorted(kernels.MATMUL_QTYPES, key=lambda n: FORMATS[n].type_id))
def test_dequant_matmul(benchmark, weight, imatrix, qtype, tokens):
    rows = N.gguf_quantize(weight[:256], qtype, imatrix if FORMATS[qtype].requires_imatrix else None)
    q = np.tile(rows, (SHAPE[0] // 256, 1))
    x = np.random.default_rng(2).standard_normal((tokens, SHAPE[1])).astype(np.float32)
    y = benchmark(N.gguf_dequant_matmul, x, q, qtype, SHAPE)
    _finish(benchmark, q.nbytes + x.nbytes + y.nbytes, _ref_seconds(dequant_matmul, x, q, qtype, SHAPE))


_FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
import accel
gguf = accel.get_backend("numba")
x = np.random.default_rng(0).standard_normal((4, 4096)).astype(np.float32)
for qtype in ("q4_0", "q4_k", "iq4_xs"):
    gguf.gguf_dequantize(gguf.gguf_quantize(x, qtype), qtype, x.shape)
print(time.perf_counter() - t0)
"""


def test_first_call(benchmark):
    """Import + first quantize/dequantize of Q4_0, Q4_K and IQ4_XS in a new process:
    with an empty Numba cache (JIT compile) and again with the cache it left."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(REPO))

        def run() -> float:
            out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, check=True,
                                 capture_output=True, text=True, cwd=REPO)
            return float(out.stdout.strip().splitlines()[-1])

        cold = run()
        warm = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["cold_s"] = round(cold, 2)
    benchmark.extra_info["cached_s"] = round(warm, 2)
