"""GGUF metadata values: the 13 value types, typed values, and their byte encoding.

A metadata key/value pair in a ``.gguf`` file is (ggml ``docs/gguf.md``, "File Structure";
``gguf_kv`` in ``ggml/src/gguf.cpp``)::

    gguf_string key          uint64 length, then that many UTF-8 bytes (no terminator)
    uint32      value_type   GGUFValueType below
    value                    scalar: its little-endian bytes (bool: one byte, 0 or 1)
                             STRING: a gguf_string
                             ARRAY:  uint32 item_type, uint64 count, count items (items of an
                                     ARRAY of ARRAY are themselves item_type/count/items)

Default types for plain Python values (what :func:`as_value` infers; they follow
gguf-py's ``GGUFValueType.get_type``, widened where a value would not fit):

=====================  ===========================================================
Python value           GGUF type
=====================  ===========================================================
``bool``               BOOL
``int``                INT32 if it fits, else INT64, else UINT64
``float``              FLOAT32 (rounded to float32; a finite value that overflows
                       float32 is an error: pass ``GGUFValue(x, "float64")``)
``str`` / ``bytes``    STRING
NumPy scalar           the type of its dtype (uint8 -> UINT8, float64 -> FLOAT64, ...)
list / tuple           ARRAY; item type inferred from all items as above (ints: the
                       narrowest of INT32/INT64/UINT64 holding every item; a mix of
                       ints and floats: FLOAT32); an empty list needs an explicit
                       ``GGUFValue([], "array", item_type=...)``
1-D NumPy array        ARRAY of the dtype's type
=====================  ===========================================================

Pass a :class:`GGUFValue` to choose any other type, e.g. ``GGUFValue(7, "uint32")``.
Read values keep the type they were stored with, so a read-modify-write keeps every type.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import Any

import numpy as np

from refquant.io._reader import Cursor

__all__ = ["GGUFValueType", "GGUFValue", "as_value"]

MAX_ARRAY_NESTING = 8  # ggml itself reads no nested arrays; gguf-py writes them
#: Strings and nested arrays the reader builds for one file's metadata (a nested array
#: counts as 4: its objects cost ~4 strings). 2**21 is ~10x a large tokenizer (256k tokens
#: plus merges) and bounds the objects to ~150 MB whatever the file holds.
MAX_METADATA_OBJECTS = 1 << 21
_ARRAY_OBJECT_COST = 4


class GGUFValueType(IntEnum):
    """GGUF metadata value types (``enum gguf_type`` in ``gguf.h``)."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12

    def __str__(self) -> str:
        return self.name.lower()


T = GGUFValueType

# fixed-size types -> little-endian NumPy dtype of one element (BOOL is one byte)
_DTYPES: dict[GGUFValueType, np.dtype] = {
    T.UINT8: np.dtype("<u1"), T.INT8: np.dtype("<i1"), T.UINT16: np.dtype("<u2"),
    T.INT16: np.dtype("<i2"), T.UINT32: np.dtype("<u4"), T.INT32: np.dtype("<i4"),
    T.FLOAT32: np.dtype("<f4"), T.BOOL: np.dtype("<u1"), T.UINT64: np.dtype("<u8"),
    T.INT64: np.dtype("<i8"), T.FLOAT64: np.dtype("<f8"),
}
_STRUCT = {t: struct.Struct("<" + c) for t, c in zip(
    (T.UINT8, T.INT8, T.UINT16, T.INT16, T.UINT32, T.INT32, T.FLOAT32, T.BOOL, T.UINT64, T.INT64, T.FLOAT64),
    "BbHhIif?Qqd")}
_INT_RANGE = {t: (int(np.iinfo(d).min), int(np.iinfo(d).max)) for t, d in _DTYPES.items() if d.kind in "iu"}
_FROM_DTYPE = {np.dtype(d).newbyteorder("="): t for t, d in _DTYPES.items() if t is not T.BOOL}
_FROM_DTYPE[np.dtype(np.bool_)] = T.BOOL

# the smallest encoded value of each type (for bounding counts before reading them)
MIN_VALUE_BYTES = {**{t: d.itemsize for t, d in _DTYPES.items()}, T.STRING: 8, T.ARRAY: 12}


def _value_type(t: Any, name: str) -> GGUFValueType:
    if isinstance(t, GGUFValueType):
        return t
    if isinstance(t, str):
        try:
            return GGUFValueType[t.strip().upper()]
        except KeyError:
            raise ValueError(f"{name}={t!r} is not a GGUF value type; allowed: "
                             f"{', '.join(str(v) for v in GGUFValueType)}") from None
    if isinstance(t, (int, np.integer)) and not isinstance(t, (bool, np.bool_)):
        try:
            return GGUFValueType(int(t))
        except ValueError:
            raise ValueError(f"{name}={int(t)} is not a GGUF value type id (0..12)") from None
    raise TypeError(f"{name} must be a GGUFValueType, its name or id, got {t!r}")


class GGUFValue:
    """A metadata value with its GGUF type.

    Parameters
    ----------
    value
        Scalar types: a Python/NumPy number or bool (range-checked; FLOAT32 is rounded to
        float32). STRING: ``str`` or ``bytes``. ARRAY: a sequence or 1-D array of items
        of ``item_type``; for ``item_type=ARRAY`` each item is a :class:`GGUFValue` of
        type ARRAY or anything :func:`as_value` turns into one.
    type : GGUFValueType, str or int
    item_type : GGUFValueType, str or int, optional
        Required for (and only for) ARRAY.

    After construction ``.value`` is normalized: ``int``/``float``/``bool``/``str`` for
    scalars, a read-only 1-D NumPy array for numeric and bool arrays, a tuple of ``str``
    for string arrays and a tuple of :class:`GGUFValue` for nested arrays. Two values are
    equal when their types and encoded bytes are equal (so NaN equals the same NaN).
    """

    __slots__ = ("value", "type", "item_type", "_bytes")

    def __init__(self, value: Any, type: Any, item_type: Any = None) -> None:  # noqa: A002
        vtype = _value_type(type, "type")
        itype = None if item_type is None else _value_type(item_type, "item_type")
        if (vtype is T.ARRAY) != (itype is not None):
            raise ValueError("item_type must be given for type ARRAY and only for it; "
                             f"got type={vtype}, item_type={itype}")
        object.__setattr__(self, "type", vtype)
        object.__setattr__(self, "item_type", itype)
        if vtype is T.ARRAY:
            norm = _normalize_array(value, itype, "value", depth=1)
        else:
            norm = _normalize_scalar(value, vtype, "value")
        object.__setattr__(self, "value", norm)
        object.__setattr__(self, "_bytes", None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("GGUFValue is immutable")

    def encode(self) -> bytes:
        """The value's bytes as stored after its uint32 type tag."""
        if self._bytes is None:
            object.__setattr__(self, "_bytes", _encode_payload(self))
        return self._bytes  # type: ignore[return-value]

    def to_python(self) -> Any:
        """The plain value: scalars and strings as is, numeric arrays as NumPy arrays,
        string arrays as lists, nested arrays as lists of those."""
        if self.type is T.ARRAY:
            if self.item_type is T.STRING:
                return list(self.value)
            if self.item_type is T.ARRAY:
                return [v.to_python() for v in self.value]
        return self.value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GGUFValue):
            return NotImplemented
        return (self.type, self.item_type, self.encode()) == (other.type, other.item_type, other.encode())

    def __hash__(self) -> int:
        return hash((self.type, self.item_type, self.encode()))

    def __repr__(self) -> str:
        if self.type is T.ARRAY:
            n = len(self.value)
            head = ", ".join(repr(v) for v in list(self.to_python()[:4]))
            return f"GGUFValue([{head}{', ...' if n > 4 else ''}] (n={n}), array, item_type={self.item_type})"
        return f"GGUFValue({self.value!r}, {self.type})"


# --- normalization (construction) ------------------------------------------------------

def _normalize_scalar(value: Any, vtype: GGUFValueType, name: str) -> Any:
    if vtype is T.STRING:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).decode("utf-8", "surrogateescape")
        if isinstance(value, str):
            return value
        raise TypeError(f"{name} must be str or bytes for type string, got {type(value).__name__}")
    if vtype is T.BOOL:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool for type bool, got {value!r}")
        return bool(value)
    if vtype in (T.FLOAT32, T.FLOAT64):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a real number for type {vtype}, got {value!r}")
        if vtype is T.FLOAT64:
            return float(value)
        as64 = float(value)
        with np.errstate(over="ignore"):
            as32 = float(np.float32(as64))
        if math.isfinite(as64) and not math.isfinite(as32):
            raise ValueError(f"{name}={as64!r} overflows float32; use GGUFValue(value, 'float64')")
        return as32
    # integer types
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer for type {vtype}, got {value!r}")
    lo, hi = _INT_RANGE[vtype]
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name}={int(value)} is out of range for {vtype}; allowed {lo}..{hi}")
    return int(value)


def _normalize_array(value: Any, itype: GGUFValueType, name: str, depth: int) -> Any:
    if depth > MAX_ARRAY_NESTING:
        raise ValueError(f"{name}: arrays nest deeper than {MAX_ARRAY_NESTING} levels")
    if itype is T.STRING:
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
            raise TypeError(f"{name} must be a sequence of strings, got {type(value).__name__}")
        return tuple(_normalize_scalar(v.item() if isinstance(v, np.generic) else v, T.STRING, f"{name}[{i}]")
                     for i, v in enumerate(value))
    if itype is T.ARRAY:
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
            raise TypeError(f"{name} must be a sequence of arrays, got {type(value).__name__}")
        out = []
        for i, v in enumerate(value):
            item = v if isinstance(v, GGUFValue) else as_value(v, f"{name}[{i}]")
            if item.type is not T.ARRAY:
                raise TypeError(f"{name}[{i}] must be an array (item_type is array), got type {item.type}")
            _check_depth(item, depth + 1, f"{name}[{i}]")
            out.append(item)
        return tuple(out)
    # numeric / bool arrays
    if isinstance(value, (bytes, bytearray)) and itype is T.UINT8:
        value = np.frombuffer(value, dtype=np.uint8)
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence or 1-D array of {itype} values, got {type(value).__name__}")
    arr = np.asarray(value)
    if arr.ndim != 1 and arr.size != 0:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    arr = arr.reshape(-1)
    dtype = _DTYPES[itype]
    if arr.size == 0:
        out = np.zeros(0, dtype=np.bool_ if itype is T.BOOL else dtype)
    elif itype is T.BOOL:
        if arr.dtype != np.bool_:
            raise TypeError(f"{name} must hold bools for item_type bool, got dtype {arr.dtype}")
        out = arr.astype(np.bool_, copy=True)
    elif itype in (T.FLOAT32, T.FLOAT64):
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold real numbers for item_type {itype}, got dtype {arr.dtype}")
        with np.errstate(over="ignore"):
            out = arr.astype(dtype, copy=True)
        bad = np.isfinite(arr.astype(np.float64)) & ~np.isfinite(out)
        if bad.any():
            raise ValueError(f"{name}[{int(np.argmax(bad))}] overflows {itype}; use item_type float64")
    else:
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers for item_type {itype}, got dtype {arr.dtype}")
        lo, hi = _INT_RANGE[itype]
        if int(arr.min()) < lo or int(arr.max()) > hi:
            raise ValueError(f"{name} has values outside {lo}..{hi}, the range of {itype}")
        out = arr.astype(dtype, copy=True)
    out.flags.writeable = False
    return out


def _check_depth(v: GGUFValue, depth: int, name: str) -> None:
    if depth > MAX_ARRAY_NESTING:
        raise ValueError(f"{name}: arrays nest deeper than {MAX_ARRAY_NESTING} levels")
    if v.item_type is T.ARRAY:
        for i, inner in enumerate(v.value):
            _check_depth(inner, depth + 1, f"{name}[{i}]")


# --- type inference ----------------------------------------------------------------------

def _int_type(values: Sequence[int]) -> GGUFValueType:
    lo, hi = min(values), max(values)
    for t in (T.INT32, T.INT64, T.UINT64):
        if _INT_RANGE[t][0] <= lo and hi <= _INT_RANGE[t][1]:
            return t
    raise ValueError(f"integer {lo if lo < _INT_RANGE[T.INT64][0] else hi} does not fit any GGUF integer type")


def _scalar_type(v: Any) -> GGUFValueType | None:
    """The default type of a scalar, or None for a non-scalar."""
    if isinstance(v, (bool, np.bool_)):
        return T.BOOL
    if isinstance(v, np.generic):
        t = _FROM_DTYPE.get(v.dtype.newbyteorder("="))
        if t is None:
            raise TypeError(f"NumPy {v.dtype} has no GGUF value type")
        return t
    if isinstance(v, int):
        return _int_type([v])
    if isinstance(v, float):
        return T.FLOAT32
    if isinstance(v, (str, bytes, bytearray)):
        return T.STRING
    return None


def as_value(v: Any, name: str = "value") -> GGUFValue:
    """``v`` as a :class:`GGUFValue`: returned as is if it already is one, else with the
    default type of the table in this module's docstring.

    Parameters
    ----------
    v : GGUFValue, bool, int, float, str, bytes, NumPy scalar/array or list
        A value with a GGUF type (see the table in this module's docstring).
    name : str
        Named in error messages.

    Raises
    ------
    TypeError
        ``v`` has no GGUF type (None, dict, complex, float16, mixed-type list ...).
    ValueError
        An empty list (its item type is unknown), an int too large for uint64, a float
        that overflows float32.
    """
    if isinstance(v, GGUFValue):
        return v
    t = _scalar_type(v)
    if t is not None:
        return GGUFValue(v.item() if isinstance(v, np.generic) else v, t)
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "US":
            return GGUFValue([str(s) if v.dtype.kind == "U" else bytes(s) for s in v.reshape(-1)], T.ARRAY, T.STRING)
        it = _FROM_DTYPE.get(v.dtype.newbyteorder("="))
        if it is None:
            raise TypeError(f"{name}: a NumPy array of dtype {v.dtype} has no GGUF item type")
        return GGUFValue(v, T.ARRAY, it)
    if isinstance(v, (list, tuple)):
        if not v:
            raise ValueError(f"{name} is an empty list, whose item type is unknown; "
                             "pass GGUFValue([], 'array', item_type=...)")
        kinds = []
        for item in v:
            if isinstance(item, GGUFValue):
                kinds.append(T.ARRAY if item.type is T.ARRAY else None)
            else:
                st = _scalar_type(item)
                kinds.append(st if st is not None else (T.ARRAY if isinstance(item, (list, tuple, np.ndarray)) else None))
        if None in kinds:
            bad = v[kinds.index(None)]
            raise TypeError(f"{name}[{kinds.index(None)}]={bad!r} ({type(bad).__name__}) has no GGUF value type")
        distinct = set(kinds)
        int_types = {T.INT32, T.INT64, T.UINT64}
        if distinct <= int_types and not any(isinstance(x, np.generic) for x in v):
            return GGUFValue(list(v), T.ARRAY, _int_type([int(x) for x in v]))
        if distinct <= int_types | {T.FLOAT32} and not any(isinstance(x, np.generic) for x in v):
            return GGUFValue([float(x) for x in v], T.ARRAY, T.FLOAT32)
        if len(distinct) != 1:
            raise TypeError(f"{name} mixes item types {sorted(str(k) for k in distinct)}; GGUF arrays hold one type")
        (it,) = distinct
        items = [x.item() if isinstance(x, np.generic) else x for x in v]
        return GGUFValue(items, T.ARRAY, it)
    raise TypeError(f"{name}={v!r} ({type(v).__name__}) has no GGUF value type")


# --- encoding ----------------------------------------------------------------------------

def _encode_payload(v: GGUFValue) -> bytes:
    if v.type is T.STRING:
        data = v.value.encode("utf-8", "surrogateescape")
        return _STRUCT[T.UINT64].pack(len(data)) + data
    if v.type is not T.ARRAY:
        return _STRUCT[v.type].pack(v.value)
    head = _STRUCT[T.UINT32].pack(v.item_type) + _STRUCT[T.UINT64].pack(len(v.value))
    if v.item_type is T.STRING:
        parts = [head]
        for s in v.value:
            data = s.encode("utf-8", "surrogateescape")
            parts += [_STRUCT[T.UINT64].pack(len(data)), data]
        return b"".join(parts)
    if v.item_type is T.ARRAY:
        return head + b"".join(inner.encode() for inner in v.value)
    return head + v.value.astype(_DTYPES[v.item_type], copy=False).tobytes()


def encode_kv(key: str, v: GGUFValue) -> bytes:
    """One metadata key/value pair as stored in the file."""
    k = key.encode("utf-8")
    return _STRUCT[T.UINT64].pack(len(k)) + k + _STRUCT[T.UINT32].pack(v.type) + v.encode()


def normalize_metadata(metadata: Mapping[str, Any] | None) -> dict[str, GGUFValue]:
    """Check keys and give every value its GGUF type (``general.alignment`` defaults to UINT32)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping of str to values, got {type(metadata).__name__}")
    out: dict[str, GGUFValue] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metadata keys must be non-empty strings, got {key!r}")
        if key == "general.alignment" and not isinstance(value, GGUFValue):
            value = GGUFValue(value, T.UINT32)
        out[key] = as_value(value, f"metadata[{key!r}]")
    return out


# --- decoding (untrusted input) ------------------------------------------------------------

def read_value_type(cur: Cursor, field: str) -> GGUFValueType:
    """Read a uint32 value type id, rejecting unknown ids."""
    start = cur.pos
    raw = cur.u32(field)
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise cur.fail(field, f"unknown GGUF value type {raw} (allowed 0..12)", start) from None


def read_string(cur: Cursor, field: str, *, strict: bool) -> str:
    """Read a gguf_string: uint64 length (checked against the remaining bytes), then bytes."""
    start = cur.pos
    n = cur.u64(f"{field} length")
    if n > cur.remaining:
        raise cur.fail(f"{field} length", f"string of {n} bytes but only {cur.remaining} bytes remain", start)
    return cur.text(n, field, strict=strict)


class ObjectBudget:
    """How many Python objects (strings, nested arrays) the metadata of one file may still
    create: their in-memory cost is many times their bytes in the file (an empty nested
    array is 12 bytes on disk and ~200 in memory), so they are counted, not just sized."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = MAX_METADATA_OBJECTS if limit is None else limit
        self.left = self.limit

    def spend(self, cur: Cursor, n: int, field: str, at: int) -> None:
        self.left -= n
        if self.left < 0:
            raise cur.fail(field, f"the metadata holds more than {self.limit} strings and nested arrays "
                                  "(MAX_METADATA_OBJECTS); refusing to build them", at)


def read_value(cur: Cursor, vtype: GGUFValueType, field: str, depth: int = 0,
               budget: ObjectBudget | None = None) -> GGUFValue:
    """Read one value of type ``vtype`` (its type tag already consumed).

    Bounded cost: nesting of at most :data:`MAX_ARRAY_NESTING`, item counts bounded by the
    bytes that remain, and at most :data:`MAX_METADATA_OBJECTS` strings and nested arrays
    per ``budget`` (one per file); past a bound, GGUFError names the field and offset.
    """
    budget = ObjectBudget() if budget is None else budget
    if vtype is T.STRING:
        budget.spend(cur, 1, field, cur.pos)
        return _trusted(read_string(cur, field, strict=False), T.STRING)
    if vtype is not T.ARRAY:
        start = cur.pos
        cur.need(_DTYPES[vtype].itemsize, field)
        (raw,) = _STRUCT[vtype].unpack_from(cur.buf, start)
        cur.pos += _DTYPES[vtype].itemsize
        return _trusted(raw != 0 if vtype is T.BOOL else raw, vtype)
    if depth >= MAX_ARRAY_NESTING:
        raise cur.fail(field, f"arrays nest deeper than {MAX_ARRAY_NESTING} levels")
    itype = read_value_type(cur, f"{field} item type")
    count_at = cur.pos
    count = cur.u64(f"{field} count")
    if count * MIN_VALUE_BYTES[itype] > cur.remaining:
        raise cur.fail(f"{field} count", f"{count} items of type {itype} need at least "
                                         f"{count * MIN_VALUE_BYTES[itype]} bytes but only {cur.remaining} remain",
                       count_at)
    if itype in (T.STRING, T.ARRAY):                  # one Python object per item: counted first
        budget.spend(cur, count * (1 if itype is T.STRING else _ARRAY_OBJECT_COST), f"{field} count", count_at)
    if itype is T.STRING:
        items: Any = tuple(read_string(cur, f"{field}[{i}]", strict=False) for i in range(count))
    elif itype is T.ARRAY:
        items = tuple(read_value(cur, T.ARRAY, f"{field}[{i}]", depth + 1, budget) for i in range(count))
    else:
        arr = cur.array(_DTYPES[itype], count, field)
        items = arr != 0 if itype is T.BOOL else arr
        items.flags.writeable = False
    return _trusted(items, T.ARRAY, itype)


def _trusted(value: Any, vtype: GGUFValueType, itype: GGUFValueType | None = None) -> GGUFValue:
    """A GGUFValue built from already-normalized parts (the reader's values need no checks)."""
    v = object.__new__(GGUFValue)
    object.__setattr__(v, "value", value)
    object.__setattr__(v, "type", vtype)
    object.__setattr__(v, "item_type", itype)
    object.__setattr__(v, "_bytes", None)
    return v
