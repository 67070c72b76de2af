"""CudaKernelsBackend: refquant's ops as the CUDA C++ kernels of ``accel/cupy/src``.

One class, two devices: ``cupy`` runs the kernels on a CUDA GPU (CuPy RawModule),
``cuda-sim`` runs the same kernels, with the same launch code, on the CPU through the
cuda-sim SIMT runtime. Both declare the same capabilities (:data:`_OPS`): exactly the
ops and formats whose kernels exist and pass the conformance suite on cuda-sim; an op
not declared raises UnsupportedError and never falls back to the reference.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from accel.cupy import affine, bnb, codebooks, floats, gguf, layouts, matmul, packing
from accel.cupy.device import CupyDevice, SimDevice
from accel.ops import FLOAT_FORMATS, GRANULARITIES, OP_SPECS
from accel.protocol import OpCapability
from refquant.errors import UnsupportedError
from refquant.formats.bnb import BLOCKSIZES_4BIT, BLOCKSIZES_8BIT
from refquant.packing import LAYOUTS

__all__ = ["CudaKernelsBackend", "cupy_backend", "sim_backend"]

# op -> (launch function taking the device first, capability)
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
    "bnb_double_quantize": (bnb.bnb_double_quantize,
                            OpCapability(None, bit_exact=True, notes="offset in torch's one-thread sum order "
                                         "(a one-thread kernel)")),
    "int8_vectorwise_quant": (bnb.int8_vectorwise_quant, OpCapability(None, bit_exact=True)),
    "int8_vectorwise_dequant": (bnb.int8_vectorwise_dequant, OpCapability(None, bit_exact=True)),
    "int8_matmul": (matmul.int8_matmul, OpCapability(None, bit_exact=True, notes="dp4a, int32 partial sums")),
    "int8_matmul_zp": (matmul.int8_matmul_zp, OpCapability(None, bit_exact=True)),
    "dequantize_int32": (matmul.dequantize_int32, OpCapability(None, bit_exact=True)),
    "llm_int8_matmul": (matmul.llm_int8_matmul, OpCapability(None, bit_exact=False,
                                                             notes="float64 dequantization and outlier columns")),
    "bnb_dequant_matmul_4bit": (matmul.bnb_dequant_matmul_4bit,
                                OpCapability(frozenset(("nf4", "fp4")), bit_exact=False,
                                             constraints={"blocksizes": BLOCKSIZES_4BIT},
                                             notes="fused; float32 block-reduced sums")),
    "gguf_quantize": (gguf.gguf_quantize, OpCapability(gguf.QUANTIZE_QTYPES, bit_exact=True,
                                                       notes="types without an imatrix rule or search only")),
    "gguf_dequantize": (gguf.gguf_dequantize, OpCapability(gguf.DEQUANT_QTYPES, bit_exact=True)),
    "gguf_dequant_matmul": (gguf.gguf_dequant_matmul,
                            OpCapability(gguf.MATMUL_QTYPES, bit_exact=False,
                                         notes="fused block decode + float32 GEMV/GEMM (Nmse)")),
    "gptq_pack": (layouts.gptq_pack, OpCapability(frozenset(OP_SPECS["gptq_pack"].formats), bit_exact=True)),
    "gptq_unpack": (layouts.gptq_unpack, OpCapability(frozenset(OP_SPECS["gptq_unpack"].formats), bit_exact=True)),
    "gptq_dequantize": (layouts.gptq_dequantize,
                        OpCapability(frozenset(OP_SPECS["gptq_dequantize"].formats), bit_exact=True)),
    "awq_pack": (layouts.awq_pack, OpCapability(None, bit_exact=True)),
    "awq_unpack": (layouts.awq_unpack, OpCapability(None, bit_exact=True)),
    "awq_dequantize": (layouts.awq_dequantize, OpCapability(None, bit_exact=True)),
}


class CudaKernelsBackend:
    """The kernels of ``accel/cupy/src`` on one device (:class:`CupyDevice` or :class:`SimDevice`)."""

    def __init__(self, name: str, dev: Any) -> None:
        unknown = set(_OPS) - set(OP_SPECS)
        if unknown:  # an op the contract does not define cannot be checked
            raise RuntimeError(f"{name} backend implements ops missing from OP_SPECS: {sorted(unknown)}")
        self.name = name
        self.device = "cuda" if dev.kind == "cupy" else "cpu"
        self.dev = dev

    def capabilities(self) -> dict[str, OpCapability]:
        return {op: cap for op, (_, cap) in _OPS.items()}

    def asarray(self, x: Any) -> Any:
        return self.dev.asarray(x)

    def to_numpy(self, x: Any) -> Any:
        if isinstance(x, (tuple, list)):
            return type(x)(self.to_numpy(v) for v in x)
        return self.dev.to_numpy(x)

    def __getattr__(self, op: str) -> Callable[..., Any]:
        if op.startswith("__") or op in ("dev", "name", "device"):
            raise AttributeError(op)
        if op not in _OPS:
            if op in OP_SPECS:
                def unsupported(*args: Any, **kwargs: Any) -> Any:
                    raise UnsupportedError(f"the {self.name} backend does not implement {op!r}")
                return unsupported
            raise AttributeError(f"{self.name} backend has no op {op!r}")
        return partial(_OPS[op][0], self.dev)

    def __repr__(self) -> str:
        return f"<refquant {self.name} backend>"


def cupy_backend() -> CudaKernelsBackend:
    """The kernels on a CUDA GPU (raises, saying why, without CuPy or a device)."""
    return CudaKernelsBackend("cupy", CupyDevice())


def sim_backend() -> CudaKernelsBackend:
    """The kernels on the CPU through the cuda-sim runtime (needs g++)."""
    return CudaKernelsBackend("cuda-sim", SimDevice())
