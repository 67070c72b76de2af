"""One container for quantized tensors of every family.

Every quantized tensor refquant returns is a :class:`QuantizedTensor`, with the same core:

==========================  ==================================================================
``q.format``                format name, lowercase (``"nf4"``, ``"q4_k"``, ``"gptq"``, ...)
``q.shape``                 shape of the float tensor it stands for
``q.dequantize()``          that float tensor (float32, ``q.shape``)
``q.bits_per_weight``       storage bits per weight, scales included
``q.nbytes``                storage bytes (what ``bits_per_weight`` counts)
``q.parts()``               the stored arrays by name (raw bytes, codes, scales, ...)
``q.save(path)``            ``.npz`` or safetensors with a small JSON header
``load_quantized(path)``    the same object back (any family)
``repr(q)``                 one line: class, format, shape, bits per weight (never arrays)
==========================  ==================================================================

The families keep their own classes and attributes (the container is their base class):

- :class:`refquant.bnb.QuantState` (bitsandbytes NF4 / FP4 / 8-bit dynamic; ``packed``,
  ``absmax``, ``nested``); saved as bitsandbytes' state dict (no header: the safetensors
  file is byte for byte the one bitsandbytes writes), recognized by its keys.
- :class:`refquant.io.GGUFTensor` (ggml block bytes ``data``, ``qtype``): a tensor read from
  a ``.gguf`` file or made by :func:`refquant.gguf.quantize_tensor`.
- the algorithm results of :mod:`refquant.algorithms` (``QuantizedWeight``, ``GPTQResult``,
  ``AWQResult``, ``SpQRResult``, ``MixedResult``, ``BitNetWeight``, ``QuantizedActivation``;
  ``codes``, ``scales``, ``zeros``, ``g_idx``, ...), whose packed checkpoint layouts are
  :func:`refquant.layouts.gptq.encode` / :func:`refquant.layouts.awq.encode`.

File layout. The arrays of :meth:`QuantizedTensor.parts` plus a JSON header
``{"schema": 1, "class": "module:Class", "format", "shape", "fields": {...}}`` with the
non-array fields. In safetensors the header is the
metadata entry ``"__refquant__"``; in ``.npz`` it is a uint8 array of that name. The class
is imported only from ``refquant.*`` modules, and must be a QuantizedTensor subclass.
(A ``QuantState`` is the exception: its file is bitsandbytes' state dict, without header.)
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
from typing import Any

import numpy as np

__all__ = ["QuantizedTensor", "load_quantized", "HEADER_KEY"]

#: Name of the JSON header (safetensors metadata key, or ``.npz`` member).
HEADER_KEY = "__refquant__"
_SCHEMA = 1
_NPZ_MAGIC = b"PK\x03\x04"


class QuantizedTensor:
    """Base class of every quantized tensor (see the module docstring for the core).

    A subclass provides ``format`` (a property), ``shape``, ``dequantize()`` and
    ``bits_per_weight``; a dataclass subclass is saved and loaded field by field without
    more code (arrays, scipy.sparse matrices, None, numbers, strings and tuples).
    """

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Placed before @dataclass runs, so the generated repr (every array in full) is
        # not added: a dataclass keeps a __repr__ its class body already has.
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = QuantizedTensor.__repr__  # type: ignore[method-assign]

    @property
    def format(self) -> str:
        """Format name, lowercase."""
        raise NotImplementedError(f"{type(self).__name__} does not define format")

    def dequantize(self) -> np.ndarray:
        """The float32 tensor of ``shape``."""
        raise NotImplementedError(f"{type(self).__name__} does not define dequantize()")

    @property
    def size(self) -> int:
        """Number of weights, ``prod(shape)``."""
        return math.prod(self.shape)  # type: ignore[attr-defined]

    @property
    def nbytes(self) -> int:
        """Storage bytes, ``ceil(bits_per_weight * size / 8)``; the exact bytes held for
        families that hold their storage layout (ggml bytes, bitsandbytes)."""
        return math.ceil(self.bits_per_weight * self.size / 8) if self.size else 0  # type: ignore[attr-defined]

    def parts(self) -> dict[str, np.ndarray]:
        """The stored arrays by name (what :meth:`save` writes), without copying."""
        return self._to_arrays()[0]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path``: ``.npz`` when the name ends so, else safetensors (needs the
        ``safetensors`` package, extra ``io``). Read back with :func:`load_quantized`."""
        arrays, fields = self._to_arrays()
        _write(path, arrays, self._header(fields))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> QuantizedTensor:
        """:func:`load_quantized`, checking that the result is a ``cls``."""
        q = load_quantized(path)
        if not isinstance(q, cls):
            raise TypeError(f"{os.fspath(path)!r} holds a {type(q).__name__}, not a {cls.__name__}")
        return q

    def __repr__(self) -> str:
        try:
            bpw = f"{self.bits_per_weight:.4g} bits/weight"  # type: ignore[attr-defined]
        except (ValueError, ArithmeticError):
            bpw = "bits/weight unknown"
        return f"{type(self).__name__}({self.format}, shape={tuple(self.shape)}, {bpw})"  # type: ignore[attr-defined]

    # -- serialization hooks (dataclasses: field by field) ---------------------------------

    def _header(self, fields: dict[str, Any]) -> dict[str, Any]:
        cls = type(self)
        return {"schema": _SCHEMA, "class": f"{cls.__module__}:{cls.__qualname__}", "format": self.format,
                "shape": [int(d) for d in self.shape], "fields": fields}  # type: ignore[attr-defined]

    def _to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, fields)``: the arrays to store and the JSON-able remaining fields."""
        if not dataclasses.is_dataclass(self):
            raise NotImplementedError(f"{type(self).__name__} does not define _to_arrays")
        arrays: dict[str, np.ndarray] = {}
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            fields[f.name] = _encode(f.name, getattr(self, f.name), arrays)
        return arrays, fields

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], fields: dict[str, Any]) -> QuantizedTensor:
        """Inverse of :meth:`_to_arrays`."""
        if not dataclasses.is_dataclass(cls):
            raise NotImplementedError(f"{cls.__name__} does not define _from_arrays")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        if set(fields) != names:
            raise ValueError(f"stored fields {sorted(fields)} do not match {cls.__name__}'s {sorted(names)}")
        return cls(**{k: _decode(k, v, arrays) for k, v in fields.items()})


# --- field encoding ---------------------------------------------------------------------

def _encode(name: str, value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON-able description of ``value``; its arrays go to ``arrays`` under ``name``."""
    if isinstance(value, np.ndarray):
        arrays[name] = value
        return {"array": name}
    if hasattr(value, "tocoo") and hasattr(value, "nnz"):  # scipy.sparse (SpQR's outliers)
        coo = value.tocoo()
        arrays[f"{name}.row"], arrays[f"{name}.col"] = coo.row.astype(np.int64), coo.col.astype(np.int64)
        arrays[f"{name}.data"] = coo.data
        return {"sparse": [int(d) for d in value.shape]}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple) and all(isinstance(v, (int, float, str, np.generic)) for v in value):
        return {"tuple": [v.item() if isinstance(v, np.generic) else v for v in value]}
    raise TypeError(f"field {name!r} of type {type(value).__name__} cannot be saved")


def _decode(name: str, value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if not isinstance(value, dict):
        return value
    if "array" in value:
        return _member(arrays, value["array"])
    if "tuple" in value:
        return tuple(value["tuple"])
    if "sparse" in value:
        import scipy.sparse

        row, col, data = (_member(arrays, f"{name}.{k}") for k in ("row", "col", "data"))
        return scipy.sparse.csr_matrix((data, (row, col)), shape=tuple(value["sparse"]))
    raise ValueError(f"field {name!r}: unknown stored form {value!r}")


def _member(arrays: dict[str, np.ndarray], key: str) -> np.ndarray:
    try:
        return arrays[key]
    except KeyError:
        raise ValueError(f"the file lacks the array {key!r}") from None


# --- files ------------------------------------------------------------------------------

def _write(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], header: dict[str, Any] | None) -> None:
    """``arrays`` and ``header`` (None: none, as for a bitsandbytes state dict) to ``path``."""
    path = os.fspath(path)
    text = None if header is None else json.dumps(header)
    if path.lower().endswith(".npz"):
        if HEADER_KEY in arrays:
            raise ValueError(f"array name {HEADER_KEY!r} is reserved for the header")
        extra = {} if text is None else {HEADER_KEY: np.frombuffer(text.encode("utf-8"), np.uint8)}
        np.savez(path, **arrays, **extra)
        return
    try:
        from safetensors.numpy import save_file
    except ImportError as exc:
        raise ImportError(f"saving {path!r} as safetensors needs the safetensors package (pip install "
                          f"'refquant[io]'); or give a path ending in .npz") from exc
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, path,
              metadata=None if text is None else {HEADER_KEY: text})


def _read(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == _NPZ_MAGIC:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        raw = arrays.pop(HEADER_KEY, None)
        return arrays, None if raw is None else json.loads(raw.tobytes().decode("utf-8"))
    try:
        from safetensors import safe_open
    except ImportError as exc:
        raise ImportError(f"{path!r} is not an .npz file; reading it as safetensors needs the safetensors "
                          f"package (pip install 'refquant[io]')") from exc
    with safe_open(path, framework="np") as f:
        meta = f.metadata() or {}
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    return arrays, json.loads(meta[HEADER_KEY]) if HEADER_KEY in meta else None


def _class(target: Any) -> type[QuantizedTensor]:
    module_name, _, qualname = str(target).partition(":")
    # The header is data: import nothing outside refquant on its word.
    if not module_name.startswith("refquant.") or not qualname.isidentifier():
        raise ValueError(f"header class {target!r} is not a refquant class")
    cls = getattr(importlib.import_module(module_name), qualname, None)
    if not (isinstance(cls, type) and issubclass(cls, QuantizedTensor)):
        raise ValueError(f"header class {target!r} is not a QuantizedTensor")
    return cls


def load_quantized(path: str | os.PathLike[str]) -> QuantizedTensor:
    """Read a quantized tensor written by :meth:`QuantizedTensor.save` (``.npz`` or
    safetensors, told apart by their first bytes), or a bitsandbytes 4-bit state dict with
    one weight (``weight`` + ``weight.quant_state.bitsandbytes__nf4`` ...; what
    :meth:`refquant.bnb.QuantState.save` writes).

    Parameters
    ----------
    path : str or os.PathLike
        An ``.npz`` or safetensors file (any content: others raise ValueError).

    Raises
    ------
    ValueError
        No refquant header and no bitsandbytes weight; an unknown schema or class;
        missing arrays.
    ImportError
        A safetensors file without the safetensors package.
    """
    path = os.fspath(path)
    arrays, header = _read(path)
    if header is None:
        states = [k for k in arrays if ".quant_state." in k]
        if len(states) == 1:  # read as if its header named QuantState and the weight
            return _class("refquant.bnb:QuantState")._from_arrays(arrays, {"name": states[0].split(".quant_state.")[0]})
        raise ValueError(f"{path!r} has no {HEADER_KEY!r} header (not written by QuantizedTensor.save) and "
                         f"is not a bitsandbytes state dict of one weight")
    if header.get("schema") != _SCHEMA:
        raise ValueError(f"{path!r}: header schema {header.get('schema')!r} is not {_SCHEMA}")
    return _class(header.get("class"))._from_arrays(arrays, header.get("fields") or {})
