"""refquant.gguf block codecs: golden vectors from ggml, gguf-py as an oracle, invariants,
and the error contract.

Golden vectors (``tests/golden/gguf/<type>.npz``) were written by ``tools/gguf_oracle.py``
from ggml-org/ggml @ d99724f2 (``ggml_quantize_chunk`` and ``to_float``), IQ1_M's from
llama.cpp @ 0c1e57098 (whose IQ1_M split search changed; the rest of ``ggml-quants.c`` is the
same); see the README there. Every registered type with a golden file is checked, so the K-quants join
automatically when they register.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import refquant.gguf as G
from refquant.formats import FORMATS
from refquant.formats._ggml_math import (
    c_int, first_max, first_max_cols, first_min, first_min_cols, nearest_int, roundf, seq_sum, signed_absmax,
    signed_absmax_cols,
)

GOLDEN = Path(__file__).parent / "golden" / "gguf"
GGML_COMMIT = "d99724f2b141fed9e1a9f402213506c081433465"
GOLDEN_COMMIT = {"iq1_m": "ggml-org/llama.cpp@0c1e57098"}   # the types not from GGML_COMMIT
ALL_QTYPES = ("f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "q2_k", "q3_k", "q4_k",
              "q5_k", "q6_k", "q8_k", "tq1_0", "tq2_0", "iq4_nl", "iq4_xs", "mxfp4", "nvfp4", "iq3_xxs", "iq3_s", "iq2_xxs", "iq2_xs", "iq2_s", "iq1_s", "iq1_m")
REGISTERED = tuple(t for t in ALL_QTYPES if t in FORMATS)
# the types gguf-py 0.19 can quantize (it dequantizes all of ours except q8_1 / q8_k)
GGUFPY_QUANTIZES = ("f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "tq1_0", "tq2_0", "mxfp4")
GGUFPY_DEQUANTIZES = tuple(t for t in ALL_QTYPES if t not in ("q8_1", "q8_k"))
SEARCH_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "iq4_xs", "iq3_xxs", "iq3_s")  # the imatrix changes their bytes


def _golden_cases():
    for qtype in REGISTERED:
        path = GOLDEN / f"{qtype}.npz"
        if path.exists():
            with np.load(path) as z:
                names = [str(n) for n in z["imatrix_names"]]
            for name in names:
                yield pytest.param(qtype, name, id=f"{qtype}-{name}")


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


# --- golden vectors ---------------------------------------------------------------------------

def test_every_type_has_golden_vectors():
    missing = [t for t in ALL_QTYPES if not (GOLDEN / f"{t}.npz").exists()]
    assert not missing
    for t in ALL_QTYPES:
        with np.load(GOLDEN / f"{t}.npz") as z:
            assert str(z["ggml_commit"]) == GOLDEN_COMMIT.get(t, GGML_COMMIT)
            assert str(z["qtype"]) == t


@pytest.mark.parametrize("qtype,imatrix_name", list(_golden_cases()))
def test_golden_bytes_and_values(qtype, imatrix_name):
    with np.load(GOLDEN / f"{qtype}.npz") as z:
        x = z["x"]
        k = [str(n) for n in z["imatrix_names"]].index(imatrix_name)
        imatrix = None if imatrix_name == "none" else z["imatrix"][k]
        expected = z[f"bytes_{imatrix_name}"]
        y_expected = z[f"y_{imatrix_name}"] if f"y_{imatrix_name}" in z else None
        kinds = [str(s) for s in z["kinds"]]
    got = G.quantize(x, qtype, imatrix)
    assert got.shape == expected.shape and got.dtype == np.uint8
    bad_rows = np.flatnonzero((got != expected).any(axis=1))
    assert bad_rows.size == 0, f"{qtype}/{imatrix_name}: rows {[kinds[r] for r in bad_rows]} differ from ggml"
    if y_expected is not None:
        y = G.dequantize(expected, qtype, x.shape)
        np.testing.assert_array_equal(_bits(y), _bits(y_expected))


def test_golden_q8_1_values_are_q_times_d():
    """ggml has no Q8_1 dequantizer; refquant decodes q·f32(d) (s is ignored)."""
    with np.load(GOLDEN / "q8_1.npz") as z:
        data, x = z["bytes_none"], z["x"]
    blocks = data.reshape(-1).view(FORMATS["q8_1"].dtype)
    expected = blocks["qs"].astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    np.testing.assert_array_equal(G.dequantize(data, "q8_1", x.shape), expected.reshape(x.shape))


@pytest.mark.parametrize("qtype", [t for t in SEARCH_TYPES if t in FORMATS])
def test_golden_imatrix_changes_bytes(qtype):
    """The imatrix path is a different search: the golden bytes differ from the plain ones."""
    with np.load(GOLDEN / f"{qtype}.npz") as z:
        assert (z["bytes_none"] != z["bytes_random"]).any()


# --- gguf-py as an oracle -----------------------------------------------------------------------

def _adversarial_rows(rng: np.random.Generator, n: int, *, negative_zero: bool = True) -> np.ndarray:
    """Rows of every adversarial kind, n values each (n a multiple of 256)."""
    rows = [
        rng.standard_normal(n), rng.standard_t(1.5, n), np.zeros(n), np.full(n, 0.3), np.full(n, -7.0),
        rng.standard_normal(n) * 1e-11, rng.uniform(6.0e4, 65504.0, n) * rng.choice([-1, 1], n),
        rng.integers(-16, 16, n) + rng.choice([0.0, 0.5], n), np.abs(rng.standard_normal(n)),
    ]
    outlier = rng.standard_normal(n) * 0.01
    outlier[rng.integers(0, n)] = 1e4
    rows.append(outlier)
    if negative_zero:
        rows.append(np.full(n, -0.0))
    return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("qtype", [t for t in GGUFPY_QUANTIZES if t in FORMATS])
def test_quantize_matches_gguf_py(qtype, rng):
    gq = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType

    # gguf-py's Q4_0/Q5_0 give an all -0.0 block d = +0 where ggml gives -0.0 (see
    # test_negative_zero_block_scale), so those rows are checked separately.
    x = _adversarial_rows(rng, 512, negative_zero=False)
    expected = np.asarray(gq.quantize(x, GGMLQuantizationType[qtype.upper()]))
    np.testing.assert_array_equal(G.quantize(x, qtype), expected.view(np.uint8).reshape(x.shape[0], -1))


@pytest.mark.parametrize("qtype", [t for t in GGUFPY_DEQUANTIZES if t in FORMATS])
def test_dequantize_matches_gguf_py(qtype, rng):
    gq = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType

    x = _adversarial_rows(rng, 512)
    plain = () if FORMATS[qtype].requires_imatrix else (G.quantize(x, qtype),)
    for data in (*plain, G.quantize(x, qtype, rng.gamma(1.0, 1.0, 512).astype(np.float32))):
        expected = gq.dequantize(data, GGMLQuantizationType[qtype.upper()]).reshape(x.shape)
        np.testing.assert_array_equal(_bits(G.dequantize(data, qtype, x.shape)), _bits(expected.astype(np.float32)))


def test_negative_zero_block_scale():
    """ggml's absmax scan starts from max = 0.0f, so any all-zero block (+0 or -0) gets
    d = 0.0f / -8 = -0.0 (fp16 0x8000) in Q4_0 and Q5_0; gguf-py takes the -0.0 element
    itself and writes +0. The golden vectors (rows 'zero') pin ggml's answer."""
    for qtype, bs in (("q4_0", 18), ("q5_0", 22)):
        for z in (0.0, -0.0):
            d = G.quantize(np.full(32, z, np.float32), qtype)[:2].view(np.uint16)[0]
            assert d == 0x8000, (qtype, z)
        assert G.quantize(np.full(32, -0.0, np.float32), qtype).size == bs


# --- invariants -------------------------------------------------------------------------------

@pytest.mark.parametrize("qtype", [t for t in ("f16", "bf16", "q4_0", "q5_0", "q8_0", "tq1_0", "tq2_0", "mxfp4")
                                   if t in FORMATS])
def test_quantize_is_idempotent_on_decoded_values(qtype, rng):
    """Re-quantizing decoded values gives the same bytes (the grid point is the answer).
    The ~1e-11 row is left out: its fp16 block scale underflows to 0, so it decodes to zeros.
    (Q8_1 is not idempotent: its s = fp16(Σq·d) uses the unrounded float32 d.)"""
    x = np.delete(_adversarial_rows(rng, 256), 5, axis=0)
    q = G.quantize(x, qtype)
    y = G.dequantize(q, qtype, x.shape)
    np.testing.assert_array_equal(G.quantize(y, qtype), q)


# nmse bounds on N(0, 1) rows: measured values (tq 0.65, q4_0 0.0074, q4_1 0.0060, iq4 0.0059,
# mxfp4 0.013, q5_0 0.0018, q5_1 0.0014, q8 2.9e-5, f16 4.4e-8, bf16 2.8e-6) plus ~30 %
NMSE_BOUND = {"tq2_0": 0.85, "tq1_0": 0.85, "q4_0": 0.0096, "q4_1": 0.0078, "iq4_nl": 0.0077, "iq4_xs": 0.0077,
              "mxfp4": 0.017, "q5_0": 0.0024, "q5_1": 0.0019, "q8_0": 3.8e-5, "q8_1": 3.8e-5, "f16": 5.8e-8,
              "bf16": 3.7e-6}


@pytest.mark.parametrize("qtype", [t for t in NMSE_BOUND if t in FORMATS])
@pytest.mark.parametrize("with_imatrix", [False, True], ids=["plain", "imatrix"])
def test_reconstruction_error_bound(qtype, with_imatrix, rng):
    x = rng.standard_normal((8, 1024)).astype(np.float32)
    im = rng.gamma(2.0, 1.0, 1024).astype(np.float32) if with_imatrix else None
    y = G.dequantize(G.quantize(x, qtype, im), qtype, x.shape)
    nmse = float(np.sum((y.astype(np.float64) - x) ** 2) / np.sum(x.astype(np.float64) ** 2))
    assert nmse < NMSE_BOUND[qtype]


@pytest.mark.parametrize("qtype", [t for t in ("q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "iq4_xs") if t in FORMATS])
def test_imatrix_lowers_weighted_error(qtype, rng):
    """The imatrix search minimizes weighted error: with strongly uneven importance the
    importance-weighted error is lower than the plain quantizer's."""
    x = rng.standard_normal((16, 512)).astype(np.float32)
    im = (rng.random(512) < 0.1).astype(np.float32) * 100 + 0.01
    err = {}
    for key, imatrix in (("plain", None), ("imatrix", im)):
        y = G.dequantize(G.quantize(x, qtype, imatrix), qtype, x.shape)
        err[key] = float(np.sum(im * (y.astype(np.float64) - x) ** 2))
    assert err["imatrix"] < err["plain"]


def test_bits_per_weight_orders_types():
    bpw = {t: 8 * G.block_bits(t)[0] / G.block_bits(t)[1] for t in REGISTERED}
    assert bpw["tq1_0"] < bpw["tq2_0"] < bpw["iq4_xs"] < bpw["q4_0"] < bpw["q5_0"] < bpw["q8_0"] < bpw["f16"]


@pytest.mark.parametrize("qtype", REGISTERED)
def test_zero_importance_gives_no_nan(qtype, rng):
    """An all-zero imatrix, or zero columns, must not produce NaN."""
    x = _adversarial_rows(rng, 512)
    for im in (np.zeros(512, np.float32), np.where(rng.random(512) < 0.5, 0.0, 1.0).astype(np.float32)):
        y = G.dequantize(G.quantize(x, qtype, im), qtype, x.shape)
        assert not np.isnan(y).any()


@pytest.mark.parametrize("qtype", REGISTERED)
def test_no_input_mutation_and_determinism(qtype, rng):
    x = _adversarial_rows(rng, 256)
    im = rng.gamma(1.0, 1.0, 256).astype(np.float32)
    x0, im0 = x.copy(), im.copy()
    q1 = G.quantize(x, qtype, im)
    q2 = G.quantize(x, qtype, im)
    np.testing.assert_array_equal(q1, q2)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(im, im0)
    q0 = q1.copy()
    G.dequantize(q1, qtype, x.shape)
    np.testing.assert_array_equal(q1, q0)


@pytest.mark.parametrize("qtype", REGISTERED)
def test_block_table_matches_gguf_py(qtype):
    """type_size and block size are derived from the declared fields; gguf-py's table agrees
    (except Q8_1, where gguf-py 0.19 lists 40 bytes, an older float32 layout: ggml's
    block_q8_1 is 36 bytes, checked against ggml's type traits by tools/gguf_oracle.py)."""
    gguf = pytest.importorskip("gguf")
    fmt = FORMATS[qtype]
    gtype = gguf.GGMLQuantizationType[qtype.upper()]
    assert fmt.type_id == int(gtype)
    if qtype == "q8_1":
        assert (fmt.block_size, fmt.type_size) == (32, 36)
    else:
        assert (fmt.block_size, fmt.type_size) == tuple(gguf.GGML_QUANT_SIZES[gtype])
    assert G.block_bits(qtype) == (fmt.type_size, fmt.block_size)


def test_bits_per_weight_known_values():
    expected = {"q4_0": 4.5, "q4_1": 5.0, "q5_0": 5.5, "q5_1": 6.0, "q8_0": 8.5, "q8_1": 9.0, "tq1_0": 1.6875,
                "tq2_0": 2.0625, "iq4_nl": 4.5, "iq4_xs": 4.25, "mxfp4": 4.25, "f16": 16.0, "bf16": 16.0,
                "q2_k": 2.625, "q3_k": 3.4375, "q4_k": 4.5, "q5_k": 5.5, "q6_k": 6.5625, "q8_k": 9.125, "nvfp4": 4.5,
                "iq3_xxs": 3.0625, "iq3_s": 3.4375, "iq2_xxs": 2.0625, "iq2_xs": 2.3125, "iq2_s": 2.5625, "iq1_s": 1.5625, "iq1_m": 1.75}
    for qtype in REGISTERED:
        assert FORMATS[qtype].bits_per_weight() == expected[qtype]


# --- shapes and dtypes --------------------------------------------------------------------------

def test_shapes_follow_rows(rng):
    x = rng.standard_normal((2, 3, 64)).astype(np.float32)
    q = G.quantize(x, "q4_0")
    assert q.shape == (2, 3, 36) and q.dtype == np.uint8
    np.testing.assert_array_equal(G.quantize(x[0, 0], "q4_0"), q[0, 0])           # 1-D is one row
    assert G.dequantize(q, "q4_0", x.shape).shape == x.shape
    assert G.quantize(np.zeros((0, 64), np.float32), "q4_0").shape == (0, 36)
    assert G.dequantize(np.zeros((0, 36), np.uint8), "Q4_0", (0, 64)).shape == (0, 64)
    assert G.dequantize(bytes(q[0, 0]), 2, 64).shape == (64,)                        # bytes, type id


def test_float64_and_float16_inputs_round_through_float32(rng):
    x64 = rng.standard_normal((2, 64)) * 3
    np.testing.assert_array_equal(G.quantize(x64, "q5_1"), G.quantize(x64.astype(np.float32), "q5_1"))
    x16 = x64.astype(np.float16)
    np.testing.assert_array_equal(G.quantize(x16, "q8_0"), G.quantize(x16.astype(np.float32), "q8_0"))


def test_qtype_is_case_insensitive_and_accepts_ids():
    x = np.linspace(-1, 1, 64, dtype=np.float32)
    q = G.quantize(x, "q4_0")
    np.testing.assert_array_equal(G.quantize(x, "Q4_0"), q)
    np.testing.assert_array_equal(G.quantize(x, 2), q)
    assert G.get_format(" IQ4_NL ").name == "iq4_nl"


def test_f16_bf16_encode_nonfinite_as_ggml():
    nan_neg = np.array([0xFFA00001], np.uint32).view(np.float32)[0]
    x = np.array([np.nan, nan_neg, np.inf, -np.inf, 65520.0, 65519.0], np.float32)
    f16 = G.quantize(x, "f16").view(np.uint16)
    np.testing.assert_array_equal(f16, [0x7E00, 0xFE00, 0x7C00, 0xFC00, 0x7C00, 0x7BFF])
    bf16 = G.quantize(x[:4], "bf16").view(np.uint16)
    np.testing.assert_array_equal(bf16, [0x7FC0, 0xFFE0, 0x7F80, 0xFF80])



def test_bf16_rounding_matches_the_generic_encoder_on_special_values():
    """ggml's integer bf16 rounding equals refquant's generic round-to-nearest-even encoder
    on every non-NaN special pattern (zeros, subnormals, ties, the largest finites that
    round to inf, inf); NaNs keep sign and top payload with the quiet bit set."""
    from refquant import encode_float
    from refquant.formats._ggml_math import fp32_to_bf16_bits

    hi = np.array([0x0000, 0x0001, 0x007F, 0x0080, 0x3F80, 0x3F81, 0x7F7F, 0x7F80, 0x7FBF, 0x7FFF], np.uint32)
    lo = np.array([0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
    bits = (hi[:, None] << 16 | lo[None, :]).ravel()
    bits = np.concatenate([bits, bits | np.uint32(0x80000000)])
    x = bits.view(np.float32)
    finite_or_inf = ~np.isnan(x)
    got = fp32_to_bf16_bits(x)
    np.testing.assert_array_equal(got[finite_or_inf], encode_float(x[finite_or_inf], "bf16"))
    np.testing.assert_array_equal(got[~finite_or_inf], (bits[~finite_or_inf] >> 16) | 0x40)
    assert (~finite_or_inf).sum() == 34                   # NaNs with the uint32 sum wrapping too

# --- errors ------------------------------------------------------------------------------------

def test_row_length_not_multiple_of_block_size():
    with pytest.raises(ValueError, match="multiple of the q4_0 block size 32.*32 or 64"):
        G.quantize(np.zeros((2, 40), np.float32), "q4_0")
    with pytest.raises(ValueError, match="256"):
        G.quantize(np.zeros(300, np.float32), "iq4_xs")
    with pytest.raises(ValueError, match="block size 32"):
        G.dequantize(np.zeros(18, np.uint8), "q4_0", (20,))


def test_bad_qtype():
    with pytest.raises(ValueError, match=r"qtype='q4_z' is not supported; allowed.*q4_0.*iq4_xs"):
        G.quantize(np.zeros(32, np.float32), "q4_z")
    with pytest.raises(ValueError, match="not a supported ggml type id"):
        G.quantize(np.zeros(32, np.float32), 4)
    with pytest.raises(TypeError, match="qtype must be a string"):
        G.quantize(np.zeros(32, np.float32), 3.5)


def test_bad_inputs():
    x = np.zeros((2, 64), np.float32)
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        G.quantize(np.zeros((2, 64), np.int32), "q8_0")
    with pytest.raises(ValueError, match="at least 1 dimension"):
        G.quantize(np.float32(1.0), "f16")
    bad = x.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="x contains NaN or inf.*q4_k|x contains NaN or inf.*q8_0"):
        G.quantize(bad, "q8_0")
    with pytest.raises(ValueError, match=r"imatrix must have shape \(64,\)"):
        G.quantize(x, "q4_0", np.ones(32, np.float32))
    with pytest.raises(ValueError, match="imatrix contains negative"):
        G.quantize(x, "q4_0", -np.ones(64, np.float32))
    with pytest.raises(ValueError, match="imatrix contains NaN"):
        G.quantize(x, "q4_0", np.full(64, np.nan, np.float32))
    with pytest.raises(ValueError, match="data has 35 bytes but q4_0 of shape"):
        G.dequantize(np.zeros(35, np.uint8), "q4_0", (64,))
    with pytest.raises(TypeError, match="data must be a uint8 array"):
        G.dequantize(np.zeros(36, np.int8), "q4_0", (64,))
    with pytest.raises(ValueError, match="shape="):
        G.dequantize(np.zeros(36, np.uint8), "q4_0", (-1, 64))


# --- the arithmetic helpers ----------------------------------------------------------------------

def test_seq_sum_is_sequential_float32():
    a = np.array([[1e8, 1.0, -1e8, 1.0], [-0.0, -0.0, -0.0, -0.0]], np.float32)
    s = seq_sum(a)
    assert s[0] == np.float32(1.0)             # ((1e8 + 1) - 1e8) + 1 = 0 + 1 in float32
    assert np.signbit(s[1]) == False  # noqa: E712 ; C starts from +0: 0 + (-0) = +0
    assert np.signbit(seq_sum(a[1:], from_zero=False)[0])


def test_nearest_int_roundf_and_casts():
    np.testing.assert_array_equal(nearest_int(np.array([0.5, 1.5, 2.5, -0.5, -1.5], np.float32)), [0, 2, 2, 0, -2])
    np.testing.assert_array_equal(roundf(np.array([0.5, 1.5, 2.5, -0.5, 0.49999997], np.float32)), [1, 2, 3, -1, 0])
    np.testing.assert_array_equal(c_int(np.array([2.9, -2.9, np.nan, 3e9], np.float32)),
                                  [2, -2, -2**31, -2**31])
    mx, amax = signed_absmax(np.array([[2.0, -2.0, 1.0], [-3.0, 3.0, 0.0], [-0.0, 0.0, -0.0]], np.float32))
    np.testing.assert_array_equal(mx, [2.0, -3.0, 0.0])
    assert not np.signbit(mx[2])


def test_column_scans_equal_the_ordered_scans(rng):
    """The column forms (max/min reductions, scan redone on ties) give the bytes of the
    ordered scans on the cases where the choice shows: +a/-a ties in both orders, blocks of
    +0/-0 in any mix, NaN."""
    vals = np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, np.nan], np.float32)
    x = rng.choice(vals, size=(3000, 8)).astype(np.float32)
    x[:1000, 6:] = np.float32(0.5)  # mostly NaN-free blocks too
    xt = np.ascontiguousarray(x.T)
    for cols, rows in ((first_min_cols, first_min), (first_max_cols, first_max)):
        np.testing.assert_array_equal(cols(xt).view(np.uint32), rows(x).view(np.uint32))
    for got, want in zip(signed_absmax_cols(xt), signed_absmax(x)):
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_mxfp4_shared_exponent_follows_log2f():
    """log2f(8·(1 - 2^-24)) rounds to 3.0 in float32, so the block gets the exponent of 8
    (e = 128), not of 4 (gguf-py agrees: it also computes log2 in float32)."""
    x = np.zeros(32, np.float32)
    x[0] = np.nextafter(np.float32(8), np.float32(0))
    assert G.quantize(x, "mxfp4")[0] == 128
    x[0] = np.float32(4.0)
    assert G.quantize(x, "mxfp4")[0] == 127


def test_file_api_is_reexported():
    """``refquant.gguf.read`` / ``write`` (API contract) are the .gguf file functions of refquant.io."""
    io = pytest.importorskip("refquant.io")
    assert G.read is io.read and G.write is io.write
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        G.nope  # noqa: B018


def test_overflowing_imatrix_search_skips_nan_scales_like_ggml():
    """With weights ~1e20 and values ~3e11 the IQ4 sums overflow: some sub-block scales are
    inf, others NaN. ggml's max-scale scan (strict >) skips NaN, so the super-block scale
    becomes -(-inf)/32 = +inf and every code decodes from a NaN reciprocal (index 15).
    Expected bytes from ggml @ d99724f2 built with -DNDEBUG (tools/gguf_oracle.py)."""
    x = np.linspace(-1, 1, 256, dtype=np.float32) * np.float32(3e11)
    x[::7] *= np.float32(-0.5)
    im = np.full(256, 1e20, np.float32)
    im[:32] = 1.0
    b = G.quantize(x, "iq4_xs", im)
    assert b[:2].view(np.uint16)[0] == 0x7C00 and b[2:4].view(np.uint16)[0] == 0xAAAA
    assert (b[4:8] == 0).all() and (b[8:] == 0xFF).all()
    mx, amax = signed_absmax(np.array([[np.nan, -np.inf, 3.0], [np.nan, np.nan, np.nan]], np.float32))
    assert mx[0] == -np.inf and mx[1] == 0.0 and amax[1] == 0.0
