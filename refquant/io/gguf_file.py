"""Read and write ``.gguf`` files (GGUF v3; v2, whose layout is identical, is read too).

Layout (ggml ``docs/gguf.md``; ``gguf_init_from_reader`` / ``gguf_write_out`` in
``ggml/src/gguf.cpp``), all integers little-endian::

    offset  field
    0       magic          4 bytes "GGUF"
    4       version        uint32 (3)
    8       tensor_count   uint64
    16      kv_count       uint64
    24      kv_count metadata key/value pairs         (see refquant.io.gguf_metadata)
    ...     tensor_count tensor infos:
                name     gguf_string (uint64 length + UTF-8 bytes)
                n_dims   uint32, at most 4 (GGML_MAX_DIMS)
                dims     uint64[n_dims], ggml order: dims[0] (ne[0]) is the row length
                type     uint32 ggml type id (refquant.io.ggml_types)
                offset   uint64, relative to the data section, a multiple of the alignment
    ...     zero padding up to a multiple of the alignment ("general.alignment",
            a UINT32 power of two; 32 when absent)
    data    tensor bytes; each tensor is followed by zero padding to the alignment

Shapes in this module are in NumPy order (``shape = tuple(reversed(dims))``, so
``shape[-1]`` is the row length), as in gguf-py's reader.

:func:`read` treats the file as untrusted: every length, count, dimension and offset is
checked against the bytes that are there before it is used, and anything malformed
raises :class:`refquant.errors.GGUFError` naming the field and its byte offset. Counts
are bounded by the smallest encoding of what they count, so no allocation grows with a
count that the file cannot back. Tensor data is not copied: each tensor's ``data`` is a
read-only view of a memory map of the file.

What the reader accepts (stricter than gguf-py's ``GGUFReader``, a little looser than
ggml, noted): version 2 or 3 (1 and byte-swapped big-endian files are rejected);
non-empty, unique UTF-8 keys; known value types; ``general.alignment`` of type UINT32
and a power of two; unique UTF-8 tensor names; n_dims <= 4; every dim < 2**63 and
their product < 2**63 - 1 (zero dims are allowed, as in ggml); a known ggml type whose
block size divides the row length; offsets aligned, inside the file and not overlapping
(ggml also requires them to be in file order without gaps; refquant's writer writes them
that way). String *values* that are not valid UTF-8 are kept losslessly (as
``surrogateescape`` lone surrogates) and written back unchanged; keys and tensor names
must be valid UTF-8. Bool values other than 0/1 read as True, as in ggml.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

from refquant.errors import GGUFError, UnsupportedError
from refquant.io._reader import Cursor, pad_to
from refquant.io.ggml_types import (PLAIN_DTYPES, GGMLType, bits_per_weight, block_size, ggml_type, tensor_nbytes,
                                   type_size)
from refquant.io.gguf_metadata import (
    MIN_VALUE_BYTES,
    ObjectBudget,
    GGUFValue,
    GGUFValueType,
    encode_kv,
    normalize_metadata,
    read_string,
    read_value,
    read_value_type,
)
from refquant.quantized_tensor import QuantizedTensor

__all__ = ["GGUFFile", "GGUFTensor", "quantize_tensor", "read", "parse", "write", "write_streaming", "replace_file",
           "GGUF_MAGIC", "GGUF_VERSION", "DEFAULT_ALIGNMENT", "MAX_DIMS", "MAX_NAME_BYTES"]

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
READ_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4         # GGML_MAX_DIMS
MAX_NAME_BYTES = 63  # GGML_MAX_NAME - 1: llama.cpp rejects longer tensor names
_INT64_MAX = 2**63 - 1
# smallest possible encodings, used to bound counts before reading them
_MIN_KV_BYTES = 8 + 1 + 4 + min(MIN_VALUE_BYTES.values())  # key length, 1-byte key, type, value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8                     # name length, n_dims, type, offset


class GGUFTensor(QuantizedTensor):
    """One tensor of a ``.gguf`` file, or ggml block bytes held in memory
    (:func:`quantize_tensor`); a :class:`refquant.QuantizedTensor` whose
    ``format`` is the ggml type name and ``dequantize()`` is :meth:`to_float`.

    Attributes
    ----------
    name : str
    qtype : GGMLType
        The ggml type (``str(qtype)`` is the lowercase name, e.g. ``"q4_k"``).
    shape : tuple of int
        NumPy order: ``shape[-1]`` is the row length (ggml's ``ne[0]``).
    offset : int or None
        Absolute byte offset of the data in the file (None for a tensor not read from one).
    data : ndarray of uint8, shape (nbytes,)
        The stored bytes (for a file, a read-only view of its memory map).
    """

    __slots__ = ("name", "qtype", "shape", "offset", "data")

    def __init__(self, name: str, qtype: GGMLType, shape: tuple[int, ...], offset: int | None,
                 data: np.ndarray) -> None:
        self.name, self.qtype, self.shape, self.offset, self.data = name, qtype, shape, offset, data

    @property
    def format(self) -> str:
        """The ggml type name, e.g. ``"q4_k"``."""
        return str(self.qtype)

    @property
    def bits_per_weight(self) -> float:
        """Bits per weight of the ggml type, ``8 * type_size / block_size`` (for plain
        element types their width)."""
        return bits_per_weight(self.qtype)

    def dequantize(self, *, backend: Any = None) -> np.ndarray:
        """:meth:`to_float`: the values as float32 of ``shape``; ``backend`` (``"numba"``,
        ``"cupy"`` ...) runs op ``gguf_dequantize`` of that backend for the block types
        it implements (:func:`refquant.gguf.dequantize`)."""
        if backend is None or self.qtype in PLAIN_DTYPES:
            return self.to_float()
        from refquant.gguf import dequantize

        return dequantize(self.array(), str(self.qtype), self.shape, backend=backend)

    def _to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return ({"data": np.asarray(self.data).reshape(-1)},
                {"name": self.name, "qtype": str(self.qtype), "shape": [int(d) for d in self.shape], "offset": self.offset})

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], fields: dict[str, Any]) -> GGUFTensor:
        data = np.asarray(arrays.get("data", np.zeros(0, np.uint8)))
        qtype, shape = ggml_type(fields.get("qtype")), tuple(int(d) for d in fields.get("shape", ()))
        if data.dtype != np.uint8 or data.size != tensor_nbytes(qtype, shape):
            raise ValueError(f"stored data ({data.dtype}, {data.size} bytes) is not the {tensor_nbytes(qtype, shape)} "
                             f"bytes of {qtype} of shape {shape}")
        return cls(str(fields.get("name", "")), qtype, shape, fields.get("offset"), data.reshape(-1))

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's data (without padding)."""
        return int(self.data.size)

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=object)) if self.shape else 1

    @property
    def dims(self) -> tuple[int, ...]:
        """The shape in ggml order (``ne``), as stored in the file."""
        return tuple(reversed(self.shape))

    def array(self) -> np.ndarray:
        """The data as an array without copying.

        Plain element types (F32, F16, BF16, F64, I8..I64) give that dtype (BF16 as
        ``ml_dtypes.bfloat16``) with ``shape``; block types give uint8 of shape
        ``(*shape[:-1], row_bytes)``, the layout ``refquant.gguf.quantize`` returns.
        """
        if self.qtype in PLAIN_DTYPES:
            dtype = np.dtype(ml_dtypes.bfloat16) if self.qtype is GGMLType.BF16 else PLAIN_DTYPES[self.qtype]
            return self.data.view(dtype).reshape(self.shape)
        rows_shape = self.shape[:-1] if self.shape else ()
        n = self.shape[-1] if self.shape else 1
        return self.data.reshape(*rows_shape, n // block_size(self.qtype) * type_size(self.qtype))

    def to_float(self) -> np.ndarray:
        """The values as float32 of ``shape`` (a new array).

        Plain types are converted here (BF16 by placing its 16 bits above 16 zero bits,
        which is exact; F64 and I64 round to float32). Block types are dequantized by
        ``refquant.gguf.dequantize``, imported only when needed.

        Raises
        ------
        UnsupportedError
            The block codecs (``refquant.gguf``) are not available.
        """
        if self.qtype is GGMLType.BF16:
            bits = self.data.view("<u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(self.shape)
        if self.qtype in PLAIN_DTYPES:
            return self.data.view(PLAIN_DTYPES[self.qtype]).astype(np.float32).reshape(self.shape)
        try:
            from refquant.gguf import dequantize
        except ImportError as exc:
            raise UnsupportedError(f"dequantizing tensor {self.name!r} ({self.qtype}) needs refquant.gguf, "
                                   f"which could not be imported: {exc}") from exc
        rows = self.array().reshape(-1, self.array().shape[-1]) if self.shape else self.array().reshape(1, -1)
        return np.asarray(dequantize(rows, str(self.qtype), self.shape), dtype=np.float32).reshape(self.shape)

    def __repr__(self) -> str:
        where = "" if self.offset is None else f", offset={self.offset}"
        return (f"GGUFTensor({self.name!r}, {self.qtype}, shape={self.shape}, {self.bits_per_weight:.4g} bits/weight, "
                f"nbytes={self.nbytes}{where})")


def quantize_tensor(x: Any, qtype: Any, imatrix: Any = None, *, name: str = "", backend: Any = None) -> GGUFTensor:
    """:func:`refquant.gguf.quantize`, returned as a :class:`GGUFTensor`, the container of
    ggml bytes that carries their type and the float shape (as a tensor read from a
    ``.gguf`` file does): ``.dequantize()``, ``.bits_per_weight``, ``.save()``, and
    :func:`write` takes it as a tensor. Public as ``refquant.gguf.quantize_tensor``.

    Parameters
    ----------
    name : str
        The tensor's name (used by :func:`write` when it is written to a file); any string.
    x : array_like of float32 (float16/float64 accepted), shape (..., n_per_row)
        Finite; ``n_per_row`` a multiple of the type's block size.
    qtype : str or int
        A supported block type (:func:`refquant.gguf.qtypes`): name (any case) or ggml id.
    imatrix : array_like of float32, shape (n_per_row,), or None
        Importance of each column, finite and >= 0; required for iq2_xxs, iq2_xs, iq1_s.
    backend : str, Backend or None
        None or ``"reference"``: the reference; else a registered backend's ``gguf_quantize``.

    Returns
    -------
    GGUFTensor
        ``data`` the bytes (uint8, flat), ``qtype``, ``shape`` the float shape (a 1-D
        ``x`` is one row), ``offset`` None.
    """
    # the codecs load only when a tensor is quantized (reading a file does not need them)
    from refquant.gguf import checked_format, quantize

    fmt = checked_format(qtype)
    data = quantize(x, qtype, imatrix, backend=backend)
    shape = data.shape[:-1] + (data.shape[-1] // fmt.type_size * fmt.block_size,)
    return GGUFTensor(str(name), ggml_type(fmt.type_id), shape, None, data.reshape(-1))


class GGUFFile:
    """A parsed ``.gguf`` file.

    Attributes
    ----------
    version : int
    metadata : dict of str to GGUFValue
        In file order; ``metadata[key].value`` is the value, ``.type`` its GGUF type.
    tensors : dict of str to GGUFTensor
        In file order.
    alignment : int
    data_offset : int
        Absolute offset of the data section.
    path : str or None
    """

    __slots__ = ("version", "metadata", "tensors", "alignment", "data_offset", "path", "_buffer")

    def __init__(self, version: int, metadata: dict[str, GGUFValue], tensors: dict[str, GGUFTensor],
                 alignment: int, data_offset: int, path: str | None, buffer: Any = None) -> None:
        self.version, self.metadata, self.tensors = version, metadata, tensors
        self.alignment, self.data_offset, self.path, self._buffer = alignment, data_offset, path, buffer

    def get(self, key: str, default: Any = None) -> Any:
        """The plain value of metadata ``key`` (see :meth:`GGUFValue.to_python`), or ``default``."""
        v = self.metadata.get(key)
        return default if v is None else v.to_python()

    def __repr__(self) -> str:
        return (f"GGUFFile(version={self.version}, {len(self.metadata)} metadata keys, "
                f"{len(self.tensors)} tensors, alignment={self.alignment}, path={self.path!r})")


# --- reading -----------------------------------------------------------------------------

def read(path: str | os.PathLike[str]) -> GGUFFile:
    """Read a ``.gguf`` file; tensor data stays in a read-only memory map.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    GGUFFile

    Raises
    ------
    GGUFError
        The file is malformed, truncated or of an unsupported version; the message names
        the field and its byte offset.
    OSError
        The file cannot be opened.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        buf: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    return parse(buf, path=path)


def parse(buffer: Any, path: str | None = None) -> GGUFFile:
    """Parse a ``.gguf`` image held in ``buffer`` (bytes, bytearray, memoryview or mmap).

    Tensor ``data`` are views of ``buffer``; see :func:`read` for the checks and errors.

    Parameters
    ----------
    buffer : bytes, bytearray, memoryview or mmap
        A whole ``.gguf`` image (any content: malformed ones raise GGUFError).
    path : str or None
        Recorded as the file's ``path`` (None: not read from a file).
    """
    cur = Cursor(buffer)
    magic = cur.raw(4, "magic") if cur.remaining >= 4 else None
    if magic != GGUF_MAGIC:
        found = bytes(buffer[:4])
        raise GGUFError(f"magic at offset 0: expected b'GGUF', got {found!r} (not a GGUF file)")
    version = _read_version(cur)
    at = cur.pos
    n_tensors = cur.u64("tensor_count")
    n_kv = cur.u64("kv_count")
    if n_kv * _MIN_KV_BYTES > cur.remaining:
        raise cur.fail("kv_count", f"{n_kv} key/value pairs need at least {n_kv * _MIN_KV_BYTES} bytes "
                                   f"but only {cur.remaining} remain", at + 8)
    if n_tensors * _MIN_TENSOR_INFO_BYTES > cur.remaining - n_kv * _MIN_KV_BYTES:
        raise cur.fail("tensor_count", f"{n_tensors} tensor infos need at least "
                                       f"{n_tensors * _MIN_TENSOR_INFO_BYTES} bytes after the metadata "
                                       f"but only {cur.remaining} bytes remain in all", at)
    metadata = _read_metadata(cur, n_kv)
    alignment = _alignment(metadata)
    infos = [_read_tensor_info(cur, i, alignment) for i in range(n_tensors)]
    names = set()
    for name, _, _, _, info_at in infos:
        if name in names:
            raise GGUFError(f"tensor info name at offset {info_at}: duplicate tensor name {name!r}")
        names.add(name)
    data_offset = pad_to(cur.pos, alignment)
    if infos and data_offset > cur.end:
        raise GGUFError(f"data section at offset {data_offset}: the file ends at {cur.end} "
                        f"(padding after the tensor infos is missing)")
    tensors = _place_tensors(buffer, infos, data_offset, cur.end)
    return GGUFFile(version, metadata, tensors, alignment, data_offset, path, buffer)


def _read_version(cur: Cursor) -> int:
    at = cur.pos
    version = cur.u32("version")
    if version not in READ_VERSIONS:
        if version and not version & 0xFFFF:
            why = "looks byte-swapped: big-endian GGUF files are not supported"
        elif version == 1:
            why = "GGUF v1 (32-bit counts) is not supported"
        else:
            why = "not a supported version"
        raise cur.fail("version", f"{version} ({why}; readable: {', '.join(map(str, READ_VERSIONS))})", at)
    return version


def _read_metadata(cur: Cursor, n_kv: int) -> dict[str, GGUFValue]:
    metadata: dict[str, GGUFValue] = {}
    budget = ObjectBudget()  # strings and nested arrays of the whole file
    for i in range(n_kv):
        at = cur.pos
        key = read_string(cur, f"metadata key #{i}", strict=True)
        if not key:
            raise cur.fail(f"metadata key #{i}", "is empty", at)
        if key in metadata:
            raise cur.fail(f"metadata key #{i}", f"duplicate key {key!r}", at)
        vtype = read_value_type(cur, f"metadata {key!r} type")
        metadata[key] = read_value(cur, vtype, f"metadata {key!r} value", budget=budget)
    return metadata


def _alignment(metadata: dict[str, GGUFValue]) -> int:
    v = metadata.get("general.alignment")
    if v is None:
        return DEFAULT_ALIGNMENT
    if v.type is not GGUFValueType.UINT32:
        raise GGUFError(f"metadata 'general.alignment': type is {v.type}, the format requires uint32")
    if v.value == 0 or v.value & (v.value - 1):
        raise GGUFError(f"metadata 'general.alignment': {v.value} is not a power of two")
    return v.value


def _read_tensor_info(cur: Cursor, i: int, alignment: int) -> tuple[str, GGMLType, tuple[int, ...], int, int]:
    at = cur.pos
    name = read_string(cur, f"tensor info #{i} name", strict=True)
    label = f"tensor {name!r}"
    n_dims_at = cur.pos
    n_dims = cur.u32(f"{label} n_dims")
    if n_dims > MAX_DIMS:
        raise cur.fail(f"{label} n_dims", f"{n_dims} dimensions; at most {MAX_DIMS} allowed", n_dims_at)
    dims = []
    n_elements = 1
    for j in range(n_dims):
        d_at = cur.pos
        d = cur.u64(f"{label} dims[{j}]")
        if d > _INT64_MAX:
            raise cur.fail(f"{label} dims[{j}]", f"{d} does not fit int64", d_at)
        n_elements *= d
        if n_elements >= _INT64_MAX:
            raise cur.fail(f"{label} dims[{j}]", f"the element count {n_elements} does not fit int64", d_at)
        dims.append(d)
    type_at = cur.pos
    type_id = cur.u32(f"{label} type")
    try:
        qtype = GGMLType(type_id)
    except ValueError:
        raise cur.fail(f"{label} type", f"unknown ggml type id {type_id}", type_at) from None
    row = dims[0] if dims else 1
    if row % block_size(qtype):
        raise cur.fail(f"{label} dims[0]", f"row length {row} is not a multiple of the {qtype} block "
                                           f"size {block_size(qtype)}", n_dims_at + 4)
    off_at = cur.pos
    offset = cur.u64(f"{label} offset")
    if offset % alignment:
        raise cur.fail(f"{label} offset", f"{offset} is not a multiple of the alignment {alignment}", off_at)
    return name, qtype, tuple(reversed(dims)), offset, at


def _place_tensors(buffer: Any, infos: list, data_offset: int, end: int) -> dict[str, GGUFTensor]:
    spans = []
    for name, qtype, shape, offset, _ in infos:
        start = data_offset + offset
        nbytes = tensor_nbytes(qtype, shape) if shape else type_size(qtype)
        if start + nbytes > end:
            raise GGUFError(f"tensor {name!r} data at offset {start}: {nbytes} bytes would end at "
                            f"{start + nbytes}, past the end of the file ({end})")
        spans.append((start, nbytes, name))
    ordered = sorted((s for s in spans if s[1] > 0), key=lambda s: s[0])
    for (a_start, a_len, a_name), (b_start, _, b_name) in zip(ordered, ordered[1:]):
        if a_start + a_len > b_start:
            raise GGUFError(f"tensor {b_name!r} data at offset {b_start}: overlaps tensor {a_name!r} "
                            f"[{a_start}, {a_start + a_len})")
    tensors = {}
    for (name, qtype, shape, _, _), (start, nbytes, _) in zip(infos, spans):
        data = np.frombuffer(buffer, dtype=np.uint8, count=nbytes, offset=start) if nbytes else np.zeros(0, np.uint8)
        if data.flags.writeable:
            data = data.view()
            data.flags.writeable = False
        tensors[name] = GGUFTensor(name, qtype, shape, start, data)
    return tensors


# --- writing -----------------------------------------------------------------------------

_DTYPE_TO_TYPE = {
    np.dtype(np.float32): GGMLType.F32, np.dtype(np.float16): GGMLType.F16,
    np.dtype(ml_dtypes.bfloat16): GGMLType.BF16, np.dtype(np.float64): GGMLType.F64,
    np.dtype(np.int8): GGMLType.I8, np.dtype(np.int16): GGMLType.I16,
    np.dtype(np.int32): GGMLType.I32, np.dtype(np.int64): GGMLType.I64,
}


def write(path: str | os.PathLike[str], tensors: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> None:
    """Write a GGUF v3 file.

    Parameters
    ----------
    path : str or os.PathLike
    tensors : mapping of str to tensor
        In the order they are written. Each value is one of

        * a NumPy array of float32, float16, ``ml_dtypes.bfloat16``, float64, int8, int16,
          int32 or int64: written as F32, F16, BF16, F64, I8, I16, I32 or I64 with its shape;
        * ``(data, qtype, shape)``: already-encoded bytes (uint8 array or bytes-like, e.g.
          the output of ``refquant.gguf.quantize``) of ggml type ``qtype`` (name such as
          ``"q4_k"`` or id) for a tensor of ``shape`` (NumPy order, ``shape[-1]`` the row
          length, a multiple of the type's block size); the byte count must match;
        * a :class:`GGUFTensor` from :func:`read` (copied as stored).

        Names must be non-empty and at most 63 UTF-8 bytes (llama.cpp's limit); shapes
        have 1 to 4 dimensions.
    metadata : mapping of str to value, optional
        In the order they are written. Values are :class:`GGUFValue` or plain values typed
        by the defaults in :mod:`refquant.io.gguf_metadata` (int -> INT32, float ->
        FLOAT32, ...). ``"general.alignment"`` (a power of two, stored as UINT32) sets
        the data alignment; the default is 32.

    Raises
    ------
    TypeError, ValueError
        A tensor or value that cannot be written; the message names it.
    """
    meta = normalize_metadata(metadata)
    alignment = _write_alignment(meta)
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a mapping of name to tensor, got {type(tensors).__name__}")
    entries = [_tensor_entry(name, t) for name, t in tensors.items()]
    header = _header(meta, [(name, qtype, shape) for name, qtype, shape, _ in entries], alignment)
    with replace_file(path) as f:
        f.write(header)
        for _, _, _, payload in entries:
            f.write(payload.data)
            f.write(bytes(pad_to(payload.nbytes, alignment) - payload.nbytes))


def _header(meta: dict[str, GGUFValue], infos: list[tuple[str, GGMLType, tuple[int, ...]]], alignment: int) -> bytes:
    """Magic, counts, metadata and tensor infos, padded to the alignment (the bytes before the data)."""
    header = bytearray(GGUF_MAGIC)
    header += struct.pack("<IQQ", GGUF_VERSION, len(infos), len(meta))
    for key, value in meta.items():
        header += encode_kv(key, value)
    offset = 0
    for name, qtype, shape in infos:
        encoded = name.encode("utf-8")
        header += struct.pack("<Q", len(encoded)) + encoded + struct.pack("<I", len(shape))
        header += struct.pack(f"<{len(shape)}Q", *reversed(shape))
        header += struct.pack("<IQ", qtype, offset)
        offset += pad_to(tensor_nbytes(qtype, shape), alignment)
    header += bytes(pad_to(len(header), alignment) - len(header))
    return bytes(header)


def write_streaming(f: BinaryIO, infos: list[tuple[str, Any, tuple[int, ...]]], metadata: Mapping[str, Any] | None,
                    payload: Callable[[int, str], Iterable[Any]]) -> int:
    """Write a GGUF v3 image to the open binary file ``f`` one tensor at a time.

    The header depends only on the names, types and shapes, so it is written first;
    ``payload(i, name)`` then yields the bytes of tensor ``i`` (uint8 arrays or bytes-like,
    in chunks), whose total must be the size that its type and shape imply. Memory use is
    that of one chunk. ``infos`` are ``(name, qtype, shape)`` with shapes in NumPy order;
    names, shapes and metadata are checked as in :func:`write`. Returns the bytes written.
    Use with :func:`replace_file` for an atomic file.

    Parameters
    ----------
    f : binary file
        Open for writing, positioned at the start of the image.
    infos : list of (str, qtype, tuple of int)
        (name, ggml type, shape in NumPy order) of each tensor, in file order: names non-empty,
        at most 63 UTF-8 bytes; 1 to 4 dimensions; row length a multiple of the block size.
    metadata : mapping of str -> value, or None
        Key/value pairs (:func:`refquant.io.gguf_metadata.as_value` types).
    payload : callable
        ``payload(i, name)`` yields tensor ``i``'s bytes in chunks, exactly the size its
        type and shape imply (ValueError otherwise).
    """
    meta = normalize_metadata(metadata)
    alignment = _write_alignment(meta)
    checked = []
    for name, qtype_arg, shape in infos:
        qtype = ggml_type(qtype_arg, f"tensors[{name!r}] qtype")
        _check_info(name, shape)
        try:
            tensor_nbytes(qtype, tuple(shape))
        except ValueError as exc:
            raise ValueError(f"tensors[{name!r}]: {exc}") from None
        checked.append((name, qtype, tuple(int(d) for d in shape)))
    header = _header(meta, checked, alignment)
    f.write(header)
    total = len(header)
    for i, (name, qtype, shape) in enumerate(checked):
        expected = tensor_nbytes(qtype, shape)
        got = 0
        for chunk in payload(i, name):
            buf = memoryview(np.ascontiguousarray(chunk).reshape(-1).view(np.uint8)) if isinstance(chunk, np.ndarray) \
                else memoryview(chunk)
            f.write(buf)
            got += buf.nbytes
        if got != expected:
            raise ValueError(f"tensors[{name!r}]: {got} bytes were produced; a {qtype} tensor of shape {shape} "
                             f"takes {expected}")
        pad = pad_to(expected, alignment) - expected
        f.write(bytes(pad))
        total += expected + pad
    return total


def _check_info(name: Any, shape: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"tensor names must be non-empty strings, got {name!r}")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(f"tensor name {name!r} is {len(name.encode('utf-8'))} UTF-8 bytes; "
                         f"llama.cpp allows at most {MAX_NAME_BYTES}")
    if not 1 <= len(shape) <= MAX_DIMS:
        raise ValueError(f"tensors[{name!r}] has {len(shape)} dimensions (shape {tuple(shape)}); "
                         f"GGUF allows 1 to {MAX_DIMS}")


@contextlib.contextmanager
def replace_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a new file next to ``path`` for writing and move it over ``path`` when done.

    Writing never truncates the existing file in place: a :class:`GGUFFile` read from
    ``path`` keeps a memory map of it, and truncating a mapped file makes later reads of
    the map crash the process (SIGBUS). On error the partial file is removed and
    ``path`` is left as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace; its folder must exist and be writable.
    """
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_alignment(meta: dict[str, GGUFValue]) -> int:
    v = meta.get("general.alignment")
    if v is None:
        return DEFAULT_ALIGNMENT
    if v.type is not GGUFValueType.UINT32:
        raise ValueError(f"metadata['general.alignment'] must have type uint32, got {v.type}")
    if v.value == 0 or v.value & (v.value - 1):
        raise ValueError(f"metadata['general.alignment']={v.value} must be a power of two")
    return v.value


def _tensor_entry(name: Any, t: Any) -> tuple[str, GGMLType, tuple[int, ...], np.ndarray]:
    _check_info(name, (1,))
    label = f"tensors[{name!r}]"
    if isinstance(t, GGUFTensor):
        qtype, shape, payload = t.qtype, t.shape, t.data
    elif isinstance(t, np.ndarray):
        qtype = _DTYPE_TO_TYPE.get(t.dtype.newbyteorder("=") if t.dtype.byteorder != "|" else t.dtype)
        if qtype is None:
            raise TypeError(f"{label} has dtype {t.dtype}; arrays must be float32, float16, bfloat16, float64, "
                            "int8, int16, int32 or int64 (pass (data, qtype, shape) for encoded bytes)")
        shape = t.shape
        payload = np.ascontiguousarray(t, dtype=t.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)
    elif isinstance(t, tuple) and len(t) == 3:
        data, qtype_arg, shape_arg = t
        qtype = ggml_type(qtype_arg, f"{label} qtype")
        if not isinstance(shape_arg, (tuple, list)) or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0 for d in shape_arg):
            raise ValueError(f"{label} shape must be a tuple of non-negative ints, got {shape_arg!r}")
        shape = tuple(int(d) for d in shape_arg)
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint8:
                raise TypeError(f"{label} data must be uint8 bytes, got dtype {data.dtype}")
            payload = np.ascontiguousarray(data).reshape(-1)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            payload = np.frombuffer(data, dtype=np.uint8)
        else:
            raise TypeError(f"{label} data must be a uint8 array or bytes, got {type(data).__name__}")
    else:
        raise TypeError(f"{label} must be an array, a (data, qtype, shape) tuple or a GGUFTensor, "
                        f"got {type(t).__name__}")
    _check_info(name, shape)
    try:
        expected = tensor_nbytes(qtype, tuple(shape))
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None
    if payload.nbytes != expected:
        raise ValueError(f"{label}: a {qtype} tensor of shape {tuple(shape)} takes {expected} bytes, got {payload.nbytes}")
    return name, qtype, tuple(int(d) for d in shape), payload
