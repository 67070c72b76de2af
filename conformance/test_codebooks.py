"""Conformance: codebook element types (``codebook_encode`` / ``codebook_decode``).

Both ops are Exact. Inputs are drawn around each codebook's midpoints, where the tie
rule decides (nf4/fp4: lower code as bitsandbytes; iq4_nl: upper as ggml; ternary:
toward zero; binary: sign(0) = -1), plus NaN/±inf and values far outside the range.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel.ops import OP_SPECS
from conformance import strategies
from conformance.harness import call, check, ref, require

F32 = np.float32
CODEBOOKS = OP_SPECS["codebook_encode"].formats


@pytest.mark.op("codebook_encode")
@pytest.mark.parametrize("fmt", CODEBOOKS)
@given(data=st.data())
def test_codebook_encode(refquant_backend, fmt, data):
    require(refquant_backend, "codebook_encode", fmt)
    x = data.draw(strategies.codebook_inputs(fmt), label="x")
    check("codebook_encode", fmt, call(refquant_backend, "codebook_encode", x, fmt), ref("codebook_encode", x, fmt),
          backend=refquant_backend, inputs={"x": x, "name": fmt})


@pytest.mark.op("codebook_encode")
@pytest.mark.parametrize("fmt", CODEBOOKS)
def test_codebook_encode_bulk(refquant_backend, fmt):
    """Every float32 midpoint and its neighbours, and 2^16 values spread over the range, 2-D."""
    require(refquant_backend, "codebook_encode", fmt)
    from refquant.dtypes.codebooks import get_codebook

    cb = get_codebook(fmt)
    rng = np.random.default_rng(4321)
    lo, hi = float(cb.table.min()), float(cb.table.max())
    m = cb.midpoints
    x = np.concatenate([cb.table, m, np.nextafter(m, F32(np.inf)), np.nextafter(m, F32(-np.inf)),
                        rng.uniform(2 * lo - hi, 2 * hi - lo, 1 << 16).astype(F32),
                        np.array(strategies.ADVERSARIAL_FLOAT32, F32)])
    x = x[: x.size // 2 * 2].reshape(-1, 2)
    check("codebook_encode", fmt, call(refquant_backend, "codebook_encode", x, fmt), ref("codebook_encode", x, fmt),
          backend=refquant_backend, inputs={"x": x, "name": fmt})


@pytest.mark.op("codebook_decode")
@pytest.mark.parametrize("fmt", CODEBOOKS)
@given(data=st.data())
def test_codebook_decode(refquant_backend, fmt, data):
    require(refquant_backend, "codebook_decode", fmt)
    codes = data.draw(strategies.codebook_codes(fmt), label="codes")
    check("codebook_decode", fmt, call(refquant_backend, "codebook_decode", codes, fmt), ref("codebook_decode", codes, fmt),
          backend=refquant_backend, inputs={"codes": codes, "name": fmt})
