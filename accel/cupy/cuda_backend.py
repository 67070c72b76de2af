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

from accel.cupy import affine, algorithms, bnb, codebooks, floats, gguf, layouts, matmul, microscaling, packing
from accel.cupy.device import CupyDevice, SimDevice
from accel.ops import OP_SPECS
from accel.protocol import OpCapability
from refquant.errors import UnsupportedError
from refquant.formats.bnb import BLOCKSIZES_4BIT, BLOCKSIZES_8BIT

__all__ = ["CudaKernelsBackend", "cupy_backend", "sim_backend"]



def _cap(op: str, formats: Any = "all", bit_exact: bool = True, **kwargs: Any) -> OpCapability:
    """A capability; ``formats="all"``: every format of the op's axis in OP_SPECS."""
    if formats == "all":
        formats = None if OP_SPECS[op].formats is None else frozenset(OP_SPECS[op].formats)
    return OpCapability(formats, bit_exact=bit_exact, **kwargs)


_NDIM = {"max_ndim": affine.NDIM}
_BS4, _BS8 = {"blocksizes": BLOCKSIZES_4BIT}, {"blocksizes": BLOCKSIZES_8BIT}

# op -> (launch function taking the device first, capability)
_OPS: dict[str, tuple[Callable[..., Any], OpCapability]] = {
    "encode_float": (floats.encode_float, _cap("encode_float")),
    "decode_float": (floats.decode_float, _cap("decode_float")),
    "choose_qparams": (affine.choose_qparams, _cap("choose_qparams", constraints=_NDIM)),
    "quantize_affine": (affine.quantize_affine, _cap("quantize_affine", constraints=_NDIM)),
    "dequantize_affine": (affine.dequantize_affine, _cap("dequantize_affine", constraints=_NDIM)),
    "codebook_encode": (codebooks.codebook_encode, _cap("codebook_encode")),
    "codebook_decode": (codebooks.codebook_decode, _cap("codebook_decode")),
    "pack": (packing.pack, _cap("pack")),
    "unpack": (packing.unpack, _cap("unpack")),
    "pack_ternary": (packing.pack_ternary, _cap("pack_ternary")),
    "unpack_ternary": (packing.unpack_ternary, _cap("unpack_ternary")),
    "bnb_quantize_4bit": (bnb.bnb_quantize_4bit, _cap("bnb_quantize_4bit", constraints=_BS4)),
    "bnb_dequantize_4bit": (bnb.bnb_dequantize_4bit, _cap("bnb_dequantize_4bit", constraints=_BS4)),
    "bnb_quantize_blockwise": (bnb.bnb_quantize_blockwise, _cap("bnb_quantize_blockwise", constraints=_BS8)),
    "bnb_dequantize_blockwise": (bnb.bnb_dequantize_blockwise, _cap("bnb_dequantize_blockwise", constraints=_BS8)),
    "bnb_double_quantize": (bnb.bnb_double_quantize,
                            _cap("bnb_double_quantize", notes="offset in torch's one-thread sum order "
                                 "(a one-thread kernel)")),
    "int8_vectorwise_quant": (bnb.int8_vectorwise_quant, _cap("int8_vectorwise_quant")),
    "int8_vectorwise_dequant": (bnb.int8_vectorwise_dequant, _cap("int8_vectorwise_dequant")),
    "int8_matmul": (matmul.int8_matmul, _cap("int8_matmul", notes="dp4a, int32 partial sums")),
    "int8_matmul_zp": (matmul.int8_matmul_zp, _cap("int8_matmul_zp")),
    "dequantize_int32": (matmul.dequantize_int32, _cap("dequantize_int32")),
    "ternary_matmul": (matmul.ternary_matmul, _cap("ternary_matmul", notes="adds/subtracts only")),
    "llm_int8_matmul": (matmul.llm_int8_matmul,
                        _cap("llm_int8_matmul", bit_exact=False, notes="float64 dequantization and outlier columns")),
    "bnb_dequant_matmul_4bit": (matmul.bnb_dequant_matmul_4bit,
                                _cap("bnb_dequant_matmul_4bit", bit_exact=False, constraints=_BS4,
                                     notes="fused; float32 block-reduced sums")),
    "gguf_quantize": (gguf.gguf_quantize, _cap("gguf_quantize", gguf.QUANTIZE_QTYPES)),
    "gguf_dequantize": (gguf.gguf_dequantize, _cap("gguf_dequantize", gguf.DEQUANT_QTYPES)),
    "gguf_dequant_matmul": (gguf.gguf_dequant_matmul,
                            _cap("gguf_dequant_matmul", gguf.MATMUL_QTYPES, bit_exact=False,
                                 notes="fused block decode + float32 GEMV/GEMM (Nmse); non-finite outputs "
                                       "recomputed in float64 on the device")),
    "mx_quantize": (microscaling.mx_quantize, _cap("mx_quantize")),
    "mx_dequantize": (microscaling.mx_dequantize, _cap("mx_dequantize")),
    "nvfp4_quantize": (microscaling.nvfp4_quantize, _cap("nvfp4_quantize", notes="global max |x| by a device "
                                                         "reduction (atomicMax on the magnitudes' bits)")),
    "nvfp4_dequantize": (microscaling.nvfp4_dequantize, _cap("nvfp4_dequantize")),
    "gptq_pack": (layouts.gptq_pack, _cap("gptq_pack")),
    "gptq_unpack": (layouts.gptq_unpack, _cap("gptq_unpack")),
    "gptq_dequantize": (layouts.gptq_dequantize, _cap("gptq_dequantize")),
    "awq_pack": (layouts.awq_pack, _cap("awq_pack")),
    "awq_unpack": (layouts.awq_unpack, _cap("awq_unpack")),
    "awq_dequantize": (layouts.awq_dequantize, _cap("awq_dequantize")),
    "rtn_quantize": (algorithms.rtn_quantize, _cap("rtn_quantize", notes="one thread per row-group")),
    "gptq_quantize": (algorithms.gptq_quantize,
                      _cap("gptq_quantize", bit_exact=False,
                           notes="U = chol(H^-1) on the host (the reference's LAPACK, float32); per block of 128 "
                                 "columns a row-per-thread sweep, then a tiled shared-memory trailing GEMM")),
    "awq_quantize": (algorithms.awq_quantize,
                     _cap("awq_quantize", bit_exact=False,
                          notes="20 ratios; float64 quantize-dequantize and Gram-matrix loss on the device")),
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
