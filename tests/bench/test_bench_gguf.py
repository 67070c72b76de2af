"""Benchmarks of the GGUF block codecs on one 4096 x 4096 float32 layer, per type:
refquant's NumPy reference, gguf-py's NumPy codec (the types it has), and ggml's C code
when a ggml-base build is given in ``REFQUANT_GGML_LIB`` (see tests/golden/gguf/README.md).

Run with ``pytest tests/bench/test_bench_gguf.py --benchmark-only``. Each run records
GB/s (bytes in + bytes out), its fraction of the copy bandwidth, and MB/s of float32
weights processed (``weights_MB/s``). The searches (imatrix paths, IQ4) take seconds per
call, so every case runs once (pedantic, one round).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

import refquant.gguf as G
from refquant.formats import FORMATS
from tests.bench._bandwidth import record

SHAPE = (4096, 4096)
QTYPES = tuple(sorted(FORMATS, key=lambda n: FORMATS[n].type_id))
IMATRIX_TYPES = tuple(t for t in QTYPES if FORMATS[t].uses_imatrix)
GGUFPY_QUANTIZES = ("f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "tq1_0", "tq2_0", "mxfp4")


def _run(benchmark, fn, *args):
    return benchmark.pedantic(fn, args=args, rounds=1, iterations=1)


def _report(benchmark, floats_bytes: int, other_bytes: int) -> None:
    record(benchmark, floats_bytes + other_bytes)
    benchmark.extra_info["weights_MB/s"] = round(floats_bytes / benchmark.stats.stats.min / 1e6, 2)


@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize(benchmark, weight, qtype):
    q = _run(benchmark, G.quantize, weight, qtype)
    _report(benchmark, weight.nbytes, q.nbytes)


@pytest.mark.parametrize("qtype", IMATRIX_TYPES)
def test_quantize_imatrix(benchmark, weight, imatrix, qtype):
    q = _run(benchmark, G.quantize, weight, qtype, imatrix)
    _report(benchmark, weight.nbytes, q.nbytes)


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize(benchmark, weight, qtype):
    q = G.quantize(weight[:256], qtype)  # decode speed does not depend on the values
    q = np.tile(q, (SHAPE[0] // 256, 1))
    y = _run(benchmark, G.dequantize, q, qtype, SHAPE)
    _report(benchmark, y.nbytes, q.nbytes)


@pytest.mark.parametrize("qtype", [t for t in GGUFPY_QUANTIZES if t in FORMATS])
def test_gguf_py_quantize(benchmark, weight, qtype):
    gq = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType

    q = _run(benchmark, gq.quantize, weight, GGMLQuantizationType[qtype.upper()])
    _report(benchmark, weight.nbytes, q.nbytes)


@pytest.mark.parametrize("qtype", [t for t in QTYPES if t not in ("q8_1", "q8_k")])
def test_gguf_py_dequantize(benchmark, weight, qtype):
    gq = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType

    q = np.tile(G.quantize(weight[:256], qtype), (SHAPE[0] // 256, 1))
    y = _run(benchmark, gq.dequantize, q, GGMLQuantizationType[qtype.upper()])
    _report(benchmark, y.nbytes, q.nbytes)


def _ggml():
    lib = os.environ.get("REFQUANT_GGML_LIB")
    if not lib:
        pytest.skip("set REFQUANT_GGML_LIB to a ggml-base shared library to time ggml's C code")
    path = Path(__file__).resolve().parents[2] / "tools" / "gguf_oracle.py"
    spec = importlib.util.spec_from_file_location("gguf_oracle", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GGML(lib)


@pytest.mark.parametrize("with_imatrix", [False, True], ids=["plain", "imatrix"])
@pytest.mark.parametrize("qtype", [t for t in QTYPES if t not in ("q8_1", "q8_k")])
def test_ggml_c_quantize(benchmark, weight, imatrix, qtype, with_imatrix):
    if with_imatrix and qtype not in IMATRIX_TYPES:
        pytest.skip(f"ggml ignores the imatrix for {qtype}")
    ggml = _ggml()
    fmt = FORMATS[qtype]
    row_bytes = SHAPE[1] // fmt.block_size * fmt.type_size
    q, _ = _run(benchmark, ggml.quantize, qtype, fmt.type_id, weight, row_bytes, imatrix if with_imatrix else None)
    _report(benchmark, weight.nbytes, q.nbytes)
