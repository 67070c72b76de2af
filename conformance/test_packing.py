"""Conformance: sub-byte packing (pack / unpack per named layout; base-3 ternary).

Contract: Exact (identical bytes / words / codes). The format axis is a key of
``refquant.packing.LAYOUTS`` and gives the ``bits``/``order``/``container`` arguments;
rows are packed along the last axis with zero codes padding the last byte or word.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from accel.ops import OP_SPECS
from conformance import strategies
from conformance.harness import call, check, ref, require
from refquant.packing import LAYOUTS

LAYOUT_NAMES = OP_SPECS["pack"].formats


@pytest.mark.op("pack")
@pytest.mark.parametrize("fmt", LAYOUT_NAMES)
@given(data=st.data())
def test_pack(refquant_backend, fmt, data):
    require(refquant_backend, "pack", fmt)
    kw = LAYOUTS[fmt]
    codes = data.draw(strategies.pack_codes(kw["bits"]))
    check("pack", fmt, call(refquant_backend, "pack", codes, **kw), ref("pack", codes, **kw),
          backend=refquant_backend, inputs={"codes": codes, **kw})


@pytest.mark.op("unpack")
@pytest.mark.parametrize("fmt", LAYOUT_NAMES)
@given(data=st.data())
def test_unpack(refquant_backend, fmt, data):
    require(refquant_backend, "unpack", fmt)
    kw = LAYOUTS[fmt]
    codes = data.draw(strategies.pack_codes(kw["bits"]))
    count = codes.shape[-1]
    packed = ref("pack", codes, **kw)
    if data.draw(st.booleans()) and packed.size:    # arbitrary bytes, padding bits included
        seed = data.draw(st.integers(0, 2**32 - 1))
        raw = np.random.default_rng(seed).integers(0, 256, packed.size * packed.itemsize, dtype=np.uint8)
        packed = raw.view(packed.dtype).reshape(packed.shape)
    check("unpack", fmt, call(refquant_backend, "unpack", packed, count=count, **kw), ref("unpack", packed, count=count, **kw),
          backend=refquant_backend, inputs={"packed": packed, "count": count, **kw})


trit_matrices = hnp.arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(0, 60)), elements=st.integers(0, 2))


@pytest.mark.op("pack_ternary")
@given(trits=trit_matrices)
def test_pack_ternary(refquant_backend, trits):
    require(refquant_backend, "pack_ternary")
    check("pack_ternary", None, call(refquant_backend, "pack_ternary", trits), ref("pack_ternary", trits),
          backend=refquant_backend, inputs={"trits": trits})


@pytest.mark.op("unpack_ternary")
@given(trits=trit_matrices)
def test_unpack_ternary(refquant_backend, trits):
    require(refquant_backend, "unpack_ternary")
    packed = ref("pack_ternary", trits)
    count = trits.shape[-1]
    check("unpack_ternary", None, call(refquant_backend, "unpack_ternary", packed, count), ref("unpack_ternary", packed, count),
          backend=refquant_backend, inputs={"packed": packed, "count": count})


def test_layout_axis_matches_refquant():
    assert tuple(LAYOUT_NAMES) == tuple(LAYOUTS)
    assert OP_SPECS["unpack"].formats == LAYOUT_NAMES
