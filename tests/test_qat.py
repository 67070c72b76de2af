"""QAT fake quantization (refquant.algorithms.qat) against torch's kernels and autograd."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.algorithms import fake_quantize, fake_quantize_backward, lsq_backward, lsq_forward, lsq_grad_factor

torch = pytest.importorskip("torch")


def inputs(rng, n=4000):
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x[:8] = [0.25, 0.75, -0.25, 6.35, 6.4, -6.45, 100.0, -100.0]  # ties and far outside
    return x


@pytest.mark.parametrize("scale, zp, qmin, qmax", [(0.05, 3, -128, 127), (0.1, 128, 0, 255), (0.5, 0, -8, 7)])
def test_per_tensor_forward_and_backward(rng, scale, zp, qmin, qmax):
    x = inputs(rng)
    y, mask = fake_quantize(x, scale, zp, qmin, qmax)
    t = torch.from_numpy(x).requires_grad_(True)
    ty = torch.fake_quantize_per_tensor_affine(t, scale, zp, qmin, qmax)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    _, tmask = torch.ops.aten.fake_quantize_per_tensor_affine_cachemask(torch.from_numpy(x), scale, zp, qmin, qmax)
    np.testing.assert_array_equal(mask, tmask.numpy())
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(fake_quantize_backward(dy, mask), t.grad.numpy())
    assert 0 < mask.mean() < 1


def test_mask_passes_values_rounding_onto_the_bounds():
    x = np.array([126.6, 127.4, 127.5, 127.6, -128.4, -128.6], dtype=np.float32)
    _, mask = fake_quantize(x, 1.0, 0, -128, 127)
    assert mask.tolist() == [True, True, False, False, True, False]  # 127.5 -> 128 (half-even)


def test_per_channel(rng):
    x = (rng.standard_normal((6, 40)) * 2).astype(np.float32)
    scale = rng.uniform(0.01, 0.2, 40).astype(np.float32)
    zp = rng.integers(-10, 10, 40)
    y, mask = fake_quantize(x, scale, zp, -128, 127, axis=1)
    ty = torch.fake_quantize_per_channel_affine(torch.from_numpy(x), torch.from_numpy(scale),
                                                torch.from_numpy(zp.astype(np.int32)), 1, -128, 127)
    np.testing.assert_array_equal(y, ty.numpy())
    assert mask.shape == x.shape


@pytest.mark.parametrize("zero_point", [0.0, 2.4, 2.5, -3.5])
@pytest.mark.parametrize("scaled", [False, True])
def test_lsq_matches_torch(rng, zero_point, scaled):
    x = inputs(rng, 1000)
    qmin, qmax = -128, 127
    g = lsq_grad_factor(x.size, qmax) if scaled else 1.0
    t = torch.from_numpy(x).requires_grad_(True)
    s = torch.tensor([0.04], requires_grad=True)
    z = torch.tensor([zero_point], requires_grad=True)
    ty = torch._fake_quantize_learnable_per_tensor_affine(t, s, z, qmin, qmax, g)
    np.testing.assert_array_equal(lsq_forward(x, 0.04, zero_point, qmin, qmax), ty.detach().numpy())
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    dx, ds, dz = lsq_backward(dy, x, 0.04, zero_point, qmin, qmax, g)
    np.testing.assert_array_equal(dx, t.grad.numpy())
    assert ds == pytest.approx(float(s.grad[0]), rel=1e-4, abs=1e-5)
    assert dz == pytest.approx(float(z.grad[0]), rel=1e-4, abs=1e-5)


def test_lsq_scale_gradient_is_the_rounding_residual():
    # inside the range, dscale = round(x/s) - x/s per element (LSQ eq. 3), zp = 0
    x = np.array([0.3, 0.7, -1.2], dtype=np.float32)
    dx, ds, dz = lsq_backward(np.ones(3, np.float32), x, 1.0, 0.0, -8, 7)
    assert ds == pytest.approx(float(np.sum(np.rint(x) - x)), rel=1e-6) and dz == 0.0
    np.testing.assert_array_equal(dx, 1)
    dx, ds, dz = lsq_backward(np.ones(1, np.float32), np.array([20.0], np.float32), 1.0, 0.0, -8, 7)
    assert dx[0] == 0 and ds == 7.0 and dz == -1.0


def test_grad_factor():
    assert lsq_grad_factor(100, 127) == pytest.approx(1 / np.sqrt(12700))


@pytest.mark.parametrize("args, exc, words", [
    ((1.0, 0, 5, 3), ValueError, "quant_min=5"),
    ((0.0, 0, -8, 7), ValueError, "scale"),
    ((1.0, 9, -8, 7), ValueError, "zero_point"),
    ((1.0, 0.5, -8, 7), TypeError, "zero_point"),
])
def test_bad_parameters(args, exc, words):
    with pytest.raises(exc, match=words):
        fake_quantize(np.ones(3, np.float32), *args)
