"""The Numba backend's algorithm ops on group sizes the conformance matrix does not draw.

The matrix's formats (``3bit_g128``, ``4bit_g128``, ``4bit_perchannel``) put every group
boundary on a block boundary of GPTQ's sweep (128 columns). Groups of 32 are fitted in
the middle of a block, on the global weight (without the block's own updates); groups
of 200 span two blocks, so a row's grid is carried from one block to the next. Each
result is held to the op's contract (conformance/contracts.py) against the reference,
on the same small layers the suite uses (kernels already compiled by it).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import accel  # noqa: E402
from conformance import strategies  # noqa: E402
from conformance.harness import check, ref  # noqa: E402
from conformance.test_algorithms import _gptq_error, _output_error, layer_errors  # noqa: E402


@pytest.fixture(scope="module")
def nb():
    return accel.get_backend("numba")


@pytest.fixture(scope="module")
def layer():
    """(W, X): 12 outputs, 320 inputs (two blocks and a partial third), 96 tokens with
    dead and outlier input channels."""
    rng = np.random.default_rng(7)
    X = (rng.standard_normal((96, 8)) @ rng.standard_normal((8, 320)) / np.sqrt(8)
         + 0.1 * rng.standard_normal((96, 320))) * np.exp(rng.normal(0.0, 1.0, 320))
    X[:, [3, 150]] = 0.0
    X[:, 77] *= 20.0
    W = 0.05 * rng.standard_normal((12, 320))
    W[0] = 0.0
    return W.astype(np.float32), X.astype(np.float32)


@pytest.mark.parametrize("group_size", [32, 200])
@pytest.mark.parametrize("act_order", [False, True], ids=["natural", "act_order"])
def test_gptq_groups_off_the_block_grid(nb, layer, group_size, act_order):
    W, X = layer
    H = strategies.hessian(X)
    kw = dict(bits=4, group_size=group_size, act_order=act_order, sym=False)
    got, expected = nb.gptq_quantize(W, H, **kw), ref("gptq_quantize", W, H, **kw)
    check("gptq_quantize", f"4bit_g{group_size}", got, expected, backend=nb, inputs={"W": W, "H": H, **kw},
          **layer_errors("gptq_quantize", got, expected, W, _gptq_error(H)))


@pytest.mark.parametrize("group_size", [32, 200])
def test_awq_groups_off_the_block_grid(nb, layer, group_size):
    W, X = layer
    kw = dict(bits=3, group_size=group_size)
    got, expected = nb.awq_quantize(W, X, **kw), ref("awq_quantize", W, X, **kw)
    check("awq_quantize", f"3bit_g{group_size}", got, expected, backend=nb, inputs={"W": W, "X": X, **kw},
          **layer_errors("awq_quantize", got, expected, W, _output_error(X)))


@pytest.mark.parametrize("group_size", [32, 200])
def test_rtn_groups_bit_exact(nb, layer, group_size):
    W, _ = layer
    got, expected = nb.rtn_quantize(W, 2, group_size, False), ref("rtn_quantize", W, 2, group_size, False)
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
