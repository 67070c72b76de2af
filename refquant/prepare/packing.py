"""Preparation of the packing ops (pack, unpack, pack_ternary, unpack_ternary).

Same rules as :mod:`refquant.packing`: codes are checked against their width and
handed over as C-contiguous uint8; packed rows must have exactly the containers
``count`` codes need.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant.packing import _check_codes, _check_layout, _check_packed, check_ternary_packed, packed_size
from refquant.prepare import Prepared, output

__all__ = ["prepare_pack", "prepare_unpack", "prepare_pack_ternary", "prepare_unpack_ternary"]

_CONTAINER_DTYPE = {"uint8": np.uint8, "int32": np.int32}


def prepare_pack(codes: Any, bits: int, order: str = "low_first", container: str = "uint8", *,
                 out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.packing.pack`: codes in ``0..2**bits - 1`` as uint8."""
    bits = _check_layout(bits, order, container)
    arr = np.require(_check_codes(codes, (1 << bits) - 1, f"{bits}-bit codes"), np.uint8, requirements="C")
    shape = arr.shape[:-1] + (packed_size(arr.shape[-1], bits, container),)
    return Prepared((arr, bits, order, container), {}, output(out, shape, _CONTAINER_DTYPE[container], (codes,)))


def prepare_unpack(packed: Any, bits: int, count: int, order: str = "low_first", container: str = "uint8", *,
                   out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.packing.unpack`: rows of exactly the containers ``count`` codes need."""
    bits, count, arr = _check_packed(packed, bits, count, order, container)
    return Prepared((np.require(arr, requirements="C"), bits, count, order, container), {},
                    output(out, arr.shape[:-1] + (count,), np.uint8, (packed,)))


def prepare_pack_ternary(trits: Any, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.packing.pack_ternary`: trits in {0, 1, 2} as uint8."""
    arr = np.require(_check_codes(trits, 2, "trits", name="trits"), np.uint8, requirements="C")
    return Prepared((arr,), {}, output(out, arr.shape[:-1] + (-(-arr.shape[-1] // 5),), np.uint8, (trits,)))


def prepare_unpack_ternary(packed: Any, count: int, *, out: Any = None) -> Prepared:
    """Arguments of :func:`refquant.packing.unpack_ternary`: uint8 rows of ``ceil(count / 5)`` bytes."""
    count, arr = check_ternary_packed(packed, count)
    return Prepared((np.require(arr, requirements="C"), count), {}, output(out, arr.shape[:-1] + (count,), np.uint8, (packed,)))
