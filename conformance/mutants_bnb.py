"""Broken backends for the bitsandbytes family and integer matmul (issue 4).

Each mutant is the reference backend with one op replaced by a plausible wrong
implementation, most of them what a port to another device would naturally write:

====================================  =======================================================
mutant                                bug
====================================  =======================================================
bnb_nibble_order_swapped              4-bit codes packed low nibble first (the usual
                                      ``q[2i] | q[2i+1] << 4``; bitsandbytes is high first)
bnb_absmax_over_padding               the partial last block's absmax read over a full block
                                      of stale memory (bitsandbytes#1884)
bnb_partial_block_as_zero_padded      the partial block quantized as if zero-padded to a
                                      full block with the full-block rule, and the odd pad
                                      nibble written as code 0
bnb_fp4_sign_bit_zero                 FP4 +-0 chosen by the sign bit (CUDA's rule) instead
                                      of the CPU quantizer's bucketize order
bnb_blockwise_nearest_code            8-bit codes by nearest-code search (the CUDA/torch
                                      path) instead of the CPU library's 65536-entry LUT
int8_matmul_float32_accumulate        int8 GEMM accumulated in float32 (bitsandbytes' CPU
                                      fallback ``A.float() @ B.float().t()``)
llm_int8_no_decomposition             LLM.int8() without the outlier columns in float
====================================  =======================================================
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from conformance.mutants import MutantBackend, _ref

__all__ = ["MUTANTS"]

F32 = np.float32


def bnb_nibble_order_swapped() -> MutantBackend:
    quantize = _ref("bnb_quantize_4bit")

    def bnb_quantize_4bit(x: Any, quant_type: str, blocksize: int) -> tuple[np.ndarray, np.ndarray]:
        packed, absmax = quantize(x, quant_type, blocksize)
        return ((packed >> 4) | (packed << 4)).astype(np.uint8), absmax

    return MutantBackend("bnb_nibble_order_swapped", {"bnb_quantize_4bit": bnb_quantize_4bit})


def bnb_absmax_over_padding() -> MutantBackend:
    """The kernel reads a whole block for the last one; past the end lies the start of
    the buffer (stale data), which enters the partial block's absmax."""
    from refquant.dtypes.codebooks import get_codebook
    from refquant.packing import pack, unpack

    quantize = _ref("bnb_quantize_4bit")

    def bnb_quantize_4bit(x: Any, quant_type: str, blocksize: int) -> tuple[np.ndarray, np.ndarray]:
        packed, absmax = quantize(x, quant_type, blocksize)
        flat = np.asarray(x, dtype=F32).reshape(-1)
        tail = flat.size % blocksize
        if not tail:
            return packed, absmax
        stale = np.resize(flat, blocksize)[tail:]
        absmax = absmax.copy()
        absmax[-1] = max(absmax[-1], np.abs(stale).max())
        codes = unpack(packed, 4, 2 * packed.size, "high_first")
        codes[flat.size - tail: flat.size] = get_codebook(quant_type).encode(
            np.clip(flat[-tail:] / absmax[-1], F32(-1), F32(1)))
        return pack(codes, 4, "high_first"), absmax

    return MutantBackend("bnb_absmax_over_padding", {"bnb_quantize_4bit": bnb_quantize_4bit})


def bnb_partial_block_as_zero_padded() -> MutantBackend:
    """Zero-pad to whole blocks and treat every block alike (reciprocal, no 1e-38 clamp
    store), then cut; the pad nibble of an odd length becomes code 0."""
    quantize = _ref("bnb_quantize_4bit")

    def bnb_quantize_4bit(x: Any, quant_type: str, blocksize: int) -> tuple[np.ndarray, np.ndarray]:
        flat = np.asarray(x, dtype=F32).reshape(-1)
        n = flat.size
        padded = np.zeros(-(-n // blocksize) * blocksize, F32)
        padded[:n] = flat
        packed, absmax = quantize(padded, quant_type, blocksize)
        packed = packed[: -(-n // 2)].copy()
        if n % 2:
            packed[-1] &= 0xF0
        return packed, absmax

    return MutantBackend("bnb_partial_block_as_zero_padded", {"bnb_quantize_4bit": bnb_quantize_4bit})


def bnb_fp4_sign_bit_zero() -> MutantBackend:
    """FP4 magnitude 0 with the sign of x (CUDA ``dQuantizeFP4``): tiny positives get
    code 0 and tiny negatives code 8, the reverse of the CPU quantizer."""
    quantize = _ref("bnb_quantize_4bit")

    def bnb_quantize_4bit(x: Any, quant_type: str, blocksize: int) -> tuple[np.ndarray, np.ndarray]:
        packed, absmax = quantize(x, quant_type, blocksize)
        if quant_type != "fp4":
            return packed, absmax
        flat = np.asarray(x, dtype=F32).reshape(-1)
        codes = np.stack([packed >> 4, packed & 0xF], axis=1).reshape(-1)
        zero_mag = (codes & 0x7) == 0
        negative = np.zeros(codes.size, bool)
        negative[: flat.size] = flat < 0
        codes = np.where(zero_mag, np.where(negative, 8, 0), codes).astype(np.uint8)
        return ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8), absmax

    return MutantBackend("bnb_fp4_sign_bit_zero", {"bnb_quantize_4bit": bnb_quantize_4bit})


def bnb_blockwise_nearest_code() -> MutantBackend:
    """8-bit codes as the nearest dynamic-map value of x / absmax (ties to the lower code)."""
    from refquant.formats.bnb import dynamic_map

    def bnb_quantize_blockwise(x: Any, blocksize: int) -> tuple[np.ndarray, np.ndarray]:
        flat = np.asarray(x, dtype=F32).reshape(-1)
        n_blocks = -(-flat.size // blocksize)
        padded = np.zeros(n_blocks * blocksize, F32)
        padded[: flat.size] = flat
        blocks = padded.reshape(n_blocks, blocksize)
        absmax = np.abs(blocks).max(axis=1)
        scaled = np.clip(blocks / np.where(absmax == 0, F32(1), absmax)[:, None], F32(-1), F32(1))
        code = dynamic_map()
        codes = np.searchsorted((code[:-1] + code[1:]) / F32(2), scaled.reshape(-1), side="left").astype(np.uint8)
        return codes[: flat.size], absmax.astype(F32)

    return MutantBackend("bnb_blockwise_nearest_code", {"bnb_quantize_blockwise": bnb_quantize_blockwise})


def int8_matmul_float32_accumulate() -> MutantBackend:
    def int8_matmul(a_q: Any, b_q: Any) -> np.ndarray:
        return np.matmul(np.asarray(a_q, F32), np.asarray(b_q, F32)).astype(np.int32)

    return MutantBackend("int8_matmul_float32_accumulate", {"int8_matmul": int8_matmul})


def llm_int8_no_decomposition() -> MutantBackend:
    llm_int8 = _ref("llm_int8_matmul")

    def llm_int8_matmul(x: Any, w: Any, threshold: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
        out, _ = llm_int8(x, w, 0.0)
        _, cols = llm_int8(x, w, threshold)
        return out, cols

    return MutantBackend("llm_int8_no_decomposition", {"llm_int8_matmul": llm_int8_matmul})


MUTANTS: dict[str, Callable[[], MutantBackend]] = {
    "bnb_nibble_order_swapped": bnb_nibble_order_swapped,
    "bnb_absmax_over_padding": bnb_absmax_over_padding,
    "bnb_partial_block_as_zero_padded": bnb_partial_block_as_zero_padded,
    "bnb_fp4_sign_bit_zero": bnb_fp4_sign_bit_zero,
    "bnb_blockwise_nearest_code": bnb_blockwise_nearest_code,
    "int8_matmul_float32_accumulate": int8_matmul_float32_accumulate,
    "llm_int8_no_decomposition": llm_int8_no_decomposition,
}
