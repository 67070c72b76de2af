"""GPTQ v1/v2 and AWQ GEMM checkpoint layouts (refquant.layouts.gptq / .awq)."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.algorithms import awq, gptq, rtn
from refquant.apps.evaluate import synthetic_activations
from refquant.layouts import awq as awq_layout
from refquant.layouts import gptq as gptq_layout
from refquant.layouts.gptq import gptq_dequantize, gptq_pack, gptq_unpack

BITS = (2, 3, 4, 8)


def random_case(rng, bits, out=64, in_=128, group=32, version=2):
    maxq = 2**bits - 1
    codes = rng.integers(0, maxq + 1, (out, in_))
    zeros = rng.integers(1 if version == 1 else 0, maxq + 1, (out, in_ // group))
    zeros[0, 0], zeros[-1, -1] = (1 if version == 1 else 0), maxq  # the extremes
    scales = (rng.uniform(1e-3, 2, zeros.shape)).astype(np.float16).astype(np.float32)
    g_idx = np.arange(in_) // group
    return codes, zeros, scales, g_idx


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("version", (1, 2))
def test_round_trip_exact(rng, bits, version):
    codes, zeros, scales, g_idx = random_case(rng, bits, version=version)
    qweight, qzeros, scales16, g = gptq_pack(codes, zeros, scales, g_idx, bits, version)
    assert qweight.shape == (128 * bits // 32, 64) and qweight.dtype == np.int32
    assert qzeros.shape == (4, 64 * bits // 32) and qzeros.dtype == np.int32
    assert scales16.shape == (4, 64) and scales16.dtype == np.float16 and g.dtype == np.int32
    c, z = gptq_unpack(qweight, qzeros, scales16, g, bits, version)
    np.testing.assert_array_equal(c, codes)
    np.testing.assert_array_equal(z, zeros)
    W = gptq_dequantize(qweight, qzeros, scales16, g, bits, version)
    np.testing.assert_array_equal(W, scales[:, g_idx] * (codes - zeros[:, g_idx]).astype(np.float32))
    again = gptq_pack(c, z, scales16.T, g, bits, version)
    for a, b in zip(again, (qweight, qzeros, scales16, g)):
        assert a.tobytes() == b.tobytes()


def test_golden_words():
    # qweight: input rows 0..7 with codes 0..7 -> 0x76543210 (k = 0 in the lowest bits)
    codes = np.tile(np.arange(8), (8, 1))  # (out=8, in=8)
    zeros = np.full((8, 1), 8)  # GPTQ 4-bit symmetric zero
    qweight, qzeros, _, _ = gptq_pack(codes, zeros, np.ones((8, 1)), np.zeros(8, int), 4, version=1)
    assert qweight.view(np.uint32)[0, 0] == 0x76543210
    assert qzeros.view(np.uint32)[0, 0] == 0x77777777  # v1 stores zero - 1
    _, qzeros2, _, _ = gptq_pack(codes, zeros, np.ones((8, 1)), np.zeros(8, int), 4, version=2)
    assert qzeros2.view(np.uint32)[0, 0] == 0x88888888


def test_three_bit_words_straddle():
    codes = np.zeros((32, 32), int)
    codes[0, 10] = 0b111  # word 0 holds its low 2 bits at 30-31, word 1 its top bit at 0
    codes[0, 21] = 0b101  # word 1 holds its low bit at 31, word 2 its top 2 bits at 0-1
    qweight, _, _, _ = gptq_pack(codes, np.ones((32, 1), int), np.ones((32, 1)), np.zeros(32, int), 3, 2)
    words = qweight.view(np.uint32)[:, 0]
    assert words.tolist() == [0b11 << 30, 1 | (1 << 31), 0b10]


def test_v1_cannot_store_zero_point_zero():
    codes = np.zeros((8, 8), int)
    with pytest.raises(ValueError, match="cannot be written; use version=2"):
        gptq_pack(codes, np.zeros((8, 1), int), np.ones((8, 1)), np.zeros(8, int), 4, version=1)


def test_v2_checkpoint_read_as_v1_is_detected(rng):
    codes, zeros, scales, g_idx = random_case(rng, 4, version=2)  # has a zero of 15
    tensors = gptq_pack(codes, zeros, scales, g_idx, 4, version=2)
    with pytest.raises(ValueError, match="gptq_v2 checkpoint"):
        gptq_unpack(*tensors, 4, version=1)


def test_inconsistent_shapes_raise(rng):
    codes, zeros, scales, g_idx = random_case(rng, 4)
    qweight, qzeros, scales16, g = gptq_pack(codes, zeros, scales, g_idx, 4, 2)
    with pytest.raises(ValueError, match="g_idx must have shape"):
        gptq_unpack(qweight[:-1], qzeros, scales16, g, 4, 2)  # 120 inputs for 128 g_idx entries
    with pytest.raises(ValueError, match="qweight has shape"):
        gptq_unpack(qweight[:, :-1], qzeros, scales16, g, 4, 2)
    with pytest.raises(ValueError, match="qzeros has shape"):
        gptq_unpack(qweight, qzeros[:, :-1], scales16, g, 4, 2)
    with pytest.raises(ValueError, match="g_idx must have shape"):
        gptq_unpack(qweight, qzeros, scales16, g[:-1], 4, 2)
    with pytest.raises(ValueError, match="g_idx"):
        gptq_unpack(qweight, qzeros, scales16, g + 1, 4, 2)
    with pytest.raises(ValueError, match="qweight has shape"):
        gptq_unpack(qweight, qzeros, scales16, g, 3, 2)  # bits confusion
    with pytest.raises(TypeError, match="int32"):
        gptq_unpack(qweight.astype(np.int64), qzeros, scales16, g, 4, 2)
    tensors = {"qweight": qweight, "qzeros": qzeros, "scales": scales16, "g_idx": g}
    with pytest.raises(ValueError, match="needs 2"):
        gptq_layout.decode(tensors, 4, 64, 2)  # group-size confusion
    with pytest.raises(ValueError, match="missing: qzeros"):
        gptq_layout.decode({"qweight": qweight, "scales": scales16}, 4, 32, 2)
    bad = dict(tensors, g_idx=np.zeros(128, np.int32))
    with pytest.raises(ValueError, match="more than group_size=32"):
        gptq_layout.decode(bad, 4, 32, 2)


def test_pack_validation():
    with pytest.raises(ValueError, match="multiple of 32"):
        gptq_pack(np.zeros((32, 16), int), np.ones((32, 1), int), np.ones((32, 1)), np.zeros(16, int), 3, 2)
    with pytest.raises(ValueError, match="outside 0..15"):
        gptq_pack(np.full((8, 8), 16), np.ones((8, 1), int), np.ones((8, 1)), np.zeros(8, int), 4, 2)
    with pytest.raises(ValueError, match="float16 range"):
        gptq_pack(np.zeros((8, 8), int), np.ones((8, 1), int), np.full((8, 1), 1e5), np.zeros(8, int), 4, 2)
    with pytest.raises(ValueError, match="bits=5"):
        gptq_pack(np.zeros((8, 8), int), np.ones((8, 1), int), np.ones((8, 1)), np.zeros(8, int), 5, 2)


@pytest.mark.parametrize("act_order", (False, True))
def test_encode_decode_gptq_result(rng, act_order):
    W = (rng.standard_normal((64, 256)) * 0.05).astype(np.float32)
    X = synthetic_activations(rng, 256, 256)
    r = gptq(W, 2.0 / 256 * X.T.astype(np.float64) @ X, 4, 64, act_order=act_order, sym=False)
    for version in (1, 2):
        t = gptq_layout.encode(r, version)
        assert set(t) == {"qweight", "qzeros", "scales", "g_idx"}
        W_hat = gptq_layout.decode(t, 4, 64, version)
        s16 = r.scales.astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(W_hat, s16[:, r.g_idx] * (r.codes.astype(np.float32) - r.zeros[:, r.g_idx]))
        np.testing.assert_allclose(W_hat, r.dequantized, rtol=2**-10, atol=1e-12)


def test_fp16_representable_scales_round_trip_bit_exactly():
    # scales 2/15 * 2^k are not fp16 values; choose weights whose min/max give fp16 scales
    W = np.tile(np.array([-0.75, 0.0, 0.5, 1.125], np.float32), (8, 8))  # range 1.875 = 15 * 0.125
    r = rtn(W, 4, 32, sym=False)
    assert (r.scales == 0.125).all()
    np.testing.assert_array_equal(gptq_layout.decode(gptq_layout.encode(r, 1), 4, 32, 1), r.dequantized)


def test_safetensors_round_trip(rng, tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    r = rtn(rng.standard_normal((32, 64)).astype(np.float32), 3, 32, sym=False)
    t = gptq_layout.encode(r, 2)
    st.save_file(t, str(tmp_path / "layer.safetensors"))
    back = st.load_file(str(tmp_path / "layer.safetensors"))
    assert all(back[k].tobytes() == t[k].tobytes() and back[k].dtype == t[k].dtype for k in t)
    np.testing.assert_array_equal(gptq_layout.decode(back, 3, 32, 2), gptq_layout.decode(t, 3, 32, 2))


def test_spqr_zeros_have_no_gptq_layout(rng):
    from refquant.algorithms import spqr

    W = rng.standard_normal((16, 32)).astype(np.float32)
    with pytest.raises(ValueError, match="integer-valued"):
        gptq_layout.encode(spqr(W, np.eye(32), bits=4), 2)


# --- AWQ GEMM ---------------------------------------------------------------------------

def test_awq_golden_nibble_order():
    codes = np.tile(np.arange(8), (4, 1)).T  # (out=8, in=4): output o has code o
    zeros = np.arange(8).reshape(8, 1)
    qweight, qzeros, scales = awq_layout.awq_pack(codes, zeros, np.ones((8, 1)))
    assert qweight.shape == (4, 1) and qweight.view(np.uint32)[0, 0] == 0x75316420  # order 0,2,4,6,1,3,5,7
    assert qzeros.view(np.uint32)[0, 0] == 0x75316420  # zeros as-is
    c, z = awq_layout.awq_unpack(qweight, qzeros)
    np.testing.assert_array_equal(c, codes)
    np.testing.assert_array_equal(z, zeros)


def test_awq_round_trip_and_extremes(rng):
    codes = rng.integers(0, 16, (64, 256))
    zeros = rng.integers(0, 16, (64, 2))
    zeros[0, 0], zeros[1, 1] = 0, 15
    scales = rng.uniform(1e-4, 1, (64, 2)).astype(np.float16)
    qweight, qzeros, s16 = awq_layout.awq_pack(codes, zeros, scales)
    assert qweight.shape == (256, 8) and qzeros.shape == (2, 8) and s16.shape == (2, 64)
    W = awq_layout.awq_dequantize(qweight, qzeros, s16, 128)
    g = np.arange(256) // 128
    np.testing.assert_array_equal(W, scales.astype(np.float32)[:, g] * (codes - zeros[:, g]).astype(np.float32))
    with pytest.raises(ValueError, match="scales has shape"):
        awq_layout.awq_dequantize(qweight, qzeros, s16, 64)  # group-size confusion
    with pytest.raises(ValueError, match="multiple of 8"):
        awq_layout.awq_pack(codes[:60], zeros[:60], scales[:60])


def test_awq_result_end_to_end(rng):
    W = (rng.standard_normal((64, 256)) * 0.05).astype(np.float32)
    X = synthetic_activations(rng, 256, 256)
    r = awq(W, X, 4, 128)
    t = awq_layout.encode(r)
    stored = awq_layout.decode(t, 128)
    # the checkpoint holds Q(W s); dividing by s gives the effective weight
    np.testing.assert_allclose(stored / r.input_scale, r.dequantized, rtol=2**-10, atol=1e-9)
    with pytest.raises(ValueError, match="4-bit"):
        awq_layout.encode(rtn(W, 3, 128, sym=False))
    with pytest.raises(ValueError, match="act-order"):
        awq_layout.encode(gptq(W, np.diag(np.arange(1.0, 257)), 4, 128, act_order=True, sym=False))
