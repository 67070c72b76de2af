"""refquant.QuantizedTensor: one core (format, shape, dequantize, bits_per_weight, nbytes,
parts, save/load, short repr) on every family; names case-insensitive; int8_linear;
``backend=`` giving the reference's bytes."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import refquant
import refquant.layouts.awq
import refquant.layouts.gptq
from refquant import algorithms as A
from refquant import bnb, gguf, metrics
from refquant.formats import mx
from refquant.layouts.packed import AWQPacked, GPTQPacked
from refquant.quantized_tensor import HEADER_KEY, QuantizedTensor, load_quantized

F32 = np.float32
_RNG = np.random.default_rng(18)
W = _RNG.standard_normal((16, 256)).astype(F32)
X = _RNG.standard_normal((32, 256)).astype(F32)
H = 2 * X.T.astype(np.float64) @ X / len(X)

# family -> (make, expected dequantization (None: the result's own .dequantized))
FAMILIES = {
    "bnb-nf4": lambda: bnb.quantize_4bit(W, "nf4", 64),
    "bnb-fp4-double": lambda: bnb.quantize_4bit(W, "fp4", 128, double_quant=True),
    "bnb-dynamic8": lambda: bnb.quantize_blockwise(W, 256),
    "gguf-q4_k": lambda: gguf.quantize_tensor(W, "q4_k", name="blk.0.w"),
    "gguf-q8_0-1d": lambda: gguf.quantize_tensor(W[0], "q8_0"),
    "rtn": lambda: A.rtn(W, 4, 64),
    "gptq-act-order": lambda: A.gptq(W, H, 4, 64, act_order=True),
    "awq": lambda: A.awq(W, X, 4, 64, n_grid=4),
    "spqr": lambda: A.spqr(W, H, 3, 16),
    "mixed": lambda: A.mixed(W, X, 4, 64),
    "gptq-layout-v2": lambda: A.gptq(W, H, 4, 64, act_order=True).to_layout("gptq", version=2),
    "awq-layout": lambda: A.awq(W, X, 4, 64, n_grid=4).to_layout("awq"),
    "bitnet_b1": lambda: A.bitnet_b1(W),
    "bitnet_b158": lambda: A.bitnet_b158(W),
    "activation": lambda: A.activation_quant_b158(X),
}


@pytest.fixture(scope="module")
def made() -> dict[str, QuantizedTensor]:
    return {k: make() for k, make in FAMILIES.items()}


def _reference_values(q: QuantizedTensor) -> np.ndarray:
    """What the family's own API says the tensor is."""
    if isinstance(q, bnb.QuantState):
        return (bnb.dequantize_blockwise(q) if q.quant_type == "dynamic8" else bnb.dequantize_4bit(q))
    if isinstance(q, refquant.io.GGUFTensor):
        return gguf.dequantize(q.data, q.qtype, q.shape)
    if isinstance(q, GPTQPacked):
        return refquant.layouts.gptq.decode(q.parts(), q.bits, q.shape[1] // q.scales.shape[0], q.version)
    if isinstance(q, AWQPacked):
        return refquant.layouts.awq.decode(q.parts(), q.group_size)
    return q.dequantized


@pytest.mark.parametrize("family", FAMILIES)
def test_same_core_on_every_family(made, family):
    q = made[family]
    assert isinstance(q, QuantizedTensor)
    assert q.format == q.format.lower() and q.format
    y = q.dequantize()
    assert y.dtype == F32 and y.shape == tuple(q.shape)
    np.testing.assert_array_equal(y, _reference_values(q))
    assert q.size == math.prod(q.shape)
    assert 1.0 <= q.bits_per_weight <= 16.5
    # nbytes is what bits_per_weight counts
    assert abs(8 * q.nbytes / q.size - q.bits_per_weight) < 8 / q.size
    assert all(isinstance(a, np.ndarray) for a in q.parts().values()) and q.parts()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_save_load_round_trip(made, family, ext, tmp_path):
    if ext == "safetensors":
        pytest.importorskip("safetensors")
    q = made[family]
    path = tmp_path / f"q.{ext}"
    q.save(path)
    r = load_quantized(path)
    assert type(r) is type(q) and r.format == q.format and tuple(r.shape) == tuple(q.shape)
    assert r.bits_per_weight == q.bits_per_weight and r.nbytes == q.nbytes
    np.testing.assert_array_equal(r.dequantize(), q.dequantize())
    assert r.parts().keys() == q.parts().keys()
    for k, a in q.parts().items():
        np.testing.assert_array_equal(r.parts()[k], a, err_msg=k)
    assert type(q).load(path).format == q.format


@pytest.mark.parametrize("family", FAMILIES)
def test_repr_is_one_short_line(made, family):
    q = made[family]
    text = repr(q)
    assert "\n" not in text and len(text) < 120, text
    assert q.format in text and str(tuple(q.shape)) in text and "bits/weight" in text


def test_family_specific_parts_stay_reachable(made, tmp_path):
    q = made["bnb-fp4-double"]
    assert q.packed.dtype == np.uint8 and q.nested is not None and q.quant_type == "fp4"
    t = made["gguf-q4_k"]
    assert t.data.size == t.nbytes == gguf.row_bytes("q4_k", 256) * 16 and t.offset is None
    assert t.to_float().shape == (16, 256)  # the file tensors' name for dequantize()
    g = made["gptq-act-order"]
    assert g.dequantized is not None and g.perm is not None and g.codes.shape == (16, 256)
    packed = g.to_layout("GPTQ")  # the GPTQ checkpoint layout of the result
    assert packed.parts()["qweight"].dtype == np.int32
    assert set(packed.parts()) == {"qweight", "qzeros", "scales", "g_idx"}
    awq = made["awq"].to_layout("awq")
    assert set(awq.parts()) == {"qweight", "qzeros", "scales"}
    s = made["spqr"]
    s.save(tmp_path / "spqr.npz")
    back = load_quantized(tmp_path / "spqr.npz").outliers
    assert back.nnz == s.outliers.nnz and (back != s.outliers).nnz == 0


def test_bits_per_weight_comes_from_metrics(made):
    assert made["gguf-q4_k"].bits_per_weight == metrics.bits_per_weight("q4_k")
    assert made["bnb-nf4"].bits_per_weight == metrics.bits_per_weight("nf4", blocksize=64)


def test_gguf_container_is_written_to_and_read_from_a_file(made, tmp_path):
    t = made["gguf-q4_k"]
    gguf.write(tmp_path / "m.gguf", {t.name: t})
    back = gguf.read(tmp_path / "m.gguf").tensors[t.name]
    assert back.format == t.format and back.shape == t.shape and back.offset is not None
    np.testing.assert_array_equal(back.dequantize(), t.dequantize())
    assert "offset=" in repr(back) and "bits/weight" in repr(back)
    back.save(tmp_path / "one.npz")  # a memory-mapped tensor saves like any other
    np.testing.assert_array_equal(load_quantized(tmp_path / "one.npz").dequantize(), t.dequantize())


def test_bitsandbytes_state_dicts_load_as_quant_states(made, tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    from refquant.layouts.bnb_state import to_state_dict

    q = made["bnb-fp4-double"]
    st.save_file(to_state_dict(q, "lm_head.weight"), str(tmp_path / "plain.safetensors"))  # as bitsandbytes writes
    r = load_quantized(tmp_path / "plain.safetensors")
    np.testing.assert_array_equal(r.dequantize(), q.dequantize())
    bnb.save(tmp_path / "b.safetensors", q, "proj")
    assert bnb.load(tmp_path / "b.safetensors", "proj").format == "fp4"
    assert isinstance(load_quantized(tmp_path / "b.safetensors"), bnb.QuantState)
    q.save(tmp_path / "b.npz", "proj")
    np.testing.assert_array_equal(bnb.load(tmp_path / "b.npz", "proj").dequantize(), q.dequantize())


def test_load_refuses_files_that_are_not_quantized_tensors(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="no '__refquant__' header"):
        load_quantized(tmp_path / "plain.npz")
    header = {"schema": 1, "class": "os:system", "format": "x", "shape": [1], "fields": {}}
    np.savez(tmp_path / "evil.npz", **{HEADER_KEY: np.frombuffer(json.dumps(header).encode(), np.uint8)})
    with pytest.raises(ValueError, match="not a refquant class"):
        load_quantized(tmp_path / "evil.npz")
    header["class"] = "refquant.mapping:QuantParams"
    np.savez(tmp_path / "other.npz", **{HEADER_KEY: np.frombuffer(json.dumps(header).encode(), np.uint8)})
    with pytest.raises(ValueError, match="not a QuantizedTensor"):
        load_quantized(tmp_path / "other.npz")


def test_load_checks_the_stored_sizes(made, tmp_path):
    t = made["gguf-q4_k"]
    arrays, fields = t._to_arrays()
    arrays["data"] = arrays["data"][:-1]
    from refquant.quantized_tensor import _write

    _write(tmp_path / "short.npz", arrays, t._header(fields))
    with pytest.raises(ValueError, match="stored data"):
        load_quantized(tmp_path / "short.npz")


# --- names -----------------------------------------------------------------------------

@pytest.mark.parametrize("make, same", [
    (lambda: bnb.quantize_4bit(W, " NF4 ").packed, lambda: bnb.quantize_4bit(W, "nf4").packed),
    (lambda: gguf.quantize_tensor(W, "Q6_K").data, lambda: gguf.quantize(W, "q6_k").reshape(-1)),
    (lambda: refquant.io.ggml_type("IQ4_NL"), lambda: refquant.io.ggml_type("iq4_nl")),
    (lambda: mx.mx_quantize(W, "MXFP4")[1], lambda: mx.mx_quantize(W, "mxfp4")[1]),
    (lambda: refquant.layouts.gptq.format_args("V1_4BIT"), lambda: refquant.layouts.gptq.format_args("v1_4bit")),
    (lambda: refquant.dtypes.intspec.get_int_spec("INT4"), lambda: refquant.dtypes.intspec.get_int_spec("int4")),
    (lambda: metrics.bits_per_weight("MXFP6_E3M2"), lambda: metrics.bits_per_weight("mxfp6_e3m2")),
], ids=["bnb", "gguf-container", "ggml-type", "mx", "gptq-layout", "intspec", "metrics"])
def test_names_are_case_insensitive_in_every_family(make, same):
    a, b = make(), same()
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_one_normalization_function():
    from refquant._validate import normalize_name

    assert normalize_name("  Q4_K_M ") == "q4_k_m"
    src = {m: open(getattr(refquant, "__file__").replace("__init__.py", m)).read()
           for m in ("gguf.py", "metrics.py", "io/ggml_types.py", "dtypes/floatspec.py", "dtypes/codebooks.py",
                     "formats/mx.py")}
    for module, text in src.items():
        assert "normalize_name(" in text and ".strip().lower()" not in text, module


# --- int8_linear -----------------------------------------------------------------------

def test_int8_linear_equals_the_four_call_path():
    x = _RNG.standard_normal((5, 256)).astype(F32)
    xq, x_stats, _ = bnb.int8_vectorwise_quant(x, 0.0)
    wq, w_stats, _ = bnb.int8_vectorwise_quant(W, 0.0)
    acc = refquant.int8_matmul(xq, wq.T)
    four = refquant.dequantize_int32(acc, x_stats.astype(np.float64) / 127, w_stats.astype(np.float64) / 127)
    np.testing.assert_allclose(refquant.int8_linear(x, W, threshold=0.0), four, rtol=1e-6, atol=0)
    np.testing.assert_allclose(refquant.int8_linear(x, W, threshold=0.0), x @ W.T, rtol=0.05, atol=0.5)


def test_int8_linear_with_outliers_and_bias():
    x = _RNG.standard_normal((2, 3, 256)).astype(F32)
    x[..., 7] = 20.0
    bias = np.arange(16, dtype=F32)
    y = refquant.int8_linear(x, W, threshold=6.0, bias=bias)
    out, cols = refquant.llm_int8_matmul(x, W, 6.0)
    assert cols.tolist() == [7] and y.shape == (2, 3, 16)
    np.testing.assert_array_equal(y, out + bias)
    with pytest.raises(ValueError, match=r"bias must have shape \(16,\)"):
        refquant.int8_linear(x, W, bias=np.zeros(3, F32))


# --- backend= --------------------------------------------------------------------------

def test_reference_backend_never_imports_accel():
    code = ("import sys, numpy as np, refquant; from refquant import gguf, bnb; w = np.ones((2, 256), np.float32); "
            "gguf.quantize(w, 'q4_0', backend='reference'); bnb.quantize_4bit(w, backend=None).dequantize(); "
            "refquant.int8_linear(w, w); "
            "print([m for m in sys.modules if m.split('.')[0] in ('accel', 'conformance')])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def numba_backend():
    pytest.importorskip("numba")
    from accel.registry import BackendLoadError, get_backend

    try:
        return get_backend("numba")
    except BackendLoadError as exc:  # pragma: no cover - numba installed but unusable
        pytest.skip(str(exc))


def test_backend_numba_gives_the_reference_bytes(numba_backend):
    w = W[:4]
    for qtype in ("q4_0", "Q4_K"):
        ref = gguf.quantize(w, qtype)
        got = gguf.quantize(w, qtype, backend="Numba")
        assert type(got) is np.ndarray and got.dtype == np.uint8
        np.testing.assert_array_equal(got, ref)
        t = gguf.quantize_tensor(w, qtype, backend=numba_backend)
        assert isinstance(t, refquant.io.GGUFTensor) and t.shape == w.shape
        np.testing.assert_array_equal(gguf.dequantize(ref, qtype, w.shape, backend="numba"), t.dequantize())
        np.testing.assert_array_equal(t.dequantize(backend="numba"), t.dequantize())
    a = bnb.quantize_4bit(w, "NF4", double_quant=True)
    b = bnb.quantize_4bit(w, "nf4", double_quant=True, backend="numba")
    assert type(b) is bnb.QuantState
    for field in ("packed", "absmax"):
        np.testing.assert_array_equal(getattr(b, field), getattr(a, field))
    np.testing.assert_array_equal(b.nested.codes, a.nested.codes)
    np.testing.assert_array_equal(b.dequantize(backend="numba"), a.dequantize())
    c = bnb.quantize_blockwise(w, 256, backend="numba")
    np.testing.assert_array_equal(c.packed, bnb.quantize_blockwise(w, 256).packed)
    x = (_RNG.standard_normal((3, 256)) * 3).astype(F32)
    np.testing.assert_array_equal(refquant.int8_linear(x, w, backend="numba"), refquant.int8_linear(x, w))


def test_backend_errors_name_the_backend():
    with pytest.raises(ValueError, match="unknown backend 'nonesuch'"):
        gguf.quantize(W, "q4_0", backend="nonesuch")
    with pytest.raises(ValueError, match="mean_threads=2 is an option of the reference only"):
        bnb.quantize_4bit(W, double_quant=True, mean_threads=2, backend="numba")


class _NoOps:
    """A Backend object that implements nothing."""

    name, device = "no-ops", "cpu"

    def capabilities(self):
        return {}

    def asarray(self, x):
        return x

    def to_numpy(self, x):
        return x


def test_a_backend_without_the_op_raises_unsupported():
    from refquant.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="backend 'no-ops' does not implement gguf_quantize for 'q4_0'"):
        gguf.quantize_tensor(W, "Q4_0", backend=_NoOps())
    with pytest.raises(UnsupportedError, match="does not implement llm_int8_matmul"):
        refquant.int8_linear(X, W, backend=_NoOps())


# --- the documentation's examples run ------------------------------------------------------

def _doc_snippets() -> list[str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "quantized-tensors.md").read_text()
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


@pytest.mark.parametrize("i", range(len(_doc_snippets())))
def test_docs_quantized_tensors_examples_run(i, capsys):
    exec(compile(_doc_snippets()[i], f"docs/quantized-tensors.md[{i}]", "exec"), {})
