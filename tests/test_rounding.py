"""refquant.rounding: golden tie values, C roundf pitfalls, stochastic rounding."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.rounding import NEAREST_INT_MAX, nearest_int, round_half_away, round_half_even, round_stochastic

F32 = np.float32


def bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).view(np.uint32 if np.asarray(a).dtype == np.float32 else np.uint64)


# ---- golden values ----------------------------------------

TIES = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -3.5], F32)


def test_half_even_ties_match_np_round():
    expected = np.array([0, 2, 2, -0.0, -2, -2, 4, -4], F32)
    got = round_half_even(TIES)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(bits(got), bits(expected))  # -0.5 -> -0.0, sign kept
    np.testing.assert_array_equal(got, np.round(TIES))


def test_half_away_ties_are_c_roundf():
    expected = np.array([1, 2, 3, -1, -2, -3, 4, -4], F32)
    np.testing.assert_array_equal(round_half_away(TIES), expected)


@pytest.mark.parametrize("x, expected", [
    (0.49999997, 0.0),          # floor(x + 0.5) gives 1.0 here: x + 0.5 rounds up in float32
    (-0.49999997, -0.0),
    (8388609.0, 8388609.0),     # 2^23 + 1: x + 0.5 rounds to 8388610 in float32
    (-8388609.0, -8388609.0),
    (16777215.0, 16777215.0),
    (4194304.5, 4194305.0),     # largest float32 with a .5 fraction: 2^22 + 0.5
    (-4194304.5, -4194305.0),
    (2.5, 3.0), (-0.4, -0.0), (0.0, 0.0), (-0.0, -0.0),
    (3.4028234663852886e38, 3.4028234663852886e38),
    (float("inf"), float("inf")), (float("-inf"), float("-inf")),
])
def test_half_away_golden(x, expected):
    got = round_half_away(np.array([x], F32))
    np.testing.assert_array_equal(bits(got), bits(np.array([expected], F32)))


def test_half_away_nan_propagates():
    assert np.isnan(round_half_away(np.array([np.nan], F32))).all()
    assert np.isnan(round_half_even(np.array([np.nan], F32))).all()


def test_half_away_matches_exact_definition_on_random_patterns(rng):
    """sign(x) * floor(|x| + 1/2) evaluated exactly in float64, for every finite float32."""
    x = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32).view(F32)
    x = np.concatenate([x[np.isfinite(x)], rng.uniform(-20, 20, 50_000).astype(F32),
                        (rng.integers(-1000, 1000, 10_000) + 0.5).astype(F32)])
    x64 = x.astype(np.float64)
    expected = (np.sign(x64) * np.floor(np.abs(x64) + 0.5)).astype(F32)  # exact: |x| + 0.5 fits in float64
    expected = np.copysign(expected, x)
    np.testing.assert_array_equal(bits(round_half_away(x)), bits(expected))


def test_half_even_equals_rint_float64_and_float32(rng):
    x = rng.standard_normal(10_000) * 100
    np.testing.assert_array_equal(round_half_even(x), np.rint(x))
    assert round_half_even(x).dtype == np.float64
    assert round_half_away(x).dtype == np.float64
    np.testing.assert_array_equal(round_half_away(x.astype(F32)), round_half_away(x.astype(F32).astype(np.float64)))


def test_rounding_does_not_mutate(rng):
    x = rng.standard_normal(100).astype(F32)
    before = x.copy()
    round_half_away(x), round_half_even(x), round_stochastic(x, rng), nearest_int(x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("fn", [round_half_even, round_half_away, nearest_int])
def test_rejects_integer_input(fn):
    with pytest.raises(TypeError, match="x must be"):
        fn(np.array([1, 2, 3]))
    with pytest.raises(TypeError):
        fn(np.array([True]))


# ---- ggml nearest_int -----------------------------------------------------------------

def test_nearest_int_is_half_even_in_its_range(rng):
    x = np.concatenate([rng.uniform(-NEAREST_INT_MAX, NEAREST_INT_MAX, 50_000),
                        rng.integers(-4194303, 4194303, 10_000) + 0.5, TIES,
                        [NEAREST_INT_MAX, -NEAREST_INT_MAX, 4194302.5, -0.0]]).astype(F32)
    got = nearest_int(x)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.rint(x).astype(np.int32))


@pytest.mark.parametrize("bad", [4194304.0, -4194304.0, np.nan, np.inf])
def test_nearest_int_refuses_outside_range(bad):
    with pytest.raises(ValueError, match="4194303"):
        nearest_int(np.array([0.0, bad], F32))


# ---- stochastic -----------------------------------------------------------------------

def test_stochastic_is_unbiased():
    rng = np.random.default_rng(7)
    x = np.array([0.25, -0.25, 2.7, -3.1, 0.5, 1e-3], F32)
    n = 200_000
    draws = round_stochastic(np.broadcast_to(x, (n, x.size)), rng)
    assert set(np.unique(draws[:, 0])) == {0.0, 1.0}
    assert set(np.unique(draws[:, 2])) == {2.0, 3.0}
    mean = draws.astype(np.float64).mean(axis=0)
    frac = x.astype(np.float64) - np.floor(x.astype(np.float64))
    tol = 5 * np.sqrt(frac * (1 - frac) / n) + 1e-12   # 5 sigma of a Bernoulli mean
    np.testing.assert_array_less(np.abs(mean - x.astype(np.float64)), tol)


def test_stochastic_keeps_integers_and_specials(rng):
    x = np.array([0.0, -0.0, 3.0, -7.0, 8388609.0, np.inf, -np.inf], F32)
    for _ in range(5):
        got = round_stochastic(x, rng)
        np.testing.assert_array_equal(got, x)
    assert np.isnan(round_stochastic(np.array([np.nan], F32), rng)).all()


def test_stochastic_rounds_to_a_neighbour_only(rng):
    x = (rng.standard_normal(100_000) * 1000).astype(F32)
    got = round_stochastic(x, rng)
    assert got.dtype == np.float32
    assert ((got == np.floor(x)) | (got == np.ceil(x))).all()


def test_stochastic_is_deterministic_per_seed():
    x = np.linspace(-5, 5, 1001).astype(F32)
    a = round_stochastic(x, np.random.default_rng(123))
    b = round_stochastic(x, np.random.default_rng(123))
    c = round_stochastic(x, np.random.default_rng(124))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_stochastic_never_touches_global_rng():
    state = np.random.get_state()[1].copy()
    round_stochastic(np.ones(10, F32) * 0.5, np.random.default_rng(0))
    np.testing.assert_array_equal(np.random.get_state()[1], state)


@pytest.mark.parametrize("bad", [None, 0, np.random.RandomState(0), "seed"])
def test_stochastic_rejects_non_generator(bad):
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        round_stochastic(np.ones(3, F32), bad)


@pytest.mark.filterwarnings("error")
def test_signalling_nan_stays_nan_without_warnings(rng):
    snan32 = np.array([0x7F800001, 0xFFA00000], np.uint32).view(F32)
    snan64 = np.array([0x7FF0000000000001], np.uint64).view(np.float64)
    for x in (snan32, snan64):
        assert np.isnan(round_half_even(x)).all()
        assert np.isnan(round_half_away(x)).all()
        assert np.isnan(round_stochastic(x, rng)).all()
