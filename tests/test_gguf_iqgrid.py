"""ggml's grid-codebook types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M): bytes and values.

Golden vectors: ggml's own bytes and ``to_float`` values (``tools/gguf_oracle.py``, ggml
d99724f2, IQ1_M's llama.cpp 0c1e57098 (see test_gguf_codecs), with the random and zero-column
importance matrices; IQ2_XXS / IQ2_XS / IQ1_S have no plain variant because ggml requires an
imatrix for them). gguf-py's NumPy dequantizers
are a second oracle on arbitrary bytes, and its grid tables a second source of the grids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import refquant.gguf as G
from refquant.formats import FORMATS
from refquant.formats.iq_grids import GRID_NAMES, KMASK_IQ2XS, KSIGNS_IQ2XS, grid

GOLDEN = Path(__file__).parent / "golden" / "gguf"
IQ_GRID_TYPES = ("iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m")
BPW = {"iq2_xxs": 2.0625, "iq2_xs": 2.3125, "iq2_s": 2.5625, "iq3_xxs": 3.0625, "iq3_s": 3.4375,
       "iq1_s": 1.5625, "iq1_m": 1.75}


def _cases():
    for qtype in IQ_GRID_TYPES:
        with np.load(GOLDEN / f"{qtype}.npz") as z:
            for name in z["imatrix_names"]:
                yield pytest.param(qtype, str(name), id=f"{qtype}-{name}")


@pytest.mark.parametrize("qtype, imatrix_name", list(_cases()))
def test_dequantize_ggml_golden_bytes(qtype, imatrix_name):
    with np.load(GOLDEN / f"{qtype}.npz") as z:
        data, y_expected, shape = z[f"bytes_{imatrix_name}"], z[f"y_{imatrix_name}"], z["x"].shape
    y = G.dequantize(data, qtype, shape)
    np.testing.assert_array_equal(y.view(np.uint32), y_expected.view(np.uint32))


def test_ggml_requires_imatrix_exactly_for_these():
    for qtype in IQ_GRID_TYPES:
        with np.load(GOLDEN / f"{qtype}.npz") as z:
            has_plain = "none" in [str(n) for n in z["imatrix_names"]]
        assert FORMATS[qtype].requires_imatrix == (not has_plain) == (qtype in ("iq2_xxs", "iq2_xs", "iq1_s"))


@pytest.mark.parametrize("qtype", IQ_GRID_TYPES)
def test_dequantize_matches_gguf_py_on_arbitrary_bytes(qtype):
    gq = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType

    fmt = FORMATS[qtype]
    rng = np.random.default_rng(sum(map(ord, qtype)))
    n = 48
    data = rng.integers(0, 256, (n, fmt.type_size), dtype=np.uint8)
    # finite scales, so NaN payloads don't enter the comparison
    if "d" in fmt.dtype.names:
        data[:, :2] = (rng.standard_normal(n) * 0.05).astype(np.float16).view(np.uint8).reshape(n, 2)
    else:   # IQ1_M: d's sign and top exponent bits are the high nibble of the last byte
        data[:, -1] = (data[:, -1] & 0x0F) | 0x30
    with np.errstate(invalid="ignore", over="ignore"):   # gguf-py on IQ1_M scale bits that make NaN d
        expected = np.asarray(gq.dequantize(data.reshape(-1), GGMLQuantizationType[qtype.upper()]),
                              np.float32).reshape(-1)
    got = G.dequantize(data.reshape(-1), qtype, (n * 256,))
    finite = np.isfinite(expected)
    assert finite.all()
    np.testing.assert_array_equal(got.view(np.uint32)[finite], expected.view(np.uint32)[finite])
    assert np.isnan(got[~finite]).all() or np.array_equal(got[~finite], expected[~finite])


def test_grids_match_gguf_py_tables():
    gq = pytest.importorskip("gguf.quants")
    owners = {"iq2xxs_grid": gq.IQ2_XXS, "iq2xs_grid": gq.IQ2_XS, "iq2s_grid": gq.IQ2_S,
              "iq3xxs_grid": gq.IQ3_XXS, "iq3s_grid": gq.IQ3_S, "iq1s_grid": gq.IQ1_S}
    for name in GRID_NAMES:
        cls = owners[name]
        cls.init_grid()
        theirs = np.asarray(cls.grid, np.float64).reshape(grid(name).shape)
        np.testing.assert_array_equal(grid(name).astype(np.float64), theirs, err_msg=name)


def test_sign_tables_follow_their_rule():
    """ksigns_iq2xs (ggml-common.h): 7 sign bits and an even-parity 8th; kmask: one bit each."""
    assert KMASK_IQ2XS.tolist() == [1, 2, 4, 8, 16, 32, 64, 128]
    assert KSIGNS_IQ2XS[:8].tolist() == [0, 129, 130, 3, 132, 5, 6, 135]
    assert KSIGNS_IQ2XS[127] == 255
    assert all(bin(int(v)).count("1") % 2 == 0 for v in KSIGNS_IQ2XS)


def test_grid_values():
    """Magnitudes as ggml's quantizers index them (e.g. (2 * grid - 1) / 2 in iq2 code)."""
    for name in ("iq2xxs_grid", "iq2xs_grid", "iq2s_grid"):
        assert set(np.unique(grid(name)).tolist()) == {8, 25, 43}
    assert set(np.unique(grid("iq3xxs_grid")).tolist()) <= {4, 12, 20, 28, 36, 44, 52, 62}
    assert set(np.unique(grid("iq3s_grid")).tolist()) <= set(range(1, 16, 2))
    assert set(np.unique(grid("iq1s_grid")).tolist()) == {-1, 0, 1}
    assert len({bytes(r) for r in grid("iq2s_grid")}) == 1024                   # distinct lattice points


@pytest.mark.parametrize("qtype", IQ_GRID_TYPES)
def test_layout_and_bits_per_weight(qtype):
    gguf = pytest.importorskip("gguf")
    fmt = FORMATS[qtype]
    gtype = gguf.GGMLQuantizationType[qtype.upper()]
    assert fmt.type_id == int(gtype)
    assert (fmt.block_size, fmt.type_size) == tuple(gguf.GGML_QUANT_SIZES[gtype])
    assert fmt.bits_per_weight() == BPW[qtype]
    assert qtype in G.qtypes()


QUANTIZED = IQ_GRID_TYPES


@pytest.mark.parametrize("qtype", QUANTIZED)
def test_quantizes_like_ggml(qtype):
    """The grid searches (refquant.formats.gguf_iqgrid_search) against ggml's bytes, every row
    kind, with and without importance matrices (also in test_gguf_codecs' golden test)."""
    with np.load(GOLDEN / f"{qtype}.npz") as z:
        x = z["x"]
        for k, name in enumerate(str(n) for n in z["imatrix_names"]):
            got = G.quantize(x, qtype, None if name == "none" else z["imatrix"][k])
            np.testing.assert_array_equal(got, z[f"bytes_{name}"], err_msg=name)


def test_iq3_s_zero_sub_block_shifts_the_following_bytes():
    """ggml's IQ3_S writer does not advance qs / signs past an all-zero sub-block: the next
    sub-blocks' grid indices and signs move up, and the tail stays zero."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(256).astype(np.float32)
    x[32:64] = 0.0
    b = G.quantize(x, "iq3_s").view(FORMATS["iq3_s"].dtype)[0]
    x2 = np.concatenate([x[:32], x[64:], np.zeros(32, np.float32)])    # the same live sub-blocks, moved up
    b2 = G.quantize(x2, "iq3_s").view(FORMATS["iq3_s"].dtype)[0]
    assert (b["qs"][56:] == 0).all() and (b["signs"][28:] == 0).all()
    np.testing.assert_array_equal(b["qs"][:56], b2["qs"][:56])
    np.testing.assert_array_equal(b["signs"][:28], b2["signs"][:28])


def test_iq3_xxs_neighbour_tables():
    """iq3xs_init_impl(256): 256 points on the grid, every other point of the 8^4 lattice
    has neighbours within its two nearest distances, ordered by (distance, index)."""
    from refquant.formats.gguf_iqgrid_search import iq3_tables

    levels, kmap, neighbours = iq3_tables()
    assert (kmap >= 0).sum() == 256 and (kmap[kmap >= 0] == np.arange(256)[np.argsort(
        (levels << (3 * np.arange(4))).sum(1))]).all()
    off = kmap < 0
    assert ((neighbours[off] >= 0).sum(1) >= 1).all() and (neighbours[~off] < 0).all()
    pos = 2 * ((np.arange(4096)[:, None] >> (3 * np.arange(4))) & 7) + 1
    i = int(np.flatnonzero(off)[123])
    nb = neighbours[i][neighbours[i] >= 0]
    d2 = (((2 * levels[nb] + 1) - pos[i]) ** 2).sum(1)
    assert (np.diff(d2) >= 0).all() and len(np.unique(d2)) <= 2


def test_imatrix_required_like_ggml():
    x = np.zeros((1, 256), np.float32)
    with pytest.raises(ValueError, match="iq1_s needs an importance matrix"):
        G.quantize(x, "iq1_s")
    with pytest.raises(ValueError, match="iq2_xxs needs an importance matrix"):
        G.quantize(x, "iq2_xxs")


def test_dequantize_checks_sizes_and_does_not_mutate():
    fmt = FORMATS["iq2_s"]
    data = np.zeros(2 * fmt.type_size, np.uint8)
    keep = data.copy()
    assert G.dequantize(data, "iq2_s", (512,)).shape == (512,)
    np.testing.assert_array_equal(data, keep)
    with pytest.raises(ValueError, match="bytes"):
        G.dequantize(data[:-1], "iq2_s", (512,))
