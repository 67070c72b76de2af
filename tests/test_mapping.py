"""Affine mapping: golden examples, torch.ao parity, invariants, degenerate inputs, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refquant.errors import ValidationError
from refquant.granularity import PerBlock, PerChannel, PerGroup, PerTensor, PerToken
from refquant.mapping import (SCALE_MIN, QuantParams, choose_qparams, dequantize, dequantize_affine, fake_quantize,
                              qparams_from_range, quantize, quantize_affine)

F32 = np.float32


# --- golden examples: M. Grootendorst, "A Visual Guide to Quantization" -------------

GUIDE = np.array([10.8, -7.59, 3.08, 3.02, 0.0, 1.0], dtype=F32)


def test_guide_symmetric_absmax_int8():
    p = choose_qparams(GUIDE)                          # symmetric, restricted [-127, 127]
    assert (p.qmin, p.qmax, p.zero_point) == (-127, 127, None)
    assert p.multiplier.item() == F32(127) / F32(10.8)          # s = 127 / 10.8
    assert p.scale.item() == F32(10.8) / F32(127)
    q = quantize(GUIDE, p)
    assert q.dtype == np.int8
    assert q[0] == 127 and q[2] == 36 and q[3] == 36              # 3.08 and 3.02 -> 36
    x_hat = dequantize(q, p)
    assert x_hat[2] == x_hat[3] == F32(36) * (F32(10.8) / F32(127))
    assert abs(x_hat[2] - 3.06) < 0.01                            # the guide's 3.06
    assert x_hat[0] == F32(10.8)                                 # the absmax is reproduced


def test_guide_asymmetric_zero_point_int8():
    p = choose_qparams(GUIDE, symmetric=False)
    assert (p.qmin, p.qmax) == (-128, 127)
    assert p.scale.item() == (F32(10.8) - F32(-7.59)) / F32(255)
    np.testing.assert_allclose(p.multiplier.item(), 255 / (10.8 + 7.59), rtol=1e-6)   # s = 255 / 18.39
    s = 255 / (10.8 + 7.59)
    assert p.zero_point.item() == round(-s * -7.59) - 128 == -23
    q = quantize(GUIDE, p)
    assert q[0] == 127 and q[1] == -128                          # the range ends map to the code ends
    assert q[4] == -23                                           # 0 maps to the zero point exactly
    assert dequantize(q, p)[4] == 0.0


def test_guide_clipping():
    x = np.array([-10.8, -5.0, -4.99, 0.5, 5.0, 7.0, 256.0], dtype=F32)
    p = choose_qparams(x, clip=(-5.0, 5.0))
    assert p.scale.item() == F32(5.0) / F32(127)
    q = quantize(x, p)
    np.testing.assert_array_equal(q[[0, 1, 4, 5, 6]], [-127, -127, 127, 127, 127])
    assert q[2] == -127 and q[3] == 13                           # inside the range: round(0.5 * 127 / 5) = 13


def test_clip_ratio_shrinks_observed_range():
    x = np.array([-2.0, 1.0, 4.0], dtype=F32)
    p = choose_qparams(x, clip=0.5)
    assert p.scale.item() == F32(2.0) / F32(127)
    np.testing.assert_array_equal(quantize(x, p), [-127, 64, 127])


# --- torch.ao parity ---------------------------------------------


@pytest.mark.oracle
@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
@pytest.mark.parametrize("case", ["qint8_sym", "qint8_affine", "quint8_affine", "quint8_sym", "per_channel"])
def test_qparams_match_torch_observers(case, rng):
    torch = pytest.importorskip("torch")
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    x = (rng.standard_normal((16, 64)) * rng.uniform(0.01, 10, (16, 1)) + 0.3).astype(F32)
    kwargs = dict(bits=8, restricted_range=False)
    if case == "qint8_sym":
        obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
        ours = choose_qparams(x, symmetric=True, **kwargs)
    elif case == "qint8_affine":
        obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
        ours = choose_qparams(x, symmetric=False, **kwargs)
    elif case == "quint8_affine":
        obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
        ours = choose_qparams(x, symmetric=False, signed=False, **kwargs)
    elif case == "quint8_sym":
        obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_symmetric)
        ours = choose_qparams(x, symmetric=True, signed=False, **kwargs)
    else:
        obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_affine)
        ours = choose_qparams(x, symmetric=False, granularity=PerChannel(0), **kwargs)
    obs(torch.from_numpy(x))
    t_scale, t_zp = obs.calculate_qparams()
    np.testing.assert_array_equal(ours.scale.reshape(-1), t_scale.numpy().astype(F32).reshape(-1))
    ours_zp = np.zeros_like(ours.scale, dtype=np.int32) if ours.zero_point is None else ours.zero_point
    np.testing.assert_array_equal(ours_zp.reshape(-1), t_zp.numpy().reshape(-1))
    # torch quantizes with x * (1 / scale); refquant divides. Codes agree except at float ties.
    if case != "per_channel":
        tq = torch.quantize_per_tensor(torch.from_numpy(x), float(t_scale), int(t_zp), obs.dtype).int_repr().numpy()
        diff = np.abs(quantize(x, ours).astype(np.int64) - tq.astype(np.int64))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-2


# --- per-group semantics: every granularity equals per-tensor on each group ---------


GRANS = [PerTensor(), PerChannel(0), PerChannel(1), PerChannel(-1), PerGroup(8), PerGroup(5), PerGroup(3, axis=0),
         PerGroup(1), PerToken(), PerBlock((4, 8)), PerBlock((3, 5))]


@pytest.mark.parametrize("gran", GRANS, ids=repr)
@pytest.mark.parametrize("symmetric", [True, False])
def test_granularity_equals_per_tensor_on_each_group(gran, symmetric, rng):
    x = (rng.standard_normal((7, 21)) * np.exp(rng.standard_normal((7, 1)))).astype(F32)
    p = choose_qparams(x, bits=4, symmetric=symmetric, granularity=gran)
    q = quantize(x, p)
    grid = gran.grid_shape(x.shape)
    ids = gran.expand(np.arange(int(np.prod(grid))).reshape(grid), x.shape)
    for g in range(int(np.prod(grid))):
        part = x[ids == g]
        ref = choose_qparams(part, bits=4, symmetric=symmetric)
        assert p.scale.reshape(-1)[g] == ref.scale.item()
        if not symmetric:
            assert p.zero_point.reshape(-1)[g] == ref.zero_point.item()
        np.testing.assert_array_equal(q[ids == g], quantize(part, ref))


def test_partial_last_group_gets_its_own_scale():
    x = np.array([[8.0, -4.0, 2.0, 1.0, 0.25, -0.125]], dtype=F32)   # groups of 4: [8,-4,2,1] and [0.25,-0.125]
    p = choose_qparams(x, granularity=PerGroup(4))
    np.testing.assert_array_equal(p.scale, [[F32(8.0) / F32(127), F32(0.25) / F32(127)]])
    q = quantize(x, p)
    np.testing.assert_array_equal(q, [[127, -64, 32, 16, 127, -64]])


def test_per_token_3d_and_per_block_2d(rng):
    x = rng.standard_normal((2, 5, 16)).astype(F32)
    p = choose_qparams(x, granularity=PerToken())
    assert p.scale.shape == (2, 5, 1)
    np.testing.assert_array_equal(p.scale[..., 0], np.abs(x).max(axis=-1) / F32(127))
    w = rng.standard_normal((10, 12)).astype(F32)
    pb = choose_qparams(w, granularity=PerBlock((4, 4)))
    assert pb.scale.shape == (3, 3)
    assert pb.scale[2, 1] == np.abs(w[8:, 4:8]).max() / F32(127)   # a partial (2 x 4) tile


def test_granularity_shorthands():
    x = np.ones((4, 8), dtype=F32)
    assert choose_qparams(x, axis=1).granularity == PerChannel(1)
    assert choose_qparams(x, group_size=4).granularity == PerGroup(4)
    assert choose_qparams(x, granularity="per_group", group_size=2, axis=0).granularity == PerGroup(2, 0)
    assert choose_qparams(x, granularity="per_token").granularity == PerToken()


# --- invariants ---------------------------------------------------------------------

finite = st.floats(-1e4, 1e4, width=32, allow_nan=False, allow_infinity=False)


@given(x=st.lists(finite, min_size=1, max_size=80).map(lambda v: np.array(v, dtype=F32)),
       bits=st.sampled_from([2, 3, 4, 8]), symmetric=st.booleans(), signed=st.booleans(),
       group=st.integers(1, 16))
def test_round_trip_error_idempotence_and_monotonicity(x, bits, symmetric, signed, group):
    group = min(group, x.size)
    p = choose_qparams(x, bits=bits, symmetric=symmetric, signed=signed, granularity=PerGroup(group))
    q = quantize(x, p)
    assert q.dtype == p.code_dtype and q.shape == x.shape
    assert q.min() >= p.qmin and q.max() <= p.qmax
    x_hat = dequantize(q, p)
    step = p.granularity.expand(p.scale, x.shape).astype(np.float64)
    err = np.abs(x_hat.astype(np.float64) - x)
    # every value lies inside its group's range (no clip), so the error is at most half a step
    # (plus float32 rounding of the quotient and the product)
    assert (err <= step * (0.5 + 1e-5) + 1e-30).all()
    np.testing.assert_array_equal(fake_quantize(x_hat, p), x_hat)          # idempotence, bit for bit
    # monotonic within a group: sorting x sorts its codes
    ids = np.arange(x.size) // group
    for g in np.unique(ids):
        xs, qs = x[ids == g], q[ids == g].astype(np.int64)
        order = np.argsort(xs, kind="stable")
        assert (np.diff(qs[order]) >= 0).all()


def test_asymmetric_range_without_zero_is_extended(rng):
    pos = rng.uniform(2.0, 10.0, 50).astype(F32)
    p = choose_qparams(pos, symmetric=False, signed=False)
    assert p.zero_point.item() == 0 and p.scale.item() == pos.max() / F32(255)
    assert quantize(pos, p).max() == 255
    neg = -pos
    pn = choose_qparams(neg, symmetric=False)
    assert pn.zero_point.item() == 127 and quantize(neg, pn).min() == -128
    assert dequantize(quantize(np.zeros(1, F32), pn), pn)[0] == 0.0      # 0 stays exact


def test_unsigned_symmetric_zero_point_is_half_range():
    x = np.array([-3.0, 0.0, 3.0], dtype=F32)
    p = choose_qparams(x, bits=4, signed=False)                 # GPTQ sym: zero = (maxq + 1) / 2 = 8
    assert (p.qmin, p.qmax, p.zero_point.item()) == (0, 15, 8)
    assert p.scale.item() == F32(3.0) / F32(7.5)
    np.testing.assert_array_equal(quantize(x, p), [0, 8, 15])


def test_full_signed_range_uses_torch_divisor():
    x = np.array([-127.5, 127.5, 0.5, 1.5], dtype=F32)
    p = choose_qparams(x, restricted_range=False)
    assert p.scale.item() == 1.0                                 # 127.5 / 127.5
    np.testing.assert_array_equal(quantize(x, p), [-128, 127, 0, 2])   # -127.5 -> -128 (half even); 128 clamps


def test_code_dtypes():
    x = np.linspace(-1, 1, 9, dtype=F32)
    assert quantize(x, choose_qparams(x, bits=8)).dtype == np.int8
    assert quantize(x, choose_qparams(x, bits=8, symmetric=False, signed=False)).dtype == np.uint8
    assert quantize(x, choose_qparams(x, bits=12)).dtype == np.int16
    assert quantize(x, choose_qparams(x, bits=16, symmetric=False, signed=False)).dtype == np.uint16
    assert quantize(x, choose_qparams(x, bits=1, symmetric=False)).dtype == np.int8


# --- rounding ------------------------------------------------------------------------


def test_rounding_modes_on_exact_ties(rng):
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 3.25], dtype=F32)
    p = choose_qparams(x, clip=(-127.0, 127.0))                 # scale exactly 1.0
    assert p.scale.item() == 1.0
    np.testing.assert_array_equal(quantize(x, p), [0, 2, 2, 0, -2, 3])
    np.testing.assert_array_equal(quantize(x, p, rounding="half_away"), [1, 2, 3, -1, -3, 3])
    a = quantize(x, p, rounding="stochastic", rng=np.random.default_rng(5))
    b = quantize(x, p, rounding="stochastic", rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)                         # reproducible from the seed
    assert (np.abs(a - x) < 1).all()
    many = np.full(20000, 0.25, dtype=F32)
    mean = quantize(many, p, rounding="stochastic", rng=rng).astype(np.float64).mean()
    assert abs(mean - 0.25) < 0.02                              # unbiased


def test_bad_rounding():
    x = np.ones(3, F32)
    p = choose_qparams(x)
    with pytest.raises(ValueError, match="rounding='nearest'"):
        quantize(x, p, rounding="nearest")
    with pytest.raises(ValueError, match="rng"):
        quantize(x, p, rounding="stochastic")
    with pytest.raises(TypeError, match="Generator"):
        quantize(x, p, rounding="stochastic", rng=3)


# --- degenerate inputs -----------------------------------------------------------------


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("x", [np.zeros(5, F32), np.zeros(0, F32), np.zeros((0, 4), F32), np.full(6, -2.5, F32),
                               np.full(4, 3.0, F32), np.array([1e-42, -3e-43], F32), np.float32(2.0) * np.ones((), F32)],
                         ids=["zeros", "empty", "empty2d", "const_neg", "const_pos", "subnormal", "scalar"])
def test_degenerate_inputs_are_finite_without_warnings(x, symmetric):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = choose_qparams(x, symmetric=symmetric)
        q = quantize(x, p)
        x_hat = dequantize(q, p)
    assert np.isfinite(p.scale).all() and (p.scale > 0).all()
    assert x_hat.shape == x.shape and np.isfinite(x_hat).all()
    if x.size and not np.any(x):
        assert (x_hat == 0).all()
        assert p.scale.item() == SCALE_MIN                       # documented: zero range -> 2**-126
    if x.size and np.all(x == x.flat[0]) and x.flat[0] != 0:
        assert np.abs(x_hat - x).max() <= np.abs(x).max() / 127  # constants survive (one step at most)


@pytest.mark.parametrize("symmetric", [True, False])
def test_subnormal_groups_keep_the_half_step_bound(symmetric, rng):
    # a subnormal scale has too few significant bits: x / scale could pass qmax + 0.5
    for exponent in (-45, -42, -40, -38, -37):
        x = (rng.standard_normal((16, 8)) * 10.0**exponent).astype(F32)
        p = choose_qparams(x, symmetric=symmetric, granularity=PerChannel(0))
        assert (p.scale >= SCALE_MIN).all()
        err = np.abs(dequantize(quantize(x, p), p).astype(np.float64) - x)
        assert (err <= p.scale.astype(np.float64) * 0.5).all()


def test_constant_block_is_exact_for_symmetric():
    x = np.full((2, 8), -2.5, F32)
    p = choose_qparams(x, granularity=PerChannel(0))
    np.testing.assert_array_equal(dequantize(quantize(x, p), p), x)


def test_zero_group_next_to_nonzero_group():
    x = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 3.0, 4.0]], dtype=F32)
    p = choose_qparams(x, symmetric=False, granularity=PerToken())
    np.testing.assert_array_equal(dequantize(quantize(x, p), p)[0], 0.0)
    assert p.scale[0, 0] == SCALE_MIN and p.zero_point[0, 0] == -128


def test_extreme_magnitudes():
    big = np.array([3.4028235e38, -3.4028235e38 / 2, 1.0], dtype=F32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = choose_qparams(big, symmetric=False)                 # hi - lo overflows float32
        assert np.isfinite(p.scale).all()
        assert p.scale.item() == F32((3.4028235e38 * 1.5) / 255)
        np.testing.assert_array_equal(quantize(big, p)[:2], [127, -128])
        assert np.isfinite(dequantize(quantize(big, p), p)).all()
        ps = choose_qparams(np.array([1.0, 2.0], F32), clip=(-1e-3, 1e-3))
        np.testing.assert_array_equal(quantize(np.array([np.inf, -np.inf, 3e38], F32), ps), [127, -127, 127])


def test_float64_and_float16_inputs_are_cast_to_float32():
    x64 = np.array([0.1, -0.7, 0.33333333333], dtype=np.float64)
    p = choose_qparams(x64)
    np.testing.assert_array_equal(quantize(x64, p), quantize(x64.astype(F32), p))
    x16 = x64.astype(np.float16)
    np.testing.assert_array_equal(quantize(x16, choose_qparams(x16)), quantize(x16.astype(F32), choose_qparams(x16.astype(F32))))
    assert dequantize(quantize(x64, p), p).dtype == F32


def test_inputs_are_not_mutated(rng):
    x = rng.standard_normal((4, 8)).astype(F32)
    before = x.copy()
    p = choose_qparams(x, symmetric=False, granularity=PerGroup(3))
    scale_before, zp_before = p.scale.copy(), p.zero_point.copy()
    q = quantize(x, p)
    q_before = q.copy()
    fake_quantize(x, p)
    dequantize(q, p)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(q, q_before)
    np.testing.assert_array_equal(p.scale, scale_before)
    np.testing.assert_array_equal(p.zero_point, zp_before)


def test_params_apply_to_other_token_counts(rng):
    calib = rng.standard_normal((32, 16)).astype(F32)
    p = choose_qparams(calib, granularity=PerChannel(1))         # per input channel, any token count
    new = rng.standard_normal((5, 16)).astype(F32)
    assert quantize(new, p).shape == (5, 16)
    with pytest.raises(ValueError, match="do not fit"):
        quantize(rng.standard_normal((5, 8)).astype(F32), p)


# --- errors ------------------------------------------------------------------------------


def test_parameter_errors():
    x = np.ones(8, F32)
    for bits in (0, -1, 17, 2**64):
        with pytest.raises(ValueError, match=f"bits={bits}"):
            choose_qparams(x, bits=bits)
    with pytest.raises(ValueError, match="bits=1"):
        choose_qparams(x, bits=1, symmetric=True)
    with pytest.raises(TypeError, match="bits"):
        choose_qparams(x, bits=True)
    with pytest.raises(TypeError, match="floating-point"):
        choose_qparams(np.arange(4))
    with pytest.raises(TypeError, match="floating-point"):
        choose_qparams([1, 2, 3])
    with pytest.raises(ValueError, match="per_row"):
        choose_qparams(x, granularity="per_row")
    with pytest.raises(TypeError, match="granularity"):
        choose_qparams(x, granularity=3)
    with pytest.raises(ValueError, match="conflict"):
        choose_qparams(x, granularity=PerTensor(), axis=0)
    with pytest.raises(ValueError, match="group_size=16"):
        choose_qparams(x, group_size=16)
    with pytest.raises(ValueError, match="clip"):
        choose_qparams(x, clip=(1.0, -1.0))
    with pytest.raises(ValueError, match="clip"):
        choose_qparams(x, clip=1.5)
    with pytest.raises(ValueError, match="restricted"):
        choose_qparams(x, signed=False, restricted_range=True)


def test_nan_and_inf_inputs():
    x = np.array([1.0, np.nan], dtype=F32)
    with pytest.raises(ValueError, match="NaN"):
        choose_qparams(x)
    with pytest.raises(ValueError, match="inf"):
        choose_qparams(np.array([1.0, np.inf], F32))
    p = choose_qparams(np.ones(2, F32))
    with pytest.raises(ValueError, match="NaN"):
        quantize(x, p)


def test_dequantize_rejects_codes_outside_range():
    p = choose_qparams(np.ones(3, F32), bits=4)
    with pytest.raises(ValueError, match="code -8"):
        dequantize(np.array([0, -8, 7], dtype=np.int8), p)
    with pytest.raises(TypeError, match="integer"):
        dequantize(np.array([0.0, 1.0, 2.0]), p)


def test_validate_catches_inconsistent_params():
    good = choose_qparams(np.linspace(-1, 2, 8, dtype=F32), symmetric=False)
    assert good.validate(shape=(8,)) is good
    bad = [
        dict(scale=np.array([0.0], F32)),
        dict(scale=np.array([np.nan], F32)),
        dict(scale=np.array([1.0])),                                   # float64
        dict(zero_point=np.array([200], np.int32)),
        dict(zero_point=np.array([1, 2], np.int32)),
        dict(bits=0),
        dict(qmin=5, qmax=5),
        dict(granularity="per_tensor"),
    ]
    from dataclasses import replace

    for change in bad:
        with pytest.raises(ValidationError):
            replace(good, **change).validate()
    with pytest.raises(ValueError, match="do not fit"):
        good.validate(shape=(2, 4))


def test_qparams_from_range_matches_choose_qparams(rng):
    x = rng.standard_normal((6, 10)).astype(F32)
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    for symmetric in (True, False):
        a = qparams_from_range(lo, hi, 4, symmetric, granularity=PerChannel(0))
        b = choose_qparams(x, 4, symmetric, granularity=PerChannel(0))
        np.testing.assert_array_equal(a.scale, b.scale)
        assert (a.zero_point is None) == (b.zero_point is None)
    with pytest.raises(ValueError, match="lo must be <= hi"):
        qparams_from_range(1.0, -1.0)
    with pytest.raises(ValueError, match="finite"):
        qparams_from_range(np.float32(np.nan), 1.0)


def test_quantize_affine_is_the_one_implementation(rng):
    x = rng.standard_normal(33).astype(F32)
    p = choose_qparams(x, symmetric=False, bits=3)
    np.testing.assert_array_equal(quantize(x, p), quantize_affine(x, p))
    np.testing.assert_array_equal(dequantize(quantize(x, p), p), dequantize_affine(quantize_affine(x, p), p))
    assert isinstance(p, QuantParams) and p.axis is None and p.group_size is None
    assert p == p and hash(p) == hash(p)                         # identity semantics (array fields)
    pg = choose_qparams(x, group_size=8)
    assert (pg.axis, pg.group_size) == (-1, 8)
