"""K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K): bytes and values equal ggml's.

Golden vectors (``tests/golden/gguf/<type>.npz``, made by ``tools/gguf_oracle.py`` from
ggml @ d99724f2) fix the bytes of ``ggml_quantize_chunk`` with and without an importance
matrix and the floats of ggml's dequantizers; ``kquants_adversarial.npz``
(``tools/kquants_golden.py``, a release build of the same ggml) adds rows mixed sub-block
by sub-block from 14 kinds, magnitudes whose float32 sums overflow, and importance vectors
with zero, all-zero and vanishing columns. gguf-py's NumPy dequantizer is a second,
independent oracle for the values. The remaining tests check the rules the format
documents promise: the nearest-level property of the requantize step, degenerate
blocks, zero-importance columns, block independence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import refquant.gguf as gguf_api
from refquant.formats import FORMATS
from refquant.formats.gguf_kquants_search import make_qkx_quants, make_qp_quants, make_qx_quants

GOLDEN = Path(__file__).parent / "golden" / "gguf"
ADVERSARIAL = GOLDEN / "kquants_adversarial.npz"
KQUANTS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_k")
WITH_IMATRIX = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")

# (bits per weight, code range) of each type; bpw from ggml-common.h's block sizes
EXPECTED_BPW = {"q2_k": 2.625, "q3_k": 3.4375, "q4_k": 4.5, "q5_k": 5.5, "q6_k": 6.5625, "q8_k": 9.125}


def _golden(qtype: str):
    return np.load(GOLDEN / f"{qtype}.npz")


def _golden_cases():
    for qtype in KQUANTS:
        for name in _golden(qtype)["imatrix_names"]:
            yield pytest.param(qtype, str(name), id=f"{qtype}-{name}")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def _rows(rng: np.random.Generator, n_rows: int, n_per_row: int) -> np.ndarray:
    """Rows mixing sub-blocks of very different scale, sign and sparsity."""
    n_sub = n_rows * n_per_row // 16
    scale = 10.0 ** rng.uniform(-6, 4, n_sub)
    kind = rng.integers(0, 5, n_sub)
    x = rng.standard_normal((n_sub, 16)) * scale[:, None]
    x[kind == 1] = np.abs(x[kind == 1])
    x[kind == 2] = 0.0
    x[kind == 3] = scale[kind == 3, None]  # constant sub-block
    x[kind == 4] *= rng.random((int((kind == 4).sum()), 16)) < 0.2  # sparse
    return x.reshape(n_rows, n_per_row).astype(np.float32)


# --- ggml's bytes and values ---------------------------------------------------------------

@pytest.mark.parametrize("qtype,imatrix_name", list(_golden_cases()))
def test_quantize_matches_ggml_golden(qtype: str, imatrix_name: str) -> None:
    g = _golden(qtype)
    names = [str(n) for n in g["imatrix_names"]]
    imatrix = None if imatrix_name == "none" else g["imatrix"][names.index(imatrix_name)]
    got = gguf_api.quantize(g["x"], qtype, imatrix)
    want = g[f"bytes_{imatrix_name}"]
    bad = np.flatnonzero((got != want).any(axis=1))
    assert bad.size == 0, f"{qtype}/{imatrix_name}: rows {bad.tolist()} ({[str(g['kinds'][i]) for i in bad]}) differ"


@pytest.mark.parametrize("qtype,imatrix_name", list(_golden_cases()))
def test_dequantize_matches_ggml_golden(qtype: str, imatrix_name: str) -> None:
    g = _golden(qtype)
    y = gguf_api.dequantize(g[f"bytes_{imatrix_name}"], qtype, g["x"].shape)
    np.testing.assert_array_equal(_bits(y), _bits(g[f"y_{imatrix_name}"]))


def _adversarial_cases():
    g = np.load(ADVERSARIAL)
    for qtype in KQUANTS:
        for name in g["imatrix_names"]:
            if f"bytes_{qtype}_{name}" in g:
                yield pytest.param(qtype, str(name), id=f"{qtype}-{name}")


@pytest.mark.parametrize("qtype,imatrix_name", list(_adversarial_cases()))
def test_quantize_matches_ggml_adversarial(qtype: str, imatrix_name: str) -> None:
    g = np.load(ADVERSARIAL)
    names = [str(n) for n in g["imatrix_names"]]
    imatrix = None if imatrix_name == "none" else g["imatrix"][names.index(imatrix_name)]
    got = gguf_api.quantize(g["x"], qtype, imatrix)
    want = g[f"bytes_{qtype}_{imatrix_name}"]
    bad = np.argwhere((got != want).reshape(got.shape[0], -1, FORMATS[qtype].type_size).any(axis=2))
    assert bad.size == 0, f"{qtype}/{imatrix_name}: (row, super-block) {bad.tolist()[:8]} differ"


@pytest.mark.parametrize("qtype", WITH_IMATRIX)
def test_adversarial_dequantize_matches_gguf_py(qtype: str) -> None:
    """Values too, including the NaN that an overflowed fp16 scale times code 0 gives:
    NaN only appears in super-blocks holding values far beyond the fp16 range."""
    gq = pytest.importorskip("gguf.quants")
    from gguf.constants import GGMLQuantizationType

    g = np.load(ADVERSARIAL)
    huge = (g["kinds"] == "huge").reshape(g["x"].shape[0], -1, 16).any(axis=2)  # per super-block
    for name in g["imatrix_names"]:
        data = g[f"bytes_{qtype}_{name}"]
        y = gguf_api.dequantize(data, qtype, g["x"].shape)
        with np.errstate(invalid="ignore"):  # gguf-py computes inf·0 in the overflowed blocks
            want = gq.dequantize(data, GGMLQuantizationType[qtype.upper()])
        np.testing.assert_array_equal(_bits(y), _bits(want))
        nan_blocks = np.isnan(y).reshape(huge.shape + (256,)).any(axis=2)
        assert not (nan_blocks & ~huge).any()


@pytest.mark.parametrize("qtype", WITH_IMATRIX)
def test_dequantize_matches_gguf_py(qtype: str, rng: np.random.Generator) -> None:
    gq = pytest.importorskip("gguf.quants")
    from gguf.constants import GGMLQuantizationType

    x = np.concatenate([_golden(qtype)["x"], _rows(rng, 8, 512)])
    data = gguf_api.quantize(x, qtype)
    want = gq.dequantize(data, GGMLQuantizationType[qtype.upper()])
    np.testing.assert_array_equal(_bits(gguf_api.dequantize(data, qtype, x.shape)), _bits(want))


@pytest.mark.parametrize("qtype", KQUANTS)
def test_layout_matches_gguf_py_and_bpw(qtype: str) -> None:
    fmt = FORMATS[qtype]
    assert fmt.bits_per_weight() == EXPECTED_BPW[qtype]
    constants = pytest.importorskip("gguf.constants")
    ggml_type = constants.GGMLQuantizationType[qtype.upper()]
    assert int(ggml_type) == fmt.type_id
    assert constants.GGML_QUANT_SIZES[ggml_type] == (fmt.block_size, fmt.type_size)


# --- the rules --------------------------------------------------------------------------------

def _unit_blocks(fmt, blocks: np.ndarray, code: int) -> np.ndarray:
    """Copies of ``blocks`` whose every value has the signed code ``code`` (0 or 1);
    decoding them gives each sub-block's offset (code 0) and offset + step (code 1)."""
    b = blocks.copy()
    if fmt.name in ("q2_k",):
        b["qs"] = 0x55 * code
    elif fmt.name in ("q4_k", "q5_k"):
        b["qs"] = 0x11 * code
        if fmt.name == "q5_k":
            b["qh"] = 0
    elif fmt.name == "q3_k":  # q = (low2 | hmask bit << 2) - 4
        b["hmask"] = 0xFF
        b["qs"] = 0x55 * code
    elif fmt.name == "q6_k":  # q = (ql nibble | qh pair << 4) - 32
        b["ql"] = 0x11 * code
        b["qh"] = 0xAA
    return fmt.dequantize_blocks(b)


@pytest.mark.parametrize("use_imatrix", [False, True], ids=["ref", "imatrix"])
@pytest.mark.parametrize("qtype", WITH_IMATRIX)
def test_codes_are_nearest_level_of_decoded_scales(qtype: str, use_imatrix: bool, rng: np.random.Generator) -> None:
    """Requantize: every value that lies inside its sub-block's grid gets the level nearest
    to it, computed from the fp16-decoded scales (up to float32 rounding)."""
    fmt = FORMATS[qtype]
    x = (rng.laplace(size=(16, 256)) * 10.0 ** rng.uniform(-4, 4, (16, 1))).astype(np.float32)
    x[3, :16] = 0.0  # a sub-block that keeps its search codes
    weights = rng.random(x.shape).astype(np.float32) if use_imatrix else None
    blocks = fmt.quantize_blocks(x, weights)
    y = fmt.dequantize_blocks(blocks)
    offset = _unit_blocks(fmt, blocks, 0).astype(np.float64)
    step = _unit_blocks(fmt, blocks, 1).astype(np.float64) - offset
    lo, hi = {"q2_k": (0, 3), "q3_k": (-4, 3), "q4_k": (0, 15), "q5_k": (0, 31), "q6_k": (-32, 31)}[qtype]
    level = (x - offset) / np.where(step != 0, step, 1)
    inside = (np.abs(step) > 0) & (level > lo - 0.5) & (level < hi + 0.5)
    assert inside.mean() > 0.9, "the test rows should mostly exercise the requantize step"
    err = np.abs(x.astype(np.float64) - y)
    slack = 1e-6 * (np.abs(x) + np.abs(offset) + np.abs(step) * max(abs(lo), hi))
    assert np.all(err[inside] <= 0.5 * np.abs(step[inside]) + slack[inside])


@pytest.mark.parametrize("qtype", KQUANTS)
def test_all_zero_rows_are_zero_bytes(qtype: str) -> None:
    x = np.zeros((2, 512), np.float32)
    x[1] = -0.0
    imatrix = None if qtype == "q8_k" else np.ones(512, np.float32)
    for im in (None, imatrix):
        data = gguf_api.quantize(x, qtype, im)
        assert not data.any()
        y = gguf_api.dequantize(data, qtype, x.shape)
        assert not y.any()


@pytest.mark.parametrize("qtype", WITH_IMATRIX)
def test_zero_importance_never_gives_nan(qtype: str, rng: np.random.Generator) -> None:
    """Zero, partly zero or vanishing importance must not produce NaN."""
    x = _rows(rng, 4, 512)
    x[1, ::3] = 0.0
    partial = rng.random(512).astype(np.float32)
    partial[rng.random(512) < 0.4] = 0.0
    partial[64:128] = 0.0
    for imatrix in (np.zeros(512, np.float32), partial, np.full(512, 1e-30, np.float32)):
        data = gguf_api.quantize(x, qtype, imatrix)
        y = gguf_api.dequantize(data, qtype, x.shape)
        assert np.isfinite(y).all()


def test_q6_k_imatrix_path_weights_by_raw_importance(rng: np.random.Generator) -> None:
    """quantize_row_q6_K_impl hands the importance straight to make_qx_quants, whose
    default weights (the _ref path) are x²: so importance x² reproduces the _ref bytes."""
    fmt = FORMATS["q6_k"]
    x = _rows(rng, 2, 512).reshape(-1, 256)
    assert np.array_equal(fmt.quantize_blocks(x, x * x), fmt.quantize_blocks(x, None))


def test_q8_k_rounds_half_to_even() -> None:
    """Q8_K: iscale = -127/max; with max = -127 the codes are nearest_int(x) exactly."""
    x = np.zeros(256, np.float32)
    x[:6] = [-127.0, 2.5, 3.5, -2.5, 0.5, 126.5]
    block = FORMATS["q8_k"].quantize_blocks(x[None], None)[0]
    assert block["d"] == np.float32(1.0)
    assert block["qs"][:6].tolist() == [-127, 2, 4, -2, 0, 126]  # C roundf would give 3, -3, 1, 127
    assert block["bsums"].tolist() == [int(block["qs"][16 * k:16 * k + 16].sum()) for k in range(16)]


@pytest.mark.parametrize("qtype", KQUANTS)
def test_rows_are_quantized_independently(qtype: str, rng: np.random.Generator) -> None:
    """Bytes of a row do not depend on the other rows, nor on how the blocks are chunked
    (600 super-blocks span three of the codec's chunks)."""
    x = _rows(rng, 2, 256 * 300)
    imatrix = None if qtype == "q8_k" else rng.random(x.shape[1]).astype(np.float32)
    together = gguf_api.quantize(x, qtype, imatrix)
    for i in range(2):
        assert np.array_equal(together[i], gguf_api.quantize(x[i], qtype, imatrix))


@pytest.mark.parametrize("qtype", KQUANTS)
def test_inputs_are_not_mutated_and_bad_lengths_raise(qtype: str, rng: np.random.Generator) -> None:
    x = _rows(rng, 2, 512)
    imatrix = rng.random(512).astype(np.float32)
    x0, im0 = x.copy(), imatrix.copy()
    gguf_api.quantize(x, qtype, imatrix)
    assert np.array_equal(x, x0) and np.array_equal(imatrix, im0)
    with pytest.raises(ValueError, match="256"):
        gguf_api.quantize(np.ones((2, 300), np.float32), qtype)


# --- the shared searches -------------------------------------------------------------------

def test_make_qp_quants_zero_weights_give_zero_scale() -> None:
    """ggml returns 0 when Σw·l² = 0 (weights zero wherever codes are non-zero)."""
    x = np.array([[0.5, 1.0, 0.25, 0.75, 0.0, 0.1, 0.2, 0.3]], np.float32)
    scale, codes = make_qp_quants(x, 63, np.zeros_like(x))
    assert scale[0] == 0.0 and np.isfinite(scale).all()
    assert codes.max() <= 63


def test_make_qkx_quants_flat_and_zero_sub_blocks() -> None:
    """min starts at min(x, 0); a sub-block with max == min (all zero, or constant
    negative) gets scale 0, codes 0 and the_min = -min."""
    x = np.array([np.full(16, 2.0), np.zeros(16), np.full(16, -3.0)], np.float32)
    fit = make_qkx_quants(x, np.ones_like(x), 3, -0.5, 0.1, 15, use_mad=True)
    assert fit.scale[0] == np.float32(2.0 / 3.0) and fit.the_min[0] == 0.0  # levels 0..3 of 2/3
    assert (fit.codes[0] == 3).all()
    assert fit.scale[1] == 0.0 and fit.the_min[1] == 0.0 and not fit.codes[1].any()
    assert fit.scale[2] == 0.0 and fit.the_min[2] == 3.0 and not fit.codes[2].any()


def test_make_qx_quants_sign_convention_and_zero_sub_block() -> None:
    """The search starts from iscale = -nmax/max with max the first element of largest
    magnitude, so the scale's sign is opposite to that element's (codes near -nmax on
    its side, which has the extra level); an all-zero sub-block stores code 0, not nmax."""
    x = np.zeros((3, 16), np.float32)
    x[0, :4] = [1.0, -4.0, 2.0, 4.0]  # -4 comes first
    x[1, :4] = [1.0, 4.0, 2.0, -4.0]  # +4 comes first
    scale, codes = make_qx_quants(x, 4)
    assert scale[0] > 0 and scale[1] < 0
    assert codes[0, 1] < 4 and codes[1, 1] < 4  # the largest element is on the -nmax side
    decoded = (codes[:2].astype(np.float32) - 4) * scale[:2, None]
    assert np.abs(decoded - x[:2]).max() <= 0.5 * np.abs(scale[:2]).max() * 1.0001
    assert scale[2] == 0.0 and not codes[2].any()


def test_scan_absmax_is_ggmls_scan_on_ties_zeros_nan_and_inf():
    """scan_absmax equals ggml's element-by-element scan (written out here in Python):
    first of equal magnitudes, +0 for all-zero (and -0) rows, NaN skipped, inf kept."""
    from refquant.formats.gguf_kquants_search import scan_absmax

    nan, inf = np.float32(np.nan), np.float32(np.inf)
    rows = np.array([[1, -3, 3, 2], [0, -0.0, 0, 0], [-0.0, -0.0, -0.0, -0.0], [nan, -2, nan, 1],
                     [nan, nan, nan, nan], [-inf, 5, inf, nan], [2, -2, 2, -2], [-1e-30, 0, 1e-30, 0]],
                    np.float32)

    def c_scan(row):
        amax = vmax = np.float32(0)
        for v in row:
            if abs(v) > amax:
                amax, vmax = abs(v), v
        return vmax, amax

    got_max, got_amax = scan_absmax(rows)
    want = np.array([c_scan(r) for r in rows], np.float32)
    np.testing.assert_array_equal(got_max.view(np.uint32), want[:, 0].view(np.uint32))
    np.testing.assert_array_equal(got_amax.view(np.uint32), want[:, 1].view(np.uint32))
