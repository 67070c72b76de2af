"""OP_SPECS: the canonical op names every backend implements a subset of.

One row per op. ``reference`` is the ``module:function`` in refquant that defines the
op's result (the reference backend calls it directly), ``prepare`` the refquant function
that checks and normalizes its arguments for every backend, ``formats`` is the op's format
axis in the conformance matrix (None: the op has no format axis), and the backend
method has the same name and signature as the reference function. Arrays go in and
come out as the backend's own arrays; containers (tuples) keep their order.

Rows are grouped by spec area; add a row when the reference function exists, with its
conformance test in ``conformance/test_<area>.py`` and its tolerance in
``conformance/contracts.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from refquant.dtypes.codebooks import CODEBOOKS
from refquant.dtypes.floatspec import FLOAT_SPECS
from refquant.formats.mx import MX_FORMATS as _MX_FORMATS
from refquant.gguf import qtypes
from refquant.granularity import GRANULARITY_NAMES

__all__ = ["OpSpec", "OP_SPECS", "FLOAT_FORMATS", "CODEBOOK_NAMES", "GRANULARITIES", "GGUF_FORMATS", "MX_FORMATS"]


@dataclass(frozen=True)
class OpSpec:
    """One op of the Backend contract.

    Attributes
    ----------
    name : str
        Method name on a backend.
    reference : str
        ``"module:function"`` of the refquant function that defines the result.
    formats : tuple of str or None
        Values of the op's format axis (matrix columns), or None.
    area : str
        Spec area (matrix section, conformance test file).
    doc : str
        Signature and result, one line.
    prepare : str or None
        ``"module:function"`` of the refquant function that validates and normalizes the
        op's arguments (:mod:`refquant.prepare`); the dispatcher (:mod:`accel.dispatch`)
        runs it before every backend's kernel. None (a row still being written) gets
        :func:`accel.dispatch.prepare_by_signature`: the arguments are bound to the
        reference's signature (TypeError if they do not fit) and arrays made C-contiguous,
        with no value checks, so a backend of such an op must not rely on prepared input.
    out : bool
        The op takes ``out=``: its array result, or for an op with a tuple result a tuple
        of arrays in the result's order (as NumPy ufuncs take it; an entry None is
        allocated), is allocated by the prepare function or taken from the caller after
        checks (shape, dtype, C-contiguous, writeable, no memory shared with the inputs or
        the other entries; :func:`refquant.prepare.output` / ``outputs``), and the
        reference function takes the same ``out=``. A result the op allocates itself (a
        scalar, or an array whose size depends on the data) has entry None, always.
        Backends whose capability says ``out=True`` write the prepared arrays
        (``Prepared.out``); for the others the dispatcher copies into them. Every quantize
        and dequantize op has it; ``choose_qparams`` (a parameter object, not arrays),
        the matmuls and the algorithm ops do not.
    """

    name: str
    reference: str
    formats: tuple[str, ...] | None
    area: str
    doc: str
    prepare: str | None = None
    out: bool = False


# The format axes, read from the reference's own tables (never retyped here): a format joins
# an axis when refquant registers it.
FLOAT_FORMATS: tuple[str, ...] = tuple(FLOAT_SPECS)
CODEBOOK_NAMES: tuple[str, ...] = tuple(CODEBOOKS)
GRANULARITIES: tuple[str, ...] = GRANULARITY_NAMES
# ggml block types with a reference implementation (lowercase GGUF names, ggml type-id order)
GGUF_FORMATS: tuple[str, ...] = qtypes()
# OCP Microscaling v1.0 concrete formats
MX_FORMATS: tuple[str, ...] = tuple(_MX_FORMATS)

_ROWS: list[OpSpec] = [
    # --- floats (issue 3) ---
    OpSpec("encode_float", "refquant.dtypes.floatspec:encode_float", FLOAT_FORMATS, "floats",
           "encode_float(x: float32 or float64 (...), fmt, *, saturate=False) -> uint16 (16-bit fmt) / uint8 codes "
           "(...), round-to-nearest-even once from x's exact value (float64 never through float32); NaN/overflow "
           "codes as NumPy float16 / ml_dtypes",
           prepare="refquant.prepare.floats:prepare_encode_float", out=True),
    OpSpec("decode_float", "refquant.dtypes.floatspec:decode_float", FLOAT_FORMATS, "floats",
           "decode_float(bits: uint16/uint8 (...), fmt) -> float32 (...), exact",
           prepare="refquant.prepare.floats:prepare_decode_float", out=True),
    OpSpec("codebook_encode", "refquant.dtypes.codebooks:codebook_encode",
           CODEBOOK_NAMES, "codebooks",
           "codebook_encode(x: float32 (...), name) -> uint8 codes (...) of the nearest table value; "
           "ties by the codebook's rule",
           prepare="refquant.prepare.floats:prepare_codebook_encode", out=True),
    OpSpec("codebook_decode", "refquant.dtypes.codebooks:codebook_decode",
           CODEBOOK_NAMES, "codebooks",
           "codebook_decode(codes: uint8 (...), name) -> float32 (...) table values",
           prepare="refquant.prepare.floats:prepare_codebook_decode", out=True),
    # --- affine mapping (issue 3) ---
    OpSpec("choose_qparams", "refquant.mapping:choose_qparams", GRANULARITIES, "affine",
           "choose_qparams(x: float32 (...), bits=8, symmetric=True, *, signed=True, restricted_range=None, "
           "granularity, clip=None) -> QuantParams (scale float32 grid, zero_point int32 grid or None)",
           prepare="refquant.prepare.affine:prepare_choose_qparams"),
    OpSpec("quantize_affine", "refquant.mapping:quantize_affine", GRANULARITIES, "affine",
           "quantize_affine(x: float32 (...), params, *, rounding='half_even') -> int codes (...): "
           "clamp(round(x / scale) + zero_point, qmin, qmax), a true float32 division",
           prepare="refquant.prepare.affine:prepare_quantize_affine", out=True),
    OpSpec("dequantize_affine", "refquant.mapping:dequantize_affine", GRANULARITIES, "affine",
           "dequantize_affine(q: int (...), params) -> float32 (...): float32(q - zero_point) * scale",
           prepare="refquant.prepare.affine:prepare_dequantize_affine", out=True),
    # --- packing (issue 3) ---
    OpSpec("pack", "refquant.packing:pack",
           ("1bit", "2bit", "3bit", "4bit", "4bit_high_first", "2bit_gptq_int32", "3bit_gptq_int32",
            "4bit_gptq_int32", "4bit_awq_int32"), "packing",
           "pack(codes: uint (..., n), bits, order='low_first', container='uint8') -> uint8/int32 (..., ceil(n*bits/W)); "
           "format = a key of refquant.packing.LAYOUTS (its bits/order/container)",
           prepare="refquant.prepare.packing:prepare_pack", out=True),
    OpSpec("unpack", "refquant.packing:unpack",
           ("1bit", "2bit", "3bit", "4bit", "4bit_high_first", "2bit_gptq_int32", "3bit_gptq_int32",
            "4bit_gptq_int32", "4bit_awq_int32"), "packing",
           "unpack(packed: uint8/int32 (..., k), bits, count, order='low_first', container='uint8') -> uint8 (..., count)",
           prepare="refquant.prepare.packing:prepare_unpack", out=True),
    OpSpec("pack_ternary", "refquant.packing:pack_ternary", None, "packing",
           "pack_ternary(trits: {0,1,2} (..., n)) -> uint8 (..., ceil(n/5)): 5 trits per byte, ggml TQ1_0 rule",
           prepare="refquant.prepare.packing:prepare_pack_ternary", out=True),
    OpSpec("unpack_ternary", "refquant.packing:unpack_ternary", None, "packing",
           "unpack_ternary(packed: uint8 (..., k), count) -> uint8 trits (..., count)",
           prepare="refquant.prepare.packing:prepare_unpack_ternary", out=True),
    # --- bitsandbytes family (issue 4) ---
    OpSpec("bnb_quantize_4bit", "refquant.bnb:bnb_quantize_4bit", ("nf4", "fp4"), "bitsandbytes",
           "bnb_quantize_4bit(x: float32/float16/bfloat16 (...), quant_type, blocksize) -> (packed uint8 (ceil(n/2),), "
           "absmax float32 (ceil(n/blocksize),)): C-order blocks, partial last block, first code in the high nibble",
           prepare="refquant.prepare.bnb:prepare_bnb_quantize_4bit", out=True),
    OpSpec("bnb_dequantize_4bit", "refquant.bnb:bnb_dequantize_4bit", ("nf4", "fp4"), "bitsandbytes",
           "bnb_dequantize_4bit(packed: uint8 (ceil(n/2),), absmax: float32 (n_blocks,), quant_type, blocksize, shape) "
           "-> float32 shape: code[nibble] * absmax[block], one float32 multiply",
           prepare="refquant.prepare.bnb:prepare_bnb_dequantize_4bit", out=True),
    OpSpec("bnb_quantize_blockwise", "refquant.bnb:bnb_quantize_blockwise", ("dynamic8",), "bitsandbytes",
           "bnb_quantize_blockwise(x: float32/float16/bfloat16 (...), blocksize) -> (codes uint8 (n,), absmax float32 "
           "(n_blocks,)): bitsandbytes CPU 65536-entry LUT over the dynamic map",
           prepare="refquant.prepare.bnb:prepare_bnb_quantize_blockwise", out=True),
    OpSpec("bnb_dequantize_blockwise", "refquant.bnb:bnb_dequantize_blockwise", ("dynamic8",), "bitsandbytes",
           "bnb_dequantize_blockwise(codes: uint8 (n,), absmax: float32 (n_blocks,), blocksize, shape) -> float32 shape",
           prepare="refquant.prepare.bnb:prepare_bnb_dequantize_blockwise", out=True),
    OpSpec("bnb_double_quantize", "refquant.bnb:bnb_double_quantize", None, "bitsandbytes",
           "bnb_double_quantize(absmax: float32 (n_blocks,)) -> (codes uint8 (n_blocks,), nested_absmax float32 "
           "(ceil(n_blocks/256),), offset float32 ()): offset = torch's float32 mean, 8-bit blocks of 256",
           prepare="refquant.prepare.bnb:prepare_bnb_double_quantize", out=True),
    OpSpec("int8_vectorwise_quant", "refquant.bnb:int8_vectorwise_quant", None, "bitsandbytes",
           "int8_vectorwise_quant(x: float32/float16 (rows, k), threshold=0.0) -> (q int8 (rows, k), row_stats "
           "float32 (rows,), outlier_cols int64 (n,)): round_half_even(x * float32(127 / row absmax))",
           prepare="refquant.prepare.bnb:prepare_int8_vectorwise_quant", out=True),
    OpSpec("int8_vectorwise_dequant", "refquant.bnb:int8_vectorwise_dequant", None, "bitsandbytes",
           "int8_vectorwise_dequant(q: int8 (rows, k), row_stats: float32 (rows,)) -> float32 (rows, k): "
           "(q * row_stat) * float32(1/127)",
           prepare="refquant.prepare.bnb:prepare_int8_vectorwise_dequant", out=True),
    # --- integer matmul (issue 4) ---
    OpSpec("int8_matmul", "refquant.matmul:int8_matmul", None, "matmul",
           "int8_matmul(a_q: int8/uint8 (m, k), b_q: int8/uint8 (k, n)) -> int32 (m, n): exact a_q @ b_q",
           prepare="refquant.prepare.matmul:prepare_int8_matmul"),
    OpSpec("int8_matmul_zp", "refquant.matmul:int8_matmul_zp", None, "matmul",
           "int8_matmul_zp(a_q: int8/uint8 (m, k), b_q: int8/uint8 (k, n), a_zero: int | int (m,), b_zero: int | int (n,)) "
           "-> int32 (m, n): exact (a_q - a_zero) @ (b_q - b_zero)",
           prepare="refquant.prepare.matmul:prepare_int8_matmul_zp"),
    OpSpec("dequantize_int32", "refquant.matmul:dequantize_int32", None, "matmul",
           "dequantize_int32(acc: int32 (m, n), a_scale: float | (m,), b_scale: float | (n,)) -> float32 (m, n): "
           "acc * a_scale[:, None] * b_scale[None, :], float64 then one rounding",
           prepare="refquant.prepare.matmul:prepare_dequantize_int32", out=True),
    OpSpec("llm_int8_matmul", "refquant.matmul:llm_int8_matmul", None, "matmul",
           "llm_int8_matmul(x: float32/float16 (..., in), w: (out, in), threshold=6.0) -> (out float32 (..., out), "
           "outlier_cols int64 (n,)): outlier columns in float, the rest vector-wise int8",
           prepare="refquant.prepare.matmul:prepare_llm_int8_matmul"),
    OpSpec("ternary_matmul", "refquant.matmul:ternary_matmul", None, "matmul",
           "ternary_matmul(a_q: int8 (m, k), t: int8 in {-1, 0, 1} (k, n)) -> int32 (m, n): exact a_q @ t, "
           "adds and subtracts only (BitNet b1.58)",
           prepare="refquant.prepare.matmul:prepare_ternary_matmul"),
    OpSpec("bnb_dequant_matmul_4bit", "refquant.matmul:bnb_dequant_matmul_4bit", ("nf4", "fp4"), "matmul",
           "bnb_dequant_matmul_4bit(x: float32/float16 (..., in), packed, absmax, quant_type, blocksize, shape=(out, in)) "
           "-> float32 (..., out): x @ dequantize_4bit(W).T (W4A16)",
           prepare="refquant.prepare.matmul:prepare_bnb_dequant_matmul_4bit"),
    # --- gguf (issue 5) ---
    OpSpec("gguf_quantize", "refquant.gguf:quantize", GGUF_FORMATS, "gguf",
           "gguf_quantize(x: float32 (..., n_per_row), qtype, imatrix: float32 (n_per_row,) | None = None) "
           "-> uint8 (..., row_bytes): ggml_quantize_chunk's bytes",
           prepare="refquant.prepare.gguf:prepare_gguf_quantize", out=True),
    OpSpec("gguf_dequantize", "refquant.gguf:dequantize", GGUF_FORMATS, "gguf",
           "gguf_dequantize(data: uint8 (..., row_bytes), qtype, shape) -> float32 shape: ggml's to_float",
           prepare="refquant.prepare.gguf:prepare_gguf_dequantize", out=True),
    OpSpec("gguf_dequant_matmul", "refquant.gguf:dequant_matmul", GGUF_FORMATS, "gguf",
           "gguf_dequant_matmul(x: float32/float16 (..., in), data: uint8 (out, row_bytes), qtype, shape=(out, in)) "
           "-> float32 (..., out): x @ dequantize(W).T (W4A16 GEMV/GEMM; emulated reference in float64)",
           prepare="refquant.prepare.gguf:prepare_gguf_dequant_matmul"),
    # --- microscaling (issue 17) ---
    OpSpec("mx_quantize", "refquant.formats.mx:mx_quantize", MX_FORMATS, "microscaling",
           "mx_quantize(x: float32 (..., 32k), fmt) -> (scales uint8 E8M0 (..., k), codes uint8 (..., 32k)): "
           "OCP MX v1.0 6.3, X = 2^(floor(log2 amax) - emax_elem), elements RNE saturating; NaN/inf block -> 0xFF",
           prepare="refquant.prepare.microscaling:prepare_mx_quantize", out=True),
    OpSpec("mx_dequantize", "refquant.formats.mx:mx_dequantize", MX_FORMATS, "microscaling",
           "mx_dequantize(scales: uint8 (..., k), codes: uint8 (..., 32k), fmt) -> float32 (..., 32k): X * P_i, "
           "NaN blocks for scale 0xFF",
           prepare="refquant.prepare.microscaling:prepare_mx_dequantize", out=True),
    OpSpec("nvfp4_quantize", "refquant.formats.nvfp4:nvfp4_quantize", None, "microscaling",
           "nvfp4_quantize(x: float32 (..., 16k), *, global_amax=None) -> (packed uint8 (..., 8k), block_scales "
           "uint8 e4m3 (..., k), global_scale float32): NVIDIA Model Optimizer's two-level NVFP4",
           prepare="refquant.prepare.microscaling:prepare_nvfp4_quantize", out=True),
    OpSpec("nvfp4_dequantize", "refquant.formats.nvfp4:nvfp4_dequantize", None, "microscaling",
           "nvfp4_dequantize(packed: uint8 (..., 8k), block_scales: uint8 (..., k), global_scale) -> float32 (..., 16k)",
           prepare="refquant.prepare.microscaling:prepare_nvfp4_dequantize", out=True),
    # --- layouts (issue 7) ---
    OpSpec("gptq_pack", "refquant.layouts.gptq:gptq_pack",
           ("v1_2bit", "v1_3bit", "v1_4bit", "v1_8bit", "v2_2bit", "v2_3bit", "v2_4bit", "v2_8bit"), "layouts",
           "gptq_pack(codes: uint (out, in), zeros: int (out, G), scales: float32 (out, G), g_idx: int (in,), bits, "
           "version=1) -> (qweight int32 (in*bits/32, out), qzeros int32 (G, out*bits/32), scales float16 (G, out), "
           "g_idx int32 (in,)); format = v{version}_{bits}bit",
           prepare="refquant.prepare.layouts:prepare_gptq_pack", out=True),
    OpSpec("gptq_unpack", "refquant.layouts.gptq:gptq_unpack",
           ("v1_2bit", "v1_3bit", "v1_4bit", "v1_8bit", "v2_2bit", "v2_3bit", "v2_4bit", "v2_8bit"), "layouts",
           "gptq_unpack(qweight, qzeros, scales, g_idx, bits, version=1) -> (codes uint8 (out, in), zeros uint8 (out, G))",
           prepare="refquant.prepare.layouts:prepare_gptq_unpack", out=True),
    OpSpec("gptq_dequantize", "refquant.layouts.gptq:gptq_dequantize",
           ("v1_2bit", "v1_3bit", "v1_4bit", "v1_8bit", "v2_2bit", "v2_3bit", "v2_4bit", "v2_8bit"), "layouts",
           "gptq_dequantize(qweight, qzeros, scales, g_idx, bits, version=1) -> float32 (out, in): "
           "scales[g_idx[c], o] * (q - zero), exact in float32",
           prepare="refquant.prepare.layouts:prepare_gptq_dequantize", out=True),
    OpSpec("awq_pack", "refquant.layouts.awq:awq_pack", None, "layouts",
           "awq_pack(codes: uint (out, in), zeros: int (out, G), scales: float32 (out, G)) -> (qweight int32 (in, out/8), "
           "qzeros int32 (G, out/8), scales float16 (G, out)); AutoAWQ GEMM, nibble order 0,2,4,6,1,3,5,7",
           prepare="refquant.prepare.layouts:prepare_awq_pack", out=True),
    OpSpec("awq_unpack", "refquant.layouts.awq:awq_unpack", None, "layouts",
           "awq_unpack(qweight int32 (in, out/8), qzeros int32 (G, out/8)) -> (codes uint8 (out, in), zeros uint8 (out, G))",
           prepare="refquant.prepare.layouts:prepare_awq_unpack", out=True),
    OpSpec("awq_dequantize", "refquant.layouts.awq:awq_dequantize", None, "layouts",
           "awq_dequantize(qweight, qzeros, scales float16 (G, out), group_size) -> float32 (out, in), exact in float32",
           prepare="refquant.prepare.layouts:prepare_awq_dequantize", out=True),
    # --- algorithms (issue 7) ---
    OpSpec("rtn_quantize", "refquant.algorithms.ops:rtn_quantize", ("3bit_g128", "4bit_g128", "4bit_perchannel"),
           "algorithms",
           "rtn_quantize(W: float32 (out, in), bits, group_size, sym=True) -> float32 (out, in): GPTQ's min-max "
           "grid per row-group, round to nearest; format = {bits}bit_g{group_size} | {bits}bit_perchannel",
           prepare="refquant.prepare.algorithms:prepare_rtn_quantize"),
    OpSpec("gptq_quantize", "refquant.algorithms.ops:gptq_quantize", ("3bit_g128", "4bit_g128", "4bit_perchannel"),
           "algorithms",
           "gptq_quantize(W: float32 (out, in), H: float32 (in, in), bits, group_size, act_order=False, sym=True) "
           "-> float32 (out, in): GPTQ fasterquant (damp 0.01, dead columns zeroed), dequantized",
           prepare="refquant.prepare.algorithms:prepare_gptq_quantize"),
    OpSpec("awq_quantize", "refquant.algorithms.ops:awq_quantize", ("3bit_g128", "4bit_g128", "4bit_perchannel"),
           "algorithms",
           "awq_quantize(W: float32 (out, in), X: float32 (tokens, in), bits, group_size) -> float32 (out, in): "
           "AWQ scale search (20 ratios, zero-point groups, no clip search), effective weight Q(W s) / s",
           prepare="refquant.prepare.algorithms:prepare_awq_quantize"),
]

OP_SPECS: dict[str, OpSpec] = {row.name: row for row in _ROWS}
if len(OP_SPECS) != len(_ROWS):  # pragma: no cover - guards edits of the table
    raise RuntimeError("accel.ops: duplicate op name in _ROWS")
