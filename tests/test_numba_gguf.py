"""Numba GGUF kernels (accel/numba/gguf*.py) against ggml's golden bytes and the reference.

The backend claims bit-exactness for gguf_quantize / gguf_dequantize on every type, so
every comparison here is byte for byte (float32 outputs bit for bit): golden vectors
written by ggml (tests/golden/gguf/), and randomized rows of every adversarial kind
(normal, heavy-tailed, all-zero of both signs, constant, single outlier, ~1e-11, near
the fp16 maximum, integer/half-integer ties, mixed magnitudes) with no imatrix, a random
one, one with zero columns and an all-zero one, compared with
:mod:`refquant.gguf`. Shapes exercise the kernels' grouping: partial 16-lane groups,
a lone K-quant super-block in a two-super-block group, rows spanning a group.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

import accel  # noqa: E402
import refquant.gguf as G  # noqa: E402

N = accel.get_backend("numba")  # the kernels behind the dispatcher (arguments prepared by refquant)

GOLDEN = Path(__file__).parent / "golden" / "gguf"
# every type the reference quantizes, except those the Numba backend has no kernel for yet
NO_KERNEL: tuple[str, ...] = ()
QTYPES = tuple(t for t in G.qtypes() if t not in NO_KERNEL)
# the grid types: their reference searches are slow, so they are compared on fewer rows
GRID = ("iq3_xxs", "iq3_s", "iq2_xxs", "iq2_xs", "iq2_s", "iq1_s", "iq1_m")
SEARCHED = ("q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs")
KINDS = ("normal", "heavy", "zero", "negzero", "const", "outlier", "tiny", "fp16max", "ties", "mixed")


def _rows(rng: np.random.Generator, kind: str, rows: int, n: int) -> np.ndarray:
    if kind == "normal":
        x = rng.standard_normal((rows, n))
    elif kind == "heavy":
        x = rng.standard_t(1.5, (rows, n))
    elif kind == "zero":
        x = np.zeros((rows, n))
    elif kind == "negzero":
        x = -np.zeros((rows, n))
    elif kind == "const":
        x = np.full((rows, n), rng.choice([1.0, -2.5, 0.1, 65504.0]))
    elif kind == "outlier":
        x = rng.standard_normal((rows, n))
        x[:, rng.integers(0, n)] = rng.choice([100.0, -1e4, 6e4])
    elif kind == "tiny":
        x = rng.standard_normal((rows, n)) * 1e-11
    elif kind == "fp16max":
        x = rng.uniform(60000.0, 65504.0, (rows, n)) * rng.choice([-1.0, 1.0], (rows, n))
    elif kind == "ties":
        x = rng.integers(-16, 16, (rows, n)) + rng.choice([0.0, 0.5], (rows, n))
    else:  # mixed: 32-blocks of very different scale, a zero and a constant block
        scale = rng.choice([1e-6, 1e-3, 1.0, 1e3, 1e4], (rows, n // 32, 1))
        x = (rng.standard_normal((rows, n // 32, 32)) * scale).reshape(rows, n)
        x[:, :32] = 0.0
        x[:, 32:64] = 3.0
    return x.astype(np.float32)


def _imatrices(rng: np.random.Generator, n: int) -> dict[str, np.ndarray | None]:
    random = (rng.gamma(1.0, 1.0, n) + 1e-3).astype(np.float32)
    zeros = random.copy()
    zeros[rng.random(n) < 0.3] = 0.0
    zeros[:min(n, 256)] = 0.0
    return {"none": None, "random": random, "zeros": zeros, "all_zero": np.zeros(n, np.float32)}


def _assert_same_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, f"{what}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
    if got.dtype == np.float32:
        got, want = got.view(np.uint32), want.view(np.uint32)
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{what}: {len(bad)} elements differ, first at {tuple(bad[0])}"


# --- golden vectors written by ggml ---------------------------------------------------


def _golden_cases():
    for path in sorted(GOLDEN.glob("*.npz")):
        if path.name == "kquants_adversarial.npz" or path.stem not in QTYPES:
            continue
        with np.load(path) as z:
            for i, name in enumerate(z["imatrix_names"]):
                if f"bytes_{name}" in z:
                    yield pytest.param(path.name, i, str(name), id=f"{path.stem}-{name}")


@pytest.mark.parametrize("fname,index,name", list(_golden_cases()))
def test_golden_bytes_and_values(fname, index, name):
    with np.load(GOLDEN / fname) as z:
        qtype, x = str(z["qtype"]), z["x"]
        imatrix = None if name == "none" else z["imatrix"][index]
        expected = z[f"bytes_{name}"]
        _assert_same_bits(N.gguf_quantize(x, qtype, imatrix), expected, f"{qtype} quantize ({name})")
        if f"y_{name}" in z:
            _assert_same_bits(N.gguf_dequantize(expected, qtype, x.shape), z[f"y_{name}"], f"{qtype} dequantize")


def test_golden_kquant_adversarial():
    with np.load(GOLDEN / "kquants_adversarial.npz") as z:
        x = z["x"]
        names = [str(v) for v in z["imatrix_names"]]
        checked = 0
        for key in z.files:
            if not key.startswith("bytes_"):
                continue
            stem = key[len("bytes_"):]
            name = next(nm for nm in names if stem.endswith("_" + nm))
            qtype = stem[:-len(name) - 1]
            imatrix = None if name == "none" else z["imatrix"][names.index(name)]
            _assert_same_bits(N.gguf_quantize(x, qtype, imatrix), z[key], f"{qtype} ({name})")
            checked += 1
    assert checked >= 26


# --- randomized against the reference ----------------------------------------------------


@pytest.mark.parametrize("qtype", QTYPES)
def test_matches_reference_every_kind(qtype):
    rng = np.random.default_rng(sum(map(ord, qtype)))
    n = 512
    needs_im = getattr(G.get_format(qtype), "requires_imatrix", False)
    for kind in KINDS:
        x = _rows(rng, kind, 1 if qtype in GRID else 3, n)
        for im_name, imatrix in _imatrices(rng, n).items():
            if needs_im and imatrix is None:
                continue
            want = G.quantize(x, qtype, imatrix)
            _assert_same_bits(N.gguf_quantize(x, qtype, imatrix), want, f"{qtype} {kind} imatrix={im_name}")
            _assert_same_bits(N.gguf_dequantize(want, qtype, x.shape), G.dequantize(want, qtype, x.shape),
                              f"{qtype} {kind} dequantize")


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize_arbitrary_bytes(qtype):
    """Every bit pattern is a block: NaN/inf scales and unused code points decode as ggml does."""
    rng = np.random.default_rng(7)
    shape = (5, 1024)
    data = rng.integers(0, 256, (shape[0], G.row_bytes(qtype, shape[1])), dtype=np.uint8)
    got, want = N.gguf_dequantize(data, qtype, shape), G.dequantize(data, qtype, shape)
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), f"{qtype}: {int((~same).sum())} values differ"


@pytest.mark.parametrize("qtype", SEARCHED)
@pytest.mark.parametrize("blocks", [(16,), (5, 9), (3, 1), (1, 3), (2, 2, 1)], ids=str)
def test_grouping_shapes(qtype, blocks):
    """Shapes in blocks: partial 16-lane groups (9, 45 blocks), odd super-block counts (a
    lone super-block in a two-super-block group), groups spanning rows, 1-D and 3-D."""
    shape = blocks[:-1] + (blocks[-1] * G.get_format(qtype).block_size,)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32) * rng.choice([1e-3, 1.0, 100.0], shape).astype(np.float32)
    for imatrix in (None, rng.gamma(1.0, 1.0, shape[-1]).astype(np.float32)):
        _assert_same_bits(N.gguf_quantize(x, qtype, imatrix), G.quantize(x, qtype, imatrix), f"{qtype} {shape}")


def test_thread_count_does_not_change_bytes():
    import numba

    rng = np.random.default_rng(11)
    x = rng.standard_t(2.0, (8, 1024)).astype(np.float32)
    imatrix = rng.gamma(1.0, 1.0, 1024).astype(np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = [N.gguf_quantize(x, t, imatrix) for t in ("q4_k", "iq4_xs", "q5_1")]
    finally:
        numba.set_num_threads(before)
    for t, want in zip(("q4_k", "iq4_xs", "q5_1"), single):
        np.testing.assert_array_equal(N.gguf_quantize(x, t, imatrix), want)


def test_float_inputs_and_no_mutation():
    rng = np.random.default_rng(5)
    x64 = rng.standard_normal((2, 256))
    x16 = x64.astype(np.float16)
    imatrix = rng.gamma(1.0, 1.0, 256)
    x_before, im_before = x64.copy(), imatrix.copy()
    for x in (x64, x16):
        _assert_same_bits(N.gguf_quantize(x, "q4_k", imatrix), G.quantize(x, "q4_k", imatrix), f"{x.dtype} input")
    np.testing.assert_array_equal(x64, x_before)
    np.testing.assert_array_equal(imatrix, im_before)
    data = G.quantize(x64, "q6_k")
    data_before = data.copy()
    N.gguf_dequantize(data, "q6_k", x64.shape)
    np.testing.assert_array_equal(data, data_before)
    assert N.gguf_dequantize(data.tobytes(), "Q6_K", x64.shape).shape == x64.shape  # bytes, any case


def test_empty_inputs():
    x = np.zeros((0, 256), np.float32)
    for qtype in ("q4_0", "q4_k", "f16"):
        assert N.gguf_quantize(x, qtype).shape == G.quantize(x, qtype).shape
        assert N.gguf_dequantize(np.zeros(0, np.uint8), qtype, (0, 256)).shape == (0, 256)


@pytest.mark.parametrize("qtype", ["f16", "bf16"])
def test_float_types_encode_nonfinite(qtype):
    x = np.array([[np.nan, -np.nan, np.inf, -np.inf, 65519.0, 65520.0, 1e-8, -0.0]], np.float32)
    _assert_same_bits(N.gguf_quantize(x, qtype), G.quantize(x, qtype), qtype)


# --- errors: the reference's checks and messages -------------------------------------------


def _same_error(fn_numba, fn_ref, exc):  # type: ignore[no-untyped-def]
    with pytest.raises(exc) as got:
        fn_numba()
    with pytest.raises(exc) as want:
        fn_ref()
    assert str(got.value) == str(want.value)
    return str(got.value)


def test_errors_match_reference():
    x = np.ones((2, 100), np.float32)
    msg = _same_error(lambda: N.gguf_quantize(x, "q4_k"), lambda: G.quantize(x, "q4_k"), ValueError)
    assert "256" in msg
    _same_error(lambda: N.gguf_quantize(np.ones(32), "q9_9"), lambda: G.quantize(np.ones(32), "q9_9"), ValueError)
    bad = np.ones((1, 32), np.float32)
    bad[0, 3] = np.nan
    _same_error(lambda: N.gguf_quantize(bad, "q8_0"), lambda: G.quantize(bad, "q8_0"), ValueError)
    im = -np.ones(32, np.float32)
    _same_error(lambda: N.gguf_quantize(np.ones(32), "q4_0", im), lambda: G.quantize(np.ones(32), "q4_0", im),
                ValueError)
    _same_error(lambda: N.gguf_quantize(np.ones(32), "q4_0", np.ones(31)),
                lambda: G.quantize(np.ones(32), "q4_0", np.ones(31)), ValueError)
    data = np.zeros(17, np.uint8)
    _same_error(lambda: N.gguf_dequantize(data, "q4_0", (32,)), lambda: G.dequantize(data, "q4_0", (32,)), ValueError)
    _same_error(lambda: N.gguf_dequantize(data.astype(np.int8), "q4_0", (32,)),
                lambda: G.dequantize(data.astype(np.int8), "q4_0", (32,)), TypeError)
    _same_error(lambda: N.gguf_dequantize(np.zeros(18, np.uint8), "q4_0", (33,)),
                lambda: G.dequantize(np.zeros(18, np.uint8), "q4_0", (33,)), ValueError)


def test_backend_declares_every_type_bit_exact():
    import accel

    backend = accel.get_backend("numba")
    caps = backend.capabilities()
    for op in ("gguf_quantize", "gguf_dequantize"):
        assert caps[op].bit_exact
        assert caps[op].formats == frozenset(QTYPES)
    assert set(G.qtypes()) - set(QTYPES) == set(NO_KERNEL)
    np.testing.assert_array_equal(backend.gguf_quantize(np.ones((1, 32), np.float32), "q4_0"),
                                  G.quantize(np.ones((1, 32), np.float32), "q4_0"))


@pytest.mark.slow
@pytest.mark.parametrize("qtype", [t for t in QTYPES if t not in GRID])
def test_large_randomized(qtype):
    """A bigger sweep: 10 kinds x 8 rows x 2048 columns x 4 importance vectors."""
    rng = np.random.default_rng(1000 + sum(map(ord, qtype)))
    n = 2048
    x = np.concatenate([_rows(rng, kind, 8, n) for kind in KINDS])
    for im_name, imatrix in _imatrices(rng, n).items():
        want = G.quantize(x, qtype, imatrix)
        _assert_same_bits(N.gguf_quantize(x, qtype, imatrix), want, f"{qtype} imatrix={im_name}")
        _assert_same_bits(N.gguf_dequantize(want, qtype, x.shape), G.dequantize(want, qtype, x.shape), qtype)


# --- fused dequant-matmul (every type) -------------------------------------------------------


@pytest.mark.parametrize("qtype", ["q4_0", "q4_k"])
@pytest.mark.parametrize("out_features,tokens", [(1, (1,)), (7, (3,)), (33, (2, 5)), (64, (16,))], ids=str)
def test_dequant_matmul_matches_emulated_reference(qtype, out_features, tokens):
    from refquant.formats.gguf_matmul import dequant_matmul

    rng = np.random.default_rng(out_features)
    k = 768
    w = _rows(rng, "mixed", out_features, k) + rng.standard_normal((out_features, k)).astype(np.float32)
    w[0] = 0.0  # an all-zero output row gives exactly 0
    data = G.quantize(w, qtype)
    for dtype in (np.float32, np.float16):
        x = rng.standard_normal(tokens + (k,)).astype(dtype)
        got = N.gguf_dequant_matmul(x, data, qtype, w.shape)
        want = dequant_matmul(x, data, qtype, w.shape)
        assert got.shape == want.shape == tokens + (out_features,) and got.dtype == np.float32
        assert np.all(got[..., 0] == 0.0)
        if out_features > 1:
            nmse = float(np.sum((got.astype(np.float64) - want) ** 2) / np.sum(want.astype(np.float64) ** 2))
            assert nmse < 1e-10, nmse


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequant_matmul_every_type(qtype):
    """Each type's row decoder (one per type, :mod:`accel.numba.gguf_matmul`) in the shared
    driver: a partial tile of rows, two blocks or more per row (F16/BF16 also a row that is
    not a whole number of 16-float lanes), float32 and float16 activations."""
    from refquant.formats.gguf_matmul import dequant_matmul

    fmt = G.get_format(qtype)
    rng = np.random.default_rng(sum(map(ord, qtype)))
    for k in (512,) if fmt.block_size > 1 else (37, 512):
        w = _rows(rng, "mixed", 19, 512)[:, :k] + rng.standard_normal((19, k)).astype(np.float32)
        w[3] = 0.0
        data = N.gguf_quantize(w, qtype, np.ones(k, np.float32) if fmt.requires_imatrix else None)
        for dtype in (np.float32, np.float16):
            x = rng.standard_normal((3, k)).astype(dtype)
            got = N.gguf_dequant_matmul(x, data, qtype, w.shape)
            want = dequant_matmul(x, data, qtype, w.shape)
            assert got.shape == want.shape == (3, 19) and got.dtype == np.float32
            assert np.all(got[:, 3] == 0.0)
            nmse = float(np.sum((got.astype(np.float64) - want) ** 2) / np.sum(want.astype(np.float64) ** 2))
            assert nmse < 1e-10, (qtype, k, dtype, nmse)


def test_dequant_matmul_declared_for_every_decoded_type():
    caps = N.capabilities()["gguf_dequant_matmul"]
    assert caps.formats == caps.formats & N.capabilities()["gguf_dequantize"].formats == frozenset(QTYPES)
    assert not caps.bit_exact


def test_dequant_matmul_errors():
    from refquant.errors import UnsupportedError
    from refquant.formats import FORMATS
    from refquant.formats.gguf_matmul import dequant_matmul

    class UnregisteredQ4K(FORMATS["q4_k"]):  # noqa: N801 - a format class, named as formats are
        pass

    data = G.quantize(np.ones((2, 256), np.float32), "q4_k")
    with pytest.raises(UnsupportedError, match="unregistered"):
        N.gguf_dequant_matmul(np.ones((1, 256), np.float32), data, UnregisteredQ4K, (2, 256))
    for x, shape, exc in [(np.ones((1, 255), np.float32), (2, 256), ValueError),     # in_features mismatch
                          (np.ones((1, 256), np.float32), (2, 2, 64), ValueError),   # not 2-D
                          (np.full((1, 256), np.nan, np.float32), (2, 256), ValueError),
                          (np.ones((1, 256), np.int32), (2, 256), TypeError)]:
        _same_error(lambda: N.gguf_dequant_matmul(x, data, "q4_k", shape), lambda: dequant_matmul(x, data, "q4_k", shape),
                    exc)


_FMA = re.compile(r"\bv?f(n)?m(add|sub)[0-9]")  # x86-64 FMA3 mnemonics: vfmadd231ps, vfnmsub132sd, ...


def _gguf_dispatchers() -> list:
    """Every Numba dispatcher the GGUF modules of accel.numba hold (module globals and
    the tables of compiled kernels one level down, as the per-type factories store them)."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import accel.numba as package
    from accel.numba._jit import Kernel

    found: dict[int, CPUDispatcher] = {}

    def visit(value: object, depth: int) -> None:
        value = value.dispatcher if isinstance(value, Kernel) else value
        if isinstance(value, CPUDispatcher):
            found[id(value)] = value
        elif depth and isinstance(value, (list, tuple, dict)):
            for item in value.values() if isinstance(value, dict) else value:
                visit(item, depth - 1)

    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("gguf"):
            for value in vars(importlib.import_module(f"accel.numba.{info.name}")).values():
                visit(value, 2)
    return list(found.values())


def _object_code(dispatcher, signature, library) -> bytes | None:
    """The machine code of one compiled overload: kept by the library when it was compiled
    in this process, else read back from Numba's on-disk cache (a library loaded from the
    cache hands its object code to the JIT and keeps no copy to inspect)."""
    if getattr(library, "_compiled_object", None):
        return library._compiled_object
    cache = dispatcher._cache
    payload = cache._cache_file.load(cache._index_key(signature, dispatcher.targetctx.codegen()))
    if payload is None:
        return None
    _name, kind, data = payload[0]  # CompileResult._reduce(): libdata first
    return data[0] if kind == "object" else None


@pytest.mark.slow
def test_kernels_contain_no_fma(tmp_path):
    """fastmath=False must keep every multiply and add separately rounded (ggml's x86-64
    build has no FMA): no fused multiply-add instruction in the machine code of any
    compiled GGUF kernel. Every type is quantized (with and without an imatrix) and
    dequantized, and every fused matmul type run, so that each kernel is compiled or loaded
    from the cache; each overload's object code is then disassembled with objdump."""
    import shutil
    import subprocess

    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (GNU binutils) is not installed: the machine code cannot be disassembled")
    from accel.numba import gguf_matmul as M

    assert _FMA.findall("vfmadd231ps %zmm1,%zmm2,%zmm3") and not _FMA.findall("vmulps %zmm1,%zmm2,%zmm3")
    x = np.random.default_rng(0).standard_normal((2, 512)).astype(np.float32)
    for t in sorted(N.capabilities()["gguf_quantize"].formats):
        needs_im = getattr(G.get_format(t), "requires_imatrix", False)
        for im in ((np.ones(512, np.float32),) if needs_im else (None, np.ones(512, np.float32))):
            N.gguf_dequantize(N.gguf_quantize(x, t, im), t, x.shape)
    for t in sorted(M.MATMUL_QTYPES):
        im = np.ones(512, np.float32) if G.get_format(t).requires_imatrix else None
        N.gguf_dequant_matmul(x, N.gguf_quantize(x, t, im), t, x.shape)

    checked, fused, unreadable = 0, {}, []
    for dispatcher in _gguf_dispatchers():
        for signature, cres in dispatcher.overloads.items():
            code = _object_code(dispatcher, signature, cres.library)
            name = f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}{signature}"
            if code is None:
                unreadable.append(name)
                continue
            obj = tmp_path / "kernel.o"
            obj.write_bytes(code)
            asm = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(obj)], capture_output=True,
                                 text=True, check=True).stdout
            assert "\tret" in asm, name  # really disassembled
            checked += 1
            if _FMA.findall(asm):
                fused[name] = len(_FMA.findall(asm))
    assert not unreadable, f"no machine code found for {unreadable}"
    assert not fused, f"FMA instructions in {fused}"
    # a floor against a walk that finds nothing (types share kernels: the IQ families, F16/BF16)
    assert checked >= len(N.capabilities()["gguf_quantize"].formats), checked
