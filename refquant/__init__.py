"""refquant: the reference implementation of LLM quantization.

Every number format, mapping, calibration rule and algorithm, written once in plain
NumPy/SciPy with its source cited. This module only re-exports the public API (the contract
is in the README); names are resolved lazily so ``import refquant`` stays
cheap and a submodule's optional dependency is needed only when it is used.

Public functions::

    encode_float, decode_float                  # refquant.dtypes.floatspec
    choose_qparams, quantize, dequantize, fake_quantize, QuantParams   # refquant.mapping
    int8_matmul, llm_int8_matmul, int8_linear, dequantize_int32   # refquant.matmul
    QuantizedTensor, load_quantized             # refquant.quantized_tensor: the container of every family

Public submodules: ``gguf``, ``bnb``, ``algorithms``, ``calibration``, ``model``,
``metrics``, ``packing``, ``rounding``, ``dtypes``, ``layouts``, ``ptq``.
"""

from __future__ import annotations

from refquant._lazy import lazy_getattr

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # element types
    "encode_float": "refquant.dtypes.floatspec",
    "decode_float": "refquant.dtypes.floatspec",
    "FloatSpec": "refquant.dtypes.floatspec",
    "IntSpec": "refquant.dtypes.intspec",
    "Codebook": "refquant.dtypes.codebooks",
    # rounding
    "round_half_even": "refquant.rounding",
    "round_half_away": "refquant.rounding",
    "round_stochastic": "refquant.rounding",
    # affine mapping
    "QuantParams": "refquant.mapping",
    "choose_qparams": "refquant.mapping",
    "quantize": "refquant.mapping",
    "dequantize": "refquant.mapping",
    "fake_quantize": "refquant.mapping",
    "PerTensor": "refquant.granularity",
    "PerChannel": "refquant.granularity",
    "PerGroup": "refquant.granularity",
    "PerToken": "refquant.granularity",
    "PerBlock": "refquant.granularity",
    # integer matmul
    "int8_matmul": "refquant.matmul",
    "llm_int8_matmul": "refquant.matmul",
    "int8_linear": "refquant.matmul",
    "dequantize_int32": "refquant.matmul",
    # one container for quantized tensors of every family
    "QuantizedTensor": "refquant.quantized_tensor",
    "load_quantized": "refquant.quantized_tensor",
    # errors
    "RefquantError": "refquant.errors",
    "UnsupportedError": "refquant.errors",
    "ValidationError": "refquant.errors",
    "GGUFError": "refquant.errors",
}

_SUBMODULES = (
    "gguf", "bnb", "algorithms", "calibration", "model", "metrics", "packing",
    "rounding", "dtypes", "layouts", "ptq", "testing", "mapping", "granularity",
    "matmul", "formats", "io", "errors", "checkpoint",
)

__all__ = sorted(_EXPORTS) + list(_SUBMODULES) + ["__version__"]


__getattr__ = lazy_getattr(globals(), _EXPORTS, _SUBMODULES)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
