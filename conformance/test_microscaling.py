"""Conformance: microscaling formats (OCP MX v1.0 block codec, NVIDIA NVFP4).

Quantizers are Exact (E8M0 / E4M3 scale bytes and element codes); decoders are Exact
with any NaN for a NaN scale. Hypothesis draws MX blocks whose values sit on the element
type's ties after the shared scale is divided out, blocks whose scale underflows E8M0,
and NaN/inf blocks (the 0xFF scale); NVFP4 inputs include E2M1 ties under a unit global
scale and calibrated global maxima below and above the data.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from accel.ops import MX_FORMATS
from conformance import strategies
from conformance.harness import call, check, ref, require


@pytest.mark.op("mx_quantize")
@pytest.mark.parametrize("fmt", MX_FORMATS)
@given(x=strategies.mx_blocks("mxfp4"))
def test_mx_quantize_any_blocks(refquant_backend, fmt, x):
    """Blocks drawn for FP4 ties exercise every format's scale rule (shapes, zero, NaN)."""
    require(refquant_backend, "mx_quantize", fmt)
    check("mx_quantize", fmt, call(refquant_backend, "mx_quantize", x, fmt), ref("mx_quantize", x, fmt),
          backend=refquant_backend, inputs={"x": x, "fmt": fmt})


@pytest.mark.op("mx_quantize")
@pytest.mark.parametrize("fmt", MX_FORMATS)
def test_mx_quantize_element_ties(refquant_backend, fmt):
    """The format's own element ties, under many shared scales (strategy drawn per format)."""
    require(refquant_backend, "mx_quantize", fmt)

    @given(x=strategies.mx_blocks(fmt))
    def run(x):
        check("mx_quantize", fmt, call(refquant_backend, "mx_quantize", x, fmt), ref("mx_quantize", x, fmt),
              backend=refquant_backend, inputs={"x": x, "fmt": fmt})

    run()


@pytest.mark.op("mx_dequantize")
@pytest.mark.parametrize("fmt", MX_FORMATS)
def test_mx_dequantize(refquant_backend, fmt):
    require(refquant_backend, "mx_dequantize", fmt)

    @given(case=strategies.mx_codes(fmt))
    def run(case):
        scales, codes = case
        check("mx_dequantize", fmt, call(refquant_backend, "mx_dequantize", scales, codes, fmt),
              ref("mx_dequantize", scales, codes, fmt), backend=refquant_backend,
              inputs={"scales": scales, "codes": codes, "fmt": fmt})

    run()


@pytest.mark.op("mx_dequantize")
@pytest.mark.parametrize("fmt", MX_FORMATS)
def test_mx_dequantize_every_scale(refquant_backend, fmt):
    """All 256 E8M0 bytes (0xFF is NaN), each with the same codes."""
    require(refquant_backend, "mx_dequantize", fmt)
    from refquant.formats.mx import get_mx_format

    bits = get_mx_format(fmt).bits
    scales = np.arange(256, dtype=np.uint8).reshape(64, 4)
    codes = np.tile((np.arange(128) % (1 << bits)).astype(np.uint8), (64, 1))
    check("mx_dequantize", fmt, call(refquant_backend, "mx_dequantize", scales, codes, fmt),
          ref("mx_dequantize", scales, codes, fmt), backend=refquant_backend,
          inputs={"scales": scales, "codes": codes, "fmt": fmt})


@pytest.mark.op("nvfp4_quantize")
@given(case=strategies.nvfp4_inputs())
def test_nvfp4_quantize(refquant_backend, case):
    require(refquant_backend, "nvfp4_quantize")
    x, g = case
    check("nvfp4_quantize", None, call(refquant_backend, "nvfp4_quantize", x, global_amax=g),
          ref("nvfp4_quantize", x, global_amax=g), backend=refquant_backend, inputs={"x": x, "global_amax": g})


@pytest.mark.op("nvfp4_dequantize")
@given(case=strategies.mx_codes("mxfp4"))
def test_nvfp4_dequantize(refquant_backend, case):
    """Any packed bytes, any E4M3 scale byte (NaN codes included), a few global scales."""
    require(refquant_backend, "nvfp4_dequantize")
    scales, codes = case
    packed = codes | (codes[:, ::-1] << np.uint8(4))                 # (rows, 32 k) bytes = 64 k values
    block_scales = np.repeat(scales, 4, axis=1)                      # one per 16 values
    for g in (1.0, 3.0e-4, 1.5e3):
        check("nvfp4_dequantize", None, call(refquant_backend, "nvfp4_dequantize", packed, block_scales, g),
              ref("nvfp4_dequantize", packed, block_scales, g), backend=refquant_backend,
              inputs={"packed": packed, "block_scales": block_scales, "global_scale": g})
