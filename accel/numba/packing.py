"""Sub-byte packing (pack / unpack, every layout) and base-3 ternary packing as Numba kernels.

Mirrors :mod:`refquant.packing`: each row (last axis) is one bit stream in which code
``i`` holds stream bits ``[bits*i, bits*(i+1))``. Like the reference, the kernels work
on chunks of 8 codes, which fill exactly ``bits`` bytes (a 64-bit integer), so a code
straddling two bytes (3 bits) needs no special case; ``msb_first`` reverses both the
code order in the chunk and the byte order (bitsandbytes' high nibble first). Widths
that divide 8 (1, 2, 4, 8 bits) take a byte-at-a-time path that LLVM vectorizes. int32
containers are the little-endian (``low_first``, ``awq``) or big-endian
(``high_first``) reading of the byte stream, and AWQ permutes the 8 codes of each word
(``refquant.packing.AWQ_ORDER``). Ternary packing is ggml TQ1_0's ``ceil(q * 256 / 243)``
of five trits, unpacked with one multiply and a shift per trit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from accel.numba._jit import helper, kernel
from refquant._validate import as_int_array, check_int
from refquant.packing import AWQ_ORDER, packed_size
from refquant.packing import _check_layout, _check_packed  # the reference's own checks and messages

__all__ = ["pack", "unpack", "pack_ternary", "unpack_ternary"]

_IDENTITY = np.arange(8, dtype=np.int64)
_AWQ = np.array(AWQ_ORDER, dtype=np.int64)
_WIDTH = {"uint8": 8, "int32": 32}


@helper
def _code_shifts(bits, msb_first, perm):  # type: ignore[no-untyped-def]
    """Stream bit offset of code k of an 8-code chunk: code perm[i] sits at position i."""
    sh = np.zeros(8, np.uint64)
    for i in range(8):
        sh[perm[i]] = bits * (7 - i) if msb_first else bits * i
    return sh


@kernel(iterations=lambda codes, *a: codes.shape[0])
def _pack(codes, n, bits, msb_first, perm, top, out):  # type: ignore[no-untyped-def]
    """codes (rows, n) uint8 -> out (rows, row_bytes) uint8 in 8-code chunks of ``bits``
    bytes; returns the number of codes > top. Full chunks use loop-invariant shifts."""
    rows = codes.shape[0]
    row_bytes = out.shape[1]
    full = min(n // 8, row_bytes // bits)
    chunks = (n + 7) // 8
    sh = _code_shifts(bits, msb_first, perm)
    s0, s1, s2, s3, s4, s5, s6, s7 = sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], sh[6], sh[7]
    bad = 0
    for pr in prange(rows):
        r = np.int64(pr)
        c = codes[r]
        o = out[r]
        for i in range(n):
            bad += c[i] > top
        for g in range(chunks):
            k = g * 8
            if g < full:
                v = ((np.uint64(c[k]) << s0) | (np.uint64(c[k + 1]) << s1) | (np.uint64(c[k + 2]) << s2)
                     | (np.uint64(c[k + 3]) << s3) | (np.uint64(c[k + 4]) << s4) | (np.uint64(c[k + 5]) << s5)
                     | (np.uint64(c[k + 6]) << s6) | (np.uint64(c[k + 7]) << s7))
            else:                                       # the partial last chunk
                v = np.uint64(0)
                for i in range(min(8, n - k)):
                    v |= np.uint64(c[k + i]) << sh[i]
            for m in range(bits):
                b = g * bits + m
                if b < row_bytes:
                    shift = 8 * (bits - 1 - m) if msb_first else 8 * m
                    o[b] = np.uint8((v >> np.uint64(shift)) & np.uint64(0xFF))
        for b in range(chunks * bits, row_bytes):      # int32 words beyond the last chunk
            o[b] = 0
    return bad


@kernel(iterations=lambda data, *a: data.shape[0])
def _unpack(data, count, bits, msb_first, perm, out):  # type: ignore[no-untyped-def]
    """data (rows, row_bytes) uint8 -> out (rows, count) uint8."""
    rows = data.shape[0]
    row_bytes = data.shape[1]
    chunks = (count + 7) // 8
    full = min(count // 8, row_bytes // bits)
    mask = np.uint64((1 << bits) - 1)
    sh = _code_shifts(bits, msb_first, perm)
    s0, s1, s2, s3, s4, s5, s6, s7 = sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], sh[6], sh[7]
    for pr in prange(rows):
        r = np.int64(pr)
        d = data[r]
        o = out[r]
        for g in range(chunks):
            v = np.uint64(0)
            for m in range(bits):
                b = g * bits + m
                if b < row_bytes:
                    shift = 8 * (bits - 1 - m) if msb_first else 8 * m
                    v |= np.uint64(d[b]) << np.uint64(shift)
            k = g * 8
            if g < full:
                o[k] = np.uint8((v >> s0) & mask)
                o[k + 1] = np.uint8((v >> s1) & mask)
                o[k + 2] = np.uint8((v >> s2) & mask)
                o[k + 3] = np.uint8((v >> s3) & mask)
                o[k + 4] = np.uint8((v >> s4) & mask)
                o[k + 5] = np.uint8((v >> s5) & mask)
                o[k + 6] = np.uint8((v >> s6) & mask)
                o[k + 7] = np.uint8((v >> s7) & mask)
            else:
                for i in range(min(8, count - k)):
                    o[k + i] = np.uint8((v >> sh[i]) & mask)


@helper
def _shifts(bits, msb_first):  # type: ignore[no-untyped-def]
    """Bit offset of each of the 8/bits codes of a byte (8 entries; unused ones 0)."""
    sh = np.zeros(8, np.uint8)
    for i in range(8 // bits):
        sh[i] = 8 - bits * (i + 1) if msb_first else bits * i
    return sh


@kernel(iterations=lambda codes, *a: codes.shape[0])
def _pack_bytes(codes, n, bits, msb_first, top, out):  # type: ignore[no-untyped-def]
    """Fast path for bits in (1, 2, 4, 8) (whole codes per byte): each byte is built from
    its 8/bits codes with loop-invariant shifts, so LLVM vectorizes the byte loop. Same
    bytes as _pack."""
    rows = codes.shape[0]
    per = 8 // bits
    full = n // per
    sh = _shifts(bits, msb_first)
    s0, s1, s2, s3, s4, s5, s6, s7 = sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], sh[6], sh[7]
    bad = 0
    for pr in prange(rows):
        r = np.int64(pr)
        c = codes[r]
        o = out[r]
        for i in range(n):
            bad += c[i] > top
        if per == 1:
            for j in range(full):
                o[j] = c[j]
        elif per == 2:
            for j in range(full):
                o[j] = (c[2 * j] << s0) | (c[2 * j + 1] << s1)
        elif per == 4:
            for j in range(full):
                o[j] = (c[4 * j] << s0) | (c[4 * j + 1] << s1) | (c[4 * j + 2] << s2) | (c[4 * j + 3] << s3)
        else:
            for j in range(full):
                o[j] = ((c[8 * j] << s0) | (c[8 * j + 1] << s1) | (c[8 * j + 2] << s2) | (c[8 * j + 3] << s3)
                        | (c[8 * j + 4] << s4) | (c[8 * j + 5] << s5) | (c[8 * j + 6] << s6) | (c[8 * j + 7] << s7))
        if full < o.size:
            v = np.uint8(0)
            for i in range(n - full * per):           # the partial last byte
                v |= np.uint8(c[full * per + i] << sh[i])
            o[full] = v
            for j in range(full + 1, o.size):         # int32 padding
                o[j] = 0
    return bad


@kernel(iterations=lambda data, *a: data.shape[0])
def _unpack_bytes(data, count, bits, msb_first, out):  # type: ignore[no-untyped-def]
    rows = data.shape[0]
    per = 8 // bits
    mask = np.uint8((1 << bits) - 1)
    full = count // per
    sh = _shifts(bits, msb_first)
    s0, s1, s2, s3, s4, s5, s6, s7 = sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], sh[6], sh[7]
    for pr in prange(rows):
        r = np.int64(pr)
        d = data[r]
        o = out[r]
        if per == 1:
            for j in range(full):
                o[j] = d[j]
        elif per == 2:
            for j in range(full):
                b = d[j]
                o[2 * j] = (b >> s0) & mask
                o[2 * j + 1] = (b >> s1) & mask
        elif per == 4:
            for j in range(full):
                b = d[j]
                o[4 * j] = (b >> s0) & mask
                o[4 * j + 1] = (b >> s1) & mask
                o[4 * j + 2] = (b >> s2) & mask
                o[4 * j + 3] = (b >> s3) & mask
        else:
            for j in range(full):
                b = d[j]
                o[8 * j] = (b >> s0) & mask
                o[8 * j + 1] = (b >> s1) & mask
                o[8 * j + 2] = (b >> s2) & mask
                o[8 * j + 3] = (b >> s3) & mask
                o[8 * j + 4] = (b >> s4) & mask
                o[8 * j + 5] = (b >> s5) & mask
                o[8 * j + 6] = (b >> s6) & mask
                o[8 * j + 7] = (b >> s7) & mask
        for i in range(count - full * per):
            o[full * per + i] = (d[full] >> sh[i]) & mask


@kernel(iterations=lambda trits, *a: trits.shape[0])
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


@kernel(iterations=lambda data, *a: data.shape[0])
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
    if 8 % bits == 0 and order != "awq":
        bad = _pack_bytes(rows, n, bits, msb_first, np.uint8(top), out)
    else:
        bad = _pack(rows, n, bits, msb_first, _AWQ if order == "awq" else _IDENTITY, np.uint64(top), out)
    if bad:
        _raise_bad_code(arr, top, what)
    out = out.reshape(arr.shape[:-1] + (out.shape[1],))
    if container == "uint8":
        return out
    return out.view(">i4" if msb_first else "<i4").astype(np.int32)


def unpack(packed: Any, bits: int, count: int, order: str = "low_first", container: str = "uint8") -> np.ndarray:
    """Backend op: same contract as :func:`refquant.packing.unpack`."""
    bits, count, arr = _check_packed(packed, bits, count, order, container)
    msb_first = order == "high_first"
    if container == "int32":
        arr = np.ascontiguousarray(arr).astype(">u4" if msb_first else "<u4", copy=False).view(np.uint8)
    rows = _rows(arr)
    out = np.empty((rows.shape[0], count), np.uint8)
    if 8 % bits == 0 and order != "awq":
        _unpack_bytes(rows, count, bits, msb_first, out)
    else:
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
