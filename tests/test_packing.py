"""Sub-byte packing: known bytes per order, GPTQ/AWQ/bitsandbytes/TQ1_0 layouts, round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.packing import (AWQ_ORDER, CONTAINERS, LAYOUTS, ORDERS, pack, pack_ternary, packed_size, unpack,
                              unpack_ternary)

U32 = np.uint32


def words(a):
    return [hex(int(w)) for w in np.asarray(a).view(U32).reshape(-1)]


# --- known values -------------------------------------------------------------------------


def test_known_bytes_low_first():
    assert pack(np.array([1, 2]), 4).tolist() == [0x21]                        # element 0 in the low nibble
    assert pack(np.array([1, 2, 3, 0]), 2).tolist() == [0b00111001]
    assert pack(np.array([1, 0, 0, 0, 0, 0, 0, 1, 1]), 1).tolist() == [0x81, 0x01]
    # 3-bit stream: 1 | 2<<3 | 3<<6 | 4<<9 | 5<<12 | 6<<15 | 7<<18 | 0<<21 = 0x1F58D1
    assert pack(np.arange(1, 9) % 8, 3).tolist() == [0xD1, 0x58, 0x1F]
    assert words(pack(np.arange(8), 4, container="int32")) == ["0x76543210"]


def test_known_bytes_high_first_is_bitsandbytes_order():
    assert pack(np.array([1, 2]), 4, "high_first").tolist() == [0x12]          # (q[0] << 4) | q[1]
    assert pack(np.array([0xA, 0xB, 0xC]), 4, "high_first").tolist() == [0xAB, 0xC0]   # odd count: zero pad
    assert pack(np.array([1, 2, 3, 0]), 2, "high_first").tolist() == [0b01101100]
    c = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(pack(c, 1, "high_first"), np.packbits(c.astype(np.uint8)))
    np.testing.assert_array_equal(pack(c, 1), np.packbits(c.astype(np.uint8), bitorder="little"))


def test_awq_interleave_word():
    # nibble i holds element AWQ_ORDER[i] = 0, 2, 4, 6, 1, 3, 5, 7 (AutoAWQ gemm.py)
    assert AWQ_ORDER == (0, 2, 4, 6, 1, 3, 5, 7)
    assert words(pack(np.arange(8), 4, "awq", "int32")) == ["0x75316420"]
    assert words(pack(np.arange(16) % 16, 4, "awq", "int32")) == ["0x75316420", "0xfdb9eca8"]
    two = np.arange(8)[::-1].copy()
    np.testing.assert_array_equal(unpack(pack(two, 4, "awq", "int32"), 4, 8, "awq", "int32"), two)


def _autogptq_3bit_words(c):
    """The 3-bit qweight loop of AutoGPTQ ``qlinear_cuda_old.pack``, per 32 values."""
    c = [int(v) for v in c]
    w0 = sum(c[j] << (3 * j) for j in range(10)) | (c[10] << 30)
    w1 = (c[10] >> 2) | sum(c[j] << (3 * (j - 11) + 1) for j in range(11, 21)) | (c[21] << 31)
    w2 = (c[21] >> 1) | sum(c[j] << (3 * (j - 22) + 2) for j in range(22, 32))
    return [w & 0xFFFFFFFF for w in (w0, w1, w2)]


def test_gptq_3bit_straddling_words(rng):
    for _ in range(20):
        c = rng.integers(0, 8, 32)
        got = pack(c, 3, "low_first", "int32")
        assert got.dtype == np.int32 and got.shape == (3,)
        assert [int(w) for w in got.view(U32)] == _autogptq_3bit_words(c)
        np.testing.assert_array_equal(unpack(got, 3, 32, container="int32"), c)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_gptq_power_of_two_words(bits, rng):
    per = 32 // bits
    c = rng.integers(0, 2**bits, 3 * per)
    expect = [sum(int(c[w * per + k]) << (bits * k) for k in range(per)) for w in range(3)]
    assert [int(v) for v in pack(c, bits, container="int32").view(U32)] == expect


@pytest.mark.oracle
def test_high_first_matches_bitsandbytes_dequantize(rng):
    """bitsandbytes reads our high_first bytes as the same codes (dequantize with absmax 1)."""
    pytest.importorskip("bitsandbytes")
    torch = pytest.importorskip("torch")
    import bitsandbytes.functional as F

    codes = rng.integers(0, 16, 64)
    packed = pack(codes, 4, "high_first")
    x = torch.from_numpy(rng.standard_normal(64).astype(np.float32))
    _, state = F.quantize_4bit(x, blocksize=64, quant_type="nf4")
    state.absmax = torch.ones_like(state.absmax)
    out = F.dequantize_4bit(torch.from_numpy(packed.reshape(-1, 1)), state).numpy().reshape(-1)
    np.testing.assert_array_equal(out, state.code.numpy()[codes])


@pytest.mark.oracle
def test_ternary_matches_gguf_tq1_0(rng):
    """pack_ternary on TQ1_0's element groups reproduces gguf-py's qs/qh bytes, and unpack its trits."""
    gguf_quants = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType

    trits = rng.integers(0, 3, 256)
    x = (trits.astype(np.float32) - 1) * 0.5
    block = gguf_quants.quantize(x.reshape(1, 256), GGMLQuantizationType.TQ1_0).reshape(-1)
    qs0 = pack_ternary(trits[:160].reshape(5, 32).T)          # byte m: elements m, m+32, ..., m+128
    qs1 = pack_ternary(trits[160:240].reshape(5, 16).T)       # byte 32+m: elements 160+m+16n
    qh = pack_ternary(trits[240:].reshape(4, 4).T)            # 4 trits + a zero trit
    np.testing.assert_array_equal(block[:32], qs0.reshape(-1))
    np.testing.assert_array_equal(block[32:48], qs1.reshape(-1))
    np.testing.assert_array_equal(block[48:52], qh.reshape(-1))
    np.testing.assert_array_equal(unpack_ternary(block[:32].reshape(32, 1), 5).T.reshape(-1), trits[:160])
    np.testing.assert_array_equal(unpack_ternary(block[48:52].reshape(4, 1), 4).T.reshape(-1), trits[240:])


def test_ternary_known_and_exhaustive():
    assert pack_ternary(np.array([2, 2, 2, 2, 2])).tolist() == [255]           # q = 242 -> ceil(242*256/243)
    assert pack_ternary(np.array([1, 0, 0, 0, 0])).tolist() == [86]            # q = 81
    assert pack_ternary(np.array([0, 0, 0, 0, 0])).tolist() == [0]
    assert pack_ternary(np.array([0, 0, 0, 0, 1, 2])).tolist() == [2, 171]     # q = 1; then [2,0,0,0,0] (pad)
    every = np.array(np.meshgrid(*[np.arange(3)] * 5, indexing="ij")).reshape(5, -1).T   # all 243 groups
    packed = pack_ternary(every)
    assert len(np.unique(packed)) == 243
    np.testing.assert_array_equal(unpack_ternary(packed, 5), every)


# --- round trips (Hypothesis) ------------------------------------------------------------


@st.composite
def layout_case(draw):
    bits = draw(st.integers(1, 8))
    order = draw(st.sampled_from(ORDERS))
    container = draw(st.sampled_from(CONTAINERS))
    if order == "awq":
        bits, container = 4, "int32"
    rows = draw(st.integers(1, 3))
    n = draw(st.integers(0, 70))
    codes = draw(hnp.arrays(np.uint8, (rows, n), elements=st.integers(0, 2**bits - 1)))
    return codes, bits, order, container


@given(case=layout_case())
def test_pack_unpack_round_trip(case):
    codes, bits, order, container = case
    before = codes.copy()
    packed = pack(codes, bits, order, container)
    assert packed.dtype == (np.uint8 if container == "uint8" else np.int32)
    assert packed.shape == codes.shape[:-1] + (packed_size(codes.shape[-1], bits, container),)
    np.testing.assert_array_equal(unpack(packed, bits, codes.shape[-1], order, container), codes)
    np.testing.assert_array_equal(codes, before)
    # rows are independent: packing one row alone gives the same bytes
    np.testing.assert_array_equal(pack(codes[:1], bits, order, container), packed[:1])


@given(trits=hnp.arrays(np.int64, st.tuples(st.integers(1, 3), st.integers(0, 40)), elements=st.integers(0, 2)))
def test_ternary_round_trip(trits):
    packed = pack_ternary(trits)
    assert packed.shape == trits.shape[:-1] + (-(-trits.shape[-1] // 5),)
    np.testing.assert_array_equal(unpack_ternary(packed, trits.shape[-1]), trits)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_named_layouts_round_trip(name, rng):
    kw = LAYOUTS[name]
    codes = rng.integers(0, 2 ** kw["bits"], (4, 100))
    np.testing.assert_array_equal(unpack(pack(codes, **kw), count=100, **kw), codes)


def test_same_stream_for_uint8_and_int32_low_first(rng):
    c = rng.integers(0, 8, 64)
    b = pack(c, 3)
    w = pack(c, 3, container="int32")
    np.testing.assert_array_equal(w.view(np.uint8)[: b.size], b)     # words are the little-endian bytes


def test_large_layer_is_vectorized(rng):
    c = rng.integers(0, 16, (1024, 4096), dtype=np.uint8)
    np.testing.assert_array_equal(unpack(pack(c, 4, "awq", "int32"), 4, 4096, "awq", "int32"), c)


# --- errors ----------------------------------------------------------------------------------


def test_errors():
    with pytest.raises(ValueError, match=r"contains 16 at index \(1,\).*0\.\.15"):
        pack(np.array([1, 16, 2]), 4)
    with pytest.raises(ValueError, match="contains -1"):
        pack(np.array([-1, 0]), 2)
    with pytest.raises(TypeError, match="integer"):
        pack(np.array([1.0, 2.0]), 4)
    for bits in (0, 9):
        with pytest.raises(ValueError, match=f"bits={bits}"):
            pack(np.array([0]), bits)
    with pytest.raises(ValueError, match="order='middle_first'"):
        pack(np.array([0]), 4, "middle_first")
    with pytest.raises(ValueError, match="container='int16'"):
        pack(np.array([0]), 4, container="int16")
    with pytest.raises(ValueError, match="awq"):
        pack(np.array([0]), 3, "awq", "int32")
    with pytest.raises(ValueError, match="awq"):
        pack(np.array([0]), 4, "awq", "uint8")
    with pytest.raises(ValueError, match="need exactly 2"):
        unpack(np.zeros(3, np.uint8), 4, 4)
    with pytest.raises(TypeError, match="uint8"):
        unpack(np.zeros(2, np.int32), 4, 4)
    with pytest.raises(TypeError, match="int32"):
        unpack(np.zeros(1, np.uint8), 4, 8, container="int32")
    with pytest.raises(ValueError, match="count=-1"):
        unpack(np.zeros(1, np.uint8), 4, -1)
    with pytest.raises(ValueError, match="contains 3"):
        pack_ternary(np.array([0, 3]))
    with pytest.raises(ValueError, match="need exactly 1"):
        unpack_ternary(np.zeros(2, np.uint8), 5)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        pack(np.int64(3), 4)


def test_packed_size():
    assert packed_size(0, 4) == 0
    assert packed_size(3, 4) == 2
    assert packed_size(32, 3, "int32") == 3
    assert packed_size(33, 3, "int32") == 4
    assert packed_size(9, 1) == 2
