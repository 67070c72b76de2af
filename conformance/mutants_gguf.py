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
gguf_kquant_no_search             declared *not* bit-exact (held to NoWorseThanRef): the
                                  min-max K-quants (Q2_K, Q4_K, Q5_K; Q4_1/Q5_1 with an
                                  imatrix) keep the plain min-max start of
                                  ``make_qkx2_quants`` and skip its scale/min search
================================  ===========================================================

Backends that are *not* bit-exact but as good as the reference, which the suite must
pass (``tests/meta/test_no_worse_than_ref.py``), are in :data:`EQUIVALENTS`:

================================  ===========================================================
gguf_least_squares_rescale        Q4_0/Q5_0/Q8_0/IQ4_NL: the reference's codes with each
                                  block's scale refitted by (imatrix-)weighted least
                                  squares, kept where it lowers that block's error
gguf_kquant_finer_search          ``make_qkx2_quants`` over a twice-finer grid of the same
                                  range (an equally good search, though up to 1.17x worse on
                                  single Q5_K blocks; r = 1.25 must admit it)
================================  ===========================================================
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any, Callable, Iterator

import numpy as np

from accel.protocol import OpCapability
from conformance.mutants import MutantBackend, _ref

__all__ = ["MUTANTS", "EQUIVALENTS", "NotBitExactBackend"]

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


class NotBitExactBackend(MutantBackend):
    """A :class:`MutantBackend` whose overridden ops declare ``bit_exact=False``, so the
    suite holds them to their contract-table entry (e.g. ``NoWorseThanRef``) instead of
    Exact."""

    def capabilities(self) -> dict[str, OpCapability]:
        caps = dict(super().capabilities())
        for op in self._overrides:
            caps[op] = replace(caps[op], bit_exact=False, notes="approximate (test double)")
        return caps


@contextlib.contextmanager
def _qkx_search(nstep: Callable[[int], int], rdelta: Callable[[float], float]) -> Iterator[None]:
    """Run the reference with ``make_qkx2_quants``' candidate grid changed (its module
    globals are swapped for the duration; the suite calls backends one at a time)."""
    from refquant.formats import gguf_kquants, gguf_kquants_search, gguf_legacy

    search = gguf_kquants_search.make_qkx_quants

    def changed(x: Any, weights: Any, nmax: int, rmin: float, rdelta_: float, nstep_: int, use_mad: bool) -> Any:
        return search(x, weights, nmax, rmin, rdelta(rdelta_), nstep(nstep_), use_mad)

    modules = (gguf_kquants, gguf_legacy)
    for module in modules:
        module.make_qkx_quants = changed
    try:
        yield
    finally:
        for module in modules:
            module.make_qkx_quants = search


def gguf_kquant_no_search() -> NotBitExactBackend:
    quantize = _ref("gguf_quantize")

    def gguf_quantize(x: Any, qtype: str, imatrix: Any = None) -> np.ndarray:
        with _qkx_search(nstep=lambda n: -1, rdelta=lambda r: r):  # no candidates: the min-max start
            return quantize(x, qtype, imatrix)

    return NotBitExactBackend("gguf_kquant_no_search", {"gguf_quantize": gguf_quantize})


MUTANTS: dict[str, Callable[[], MutantBackend]] = {
    "gguf_q4_0_nibbles_interleaved": gguf_q4_0_nibbles_interleaved,
    "gguf_q4_0_codes_from_fp16_scale": gguf_q4_0_codes_from_fp16_scale,
    "gguf_iq4_nl_ref_search": gguf_iq4_nl_ref_search,
    "gguf_imatrix_ignored": gguf_imatrix_ignored,
    "gguf_q5_0_qh_big_endian": gguf_q5_0_qh_big_endian,
    "gguf_kquant_no_search": gguf_kquant_no_search,
}


# --- not bit-exact, as good as the reference (must pass) ------------------------------


def gguf_least_squares_rescale() -> NotBitExactBackend:
    from refquant.formats._ggml_math import fp16_to_fp32, fp32_to_fp16
    from refquant.gguf import get_format

    quantize, dequantize = _ref("gguf_quantize"), _ref("gguf_dequantize")

    def gguf_quantize(x: Any, qtype: str, imatrix: Any = None) -> np.ndarray:
        data = quantize(x, qtype, imatrix)
        if qtype not in ("q4_0", "q5_0", "q8_0", "iq4_nl") or data.size == 0:
            return data
        size = get_format(qtype).block_size
        xb = np.asarray(x, np.float64).reshape(-1, size)                        # (n_blocks, 32)
        w = np.ones_like(xb) if imatrix is None else np.broadcast_to(
            np.asarray(imatrix, np.float64), np.shape(x)).reshape(-1, size)
        blocks = _blocks(data, qtype)
        unit = blocks.copy()
        unit["d"] = fp32_to_fp16(np.ones(len(blocks), np.float32))             # levels: the block at d = 1
        levels = dequantize(unit.view(np.uint8), qtype, xb.shape).astype(np.float64)
        num, den = np.sum(w * xb * levels, axis=1), np.sum(w * levels * levels, axis=1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            d_new = fp32_to_fp16(np.where(den > 0, num / den, 0.0).astype(np.float32))
            err_new = np.sum(w * (xb - fp16_to_fp32(d_new)[:, None] * levels) ** 2, axis=1)
            err_old = np.sum(w * (xb - fp16_to_fp32(blocks["d"])[:, None] * levels) ** 2, axis=1)
        better = np.isfinite(err_new) & (err_new < err_old)
        blocks["d"] = np.where(better, d_new, blocks["d"])
        return blocks.view(np.uint8).reshape(data.shape)

    return NotBitExactBackend("gguf_least_squares_rescale", {"gguf_quantize": gguf_quantize})


def gguf_kquant_finer_search() -> NotBitExactBackend:
    quantize = _ref("gguf_quantize")

    def gguf_quantize(x: Any, qtype: str, imatrix: Any = None) -> np.ndarray:
        with _qkx_search(nstep=lambda n: 2 * n + 1, rdelta=lambda r: r / 2):
            return quantize(x, qtype, imatrix)

    return NotBitExactBackend("gguf_kquant_finer_search", {"gguf_quantize": gguf_quantize})


EQUIVALENTS: dict[str, Callable[[], MutantBackend]] = {
    "gguf_least_squares_rescale": gguf_least_squares_rescale,
    "gguf_kquant_finer_search": gguf_kquant_finer_search,
}
