"""Broken backends for the ggml block formats (issue 5).

Each mutant is the reference backend with one GGUF op replaced by a plausible wrong
implementation, the kind a port of ggml's quantizers naturally produces:

================================  ===========================================================
mutant                            bug
================================  ===========================================================
gguf_q4_0_nibbles_interleaved     Q4_0 codes packed pairwise (element 2j low, 2j+1 high)
                                  instead of ggml's halves (element j low, j + 16 high)
gguf_q4_0_codes_from_fp16_scale   Q4_0 codes computed with 1/fp16(d) instead of the unrounded
                                  float32 d (only the K-quants/IQ4 requantize with fp16 scales)
gguf_iq4_nl_ref_search            IQ4_NL through ``quantize_row_iq4_nl_ref`` (ntry = -1, no
                                  scale search) instead of ``ggml_quantize_chunk`` (ntry = 7)
gguf_imatrix_ignored              the importance matrix dropped for every type
gguf_q5_0_qh_big_endian           Q5_0's 32-bit ``qh`` word read big-endian on dequantize
================================  ===========================================================
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from conformance.mutants import MutantBackend, _ref

__all__ = ["MUTANTS"]

F32 = np.float32


def _blocks(data: np.ndarray, qtype: str) -> np.ndarray:
    from refquant.gguf import get_format

    return np.ascontiguousarray(data).reshape(-1).view(get_format(qtype).dtype).copy()


def gguf_q4_0_nibbles_interleaved() -> MutantBackend:
    from refquant.formats._ggml_math import unpack_nibbles_halves

    quantize = _ref("gguf_quantize")

    def gguf_quantize(x: Any, qtype: str, imatrix: Any = None) -> np.ndarray:
        data = quantize(x, qtype, imatrix)
        if qtype != "q4_0":
            return data
        blocks = _blocks(data, qtype)
        codes = unpack_nibbles_halves(blocks["qs"])
        blocks["qs"] = codes[:, 0::2] | (codes[:, 1::2] << np.uint8(4))
        return blocks.view(np.uint8).reshape(data.shape)

    return MutantBackend("gguf_q4_0_nibbles_interleaved", {"gguf_quantize": gguf_quantize})


def gguf_q4_0_codes_from_fp16_scale() -> MutantBackend:
    from refquant.formats._ggml_math import c_int, fp32_to_fp16, pack_nibbles_halves, safe_reciprocal, signed_absmax

    quantize = _ref("gguf_quantize")

    def gguf_quantize(x: Any, qtype: str, imatrix: Any = None) -> np.ndarray:
        data = quantize(x, qtype, imatrix)
        if qtype != "q4_0" or imatrix is not None:
            return data
        xb = np.asarray(x, dtype=F32).reshape(-1, 32)
        mx, _ = signed_absmax(xb)
        d16 = fp32_to_fp16(mx / F32(-8))
        q = c_int(xb * safe_reciprocal(d16.astype(F32))[:, None] + F32(8.5)).astype(np.int8)
        blocks = _blocks(data, qtype)
        blocks["qs"] = pack_nibbles_halves(np.minimum(q.astype(np.int32), 15))
        return blocks.view(np.uint8).reshape(data.shape)

    return MutantBackend("gguf_q4_0_codes_from_fp16_scale", {"gguf_quantize": gguf_quantize})


def gguf_iq4_nl_ref_search() -> MutantBackend:
    from refquant.formats._ggml_math import fp32_to_fp16, pack_nibbles_halves, safe_divide, seq_sum, signed_absmax
    from refquant.formats.gguf_iquants import _KV, best_index_iq4nl

    quantize = _ref("gguf_quantize")

    def gguf_quantize(x: Any, qtype: str, imatrix: Any = None) -> np.ndarray:
        data = quantize(x, qtype, imatrix)
        if qtype != "iq4_nl" or imatrix is not None:
            return data
        xb = np.asarray(x, dtype=F32).reshape(-1, 32)
        mx, amax = signed_absmax(xb)
        live = amax >= F32(1e-15)
        with np.errstate(all="ignore"):
            codes = best_index_iq4nl(xb * (F32(1) / (np.where(live, mx, F32(1)) / F32(-127)))[:, None])
            q = _KV[codes]
            wq = xb * xb * q
            d = np.where(live, safe_divide(seq_sum(wq * xb), seq_sum(wq * q)), F32(0))
        blocks = _blocks(data, qtype)
        blocks["d"] = fp32_to_fp16(d)
        blocks["qs"] = pack_nibbles_halves(np.where(live[:, None], codes, 8))
        return blocks.view(np.uint8).reshape(data.shape)

    return MutantBackend("gguf_iq4_nl_ref_search", {"gguf_quantize": gguf_quantize})


def gguf_imatrix_ignored() -> MutantBackend:
    quantize = _ref("gguf_quantize")

    def gguf_quantize(x: Any, qtype: str, imatrix: Any = None) -> np.ndarray:
        return quantize(x, qtype, None)

    return MutantBackend("gguf_imatrix_ignored", {"gguf_quantize": gguf_quantize})


def gguf_q5_0_qh_big_endian() -> MutantBackend:
    dequantize = _ref("gguf_dequantize")

    def gguf_dequantize(data: Any, qtype: str, shape: Any) -> np.ndarray:
        if qtype != "q5_0":
            return dequantize(data, qtype, shape)
        blocks = _blocks(np.asarray(data), qtype)
        blocks["qh"] = blocks["qh"][:, ::-1]
        return dequantize(blocks.view(np.uint8), qtype, shape)

    return MutantBackend("gguf_q5_0_qh_big_endian", {"gguf_dequantize": gguf_dequantize})


MUTANTS: dict[str, Callable[[], MutantBackend]] = {
    "gguf_q4_0_nibbles_interleaved": gguf_q4_0_nibbles_interleaved,
    "gguf_q4_0_codes_from_fp16_scale": gguf_q4_0_codes_from_fp16_scale,
    "gguf_iq4_nl_ref_search": gguf_iq4_nl_ref_search,
    "gguf_imatrix_ignored": gguf_imatrix_ignored,
    "gguf_q5_0_qh_big_endian": gguf_q5_0_qh_big_endian,
}
