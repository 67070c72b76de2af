"""Sub-byte packing: b-bit codes into uint8 bytes or int32 words, and ternary base-3 bytes.

Codes are unsigned integers in ``[0, 2**bits - 1]`` (shift signed codes first, e.g.
``q + 8`` for int4). Packing runs along the **last axis**; every row is packed on its
own, so ``codes`` of shape ``(..., n)`` gives ``(..., packed_size(n, bits, container))``.

Every order is a *bit stream*: code ``i`` occupies stream bits ``[bits*i, bits*(i+1))``,
streams are cut into containers of W = 8 (uint8) or 32 (int32) bits, and a code may
straddle two containers (3-bit codes do). The orders differ in how stream bits sit in a
container::

    low_first   stream bit n -> container bit n % W (LSB first); a code's low bit first.
                uint8, 4 bits: codes [1, 2] -> 0x21   (element 0 in the LOW nibble)
                uint8, 2 bits: element j of a byte at bits 2j..2j+1
                int32, 3 bits: GPTQ's straddling layout: word 0 holds codes
                0-9 and the low 2 bits of code 10; word 1 the top bit of code 10, codes
                11-20 at offset 1 and the low bit of code 21; word 2 the rest. For 2/4/8
                bits, code k of a word at bits bits*k (GPTQ qweight/qzeros).
    high_first  stream bit n -> container bit W-1 - n % W (MSB first); a code's high bit first.
                uint8, 4 bits: codes [1, 2] -> 0x12   (bitsandbytes: first element in the
                HIGH nibble, byte = q[2i] << 4 | q[2i+1])
    awq         4 bits in int32 words only: nibble i (bits 4i..4i+3) of word c holds code
                8c + AWQ_ORDER[i], AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7) (AutoAWQ
                ``awq/modules/linear/gemm.py``). Codes 0..7 give 0x75316420.

Padding. When ``n * bits`` is not a multiple of W (or, for awq, ``n`` of 8), the row is
padded with zero codes up to the next container; :func:`unpack` therefore needs
``count`` (the number of real codes) and ignores the padding bits.

Ternary (:func:`pack_ternary`): five trits ``t0..t4`` (codes 0, 1, 2) per byte as in
ggml ``TQ1_0`` (gguf-py ``quants.py`` ``TQ1_0``): ``q = ((((t0*3 + t1)*3 +
t2)*3 + t3)*3 + t4`` (first trit most significant, 0..242), stored as ``ceil(q * 256 /
243)``. That makes the byte a fixed-point fraction ``q / 243`` of 256, so trit n is read
back with one multiply and a shift: ``v = (byte * 3**n) mod 256``, ``t = (3 * v) >> 8``.
A row whose length is not a multiple of 5 is padded with zero trits (as TQ1_0's
``qh`` bytes, which hold 4 trits and a zero). TQ1_0's element order (which elements share
a byte) is the GGUF format's business; this packs consecutive trits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_int_array, check_choice, check_int
from refquant.prepare import into

__all__ = ["pack", "unpack", "pack_ternary", "unpack_ternary", "packed_size", "ORDERS", "CONTAINERS",
           "AWQ_ORDER", "LAYOUTS"]

ORDERS = ("low_first", "high_first", "awq")
CONTAINERS = ("uint8", "int32")
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
_AWQ_INVERSE = tuple(int(i) for i in np.argsort(AWQ_ORDER))   # (0, 4, 1, 5, 2, 6, 3, 7)
_WIDTH = {"uint8": 8, "int32": 32}

#: Named layouts (the conformance format axis of ``pack``/``unpack``): keyword arguments.
LAYOUTS: dict[str, dict[str, Any]] = {
    "1bit": dict(bits=1, order="low_first", container="uint8"),
    "2bit": dict(bits=2, order="low_first", container="uint8"),
    "3bit": dict(bits=3, order="low_first", container="uint8"),
    "4bit": dict(bits=4, order="low_first", container="uint8"),
    "4bit_high_first": dict(bits=4, order="high_first", container="uint8"),
    "2bit_gptq_int32": dict(bits=2, order="low_first", container="int32"),
    "3bit_gptq_int32": dict(bits=3, order="low_first", container="int32"),
    "4bit_gptq_int32": dict(bits=4, order="low_first", container="int32"),
    "4bit_awq_int32": dict(bits=4, order="awq", container="int32"),
}


def _check_layout(bits: int, order: str, container: str) -> int:
    bits = check_int("bits", bits, min=1, max=8)
    check_choice("order", order, ORDERS)
    check_choice("container", container, CONTAINERS)
    if order == "awq" and (bits != 4 or container != "int32"):
        raise ValueError(f"order='awq' is defined for bits=4 in container='int32' only, "
                         f"got bits={bits}, container={container!r}")
    return bits


def packed_size(count: int, bits: int, container: str = "uint8") -> int:
    """Containers needed for ``count`` codes of ``bits`` bits: ``ceil(count * bits / W)``.

    Parameters
    ----------
    count : int >= 0
        Codes per row.
    bits : int in 1..8
    container : {"uint8", "int32"}
    """
    count = check_int("count", count, min=0)
    bits = check_int("bits", bits, min=1, max=8)
    width = _WIDTH[check_choice("container", container, CONTAINERS)]
    return -(-count * bits // width)


def _check_codes(codes: Any, top: int, what: str, name: str = "codes") -> np.ndarray:
    arr = as_int_array(name, codes, min_ndim=1)
    if arr.size:
        bad = (arr < 0) | (arr > top)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} contains {int(arr[where])} at index {where}; {what} must be in 0..{top}")
    return arr


def _pad_last(a: np.ndarray, length: int) -> np.ndarray:
    if a.shape[-1] == length:
        return a
    return np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, length - a.shape[-1])])


def _codes_to_bytes(codes: np.ndarray, bits: int, msb_first: bool) -> np.ndarray:
    """(..., 8k) codes -> (..., bits*k) bytes: 8 codes of b bits fill exactly b bytes."""
    lead = codes.shape[:-1]
    eights = codes.reshape(lead + (codes.shape[-1] // 8, 8)).astype(np.uint64)   # (..., k, 8)
    v = np.zeros(eights.shape[:-1], dtype=np.uint64)       # the 8b-bit stream of 8 codes, as an integer
    for i in range(8):
        v |= eights[..., i] << np.uint64(bits * (7 - i) if msb_first else bits * i)
    out = np.empty(v.shape + (bits,), dtype=np.uint8)      # (..., k, bits)
    for m in range(bits):
        out[..., m] = (v >> np.uint64(8 * (bits - 1 - m) if msb_first else 8 * m)) & np.uint64(0xFF)
    return out.reshape(lead + (v.shape[-1] * bits,))


def _bytes_to_codes(data: np.ndarray, bits: int, msb_first: bool) -> np.ndarray:
    """Inverse of :func:`_codes_to_bytes`: (..., bits*k) bytes -> (..., 8k) codes."""
    lead = data.shape[:-1]
    chunks = data.reshape(lead + (data.shape[-1] // bits, bits)).astype(np.uint64)  # (..., k, bits)
    v = np.zeros(chunks.shape[:-1], dtype=np.uint64)
    for m in range(bits):
        v |= chunks[..., m] << np.uint64(8 * (bits - 1 - m) if msb_first else 8 * m)
    out = np.empty(v.shape + (8,), dtype=np.uint8)         # (..., k, 8)
    mask = np.uint64((1 << bits) - 1)
    for i in range(8):
        out[..., i] = (v >> np.uint64(bits * (7 - i) if msb_first else bits * i)) & mask
    return out.reshape(lead + (v.shape[-1] * 8,))


def pack(codes: Any, bits: int, order: str = "low_first", container: str = "uint8", *, out: Any = None) -> np.ndarray:
    """Pack ``bits``-bit codes along the last axis.

    Parameters
    ----------
    codes : ndarray of any integer dtype, shape (..., n), values in 0..2**bits - 1
    bits : int
        1..8.
    order : {"low_first", "high_first", "awq"}
        Position of consecutive codes in a container (module docstring).
    container : {"uint8", "int32"}
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of uint8 or int32, shape (..., packed_size(n, bits, container))
        int32 words are the little-endian reading of their 32 bits (GPTQ/AWQ store int32).

    Raises
    ------
    TypeError
        Non-integer ``codes``.
    ValueError
        A code outside 0..2**bits - 1 (the message names it and its index); an unknown
        order/container; awq with other than 4 bits in int32.

    Examples
    --------
    >>> import numpy as np
    >>> hex(pack(np.array([1, 2]), 4)[0]), hex(pack(np.array([1, 2]), 4, "high_first")[0])
    ('0x21', '0x12')
    >>> hex(pack(np.arange(8), 4, "awq", "int32").view(np.uint32)[0])
    '0x75316420'
    """
    bits = _check_layout(bits, order, container)
    arr = _check_codes(codes, (1 << bits) - 1, f"{bits}-bit codes").astype(np.uint8)
    n = arr.shape[-1]
    n_units = packed_size(n, bits, container)
    # zero codes up to a whole number of 8-code chunks that also fills whole containers
    chunk = 8 if container == "uint8" else 32
    arr = _pad_last(arr, -(-n // chunk) * chunk)
    if order == "awq":
        grouped = arr.reshape(arr.shape[:-1] + (arr.shape[-1] // 8, 8))          # (..., words, 8)
        arr = grouped[..., list(AWQ_ORDER)].reshape(arr.shape)                   # nibble i <- code AWQ_ORDER[i]
    msb_first = order == "high_first"
    data = _codes_to_bytes(arr, bits, msb_first)[..., : n_units * _WIDTH[container] // 8]
    if container == "uint8":
        return into(out, np.ascontiguousarray(data), (codes,))
    # bytes -> words: LSB-first streams fill a word from its low byte, MSB-first from its high byte
    words = np.ascontiguousarray(data).view(">i4" if msb_first else "<i4").astype(np.int32)
    return into(out, words, (codes,))


def _check_packed(packed: Any, bits: Any, count: Any, order: str, container: str) -> tuple[int, int, np.ndarray]:
    """The checks of :func:`unpack`'s arguments (backends reuse them for the same messages):
    ``(bits, count, packed as an integer array)``."""
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
    return bits, count, arr


def unpack(packed: Any, bits: int, count: int, order: str = "low_first", container: str = "uint8", *,
           out: Any = None) -> np.ndarray:
    """Inverse of :func:`pack`: the first ``count`` codes of each row.

    Parameters
    ----------
    packed : ndarray, shape (..., packed_size(count, bits, container))
        uint8 for ``container="uint8"``; int32 or uint32 for ``"int32"``.
    bits : int
        1..8, as given to :func:`pack`.
    order : {"low_first", "high_first", "awq"}
        As given to :func:`pack`.
    container : {"uint8", "int32"}
        As given to :func:`pack`.
    count : int
        Real codes per row (padding codes are dropped; padding bits are not checked).
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of uint8, shape (..., count)

    Raises
    ------
    TypeError
        ``packed`` of the wrong dtype for the container.
    ValueError
        A last-axis length other than ``packed_size(count, bits, container)``.
    """
    bits, count, arr = _check_packed(packed, bits, count, order, container)
    msb_first = order == "high_first"
    if container == "int32":
        arr = np.ascontiguousarray(arr.astype(">u4" if msb_first else "<u4")).view(np.uint8)
    data = _pad_last(arr, -(-arr.shape[-1] // bits) * bits)                   # whole 8-code chunks
    codes = _bytes_to_codes(data, bits, msb_first)
    if order == "awq":
        grouped = codes.reshape(codes.shape[:-1] + (codes.shape[-1] // 8, 8))
        codes = grouped[..., list(_AWQ_INVERSE)].reshape(codes.shape)          # code k <- nibble inverse[k]
    return into(out, np.ascontiguousarray(codes[..., :count]), (packed,))


_POW3 = np.array([81, 27, 9, 3, 1], dtype=np.uint16)   # trit 0 is the most significant


def pack_ternary(trits: Any, *, out: Any = None) -> np.ndarray:
    """Pack trits (codes 0, 1, 2) five per byte along the last axis (ggml TQ1_0 rule).

    Parameters
    ----------
    trits : ndarray of any integer dtype, shape (..., n), values in {0, 1, 2}
        For a ternary weight ``t`` in {-1, 0, +1} pass ``t + 1``.
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of uint8, shape (..., ceil(n / 5))
        ``ceil(q * 256 / 243)`` with ``q`` the base-3 number of five trits, first trit
        most significant; a partial last group is padded with zero trits.

    Examples
    --------
    >>> import numpy as np
    >>> pack_ternary(np.array([2, 2, 2, 2, 2, 1, 0, 0, 0, 0]))   # q = 242 and q = 81
    array([255,  86], dtype=uint8)
    """
    arr = _check_codes(trits, 2, "trits", name="trits")
    n5 = -(-arr.shape[-1] // 5) * 5
    groups = _pad_last(arr, n5).astype(np.uint16).reshape(arr.shape[:-1] + (n5 // 5, 5))
    q = (groups * _POW3).sum(axis=-1, dtype=np.uint16)                   # 0..242
    return into(out, ((q * np.uint16(256) + np.uint16(242)) // np.uint16(243)).astype(np.uint8), (trits,))


def check_ternary_packed(packed: Any, count: Any) -> tuple[int, np.ndarray]:
    """The argument rule of :func:`unpack_ternary`: ``(count, packed)`` checked (uint8 rows of
    exactly ``ceil(count / 5)`` bytes), else TypeError / ValueError."""
    count = check_int("count", count, min=0)
    arr = as_int_array("packed", packed, min_ndim=1)
    if arr.dtype != np.uint8:
        raise TypeError(f"packed must be uint8, got {arr.dtype}")
    need = -(-count // 5)
    if arr.shape[-1] != need:
        raise ValueError(f"packed has {arr.shape[-1]} bytes per row; count={count} trits need exactly {need}")
    return count, arr


def unpack_ternary(packed: Any, count: int, *, out: Any = None) -> np.ndarray:
    """Inverse of :func:`pack_ternary`: the first ``count`` trits of each row.

    Parameters
    ----------
    packed : ndarray of uint8, shape (..., ceil(count / 5))
    count : int
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of uint8, shape (..., count), values in {0, 1, 2}
    """
    count, arr = check_ternary_packed(packed, count)
    need = -(-count // 5)
    mult = _POW3[::-1]                                                       # 3**n for trit n
    v = (arr.astype(np.uint16)[..., None] * mult) & np.uint16(0xFF)          # (..., bytes, 5): (b * 3**n) mod 256
    trits = ((v * np.uint16(3)) >> np.uint16(8)).astype(np.uint8)
    return into(out, np.ascontiguousarray(trits.reshape(arr.shape[:-1] + (need * 5,))[..., :count]), (packed,))
