"""pack / unpack / pack_ternary / unpack_ternary: launch code for ``src/packing.cu``."""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.cupy._launch import i32, i64, raise_reference_error, stride_grid
from refquant.packing import packed_size

__all__ = ["pack", "unpack", "pack_ternary", "unpack_ternary"]

_ORDER = {"low_first": 0, "high_first": 1, "awq": 2}
_WIDTH = {"uint8": 8, "int32": 32}


def _rows(dev: Any, a: Any, dtype: Any) -> Any:
    rows = int(np.prod(a.shape[:-1], dtype=np.int64))
    return dev.contiguous(a, dtype).reshape(rows, a.shape[-1])


def _codes(dev: Any, codes: Any) -> tuple[Any, str]:
    """uint8 codes as they are, any other integer codes widened to int64 (range-checked in the kernel)."""
    if np.dtype(codes.dtype) == np.uint8:
        return _rows(dev, codes, np.uint8), "u8"
    return _rows(dev, codes, np.int64), "i64"


def pack(dev: Any, codes: Any, bits: int, order: str = "low_first", container: str = "uint8") -> Any:
    """Backend op: same contract as :func:`refquant.packing.pack`."""
    if (np.dtype(codes.dtype).kind not in "iu" or codes.ndim < 1 or order not in _ORDER or container not in _WIDTH
            or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8 or (order == "awq" and bits != 4)):
        raise_reference_error(dev, "pack", codes, bits, order, container)
    rows, kind = _codes(dev, codes)
    units = packed_size(codes.shape[-1], int(bits), container)
    unit = np.uint8 if container == "uint8" else np.uint32
    out = dev.empty((rows.shape[0], units), unit)
    bad = dev.zeros(1, np.int32)
    grid, block = stride_grid(dev, rows.shape[0] * units)
    dev.launch("packing", f"pack_{kind}_{'u8' if container == 'uint8' else 'u32'}", grid, block,
               [rows, out, i64(rows.shape[0]), i64(codes.shape[-1]), i64(units), i32(bits), i32(_WIDTH[container]),
                i32(_ORDER[order]), bad])
    if int(bad[0]):
        raise_reference_error(dev, "pack", codes, bits, order, container)
    out = out if container == "uint8" else out.view(np.int32)
    return out.reshape(codes.shape[:-1] + (units,))


def unpack(dev: Any, packed: Any, bits: int, count: int, order: str = "low_first", container: str = "uint8") -> Any:
    """Backend op: same contract as :func:`refquant.packing.unpack`."""
    allowed = (np.uint8,) if container == "uint8" else (np.int32, np.uint32)
    if (order not in _ORDER or container not in _WIDTH or not isinstance(bits, (int, np.integer))
            or not isinstance(count, (int, np.integer)) or not 1 <= bits <= 8 or count < 0 or packed.ndim < 1
            or np.dtype(packed.dtype) not in tuple(map(np.dtype, allowed))
            or packed.shape[-1] != packed_size(int(count), int(bits), container) or (order == "awq" and bits != 4)):
        raise_reference_error(dev, "unpack", packed, bits, count, order, container)
    unit = np.uint8 if container == "uint8" else np.uint32
    rows = _rows(dev, packed.view(unit) if container == "int32" else packed, unit)
    out = dev.empty((rows.shape[0], int(count)), np.uint8)
    grid, block = stride_grid(dev, rows.shape[0] * int(count))
    dev.launch("packing", "unpack_u8" if container == "uint8" else "unpack_u32", grid, block,
               [rows, out, i64(rows.shape[0]), i64(count), i64(rows.shape[1]), i32(bits), i32(_WIDTH[container]),
                i32(_ORDER[order])])
    return out.reshape(packed.shape[:-1] + (int(count),))


def pack_ternary(dev: Any, trits: Any) -> Any:
    """Backend op: same contract as :func:`refquant.packing.pack_ternary`."""
    if np.dtype(trits.dtype).kind not in "iu" or trits.ndim < 1:
        raise_reference_error(dev, "pack_ternary", trits)
    rows, kind = _codes(dev, trits)
    n = trits.shape[-1]
    units = -(-n // 5)
    out = dev.empty((rows.shape[0], units), np.uint8)
    bad = dev.zeros(1, np.int32)
    grid, block = stride_grid(dev, rows.shape[0] * units)
    dev.launch("packing", f"pack_ternary_{kind}", grid, block, [rows, out, i64(rows.shape[0]), i64(n), i64(units), bad])
    if int(bad[0]):
        raise_reference_error(dev, "pack_ternary", trits)
    return out.reshape(trits.shape[:-1] + (units,))


def unpack_ternary(dev: Any, packed: Any, count: int) -> Any:
    """Backend op: same contract as :func:`refquant.packing.unpack_ternary`."""
    if (not isinstance(count, (int, np.integer)) or count < 0 or packed.ndim < 1
            or np.dtype(packed.dtype) != np.uint8 or packed.shape[-1] != -(-int(count) // 5)):
        raise_reference_error(dev, "unpack_ternary", packed, count)
    rows = _rows(dev, packed, np.uint8)
    out = dev.empty((rows.shape[0], int(count)), np.uint8)
    grid, block = stride_grid(dev, rows.shape[0] * int(count))
    dev.launch("packing", "unpack_ternary", grid, block,
               [rows, out, i64(rows.shape[0]), i64(count), i64(rows.shape[1])])
    return out.reshape(packed.shape[:-1] + (int(count),))
