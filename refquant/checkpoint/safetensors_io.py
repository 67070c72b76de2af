"""Read and write ``.safetensors`` files one tensor at a time.

Layout (huggingface/safetensors ``docs`` and ``safetensors/src/tensor.rs``, v0.4)::

    offset  field
    0       N              uint64 little-endian: length of the JSON header
    8       header         N bytes of UTF-8 JSON: {name: {"dtype", "shape", "data_offsets": [begin, end]},
                           optional "__metadata__": {str: str}}; writers pad it with spaces
                           to a multiple of 8
    8 + N   data           the tensors' bytes, little-endian, C order; data_offsets are relative
                           to this point, and the tensors tile it without gaps

The reader parses the header and reads one tensor at a time on request, so reading a
140 GB checkpoint holds one tensor in memory. Every offset is checked against the file size
before use: a truncated shard raises :class:`SafetensorsError` naming the tensor, not
a crash when the map is read. The writer takes the list of tensors first (name, dtype,
shape: the header can be written before any data), then their bytes in that order.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

from refquant.errors import RefquantError

__all__ = ["SafetensorsError", "TensorInfo", "SafetensorsFile", "DTYPES", "dtype_name", "header_bytes",
           "write_safetensors"]

MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit (tensor.rs MAX_HEADER_SIZE)

#: safetensors dtype name -> NumPy dtype (little-endian)
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


class SafetensorsError(RefquantError, ValueError):
    """A malformed or truncated ``.safetensors`` file; the message names the file and tensor."""


def dtype_name(dtype: Any) -> str:
    """The safetensors name of a NumPy dtype (``float32`` -> ``"F32"``).

    Parameters
    ----------
    dtype : numpy dtype or anything ``np.dtype`` takes
        One of F64, F32, F16, BF16 (ml_dtypes), I64 .. I8, U64 .. U8, BOOL (TypeError otherwise).
    """
    dt = np.dtype(dtype)
    for name, d in DTYPES.items():
        if d == dt:
            return name
    raise TypeError(f"dtype {dt} has no safetensors name (allowed: {', '.join(str(d) for d in DTYPES.values())})")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry: ``dtype`` (safetensors name), ``shape``, absolute ``[begin, end)`` in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


class SafetensorsFile:
    """A ``.safetensors`` file opened lazily: the header is parsed, the data memory-mapped on first use.

    Picklable (it pickles as its path), so a worker process of an executor can reopen it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            self.tensors, self.metadata = _parse_header(f, self.size, self.path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (SafetensorsFile, (self.path,))

    def raw(self, name: str, rows: tuple[int, int] | None = None) -> np.ndarray:
        """The stored array with its dtype and shape (a new array, read with one ``pread``).

        ``rows=(start, stop)`` reads only those entries of the first axis. Reading into
        private memory rather than returning a view of a memory map keeps the resident set
        at what was asked for: pages of a long-lived map of a 140 GB file would count
        towards it as they are touched.
        """
        info = self.tensors[name]
        dt = DTYPES[info.dtype]
        shape = info.shape
        begin, nbytes = info.begin, info.nbytes
        if rows is not None:
            start, stop = rows
            if not shape or not 0 <= start <= stop <= shape[0]:
                raise ValueError(f"rows={rows!r} is outside tensor {name!r} of shape {shape}")
            row_bytes = nbytes // shape[0] if shape[0] else 0
            begin, nbytes, shape = begin + start * row_bytes, (stop - start) * row_bytes, (stop - start, *shape[1:])
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < info.end:  # the file shrank after it was opened
                raise SafetensorsError(f"{self.path}: tensor {name!r} ends at byte {info.end} but the file now has "
                                       f"{size} bytes (truncated while in use)")
            f.seek(begin)
            out = np.empty(nbytes // dt.itemsize, dtype=dt)
            if f.readinto(memoryview(out.view(np.uint8))) != nbytes:
                raise SafetensorsError(f"{self.path}: tensor {name!r} could not be read in full")
        return out.reshape(shape)


def _parse_header(f: BinaryIO, size: int, path: str) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    head = f.read(8)
    if len(head) < 8:
        raise SafetensorsError(f"{path}: {size} bytes, too short for a safetensors header (8-byte length first)")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER_BYTES or 8 + n > size:
        raise SafetensorsError(f"{path}: header length {n} does not fit the file of {size} bytes "
                               f"(truncated, or not a safetensors file)")
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsError(f"{path}: the header is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: the header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + n
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(int(d) for d in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: tensor {name!r} has a malformed header entry {entry!r}") from None
        if dtype not in DTYPES:
            raise SafetensorsError(f"{path}: tensor {name!r} has dtype {dtype!r}; supported: {', '.join(DTYPES)}")
        expected = int(np.prod(shape, dtype=object)) * DTYPES[dtype].itemsize
        if not (isinstance(begin, int) and isinstance(end, int)) or begin < 0 or end - begin != expected:
            raise SafetensorsError(f"{path}: tensor {name!r} data_offsets {[begin, end]} do not hold "
                                   f"{dtype} {list(shape)} ({expected} bytes)")
        if base + end > size:
            raise SafetensorsError(f"{path}: tensor {name!r} needs bytes up to {base + end} but the file has "
                                   f"{size} (truncated shard: re-download it)")
        tensors[name] = TensorInfo(name, dtype, shape, base + begin, base + end)
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def header_bytes(specs: Iterable[tuple[str, str, tuple[int, ...]]], metadata: Mapping[str, str] | None = None
                 ) -> tuple[bytes, list[int]]:
    """The header of a file holding ``specs`` (name, safetensors dtype, shape) in that order.

    Returns the bytes to write first (length + JSON padded with spaces to a multiple of 8)
    and each tensor's byte count.

    Parameters
    ----------
    specs : iterable of (str, str, tuple of int)
        (name, safetensors dtype name, shape) of each tensor, in file order.
    metadata : mapping of str -> str, or None
        The ``__metadata__`` entry.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    sizes = []
    for name, dtype, shape in specs:
        nbytes = int(np.prod(shape, dtype=object)) * DTYPES[dtype].itemsize
        header[name] = {"dtype": dtype, "shape": [int(d) for d in shape], "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        sizes.append(nbytes)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, sizes


def write_safetensors(f: BinaryIO, specs: list[tuple[str, str, tuple[int, ...]]],
                      payload: Callable[[int, str], Iterable[bytes | np.ndarray]],
                      metadata: Mapping[str, str] | None = None) -> int:
    """Write a safetensors file to the open binary file ``f``, one tensor at a time.

    ``payload(i, name)`` yields the bytes of tensor ``i`` (in chunks); their total must be
    the size its spec implies. Returns the number of bytes written.

    Parameters
    ----------
    f : binary file
        Open for writing, positioned at the start of the file.
    specs : list of (str, str, tuple of int)
        (name, safetensors dtype name, shape) of each tensor, in file order.
    payload : callable
        ``payload(i, name)`` yields tensor ``i``'s bytes (bytes or arrays, in chunks), exactly
        the size its spec implies (ValueError otherwise).
    metadata : mapping of str -> str, or None
        The ``__metadata__`` entry.
    """
    head, sizes = header_bytes(specs, metadata)
    f.write(head)
    total = len(head)
    for i, ((name, _, _), nbytes) in enumerate(zip(specs, sizes)):
        got = 0
        for chunk in payload(i, name):
            buf = memoryview(np.ascontiguousarray(chunk).view(np.uint8).reshape(-1)) if isinstance(chunk, np.ndarray) \
                else memoryview(chunk)
            f.write(buf)
            got += buf.nbytes
        if got != nbytes:
            raise ValueError(f"tensor {name!r}: {got} bytes written, its header entry says {nbytes}")
        total += got
    return total
