"""Tables are written once and derived everywhere else: ggml's type table
(refquant.io.ggml_types) gives every BlockFormat its id and block size and must agree with the
declared fields; the IQ4_NL values live in the ``iq4_nl`` codebook; the Backend ops' format
axes are the reference's registries. The literals below are golden values from ggml
(ggml-common.h, ggml.h @ d99724f2) that check those tables."""

from __future__ import annotations

import numpy as np
import pytest

import accel.ops
from refquant import gguf
from refquant.formats import gguf_recipes as recipes
from refquant.dtypes.codebooks import CODEBOOKS, get_codebook
from refquant.dtypes.floatspec import FLOAT_SPECS
from refquant.formats import FORMATS, BlockFormat, Field
from refquant.formats.gguf_iquants import KVALUES_IQ4NL
from refquant.formats.mx import MX_FORMATS
from refquant.granularity import GRANULARITY_NAMES
from refquant.io.ggml_types import block_size, ggml_type, type_size

KVALUES_IQ4NL_GGML = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)


def test_iq4_nl_values_are_one_table():
    assert tuple(KVALUES_IQ4NL.tolist()) == KVALUES_IQ4NL_GGML and KVALUES_IQ4NL.dtype == np.int8
    assert tuple(get_codebook("iq4_nl").table.tolist()) == KVALUES_IQ4NL_GGML
    assert not KVALUES_IQ4NL.flags.writeable


def test_block_formats_take_id_and_block_size_from_the_ggml_table():
    for name, fmt in FORMATS.items():
        t = ggml_type(name)
        assert (fmt.type_id, fmt.block_size, fmt.type_size) == (int(t), block_size(t), type_size(t)), name
    assert (FORMATS["q4_k"].type_id, FORMATS["q4_k"].block_size, FORMATS["q4_k"].type_size) == (12, 256, 144)


def test_a_block_format_whose_fields_disagree_with_the_table_is_refused():
    before = dict(FORMATS)
    with pytest.raises(TypeError, match=r"'q1_0' declares 17 bytes of fields; a q1_0 block is 18 bytes"):
        class _Q1(BlockFormat, name="q1_0"):  # ggml's Q1_0 is d:f16, qs[16]
            fields = (Field("d", "<f2"), Field("qs", "u1", 15))
    with pytest.raises(ValueError, match=r"BlockFormat name='q9_9' is not a ggml type"):
        class _Q9(BlockFormat, name="q9_9"):
            fields = (Field("d", "<f2"),)
    with pytest.raises(TypeError, match="must declare its byte fields"):
        class _Q2(BlockFormat, name="q2_0"):
            pass
    assert FORMATS == before


def test_backend_op_axes_are_the_reference_registries():
    assert accel.ops.FLOAT_FORMATS == tuple(FLOAT_SPECS)
    assert accel.ops.CODEBOOK_NAMES == tuple(CODEBOOKS) == ("nf4", "fp4", "iq4_nl", "ternary", "binary")
    assert accel.ops.GRANULARITIES == GRANULARITY_NAMES
    assert accel.ops.GGUF_FORMATS == gguf.qtypes() and set(accel.ops.GGUF_FORMATS) == set(FORMATS)
    assert accel.ops.MX_FORMATS == tuple(MX_FORMATS)
    axes = {name: spec.formats for name, spec in accel.ops.OP_SPECS.items()}
    assert axes["codebook_encode"] == axes["codebook_decode"] == accel.ops.CODEBOOK_NAMES
    assert axes["gguf_quantize"] == accel.ops.GGUF_FORMATS


def test_recipe_block_sizes_come_from_the_ggml_table():
    assert recipes._BLOCK["q4_k"] == 256 and recipes._BLOCK["q4_0"] == 32 and recipes._BLOCK["f16"] == 1
    assert all(recipes._BLOCK[t] == block_size(t) for t in recipes._BLOCK)


def test_cuda_sources_hold_the_reference_tables():
    """CUDA C cannot import the Python tables: ``src/gguf_kvalues.cuh`` is written from them by
    ``tools/cuda_kvalues.py``; the committed header must be that script's output and hold
    exactly their values."""
    import importlib.util
    import re
    from pathlib import Path

    from refquant.formats.gguf_mx import KVALUES_MXFP4

    path = Path(__file__).parents[1] / "tools" / "cuda_kvalues.py"
    spec = importlib.util.spec_from_file_location("cuda_kvalues", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    src = tool.HEADER.read_text()
    assert src == tool.render(), "accel/cupy/src/gguf_kvalues.cuh is out of date: run python tools/cuda_kvalues.py"
    for fn, table in (("kvalue_iq4nl", KVALUES_IQ4NL), ("kvalue_mxfp4", KVALUES_MXFP4)):
        body = re.search(rf"{fn}\(int i\) \{{\s*const signed char kv\[16\] = \{{([^}}]*)\}}", src)
        assert body is not None, fn
        assert [int(v) for v in body.group(1).split(",")] == table.tolist(), fn
    retyped = [p.name for p in tool.HEADER.parent.glob("*.cu*") if p != tool.HEADER and "kv[16]" in p.read_text()]
    assert not retyped, f"value tables retyped outside the generated header: {retyped}"


def test_metrics_looks_bits_per_weight_up_in_each_format():
    from refquant import metrics
    import importlib

    from refquant.algorithms import _quantizer
    from refquant.formats.groupwise import group_bits_per_weight
    from refquant.formats.groupwise import spqr_average_bits as average_bits
    from refquant.layouts.packed import AWQPacked, GPTQPacked
    from refquant.formats.bnb import bits_per_weight_4bit

    for name, fmt in FORMATS.items():
        assert metrics.bits_per_weight(name) == fmt.bits_per_weight() == 8 * fmt.type_size / fmt.block_size, name
    for name, fmt in MX_FORMATS.items():
        assert metrics.bits_per_weight(name) == fmt.bits_per_weight(), name
    for name, spec in FLOAT_SPECS.items():
        assert metrics.bits_per_weight(name) == spec.bits, name
    assert metrics.bits_per_weight("nf4", blocksize=128, double_quant=True) == bits_per_weight_4bit(128, True)
    assert metrics.bits_per_weight("awq", bits=3, group_size=64) == group_bits_per_weight(3, 64) == 3 + 19 / 64
    assert metrics.bits_per_weight("spqr", round_zero=True, wbits=4) == average_bits(4, 16, 3, 3, 16, 0.0, True)
    # golden values: ggml-common.h block sizes, QLoRA section 3, SpQR's 3.625 (+ 1/16 with round_zero, wbits 4)
    assert (metrics.bits_per_weight("q6_k"), bits_per_weight_4bit(64, True)) == (6.5625, 4 + 8 / 64 + 32 / (64 * 256))
    assert average_bits(3, 16, 3, 3, 16) == 3.625 and average_bits(4, 16, 3, 3, 16, 0.0, True) == 4.6875
    # one computation: the algorithms and the packed layouts use the same functions
    assert _quantizer.group_bits_per_weight is group_bits_per_weight and importlib.import_module("refquant.algorithms.spqr").average_bits is average_bits
    assert "group_bits_per_weight" in GPTQPacked.bits_per_weight.fget.__doc__
    assert "group_bits_per_weight" in AWQPacked.bits_per_weight.fget.__doc__
