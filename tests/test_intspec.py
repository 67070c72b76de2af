"""refquant.dtypes.intspec: derived integer ranges and lookups."""

from __future__ import annotations

import numpy as np
import pytest

import refquant
from refquant.dtypes.intspec import INT_SPECS, IntSpec, get_int_spec


@pytest.mark.parametrize("name, qmin, qmax, dtype", [
    ("int8", -128, 127, np.int8), ("uint8", 0, 255, np.uint8), ("int8_restricted", -127, 127, np.int8),
    ("int4", -8, 7, np.int8), ("uint4", 0, 15, np.uint8), ("int4_restricted", -7, 7, np.int8),
    ("int3", -4, 3, np.int8), ("uint3", 0, 7, np.uint8), ("int3_restricted", -3, 3, np.int8),
    ("int2", -2, 1, np.int8), ("uint2", 0, 3, np.uint8), ("int2_restricted", -1, 1, np.int8),
    ("int16", -32768, 32767, np.int16), ("uint16", 0, 65535, np.uint16),
])
def test_ranges(name, qmin, qmax, dtype):
    spec = get_int_spec(name)
    assert (spec.qmin, spec.qmax) == (qmin, qmax)
    assert spec.levels == qmax - qmin + 1
    assert spec.dtype == np.dtype(dtype)
    info = np.iinfo(spec.dtype)
    assert info.min <= spec.qmin and spec.qmax <= info.max


def test_full_ranges_match_numpy_iinfo():
    for name in ("int8", "uint8", "int16", "uint16"):
        info = np.iinfo(name)
        assert (INT_SPECS[name].qmin, INT_SPECS[name].qmax) == (info.min, info.max)


def test_ranges_are_derived_for_any_width():
    for bits in range(1, 33):
        u = get_int_spec(bits=bits, signed=False)
        s = get_int_spec(bits=bits, signed=True)
        assert u.levels == 2**bits == s.levels
        assert s.qmin == -(2 ** (bits - 1)) and s.qmax == 2 ** (bits - 1) - 1
        if bits >= 2:
            r = get_int_spec(bits=bits, signed=True, restricted=True)
            assert r.qmin == -r.qmax and r.levels == 2**bits - 1
    assert get_int_spec(bits=32, signed=False).dtype == np.uint32
    assert get_int_spec(bits=5, signed=True).dtype == np.int8


def test_lookup_forms_agree():
    assert get_int_spec("INT4") is INT_SPECS["int4"]
    assert get_int_spec(bits=4, signed=True) is INT_SPECS["int4"]
    assert get_int_spec("int8", restricted=True) is INT_SPECS["int8_restricted"]
    assert get_int_spec(bits=8, signed=True, restricted=True) is INT_SPECS["int8_restricted"]
    spec = IntSpec("int6", 6, True)
    assert get_int_spec(spec) is spec
    assert get_int_spec(bits=6, signed=True) == spec
    assert refquant.IntSpec is IntSpec


@pytest.mark.parametrize("call, exc, match", [
    (lambda: get_int_spec("int9"), ValueError, "allowed: int2"),
    (lambda: get_int_spec(), ValueError, "exactly one"),
    (lambda: get_int_spec("int8", bits=8), ValueError, "exactly one"),
    (lambda: get_int_spec(bits=8), TypeError, "signed"),
    (lambda: get_int_spec(bits=0, signed=True), ValueError, "bits=0"),
    (lambda: get_int_spec(bits=33, signed=False), ValueError, "bits=33"),
    (lambda: get_int_spec(bits=4.0, signed=True), TypeError, "bits"),
    (lambda: get_int_spec(bits=8, signed=False, restricted=True), ValueError, "signed=True"),
    (lambda: get_int_spec("uint8", restricted=True), ValueError, "signed=True"),
    (lambda: get_int_spec("int8", restricted="yes"), TypeError, "restricted"),
    (lambda: get_int_spec(8), TypeError, "name"),
    (lambda: IntSpec("x", 1, True, restricted=True), ValueError, "bits=1"),
    (lambda: IntSpec("x", 8, 1), TypeError, "signed"),
])
def test_bad_parameters(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_frozen():
    with pytest.raises(AttributeError):
        INT_SPECS["int8"].bits = 7  # type: ignore[misc]
