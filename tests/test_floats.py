"""refquant.dtypes.floatspec: derived finfo values, and encode/decode bit for bit
against NumPy (float16) and ml_dtypes (the others), NaN patterns included."""

from __future__ import annotations

import numpy as np
import pytest

import refquant
from refquant.dtypes.floatspec import (
    FLOAT_ALIASES,
    FLOAT_SPECS,
    FloatSpec,
    decode_float,
    encode_float,
    from_ml_dtypes,
    get_float_spec,
    to_ml_dtypes,
)

ml_dtypes = pytest.importorskip("ml_dtypes")

F32 = np.float32
FORMATS = tuple(FLOAT_SPECS)


def oracle_dtype(name: str) -> np.dtype:
    # every FloatSpec exists in ml_dtypes >= 0.5, the oldest release pyproject allows
    return np.dtype(np.float16) if name == "float16" else np.dtype(getattr(ml_dtypes, name))


def oracle_encode(x: np.ndarray, name: str) -> np.ndarray:
    """NumPy's / ml_dtypes' cast, as bit patterns."""
    with np.errstate(all="ignore"):
        return x.astype(oracle_dtype(name)).view(FLOAT_SPECS[name].storage_dtype)


def f32(*bit_patterns: int) -> np.ndarray:
    return np.array(bit_patterns, np.uint32).view(F32)


def hexes(a: np.ndarray) -> list[str]:
    return [hex(int(v)) for v in np.asarray(a).ravel()]


def assert_same_bits(got: np.ndarray, expected: np.ndarray, x: np.ndarray, fmt: str) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape
    bad = got != expected
    if bad.any():
        idx = np.flatnonzero(bad)[:5]
        raise AssertionError(f"{fmt}: {int(bad.sum())} of {bad.size} differ; inputs {hexes(x.view(np.uint32)[idx])} "
                             f"got {hexes(got[idx])} expected {hexes(expected[idx])}")


# ---- specs ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_derived_finfo_matches_ml_dtypes(fmt):
    spec = FLOAT_SPECS[fmt]
    fi = ml_dtypes.finfo(oracle_dtype(fmt))
    assert spec.bits == 1 + spec.exp_bits + spec.mant_bits == (fi.bits if spec.bits >= 8 else spec.bits)
    assert spec.max == float(fi.max)
    assert spec.tiny == float(fi.tiny)
    assert spec.smallest_subnormal == float(fi.smallest_subnormal)
    assert spec.eps == float(fi.eps)
    assert spec.mant_bits == fi.nmant and spec.exp_bits == fi.nexp
    assert spec.min_exp == fi.minexp and spec.max_exp == fi.maxexp - 1
    assert spec.storage_dtype == (np.uint16 if spec.bits == 16 else np.uint8)


def test_published_constants():
    """The table in the module docstring"""
    assert get_float_spec("fp16").max == 65504 and get_float_spec("fp16").max_code == 0x7BFF
    assert get_float_spec("e4m3").max == 448 and get_float_spec("e4m3").max_code == 0x7E
    assert get_float_spec("e5m2").max == 57344 and get_float_spec("e5m2").max_code == 0x7B
    assert get_float_spec("fp4").max == 6 and get_float_spec("fp4").max_code == 0x7
    assert get_float_spec("bf16").max == float(np.array([0x7F7F0000], np.uint32).view(F32)[0])
    assert get_float_spec("e4m3").nan_code == 0x7F and get_float_spec("e4m3").inf_code is None
    assert get_float_spec("e5m2").inf_code == 0x7C and get_float_spec("e5m2").nan_code == 0x7E
    assert get_float_spec("bf16").nan_code == 0x7FC0 and get_float_spec("fp16").inf_code == 0x7C00
    assert get_float_spec("fp4").nan_code == 0x8   # ml_dtypes' quiet_NaN() stand-in: -0.0


@pytest.mark.parametrize("alias, name", [
    ("fp16", "float16"), ("half", "float16"), ("FP16", "float16"), ("bf16", "bfloat16"),
    ("fp8_e4m3", "float8_e4m3fn"), ("e4m3", "float8_e4m3fn"), ("e4m3fn", "float8_e4m3fn"),
    ("fp8_e5m2", "float8_e5m2"), ("e5m2", "float8_e5m2"),
    ("fp4", "float4_e2m1fn"), ("fp4_e2m1", "float4_e2m1fn"), ("e2m1", "float4_e2m1fn"),
    ("float4_e2m1fn", "float4_e2m1fn"),
])
def test_aliases(alias, name):
    assert get_float_spec(alias) is FLOAT_SPECS[name]
    assert FLOAT_ALIASES[alias.lower()] == name


def test_unknown_format_lists_allowed():
    with pytest.raises(ValueError, match="float8_e4m3fn") as e:
        get_float_spec("fp8")
    assert "'fp8'" in str(e.value)
    with pytest.raises(ValueError, match="fmt="):
        encode_float(np.ones(2, F32), "int8")
    with pytest.raises(ValueError, match="fmt="):
        decode_float(np.ones(2, np.uint8), "nf4")
    with pytest.raises(TypeError, match="fmt"):
        get_float_spec(16)


@pytest.mark.parametrize("kwargs, match", [
    (dict(nan="weird"), "nan="),
    (dict(has_inf=False), "has_inf"),
    (dict(encode_nan="loud"), "encode_nan"),
    (dict(exp_bits=9), "exp_bits"),
    (dict(mant_bits=23), "mant_bits"),
    (dict(bias=-200), "bias"),
])
def test_floatspec_rejects_bad_fields(kwargs, match):
    base = dict(name="x", exp_bits=5, mant_bits=10, bias=15, has_inf=True, nan="ieee")
    with pytest.raises(ValueError, match=match):
        FloatSpec(**{**base, **kwargs})


def test_floatspec_is_frozen():
    with pytest.raises(AttributeError):
        FLOAT_SPECS["float16"].bias = 14  # type: ignore[misc]


# ---- encode: bit for bit against NumPy / ml_dtypes -------------------------------------

@pytest.fixture(scope="module")
def random_patterns() -> np.ndarray:
    """1,048,576 uniformly random float32 bit patterns (every class of float)."""
    rng = np.random.default_rng(20261127)
    return rng.integers(0, 2**32, size=1 << 20, dtype=np.uint64).astype(np.uint32).view(F32)


def in_range_patterns(spec: FloatSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random float32 patterns whose exponent lies in or just around the format's range,
    so that rounding, subnormals and the overflow edge are hit densely."""
    e = rng.integers(spec.min_exp - spec.mant_bits - 3, spec.max_exp + 3, size=n) + 127
    e = np.clip(e, 0, 254).astype(np.uint32)
    mant = rng.integers(0, 1 << 23, size=n, dtype=np.uint32)
    # make a quarter of them exact ties (the dropped bits are exactly 100...0)
    drop = 23 - spec.mant_bits
    tie = rng.random(n) < 0.25
    mant = np.where(tie, (mant >> drop << drop) | np.uint32(1 << (drop - 1)), mant)
    sign = rng.integers(0, 2, size=n, dtype=np.uint32) << 31
    return (sign | (e << 23) | mant).astype(np.uint32).view(F32)


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_random_bit_patterns_match_oracle(fmt, random_patterns):
    assert_same_bits(encode_float(random_patterns, fmt), oracle_encode(random_patterns, fmt), random_patterns, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_in_range_patterns_match_oracle(fmt):
    x = in_range_patterns(FLOAT_SPECS[fmt], 1 << 19, np.random.default_rng(5))
    assert_same_bits(encode_float(x, fmt), oracle_encode(x, fmt), x, fmt)


def specials(spec: FloatSpec) -> np.ndarray:
    """Every code's value, the midpoints between neighbouring codes (ties) and their
    float32 neighbours, the overflow edge, ±0, ±inf, NaNs with payloads."""
    codes = np.arange(spec.max_code + 1, dtype=spec.storage_dtype)
    v = decode_float(codes, spec).astype(np.float64)
    mids = (v[:-1] + v[1:]) / 2
    over = spec.max + (spec.max - v[-2]) / 2                        # the overflow tie
    with np.errstate(over="ignore"):  # bfloat16's overflow edge is beyond FLT_MAX: inf
        base = np.concatenate([v, mids, [over, 2 * spec.max, spec.smallest_subnormal / 2]]).astype(F32)
    near = np.concatenate([base, np.nextafter(base, F32(np.inf)), np.nextafter(base, F32(-np.inf))])
    extra = np.concatenate([f32(0x7FC00000, 0x7FA00001, 0x7F800001, 0x7FFFFFFF, 0x7F802000, 0x7FBFFFFF),
                            np.array([np.inf, 3.4028235e38, 1e-45, 65519.99, 65520, 464, 465, 61439, 61440,
                                      6.5, 7, 100], F32)])
    x = np.concatenate([near, extra])
    return np.concatenate([x, -x])


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_special_values_match_oracle(fmt):
    x = specials(FLOAT_SPECS[fmt])
    assert_same_bits(encode_float(x, fmt), oracle_encode(x, fmt), x, fmt)


@pytest.mark.parametrize("fmt, value, code", [
    # float16
    ("float16", 65504.0, 0x7BFF), ("float16", 65519.99, 0x7BFF), ("float16", 65520.0, 0x7C00),
    ("float16", -65520.0, 0xFC00), ("float16", 2.0**-25, 0x0000), ("float16", 2.0**-24, 0x0001),
    ("float16", -0.0, 0x8000), ("float16", 1 + 2**-11, 0x3C00), ("float16", 1 + 3 * 2**-11, 0x3C02),
    # bfloat16: ties at 0x3F808000 / 0x3F818000, FLT_MAX rounds to inf
    ("bfloat16", float(f32(0x3F808000)[0]), 0x3F80), ("bfloat16", float(f32(0x3F818000)[0]), 0x3F82),
    ("bfloat16", float(f32(0x7F7FFFFF)[0]), 0x7F80), ("bfloat16", 2.0**-149, 0x0000),
    ("bfloat16", 2.0**-133, 0x0001),
    # e4m3fn
    ("float8_e4m3fn", 447.0, 0x7E), ("float8_e4m3fn", 449.0, 0x7E), ("float8_e4m3fn", 463.9, 0x7E),
    ("float8_e4m3fn", 464.0, 0x7E), ("float8_e4m3fn", 465.0, 0x7F), ("float8_e4m3fn", 480.0, 0x7F),
    ("float8_e4m3fn", -1000.0, 0xFF), ("float8_e4m3fn", float("inf"), 0x7F), ("float8_e4m3fn", float("-inf"), 0xFF),
    ("float8_e4m3fn", 2.0**-10, 0x00), ("float8_e4m3fn", 1.5 * 2**-9, 0x02), ("float8_e4m3fn", 2.0**-6, 0x08),
    # e5m2
    ("float8_e5m2", 57344.0, 0x7B), ("float8_e5m2", 61439.0, 0x7B), ("float8_e5m2", 61440.0, 0x7C),
    ("float8_e5m2", float("-inf"), 0xFC), ("float8_e5m2", 2.0**-17, 0x00), ("float8_e5m2", 1.5 * 2**-16, 0x02),
    # e2m1
    ("float4_e2m1fn", 0.25, 0x0), ("float4_e2m1fn", 0.26, 0x1), ("float4_e2m1fn", 0.75, 0x2),
    ("float4_e2m1fn", 1.25, 0x2), ("float4_e2m1fn", 1.75, 0x4), ("float4_e2m1fn", 2.5, 0x4),
    ("float4_e2m1fn", 3.5, 0x6), ("float4_e2m1fn", 5.0, 0x6), ("float4_e2m1fn", 6.5, 0x7),
    ("float4_e2m1fn", 7.0, 0x7), ("float4_e2m1fn", 100.0, 0x7), ("float4_e2m1fn", float("inf"), 0x7),
    ("float4_e2m1fn", float("-inf"), 0xF), ("float4_e2m1fn", -0.1, 0x8), ("float4_e2m1fn", -0.0, 0x8),
    # float6 (OCP MX v1.0 5.3.2; ml_dtypes 0.7): max 28 / 7.5, saturating, ties to even
    ("float6_e3m2fn", 28.0, 0x1F), ("float6_e3m2fn", 30.0, 0x1F), ("float6_e3m2fn", float("-inf"), 0x3F),
    ("float6_e3m2fn", 2.0**-4, 0x01), ("float6_e3m2fn", 2.0**-5, 0x00), ("float6_e3m2fn", 1.125, 0x0C),
    ("float6_e3m2fn", 1.375, 0x0E), ("float6_e2m3fn", 7.5, 0x1F), ("float6_e2m3fn", 8.0, 0x1F),
    ("float6_e2m3fn", 0.125, 0x01), ("float6_e2m3fn", 0.0625, 0x00), ("float6_e2m3fn", 0.1875, 0x02),
    ("float6_e2m3fn", -1.0, 0x28),
])
def test_encode_golden(fmt, value, code):
    got = encode_float(np.array([value], F32), fmt)
    assert hexes(got) == [hex(code)]


@pytest.mark.parametrize("fmt, patterns, codes", [
    # NumPy float16 keeps the sign and the top payload bits; a vanishing payload becomes 1.
    ("float16", (0x7FC00000, 0xFFC00000, 0x7FA00001, 0xFFA00001, 0x7F800001, 0xFF800001),
     (0x7E00, 0xFE00, 0x7D00, 0xFD00, 0x7C01, 0xFC01)),
    # ml_dtypes bfloat16: canonical quiet NaN, sign kept.
    ("bfloat16", (0x7FC00000, 0xFFC00000, 0x7FA00001, 0xFFA00001, 0x7F800001, 0x7FFFFFFF),
     (0x7FC0, 0xFFC0, 0x7FC0, 0xFFC0, 0x7FC0, 0x7FC0)),
    ("float8_e4m3fn", (0x7FC00000, 0xFFC00000, 0x7F800001), (0x7F, 0xFF, 0x7F)),
    ("float8_e5m2", (0x7FC00000, 0xFFC00000, 0x7F800001), (0x7E, 0xFE, 0x7E)),
    # e2m1 has no NaN: ml_dtypes writes quiet_NaN() = -0 (code 8), negated for -NaN.
    ("float4_e2m1fn", (0x7FC00000, 0xFFC00000, 0x7FA00001), (0x8, 0x0, 0x8)),
    ("float6_e3m2fn", (0x7FC00000, 0xFFC00000), (0x20, 0x00)),
    ("float6_e2m3fn", (0x7FC00000, 0xFFC00000), (0x20, 0x00)),
])
def test_encode_nan_patterns(fmt, patterns, codes):
    x = f32(*patterns)
    assert hexes(encode_float(x, fmt)) == hexes(np.array(codes))
    assert hexes(encode_float(x, fmt, saturate=True)) == hexes(np.array(codes))
    if get_float_spec(fmt).nan != "none":
        assert np.isnan(decode_float(encode_float(x, fmt), fmt)).all()


# ---- saturate ----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_saturate_clamps_overflow_and_inf_keeps_nan(fmt, random_patterns):
    spec = FLOAT_SPECS[fmt]
    x = np.concatenate([random_patterns[:200_000], specials(spec)])
    got = encode_float(x, fmt, saturate=True)
    nan = np.isnan(x)
    with np.errstate(invalid="ignore"):
        clipped = np.clip(x, -spec.max, spec.max)   # clamp, then the ordinary cast
    assert_same_bits(got[~nan], oracle_encode(clipped[~nan], fmt), x[~nan], fmt)
    assert_same_bits(got[nan], encode_float(x[nan], fmt), x[nan], fmt)
    sign = np.signbit(x) * spec.sign_mask
    with np.errstate(invalid="ignore"):  # signalling NaNs in the random patterns
        big = ~nan & (np.abs(x.astype(np.float64)) > spec.max * 2)
    assert (got[big] == (spec.max_code | sign[big])).all()


def test_saturate_e4m3fn_matches_torch():
    """torch's .to(float8_e4m3fn) saturates; so does saturate=True."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = np.concatenate([in_range_patterns(FLOAT_SPECS["float8_e4m3fn"], 100_000, rng),
                        np.array([464, 465, 480, 1e30, np.inf, -np.inf, -465], F32)])
    ref = torch.from_numpy(x).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    assert_same_bits(encode_float(x, "e4m3", saturate=True), ref, x, "float8_e4m3fn")


def test_saturate_must_be_bool():
    with pytest.raises(TypeError, match="saturate"):
        encode_float(np.ones(2, F32), "fp16", saturate="yes")


# ---- decode ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_decode_every_code_matches_oracle(fmt):
    spec = FLOAT_SPECS[fmt]
    codes = np.arange(1 << spec.bits, dtype=spec.storage_dtype)
    got = decode_float(codes, fmt)
    assert got.dtype == np.float32 and got.shape == codes.shape
    ref = codes.view(oracle_dtype(fmt)).astype(F32)
    # bitwise, NaN payloads included (module docstring: decode_nan)
    assert hexes(got.view(np.uint32)) == hexes(ref.view(np.uint32))


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_every_non_nan_code(fmt):
    spec = FLOAT_SPECS[fmt]
    codes = np.arange(1 << spec.bits, dtype=spec.storage_dtype)
    values = decode_float(codes, fmt)
    keep = ~np.isnan(values)
    np.testing.assert_array_equal(encode_float(values[keep], fmt), codes[keep])
    finite = np.isfinite(values)
    np.testing.assert_array_equal(encode_float(values[finite], fmt, saturate=True), codes[finite])
    assert int((~keep).sum()) == {"float16": 2046, "bfloat16": 254, "float8_e4m3fn": 2,
                                  "float8_e5m2": 6, "float6_e3m2fn": 0, "float6_e2m3fn": 0,
                                      "float4_e2m1fn": 0}[fmt]


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_is_monotonic(fmt):
    x = np.sort(np.random.default_rng(2).standard_normal(20_000).astype(F32) * 100)
    v = decode_float(encode_float(x, fmt), fmt)
    assert (np.diff(v) >= 0).all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_error_within_half_ulp(fmt):
    spec = FLOAT_SPECS[fmt]
    x = np.random.default_rng(4).uniform(-spec.max, spec.max, 50_000).astype(np.float64).astype(F32)
    err = np.abs(decode_float(encode_float(x, fmt), fmt).astype(np.float64) - x.astype(np.float64))
    a = np.maximum(np.abs(x.astype(np.float64)), spec.tiny)
    ulp = 2.0 ** (np.floor(np.log2(a)) - spec.mant_bits)
    assert (err <= ulp / 2).all()


# ---- input handling -----------------------------------------------------------------------

# ---- float64 input: one rounding, from the exact value ---------------------------------

ML_DTYPES_ROUNDS_FLOAT64_ONCE = tuple(int(p) for p in ml_dtypes.__version__.split(".")[:2]) >= (0, 7)


def _over_code(spec: FloatSpec, saturate: bool) -> int:
    """The documented code of a positive overflow."""
    if saturate or spec.nan == "none":
        return spec.max_code
    return spec.inf_code if spec.has_inf else spec.nan_code


def float64_ties(spec: FloatSpec, saturate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """float64 inputs around every midpoint of the format, and their correctly rounded codes.

    For each pair of neighbouring non-negative values v[k] < v[k+1] (codes k and k+1; past
    ``max`` the next value of the top binade, which overflows) the inputs are v[k], the
    midpoint (exact in float64; ties to the even code), the midpoint one float64 ulp
    either side, and the midpoint ± midpoint * 2**-30 (float32 rounds those four onto
    the midpoint, so a conversion through float32 gets half of them wrong). Expected
    codes come from decode_float's table and the tie/overflow rules, not from the
    encoder. Both signs. Covers subnormals, zero and the overflow boundary.
    """
    codes = np.arange(spec.max_code + 1, dtype=np.int64)
    v = decode_float(codes.astype(spec.storage_dtype), spec).astype(np.float64)
    upper_v = np.append(v[1:], spec.max + 2.0 ** (spec.max_exp - spec.mant_bits))
    upper = np.append(codes[1:], _over_code(spec, saturate))
    mid = (v + upper_v) / 2
    above, below = np.nextafter(mid, np.inf), np.nextafter(mid, -np.inf)
    even = np.where(codes % 2 == 0, codes, upper)
    x = np.concatenate([v, mid, above, below, mid + mid * 2.0**-30, mid - mid * 2.0**-30])
    want = np.concatenate([codes, even, upper, codes, upper, codes])
    x = np.concatenate([x, -x])
    want = np.concatenate([want, want | spec.sign_mask])
    return x, want.astype(spec.storage_dtype)


@pytest.mark.parametrize("saturate", [False, True], ids=["default", "saturate"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_float64_ties_round_once(fmt, saturate):
    spec = FLOAT_SPECS[fmt]
    x, want = float64_ties(spec, saturate)
    assert_same_bits(encode_float(x, fmt, saturate=saturate), want, x, fmt)
    # float32 really would have rounded them twice: the ±ulp and ±2**-30 inputs collapse
    # onto their midpoint, whose tie then goes one way for both
    with np.errstate(over="ignore"):
        via_f32 = encode_float(x.astype(F32), fmt, saturate=saturate)
    assert (via_f32 != want).sum() >= spec.max_code


@pytest.mark.parametrize("fmt", FORMATS)
def test_float64_of_float32_values_equals_float32_path(fmt, random_patterns):
    x32 = random_patterns[~np.isnan(random_patterns)]  # NaN payloads widen per source format
    for saturate in (False, True):
        np.testing.assert_array_equal(encode_float(x32.astype(np.float64), fmt, saturate=saturate),
                                      encode_float(x32, fmt, saturate=saturate))


def _float64_sample(spec: FloatSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """Random float64 values with random 52-bit mantissas, exponents spanning zero..overflow."""
    mant = rng.integers(0, 1 << 52, n, dtype=np.uint64)
    exp = rng.integers(spec.min_exp - spec.mant_bits - 3, spec.max_exp + 3, n) + 1023
    sign = rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(63)
    return (sign | (exp.astype(np.uint64) << np.uint64(52)) | mant).view(np.float64)


FLOAT64_SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, 1e300, -1e300, 1e-300, 5e-324], np.float64)
FLOAT64_NANS = np.array([0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001, 0xFFF0040000000000,
                         0x7FFFFFFFFFFFFFFF, 0x7FF0000020000000], np.uint64).view(np.float64)


def test_float64_float16_equals_numpy_direct_cast():
    """NumPy casts float64 to float16 in one rounding (npy_doublebits_to_halfbits), NaN payloads included."""
    spec = FLOAT_SPECS["float16"]
    x, _ = float64_ties(spec)
    x = np.concatenate([x, _float64_sample(spec, np.random.default_rng(7), 100_000), FLOAT64_SPECIALS, FLOAT64_NANS])
    assert_same_bits(encode_float(x, "float16"), oracle_encode(x, "float16"), x, "float16")
    assert hexes(encode_float(FLOAT64_NANS, "fp16")) == ["0x7e00", "0xfe00", "0x7c01", "0xfc01", "0x7fff", "0x7c01"]
    # the worked example of the module docstring, and Python floats / lists are float64
    assert int(encode_float(1 + 2**-11 + 2**-40, "fp16")) == 0x3C01
    assert hexes(encode_float([1 + 2**-11 + 2**-40, 65519.999999], "fp16")) == ["0x3c01", "0x7bff"]


@pytest.mark.skipif(not ML_DTYPES_ROUNDS_FLOAT64_ONCE,
                    reason=f"ml_dtypes {ml_dtypes.__version__} < 0.7 converts float64 through float32 (rounds twice); "
                           "refquant rounds once, as ml_dtypes >= 0.7 does")
@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "float16"])
def test_float64_matches_ml_dtypes_0_7(fmt):
    spec = FLOAT_SPECS[fmt]
    x, _ = float64_ties(spec)
    x = np.concatenate([x, _float64_sample(spec, np.random.default_rng(8), 100_000), FLOAT64_SPECIALS, FLOAT64_NANS])
    assert_same_bits(encode_float(x, fmt), oracle_encode(x, fmt), x, fmt)


def test_float64_nan_codes():
    """Quiet-NaN formats ignore the payload; e2m1 writes its stand-in (module docstring)."""
    assert hexes(encode_float(FLOAT64_NANS[:2], "bf16")) == ["0x7fc0", "0xffc0"]
    assert hexes(encode_float(FLOAT64_NANS[:2], "e4m3")) == ["0x7f", "0xff"]
    assert hexes(encode_float(FLOAT64_NANS[:2], "e5m2")) == ["0x7e", "0xfe"]
    assert hexes(encode_float(FLOAT64_NANS[:2], "e2m1")) == ["0x8", "0x0"]


def test_shapes_scalars_views_and_no_mutation():
    x = np.arange(24, dtype=F32).reshape(2, 3, 4) / 7
    before = x.copy()
    for fmt in FORMATS:
        b = encode_float(x, fmt)
        assert b.shape == x.shape
        assert decode_float(b, fmt).shape == x.shape
        np.testing.assert_array_equal(encode_float(x[:, ::2, 1:], fmt), b[:, ::2, 1:])  # non-contiguous view
        np.testing.assert_array_equal(encode_float(x.T, fmt), b.T)
    np.testing.assert_array_equal(x, before)
    assert encode_float(np.float32(1.0), "fp16").shape == ()
    assert int(encode_float(np.float32(1.0), "fp16")) == 0x3C00
    assert int(encode_float(1.0, "bf16")) == 0x3F80                     # Python float
    assert hexes(encode_float([1.0, -2.0], "e4m3")) == ["0x38", "0xc0"]  # list
    assert encode_float(np.zeros((0, 5), F32), "fp16").shape == (0, 5)
    assert decode_float(np.zeros((0,), np.uint8), "fp4").shape == (0,)
    assert float(decode_float(np.array(0x3C00, np.uint16), "fp16")) == 1.0


def test_encode_widens_float16_and_bfloat16_exactly(random_patterns):
    x = random_patterns[:4096]
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf; NaN payloads
        for narrow in (np.float16, ml_dtypes.bfloat16):
            n = x.astype(narrow)
            for fmt in FORMATS:
                np.testing.assert_array_equal(encode_float(n, fmt), encode_float(n.astype(F32), fmt))


@pytest.mark.parametrize("x", [np.array([1, 2], np.int32), np.array([True]), np.array([1 + 1j]),
                               np.array([1.0], np.longdouble), [1, 2]])
def test_encode_rejects_non_float_input(x):
    with pytest.raises(TypeError, match="x must be"):
        encode_float(x, "fp16")


@pytest.mark.parametrize("fmt, bits", [
    ("float16", np.zeros(3, np.uint8)), ("float16", np.zeros(3, np.int16)), ("float16", np.zeros(3, np.float16)),
    ("float8_e4m3fn", np.zeros(3, np.uint16)), ("float4_e2m1fn", np.zeros(3, np.int8)),
    ("bfloat16", [0x3F80]),
])
def test_decode_rejects_wrong_dtype(fmt, bits):
    with pytest.raises(TypeError, match="bits must be"):
        decode_float(bits, fmt)


def test_decode_fp4_rejects_codes_over_15():
    with pytest.raises(ValueError, match="0..15"):
        decode_float(np.array([3, 16], np.uint8), "fp4")


# ---- interop ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_ml_dtypes_interop_round_trip(fmt):
    spec = FLOAT_SPECS[fmt]
    oracle_dtype(fmt)  # skips where the installed ml_dtypes lacks the type
    x = np.linspace(-spec.max, spec.max, 101).astype(F32)
    bits = encode_float(x, fmt)
    arr = to_ml_dtypes(bits, fmt)
    assert arr.dtype == oracle_dtype(fmt)
    assert np.shares_memory(arr, bits)
    np.testing.assert_array_equal(arr.astype(F32), decode_float(bits, fmt))
    back, back_spec = from_ml_dtypes(arr)
    assert back_spec is spec and back.dtype == spec.storage_dtype
    np.testing.assert_array_equal(back, bits)


def test_to_ml_dtypes_names_a_missing_type(monkeypatch):
    from refquant.errors import UnsupportedError

    monkeypatch.delattr(ml_dtypes, "float8_e5m2")
    with pytest.raises(UnsupportedError, match="has no float8_e5m2 type.*upgrade ml_dtypes"):
        to_ml_dtypes(np.zeros(2, np.uint8), "e5m2")


def test_interop_rejects_bad_input():
    with pytest.raises(TypeError, match="arr has dtype"):
        from_ml_dtypes(np.ones(3, F32))
    with pytest.raises(TypeError, match="ndarray"):
        from_ml_dtypes([1.0])
    with pytest.raises(TypeError, match="bits must be"):
        to_ml_dtypes(np.ones(3, np.uint16), "e4m3")
    with pytest.raises(ValueError, match="0..15"):
        to_ml_dtypes(np.array([17], np.uint8), "fp4")


def test_public_exports():
    assert refquant.encode_float is encode_float
    assert refquant.decode_float is decode_float
    assert refquant.FloatSpec is FloatSpec
    assert refquant.dtypes.get_float_spec is get_float_spec
