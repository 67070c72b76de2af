"""Conformance: checkpoint layouts (GPTQ v1/v2 qweight/qzeros/scales/g_idx, AWQ GEMM).

Contract: Exact (identical words, codes, float16 scales and float32 weights). The
GPTQ format axis is ``v{version}_{bits}bit`` (:data:`refquant.layouts.gptq.FORMATS`);
AWQ GEMM has one format (4 bits, nibble order 0,2,4,6,1,3,5,7) and no axis.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel.ops import OP_SPECS
from conformance import strategies
from conformance.harness import call, check, ref, require
from refquant.layouts.gptq import FORMATS, format_args

GPTQ_FORMATS = OP_SPECS["gptq_pack"].formats


@pytest.mark.op("gptq_pack")
@pytest.mark.parametrize("fmt", GPTQ_FORMATS)
@given(data=st.data())
def test_gptq_pack(refquant_backend, fmt, data):
    require(refquant_backend, "gptq_pack", fmt)
    kw = format_args(fmt)
    codes, zeros, scales, g_idx = data.draw(strategies.gptq_layout_case(**kw))
    check("gptq_pack", fmt, call(refquant_backend, "gptq_pack", codes, zeros, scales, g_idx, **kw),
          ref("gptq_pack", codes, zeros, scales, g_idx, **kw), backend=refquant_backend,
          inputs={"codes": codes, "zeros": zeros, "scales": scales, "g_idx": g_idx, **kw})


@pytest.mark.op("gptq_unpack")
@pytest.mark.parametrize("fmt", GPTQ_FORMATS)
@given(data=st.data())
def test_gptq_unpack(refquant_backend, fmt, data):
    require(refquant_backend, "gptq_unpack", fmt)
    kw = format_args(fmt)
    tensors = ref("gptq_pack", *data.draw(strategies.gptq_layout_case(**kw)), **kw)
    check("gptq_unpack", fmt, call(refquant_backend, "gptq_unpack", *tensors, **kw), ref("gptq_unpack", *tensors, **kw),
          backend=refquant_backend, inputs=dict(zip(("qweight", "qzeros", "scales", "g_idx"), tensors), **kw))


@pytest.mark.op("gptq_dequantize")
@pytest.mark.parametrize("fmt", GPTQ_FORMATS)
@given(data=st.data())
def test_gptq_dequantize(refquant_backend, fmt, data):
    require(refquant_backend, "gptq_dequantize", fmt)
    kw = format_args(fmt)
    tensors = ref("gptq_pack", *data.draw(strategies.gptq_layout_case(**kw)), **kw)
    check("gptq_dequantize", fmt, call(refquant_backend, "gptq_dequantize", *tensors, **kw),
          ref("gptq_dequantize", *tensors, **kw), backend=refquant_backend,
          inputs=dict(zip(("qweight", "qzeros", "scales", "g_idx"), tensors), **kw))


@pytest.mark.op("awq_pack")
@given(case=strategies.awq_layout_case())
def test_awq_pack(refquant_backend, case):
    require(refquant_backend, "awq_pack")
    codes, zeros, scales, _ = case
    check("awq_pack", None, call(refquant_backend, "awq_pack", codes, zeros, scales), ref("awq_pack", codes, zeros, scales),
          backend=refquant_backend, inputs={"codes": codes, "zeros": zeros, "scales": scales})


@pytest.mark.op("awq_unpack")
@given(case=strategies.awq_layout_case())
def test_awq_unpack(refquant_backend, case):
    require(refquant_backend, "awq_unpack")
    qweight, qzeros, _ = ref("awq_pack", *case[:3])
    check("awq_unpack", None, call(refquant_backend, "awq_unpack", qweight, qzeros), ref("awq_unpack", qweight, qzeros),
          backend=refquant_backend, inputs={"qweight": qweight, "qzeros": qzeros})


@pytest.mark.op("awq_dequantize")
@given(case=strategies.awq_layout_case())
def test_awq_dequantize(refquant_backend, case):
    require(refquant_backend, "awq_dequantize")
    qweight, qzeros, scales = ref("awq_pack", *case[:3])
    group_size = case[3]
    check("awq_dequantize", None, call(refquant_backend, "awq_dequantize", qweight, qzeros, scales, group_size),
          ref("awq_dequantize", qweight, qzeros, scales, group_size), backend=refquant_backend,
          inputs={"qweight": qweight, "qzeros": qzeros, "scales": scales, "group_size": group_size})


def test_gptq_axis_matches_refquant():
    assert tuple(GPTQ_FORMATS) == FORMATS
    assert OP_SPECS["gptq_unpack"].formats == GPTQ_FORMATS == OP_SPECS["gptq_dequantize"].formats
