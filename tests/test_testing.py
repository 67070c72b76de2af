"""refquant.testing: the comparators must pass equal arrays and explain differences."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.testing import assert_bitexact, assert_ulp, block_diff_report, matmul_error_bound


def test_equal_arrays_pass_and_report_nothing():
    a = np.arange(64, dtype=np.float32).reshape(2, 32)
    assert block_diff_report(a, a.copy()) == ""
    assert_bitexact(a, a.copy())
    assert_bitexact(np.zeros(0, np.uint8), np.zeros(0, np.uint8))


def test_report_names_the_worst_block_and_bit_count():
    d = np.zeros((2, 64), np.float32)
    a = d.copy()
    a[1, 40] = np.float32(1.0)            # 0x3F800000: 7 bits differ from +0
    a[1, 41] = np.float32(2.0)
    a[0, 3] = np.float32(-0.0)            # sign bit only
    report = block_diff_report(a, d, block_size=32)
    assert report.splitlines()[0] == "3 of 128 elements differ, in 2 of 4 blocks of 32"
    assert "row 1 block 1: 2 differ" in report.splitlines()[1]
    assert "(7 bits differ)" in report and "(1 bits differ)" in report
    with pytest.raises(AssertionError, match="Q4_0 bytes are not bit-exact: 3 of 128"):
        assert_bitexact(a, d, block_size=32, what="Q4_0 bytes")


def test_nan_payloads_and_dtypes_count():
    n1 = np.array([0x7FC00000], np.uint32).view(np.float32)
    n2 = np.array([0x7FC00001], np.uint32).view(np.float32)
    with pytest.raises(AssertionError):
        assert_bitexact(n1, n2)
    with pytest.raises(AssertionError, match="dtype mismatch"):
        assert_bitexact(np.zeros(2, np.uint8), np.zeros(2, np.int8))


def test_structured_blocks_compare_by_bytes():
    dt = np.dtype([("d", "<u2"), ("qs", "u1", (4,))])
    a = np.zeros(3, dt)
    b = a.copy()
    b["qs"][2, 1] = 7
    assert "1 of 3 elements differ" in block_diff_report(b, a)


def test_assert_ulp():
    d = np.array([1.0, 100.0, np.inf, np.nan], np.float32)
    a = d.copy()
    a[0] = np.nextafter(a[0], np.float32(2))
    assert_ulp(a, d, ulp=1)
    with pytest.raises(AssertionError, match="beyond 0 ulp"):
        assert_ulp(a, d, ulp=0)
    b = d.copy()
    b[3] = 1.0
    with pytest.raises(AssertionError, match="1 of 4"):
        assert_ulp(b, d, ulp=4)
    with pytest.raises(TypeError, match="floating-point"):
        assert_ulp(np.zeros(2, np.int32), np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="ulp"):
        assert_ulp(d, d, ulp=-1)


def test_matmul_error_bound_holds_for_every_summation_order(rng):
    u = 2.0 ** -24
    # hand-checked value: n = 2, |a| @ |b| = 2
    assert matmul_error_bound([[1.0, -1.0]], [[1.0], [1.0]])[0, 0] == 2 * (2 * u / (1 - 2 * u))
    a = rng.standard_normal((6, 300)).astype(np.float32)
    b = rng.standard_normal((300, 5)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    bound = matmul_error_bound(a, b)
    assert bound.shape == (6, 5) and bound.dtype == np.float64
    # three float32 orders: BLAS, strictly sequential, and reversed
    products = a[:, :, None] * b[None, :, :]                           # (6, 300, 5), each product rounded
    sequential = np.cumsum(products, axis=1, dtype=np.float32)[:, -1]
    reversed_ = np.cumsum(products[:, ::-1], axis=1, dtype=np.float32)[:, -1]
    for got in (a @ b, sequential, reversed_):
        assert (np.abs(got.astype(np.float64) - exact) <= bound).all()
        assert np.abs(got.astype(np.float64) - exact).max() > 0       # the orders do round
    with pytest.raises(ValueError, match="n=16777216"):
        matmul_error_bound(np.broadcast_to(0.0, (1, 1 << 24)), np.broadcast_to(0.0, (1 << 24, 1)))

