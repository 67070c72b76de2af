"""NumbaBackend: refquant's ops as Numba CPU kernels.

Capabilities are declared honestly in ``_OPS`` (op -> formats, whether bit-exact); an
op or format not declared there raises UnsupportedError and never falls back to the
reference. The op functions are kernels only: they run on arguments prepared by the
reference (``OpSpec.prepare``, run by :mod:`accel.dispatch` for every call), so they
hold no argument checks; ``accel.get_backend("numba")`` returns them behind that dispatcher.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from accel.numba import affine, bnb, codebooks, floats, groupwise, layouts, matmul, microscaling, packing, ternary
from accel.numba import awq as awq_ops
from accel.numba import gptq as gptq_ops
from accel.numba import gguf as gguf_ops
from accel.numba._threads import configure_threads
from accel.ops import FLOAT_FORMATS, GRANULARITIES, MX_FORMATS, OP_SPECS
from refquant.formats.bnb import BLOCKSIZES_4BIT, BLOCKSIZES_8BIT
from refquant.packing import LAYOUTS
from accel.protocol import OpCapability
from refquant.errors import UnsupportedError

# op -> (implementation, capability)
_OPS: dict[str, tuple[Callable[..., Any], OpCapability]] = {
    "encode_float": (floats.encode_float, OpCapability(frozenset(FLOAT_FORMATS), bit_exact=True)),
    "decode_float": (floats.decode_float, OpCapability(frozenset(FLOAT_FORMATS), bit_exact=True)),
    "choose_qparams": (affine.choose_qparams,
                       OpCapability(frozenset(GRANULARITIES), bit_exact=True, constraints={"max_ndim": affine.NDIM})),
    "quantize_affine": (affine.quantize_affine,
                        OpCapability(frozenset(GRANULARITIES), bit_exact=True, constraints={"max_ndim": affine.NDIM})),
    "dequantize_affine": (affine.dequantize_affine,
                          OpCapability(frozenset(GRANULARITIES), bit_exact=True, constraints={"max_ndim": affine.NDIM})),
    "codebook_encode": (codebooks.codebook_encode,
                        OpCapability(frozenset(OP_SPECS["codebook_encode"].formats), bit_exact=True)),
    "codebook_decode": (codebooks.codebook_decode,
                        OpCapability(frozenset(OP_SPECS["codebook_decode"].formats), bit_exact=True)),
    "pack": (packing.pack, OpCapability(frozenset(LAYOUTS), bit_exact=True)),
    "unpack": (packing.unpack, OpCapability(frozenset(LAYOUTS), bit_exact=True)),
    "pack_ternary": (packing.pack_ternary, OpCapability(None, bit_exact=True)),
    "unpack_ternary": (packing.unpack_ternary, OpCapability(None, bit_exact=True)),
    "bnb_quantize_4bit": (bnb.bnb_quantize_4bit, OpCapability(frozenset(("nf4", "fp4")), bit_exact=True,
                                                              constraints={"blocksizes": BLOCKSIZES_4BIT})),
    "bnb_dequantize_4bit": (bnb.bnb_dequantize_4bit, OpCapability(frozenset(("nf4", "fp4")), bit_exact=True,
                                                                  constraints={"blocksizes": BLOCKSIZES_4BIT})),
    "bnb_quantize_blockwise": (bnb.bnb_quantize_blockwise,
                               OpCapability(frozenset(("dynamic8",)), bit_exact=True,
                                            constraints={"blocksizes": BLOCKSIZES_8BIT})),
    "bnb_dequantize_blockwise": (bnb.bnb_dequantize_blockwise,
                                 OpCapability(frozenset(("dynamic8",)), bit_exact=True,
                                              constraints={"blocksizes": BLOCKSIZES_8BIT})),
    "bnb_double_quantize": (bnb.bnb_double_quantize, OpCapability(None, bit_exact=True,
                                                                  notes="offset in torch's one-thread sum order")),
    "int8_vectorwise_quant": (bnb.int8_vectorwise_quant, OpCapability(None, bit_exact=True)),
    "int8_vectorwise_dequant": (bnb.int8_vectorwise_dequant, OpCapability(None, bit_exact=True)),
    "int8_matmul": (matmul.int8_matmul, OpCapability(None, bit_exact=True, notes="int32 accumulation (int64 "
                                                     "when k * max|a| * max|b| could overflow)")),
    "int8_matmul_zp": (matmul.int8_matmul_zp, OpCapability(None, bit_exact=True)),
    "dequantize_int32": (matmul.dequantize_int32, OpCapability(None, bit_exact=True)),
    "llm_int8_matmul": (matmul.llm_int8_matmul, OpCapability(None, bit_exact=False,
                                                             notes="float64 dequantization and outlier columns")),
    "ternary_matmul": (ternary.ternary_matmul, OpCapability(None, bit_exact=True, notes="adds/subtracts only")),
    "bnb_dequant_matmul_4bit": (matmul.bnb_dequant_matmul_4bit,
                                OpCapability(frozenset(("nf4", "fp4")), bit_exact=False,
                                             constraints={"blocksizes": BLOCKSIZES_4BIT},
                                             notes="fused; float32 partial sums in 64 lanes")),
    "gptq_pack": (layouts.gptq_pack, OpCapability(frozenset(OP_SPECS["gptq_pack"].formats), bit_exact=True)),
    "gptq_unpack": (layouts.gptq_unpack, OpCapability(frozenset(OP_SPECS["gptq_unpack"].formats), bit_exact=True)),
    "gptq_dequantize": (layouts.gptq_dequantize,
                        OpCapability(frozenset(OP_SPECS["gptq_dequantize"].formats), bit_exact=True)),
    "awq_pack": (layouts.awq_pack, OpCapability(None, bit_exact=True)),
    "awq_unpack": (layouts.awq_unpack, OpCapability(None, bit_exact=True)),
    "awq_dequantize": (layouts.awq_dequantize, OpCapability(None, bit_exact=True)),
    # --- algorithms (issue 14: accel/numba/groupwise.py, gptq.py, awq.py) ---
    "rtn_quantize": (groupwise.rtn_quantize, OpCapability(frozenset(OP_SPECS["rtn_quantize"].formats), bit_exact=True)),
    "gptq_quantize": (gptq_ops.gptq_quantize,
                      OpCapability(frozenset(OP_SPECS["gptq_quantize"].formats), bit_exact=False,
                                   notes="float32 column sweep in the reference's order; H^-1 factor and lazy "
                                         "updates by LAPACK/BLAS (NoWorseThanRef)")),
    "awq_quantize": (awq_ops.awq_quantize,
                     OpCapability(frozenset(OP_SPECS["awq_quantize"].formats), bit_exact=False,
                                  notes="the reference's 20-ratio search; loss X^T X form, own summation order "
                                        "(NoWorseThanRef)")),
    # --- gguf (issue 8: accel/numba/gguf*.py) ---
    "gguf_quantize": (gguf_ops.gguf_quantize, OpCapability(gguf_ops.QTYPES, bit_exact=True)),
    "gguf_dequantize": (gguf_ops.gguf_dequantize, OpCapability(gguf_ops.DEQUANTIZE_QTYPES, bit_exact=True)),
    "gguf_dequant_matmul": (gguf_ops.gguf_dequant_matmul,
                            OpCapability(gguf_ops.MATMUL_QTYPES, bit_exact=False,
                                         notes="fused per-type row decode + float32 GEMV/GEMM (Nmse)")),
    # --- microscaling (issue 17: accel/numba/microscaling.py) ---
    "mx_quantize": (microscaling.mx_quantize, OpCapability(frozenset(MX_FORMATS), bit_exact=True)),
    "mx_dequantize": (microscaling.mx_dequantize, OpCapability(frozenset(MX_FORMATS), bit_exact=True)),
    "nvfp4_quantize": (microscaling.nvfp4_quantize, OpCapability(None, bit_exact=True)),
    "nvfp4_dequantize": (microscaling.nvfp4_dequantize, OpCapability(None, bit_exact=True)),
}


# ops whose kernels write the result array allocated by the reference's preparation
_OPS.update({op: (fn, replace(cap, out=True)) for op, (fn, cap) in _OPS.items() if OP_SPECS[op].out})


class NumbaBackend:
    """CPU backend: parallel Numba kernels (threads from ``REFQUANT_NUMBA_THREADS``)."""

    name = "numba"
    device = "cpu"

    def __init__(self) -> None:
        self.threads = configure_threads()
        unknown = set(_OPS) - set(OP_SPECS)
        if unknown:  # an op the contract does not define cannot be checked
            raise RuntimeError(f"numba backend implements ops missing from OP_SPECS: {sorted(unknown)}")

    def capabilities(self) -> dict[str, OpCapability]:
        return {op: cap for op, (_, cap) in _OPS.items()}

    def asarray(self, x: Any) -> Any:
        return np.asarray(x)

    def cache_state(self) -> dict[str, str]:
        """Whether Numba's cache holds the compiled kernels (see ``accel.numba._cache``)."""
        from accel.numba._cache import cache_state

        return cache_state()

    def to_numpy(self, x: Any) -> Any:
        if isinstance(x, (tuple, list)):
            return type(x)(self.to_numpy(v) for v in x)
        return x

    def __getattr__(self, op: str) -> Callable[..., Any]:
        if op.startswith("__"):
            raise AttributeError(op)
        if op not in _OPS:
            if op in OP_SPECS:
                def unsupported(*args: Any, **kwargs: Any) -> Any:
                    raise UnsupportedError(f"the numba backend does not implement {op!r}")
                return unsupported
            raise AttributeError(f"numba backend has no op {op!r}")
        return _OPS[op][0]

    def __repr__(self) -> str:
        return f"<refquant numba backend, {self.threads} threads>"
