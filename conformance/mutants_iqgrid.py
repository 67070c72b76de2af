"""Mutants for ggml's IQ grid types (issue 17): grid indices assembled in the wrong order.

======================  ==================================================================
mutant                  bug
======================  ==================================================================
iq2_s_qh_reversed       IQ2_S: the two high index bits of group l read from bits 2·(3 - l)
                        of ``qh`` instead of 2·l (the groups' order reversed)
iq2_xxs_indices_big     IQ2_XXS: the four grid-index bytes of a sub-block read from its first
                        uint32 big-endian (group l gets byte 3 - l)
======================  ==================================================================
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from conformance.mutants import MutantBackend, _ref
from refquant.gguf import get_format

__all__ = ["MUTANTS"]


def _blocks(data: np.ndarray, qtype: str) -> np.ndarray:
    return np.ascontiguousarray(data).reshape(-1).view(get_format(qtype).dtype).copy()


def iq2_s_qh_reversed() -> MutantBackend:
    dequantize = _ref("gguf_dequantize")

    def gguf_dequantize(data: Any, qtype: str, shape: Any) -> np.ndarray:
        if str(qtype).lower() != "iq2_s":
            return dequantize(data, qtype, shape)
        blocks = _blocks(np.asarray(data), "iq2_s")
        qh = blocks["qh"].astype(np.uint32)
        pairs = [(qh >> (2 * j)) & 3 for j in range(4)]
        blocks["qh"] = sum(p << (2 * (3 - j)) for j, p in enumerate(pairs)).astype(np.uint8)
        return dequantize(blocks.view(np.uint8), qtype, shape)

    return MutantBackend("iq2_s_qh_reversed", {"gguf_dequantize": gguf_dequantize})


def iq2_xxs_indices_big() -> MutantBackend:
    dequantize = _ref("gguf_dequantize")

    def gguf_dequantize(data: Any, qtype: str, shape: Any) -> np.ndarray:
        if str(qtype).lower() != "iq2_xxs":
            return dequantize(data, qtype, shape)
        blocks = _blocks(np.asarray(data), "iq2_xxs")
        b = blocks["qs"].view(np.uint8).reshape(-1, 8, 8).copy()       # (n, sub-block, 8 bytes)
        b[..., :4] = b[..., 3::-1]
        blocks["qs"] = b.reshape(-1, 64).view("<u2")
        return dequantize(blocks.view(np.uint8), qtype, shape)

    return MutantBackend("iq2_xxs_indices_big", {"gguf_dequantize": gguf_dequantize})


MUTANTS: dict[str, Callable[[], MutantBackend]] = {
    "iq2_s_qh_reversed": iq2_s_qh_reversed,
    "iq2_xxs_indices_big": iq2_xxs_indices_big,
}
