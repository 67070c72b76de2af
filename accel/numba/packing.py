"""Sub-byte packing (pack / unpack, every layout) and base-3 ternary packing as Numba kernels.

Mirrors :mod:`refquant.packing`: each row (last axis) is one bit stream in which code
``i`` holds stream bits ``[bits*i, bits*(i+1))``. Like the reference, the kernels work
on chunks of 8 codes, which fill exactly ``bits`` bytes (a 64-bit integer), so a code
straddling two bytes (3 bits) needs no special case; ``msb_first`` reverses both the
code order in the chunk and the byte order (bitsandbytes' high nibble first). int32
containers are the little-endian (``low_first``, ``awq``) or big-endian
(``high_first``) reading of the byte stream, and AWQ permutes the 8 codes of each word
(``refquant.packing.AWQ_ORDER``). Ternary packing is ggml TQ1_0's ``ceil(q * 256 / 243)``
of five trits, unpacked with one multiply and a shift per trit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from accel.numba._jit import kernel
from refquant._validate import as_int_array, check_int
from refquant.packing import AWQ_ORDER, packed_size
from refquant.packing import _check_layout  # the reference's own parameter check and messages

__all__ = ["pack", "unpack", "pack_ternary", "unpack_ternary"]

_IDENTITY = np.arange(8, dtype=np.int64)
_AWQ = np.array(AWQ_ORDER, dtype=np.int64)
_WIDTH = {"uint8": 8, "int32": 32}


@kernel
def _pack(codes, n, bits, msb_first, perm, top, out):  # type: ignore[no-untyped-def]
    """codes (rows, n) uint8 -> out (rows, row_bytes) uint8; returns the number of codes > top."""
    rows = codes.shape[0]
    row_bytes = out.shape[1]
    chunks = (n + 7) // 8
    bad = 0
    for pr in prange(rows):
        r = np.int64(pr)
        for g in range(chunks):
            v = np.uint64(0)
            for i in range(8):
                k = g * 8 + perm[i]
                c = np.uint64(0)
                if k < n:
                    c = np.uint64(codes[r, k])
                    if c > top:
                        bad += 1
                shift = bits * (7 - i) if msb_first else bits * i
                v |= c << np.uint64(shift)
            for m in range(bits):
                b = g * bits + m
                if b < row_bytes:
                    shift = 8 * (bits - 1 - m) if msb_first else 8 * m
                    out[r, b] = np.uint8((v >> np.uint64(shift)) & np.uint64(0xFF))
        for b in range(chunks * bits, row_bytes):      # int32 words beyond the last chunk
            out[r, b] = 0
    return bad


@kernel
def _unpack(data, count, bits, msb_first, perm, out):  # type: ignore[no-untyped-def]
    """data (rows, row_bytes) uint8 -> out (rows, count) uint8."""
    rows = data.shape[0]
    row_bytes = data.shape[1]
    chunks = (count + 7) // 8
    mask = np.uint64((1 << bits) - 1)
    for pr in prange(rows):
        r = np.int64(pr)
        for g in range(chunks):
            v = np.uint64(0)
            for m in range(bits):
                b = g * bits + m
                if b < row_bytes:
                    shift = 8 * (bits - 1 - m) if msb_first else 8 * m
                    v |= np.uint64(data[r, b]) << np.uint64(shift)
            for i in range(8):
                k = g * 8 + perm[i]
                if k < count:
                    shift = bits * (7 - i) if msb_first else bits * i
                    out[r, k] = np.uint8((v >> np.uint64(shift)) & mask)


@kernel
def _pack_ternary(trits, n, out):  # type: ignore[no-untyped-def]
    rows = trits.shape[0]
    n_bytes = out.shape[1]
    bad = 0
    for pr in prange(rows):
        r = np.int64(pr)
        for g in range(n_bytes):
            q = np.int64(0)
            for i in range(5):            # first trit most significant
                k = g * 5 + i
                t = np.int64(0)
                if k < n:
                    t = np.int64(trits[r, k])
                    if t > 2:
                        bad += 1
                q = q * 3 + t
            out[r, g] = np.uint8((q * 256 + 242) // 243)
    return bad


@kernel
def _unpack_ternary(data, count, out):  # type: ignore[no-untyped-def]
    rows = data.shape[0]
    n_bytes = data.shape[1]
    for pr in prange(rows):
        r = np.int64(pr)
        for g in range(n_bytes):
            b = np.int64(data[r, g])
            mult = np.int64(1)
            for i in range(5):            # trit i: ((b * 3**i) mod 256 * 3) >> 8
                k = g * 5 + i
                if k < count:
                    out[r, k] = np.uint8((((b * mult) & 0xFF) * 3) >> 8)
                mult *= 3


def _rows(a: np.ndarray) -> np.ndarray:
    """(..., n) -> contiguous (rows, n) view or copy."""
    return np.ascontiguousarray(a).reshape(int(np.prod(a.shape[:-1])), a.shape[-1])


def _as_uint8_codes(codes: Any, top: int, what: str, name: str = "codes") -> np.ndarray:
    """``codes`` as a uint8 array (range-checked here unless it is uint8 already)."""
    arr = as_int_array(name, codes, min_ndim=1)
    if arr.dtype == np.uint8:
        return arr
    # other integer dtypes: the range check cannot be done after narrowing to uint8
    if arr.size and (arr.min() < 0 or arr.max() > top):
        _raise_bad_code(arr, top, what, name)
    return arr.astype(np.uint8)


def _raise_bad_code(arr: np.ndarray, top: int, what: str, name: str = "codes") -> None:
    bad = (arr < 0) | (arr > top)
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f"{name} contains {int(arr[where])} at index {where}; {what} must be in 0..{top}")


def pack(codes: Any, bits: int, order: str = "low_first", container: str = "uint8") -> np.ndarray:
    """Backend op: same contract as :func:`refquant.packing.pack`."""
    bits = _check_layout(bits, order, container)
    top = (1 << bits) - 1
    what = f"{bits}-bit codes"
    arr = _as_uint8_codes(codes, top, what)
    n = arr.shape[-1]
    n_units = packed_size(n, bits, container)
    width = _WIDTH[container]
    msb_first = order == "high_first"
    rows = _rows(arr)
    out = np.empty((rows.shape[0], n_units * width // 8), np.uint8)
    if _pack(rows, n, bits, msb_first, _AWQ if order == "awq" else _IDENTITY, np.uint64(top), out):
        _raise_bad_code(arr, top, what)
    out = out.reshape(arr.shape[:-1] + (out.shape[1],))
    if container == "uint8":
        return out
    return out.view(">i4" if msb_first else "<i4").astype(np.int32)


def unpack(packed: Any, bits: int, count: int, order: str = "low_first", container: str = "uint8") -> np.ndarray:
    """Backend op: same contract as :func:`refquant.packing.unpack`."""
    bits = _check_layout(bits, order, container)
    count = check_int("count", count, min=0)
    arr = as_int_array("packed", packed, min_ndim=1)
    allowed = (np.uint8,) if container == "uint8" else (np.int32, np.uint32)
    if arr.dtype not in tuple(np.dtype(d) for d in allowed):
        raise TypeError(f"packed must be {' or '.join(np.dtype(d).name for d in allowed)} for "
                        f"container={container!r}, got {arr.dtype}")
    need = packed_size(count, bits, container)
    if arr.shape[-1] != need:
        raise ValueError(f"packed has {arr.shape[-1]} {container} values per row; count={count} codes of "
                         f"{bits} bits need exactly {need}")
    msb_first = order == "high_first"
    if container == "int32":
        arr = np.ascontiguousarray(arr).astype(">u4" if msb_first else "<u4", copy=False).view(np.uint8)
    rows = _rows(arr)
    out = np.empty((rows.shape[0], count), np.uint8)
    _unpack(rows, count, bits, msb_first, _AWQ if order == "awq" else _IDENTITY, out)
    return out.reshape(arr.shape[:-1] + (count,))


def pack_ternary(trits: Any) -> np.ndarray:
    """Backend op: same contract as :func:`refquant.packing.pack_ternary`."""
    arr = _as_uint8_codes(trits, 2, "trits", name="trits")
    n = arr.shape[-1]
    rows = _rows(arr)
    out = np.empty((rows.shape[0], -(-n // 5)), np.uint8)
    if _pack_ternary(rows, n, out):
        _raise_bad_code(arr, 2, "trits", name="trits")
    return out.reshape(arr.shape[:-1] + (out.shape[1],))


def unpack_ternary(packed: Any, count: int) -> np.ndarray:
    """Backend op: same contract as :func:`refquant.packing.unpack_ternary`."""
    count = check_int("count", count, min=0)
    arr = as_int_array("packed", packed, min_ndim=1)
    if arr.dtype != np.uint8:
        raise TypeError(f"packed must be uint8, got {arr.dtype}")
    need = -(-count // 5)
    if arr.shape[-1] != need:
        raise ValueError(f"packed has {arr.shape[-1]} bytes per row; count={count} trits need exactly {need}")
    rows = _rows(arr)
    out = np.empty((rows.shape[0], count), np.uint8)
    _unpack_ternary(rows, count, out)
    return out.reshape(arr.shape[:-1] + (count,))
