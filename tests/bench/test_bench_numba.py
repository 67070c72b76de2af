"""Benchmarks of the Numba backend against the NumPy reference on one 4096 x 4096
float32 layer (and the codes, packed bytes and activations derived from it).

Run with::

    pytest tests/bench/test_bench_numba.py --benchmark-only --benchmark-json=bench-numba.json
    python tests/bench/report.py bench-numba.json          # -> docs/benchmarks.md

Every op runs on both backends with the same arguments; each result records GB/s
(bytes in + bytes out), the copy bandwidth measured in the same run and the fraction
of it, plus ``op``, ``impl``, ``kind`` (quantize / dequantize / matmul, which decides the
target) so ``report.py`` can pair them and compute the speed-up. Dequantize ops are timed
twice: into a fresh array (what the call returns) and into ``out=`` (a preallocated
array; case id suffixed `` out=``), on both backends. Kernels are compiled
(or loaded from the cache) before timing; ``test_first_call_jit`` measures what that
costs in a fresh process, with an empty and with a filled cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

pytest.importorskip("numba")

import accel  # noqa: E402
from refquant.granularity import PerChannel, PerGroup  # noqa: E402
from tests.bench._bandwidth import record  # noqa: E402

SHAPE = (4096, 4096)
ROOT = Path(__file__).resolve().parents[2]
ROUNDS = {"numba": 7, "reference": 3}


def _nbytes(value: Any) -> int:
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, np.ndarray):
        return value.nbytes
    return sum(_nbytes(getattr(value, f)) for f in ("scale", "zero_point") if hasattr(value, f))


class Data:
    """Inputs derived from one seeded float32 weight (4096 x 4096), built on first use."""

    def __init__(self, shape: tuple[int, int] = SHAPE) -> None:
        rng = np.random.default_rng(0)
        self.shape = shape
        self.groups = shape[1] // 128
        self.w = rng.standard_normal(shape).astype(np.float32)
        self.rng = rng
        self.ref = accel.get_backend("reference")
        self._cache: dict[str, Any] = {}

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


def _cases() -> list[tuple[str, str, str, Callable[[Data], tuple]]]:
    """(id, op, kind, args(data)) for every benchmarked call."""
    r = lambda d: d.ref  # noqa: E731
    pg = PerGroup(128)
    c: list[tuple[str, str, str, Callable[[Data], tuple]]] = []

    def add(case_id: str, op: str, kind: str, make: Callable[[Data], tuple]) -> None:
        c.append((case_id, op, kind, make))

    params_pg = lambda d: d.get("params_pg", lambda: r(d).choose_qparams(d.w, 4, False, granularity=pg))  # noqa: E731
    params_pc = lambda d: d.get("params_pc", lambda: r(d).choose_qparams(d.w, 8, True, granularity=PerChannel(0)))  # noqa: E731
    codes4 = lambda d: d.get("codes4", lambda: d.rng.integers(0, 16, d.shape, dtype=np.uint8))  # noqa: E731
    codes3 = lambda d: d.get("codes3", lambda: d.rng.integers(0, 8, d.shape, dtype=np.uint8))  # noqa: E731
    trits = lambda d: d.get("trits", lambda: d.rng.integers(0, 3, d.shape, dtype=np.uint8))  # noqa: E731
    nf4 = lambda d: d.get("nf4", lambda: r(d).bnb_quantize_4bit(d.w, "nf4", 64))  # noqa: E731
    dyn8 = lambda d: d.get("dyn8", lambda: r(d).bnb_quantize_blockwise(d.w, 4096))  # noqa: E731
    vw = lambda d: d.get("vw", lambda: r(d).int8_vectorwise_quant(d.w))  # noqa: E731
    i8 = lambda d: d.get("i8", lambda: d.rng.integers(-128, 128, d.shape, dtype=np.int8))  # noqa: E731
    gptq = lambda d: d.get("gptq", lambda: r(d).gptq_pack(  # noqa: E731
        codes4(d), d.rng.integers(0, 16, (d.shape[0], d.groups)), np.full((d.shape[0], d.groups), 0.01, np.float32),
        np.arange(d.shape[1], dtype=np.int32) // 128, 4, 2))
    awq = lambda d: d.get("awq", lambda: r(d).awq_pack(  # noqa: E731
        codes4(d), d.rng.integers(0, 16, (d.shape[0], d.groups)), np.full((d.shape[0], d.groups), 0.01, np.float32)))
    i8t = lambda d: d.get("i8t", lambda: np.ascontiguousarray(i8(d).T))  # noqa: E731  (k, n) operand
    x1 = lambda d: d.get("x1", lambda: d.rng.standard_normal((1, d.shape[1])).astype(np.float32))  # noqa: E731
    x16 = lambda d: d.get("x16", lambda: d.rng.standard_normal((16, d.shape[1])).astype(np.float32))  # noqa: E731

    # ---- quantize direction (target: >= 25% of copy bandwidth)
    add("choose_qparams[per_group128]", "choose_qparams", "quantize",
        lambda d: ((d.w, 4, False), {"granularity": pg}))
    add("quantize_affine[per_group128]", "quantize_affine", "quantize", lambda d: ((d.w, params_pg(d)), {}))
    add("quantize_affine[per_channel]", "quantize_affine", "quantize", lambda d: ((d.w, params_pc(d)), {}))
    add("encode_float[bfloat16]", "encode_float", "quantize", lambda d: ((d.w, "bfloat16"), {}))
    add("encode_float[float8_e4m3fn]", "encode_float", "quantize", lambda d: ((d.w, "float8_e4m3fn"), {}))
    add("codebook_encode[nf4]", "codebook_encode", "quantize", lambda d: ((d.w, "nf4"), {}))
    add("bnb_quantize_4bit[nf4]", "bnb_quantize_4bit", "quantize", lambda d: ((d.w, "nf4", 64), {}))
    add("bnb_quantize_4bit[fp4]", "bnb_quantize_4bit", "quantize", lambda d: ((d.w, "fp4", 64), {}))
    add("bnb_quantize_blockwise[dynamic8]", "bnb_quantize_blockwise", "quantize", lambda d: ((d.w, 4096), {}))
    add("bnb_double_quantize", "bnb_double_quantize", "quantize", lambda d: ((nf4(d)[1],), {}))
    add("int8_vectorwise_quant", "int8_vectorwise_quant", "quantize", lambda d: ((d.w,), {}))
    add("pack[4bit]", "pack", "quantize", lambda d: ((codes4(d), 4), {}))
    add("pack[3bit_gptq_int32]", "pack", "quantize", lambda d: ((codes3(d), 3, "low_first", "int32"), {}))
    add("pack_ternary", "pack_ternary", "quantize", lambda d: ((trits(d),), {}))
    add("gptq_pack[v2_4bit]", "gptq_pack", "quantize", lambda d: ((codes4(d), d.rng.integers(0, 16, (d.shape[0], d.groups)),
                                                                  np.full((d.shape[0], d.groups), 0.01, np.float32),
                                                                  np.arange(d.shape[1], dtype=np.int32) // 128, 4, 2), {}))
    add("awq_pack", "awq_pack", "quantize", lambda d: ((codes4(d), d.rng.integers(0, 16, (d.shape[0], d.groups)),
                                                       np.full((d.shape[0], d.groups), 0.01, np.float32)), {}))
    # ---- dequantize direction (target: >= 50% of copy bandwidth)
    add("dequantize_affine[per_group128]", "dequantize_affine", "dequantize",
        lambda d: ((d.get("q_pg", lambda: r(d).quantize_affine(d.w, params_pg(d))), params_pg(d)), {}))
    add("decode_float[bfloat16]", "decode_float", "dequantize",
        lambda d: ((d.get("bf16", lambda: r(d).encode_float(d.w, "bfloat16")), "bfloat16"), {}))
    add("decode_float[float8_e4m3fn]", "decode_float", "dequantize",
        lambda d: ((d.get("e4m3", lambda: r(d).encode_float(d.w, "float8_e4m3fn")), "float8_e4m3fn"), {}))
    add("codebook_decode[nf4]", "codebook_decode", "dequantize", lambda d: ((codes4(d), "nf4"), {}))
    add("bnb_dequantize_4bit[nf4]", "bnb_dequantize_4bit", "dequantize",
        lambda d: ((*nf4(d), "nf4", 64, d.shape), {}))
    add("bnb_dequantize_blockwise[dynamic8]", "bnb_dequantize_blockwise", "dequantize",
        lambda d: ((*dyn8(d), 4096, d.shape), {}))
    add("int8_vectorwise_dequant", "int8_vectorwise_dequant", "dequantize", lambda d: ((vw(d)[0], vw(d)[1]), {}))
    add("unpack[4bit]", "unpack", "dequantize",
        lambda d: ((d.get("p4", lambda: r(d).pack(codes4(d), 4)), 4, d.shape[1]), {}))
    add("unpack[3bit_gptq_int32]", "unpack", "dequantize",
        lambda d: ((d.get("p3", lambda: r(d).pack(codes3(d), 3, "low_first", "int32")), 3, d.shape[1],
                    "low_first", "int32"), {}))
    add("unpack_ternary", "unpack_ternary", "dequantize",
        lambda d: ((d.get("pt", lambda: r(d).pack_ternary(trits(d))), d.shape[1]), {}))
    add("gptq_dequantize[v2_4bit]", "gptq_dequantize", "dequantize", lambda d: ((*gptq(d), 4, 2), {}))
    add("awq_dequantize", "awq_dequantize", "dequantize", lambda d: ((*awq(d), 128), {}))
    add("dequantize_int32", "dequantize_int32", "dequantize",
        lambda d: ((d.get("acc", lambda: d.rng.integers(-2**20, 2**20, d.shape).astype(np.int32)),
                    np.float32(0.01), d.get("sb", lambda: np.full(d.shape[1], 0.02, np.float32))), {}))
    # ---- matmuls (no bandwidth target; >= 10x the reference)
    add("int8_matmul[m=1]", "int8_matmul", "matmul", lambda d: ((i8(d)[:1].copy(), i8t(d)), {}))
    add("int8_matmul[m=64]", "int8_matmul", "matmul", lambda d: ((i8(d)[:64].copy(), i8t(d)), {}))
    add("int8_matmul_zp[m=1]", "int8_matmul_zp", "matmul", lambda d: ((i8(d)[:1].copy(), i8t(d), 3, -5), {}))
    add("llm_int8_matmul[16 tokens]", "llm_int8_matmul", "matmul", lambda d: ((x16(d), d.w, 6.0), {}))
    add("bnb_dequant_matmul_4bit[nf4, 1 token]", "bnb_dequant_matmul_4bit", "matmul",
        lambda d: ((x1(d), *nf4(d), "nf4", 64, d.shape), {}))
    add("bnb_dequant_matmul_4bit[nf4, 16 tokens]", "bnb_dequant_matmul_4bit", "matmul",
        lambda d: ((x16(d), *nf4(d), "nf4", 64, d.shape), {}))
    return c


CASES = _cases()
#: (case, "fresh" | "out"): dequantize ops also write into ``out=``
TIMED = [(c, into) for c in CASES for into in (("fresh", "out") if c[2] == "dequantize" else ("fresh",))]


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.mark.parametrize("impl", ["numba", "reference"])
@pytest.mark.parametrize("case, into", TIMED, ids=[f"{c[0]}-{into}" for c, into in TIMED])
def test_op(benchmark, data, impl, case, into):
    case_id, op, kind, make = case
    backend = accel.get_backend(impl)
    args, kwargs = make(data)
    fn = getattr(backend, op)
    out = fn(*args, **kwargs)                   # compile (or load from the cache) outside the timing
    if into == "out":
        kwargs = {**kwargs, "out": np.empty_like(out)}
        case_id += " out="
    benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=ROUNDS[impl], iterations=1, warmup_rounds=0)
    moved = sum(_nbytes(a) for a in args) + _nbytes(out)
    record(benchmark, moved)
    benchmark.extra_info.update({"op": op, "case": case_id, "impl": impl, "kind": kind, "bytes": moved,
                                 "threads": getattr(backend, "threads", 1)})


def test_copy_into_fresh_array(benchmark, data):
    """``x.copy()``: the copy bandwidth when the destination is a new array, as every op's
    output is (the page faults of a fresh 64 MiB allocation are part of every op's time)."""
    benchmark.pedantic(data.w.copy, rounds=7, iterations=1)
    info = record(benchmark, 2 * data.w.nbytes)
    benchmark.extra_info.update({"op": "fresh_copy", "impl": "numpy", "kind": "baseline", "fresh_copy_GB/s": info["GB/s"]})


_FIRST_CALLS = """
    import json, time
    t0 = time.perf_counter()
    import numpy as np
    import accel
    nb = accel.get_backend("numba")
    t1 = time.perf_counter()
    from tests.bench.test_bench_numba import CASES, Data
    d = Data((64, 256))                         # small inputs: the cost is compilation
    per_op = {}
    t2 = time.perf_counter()
    for case_id, op, kind, make in CASES:
        args, kwargs = make(d)
        s = time.perf_counter()
        getattr(nb, op)(*args, **kwargs)
        per_op[case_id] = time.perf_counter() - s
    t3 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "first_calls_s": t3 - t2, "per_op_s": per_op}))
"""


def _first_calls(cache_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_FIRST_CALLS)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_first_call_jit(benchmark, tmp_path):
    """First call of every benchmarked op in a fresh process: with an empty Numba cache
    (compiles everything) and again with the cache it left (cache=True loads it)."""
    cold = _first_calls(tmp_path / "cache")
    warm = benchmark.pedantic(_first_calls, args=(tmp_path / "cache",), rounds=1, iterations=1)
    benchmark.extra_info.update({
        "op": "first_call_jit", "impl": "numba", "kind": "jit",
        "cold_first_calls_s": round(cold["first_calls_s"], 3), "cached_first_calls_s": round(warm["first_calls_s"], 3),
        "cold_import_s": round(cold["import_s"], 3), "cached_import_s": round(warm["import_s"], 3),
        "cold_per_op_s": {k: round(v, 3) for k, v in cold["per_op_s"].items()},
        "cached_per_op_s": {k: round(v, 4) for k, v in warm["per_op_s"].items()},
    })
