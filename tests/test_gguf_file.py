"""Tests of refquant.io.gguf_file / gguf_metadata / ggml_types: .gguf reading and writing.

Oracles: files written by ggml's own C writer (tests/golden/gguf_files, made by
tools/gguf_file_oracle.py), and gguf-py's GGUFReader / GGUFWriter in both directions.
"""

from __future__ import annotations

import importlib.util
import math
import os
import struct
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from refquant.errors import GGUFError, UnsupportedError
from refquant.io import GGMLType, GGUFTensor, GGUFValue, GGUFValueType, ggml_type, parse, read, write
from refquant.io.ggml_types import block_size, row_nbytes, type_size

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "gguf_files"
KV_FILE = GOLDEN / "ggml_kv_tensors.gguf"
V = GGUFValueType


def _oracle_module():
    spec = importlib.util.spec_from_file_location("gguf_file_oracle", ROOT / "tools" / "gguf_file_oracle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ORACLE = _oracle_module()


def _bytes(path) -> bytes:
    return Path(path).read_bytes()


# --- ggml type table ---------------------------------------------------------------------

@pytest.mark.oracle
def test_type_table_matches_gguf_py():
    gguf = pytest.importorskip("gguf")
    for t in GGMLType:
        if t.name not in gguf.GGMLQuantizationType.__members__:
            continue  # newer than this gguf-py (Q2_0)
        g = gguf.GGMLQuantizationType[t.name]
        assert int(g) == int(t)
        if t is GGMLType.Q8_1:
            # gguf-py 0.19 still lists 40 bytes (d and s as float32); ggml's block_q8_1 is
            # d:f16, s:f16, qs[32] = 36 bytes (ggml-common.h).
            assert (block_size(t), type_size(t)) == (32, 36)
            continue
        assert gguf.GGML_QUANT_SIZES[g] == (block_size(t), type_size(t)), t


def test_type_table_matches_refquant_formats():
    try:
        from refquant.formats import FORMATS
    except ImportError:
        pytest.skip("refquant.formats is not available")
    assert FORMATS
    for name, fmt in FORMATS.items():
        t = ggml_type(name)
        assert (int(t), block_size(t), type_size(t)) == (fmt.type_id, fmt.block_size, fmt.type_size), name


def test_type_table_published_values():
    # bits per weight, derived from the table
    bpw = {"q4_0": 4.5, "q4_k": 4.5, "q6_k": 6.5625, "q2_k": 2.625, "q3_k": 3.4375, "q8_k": 9.125,
           "tq1_0": 1.6875, "tq2_0": 2.0625, "iq4_xs": 4.25, "mxfp4": 4.25, "bf16": 16.0, "f32": 32.0}
    for name, bits in bpw.items():
        assert 8 * type_size(name) / block_size(name) == bits, name


def test_ggml_type_resolution():
    assert ggml_type("Q4_K") is GGMLType.Q4_K
    assert ggml_type(" q8_0 ") is GGMLType.Q8_0
    assert ggml_type(12) is GGMLType.Q4_K
    assert ggml_type(np.uint32(30)) is GGMLType.BF16
    assert str(GGMLType.IQ4_XS) == "iq4_xs"
    with pytest.raises(ValueError, match="q4_3.*not a ggml type"):
        ggml_type("q4_3")
    with pytest.raises(ValueError, match="5 is not a ggml type id"):
        ggml_type(5)  # Q4_3, removed from ggml
    with pytest.raises(TypeError, match="qtype"):
        ggml_type(True)
    with pytest.raises(ValueError, match="multiple of 256"):
        row_nbytes("q4_k", 100)


# --- files written by ggml ---------------------------------------------------------------

def _expected_value(vtype, value):
    if vtype == ORACLE.ARR:
        itype, items = value
        return GGUFValue(items, V.ARRAY, item_type=itype)
    return GGUFValue(value, vtype)


def test_read_ggml_written_file_metadata():
    f = read(KV_FILE)
    meta, _ = ORACLE.expected_contents()
    assert f.version == 3 and f.alignment == 32
    assert list(f.metadata) == [k for k, _, _ in meta]
    for key, vtype, value in meta:
        assert f.metadata[key] == _expected_value(vtype, value), key
    assert f.metadata["test.f32"].value == float(np.float32(0.1))
    assert f.metadata["test.f64"].value == 0.1
    assert f.get("test.str") == "héllo, wörld"
    assert f.get("test.arr_str") == ["a", "", "tokens ▁the"]
    assert f.get("test.u64") == 2**63 + 5
    assert f.get("test.arr_bool").tolist() == [True, False, True]
    assert f.get("test.arr_empty").size == 0 and f.metadata["test.arr_empty"].item_type is V.INT32
    assert f.get("missing", 7) == 7


def test_read_ggml_written_file_tensors():
    f = read(KV_FILE)
    _, tensors = ORACLE.expected_contents()
    assert list(f.tensors) == list(tensors)
    for name in ("t.f32", "t.f16", "t.bf16", "t.i32"):
        t = f.tensors[name]
        src = tensors[name][1]
        assert t.shape == src.shape and int(t.qtype) == tensors[name][0]
        np.testing.assert_array_equal(t.to_float(), src)
        assert t.to_float().dtype == np.float32
    assert f.tensors["t.bf16"].array().dtype == ml_dtypes.bfloat16
    assert f.tensors["t.i32"].array().dtype == np.int32
    q = f.tensors["t.q4_k"]
    assert q.qtype is GGMLType.Q4_K and q.shape == (2, 256) and q.dims == (256, 2)
    assert q.array().shape == (2, 144) and q.nbytes == 288
    assert not q.data.flags.writeable
    # offsets are aligned and in order, as ggml writes them
    offs = [t.offset - f.data_offset for t in f.tensors.values()]
    assert offs == sorted(offs) and all(o % 32 == 0 for o in offs)


@pytest.mark.oracle
def test_ggml_q8_0_tensor_equals_gguf_py_quantizer():
    gguf = pytest.importorskip("gguf")
    f = read(KV_FILE)
    _, tensors = ORACLE.expected_contents()
    expected = gguf.quants.quantize(tensors["t.q8_0"][1], gguf.GGMLQuantizationType.Q8_0)
    np.testing.assert_array_equal(f.tensors["t.q8_0"].array(), expected)


@pytest.mark.parametrize("name", ["ggml_kv_tensors.gguf", "ggml_imatrix.gguf"])
def test_rewrite_is_byte_identical_to_ggml(tmp_path, name):
    f = read(GOLDEN / name)
    write(tmp_path / "out.gguf", f.tensors, f.metadata)
    assert _bytes(tmp_path / "out.gguf") == _bytes(GOLDEN / name)


def test_read_version_2(tmp_path):
    data = bytearray(_bytes(KV_FILE))
    data[4:8] = struct.pack("<I", 2)
    f = parse(bytes(data))
    assert f.version == 2
    ref = read(KV_FILE)
    assert f.metadata == ref.metadata
    assert all(np.array_equal(f.tensors[n].data, ref.tensors[n].data) for n in ref.tensors)


# --- round trips with gguf-py --------------------------------------------------------------

def _rich_metadata():
    return {
        "general.architecture": "llama",
        "general.name": "tiny test",
        "u8": GGUFValue(255, "uint8"), "i8": GGUFValue(-128, "int8"),
        "u16": GGUFValue(65535, "uint16"), "i16": GGUFValue(-32768, V.INT16),
        "u32": GGUFValue(2**32 - 1, V.UINT32), "i32": -7, "f32": 1.5,
        "u64": GGUFValue(2**64 - 1, V.UINT64), "i64": GGUFValue(-(2**63), V.INT64),
        "f64": GGUFValue(math.pi, V.FLOAT64), "bool": False,
        "tokens": ["<s>", "</s>", "▁hello", "wörld"],
        "scores": np.array([0.0, -1.5, -2.25, 3.0], np.float32),
        "types": np.array([1, 3, 1, 1], np.int32),
        "merges_u8": GGUFValue(b"\x00\x01\xff", V.ARRAY, item_type=V.UINT8),
        "flags": [True, False],
        "nested": [[1, 2, 3], [4]],
        "nested_str": [["a", "b"], ["c"]],
    }


def _gguf_py_contents(field):
    """A gguf-py ReaderField's value, with its types."""
    return field.types, field.contents()


def _expected_gguf_py(v: GGUFValue):
    if v.type is V.ARRAY:
        if v.item_type is V.ARRAY:
            flat = []
            types = [V.ARRAY]
            for inner in v.value:
                t, c = _expected_gguf_py(inner)
                flat += c
                if len(types) == 1:
                    types += t
            return types, flat
        return [V.ARRAY, v.item_type], list(v.to_python() if v.item_type is V.STRING else v.value.tolist())
    return [v.type], v.value


@pytest.mark.oracle
@pytest.mark.parametrize("alignment", [None, 64, 8, 1])
def test_refquant_file_read_by_gguf_py(tmp_path, rng, alignment):
    gguf = pytest.importorskip("gguf")
    meta = _rich_metadata()
    if alignment is not None:
        meta["general.alignment"] = alignment
    x = rng.standard_normal((4, 64)).astype(np.float32)
    q8 = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
    tensors = {"w.f32": x, "w.f16": x.astype(np.float16)[:3], "w.bf16": x.astype(ml_dtypes.bfloat16),
               "w.q8_0": (q8, "q8_0", x.shape), "w.i8": np.arange(-5, 5, dtype=np.int8),
               "w.3d": x.reshape(2, 2, 64)}
    path = tmp_path / "rq.gguf"
    write(path, tensors, meta)
    r = gguf.GGUFReader(path)
    assert r.alignment == (alignment or 32)
    from refquant.io.gguf_metadata import as_value
    for key, value in meta.items():
        v = as_value(GGUFValue(value, V.UINT32) if key == "general.alignment" else value)
        types, contents = _gguf_py_contents(r.fields[key])
        exp_types, exp = _expected_gguf_py(v)
        assert [V(int(t)) for t in types] == exp_types, key
        if isinstance(exp, list) and exp and isinstance(exp[0], float):
            np.testing.assert_array_equal(np.asarray(contents, np.float64), np.asarray(exp, np.float64))
        else:
            assert contents == exp, key
    by_name = {t.name: t for t in r.tensors}
    f = read(path)
    for name, t in f.tensors.items():
        g = by_name[name]
        assert int(g.tensor_type) == int(t.qtype)
        assert tuple(int(d) for d in g.shape) == t.dims
        assert g.data_offset == t.offset
        assert np.asarray(g.data).tobytes() == t.data.tobytes(), name
    np.testing.assert_array_equal(f.tensors["w.f32"].to_float(), x)
    np.testing.assert_array_equal(f.tensors["w.3d"].to_float(), x.reshape(2, 2, 64))


@pytest.mark.oracle
@pytest.mark.parametrize("alignment", [None, 64, 16])
def test_gguf_py_file_read_by_refquant(tmp_path, rng, alignment):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "py.gguf"
    w = gguf.GGUFWriter(path, "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_uint8("u8", 7); w.add_int8("i8", -7); w.add_uint16("u16", 700); w.add_int16("i16", -700)  # noqa: E702
    w.add_uint32("u32", 70000); w.add_int32("i32", -70000); w.add_float32("f32", 0.3)  # noqa: E702
    w.add_uint64("u64", 2**50); w.add_int64("i64", -(2**50)); w.add_float64("f64", 0.3)  # noqa: E702
    w.add_bool("b", True); w.add_string("s", "snow ☃")  # noqa: E702
    w.add_array("a_int", [1, 2, 3]); w.add_array("a_float", [0.5, 0.25]); w.add_array("a_str", ["x", "yz"])  # noqa: E702
    w.add_array("a_nested", [[1, 2], [3, 4, 5]])
    w.add_array("a_bool", [True, True, False])
    x = rng.standard_normal((3, 64)).astype(np.float32)
    q8 = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("t.f32", x)
    w.add_tensor("t.f16", x.astype(np.float16))
    w.add_tensor("t.q8_0", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("t.i32", np.arange(12, dtype=np.int32).reshape(3, 4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    f = read(path)
    assert f.alignment == (alignment or 32)
    expected = {
        "general.architecture": GGUFValue("llama", V.STRING),
        "u8": GGUFValue(7, V.UINT8), "i8": GGUFValue(-7, V.INT8), "u16": GGUFValue(700, V.UINT16),
        "i16": GGUFValue(-700, V.INT16), "u32": GGUFValue(70000, V.UINT32), "i32": GGUFValue(-70000, V.INT32),
        "f32": GGUFValue(0.3, V.FLOAT32), "u64": GGUFValue(2**50, V.UINT64), "i64": GGUFValue(-(2**50), V.INT64),
        "f64": GGUFValue(0.3, V.FLOAT64), "b": GGUFValue(True, V.BOOL), "s": GGUFValue("snow ☃", V.STRING),
        "a_int": GGUFValue([1, 2, 3], V.ARRAY, V.INT32), "a_float": GGUFValue([0.5, 0.25], V.ARRAY, V.FLOAT32),
        "a_str": GGUFValue(["x", "yz"], V.ARRAY, V.STRING),
        "a_nested": GGUFValue([[1, 2], [3, 4, 5]], V.ARRAY, V.ARRAY),
        "a_bool": GGUFValue([True, True, False], V.ARRAY, V.BOOL),
    }
    if alignment is not None:
        expected["general.alignment"] = GGUFValue(alignment, V.UINT32)
    assert f.metadata == expected
    assert [int(t) for t in (f.tensors[n].qtype for n in f.tensors)] == [0, 1, 8, 26]
    np.testing.assert_array_equal(f.tensors["t.f32"].array(), x)
    np.testing.assert_array_equal(f.tensors["t.f16"].array(), x.astype(np.float16))
    np.testing.assert_array_equal(f.tensors["t.q8_0"].array(), q8)
    assert f.tensors["t.q8_0"].shape == (3, 64)
    np.testing.assert_array_equal(f.tensors["t.i32"].array(), np.arange(12).reshape(3, 4))
    r = gguf.GGUFReader(path)
    for t in r.tensors:
        assert f.tensors[t.name].offset == t.data_offset
    # and writing it back reproduces gguf-py's bytes
    write(tmp_path / "again.gguf", f.tensors, f.metadata)
    assert _bytes(tmp_path / "again.gguf") == _bytes(path)


def test_round_trip_refquant(tmp_path, rng):
    meta = _rich_metadata()
    meta["general.alignment"] = 128
    x = rng.standard_normal((2, 256)).astype(np.float32)
    raw = rng.integers(0, 256, size=(2, 144), dtype=np.uint8)  # any bytes are a valid q4_k payload
    tensors = {"a": x, "b": (raw, GGMLType.Q4_K, (2, 256)), "c": (raw.tobytes(), 12, [2, 256]),
               "empty": np.zeros((0, 32), np.float32), "f64": x.astype(np.float64)}
    write(tmp_path / "a.gguf", tensors, meta)
    f = read(tmp_path / "a.gguf")
    write(tmp_path / "b.gguf", f.tensors, f.metadata)
    assert _bytes(tmp_path / "a.gguf") == _bytes(tmp_path / "b.gguf")
    assert f.tensors["empty"].shape == (0, 32) and f.tensors["empty"].nbytes == 0
    np.testing.assert_array_equal(f.tensors["b"].array(), raw)
    np.testing.assert_array_equal(f.tensors["f64"].array(), x.astype(np.float64))
    assert all((t.offset - f.data_offset) % 128 == 0 for t in f.tensors.values())
    assert os.path.getsize(tmp_path / "a.gguf") % 128 == 0  # the last tensor is padded too
    assert f.get("nested")[0].tolist() == [1, 2, 3]
    assert f.get("nested_str") == [["a", "b"], ["c"]]
    assert f.metadata["merges_u8"].value.tolist() == [0, 1, 255]


def test_rewrite_in_place_keeps_the_open_file_readable(tmp_path, rng):
    # read, change metadata, write back to the same path: the old memory map stays valid
    x = rng.standard_normal((64, 64)).astype(np.float32)
    path = tmp_path / "m.gguf"
    write(path, {"x": x}, {"general.name": "before"})
    f = read(path)
    write(path, f.tensors, {**f.metadata, "general.name": "after"})
    np.testing.assert_array_equal(f.tensors["x"].array(), x)  # would crash (SIGBUS) after an in-place truncation
    g = read(path)
    assert g.get("general.name") == "after"
    np.testing.assert_array_equal(g.tensors["x"].array(), x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]  # no temporary file left


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):
        write(tmp_path / "x.gguf", {"a": np.zeros(2, np.uint8)})
    (tmp_path / "keep.gguf").write_bytes(b"old")
    from refquant.io import gguf_file
    with pytest.raises(RuntimeError, match="disk full"):
        with gguf_file.replace_file(tmp_path / "keep.gguf") as fh:
            fh.write(b"partial")
            raise RuntimeError("disk full")
    assert (tmp_path / "keep.gguf").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.gguf"]


def test_write_does_not_mutate_inputs(tmp_path, rng):
    x = rng.standard_normal((2, 32)).astype(np.float32)
    x_copy = x.copy()
    meta = {"a": [1, 2], "b": np.array([1.0, 2.0])}
    write(tmp_path / "a.gguf", {"x": x}, meta)
    np.testing.assert_array_equal(x, x_copy)
    assert meta["a"] == [1, 2] and meta["b"].tolist() == [1.0, 2.0]


def test_big_endian_input_array_is_stored_little_endian(tmp_path):
    x = np.arange(32, dtype=">f4")
    write(tmp_path / "a.gguf", {"x": x})
    np.testing.assert_array_equal(read(tmp_path / "a.gguf").tensors["x"].to_float(), np.arange(32))


def test_invalid_utf8_string_value_round_trips(tmp_path):
    data = bytearray(_bytes(KV_FILE))
    at = data.find(b"refquant-test")
    data[at:at + 2] = b"\xff\xfe"
    f = parse(bytes(data))
    v = f.metadata["general.architecture"].value
    assert v.startswith("\udcff\udcfe")
    write(tmp_path / "x.gguf", f.tensors, f.metadata)
    assert _bytes(tmp_path / "x.gguf") == bytes(data)


# --- values ------------------------------------------------------------------------------

def test_value_defaults_and_equality():
    from refquant.io.gguf_metadata import as_value
    assert as_value(1).type is V.INT32
    assert as_value(2**31).type is V.INT64
    assert as_value(2**63).type is V.UINT64
    assert as_value(0.5).type is V.FLOAT32
    assert as_value(True).type is V.BOOL
    assert as_value(np.uint16(3)).type is V.UINT16
    assert as_value(np.float64(3)).type is V.FLOAT64
    assert as_value(b"ab") == GGUFValue("ab", V.STRING)
    assert as_value([1, 2**40]).item_type is V.INT64
    assert as_value([1, 0.5]).item_type is V.FLOAT32
    assert as_value(np.array(["a", "b"])) == GGUFValue(["a", "b"], V.ARRAY, V.STRING)
    assert GGUFValue(float("nan"), V.FLOAT32) == GGUFValue(float("nan"), V.FLOAT32)
    assert GGUFValue(1, V.INT32) != GGUFValue(1, V.INT64)
    assert GGUFValue(0.0, V.FLOAT64) != GGUFValue(-0.0, V.FLOAT64)
    assert hash(GGUFValue([1, 2], V.ARRAY, V.UINT8)) == hash(GGUFValue(np.array([1, 2]), "array", "uint8"))
    v = GGUFValue([1, 2], V.ARRAY, V.INT32)
    with pytest.raises(AttributeError):
        v.value = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        v.value[0] = 5  # read-only array
    assert "int32" in repr(v)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: GGUFValue(256, V.UINT8), ValueError, "out of range for uint8"),
    (lambda: GGUFValue(-1, "uint64"), ValueError, "out of range"),
    (lambda: GGUFValue(1.5, V.INT32), TypeError, "integer"),
    (lambda: GGUFValue(True, V.INT32), TypeError, "integer"),
    (lambda: GGUFValue(1, V.BOOL), TypeError, "bool"),
    (lambda: GGUFValue(1e39, V.FLOAT32), ValueError, "overflows float32"),
    (lambda: GGUFValue([1e39], V.ARRAY, V.FLOAT32), ValueError, "overflows"),
    (lambda: GGUFValue([300], V.ARRAY, V.UINT8), ValueError, "outside 0..255"),
    (lambda: GGUFValue([1.5], V.ARRAY, V.INT8), TypeError, "integers"),
    (lambda: GGUFValue([[1]], V.ARRAY, V.INT8), ValueError, "one-dimensional"),
    (lambda: GGUFValue("ab", V.ARRAY, V.STRING), TypeError, "sequence of strings"),
    (lambda: GGUFValue([1], V.ARRAY), ValueError, "item_type must be given"),
    (lambda: GGUFValue(1, V.INT32, V.INT32), ValueError, "item_type must be given"),
    (lambda: GGUFValue(1, "int128"), ValueError, "not a GGUF value type"),
    (lambda: GGUFValue(1, 13), ValueError, "not a GGUF value type id"),
    (lambda: GGUFValue([1], V.ARRAY, V.ARRAY), TypeError, "must be an array"),
])
def test_value_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_value_nesting_limit():
    v = [1]
    for _ in range(9):
        v = [v]
    from refquant.io.gguf_metadata import as_value
    with pytest.raises(ValueError, match="nest deeper"):
        as_value(v)


# --- writer errors -----------------------------------------------------------------------

@pytest.mark.parametrize("tensors, meta, exc, match", [
    ({"x": (np.zeros(18, np.uint8), "q4_0", (1, 30))}, None, ValueError, "multiple of 32"),
    ({"x": (np.zeros(17, np.uint8), "q4_0", (1, 32))}, None, ValueError, "takes 18 bytes, got 17"),
    ({"x": (np.zeros(18, np.int8), "q4_0", (1, 32))}, None, TypeError, "uint8"),
    ({"x": (np.zeros(18, np.uint8), "q4_9", (1, 32))}, None, ValueError, "not a ggml type"),
    ({"x": (np.zeros(18, np.uint8), "q4_0", (1, -32))}, None, ValueError, "non-negative"),
    ({"x": (np.zeros(18, np.uint8), "q4_0", 32)}, None, ValueError, "tuple"),
    ({"x": (["a"], "q4_0", (1, 32))}, None, TypeError, "uint8 array or bytes"),
    ({"x": np.zeros(4, np.uint8)}, None, TypeError, "dtype uint8"),
    ({"x": np.zeros((1, 1, 1, 1, 2), np.float32)}, None, ValueError, "1 to 4"),
    ({"x": np.ones((), np.float32)}, None, ValueError, "1 to 4"),
    ({"": np.zeros(2, np.float32)}, None, ValueError, "non-empty"),
    ({"n" * 64: np.zeros(2, np.float32)}, None, ValueError, "at most 63"),
    ({"x": [1.0, 2.0]}, None, TypeError, "must be an array"),
    ({}, {"general.alignment": 48}, ValueError, "power of two"),
    ({}, {"general.alignment": GGUFValue(64, V.UINT64)}, ValueError, "uint32"),
    ({}, {"a": []}, ValueError, "empty list"),
    ({}, {"a": [1, "x"]}, TypeError, "mixes item types"),
    ({}, {"a": None}, TypeError, "no GGUF value type"),
    ({}, {"a": {"b": 1}}, TypeError, "no GGUF value type"),
    ({}, {"a": np.float16(1)}, TypeError, "float16"),
    ({}, {"": 1}, ValueError, "non-empty strings"),
    ({}, {1: 1}, ValueError, "non-empty strings"),
    ({}, {"a": 2**64}, ValueError, "does not fit"),
])
def test_write_errors(tmp_path, tensors, meta, exc, match):
    with pytest.raises(exc, match=match):
        write(tmp_path / "bad.gguf", tensors, meta)


def test_write_rejects_non_mapping(tmp_path):
    with pytest.raises(TypeError, match="tensors must be a mapping"):
        write(tmp_path / "x.gguf", [("a", np.zeros(2, np.float32))])
    with pytest.raises(TypeError, match="metadata must be a mapping"):
        write(tmp_path / "x.gguf", {}, [("a", 1)])


# --- reader errors (each names its field) --------------------------------------------------

def _header(n_tensors=0, n_kv=0, version=3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def _kv(key: bytes, vtype: int, payload: bytes) -> bytes:
    return struct.pack("<Q", len(key)) + key + struct.pack("<I", vtype) + payload


def _ti(name: bytes, dims, ggml_type: int, offset: int) -> bytes:
    return (struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims))
            + struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", ggml_type, offset))


def _file(kvs=(), tis=(), data=b"", alignment=32, n_tensors=None, n_kv=None) -> bytes:
    head = _header(len(tis) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tis)
    body += bytes(-len(body) % alignment)
    return body + data


F32_ROW = np.arange(4, dtype="<f4").tobytes()


@pytest.mark.parametrize("blob, match", [
    (b"", r"magic at offset 0: expected b'GGUF', got b''"),
    (b"GGU", "magic at offset 0"),
    (b"GGML" + bytes(20), "magic at offset 0"),
    (b"GGUF\x03\x00", "version at offset 4: needs 4 bytes"),
    (_header(version=1), "version at offset 4: 1 .*v1"),
    (_header(version=4), "version at offset 4: 4"),
    (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "version at offset 4.*big-endian"),
    (_header()[:20], "kv_count at offset 16: needs 8 bytes"),
    (_header(n_kv=2**40), "kv_count at offset 16: 1099511627776 key/value pairs need"),
    (_header(n_tensors=2**63), "tensor_count at offset 8"),
    (_file([_kv(b"a", 8, struct.pack("<Q", 2**62) + b"xy")]), "metadata 'a' value length at offset 37: string of"),
    (_file([_kv(b"", 4, bytes(4))]), "metadata key #0 at offset 24: is empty"),
    (_file([_kv(b"\xff", 4, bytes(4))]), "metadata key #0 at offset 32: is not valid UTF-8"),
    (_file([_kv(b"a", 4, bytes(4)), _kv(b"a", 4, bytes(4))]), "metadata key #1 at offset 41: duplicate key 'a'"),
    (_file([_kv(b"a", 13, bytes(4))]), "metadata 'a' type at offset 33: unknown GGUF value type 13"),
    (_file([_kv(b"a", 9, struct.pack("<IQ", 0, 2**60))]), "metadata 'a' value count at offset 41: 1152921504606846976 items"),
    (_file([_kv(b"a", 9, struct.pack("<IQ", 8, 2**40))]), "metadata 'a' value count.*type string need"),
    (_file([_kv(b"a", 9, struct.pack("<IQ", 77, 1))]), "metadata 'a' value item type at offset 37: unknown GGUF value type 77"),
    (_file([_kv(b"a", 9, struct.pack("<IQ", 9, 1) * 9 + struct.pack("<IQ", 4, 0))]), "nest deeper than 8"),
    (_file([_kv(b"general.alignment", 5, struct.pack("<i", 64))]), "'general.alignment': type is int32"),
    (_file([_kv(b"general.alignment", 4, struct.pack("<I", 0))]), "'general.alignment': 0 is not a power of two"),
    (_file([_kv(b"general.alignment", 4, struct.pack("<I", 48))]), "48 is not a power of two"),
    (_file(tis=[_ti(b"t", [4, 1, 1, 1, 1], 0, 0)]), "tensor 't' n_dims at offset 33: 5 dimensions"),
    (_file(tis=[_ti(b"t", [2**63], 0, 0)]), r"tensor 't' dims\[0\] at offset 37: 9223372036854775808 does not fit"),
    (_file(tis=[_ti(b"t", [2**32, 2**31], 0, 0)]), r"tensor 't' dims\[1\].*element count"),
    (_file(tis=[_ti(b"t", [4], 4, 0)]), "tensor 't' type at offset 45: unknown ggml type id 4"),
    (_file(tis=[_ti(b"t", [4], 99, 0)]), "unknown ggml type id 99"),
    (_file(tis=[_ti(b"t", [48], 2, 0)]), r"tensor 't' dims\[0\].*48 is not a multiple of the q4_0 block size 32"),
    (_file(tis=[_ti(b"t", [4], 0, 8)], data=F32_ROW), "tensor 't' offset at offset 49: 8 is not a multiple"),
    (_file(tis=[_ti(b"t", [8], 0, 0)], data=F32_ROW), "tensor 't' data at offset 64: 32 bytes would end at 96"),
    (_file(tis=[_ti(b"t", [2**40], 0, 0)], data=F32_ROW), "past the end of the file"),
    (_header(1) + _ti(b"t", [4], 0, 0), "data section at offset 64: the file ends at 57"),
    (_file(tis=[_ti(b"t", [4], 0, 0), _ti(b"t", [4], 0, 32)], data=F32_ROW * 4), "duplicate tensor name 't'"),
    (_file(tis=[_ti(b"a", [16], 0, 0), _ti(b"b", [4], 0, 32)], data=F32_ROW * 4), "tensor 'b' data.*overlaps tensor 'a'"),
    (_file(tis=[_ti(b"\xc3", [4], 0, 0)], data=F32_ROW), "tensor info #0 name at offset 32: is not valid UTF-8"),
    (_file(tis=[_ti(b"t", [4], 0, 0)], n_tensors=2, data=F32_ROW), "tensor '' type at offset 69: unknown ggml type"),
])
def test_reader_errors_name_field(blob, match):
    with pytest.raises(GGUFError, match=match):
        parse(blob)


def test_reader_error_from_file(tmp_path):
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(GGUFError, match="magic at offset 0"):
        read(tmp_path / "empty.gguf")
    with pytest.raises(GGUFError, match="string of"):
        (tmp_path / "s.gguf").write_bytes(_file([_kv(b"a", 8, struct.pack("<Q", 2**62))]))
        read(tmp_path / "s.gguf")


def test_reader_accepts_edge_cases():
    # zero-size tensor, 0-d tensor, bool byte 2 reads True (as ggml), unordered offsets
    f = parse(_file([_kv(b"flag", 7, b"\x02")],
                    [_ti(b"z", [0, 3], 0, 0), _ti(b"s", [], 0, 32), _ti(b"a", [4], 0, 0)],
                    data=F32_ROW + bytes(16) + F32_ROW))
    assert f.tensors["z"].shape == (3, 0) and f.tensors["z"].nbytes == 0
    assert f.tensors["s"].shape == () and f.tensors["s"].to_float() == 0.0
    np.testing.assert_array_equal(f.tensors["a"].to_float(), [0, 1, 2, 3])
    assert f.metadata["flag"] == GGUFValue(True, V.BOOL)


# --- dequantizing through the codecs -------------------------------------------------------

def test_to_float_without_codecs_raises_unsupported(monkeypatch):
    monkeypatch.setitem(sys.modules, "refquant.gguf", None)  # import refquant.gguf -> ImportError
    t = read(KV_FILE).tensors["t.q4_k"]
    with pytest.raises(UnsupportedError, match="q4_k.*refquant.gguf"):
        t.to_float()


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["t.q8_0", "t.q4_k"])
def test_to_float_with_codecs_matches_gguf_py(name):
    gguf = pytest.importorskip("gguf")
    try:
        import refquant.gguf as codecs
    except ImportError:
        pytest.skip("refquant.gguf (the block codecs) is not available yet")
    t = read(KV_FILE).tensors[name]
    if str(t.qtype) not in codecs.qtypes():
        pytest.skip(f"refquant.gguf has no {t.qtype} codec yet")
    expected = gguf.quants.dequantize(t.array(), gguf.GGMLQuantizationType(int(t.qtype)))
    np.testing.assert_array_equal(t.to_float(), expected)


def test_public_gguf_module_reexports_file_functions():
    try:
        import refquant.gguf as public
    except ImportError:
        pytest.skip("refquant.gguf is not available")
    if not hasattr(public, "read"):
        pytest.skip("refquant.gguf does not re-export read/write yet")
    assert public.read is read and public.write is write


def test_tensor_repr_and_views():
    f = read(KV_FILE)
    t = f.tensors["t.f32"]
    assert isinstance(t, GGUFTensor) and "t.f32" in repr(t) and "f32" in repr(t)
    assert "6 tensors" in repr(f)
    assert np.shares_memory(t.array(), t.data)


def test_tensor_data_is_memory_mapped_not_copied(tmp_path):
    import tracemalloc

    x = np.ones((1024, 1024), np.float32)  # 4 MB
    write(tmp_path / "big.gguf", {"x": x}, {"tokens": [f"t{i}" for i in range(1000)]})
    tracemalloc.start()
    try:
        f = read(tmp_path / "big.gguf")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"reading copied data: peak {peak} bytes"
    t = f.tensors["x"]
    assert t.nbytes == x.nbytes and not t.data.flags.writeable
    np.testing.assert_array_equal(t.array(), x)


# --- ggml's own reader accepts what refquant writes (local check with a ggml build) --------

@pytest.mark.oracle
def test_ggml_reader_accepts_refquant_files(tmp_path, rng):
    lib_path = os.environ.get("REFQUANT_GGML_LIB")
    if not lib_path:
        pytest.skip("set REFQUANT_GGML_LIB to a ggml-base library to run ggml's reader")
    import ctypes

    class Params(ctypes.Structure):
        _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]

    lib = ctypes.CDLL(lib_path)
    lib.gguf_init_from_file.restype = ctypes.c_void_p
    lib.gguf_init_from_file.argtypes = [ctypes.c_char_p, Params]
    lib.gguf_get_n_kv.restype = lib.gguf_get_n_tensors.restype = ctypes.c_int64
    lib.gguf_get_n_kv.argtypes = lib.gguf_get_n_tensors.argtypes = lib.gguf_free.argtypes = [ctypes.c_void_p]
    meta = {k: v for k, v in _rich_metadata().items() if not k.startswith("nested")}  # ggml reads no nested arrays
    for alignment in (32, 64, 1):
        x = rng.standard_normal((2, 64)).astype(np.float32)
        path = tmp_path / f"a{alignment}.gguf"
        write(path, {"x": x, "y": x.astype(ml_dtypes.bfloat16)}, {**meta, "general.alignment": alignment})
        ctx = lib.gguf_init_from_file(str(path).encode(), Params(True, None))
        assert ctx, f"ggml rejected {path}"
        assert (lib.gguf_get_n_kv(ctx), lib.gguf_get_n_tensors(ctx)) == (len(meta) + 1, 2)
        lib.gguf_free(ctx)


def _gguf_with_array(item_type: int, n: int, item: bytes) -> bytes:
    """A v3 .gguf image with no tensors and one metadata array of ``n`` items."""
    import struct

    return (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k"
            + struct.pack("<IIQ", 9, item_type, n) + item * n)


@pytest.mark.parametrize(("item_type", "item", "cost"), [(9, bytes(12), 4), (8, bytes(8), 1)])
def test_metadata_object_budget_bounds_memory(monkeypatch, item_type, item, cost):
    """Empty nested arrays / empty strings cost many times their bytes in memory: the
    reader counts them and refuses past MAX_METADATA_OBJECTS (GGUFError naming the field)."""
    import refquant.io.gguf_metadata as meta
    from refquant.io.gguf_file import parse

    monkeypatch.setattr(meta, "MAX_METADATA_OBJECTS", 1000)
    ok = parse(_gguf_with_array(item_type, 1000 // cost, item))
    assert len(ok.metadata["k"].value) == 1000 // cost
    with pytest.raises(GGUFError, match="MAX_METADATA_OBJECTS") as info:
        parse(_gguf_with_array(item_type, 1000 // cost + 1, item))
    assert "'k'" in str(info.value)
