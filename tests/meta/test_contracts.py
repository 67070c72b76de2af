"""The tolerance contracts themselves: each must accept what it allows and reject the rest."""

from __future__ import annotations

import numpy as np
import pytest

from accel.protocol import OpCapability
from conformance.contracts import Codes, Exact, Nmse, NoWorseThanRef, Ulp, contract_for


def test_exact_detects_one_flipped_bit():
    a = np.array([1.0, 2.0, 3.0], np.float32)
    b = a.copy()
    b.view(np.uint32)[1] ^= 1
    assert Exact().check(a, a.copy()) is None
    problem = Exact().check(b, a)
    assert problem is not None and "1 of 3" in problem and "bits" in problem


def test_exact_distinguishes_signed_zero_and_nan_payloads():
    assert Exact().check(np.array([-0.0], np.float32), np.array([0.0], np.float32)) is not None
    n1 = np.array([0x7FC00000], np.uint32).view(np.float32)
    n2 = np.array([0x7FC00001], np.uint32).view(np.float32)
    assert Exact().check(n1, n2) is not None
    assert Exact(nan_equal=True).check(n1, n2) is None


def test_exact_checks_dtype_shape_and_tuple_arity():
    a = np.arange(4, dtype=np.uint8)
    assert "dtype" in Exact().check(a.astype(np.int8), a)
    assert "shape" in Exact().check(a.reshape(2, 2), a)
    assert "returned 1 arrays" in Exact().check((a,), (a, a))


def test_ulp():
    e = np.array([1.0, 1000.0], np.float32)
    g = np.nextafter(e, np.float32(np.inf))
    assert Ulp(1).check(g, e) is None
    g2 = np.nextafter(g, np.float32(np.inf))
    assert Ulp(1).check(g2, e) is not None
    assert Ulp(2).check(g2, e) is None
    assert Ulp(4).check(np.array([np.nan], np.float32), np.array([1.0], np.float32)) is not None


def test_codes_delta_and_rate():
    e = np.zeros(1000, np.int8)
    g = e.copy()
    g[0] = 1
    assert Codes(1, 1e-3).check(g, e) is None
    g[1] = 1
    assert Codes(1, 1e-3).check(g, e) is not None  # 0.2% > 0.1%
    g = e.copy()
    g[0] = 2
    assert "more than 1" in Codes(1, 1.0).check(g, e)


def test_nmse():
    rng = np.random.default_rng(0)
    e = rng.standard_normal(1000).astype(np.float32)
    assert Nmse(1e-6).check(e * (1 + 1e-5), e) is None
    assert Nmse(1e-6).check(e * 1.01, e) is not None
    assert Nmse(1e-6).check(np.zeros(3, np.float32), np.zeros(3, np.float32)) is None
    assert Nmse(1e-6).check(np.array([np.inf], np.float32), np.array([1.0], np.float32)) is not None


def test_no_worse_than_ref():
    c = NoWorseThanRef(1.05)
    assert c.check(None, None, got_error=1.0, ref_error=1.0) is None
    assert c.check(None, None, got_error=1.2, ref_error=1.0) is not None
    assert c.check(None, None, got_error=float("nan"), ref_error=1.0) is not None
    assert c.check(None, None) is not None


class _Fake:
    def __init__(self, exact: bool):
        self._exact = exact

    def capabilities(self):
        return {"some_op": OpCapability(bit_exact=self._exact)}


def test_claimed_bit_exactness_upgrades_the_contract(monkeypatch):
    from conformance import contracts

    monkeypatch.setitem(contracts.CONTRACTS, ("some_op", "*"), Nmse(1e-3))
    assert isinstance(contract_for("some_op", "x"), Nmse)
    assert isinstance(contract_for("some_op", "x", _Fake(False)), Nmse)
    assert isinstance(contract_for("some_op", "x", _Fake(True)), Exact)
    assert isinstance(contract_for("unlisted_op", None), Exact)


def test_nmse_where_the_reference_is_not_finite():
    e = np.array([1.0, np.inf, np.nan, 2.0], np.float32)
    assert Nmse(1e-6).check(e.copy(), e) is None
    g = e.copy()
    g[1] = 5.0                                   # finite where the reference is inf
    assert "non-finite" in Nmse(1e-6).check(g, e)
    g = e.copy()
    g[0] = np.inf                                # inf where the reference is finite
    assert "non-finite" in Nmse(1e-6).check(g, e)
