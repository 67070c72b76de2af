"""A bounds-checked little-endian cursor over an untrusted byte buffer.

Every read first checks that the bytes it needs are there, and every count is checked
against the bytes that remain *before* anything proportional to it is allocated. A
failed check raises :class:`refquant.errors.GGUFError` naming the field and the byte
offset where it starts, so a malformed file never surfaces as ``struct.error``,
``MemoryError``, ``UnicodeDecodeError`` or an ``IndexError``.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from refquant.errors import GGUFError

__all__: list[str] = []  # internal module

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")


class Cursor:
    """Read position ``pos`` in ``buf`` (bytes, memoryview or mmap); never past ``end``."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: Any, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)

    @property
    def remaining(self) -> int:
        """Bytes left between the position and the end of the buffer."""
        return self.end - self.pos

    def fail(self, field: str, message: str, offset: int | None = None) -> GGUFError:
        """A :class:`GGUFError` for ``field`` at ``offset`` (default: the current position)."""
        return GGUFError(f"{field} at offset {self.pos if offset is None else offset}: {message}")

    def need(self, nbytes: int, field: str) -> None:
        """Raise unless ``nbytes`` more bytes are available."""
        if nbytes > self.end - self.pos:
            raise self.fail(field, f"needs {nbytes} bytes but only {self.end - self.pos} remain (truncated file?)")

    def _unpack(self, st: struct.Struct, field: str) -> int:
        self.need(st.size, field)
        (value,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return value

    def u32(self, field: str) -> int:
        """Read a little-endian uint32."""
        return self._unpack(_U32, field)

    def i32(self, field: str) -> int:
        """Read a little-endian int32."""
        return self._unpack(_I32, field)

    def u64(self, field: str) -> int:
        """Read a little-endian uint64."""
        return self._unpack(_U64, field)

    def raw(self, nbytes: int, field: str) -> bytes:
        """Read ``nbytes`` bytes (checked first, so a huge length never allocates)."""
        self.need(nbytes, field)
        out = bytes(self.buf[self.pos:self.pos + nbytes])
        self.pos += nbytes
        return out

    def text(self, nbytes: int, field: str, *, strict: bool) -> str:
        """Read ``nbytes`` of UTF-8. ``strict=False`` keeps invalid bytes losslessly as
        lone surrogates (``errors="surrogateescape"``), so they are written back unchanged."""
        start = self.pos
        data = self.raw(nbytes, field)
        try:
            return data.decode("utf-8", "strict" if strict else "surrogateescape")
        except UnicodeDecodeError as exc:
            raise self.fail(field, f"is not valid UTF-8 ({exc.reason} at byte {exc.start})", start) from None

    def array(self, dtype: np.dtype, count: int, field: str) -> np.ndarray:
        """Read ``count`` elements of ``dtype`` as a new, independent array."""
        itemsize = np.dtype(dtype).itemsize
        if count * itemsize > self.end - self.pos:  # Python ints: no overflow
            raise self.fail(field, f"{count} elements of {itemsize} bytes need {count * itemsize} bytes "
                                   f"but only {self.end - self.pos} remain")
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += count * itemsize
        return out


def pad_to(offset: int, alignment: int) -> int:
    """``offset`` rounded up to a multiple of ``alignment`` (ggml's ``GGML_PAD``)."""
    return (offset + alignment - 1) // alignment * alignment
