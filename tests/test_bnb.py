"""refquant.bnb: NF4/FP4 blockwise quantization, double quantization, 8-bit dynamic
blockwise, int8 vector-wise, the QuantState container and its safetensors form.

Hand-worked golden vectors and invariants; the bit-for-bit comparison with
bitsandbytes itself is in ``test_bnb_oracle.py``.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import refquant
from refquant import bnb
from refquant.errors import ValidationError
from refquant.formats import bnb as fmt

F32 = np.float32
QUANT_TYPES = ("nf4", "fp4")
NF4 = fmt.code_4bit("nf4")
FP4 = fmt.code_4bit("fp4")


def unpack(packed: np.ndarray, n: int) -> np.ndarray:
    """High nibble first, written out independently of the implementation."""
    return np.stack([packed >> 4, packed & 0xF], axis=1).reshape(-1)[:n]


def replace(q: bnb.QuantState, **changes) -> bnb.QuantState:
    import dataclasses

    return dataclasses.replace(q, **changes)


# ---- tables ----------------------------------------------------------------------------


def test_dynamic_map_structure():
    code = bnb.dynamic_map()
    assert code.dtype == F32 and code.shape == (256,)
    assert (np.diff(code) > 0).all()
    assert code[127] == 0 and code[255] == 1
    assert code[0] == F32(-0.99296874)
    # 127 negative values mirror the 127 positive ones (indices 128..254).
    np.testing.assert_array_equal(-code[:127], code[128:255][::-1])
    # Exponent i = 0..6 contributes 2**i values per sign, scaled by 10**(i-6):
    # the smallest magnitude is the mean of linspace(0.1, 1, 2) times 1e-6.
    assert code[128] == F32(F32(0.55) * F32(1e-6))


def test_4bit_tables_are_the_codebooks():
    from refquant.dtypes.codebooks import get_codebook

    for qt in QUANT_TYPES:
        np.testing.assert_array_equal(fmt.code_4bit(qt), get_codebook(qt).table)
    assert NF4[7] == 0 and NF4[0] == -1 and NF4[15] == 1
    assert FP4[3] == 1 and FP4[11] == -1 and FP4[5] == 0.5
    assert not np.signbit(FP4[8])  # +0.0, as get_4bit_type


# ---- 4-bit golden vectors -----------------------------------------------------------


def test_nf4_golden_partial_block():
    # One partial block (n=4 < 32): absmax 2, scaled by true division to [1, -1, 0.5, 0].
    # 0.5 lies below the NF4 midpoint 0.50166 between 0.4407 (code 12) and 0.5626 (13).
    q = bnb.quantize_4bit(np.array([2.0, -2.0, 1.0, 0.0], F32), "nf4", blocksize=32)
    assert q.packed.tolist() == [0xF0, 0xC7]
    assert q.absmax.tolist() == [2.0]
    np.testing.assert_array_equal(bnb.dequantize_4bit(q), np.array([2.0, -2.0, 2 * NF4[12], 0.0], F32))


def test_fp4_golden_and_signed_zero_quirk():
    # FP4 codes: 1.0 -> 3, -1.0 -> 11, 0.5 -> 5; bitsandbytes' CPU quantizer gives
    # (-0.0026, 0] code 0 and (0, 0.0026] code 8: the reverse of a sign bit.
    x = np.array([4.0, -4.0, 2.0, 0.0, -0.0, 4e-3, -4e-3, 2e-2], F32)
    q = bnb.quantize_4bit(x, "fp4", blocksize=32)
    assert unpack(q.packed, 8).tolist() == [3, 11, 5, 0, 0, 8, 0, 1]
    assert q.packed.tolist() == [0x3B, 0x50, 0x08, 0x01]


def test_odd_length_pads_with_the_code_of_zero():
    x = np.array([1.0, -0.5, 0.25], F32)
    assert bnb.quantize_4bit(x, "nf4", 64).packed[-1] & 0xF == 7
    assert bnb.quantize_4bit(x, "fp4", 64).packed[-1] & 0xF == 0


def test_all_zero_blocks():
    # A full all-zero block stores absmax 0 (NF4 byte 0x77, FP4 0x00); an all-zero
    # partial last block stores torch's clamp value float32(1e-38). Both decode to 0.
    x = np.zeros(64 + 64 + 10, F32)
    x[64:128] = np.linspace(-1, 1, 64, dtype=F32)
    for qt, byte in (("nf4", 0x77), ("fp4", 0x00)):
        q = bnb.quantize_4bit(x, qt, 64)
        assert (q.packed[:32] == byte).all()
        assert q.absmax[0] == 0 and q.absmax[1] == 1 and q.absmax[2] == F32(1e-38)
        np.testing.assert_array_equal(bnb.dequantize_4bit(q)[:64], 0)
        np.testing.assert_array_equal(bnb.dequantize_4bit(q)[128:], 0)


def test_one_huge_outlier_block():
    x = np.full(64, 0.5, F32)
    x[17] = 3e38
    q = bnb.quantize_4bit(x, "nf4", 64)
    assert q.absmax.tolist() == [F32(3e38)]
    codes = unpack(q.packed, 64)
    assert codes[17] == 15 and (np.delete(codes, 17) == 7).all()
    out = bnb.dequantize_4bit(q)
    assert out[17] == F32(3e38) and (np.delete(out, 17) == 0).all()


def test_partial_block_absmax_uses_only_real_elements(rng):
    for n, bs in ((64 + 3, 64), (4096 + 1, 4096), (100, 32), (5, 32)):
        x = rng.standard_normal(n).astype(F32)
        x[: n - n % bs] *= 100  # full blocks much larger than the tail
        q = bnb.quantize_4bit(x, "nf4", bs)
        tail = x[n - n % bs:]
        assert q.absmax.shape == (math.ceil(n / bs),)
        assert q.absmax[-1] == np.abs(tail).max()


def test_blocks_follow_c_order(rng):
    x = rng.standard_normal((3, 40)).astype(F32)
    q2 = bnb.quantize_4bit(x, "fp4", 32)
    q1 = bnb.quantize_4bit(x.reshape(-1), "fp4", 32)
    np.testing.assert_array_equal(q2.packed, q1.packed)
    np.testing.assert_array_equal(q2.absmax, np.abs(np.append(x.reshape(-1), np.zeros(8, F32))).reshape(4, 32).max(1))
    assert bnb.dequantize_4bit(q2).shape == (3, 40)


@pytest.mark.parametrize("quant_type", QUANT_TYPES)
@pytest.mark.parametrize("blocksize", fmt.BLOCKSIZES_4BIT)
def test_4bit_error_bound_and_nearest_code(rng, quant_type, blocksize):
    n = 3 * blocksize + 5
    x = rng.standard_t(3, n).astype(F32)
    q = bnb.quantize_4bit(x, quant_type, blocksize)
    out = bnb.dequantize_4bit(q)
    table = fmt.code_4bit(quant_type)
    scale = np.repeat(q.absmax, blocksize)[:n].astype(np.float64)
    # Every code is the nearest table value of x / absmax (up to float32 rounding).
    dist = np.abs(x[:, None] / scale[:, None] - table[None, :].astype(np.float64))
    chosen = dist[np.arange(n), unpack(q.packed, n)]
    assert (chosen <= dist.min(axis=1) + 1e-6).all()
    half_gap = np.diff(np.sort(table)).max() / 2
    assert (np.abs(out - x) <= half_gap * scale * (1 + 1e-6)).all()


def test_nf4_quantize_of_dequantized_is_idempotent(rng):
    x = rng.standard_normal(1000).astype(F32)
    for bs in (32, 64, 256):
        q = bnb.quantize_4bit(x, "nf4", bs)
        again = bnb.quantize_4bit(bnb.dequantize_4bit(q), "nf4", bs)
        np.testing.assert_array_equal(again.packed, q.packed)
        np.testing.assert_array_equal(again.absmax, q.absmax)


def test_fp16_and_bf16_inputs_are_widened_exactly(rng):
    x = rng.standard_normal(300).astype(F32)
    for dtype in (np.float16, ml_dtypes.bfloat16):
        xd = x.astype(dtype)
        q = bnb.quantize_4bit(xd, "nf4", 64)
        ref = bnb.quantize_4bit(xd.astype(F32), "nf4", 64)
        assert q.dtype == np.dtype(dtype).name
        np.testing.assert_array_equal(q.packed, ref.packed)


def test_empty_input():
    q = bnb.quantize_4bit(np.zeros((0, 4), F32), "nf4", 64, double_quant=True)
    assert q.packed.size == 0 and q.absmax.size == 0 and q.nested is None
    assert bnb.dequantize_4bit(q).shape == (0, 4)


# ---- double quantization ----------------------------------------------------------


def test_double_quant_structure_and_bits_per_weight(rng):
    x = rng.standard_normal(64 * 1000 + 7).astype(F32)
    plain = bnb.quantize_4bit(x, "nf4", 64)
    dq = bnb.quantize_4bit(x, "nf4", 64, double_quant=True)
    nested = dq.nested
    assert nested.codes.dtype == np.uint8 and nested.codes.shape == (1001,)
    assert nested.absmax.shape == (4,) and nested.blocksize == 256
    assert nested.offset == float(fmt.torch_sum_float32(plain.absmax) / F32(1001))
    np.testing.assert_array_equal(dq.packed, plain.packed)
    # The 8-bit absmax is close to the float one: the dynamic map's step near 1 is
    # ~1/64 of the block's absmax2 = max |absmax - offset|.
    err = np.abs(dq.absmax - plain.absmax)
    assert err.max() <= np.repeat(nested.absmax, 256)[:1001].max() / 64
    assert plain.bits_per_weight == pytest.approx((8 * 32004 + 32 * 1001) / x.size)
    assert dq.bits_per_weight == pytest.approx((8 * 32004 + 8 * 1001 + 32 * 4 + 32) / x.size)


def test_bits_per_weight_blocksize_64_large_tensor():
    # 4 + 8/64 + 32/(64*256) = 4.126953 bits/weight, plus the offset.
    n = 4096 * 4096
    x = np.ones(n, F32)
    assert bnb.quantize_4bit(x, "nf4", 64, double_quant=True).bits_per_weight == pytest.approx(4.126953125 + 32 / n)
    assert bnb.quantize_4bit(x, "nf4", 64).bits_per_weight == 4.5


def test_single_block_double_quant_restores_the_offset():
    q = bnb.quantize_4bit(np.arange(40, dtype=F32), "fp4", 64, double_quant=True)
    assert q.nested.codes.tolist() == [0] and q.nested.absmax.tolist() == [0.0]
    assert q.absmax.tolist() == [39.0] and q.nested.offset == 39.0


def test_double_quant_of_overflowing_absmax_sum_raises():
    x = np.full(128, 3e38, F32)
    with pytest.raises(ValueError, match="double quantization is undefined"):
        bnb.quantize_4bit(x, "nf4", 64, double_quant=True)
    assert bnb.quantize_4bit(x, "nf4", 64).absmax.tolist() == [F32(3e38)] * 2


def test_torch_sum_order_properties(rng):
    ints = rng.integers(0, 1000, 20000).astype(F32)
    assert fmt.torch_sum_float32(ints) == ints.astype(np.int64).sum()
    x = rng.random(30000).astype(F32)
    s = fmt.torch_sum_float32(x)
    assert abs(float(s) - math.fsum(x.astype(np.float64))) <= 1e-6 * float(s)
    # Below 32769 elements torch uses one chunk whatever its thread count.
    assert fmt.torch_sum_float32(x, threads=4) == s
    big = rng.random(70000).astype(F32)
    one, two = fmt.torch_sum_float32(big), fmt.torch_sum_float32(big, threads=2)
    assert two == F32(F32(0) + fmt.torch_sum_float32(big[:35000]) + fmt.torch_sum_float32(big[35000:]))
    assert abs(float(one) - float(two)) <= 1e-5 * float(one)


# ---- 8-bit dynamic blockwise -----------------------------------------------------


def test_blockwise_golden_codes():
    x = np.array([0.0, 1.0, -1.0, 0.5, -0.0, 1e-9], F32)
    q = bnb.quantize_blockwise(x, 64)
    code = bnb.dynamic_map()
    # +-absmax -> indices 255 / 0; an exact 0 in a non-zero block -> 131 (+2.1e-5),
    # because the LUT grid point nearest 0 is 1.5e-5.
    assert q.packed[1] == 255 and q.packed[2] == 0
    assert q.packed[0] == 131 and q.packed[4] == 131 and q.packed[5] == 131
    assert code[131] == F32(2.1249998e-05) and q.absmax.tolist() == [1.0]


def test_blockwise_code_is_nearest_code_of_the_lut_grid_point(rng):
    # Brute force in float64: grid index j = floor(65535 * (v + 1) / 2 + 0.5), grid point
    # g = 2 j / 65535 - 1, code = argmin |dynamic_map - g|.
    x = np.concatenate([[1.0], rng.uniform(-1, 1, 3000), rng.uniform(-1e-3, 1e-3, 1000)]).astype(F32)
    q = bnb.quantize_blockwise(x, 4096)
    j = np.floor(65535 * (x.astype(np.float64) + 1) / 2 + 0.5)
    g = 2 * j / 65535 - 1
    expected = np.abs(bnb.dynamic_map()[None, :].astype(np.float64) - g[:, None]).argmin(axis=1)
    np.testing.assert_array_equal(q.packed, expected)
    # ... which is not always the nearest code of v itself (codes 124..130 never occur).
    assert not np.isin(q.packed, np.arange(124, 131)).any()


def test_blockwise_all_zero_block_and_partial_block(rng):
    x = np.zeros(256 + 100, F32)
    x[256:] = rng.standard_normal(100)
    q = bnb.quantize_blockwise(x, 256)
    assert (q.packed[:256] == 0).all() and q.absmax[0] == 0
    assert q.absmax[1] == np.abs(x[256:]).max()
    out = bnb.dequantize_blockwise(q)
    np.testing.assert_array_equal(out[:256], 0)
    assert np.abs(out[256:] - x[256:]).max() <= 0.02 * q.absmax[1]


def test_blockwise_subnormal_absmax_defined():
    # absmax below 1/FLT_MAX: the float32 reciprocal overflows; zeros get code 0 and the
    # other values saturate to +-1 (what the x86-64 library writes).
    q = bnb.quantize_blockwise(np.array([1e-39, 0.0, -5e-40, 3e-40], F32), 64)
    assert q.packed.tolist() == [255, 0, 0, 255]


@pytest.mark.parametrize("blocksize", fmt.BLOCKSIZES_8BIT)
def test_blockwise_error_bound(rng, blocksize):
    x = rng.standard_normal(2 * blocksize + 3).astype(F32)
    q = bnb.quantize_blockwise(x, blocksize)
    out = bnb.dequantize_blockwise(q)
    scale = np.repeat(q.absmax, blocksize)[: x.size]
    # Largest gap of the dynamic map is between 0.9... and 1.0 (~0.0142 / 2), plus the
    # LUT grid step 2/65535.
    assert (np.abs(out - x) <= (np.diff(bnb.dynamic_map()).max() / 2 + 4e-5) * scale).all()


# ---- int8 vector-wise -------------------------------------------------------------


def test_int8_vectorwise_golden():
    x = np.array([[1.0, -0.5, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0], [2.0, 1.0, -2.0, 0.5]], F32)
    q, stats, cols = bnb.int8_vectorwise_quant(x)
    # -63.5 rounds half to even -> -64; 31.75 -> 32; an all-zero row -> stat 0, codes 0.
    assert q.tolist() == [[127, -64, 32, 0], [0, 0, 0, 0], [127, 64, -127, 32]]
    assert stats.tolist() == [1.0, 0.0, 2.0] and cols.dtype == np.int64 and cols.size == 0
    np.testing.assert_array_equal(bnb.int8_vectorwise_dequant(q, stats)[0], F32([1.0, -64 / 127, 32 / 127, 0]))


def test_int8_vectorwise_threshold():
    x = np.array([[6.0, 1.0, 0.5], [0.5, 0.25, -7.0]], F32)
    q, stats, cols = bnb.int8_vectorwise_quant(x, threshold=6.0)
    assert cols.tolist() == [0, 2]
    assert stats.tolist() == [1.0, 0.5]                   # outliers left out of the absmax
    assert q.tolist() == [[0, 127, 0], [0, 64, 0]]        # whole outlier columns are 0
    # One row: only the outlier elements are 0.
    q1, s1, c1 = bnb.int8_vectorwise_quant(x[:1], threshold=6.0)
    assert q1.tolist() == [[0, 127, 64]] and s1.tolist() == [1.0] and c1.tolist() == [0]
    # The threshold is cast to the input dtype: float16(6.002) = 6.0039 > 6.0.
    _, _, c16 = bnb.int8_vectorwise_quant(x.astype(np.float16), threshold=6.002)
    assert c16.tolist() == [2]


def test_int8_vectorwise_subnormal_rows():
    # A row absmax below 127 / FLT_MAX overflows bitsandbytes' float32 scale (it writes 0
    # codes there); refquant computes the row in float64: the absmax element is +-127.
    x = np.array([[1e-45, -1e-45, 0.0, 5e-38], [1e-39, -3e-39, 0.0, 0.0]], F32)
    q, stats, _ = bnb.int8_vectorwise_quant(x)
    assert q.tolist() == [[0, 0, 0, 127], [42, -127, 0, 0]]
    assert stats.tolist() == [F32(5e-38), F32(3e-39)]


# ---- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize("blocksize", [0, 16, 48, 100, 8192, 2**64, -64])
def test_bad_blocksize_raises_valueerror(blocksize):
    x = np.ones(64, F32)
    with pytest.raises(ValueError, match="blocksize"):
        bnb.quantize_4bit(x, "nf4", blocksize)
    with pytest.raises(ValueError, match="blocksize"):
        bnb.quantize_blockwise(x, blocksize)


def test_blockwise_rejects_blocksize_32():
    with pytest.raises(ValueError, match="blocksize=32"):
        bnb.quantize_blockwise(np.ones(64, F32), 32)


@pytest.mark.parametrize("blocksize", ["64", 64.0, True, None])
def test_non_integer_blocksize_raises_typeerror(blocksize):
    with pytest.raises(TypeError, match="blocksize"):
        bnb.quantize_4bit(np.ones(64, F32), "nf4", blocksize)


def test_bad_quant_type():
    with pytest.raises(ValueError, match="quant_type='int4'.*'nf4', 'fp4'"):
        bnb.quantize_4bit(np.ones(64, F32), "int4")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_raises(bad):
    x = np.ones(100, F32)
    x[70] = bad
    for fn in (lambda: bnb.quantize_4bit(x), lambda: bnb.quantize_blockwise(x, 64),
               lambda: bnb.int8_vectorwise_quant(x.reshape(10, 10))):
        with pytest.raises(ValueError, match="NaN or inf"):
            fn()


@pytest.mark.parametrize("x", [np.ones(64), np.ones(64, np.int32), np.ones(64, bool), np.ones(64, np.complex64)])
def test_wrong_dtype_raises_typeerror(x):
    with pytest.raises(TypeError, match="x must be"):
        bnb.quantize_4bit(x)
    with pytest.raises(TypeError, match="x must be"):
        bnb.quantize_blockwise(x)


def test_other_bad_parameters():
    x = np.ones(64, F32)
    with pytest.raises(TypeError, match="double_quant"):
        bnb.quantize_4bit(x, double_quant="yes")
    with pytest.raises(ValueError, match="mean_threads"):
        bnb.quantize_4bit(x, mean_threads=0)
    with pytest.raises(ValueError, match="threshold"):
        bnb.int8_vectorwise_quant(x.reshape(8, 8), threshold=-1.0)
    with pytest.raises(ValueError, match="2-D"):
        bnb.int8_vectorwise_quant(x)
    with pytest.raises(TypeError, match="QuantState"):
        bnb.dequantize_4bit((x, x))
    with pytest.raises(ValueError, match="dequantize_blockwise"):
        bnb.dequantize_4bit(bnb.quantize_blockwise(x, 64))
    with pytest.raises(ValueError, match="dequantize_4bit"):
        bnb.dequantize_blockwise(bnb.quantize_4bit(x))
    with pytest.raises(ValueError, match="packed has 3 bytes; 32"):
        bnb.bnb_dequantize_4bit(np.zeros(3, np.uint8), np.ones(1, F32), "nf4", 64, (64,))
    with pytest.raises(TypeError, match="uint8"):
        bnb.bnb_dequantize_4bit(np.zeros(32, np.int8), np.ones(1, F32), "nf4", 64, (64,))
    with pytest.raises(ValueError, match="absmax has 2 values; 1 blocks"):
        bnb.bnb_dequantize_4bit(np.zeros(32, np.uint8), np.ones(2, F32), "nf4", 64, (64,))


def test_inputs_are_never_mutated(rng):
    x = rng.standard_normal((33, 17)).astype(F32)
    x[0, 0] = 50.0
    before = x.copy()
    x.setflags(write=False)  # a read-only input must work, and stay unchanged
    q = bnb.quantize_4bit(x, "nf4", 32, double_quant=True)
    bnb.dequantize_4bit(q)
    bnb.quantize_blockwise(x, 64)
    bnb.int8_vectorwise_quant(x, threshold=6.0)
    bnb.int8_vectorwise_dequant(*bnb.int8_vectorwise_quant(x)[:2])
    np.testing.assert_array_equal(x, before)
    # The container's arrays are not views of the input.
    assert not np.shares_memory(q.packed, x) and not np.shares_memory(q.absmax, x)


# ---- QuantState.validate ----------------------------------------------------------


@pytest.fixture
def state(rng):
    return bnb.quantize_4bit(rng.standard_normal((40, 70)).astype(F32), "nf4", 64, double_quant=True)


def test_validate_accepts_quantizer_output(state, rng):
    assert state.validate() is state
    assert bnb.quantize_4bit(rng.standard_normal(99).astype(F32), "fp4", 32).validate()
    assert bnb.quantize_blockwise(rng.standard_normal(99).astype(F32), 64).validate()


@pytest.mark.parametrize("change, message", [
    (lambda q: dict(quant_type="int4"), "quant_type='int4'"),
    (lambda q: dict(blocksize=48), "blocksize=48"),
    (lambda q: dict(dtype="float64"), "dtype='float64'"),
    (lambda q: dict(shape=(40, 71)), "packed must have shape"),
    (lambda q: dict(shape=(40, -70)), "shape="),
    (lambda q: dict(packed=q.packed[:-1]), "packed must have shape"),
    (lambda q: dict(packed=q.packed.astype(np.int8)), "packed must have dtype uint8"),
    (lambda q: dict(absmax=q.absmax[:-1]), "absmax must have shape"),
    (lambda q: dict(absmax=q.absmax.astype(np.float16)), "absmax must have dtype float32"),
    (lambda q: dict(absmax=q.absmax * F32(2)), "is not the dequantized nested absmax"),
    (lambda q: dict(code=q.code[::-1].copy()), "quant_map"),
    (lambda q: dict(code=fmt.code_4bit("fp4")), "quant_map"),
    (lambda q: dict(nested=replace(q.nested, offset=0.1)), "offset"),
    (lambda q: dict(nested=replace(q.nested, offset=float("nan"))), "offset"),
    (lambda q: dict(nested=replace(q.nested, blocksize=100)), "nested blocksize=100"),
    (lambda q: dict(nested=replace(q.nested, codes=q.nested.codes[1:])), "nested codes"),
    (lambda q: dict(nested=replace(q.nested, absmax=-q.nested.absmax)), "negative"),
    (lambda q: dict(nested=replace(q.nested, code=q.nested.code * F32(0.5))), "dynamic map"),
    (lambda q: dict(nested=replace(q.nested, dtype="float16")), "nested dtype"),
])
def test_validate_rejects_inconsistent_metadata(state, change, message):
    with pytest.raises(ValidationError, match=message):
        replace(state, **change(state)).validate()


def test_validate_rejects_bad_plain_absmax(rng):
    q = bnb.quantize_4bit(rng.standard_normal(200).astype(F32), "fp4", 64)
    for bad, message in ((np.nan, "non-finite value at block 1"), (-1.0, "negative value at block 1")):
        absmax = q.absmax.copy()
        absmax[1] = bad
        with pytest.raises(ValidationError, match=message):
            replace(q, absmax=absmax).validate()
    with pytest.raises(ValidationError):
        bnb.dequantize_4bit(replace(q, blocksize=128))


def test_validation_error_is_a_valueerror():
    assert issubclass(ValidationError, ValueError)


# ---- save / load ----------------------------------------------------------------------


@pytest.mark.parametrize("quant_type, double_quant", [("nf4", True), ("nf4", False), ("fp4", True), ("fp4", False)])
def test_safetensors_round_trip_identical_bytes(tmp_path, rng, quant_type, double_quant):
    pytest.importorskip("safetensors")
    x = rng.standard_normal((37, 29)).astype(np.float16)
    q = bnb.quantize_4bit(x, quant_type, 32, double_quant=double_quant)
    bnb.save(tmp_path / "a.safetensors", q)
    loaded = bnb.load(tmp_path / "a.safetensors")
    for name in ("packed", "absmax", "code"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(q, name))
    assert (loaded.shape, loaded.quant_type, loaded.blocksize, loaded.dtype) == (q.shape, q.quant_type, 32, "float16")
    assert (loaded.nested is None) == (not double_quant)
    np.testing.assert_array_equal(bnb.dequantize_4bit(loaded), bnb.dequantize_4bit(q))
    loaded.save(tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_state_dict_keys_match_bitsandbytes_layout(rng):
    from refquant.layouts.bnb_state import to_state_dict, unpack_json

    q = bnb.quantize_4bit(rng.standard_normal((10, 30)).astype(F32), "nf4", 64, double_quant=True)
    sd = to_state_dict(q, "layer.weight")
    assert sorted(sd) == ["layer.weight", "layer.weight.absmax", "layer.weight.nested_absmax",
                          "layer.weight.nested_quant_map", "layer.weight.quant_map",
                          "layer.weight.quant_state.bitsandbytes__nf4"]
    assert sd["layer.weight"].shape == (150, 1) and sd["layer.weight.absmax"].dtype == np.uint8
    meta = unpack_json(sd["layer.weight.quant_state.bitsandbytes__nf4"])
    assert list(meta) == ["quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset"]
    assert meta["shape"] == [10, 30] and meta["nested_blocksize"] == 256 and meta["dtype"] == "float32"


def test_blockwise_state_round_trip(tmp_path, rng):
    pytest.importorskip("safetensors")
    q = bnb.quantize_blockwise(rng.standard_normal((5, 300)).astype(F32), 256)
    bnb.save(tmp_path / "q8.safetensors", q, name="m")
    loaded = bnb.load(tmp_path / "q8.safetensors", name="m")
    np.testing.assert_array_equal(bnb.dequantize_blockwise(loaded), bnb.dequantize_blockwise(q))


def test_load_rejects_tampered_files(tmp_path, rng):
    pytest.importorskip("safetensors")
    from safetensors.numpy import load_file, save_file

    from refquant.layouts.bnb_state import pack_json, unpack_json

    q = bnb.quantize_4bit(rng.standard_normal(300).astype(F32), "nf4", 64, double_quant=True)
    path = tmp_path / "w.safetensors"
    q.save(path)
    key = "weight.quant_state.bitsandbytes__nf4"

    def tampered(**changes):
        sd = load_file(path)
        meta = unpack_json(sd[key])
        meta.update(changes)
        sd[key] = pack_json(meta)
        save_file(sd, tmp_path / "bad.safetensors")
        return tmp_path / "bad.safetensors"

    with pytest.raises(ValidationError, match="blocksize=48"):
        bnb.load(tampered(blocksize=48))
    with pytest.raises(ValidationError, match="packed must have shape"):
        bnb.load(tampered(shape=[301]))
    with pytest.raises(ValidationError, match="does not match the key"):
        bnb.load(tampered(quant_type="fp4"))
    with pytest.raises(ValidationError, match="offset=0.1 must be a finite float32"):
        bnb.load(tampered(nested_offset=0.1))
    sd = load_file(path)
    del sd["weight.nested_absmax"]
    save_file(sd, tmp_path / "bad.safetensors")
    with pytest.raises(ValidationError, match="missing key 'weight.nested_absmax'"):
        bnb.load(tmp_path / "bad.safetensors")
    with pytest.raises(KeyError, match="no bitsandbytes 4-bit tensor 'bias'"):
        bnb.load(path, name="bias")


def test_public_names_resolve():
    assert refquant.bnb.quantize_4bit is bnb.quantize_4bit
    assert callable(refquant.int8_matmul) and callable(refquant.llm_int8_matmul)
