"""refquant.dtypes.codebooks: published tables, nearest-value encoding with the tie
rules of bitsandbytes (nf4, fp4), ggml (iq4_nl) and BitNet (ternary, binary)."""

from __future__ import annotations

import numpy as np
import pytest

import refquant
from refquant.dtypes.codebooks import CODEBOOKS, TIE_RULES, Codebook, codebook_decode, codebook_encode, get_codebook

F32 = np.float32
NAMES = tuple(CODEBOOKS)


def probe_values(cb: Codebook, rng: np.random.Generator, n: int = 20_000) -> np.ndarray:
    """Table values, float32 midpoints and their neighbours, and random values around the range."""
    m, t = cb.midpoints, cb.table
    lo, hi = float(t.min()), float(t.max())
    span = hi - lo
    return np.concatenate([
        t, m, np.nextafter(m, F32(np.inf)), np.nextafter(m, F32(-np.inf)),
        np.array([0.0, -0.0, 1e-30, -1e-30, lo - span, hi + span], F32),
        rng.uniform(lo - 0.1 * span, hi + 0.1 * span, n).astype(F32),
    ]).astype(F32)


# ---- tables ----------------------------------------------------------------------------

@pytest.mark.oracle
def test_nf4_and_fp4_tables_equal_bitsandbytes():
    functional = pytest.importorskip("bitsandbytes.functional")
    for name in ("nf4", "fp4"):
        ref = functional.get_4bit_type(name, device="cpu").numpy()
        assert ref.dtype == np.float32
        np.testing.assert_array_equal(get_codebook(name).table.view(np.uint32), ref.view(np.uint32))


def test_nf4_table_is_the_normal_map():
    """create_normal_map(offset=0.9677083, use_extra_value=True), QLoRA section 3."""
    norm = pytest.importorskip("scipy.stats").norm
    offset = 0.9677083
    pos = norm.ppf(np.linspace(offset, 0.5, 9)[:-1])
    neg = -norm.ppf(np.linspace(offset, 0.5, 8)[:-1])
    v = np.sort(np.concatenate([pos, [0.0], neg]))
    v /= v.max()
    np.testing.assert_allclose(get_codebook("nf4").table, v, rtol=0, atol=2e-7)


def test_fp4_table_is_bnb_not_ocp_e2m1():
    t = get_codebook("fp4").table
    np.testing.assert_array_equal(t[:8] * 12, [0, 0.0625, 8, 12, 4, 6, 2, 3])
    assert (t[8:] == -t[:8]).all()                                # bit 3 is the sign ...
    assert t[8] == 0 and not np.signbit(t[8])                     # ... but code 8 is +0.0, as in bitsandbytes
    e2m1 = refquant.decode_float(np.arange(8, dtype=np.uint8), "fp4")
    assert not np.array_equal(np.sort(t[:8]), np.sort(e2m1 / e2m1.max()))


@pytest.mark.oracle
def test_iq4_nl_table_equals_gguf_py():
    quants = pytest.importorskip("gguf.quants")
    np.testing.assert_array_equal(get_codebook("iq4_nl").table, np.array(quants.IQ4_NL.kvalues, F32))


def test_small_tables():
    np.testing.assert_array_equal(get_codebook("ternary").table, [-1, 0, 1])
    np.testing.assert_array_equal(get_codebook("binary").table, [-1, 1])
    assert [CODEBOOKS[n].bits for n in NAMES] == [4, 4, 4, 2, 1]


# ---- encode against the tools ---------------------------------------------------------

def bnb_cpu_codes(x: np.ndarray, quant_type: str, *, unit_absmax: bool = True) -> np.ndarray:
    """Codes bitsandbytes' CPU quantize_4bit gives ``x`` (|x| <= 1): each 64-block starts
    with a 1.0 so its absmax is 1 and the normalised values are ``x`` itself."""
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("bitsandbytes.functional")
    n = x.size
    body = np.concatenate([x, np.zeros((-n) % 63, F32)]).reshape(-1, 63)
    blocks = np.concatenate([np.ones((body.shape[0], 1), F32), body], axis=1).ravel()
    packed, state = functional.quantize_4bit(torch.from_numpy(blocks), blocksize=64, quant_type=quant_type)
    if unit_absmax:
        assert (state.absmax.numpy() == 1).all()
    b = packed.numpy().ravel()
    codes = np.stack([b >> 4, b & 0xF], axis=1).reshape(-1, 64)   # first element in the high nibble
    return codes[:, 1:].ravel()[:n]


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["nf4", "fp4"])
def test_encode_matches_bitsandbytes_cpu(name):
    cb = get_codebook(name)
    x = np.clip(probe_values(cb, np.random.default_rng(11)), -1, 1)
    x = np.concatenate([x, np.array([0.0026041667, -0.0026041667, 0.00260416, 1e-38, -1e-38], F32)])
    got = cb.encode(x)
    ref = bnb_cpu_codes(x, name)
    bad = got != ref
    assert not bad.any(), f"{name}: inputs {x[bad][:5]} got {got[bad][:5]} bitsandbytes {ref[bad][:5]}"


@pytest.mark.oracle
@pytest.mark.parametrize("name, code", [("nf4", 15), ("fp4", 3)])
def test_nan_gets_the_largest_values_code_like_bitsandbytes(name, code):
    x = np.array([np.nan, np.inf, -np.inf], F32)
    assert codebook_encode(x, name).tolist() == [code, code, int(get_codebook(name).order[0])]
    ref = bnb_cpu_codes(np.full(63, np.nan, F32), name, unit_absmax=False)   # absmax NaN: every code of the block
    assert (ref == code).all()


def test_fp4_signed_zero_codes():
    """bitsandbytes CPU gives code 0 for (-0.0026, 0] and code 8 for (0, 0.0026]."""
    x = np.array([0.0, -0.0, -1e-30, -0.0026, 1e-30, 0.0026], F32)
    assert codebook_encode(x, "fp4").tolist() == [0, 0, 0, 0, 8, 8]


def test_nf4_midpoint_goes_to_lower_code():
    cb = get_codebook("nf4")
    np.testing.assert_array_equal(cb.encode(cb.midpoints), np.arange(15))
    np.testing.assert_array_equal(cb.encode(np.nextafter(cb.midpoints, F32(2))), np.arange(1, 16))


def ggml_best_index_int8(x: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Port of ggml-quants.c best_index_int8 (binary search, float32 arithmetic), vectorised."""
    x = x.astype(F32)
    v = val.astype(F32)
    n = v.size
    ml = np.zeros(x.shape, np.int64)
    mu = np.full(x.shape, n - 1, np.int64)
    while (mu - ml > 1).any():
        active = mu - ml > 1
        mav = (ml + mu) // 2
        lower = x < v[mav]
        mu = np.where(active & lower, mav, mu)
        ml = np.where(active & ~lower, mav, ml)
    idx = np.where((x - v[mu - 1]) < (v[mu] - x), mu - 1, mu)
    idx = np.where(x <= v[0], 0, idx)
    return np.where(x >= v[n - 1], n - 1, idx)


def test_iq4_nl_matches_ggml_best_index_int8():
    cb = get_codebook("iq4_nl")
    rng = np.random.default_rng(12)
    x = np.concatenate([probe_values(cb, rng, 50_000), rng.uniform(-3, 3, 10_000).astype(F32)])
    x = x[np.isfinite(x)]
    np.testing.assert_array_equal(cb.encode(x), ggml_best_index_int8(x, cb.table))
    assert codebook_encode(np.array([-115.5, 7.0, -4.5], F32), "iq4_nl").tolist() == [1, 9, 8]  # ties go up


def test_ternary_is_bitnet_b158_round_clamp():
    rng = np.random.default_rng(13)
    x = np.concatenate([rng.uniform(-3, 3, 20_000), np.arange(-6, 7) / 4, [-0.0]]).astype(F32)
    expected = np.clip(np.rint(x), -1, 1).astype(np.int64) + 1
    np.testing.assert_array_equal(codebook_encode(x, "ternary"), expected)
    assert codebook_encode(np.array([-0.5, 0.5, 1.5, -1.5], F32), "ternary").tolist() == [1, 1, 2, 0]


def test_binary_sign_of_zero_is_minus_one():
    x = np.array([-2.0, -1e-38, -0.0, 0.0, 1e-45, 3.0], F32)
    assert codebook_encode(x, "binary").tolist() == [0, 0, 0, 0, 1, 1]
    assert codebook_decode(codebook_encode(x, "binary"), "binary").tolist() == [-1, -1, -1, -1, 1, 1]


# ---- invariants ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_encode_picks_a_nearest_value(name):
    cb = get_codebook(name)
    x = probe_values(cb, np.random.default_rng(14))
    x = x[np.isfinite(x)]
    got = cb.decode(cb.encode(x)).astype(np.float64)
    best = np.abs(x.astype(np.float64)[:, None] - cb.table.astype(np.float64)[None, :]).min(axis=1)
    # float32 midpoints may sit half an ulp off the exact ones
    slack = 2 * np.spacing(np.abs(cb.midpoints).max())
    assert (np.abs(got - x) <= best + slack).all()


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_and_monotonic(name):
    cb = get_codebook(name)
    codes = np.arange(cb.size)
    unique = np.unique(cb.table, return_index=True)[1]   # fp4: zero encodes as code 0, never 8
    np.testing.assert_array_equal(cb.encode(cb.table[unique]), codes[unique])
    np.testing.assert_array_equal(cb.decode(cb.encode(cb.table)), cb.table)
    x = np.sort(np.random.default_rng(15).uniform(-200, 200, 5000).astype(F32))
    assert (np.diff(cb.decode(cb.encode(x))) >= 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_and_no_mutation(name):
    x = np.linspace(-2, 2, 24).reshape(2, 3, 4).astype(F32)
    before = x.copy()
    codes = codebook_encode(x, name)
    assert codes.dtype == np.uint8 and codes.shape == x.shape
    values = codebook_decode(codes, name)
    assert values.dtype == np.float32 and values.shape == x.shape
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(codebook_encode(x.astype(np.float64), name), codes)
    np.testing.assert_array_equal(codebook_encode(x[:, ::2], name), codes[:, ::2])
    assert codebook_encode(np.zeros((0, 3), F32), name).shape == (0, 3)
    np.testing.assert_array_equal(codebook_decode(codes.astype(np.int64), name), values)


def test_decode_is_the_table():
    for name in NAMES:
        cb = get_codebook(name)
        np.testing.assert_array_equal(cb.decode(np.arange(cb.size, dtype=np.uint8)), cb.table)


# ---- custom codebooks and tie rules --------------------------------------------------------

@pytest.mark.parametrize("tie, expected", [
    ("lower", [0, 1, 2, 3]), ("upper", [1, 2, 3, 4]),
    ("toward_zero", [1, 2, 2, 3]), ("away_from_zero", [0, 1, 3, 4]),
])
def test_tie_rules(tie, expected):
    cb = Codebook("steps", (-3.0, -1.0, 0.0, 2.0, 4.0), tie)
    assert cb.encode(np.array([-2.0, -0.5, 1.0, 3.0], F32)).tolist() == expected
    assert cb.encode(np.array([-2.5, 2.5], F32)).tolist() == [0, 3]   # not ties


def test_unsorted_custom_codebook():
    cb = Codebook("perm", (1.0, -1.0, 0.5, 0.0))
    assert cb.encode(np.array([0.9, -0.9, 0.4, 0.1, 0.75, 0.25], F32)).tolist() == [0, 1, 2, 3, 2, 3]
    np.testing.assert_array_equal(cb.order, [1, 3, 2, 0])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(values=(0.0, 1.0), tie="nearest"), ValueError, "tie="),
    (dict(values=(1.0,)), ValueError, "2 to 256"),
    (dict(values=tuple(range(257))), ValueError, "2 to 256"),
    (dict(values=(0.0, float("nan"))), ValueError, "finite"),
    (dict(values=(0.0, 1e39)), ValueError, "finite"),
    (dict(values=(-1.0, 1.0), tie="toward_zero"), ValueError, "ambiguous"),
])
def test_codebook_rejects_bad_fields(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Codebook("bad", **kwargs)


def test_lookup_and_bad_inputs():
    assert get_codebook("NF4") is CODEBOOKS["nf4"]
    assert refquant.Codebook is Codebook
    assert set(TIE_RULES) == {"lower", "upper", "toward_zero", "away_from_zero"}
    with pytest.raises(ValueError, match="allowed: nf4, fp4, iq4_nl, ternary, binary"):
        get_codebook("nf3")
    with pytest.raises(TypeError, match="name"):
        get_codebook(4)
    with pytest.raises(TypeError, match="x must be"):
        codebook_encode(np.array([1, 2]), "nf4")
    with pytest.raises(TypeError, match="codes must be"):
        codebook_decode(np.array([1.0]), "nf4")
    with pytest.raises(ValueError, match="outside 0..15"):
        codebook_decode(np.array([16], np.uint8), "nf4")
    with pytest.raises(ValueError, match="outside 0..2"):
        codebook_decode(np.array([-1]), "ternary")


@pytest.mark.parametrize("size", [7, 33, 200])
@pytest.mark.parametrize("tie", TIE_RULES)
def test_small_and_large_tables_follow_the_same_rule(size, tie):
    """Counting (<= 32 midpoints) and binary search (larger tables) give the same codes:
    the nearest value by brute force, ties by the rule, NaN after everything."""
    rng = np.random.default_rng(size)
    # multiples of 1/32 (exact midpoints in float32), never symmetric about 0 (1/32 offset)
    values = np.unique(rng.integers(-1000, 1000, size * 3))[:size] / 8 + 1 / 32
    rng.shuffle(values)
    cb = Codebook("custom", tuple(float(v) for v in values), tie)
    m = cb.midpoints
    x = np.concatenate([m, np.nextafter(m, F32(np.inf)), rng.uniform(-150, 150, 5000)]).astype(F32)
    got = cb.encode(x)
    d = np.abs(x.astype(np.float64)[:, None] - cb.table[None, :])
    best = d.min(axis=1, keepdims=True)
    cands = d == best                                             # one or two nearest values
    t = np.where(cands, cb.table[None, :], np.nan)
    pick = {"lower": np.nanmin(t, 1), "upper": np.nanmax(t, 1)}
    small = np.where(np.abs(np.nanmin(t, 1)) <= np.abs(np.nanmax(t, 1)), np.nanmin(t, 1), np.nanmax(t, 1))
    large = np.where(np.abs(np.nanmin(t, 1)) > np.abs(np.nanmax(t, 1)), np.nanmin(t, 1), np.nanmax(t, 1))
    pick.update(toward_zero=small, away_from_zero=large)
    np.testing.assert_array_equal(cb.table[got], pick[tie].astype(F32))
    assert cb.encode(np.array([np.nan, np.inf, -np.inf], F32)).tolist() == [cb.order[-1], cb.order[-1], cb.order[0]]
