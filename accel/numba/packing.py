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

import math
from typing import Any

import numpy as np
from numba import prange

from accel.numba._jit import helper, kernel
from refquant.packing import AWQ_ORDER

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
    """C-contiguous (..., n) -> (rows, n) view (defined for n == 0 too)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def pack(codes: np.ndarray, bits: int, order: str, container: str, *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.packing.pack` on prepared arguments (``refquant.prepare.packing``:
    uint8 codes below ``2**bits``, C-contiguous; ``out`` uint8/int32 (..., packed_size))."""
    n = codes.shape[-1]
    msb_first = order == "high_first"
    rows = _rows(codes)
    res = _rows(out).view(np.uint8)                     # int32 words as their little-endian bytes
    if 8 % bits == 0 and order != "awq":
        _pack_bytes(rows, n, bits, msb_first, np.uint8((1 << bits) - 1), res)
    else:
        _pack(rows, n, bits, msb_first, _AWQ if order == "awq" else _IDENTITY, np.uint64((1 << bits) - 1), res)
    if container == "int32" and msb_first:              # an MSB-first stream fills a word from its high byte
        out.byteswap(inplace=True)
    return out


def unpack(packed: np.ndarray, bits: int, count: int, order: str, container: str, *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.packing.unpack` on prepared arguments (rows of exactly the
    containers ``count`` codes need; ``out`` uint8 (..., count))."""
    msb_first = order == "high_first"
    arr = packed
    if container == "int32":
        arr = np.ascontiguousarray(arr.astype(">u4" if msb_first else "<u4", copy=False)).view(np.uint8)
    rows = _rows(arr)
    res = _rows(out)
    if 8 % bits == 0 and order != "awq":
        _unpack_bytes(rows, count, bits, msb_first, res)
    else:
        _unpack(rows, count, bits, msb_first, _AWQ if order == "awq" else _IDENTITY, res)
    return out


def pack_ternary(trits: np.ndarray, *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.packing.pack_ternary` on prepared arguments (uint8 trits in {0, 1, 2})."""
    _pack_ternary(_rows(trits), trits.shape[-1], _rows(out))
    return out


def unpack_ternary(packed: np.ndarray, count: int, *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.packing.unpack_ternary` on prepared arguments (uint8 rows of ceil(count / 5) bytes)."""
    _unpack_ternary(_rows(packed), count, _rows(out))
    return out


def pack_array(codes: np.ndarray, bits: int, order: str, container: str) -> np.ndarray:
    """:func:`pack` into a new array, for this backend's own callers (uint8 codes < 2**bits)."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    n_units = -(-codes.shape[-1] * bits // (8 if container == "uint8" else 32))
    out = np.empty(codes.shape[:-1] + (n_units,), np.uint8 if container == "uint8" else np.int32)
    return pack(codes, bits, order, container, out=out)


def unpack_array(packed: np.ndarray, bits: int, count: int, order: str, container: str) -> np.ndarray:
    """:func:`unpack` into a new array, for this backend's own callers (rows of the right length)."""
    packed = np.ascontiguousarray(packed)
    return unpack(packed, bits, count, order, container, out=np.empty(packed.shape[:-1] + (count,), np.uint8))
