"""Side-by-side benchmark of every implementation of the GGUF codecs and NF4/FP4, per core.

    pytest tests/bench/test_bench_peers.py --benchmark-only --benchmark-json=bench-peers.json
    python tests/bench/report.py bench-peers.json

For each type and direction, in one process and on the same input: refquant's NumPy
reference, the Numba backend at 1 and 2 threads (through ``accel.get_backend``, the
arguments prepared as users' calls are), gguf-py's NumPy codec (the types it has), ggml's
own C (``tests/bench/_ggml.py``: llama-cpp-python's libggml-base, the ``peers`` extra, one
thread) and, for NF4/FP4, bitsandbytes' CPU kernels (torch with 1 thread). Dequantize is
timed twice (GGUF types and NF4/FP4): into a fresh array (what the call returns; the OS
zeroes the new pages) and into ``out=`` (a preallocated array, the figure that compares
with the copy bandwidth). A missing peer is a skip with its reason.

Environment knobs (the defaults are the full run, a few minutes on 2 idle cores):

- ``REFQUANT_BENCH_SHAPE`` (default ``1024x4096``): the float32 weight's shape;
- ``REFQUANT_BENCH_TYPES`` (default: all 19 GGUF types): comma-separated GGUF types;
- ``REFQUANT_BENCH_ROUNDS`` (default 5): timed rounds per fast case (searches: 1);
- ``REFQUANT_BENCH_GRID_ROWS`` (default 32): the IQ1/IQ2/IQ3 grid searches quantize only
  this many rows of the weight (the reference and ggml need tens of seconds to minutes
  for 1024 rows); MB/s stays comparable, every implementation gets the same rows.

Each case's ``extra_info`` holds ``group="peers"``, ``qtype``, ``op``, ``impl``, ``MB/s`` (of
float32 weights), ``GB/s`` and ``fraction_of_copy``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import refquant.gguf as G
from refquant.formats import FORMATS
from tests.bench import _ggml
from tests.bench._bandwidth import record

SHAPE = tuple(int(v) for v in os.environ.get("REFQUANT_BENCH_SHAPE", "1024x4096").split("x"))
ALL_TYPES = tuple(sorted(FORMATS, key=lambda n: FORMATS[n].type_id))
QTYPES = tuple(t for t in os.environ.get("REFQUANT_BENCH_TYPES", ",".join(ALL_TYPES)).split(",") if t)
IMATRIX_TYPES = tuple(t for t in QTYPES if FORMATS[t].uses_imatrix)
ROUNDS = int(os.environ.get("REFQUANT_BENCH_ROUNDS", "5"))
GRID_ROWS = int(os.environ.get("REFQUANT_BENCH_GRID_ROWS", "32"))
GGUFPY_QUANTIZES = ("f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "tq1_0", "tq2_0", "mxfp4")
IMPLS = ("reference", "numba-1", "numba-2", "gguf-py", "ggml")
NO_GGML_API = ("q8_1", "q8_k")  # intermediate types: not quantizable through ggml_quantize_chunk


def _rounds(qtype: str, op: str, with_imatrix: bool) -> int:
    searched = with_imatrix or "_k" in qtype or qtype.startswith("iq")
    return 1 if op == "quantize" and searched else ROUNDS


def _time(benchmark, fn, rounds: int, compiled: bool = False):  # type: ignore[no-untyped-def]
    """Best of ``rounds``; one warm-up round first when there are several rounds or ``compiled``
    (Numba's first call compiles or loads its kernels: not the codec's time)."""
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1 if rounds > 1 or compiled else 0)


def _info(benchmark, qtype: str, op: str, impl: str, weights_bytes: int, other_bytes: int) -> None:
    record(benchmark, weights_bytes + other_bytes)
    benchmark.extra_info.update(group="peers", qtype=qtype, op=op, impl=impl,
                                **{"MB/s": round(weights_bytes / benchmark.stats.stats.min / 1e6, 1)})


def _numba(threads: int, op: str | None = None, qtype: str | None = None):  # type: ignore[no-untyped-def]
    """The Numba backend at ``threads`` threads; a skip if it lacks ``op`` for ``qtype``."""
    numba = pytest.importorskip("numba")
    import accel

    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"numba has {numba.config.NUMBA_NUM_THREADS} threads")
    numba.set_num_threads(threads)  # the benchmark, not a kernel, picks the thread count
    backend = accel.get_backend("numba")
    cap = backend.capabilities().get(op) if op else None
    if op and (cap is None or (cap.formats is not None and qtype not in cap.formats)):
        pytest.skip(f"the numba backend has no {op} for {qtype}")
    return backend


def _quantizer(impl: str, qtype: str, weight: np.ndarray, im: np.ndarray | None):  # type: ignore[no-untyped-def]
    """A no-argument call quantizing ``weight`` with ``impl``, or a skip."""
    fmt = FORMATS[qtype]
    if impl == "reference":
        return lambda: G.quantize(weight, qtype, im)
    if impl.startswith("numba"):
        backend = _numba(int(impl.split("-")[1]), "gguf_quantize", qtype)
        return lambda: backend.gguf_quantize(weight, qtype, im)
    if impl == "gguf-py":
        gq = pytest.importorskip("gguf.quants")
        if qtype not in GGUFPY_QUANTIZES or im is not None:
            pytest.skip(f"gguf-py has no {qtype} quantizer" + (" with an imatrix" if im is not None else ""))
        from gguf import GGMLQuantizationType

        return lambda: gq.quantize(weight, GGMLQuantizationType[qtype.upper()])
    ggml = _ggml.load()
    if ggml is None:
        pytest.skip(_ggml.REASON)
    if qtype in NO_GGML_API:
        pytest.skip(f"ggml_quantize_chunk does not quantize {qtype}")
    if im is None and ggml.requires_imatrix(fmt.type_id):
        pytest.skip(f"ggml requires an imatrix for {qtype}")
    out = np.empty((weight.shape[0], weight.shape[1] // fmt.block_size * fmt.type_size), np.uint8)
    ggml.lib.ggml_quantize_init(fmt.type_id)  # the IQ grids' tables, built once, outside the timing
    return lambda: ggml.quantize(weight, fmt.type_id, out, im)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("with_imatrix", [False, True], ids=["plain", "imatrix"])
@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize(benchmark, weight, imatrix, qtype, with_imatrix, impl):
    if with_imatrix and qtype not in IMATRIX_TYPES:
        pytest.skip(f"{qtype} has no imatrix rule")
    im = imatrix if with_imatrix else None
    if im is None and qtype.startswith("iq") and qtype not in ("iq4_nl", "iq4_xs"):
        pytest.skip(f"{qtype} needs an imatrix (ggml's rule)")
    if qtype.startswith(("iq1", "iq2", "iq3")):
        weight = weight[:GRID_ROWS]
    fn = _quantizer(impl, qtype, weight, im)
    q = _time(benchmark, fn, _rounds(qtype, "quantize", with_imatrix), compiled=impl.startswith("numba"))
    _info(benchmark, qtype, "quantize_imatrix" if with_imatrix else "quantize", impl, weight.nbytes, q.nbytes)


@pytest.fixture(scope="module")
def encoded(weight, imatrix):
    cache: dict[str, np.ndarray] = {}

    def get(qtype: str) -> np.ndarray:
        if qtype not in cache:
            im = imatrix if FORMATS[qtype].uses_imatrix and qtype.startswith("iq") else None
            if qtype.startswith(("iq1", "iq2", "iq3")):  # a slow search: GRID_ROWS rows, repeated
                rows = G.quantize(weight[:GRID_ROWS], qtype, im)
                cache[qtype] = np.tile(rows, (-(-SHAPE[0] // GRID_ROWS), 1))[:SHAPE[0]]
            elif qtype in (_numba(1).capabilities()["gguf_quantize"].formats or ()):
                cache[qtype] = _numba(1).gguf_quantize(weight, qtype, im)  # the reference's bytes, faster
            else:
                cache[qtype] = G.quantize(weight, qtype, im)
        return cache[qtype]

    return get


@pytest.mark.parametrize("into", ["fresh", "out"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize(benchmark, weight, encoded, qtype, impl, into):
    fmt = FORMATS[qtype]
    data = encoded(qtype)
    flat = data.reshape(-1)
    buf = np.empty(SHAPE, np.float32)
    if impl == "reference":
        fn = ((lambda: G.dequantize(data, qtype, SHAPE, out=buf)) if into == "out"  # noqa: E731
              else (lambda: G.dequantize(data, qtype, SHAPE)))
    elif impl.startswith("numba"):
        backend = _numba(int(impl.split("-")[1]), "gguf_dequantize", qtype)
        fn = ((lambda: backend.gguf_dequantize(data, qtype, SHAPE, out=buf)) if into == "out"  # noqa: E731
              else (lambda: backend.gguf_dequantize(data, qtype, SHAPE)))
    elif impl == "gguf-py":
        gq = pytest.importorskip("gguf.quants")
        if into == "out":
            pytest.skip("gguf-py has no out=")
        from gguf import GGMLQuantizationType

        try:
            gtype = GGMLQuantizationType[qtype.upper()]
        except KeyError:
            pytest.skip(f"gguf-py has no {qtype}")
        fn = lambda: gq.dequantize(data, gtype)  # noqa: E731
    else:
        ggml = _ggml.load()
        if ggml is None:
            pytest.skip(_ggml.REASON)
        if not ggml.traits(fmt.type_id).to_float:
            pytest.skip(f"ggml has no to_float for {qtype}")
        fn = ((lambda: ggml.dequantize(flat, fmt.type_id, buf)) if into == "out"  # noqa: E731
              else (lambda: ggml.dequantize(flat, fmt.type_id, np.empty(SHAPE, np.float32))))
    try:
        _time(benchmark, fn, ROUNDS)
    except NotImplementedError as exc:  # gguf-py: a type it lists but cannot decode
        pytest.skip(f"gguf-py: {exc}")
    _info(benchmark, qtype, "dequantize_out" if into == "out" else "dequantize", impl, weight.nbytes, data.nbytes)


@pytest.mark.parametrize("impl", ["reference", "numba-1", "numba-2", "bitsandbytes"])
@pytest.mark.parametrize("op", ["quantize", "dequantize", "dequantize_out"])
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_bnb_4bit(benchmark, weight, quant_type, op, impl):
    import refquant.bnb as B

    flat = weight.reshape(-1)
    packed, absmax = B.bnb_quantize_4bit(flat, quant_type, 64)
    buf = np.empty_like(flat)
    if impl == "reference":
        q = lambda: B.bnb_quantize_4bit(flat, quant_type, 64)  # noqa: E731
        d = lambda **out: B.bnb_dequantize_4bit(packed, absmax, quant_type, 64, flat.shape, **out)  # noqa: E731
    elif impl.startswith("numba"):
        backend = _numba(int(impl.split("-")[1]))
        q = lambda: backend.bnb_quantize_4bit(flat, quant_type, 64)  # noqa: E731
        d = lambda **out: backend.bnb_dequantize_4bit(packed, absmax, quant_type, 64, flat.shape, **out)  # noqa: E731
    else:
        torch = pytest.importorskip("torch")
        F = pytest.importorskip("bitsandbytes.functional")
        if op == "dequantize_out":
            pytest.skip("bitsandbytes registers no CPU kernel for dequantize_4bit's out= variant")
        torch.set_num_threads(1)
        t = torch.from_numpy(flat)
        qt, state = F.quantize_4bit(t, blocksize=64, quant_type=quant_type)
        q = lambda: F.quantize_4bit(t, blocksize=64, quant_type=quant_type)  # noqa: E731
        d = lambda: F.dequantize_4bit(qt, state, blocksize=64, quant_type=quant_type)  # noqa: E731
    fn = {"quantize": q, "dequantize": d, "dequantize_out": lambda: d(out=buf)}[op]
    _time(benchmark, fn, ROUNDS)
    _info(benchmark, quant_type, op, impl, weight.nbytes, packed.nbytes + absmax.nbytes)


def test_copy_bandwidth_fresh(benchmark, weight):
    """``x.copy()``: the copy into a fresh array, the fresh-output figures' baseline."""
    _time(benchmark, weight.copy, ROUNDS)
    _info(benchmark, "-", "copy_fresh", "numpy", weight.nbytes, weight.nbytes)


