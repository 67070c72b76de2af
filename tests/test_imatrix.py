"""Tests of refquant.io.imatrix: computing importance matrices and llama.cpp's imatrix files.

Oracles: a GGUF imatrix written by ggml's C writer in llama-imatrix's layout
(tests/golden/gguf_files/ggml_imatrix.gguf), legacy .dat bytes built here field by field
from ``save_imatrix_legacy``'s layout, and a plain per-token float32 loop for the sums.
"""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

from refquant.errors import GGUFError
from refquant.io import (
    GGUFValue,
    Imatrix,
    ImatrixCollector,
    ImatrixEntry,
    compute_imatrix,
    read,
    read_imatrix,
    write,
    write_imatrix,
)

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_IMATRIX = ROOT / "tests" / "golden" / "gguf_files" / "ggml_imatrix.gguf"


def _oracle_module():
    spec = importlib.util.spec_from_file_location("gguf_file_oracle", ROOT / "tools" / "gguf_file_oracle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ORACLE = _oracle_module()


def _loop_sums(x: np.ndarray) -> np.ndarray:
    """llama.cpp's loop: for each token row in order, values[j] += x[j] * x[j] in float32."""
    s = np.zeros(x.shape[1], np.float32)
    for row in x.astype(np.float32):
        s = (s + row * row).astype(np.float32)
    return s


# --- computing -----------------------------------------------------------------------------

def test_compute_imatrix_is_mean_of_squares(rng):
    x = (rng.standard_normal((300, 96)) * rng.uniform(0.01, 30, 96)).astype(np.float32)
    got = compute_imatrix([x[:100], x[100:250], x[250:]])
    assert got.dtype == np.float32 and got.shape == (96,)
    np.testing.assert_array_equal(got, _loop_sums(x) / np.float32(300))
    np.testing.assert_allclose(got, (x.astype(np.float64) ** 2).mean(axis=0), rtol=1e-5)


def test_sums_do_not_depend_on_chunking(rng):
    # the running float32 sum is strictly left to right, so any split gives the same bits
    x = (rng.standard_normal((257, 33)) * 1e3).astype(np.float32)
    whole = compute_imatrix([x])
    for cuts in ([1], [7, 8, 200], list(range(1, 257, 16))):
        parts = np.split(x, cuts)
        np.testing.assert_array_equal(compute_imatrix(parts), whole)


def test_zero_columns_and_no_tokens_give_zeros_not_nan(rng):
    x = rng.standard_normal((10, 8)).astype(np.float32)
    x[:, 3] = 0.0
    x[:, 5] = -0.0
    got = compute_imatrix([x])
    assert got[3] == 0 and got[5] == 0 and np.isfinite(got).all()
    empty = compute_imatrix([np.zeros((0, 8), np.float32)])
    np.testing.assert_array_equal(empty, np.zeros(8, np.float32))
    tiny = compute_imatrix([np.full((4, 2), 1e-30, np.float32)])  # squares underflow to 0
    np.testing.assert_array_equal(tiny, [0, 0])


def test_float64_and_float16_activations_are_rounded_to_float32(rng):
    x = rng.standard_normal((5, 4))
    np.testing.assert_array_equal(compute_imatrix([x]), compute_imatrix([x.astype(np.float32)]))
    np.testing.assert_array_equal(compute_imatrix([x.astype(np.float16)]),
                                  compute_imatrix([x.astype(np.float16).astype(np.float32)]))


@pytest.mark.parametrize("chunks, exc, match", [
    ([], ValueError, "activations is empty"),
    ([np.zeros((2, 4), np.float32), np.zeros((2, 5), np.float32)], ValueError, r"activations\[1\].*5 columns"),
    ([np.array([[1.0, np.nan]], np.float32)], ValueError, "NaN or inf"),
    ([np.array([[np.inf]], np.float32)], ValueError, "NaN or inf"),
    ([np.ones((2, 2), np.int32)], TypeError, "floating-point"),
    ([np.float32(3.0)], ValueError, "scalar"),
    ([np.full((2, 1), 3e19, np.float32)], ValueError, "overflowed float32"),
])
def test_compute_imatrix_errors(chunks, exc, match):
    with pytest.raises(exc, match=match):
        compute_imatrix(chunks)


def test_collector_streams_several_tensors(rng):
    c = ImatrixCollector()
    a = rng.standard_normal((40, 16)).astype(np.float32)
    b = rng.standard_normal((2, 10, 32)).astype(np.float32)  # (batch, tokens, in) is flattened
    c.observe("blk.0.attn_q.weight", a[:25])
    c.observe("blk.0.ffn_down.weight", b)
    c.observe("blk.0.attn_q.weight", a[25:])
    res = c.result()
    np.testing.assert_array_equal(res["blk.0.attn_q.weight"], _loop_sums(a) / np.float32(40))
    np.testing.assert_array_equal(res["blk.0.ffn_down.weight"], _loop_sums(b.reshape(20, 32)) / np.float32(20))
    with pytest.raises(ValueError, match="16 columns"):
        c.observe("blk.0.attn_q.weight", np.ones((1, 17), np.float32))
    with pytest.raises(ValueError, match="name"):
        c.observe("", a)


def test_collector_experts_and_unobserved(rng):
    c = ImatrixCollector()
    x0 = rng.standard_normal((6, 8)).astype(np.float32)
    x2 = rng.standard_normal((3, 8)).astype(np.float32)
    c.observe("exps", x0, expert=0, n_experts=3)
    c.observe("exps", x2, expert=2, n_experts=3)
    imp = c.result()["exps"]
    assert imp.shape == (3, 8)
    np.testing.assert_array_equal(imp[0], _loop_sums(x0) / np.float32(6))
    np.testing.assert_array_equal(imp[1], np.zeros(8, np.float32))  # expert 1 saw no tokens
    np.testing.assert_array_equal(c.result(unobserved=1.0)["exps"][1], np.ones(8, np.float32))
    with pytest.raises(ValueError, match="expert"):
        c.observe("exps", x0, expert=3, n_experts=3)
    with pytest.raises(ValueError, match="matrices"):
        c.observe("exps", x0, expert=0, n_experts=4)
    im = c.to_imatrix(["d.txt"], chunk_size=4)
    assert im.chunk_count == 6 // 4 and im.datasets == ["d.txt"]
    np.testing.assert_array_equal(im.entries["exps"].counts, [6, 0, 3])


# --- GGUF imatrix files ---------------------------------------------------------------------

def _expected_imatrix() -> Imatrix:
    entries, datasets, chunk_count, chunk_size = ORACLE.expected_imatrix()
    return Imatrix({n: ImatrixEntry(s, c.astype(np.int64)) for n, (s, c) in entries.items()},
                   datasets, chunk_count, chunk_size)


def test_read_ggml_written_imatrix():
    im = read_imatrix(GOLDEN_IMATRIX)
    ref = _expected_imatrix()
    assert im.datasets == ref.datasets and im.chunk_count == ref.chunk_count and im.chunk_size == ref.chunk_size
    assert list(im.entries) == sorted(ref.entries)
    for name, e in ref.entries.items():
        np.testing.assert_array_equal(im.entries[name].sums, e.sums)
        np.testing.assert_array_equal(im.entries[name].counts, e.counts)
    q = im.importance("blk.0.attn_q.weight")
    assert q.shape == (64,) and q.dtype == np.float32
    np.testing.assert_array_equal(q, ref.entries["blk.0.attn_q.weight"].sums[0] / np.float32(1024))
    exps = im.importance("blk.0.ffn_up_exps.weight")
    assert exps.shape == (3, 32)
    np.testing.assert_array_equal(exps[1], np.zeros(32, np.float32))  # count 0: no NaN
    np.testing.assert_array_equal(exps[2], ref.entries["blk.0.ffn_up_exps.weight"].sums[2] / np.float32(1536))
    with pytest.raises(KeyError, match="no imatrix entry"):
        im.importance("output.weight")


def test_write_imatrix_is_byte_identical_to_ggml(tmp_path):
    write_imatrix(tmp_path / "im.gguf", _expected_imatrix())
    assert (tmp_path / "im.gguf").read_bytes() == GOLDEN_IMATRIX.read_bytes()


def test_gguf_round_trip_with_in_sum(tmp_path, rng):
    c = ImatrixCollector()
    c.observe("a.weight", rng.standard_normal((50, 32)).astype(np.float32))
    im = c.to_imatrix(["x.txt", "y.txt"], chunk_size=10)
    im.entries["a.weight"].in_sums = rng.standard_normal((1, 32)).astype(np.float32)
    write_imatrix(tmp_path / "im.gguf", im)
    f = read(tmp_path / "im.gguf")
    assert list(f.tensors) == ["a.weight.in_sum2", "a.weight.counts", "a.weight.in_sum"]
    assert f.get("general.type") == "imatrix" and f.metadata["imatrix.chunk_count"] == GGUFValue(5, "uint32")
    back = read_imatrix(tmp_path / "im.gguf")
    np.testing.assert_array_equal(back.entries["a.weight"].sums, im.entries["a.weight"].sums)
    np.testing.assert_array_equal(back.entries["a.weight"].counts, [50])
    np.testing.assert_array_equal(back.entries["a.weight"].in_sums, im.entries["a.weight"].in_sums)
    assert back.datasets == ["x.txt", "y.txt"] and back.chunk_size == 10 and back.chunk_count == 5
    np.testing.assert_array_equal(back.importance("a.weight"), c.result()["a.weight"])


@pytest.mark.oracle
def test_gguf_imatrix_readable_by_gguf_py(tmp_path, rng):
    gguf = pytest.importorskip("gguf")
    write_imatrix(tmp_path / "im.gguf", _expected_imatrix())
    r = gguf.GGUFReader(tmp_path / "im.gguf")
    assert r.fields["general.type"].contents() == "imatrix"
    assert r.fields["imatrix.datasets"].contents() == ["calibration.txt"]
    sums = {t.name: np.asarray(t.data) for t in r.tensors}
    np.testing.assert_array_equal(sums["blk.0.ffn_up_exps.weight.in_sum2"],
                                  _expected_imatrix().entries["blk.0.ffn_up_exps.weight"].sums)
    np.testing.assert_array_equal(sums["blk.0.ffn_up_exps.weight.counts"].reshape(-1), [512, 0, 1536])


def _imatrix_gguf(tmp_path, tensors, meta=None):
    path = tmp_path / "bad.gguf"
    write(path, tensors, {"general.type": "imatrix", **(meta or {})})
    return path


@pytest.mark.parametrize("tensors, meta, match", [
    ({"a.in_sum2": np.ones(4, np.float32)}, None, "'a.counts': missing"),
    ({"a.counts": np.ones(1, np.float32)}, None, "'a.in_sum2': missing"),
    ({"a.in_sum2": np.ones(4, np.float32), "a.counts": np.ones(3, np.float32)}, None, "do not split into 3"),
    ({"a.in_sum2": np.ones(4, np.float32), "a.counts": -np.ones(1, np.float32)}, None, "counts must be finite, >= 0"),
    ({"a.in_sum2": np.full(4, np.nan, np.float32), "a.counts": np.ones(1, np.float32)}, None, "finite and >= 0"),
    ({"a.in_sum2": -np.ones(4, np.float32), "a.counts": np.ones(1, np.float32)}, None, "finite and >= 0"),
    ({"a.in_sum2": np.ones(4, np.float16), "a.counts": np.ones(1, np.float32)}, None, "type f16, imatrix tensors are f32"),
    ({"a.in_sum2": np.ones(4, np.float32), "a.counts": np.ones(1, np.float32), "a.in_sum": np.ones(3, np.float32)},
     None, "'a.in_sum': must be finite with as many values"),
    ({"w": np.ones(4, np.float32)}, None, "no '<name>.in_sum2'"),
    ({"a.in_sum2": np.ones(4, np.float32), "a.counts": np.ones(1, np.float32)},
     {"general.type": "model"}, "'model' is not 'imatrix'"),
    ({"a.in_sum2": np.ones(4, np.float32), "a.counts": np.ones(1, np.float32)},
     {"imatrix.datasets": [1, 2]}, "array of strings"),
    ({"a.in_sum2": np.ones(4, np.float32), "a.counts": np.ones(1, np.float32)},
     {"imatrix.chunk_count": -1}, "non-negative integer"),
])
def test_bad_gguf_imatrix(tmp_path, tensors, meta, match):
    with pytest.raises(GGUFError, match=match):
        read_imatrix(_imatrix_gguf(tmp_path, tensors, meta))


def test_count_rounding_and_missing_metadata(tmp_path):
    path = tmp_path / "im.gguf"
    write(path, {"a.in_sum2": np.full(4, 6.0, np.float32), "a.counts": np.array([2.5], np.float32)})
    im = read_imatrix(path)  # no general.type / datasets / chunk keys: defaults
    assert im.datasets == [] and im.chunk_count == 0 and im.chunk_size == 512
    np.testing.assert_array_equal(im.entries["a"].counts, [3])  # lround(2.5) = 3 (half away from zero)
    np.testing.assert_array_equal(im.importance("a"), np.full(4, 2.0, np.float32))


# --- legacy .dat -----------------------------------------------------------------------------

def _dat(entries, chunk_count=None, dataset=None) -> bytes:
    """Bytes laid out as llama.cpp's save_imatrix_legacy writes them."""
    out = struct.pack("<i", len(entries))
    for name, ncall, values in entries:
        nb = name.encode()
        out += struct.pack("<i", len(nb)) + nb + struct.pack("<ii", ncall, len(values))
        out += np.asarray(values, "<f4").tobytes()
    if chunk_count is not None:
        out += struct.pack("<i", chunk_count)
    if dataset is not None:
        out += struct.pack("<i", len(dataset.encode())) + dataset.encode()
    return out


def test_read_legacy_dat(tmp_path, rng):
    v1 = (rng.random(64) * 30).astype(np.float32)
    v2 = (rng.random(96) * 3).astype(np.float32)
    (tmp_path / "im.dat").write_bytes(_dat([("blk.0.attn_k.weight", 7, v1), ("output.weight", 3, v2)], 10, "wiki.txt"))
    im = read_imatrix(tmp_path / "im.dat")
    assert im.datasets == ["wiki.txt"] and im.chunk_count == 10 and im.chunk_size == 512
    # what llama-quantize uses: values / ncall (exact with a power-of-two chunk size)
    np.testing.assert_array_equal(im.importance("blk.0.attn_k.weight"), v1 / np.float32(7))
    np.testing.assert_array_equal(im.importance("output.weight"), v2 / np.float32(3))
    np.testing.assert_array_equal(im.entries["output.weight"].counts, [3 * 512])
    # the trailer is optional
    (tmp_path / "short.dat").write_bytes(_dat([("w", 1, v1)]))
    assert read_imatrix(tmp_path / "short.dat").chunk_count == 0
    (tmp_path / "nods.dat").write_bytes(_dat([("w", 1, v1)], 4, ""))
    assert read_imatrix(tmp_path / "nods.dat").datasets == []


def test_write_legacy_dat_matches_layout(tmp_path):
    sums = np.array([[3.0, 0.0, 7.5, 1e-3]], np.float32)
    im = Imatrix({"b.weight": ImatrixEntry(sums, np.array([1000])),
                  "a.weight": ImatrixEntry(np.array([[1.0, 2.0], [4.0, 8.0]], np.float32), np.array([300, 0])),
                  "z.weight": ImatrixEntry(np.ones((1, 2), np.float32), np.array([0]))},
                 ["first.txt", "last.txt"], chunk_count=2, chunk_size=512)
    write_imatrix(tmp_path / "im.dat", im, format="dat")
    # ncall = ceil(max count / chunk size); values = (sum / count) * ncall in float32;
    # a matrix with count 0 is stored as 1 * ncall; an entry with no data is skipped
    a_vals = np.array([1 / np.float32(300), 2 / np.float32(300), 1, 1], np.float32) * np.float32(1)
    b_vals = (sums[0] / np.float32(1000)) * np.float32(2)
    expected = _dat([("a.weight", 1, a_vals), ("b.weight", 2, b_vals)], 2, "last.txt")
    assert (tmp_path / "im.dat").read_bytes() == expected
    back = read_imatrix(tmp_path / "im.dat")
    np.testing.assert_array_equal(back.importance("b.weight"), b_vals / np.float32(2))
    assert "z.weight" not in back.entries


def test_dat_round_trip_keeps_importance(tmp_path, rng):
    c = ImatrixCollector()
    for name, n in (("x.weight", 64), ("y.weight", 32)):
        c.observe(name, (rng.standard_normal((700, n)) * 5).astype(np.float32))
    im = c.to_imatrix(["cal.txt"])
    write_imatrix(tmp_path / "im.dat", im, format="dat")
    back = read_imatrix(tmp_path / "im.dat")
    for name in im.entries:
        # (s/c)*ncall/ncall in float32: equal to within one rounding of each operation
        np.testing.assert_allclose(back.importance(name), im.importance(name), rtol=3e-7, atol=0)
    assert back.datasets == ["cal.txt"] and back.chunk_count == im.chunk_count


@pytest.mark.parametrize("blob, match", [
    (b"\x01\x00", "n_entries at offset 0: needs 4 bytes"),
    (struct.pack("<i", -1), "n_entries at offset 0: -1 entries"),
    (struct.pack("<i", 2**30), "n_entries at offset 0: 1073741824 entries cannot fit"),
    (struct.pack("<ii", 1, -5) + bytes(12), "entry #0 name length at offset 4: -5"),
    (struct.pack("<ii", 1, 2**30) + bytes(12), "entry #0 name length at offset 4: 1073741824"),
    (struct.pack("<ii", 1, 1) + b"\xff" + struct.pack("<iif", 1, 1, 1.0), "entry #0 name at offset 8: is not valid UTF-8"),
    (_dat([("w", -1, [1.0])]), "entry 'w' ncall at offset 9: -1 is negative"),
    (struct.pack("<ii", 1, 1) + b"w" + struct.pack("<iif", 1, 0, 1.0), "entry 'w' nval at offset 13: 0"),
    (struct.pack("<ii", 1, 1) + b"w" + struct.pack("<iif", 1, 2**28, 1.0), "entry 'w' values at offset 17: 268435456 elements"),
    (_dat([("w", 1, [float("nan")])]), "entry 'w' values at offset 17: must be finite"),
    (_dat([("w", 1, [-1.0])]), "must be finite and >= 0"),
    (_dat([("w", 1, [3e38])]), "overflow float32 when scaled"),
    (_dat([("w", 1, [1.0]), ("w", 1, [1.0])]), "entry #1 name at offset 25: duplicate entry 'w'"),
    (_dat([("w", 1, [1.0])], -3), "chunk_count at offset 21: -3 is negative"),
    (_dat([("w", 1, [1.0])], 1) + struct.pack("<i", 9) + b"ab", "dataset name length at offset 25: 9"),
    (_dat([("w", 1, [1.0])], 1, "ab") + b"x", "end of file at offset 31: 1 unexpected trailing bytes"),
    (_dat([("w", 1, [1.0])]) + b"xy", "chunk_count at offset 21: needs 4 bytes"),
])
def test_bad_legacy_dat(tmp_path, blob, match):
    (tmp_path / "bad.dat").write_bytes(blob)
    with pytest.raises(GGUFError, match=match):
        read_imatrix(tmp_path / "bad.dat")


def test_every_truncation_of_a_dat_file(tmp_path):
    full = _dat([("blk.0.a", 2, [1.0, 2.0]), ("blk.1.b", 1, [0.5])], 3, "data.txt")
    entries_end = len(_dat([("blk.0.a", 2, [1.0, 2.0]), ("blk.1.b", 1, [0.5])]))
    valid = {entries_end, entries_end + 4, entries_end + 8 + len("data.txt")}
    path = tmp_path / "t.dat"
    for n in range(len(full) + 1):
        path.write_bytes(full[:n])
        if n in valid:
            read_imatrix(path)
        else:
            with pytest.raises(GGUFError):
                read_imatrix(path)


def test_write_imatrix_errors(tmp_path):
    good = _expected_imatrix()
    with pytest.raises(ValueError, match="format='npz'"):
        write_imatrix(tmp_path / "x", good, format="npz")
    with pytest.raises(TypeError, match="Imatrix"):
        write_imatrix(tmp_path / "x", {"a": 1})
    bad = Imatrix({"a": ImatrixEntry(np.ones((2, 4), np.float32), np.array([1]))})
    with pytest.raises(ValueError, match="counts"):
        write_imatrix(tmp_path / "x", bad)
    with pytest.raises(ValueError, match="chunk_size"):
        write_imatrix(tmp_path / "x", Imatrix(good.entries, chunk_size=0), format="dat")
    with pytest.raises(ValueError, match="chunk_size"):
        read_imatrix(GOLDEN_IMATRIX, chunk_size=0)


# --- handing the importance to the quantizers ---------------------------------------------------

@pytest.mark.parametrize("qtype", ["q4_0", "q5_1", "q2_k", "q3_k", "q4_k", "q6_k", "iq4_nl", "iq4_xs"])
def test_imatrix_from_file_with_dead_columns_quantizes_without_nan(tmp_path, rng, qtype):
    # zero-importance columns and never-observed tensors must not give NaN
    try:
        from refquant import gguf
    except ImportError:
        pytest.skip("refquant.gguf (the block codecs) is not available yet")
    if qtype not in gguf.qtypes():
        pytest.skip(f"refquant.gguf has no {qtype} codec yet")
    n = 512
    acts = rng.standard_normal((64, n)).astype(np.float32)
    acts[:, 64:96] = 0.0  # a dead 32-column span
    acts[:, 256:512] = 0.0  # a whole 256-element super-block with no activation
    c = ImatrixCollector()
    c.observe("blk.0.ffn_up.weight", acts)
    c.observe("blk.0.ffn_gate_exps.weight", acts[:4], expert=1, n_experts=2)  # expert 0 never routed
    write_imatrix(tmp_path / "im.gguf", c.to_imatrix())
    im = read_imatrix(tmp_path / "im.gguf")
    w = rng.standard_normal((4, n)).astype(np.float32)
    for weights in (im.importance("blk.0.ffn_up.weight"), im.importance("blk.0.ffn_gate_exps.weight")[0]):
        assert weights.dtype == np.float32 and weights.shape == (n,)
        assert np.isfinite(weights).all()
        q = gguf.quantize(w, qtype, imatrix=weights)
        y = gguf.dequantize(q, qtype, w.shape)
        assert np.isfinite(y).all()
