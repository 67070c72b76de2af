"""The Numba backend as a Backend: it loads, declares only ops of OP_SPECS (honestly),
refuses what it does not implement, honours REFQUANT_NUMBA_THREADS, reuses its
compiled kernels across processes (``cache=True``), and its absence leaves the rest of
the package working (reported unavailable, never an import error).

Conformance of each op against the reference is ``pytest --pyargs conformance
--backend numba``; the checks here are about the backend object and its machinery,
plus a few direct value checks of paths the conformance strategies draw rarely
(large-k integer overflow, >6-D arrays, lanes of the fused matmul).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

numba = pytest.importorskip("numba")

import accel  # noqa: E402
import refquant  # noqa: E402
from accel.ops import OP_SPECS  # noqa: E402
from refquant.errors import UnsupportedError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: Spec areas this file does not hold the backend to: GGUF (accel/numba/gguf*.py, tested
#: with its own module).
NOT_COVERED_AREAS = ("gguf", "microscaling")  # microscaling: no Numba kernels yet


@pytest.fixture(scope="module")
def nb():
    return accel.get_backend("numba")


def _run(code: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter at the repository root."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ the backend object


def test_backend_loads(nb):
    assert nb.name == "numba" and nb.device == "cpu"
    assert isinstance(nb, accel.Backend)
    assert nb.threads == numba.get_num_threads() >= 1
    assert accel.available_backends()["numba"].loaded


def test_declared_ops_exist_in_op_specs(nb):
    caps = nb.capabilities()
    assert set(caps) <= set(OP_SPECS)
    for op, cap in caps.items():
        spec = OP_SPECS[op]
        if spec.formats is None:
            assert cap.formats is None, op
        else:
            assert cap.formats and cap.formats <= frozenset(spec.formats), op
        for key, allowed in cap.constraints.items():
            assert key.endswith("s") or key == "max_ndim", (op, key)
            assert allowed, (op, key)


def test_covers_every_op_of_its_areas(nb):
    """Every op of the reference outside NOT_COVERED_AREAS is claimed, with every format
    of its axis."""
    caps = nb.capabilities()
    for op, spec in OP_SPECS.items():
        if spec.area in NOT_COVERED_AREAS:
            continue
        assert op in caps, f"numba does not implement {op}"
        if spec.formats is not None:
            assert caps[op].formats == frozenset(spec.formats), op


def test_only_float_results_are_approximate(nb):
    """Bit-exactness is claimed for every op of these areas except the two float matmuls
    (Nmse) and the two searches whose LAPACK/BLAS sums fix no order (NoWorseThanRef)."""
    approximate = {op for op, cap in nb.capabilities().items()
                   if not cap.bit_exact and OP_SPECS[op].area not in NOT_COVERED_AREAS}
    assert approximate == {"llm_int8_matmul", "bnb_dequant_matmul_4bit", "gptq_quantize", "awq_quantize"}


def test_blocksize_constraints_match_bitsandbytes(nb):
    from refquant.formats.bnb import BLOCKSIZES_4BIT, BLOCKSIZES_8BIT

    caps = nb.capabilities()
    assert caps["bnb_quantize_4bit"].constraints["blocksizes"] == BLOCKSIZES_4BIT
    assert caps["bnb_quantize_blockwise"].constraints["blocksizes"] == BLOCKSIZES_8BIT


def test_undeclared_op_raises_unsupported(nb, monkeypatch):
    from accel.numba import backend as module

    monkeypatch.delitem(module._OPS, "pack")
    assert "pack" not in nb.capabilities()
    with pytest.raises(UnsupportedError, match="does not implement 'pack'"):
        nb.pack(np.zeros(4, np.uint8), 4)


def test_unknown_op_is_an_attribute_error(nb):
    with pytest.raises(AttributeError, match="no op 'frobnicate'"):
        nb.frobnicate


def test_more_dimensions_than_declared_raise_unsupported(nb):
    from refquant.mapping import choose_qparams

    assert nb.capabilities()["quantize_affine"].constraints["max_ndim"] == 6
    x = np.ones((1,) * 7, np.float32)
    params = choose_qparams(x)
    for call in (lambda: nb.quantize_affine(x, params), lambda: nb.choose_qparams(x),
                 lambda: nb.dequantize_affine(np.zeros(x.shape, np.int8), params)):
        with pytest.raises(UnsupportedError, match="up to 6 dimensions"):
            call()


def test_errors_match_the_reference(nb):
    """Bad parameters raise the reference's exception type and message."""
    ref = accel.get_backend("reference")
    x = np.ones(64, np.float32)
    bad_nan = x.copy()
    bad_nan[5] = np.nan
    cases = [
        ("bnb_quantize_4bit", (x, "nf5", 64)), ("bnb_quantize_4bit", (x, "nf4", 48)),
        ("bnb_quantize_4bit", (bad_nan, "nf4", 64)), ("bnb_quantize_blockwise", (bad_nan, 64)),
        ("pack", (np.array([0, 16]), 4)), ("pack", (np.array([[0, 1], [2, -1]]), 2)),
        ("pack_ternary", (np.array([0, 3], np.uint8),)), ("unpack", (np.zeros(3, np.uint8), 4, 4)),
        ("codebook_decode", (np.array([0, 16]), "nf4")), ("choose_qparams", (bad_nan,)),
        ("choose_qparams", (np.array([1.0, np.inf], np.float32),)),
        ("int8_vectorwise_quant", (bad_nan.reshape(8, 8), -1.0)),
        ("int8_matmul", (np.zeros((2, 3), np.int8), np.zeros((4, 2), np.int8))),
        ("bnb_dequant_matmul_4bit", (x.reshape(1, -1), np.zeros(32, np.uint8), np.ones(1, np.float32), "nf4", 64, (64,))),
    ]
    for op, args in cases:
        with pytest.raises(Exception) as expected:
            getattr(ref, op)(*args)
        with pytest.raises(type(expected.value)) as got:
            getattr(nb, op)(*args)
        assert str(got.value) == str(expected.value), op


# ------------------------------------------------------------- value checks of rare paths


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float4_e2m1fn"])
def test_encode_float64_rounds_once_like_the_reference(nb, fmt):
    """The float64 path (round to odd in float32, then the float32 kernel): every near-tie
    of the format and 2**16 float64 bit patterns from the whole range, both overflow modes."""
    from conformance.strategies import FLOAT64_SPECIALS, float64_tie_pool

    rng = np.random.default_rng(11)
    x = np.concatenate([np.array(float64_tie_pool(fmt) + FLOAT64_SPECIALS),
                        rng.integers(0, 2**64, 1 << 16, dtype=np.uint64).view(np.float64)])
    for saturate in (False, True):
        np.testing.assert_array_equal(nb.encode_float(x, fmt, saturate=saturate),
                                      refquant.encode_float(x, fmt, saturate=saturate))


def test_int8_matmul_large_k_takes_the_int64_path_and_refuses_overflow(nb):
    """k * 128 * 128 beyond int32: accumulate in int64; a result beyond int32 is refused."""
    k = 140_000
    a = np.full((1, k), -128, np.int8)
    b = np.full((k, 2), -128, np.int8)
    b[: k // 2, 1] = 127
    with pytest.raises(ValueError, match="does not fit int32"):
        nb.int8_matmul(a, b)                            # 140000 * 16384 > 2**31
    a[0, 1000:] = 0
    np.testing.assert_array_equal(nb.int8_matmul(a, b), [[1000 * 16384, 1000 * -128 * 127]])


def test_int8_matmul_tiles_and_uint8(nb, rng):
    """Shapes that leave partial tiles in both directions, uint8 x int8."""
    from accel.numba.matmul import TILE_M, TILE_N

    a = rng.integers(0, 256, (TILE_M + 3, 70)).astype(np.uint8)
    b = rng.integers(-128, 128, (70, TILE_N + 5)).astype(np.int8)
    np.testing.assert_array_equal(nb.int8_matmul(a, b), a.astype(np.int64) @ b.astype(np.int64))


def test_fused_dequant_matmul_rows_straddling_blocks(nb, rng):
    """in_features not a multiple of the block size (blocks run over the flattened
    weight) and not of the lane count; odd in_features (rows start mid-byte)."""
    from refquant.bnb import bnb_dequantize_4bit, bnb_quantize_4bit

    for shape in ((7, 101), (5, 64 + 1), (3, 200)):
        w = rng.standard_normal(shape).astype(np.float32)
        packed, absmax = bnb_quantize_4bit(w, "nf4", 32)
        x = rng.standard_normal((3, shape[1])).astype(np.float32)
        expect = x.astype(np.float64) @ bnb_dequantize_4bit(packed, absmax, "nf4", 32, shape).astype(np.float64).T
        got = nb.bnb_dequant_matmul_4bit(x, packed, absmax, "nf4", 32, shape)
        assert got.dtype == np.float32 and got.shape == (3, shape[0])
        np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)


def test_inputs_are_not_mutated_and_readonly_inputs_work(nb, rng):
    x = rng.standard_normal((16, 64)).astype(np.float32)
    x.setflags(write=False)
    before = x.copy()
    packed, absmax = nb.bnb_quantize_4bit(x, "nf4", 64)
    nb.bnb_quantize_blockwise(x, 64)
    nb.choose_qparams(x, granularity="per_group", group_size=16)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(nb.bnb_dequantize_4bit(packed, absmax, "nf4", 64, x.shape),
                                  accel.get_backend("reference").bnb_dequantize_4bit(packed, absmax, "nf4", 64, x.shape))


# ------------------------------------------------------------------ threads


def test_thread_count_from_environment(monkeypatch):
    from accel.numba._threads import configure_threads

    before = numba.get_num_threads()
    try:
        monkeypatch.setenv("REFQUANT_NUMBA_THREADS", "1")
        assert configure_threads() == 1 == numba.get_num_threads()
        for bad in ("two", "0", str(numba.config.NUMBA_NUM_THREADS + 1)):
            monkeypatch.setenv("REFQUANT_NUMBA_THREADS", bad)
            with pytest.raises(ValueError, match="REFQUANT_NUMBA_THREADS"):
                configure_threads()
        monkeypatch.delenv("REFQUANT_NUMBA_THREADS")
        assert configure_threads() == numba.get_num_threads()
    finally:
        numba.set_num_threads(before)


def test_results_do_not_depend_on_threads_or_chunks(nb, rng):
    """Dynamic chunks (accel.numba._jit.Kernel) and the thread count change the schedule only."""
    from accel.numba import _jit

    x = rng.standard_t(3, (37, 300)).astype(np.float32)
    calls = [lambda: nb.bnb_quantize_4bit(x, "fp4", 64), lambda: nb.choose_qparams(x, 4, False, granularity="per_tensor"),
             lambda: nb.pack(np.abs(x * 3).astype(np.uint8) % 8, 3), lambda: nb.codebook_encode(x, "iq4_nl"),
             lambda: nb.bnb_dequant_matmul_4bit(x[:3], *nb.bnb_quantize_4bit(x, "nf4", 32), "nf4", 32, x.shape)]
    before = numba.get_num_threads()
    try:
        expected = [c() for c in calls]
        numba.set_num_threads(1)
        for tasks in (1, 1000):
            _jit.TASKS_PER_THREAD, saved = tasks, _jit.TASKS_PER_THREAD
            try:
                for call, want in zip(calls, expected):
                    got = call()
                    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
                        g, w = (g.scale, w.scale) if hasattr(g, "scale") else (g, w)
                        np.testing.assert_array_equal(g, w)
            finally:
                _jit.TASKS_PER_THREAD = saved
    finally:
        numba.set_num_threads(before)


def test_thread_count_reaches_the_backend_through_the_registry():
    code = """
        import accel, json
        b = accel.get_backend("numba")
        print(json.dumps({"threads": b.threads}))
    """
    done = _run(code, {"REFQUANT_NUMBA_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"threads": 1}
    done = _run(code, {"REFQUANT_NUMBA_THREADS": "lots"})
    assert done.returncode != 0
    assert "BackendLoadError" in done.stderr and "REFQUANT_NUMBA_THREADS='lots'" in done.stderr


# ------------------------------------------------------------------ cache=True

_FIRST_CALL = """
    import json, time
    import numpy as np
    t0 = time.perf_counter()
    import accel
    from numba.core.dispatcher import Dispatcher
    import accel.numba.bnb, accel.numba.packing
    b = accel.get_backend("numba")
    x = np.linspace(-3, 3, 4096, dtype=np.float32)
    t1 = time.perf_counter()
    b.bnb_quantize_4bit(x, "nf4", 64)
    b.pack(np.arange(16, dtype=np.uint8).reshape(2, 8), 4)
    t2 = time.perf_counter()
    b.bnb_quantize_4bit(x, "nf4", 64)
    t3 = time.perf_counter()
    misses = hits = 0
    for mod in (accel.numba.bnb, accel.numba.packing):
        for obj in vars(mod).values():
            obj = getattr(obj, "dispatcher", obj)      # accel.numba._jit.Kernel wraps one
            if isinstance(obj, Dispatcher):
                misses += sum(obj.stats.cache_misses.values())
                hits += sum(obj.stats.cache_hits.values())
    print(json.dumps({"import": t1 - t0, "first_call": t2 - t1, "second_call": t3 - t2,
                      "misses": misses, "hits": hits}))
"""


@pytest.mark.slow
def test_compiled_kernels_are_reused_by_a_second_process(tmp_path):
    """cache=True: a cold cache compiles (misses); a second process loads every kernel
    from the cache (no misses) and its first call is much cheaper."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    cold = _run(_FIRST_CALL, env)
    assert cold.returncode == 0, cold.stderr
    cold_stats = json.loads(cold.stdout.splitlines()[-1])
    warm = _run(_FIRST_CALL, env)
    assert warm.returncode == 0, warm.stderr
    warm_stats = json.loads(warm.stdout.splitlines()[-1])
    assert cold_stats["misses"] > 0
    assert warm_stats["misses"] == 0 and warm_stats["hits"] >= 2
    assert any((tmp_path / "numba-cache").rglob("*.nbc"))
    assert warm_stats["first_call"] < cold_stats["first_call"] / 3, (cold_stats, warm_stats)
    print(f"\nfirst call (2 ops): cold {cold_stats['first_call']:.2f} s, cached {warm_stats['first_call']:.3f} s")


# ------------------------------------------------------------------ without numba

_NO_NUMBA = "import sys; sys.modules['numba'] = None  # any `import numba` now raises ImportError\n"


def test_without_numba_the_backend_is_reported_unavailable():
    done = _run(_NO_NUMBA + textwrap.dedent("""
        import json
        import accel, refquant
        import numpy as np
        infos = accel.available_backends()
        ref = accel.get_backend("reference")
        packed, absmax = ref.bnb_quantize_4bit(np.ones(64, np.float32), "nf4", 64)
        print(json.dumps({"numba": infos["numba"].loaded, "reason": infos["numba"].reason,
                          "reference": infos["reference"].loaded, "bytes": int(packed[0])}))
    """))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["numba"] is False and report["reference"] is True
    assert "numba" in report["reason"] and "Error" in report["reason"]
    assert report["bytes"] == 0xFF


@pytest.mark.slow
def test_without_numba_other_tests_run_and_these_skip():
    """A pytest run with numba blocked: a conformance module on the reference backend
    passes, the registry tests pass, and this file skips instead of erroring."""
    done = _run(_NO_NUMBA + textwrap.dedent("""
        import pytest
        raise SystemExit(pytest.main(["-q", "-p", "no:cacheprovider", "conformance/test_packing.py",
                                      "tests/test_accel_registry.py", "tests/test_numba_backend.py"]))
    """), timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" in done.stdout


# ------------------------------------------------------------------ benchmark report


def test_benchmark_report_pairs_backends_and_checks_targets(tmp_path):
    """tests/bench/report.py on a small pytest-benchmark JSON: speed-up from the paired
    reference row, the targets per kind, the reasons for misses, the JIT table."""
    from tests.bench import report

    def bench(case, op, kind, impl, seconds, fraction):
        return {"stats": {"min": seconds}, "extra_info": {
            "case": case, "op": op, "kind": kind, "impl": impl, "bytes": 100, "GB/s": fraction * 20,
            "copy_GB/s": 20.0, "fraction_of_copy": fraction, "threads": 2 if impl == "numba" else 1}}

    data = {"machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "python_version": "3.x"},
            "datetime": "now", "commit_info": {"id": "abc", "dirty": False}, "benchmarks": [
                bench("deq[a]", "bnb_dequantize_4bit", "dequantize", "numba", 0.001, 0.6),
                bench("deq[a]", "bnb_dequantize_4bit", "dequantize", "reference", 0.020, 0.03),
                bench("q[b]", "bnb_quantize_4bit", "quantize", "numba", 0.010, 0.2),
                bench("q[b]", "bnb_quantize_4bit", "quantize", "reference", 0.050, 0.01),
                {"stats": {"min": 1.0}, "extra_info": {"op": "first_call_jit", "impl": "numba", "kind": "jit",
                                                       "cold_first_calls_s": 40.0, "cached_first_calls_s": 1.5,
                                                       "cold_import_s": 0.4, "cached_import_s": 0.5,
                                                       "cold_per_op_s": {"q[b]": 3.0}}},
            ]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "benchmarks.md"
    assert report.main([str(path), "--out", str(out), "--plot", str(tmp_path / "b.png")]) == 0
    text = out.read_text()
    assert "| `deq[a]` | dequantize | 1.00 | 12.00 | 60% | 20.00 | 20.0x | yes |" in text
    assert "| `q[b]` | quantize | 10.00 | 4.00 | 20% | 50.00 | 5.0x | no: bandwidth < 25%, speed-up < 10x |" in text
    assert "1 of 2 calls meet every target" in text
    assert f"`bnb_quantize_4bit` (bandwidth < 25%, speed-up < 10x): {report.WHY['bnb_quantize_4bit']}" in text
    assert "| empty cache (compile) | 0.40 s | 40.0 s |" in text and "`q[b]` 3.0 s" in text
