"""NVIDIA NVFP4 (refquant.formats.nvfp4): Model Optimizer's rules, checked against torch.

The oracle re-states Model Optimizer's ``NVFP4QTensor`` steps with torch float32 tensors
and torch's own ``float8_e4m3fn`` cast (which saturates), so torch's float32 arithmetic
and E4M3 rounding are checked independently of refquant's integer encoders.
"""

from __future__ import annotations

import numpy as np
import pytest

from refquant.formats.nvfp4 import nvfp4_dequantize, nvfp4_global_scale, nvfp4_quantize

torch = pytest.importorskip("torch")

F32 = np.float32


def _torch_nvfp4(x: np.ndarray):
    t = torch.from_numpy(x)
    g = t.abs().amax().float() / (6.0 * 448.0)
    blocks = t.reshape(*t.shape[:-1], -1, 16)
    s = blocks.abs().amax(dim=-1) / (6.0 * g)
    s = torch.where(s == 0, torch.ones_like(s), s).clamp(min=2.0**-9).to(torch.float8_e4m3fn)
    d = s.float() * g
    v = blocks / d.unsqueeze(-1)
    mag = v.abs()
    # E2M1 magnitudes 0, .5, 1, 1.5, 2, 3, 4, 6: count the midpoints below |v|, and step over
    # the midpoints whose upper neighbour has the even code (0.75, 1.75, 3.5)
    mids = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    code = torch.bucketize(mag, mids, right=False)
    code = code + ((mag == 0.75) | (mag == 1.75) | (mag == 3.5)).to(code.dtype)
    code = (code | ((v < 0).to(code.dtype) << 3)).to(torch.uint8).reshape(t.shape)
    packed = code[..., 0::2] | (code[..., 1::2] << 4)
    values = torch.tensor([0, .5, 1, 1.5, 2, 3, 4, 6, 0, -.5, -1, -1.5, -2, -3, -4, -6])
    y = (values[code.long()].reshape(blocks.shape) * d.unsqueeze(-1)).reshape(t.shape)
    return packed.numpy(), s.view(torch.uint8).numpy(), np.float32(g.item()), y.numpy()


def _tensors():
    rng = np.random.default_rng(17)
    yield rng.standard_normal((8, 64)).astype(F32)
    yield (rng.standard_t(2, (4, 128)) * 1e-3).astype(F32)
    t = rng.standard_normal((3, 48)).astype(F32)
    t[1] = 0.0                                                   # zero blocks: scale 1.0
    t[2, :16] *= 1e-6                                            # a tiny block: scale clamped to 2**-9
    t[0, 5] = 300.0                                              # one outlier sets the global scale
    yield t
    half = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.5] * 2, F32)
    yield np.concatenate([half * 1, -half, half * 0.5, -half * 2]).reshape(2, 32) * F32(6 / 6.5)
    yield (rng.standard_normal((2, 16)) * np.exp2(rng.integers(-60, 60, (2, 1)))).astype(F32)


@pytest.mark.parametrize("k", range(5))
def test_matches_torch_transcription_of_model_optimizer(k):
    x = list(_tensors())[k]
    packed, scales, g = nvfp4_quantize(x)
    t_packed, t_scales, t_g, t_y = _torch_nvfp4(x)
    assert g == t_g
    np.testing.assert_array_equal(scales, t_scales)
    np.testing.assert_array_equal(packed, t_packed)
    y = nvfp4_dequantize(packed, scales, g)
    np.testing.assert_array_equal(y, t_y)


def test_worked_example_and_ties():
    x = np.array([0.0, 0.5, 1.0, -2.0] * 4, F32)
    packed, scales, g = nvfp4_quantize(x)
    assert g == F32(2.0) / F32(2688.0) and scales.tolist() == [0x7E]     # 2 / (6 g) rounds to 448
    assert packed.tolist() == [0x30, 0xF5] * 4                           # 0, 1.5, 3, -6 times 448 g
    # E2M1 ties to even on the scaled value: with amax 6 the block scale decodes exactly
    x = np.array([6.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.0, -0.1, 0, 0, 0, 0, 0, 0], F32)
    packed, scales, g = nvfp4_quantize(x, global_amax=2688.0)            # g = 1, block scale 1.0
    assert g == 1.0 and scales.tolist() == [0x38]
    codes = np.stack([packed & 15, packed >> 4], -1).reshape(-1)
    assert codes[:10].tolist() == [7, 0, 2, 2, 4, 4, 6, 6, 0, 8]         # -0.0 -> +0's code, -0.1 -> -0


def test_zero_tensor_and_saturation():
    packed, scales, g = nvfp4_quantize(np.zeros((2, 32), F32))
    assert g == 1.0 and (scales == 0x38).all() and not packed.any()
    x = np.linspace(-10, 10, 16, dtype=F32)
    packed, scales, g = nvfp4_quantize(x, global_amax=1.0)               # calibrated below the data
    y = nvfp4_dequantize(packed, scales, g)
    assert scales.tolist() == [0x7E] and np.abs(y).max() == pytest.approx(1.0)


def test_global_scale_and_bits():
    assert nvfp4_global_scale(2688.0) == 1.0 and nvfp4_global_scale(0.0) == 1.0
    x = np.random.default_rng(2).standard_normal((64, 256)).astype(F32)
    packed, scales, g = nvfp4_quantize(x)
    assert packed.nbytes * 8 + scales.nbytes * 8 == 4.5 * x.size
    y = nvfp4_dequantize(packed, scales, g)
    assert np.sum((x - y) ** 2) / np.sum(x**2) < 0.0095                 # measured 0.00900 (normal data)


def test_errors_and_no_mutation():
    x = np.ones((2, 16), F32)
    keep = x.copy()
    nvfp4_quantize(x)
    np.testing.assert_array_equal(x, keep)
    with pytest.raises(ValueError, match="multiple of 16"):
        nvfp4_quantize(np.ones(15, F32))
    with pytest.raises(ValueError, match="NaN or inf"):
        nvfp4_quantize(np.array([np.nan] * 16, F32))
    with pytest.raises(ValueError, match="global_amax=-1.0 must be >= 0"):
        nvfp4_quantize(x, global_amax=-1.0)
    with pytest.raises(TypeError, match="block_scales must be an ndarray of uint8"):
        nvfp4_dequantize(np.zeros(8, np.uint8), np.zeros(1, np.int8), 1.0)
    with pytest.raises(ValueError, match="block_scales has shape"):
        nvfp4_dequantize(np.zeros(8, np.uint8), np.zeros(2, np.uint8), 1.0)
