"""bitsandbytes quantization, bit for bit: NF4/FP4 (+ double quantization), 8-bit
dynamic blockwise, and LLM.int8 vector-wise int8.

>>> import numpy as np, refquant.bnb as bnb
>>> w = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
>>> q = bnb.quantize_4bit(w, "nf4", blocksize=64, double_quant=True)
>>> q.packed.dtype, q.packed.shape, q.absmax.dtype, q.absmax.shape
(dtype('uint8'), (524288,), dtype('float32'), (16384,))
>>> round(q.bits_per_weight, 5)   # 4 + 8/64 + 32/(64*256) + 32/n
4.12698
>>> bnb.dequantize_4bit(q).shape
(1024, 1024)

The quantized tensor is a :class:`QuantState` (named after bitsandbytes' container):
``packed`` bytes in bitsandbytes' order, the float32 per-block ``absmax`` (already
dequantized when the statistics are double-quantized; the 8-bit form is in ``nested``),
and the metadata needed to dequantize. :meth:`QuantState.validate` checks that they
agree; :func:`save` / :func:`load` write and read safetensors files with the state-dict
keys bitsandbytes uses (``refquant.layouts.bnb_state``), so either library reads the
other's NF4/FP4 files.

For float16, bfloat16 or float32 input the bytes and absmax equal those of
bitsandbytes 0.50.2 on CPU; the rules and their sources are in
:mod:`refquant.formats.bnb`. Non-finite input raises ValueError: bitsandbytes' result
for NaN/inf is an artefact of its kernels, not a defined value.

The ``bnb_*`` functions are the same operations with arrays in and arrays out (no
container), as the Backend ops of ``accel/ops.py`` are called.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np

from refquant._backend import call_op, is_reference
from refquant._validate import (as_float_array, as_int_array, check_choice, check_float, check_int, check_name,
                                check_power_of_two)
from refquant.errors import ValidationError
from refquant.formats import bnb as _fmt
from refquant.formats.bnb import BLOCKSIZES_4BIT, BLOCKSIZES_8BIT, NESTED_BLOCKSIZE, dynamic_map
from refquant.layouts.bnb_state import read_state_dict, to_state_dict
from refquant.prepare import into
from refquant.quantized_tensor import QuantizedTensor, _read, _write

__all__ = [
    "QuantState", "NestedAbsmax", "QUANT_TYPES", "DTYPES", "BLOCKSIZES_4BIT", "BLOCKSIZES_8BIT",
    "quantize_4bit", "dequantize_4bit", "quantize_blockwise", "dequantize_blockwise",
    "int8_vectorwise_quant", "int8_vectorwise_dequant", "dynamic_map", "save", "load",
    "bnb_quantize_4bit", "bnb_dequantize_4bit", "bnb_quantize_blockwise", "bnb_dequantize_blockwise",
    "bnb_double_quantize",
]

F32 = np.float32
#: ``quant_type`` values: the two 4-bit codebooks and the 8-bit dynamic map.
QUANT_TYPES = ("nf4", "fp4", "dynamic8")
#: Input dtypes (bitsandbytes' ``A.dtype`` check); the name is kept as ``QuantState.dtype``.
DTYPES = ("float32", "float16", "bfloat16")
_INPUT_DTYPES = (np.float32, np.float16, ml_dtypes.bfloat16)


# ------------------------------------------------------------------------ container


@dataclass(frozen=True, eq=False)
class NestedAbsmax:
    """Double quantization of the per-block absmax (QLoRA section 3, "Double Quantization").

    Attributes
    ----------
    codes : ndarray of uint8, shape (n_blocks,)
        Dynamic-map codes of ``absmax - offset`` (bitsandbytes key ``absmax``).
    absmax : ndarray of float32, shape (ceil(n_blocks / blocksize),)
        Second-level absmax (``nested_absmax``).
    offset : float
        The float32 mean of the first-level absmax (``nested_offset``).
    blocksize : int
        Second-level block size, 256 (``nested_blocksize``).
    code : ndarray of float32, shape (256,)
        The dynamic map (``nested_quant_map``).
    dtype : str
        dtype of the first-level absmax, "float32" (``nested_dtype``).
    """

    codes: np.ndarray
    absmax: np.ndarray
    offset: float
    blocksize: int = NESTED_BLOCKSIZE
    code: np.ndarray = field(default_factory=dynamic_map)
    dtype: str = "float32"

    def dequantize(self) -> np.ndarray:
        """The first-level absmax, ``code[codes] * absmax[i // blocksize] + offset`` (float32)."""
        return _fmt.double_dequantize(self.codes, self.absmax, F32(self.offset), self.blocksize)


@dataclass(frozen=True, eq=False)
class QuantState(QuantizedTensor):
    """A bitsandbytes-quantized tensor: payload bytes, per-block absmax and metadata
    (a :class:`refquant.QuantizedTensor`: ``format`` is ``quant_type``).

    Attributes
    ----------
    packed : ndarray of uint8, shape (ceil(n / 2),) for nf4/fp4 or (n,) for dynamic8
        Codes in C order of the tensor; 4-bit codes two per byte, first in the high nibble.
    absmax : ndarray of float32, shape (ceil(n / blocksize),)
        The scale of each block; with ``nested`` it is the dequantized nested absmax.
    shape : tuple of int
        Shape of the original tensor (``n = prod(shape)``).
    quant_type : {"nf4", "fp4", "dynamic8"}
    blocksize : int
    code : ndarray of float32, shape (16,) or (256,)
        The value of each code (bitsandbytes ``quant_map``).
    dtype : {"float32", "float16", "bfloat16"}
        dtype of the original tensor.
    nested : NestedAbsmax or None
        The 8-bit form of ``absmax`` when double-quantized.
    """

    packed: np.ndarray
    absmax: np.ndarray
    shape: tuple[int, ...]
    quant_type: str
    blocksize: int
    code: np.ndarray
    dtype: str = "float32"
    nested: NestedAbsmax | None = None

    @property
    def format(self) -> str:
        """``quant_type`` (the container's format name)."""
        return self.quant_type

    @property
    def size(self) -> int:
        """Number of elements of the original tensor."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes stored, ``storage_bits / 8``."""
        return self.storage_bits // 8

    @property
    def n_blocks(self) -> int:
        """Number of first-level blocks, ``ceil(size / blocksize)``."""
        return -(-self.size // self.blocksize)

    @property
    def storage_bits(self) -> int:
        """Bits stored for the tensor: payload, absmax (8-bit + nested float32 + offset when
        nested, else float32). The constant code tables are not counted."""
        bits = 8 * self.packed.size
        if self.nested is None:
            return bits + 32 * self.n_blocks
        return bits + 8 * self.n_blocks + 32 * self.nested.absmax.size + 32

    @property
    def bits_per_weight(self) -> float:
        """``storage_bits / size``: 4.5 for nf4 at blocksize 64, 4 + 8/64 + 32/(64*256) =
        4.126953 (plus 32/size for the offset) with double quantization. NaN when empty."""
        return self.storage_bits / self.size if self.size else float("nan")

    def dequantize(self, *, backend: Any = None) -> np.ndarray:
        """The float32 tensor of ``shape`` (:func:`dequantize_4bit` / :func:`dequantize_blockwise`);
        ``backend`` runs the bnb_dequantize_* op of that backend instead (see :func:`quantize_4bit`)."""
        self.validate()
        if self.quant_type == "dynamic8":
            return call_op(backend, "bnb_dequantize_blockwise", bnb_dequantize_blockwise, self.packed, self.absmax,
                           self.blocksize, self.shape, fmt="dynamic8")
        return call_op(backend, "bnb_dequantize_4bit", bnb_dequantize_4bit, self.packed, self.absmax, self.quant_type,
                       self.blocksize, self.shape, fmt=self.quant_type)

    def validate(self) -> QuantState:
        """Check that payload, absmax, code table and metadata agree; return ``self``.

        Raises
        ------
        refquant.errors.ValidationError
            Naming the first inconsistent field and what was expected: an unknown
            quant_type or dtype, a block size bitsandbytes does not allow, arrays of the
            wrong dtype or length for ``shape`` and ``blocksize``, a non-finite or negative
            absmax, a code table other than the format's, or an ``absmax`` that is not
            what ``nested`` dequantizes to.
        """
        _validate_state(self)
        return self

    def save(self, path: str | os.PathLike[str], name: str = "weight") -> None:
        """Write under bitsandbytes' state-dict keys (:func:`save`): safetensors (the very
        file bitsandbytes writes), or ``.npz`` when ``path`` ends so. No refquant header is
        needed: :func:`refquant.load_quantized` recognizes the keys."""
        _write(path, to_state_dict(self, name), None)

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, np.ndarray], name: str = "weight") -> QuantState:
        """The state stored under ``name`` in a (bitsandbytes or refquant) state dict
        (:func:`refquant.layouts.bnb_state.read_state_dict`), validated.

        Raises
        ------
        KeyError
            No ``name`` tensor or no quant_state entry for it.
        refquant.errors.ValidationError
            Missing companion tensors, unreadable JSON, or inconsistent fields.
        """
        fields = read_state_dict(tensors, name)
        nested = None if fields["nested"] is None else NestedAbsmax(**fields["nested"])
        absmax = fields["absmax"]
        if nested is not None:
            try:
                absmax = nested.dequantize()
            except (TypeError, ValueError, IndexError):
                # Malformed nested fields: validate() below names the one at fault.
                absmax = np.full(nested.codes.size, np.nan, dtype=np.float32)
        return cls(**{**fields, "absmax": absmax, "nested": nested}).validate()

    def _to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return to_state_dict(self, "weight"), {"name": "weight"}

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], fields: dict[str, Any]) -> QuantState:
        return cls.from_state_dict(arrays, fields.get("name", "weight"))

    def __repr__(self) -> str:
        nested = ", double-quantized" if self.nested is not None else ""
        return (f"QuantState({self.quant_type}, shape={self.shape}, blocksize={self.blocksize}, "
                f"dtype={self.dtype}{nested}, {self.bits_per_weight:.4f} bits/weight)")


def _fail(message: str) -> None:
    raise ValidationError(f"invalid QuantState: {message}")


def _check_array(name: str, a: Any, dtype: type, size: int) -> None:
    if not isinstance(a, np.ndarray):
        _fail(f"{name} must be a NumPy array, got {type(a).__name__}")
    if a.dtype != np.dtype(dtype):
        _fail(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype}")
    if a.ndim != 1 or a.size != size:
        _fail(f"{name} must have shape ({size},), got {a.shape}")


def _check_scales(name: str, a: np.ndarray, *, nonnegative: bool) -> None:
    if not np.isfinite(a).all():
        _fail(f"{name} holds a non-finite value at block {int(np.flatnonzero(~np.isfinite(a))[0])}")
    if nonnegative and (a < 0).any():
        _fail(f"{name} holds a negative value at block {int(np.flatnonzero(a < 0)[0])}")


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool((a.view(np.uint32) == b.view(np.uint32)).all())


def _validate_state(q: QuantState) -> None:
    if q.quant_type not in QUANT_TYPES:
        _fail(f"quant_type={q.quant_type!r}; allowed: {', '.join(map(repr, QUANT_TYPES))}")
    allowed = BLOCKSIZES_8BIT if q.quant_type == "dynamic8" else BLOCKSIZES_4BIT
    if not isinstance(q.blocksize, (int, np.integer)) or q.blocksize not in allowed:
        _fail(f"blocksize={q.blocksize!r} for {q.quant_type}; allowed: {', '.join(map(str, allowed))}")
    if q.dtype not in DTYPES:
        _fail(f"dtype={q.dtype!r}; allowed: {', '.join(map(repr, DTYPES))}")
    if not isinstance(q.shape, tuple) or not all(isinstance(d, (int, np.integer)) and d >= 0 for d in q.shape):
        _fail(f"shape={q.shape!r} must be a tuple of non-negative ints")
    n = q.size
    _check_array("packed", q.packed, np.uint8, n if q.quant_type == "dynamic8" else -(-n // 2))
    table = dynamic_map() if q.quant_type == "dynamic8" else _fmt.code_4bit(q.quant_type)
    if not (isinstance(q.code, np.ndarray) and q.code.dtype == F32 and _same_bits(q.code, table)):
        _fail(f"code (quant_map) is not bitsandbytes' {q.quant_type} table")
    _check_array("absmax", q.absmax, F32, q.n_blocks)
    if q.nested is None:
        _check_scales("absmax", q.absmax, nonnegative=True)
        return
    nested = q.nested
    _check_array("nested codes", nested.codes, np.uint8, q.n_blocks)
    if not isinstance(nested.blocksize, (int, np.integer)) or nested.blocksize not in BLOCKSIZES_8BIT:
        _fail(f"nested blocksize={nested.blocksize!r}; allowed: {', '.join(map(str, BLOCKSIZES_8BIT))}")
    _check_array("nested absmax", nested.absmax, F32, -(-q.n_blocks // nested.blocksize))
    _check_scales("nested absmax", nested.absmax, nonnegative=True)
    if not (isinstance(nested.code, np.ndarray) and nested.code.dtype == F32 and _same_bits(nested.code, dynamic_map())):
        _fail("nested code (nested_quant_map) is not bitsandbytes' dynamic map")
    if nested.dtype != "float32":
        _fail(f"nested dtype={nested.dtype!r}; bitsandbytes stores the absmax as 'float32'")
    offset = float(nested.offset)
    if not math.isfinite(offset) or float(F32(offset)) != offset:
        _fail(f"nested offset={nested.offset!r} must be a finite float32 value")
    # The dequantized absmax of a double-quantized block may be slightly negative (a
    # zero absmax far below the mean): bitsandbytes scales with it as it is.
    _check_scales("absmax", q.absmax, nonnegative=False)
    if not _same_bits(q.absmax, nested.dequantize()):
        bad = int(np.flatnonzero(q.absmax.view(np.uint32) != nested.dequantize().view(np.uint32))[0])
        _fail(f"absmax[{bad}]={q.absmax[bad]!r} is not the dequantized nested absmax {nested.dequantize()[bad]!r}")


# ------------------------------------------------------------------- input checks


def _input(name: str, x: Any) -> tuple[np.ndarray, str]:
    """``x`` flattened in C order and widened (exactly) to float32, and its dtype name."""
    arr = as_float_array(name, x, dtypes=_INPUT_DTYPES, allow_nan=False)
    return arr.astype(F32, copy=False).reshape(-1), arr.dtype.name


def _shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints, got {shape!r}") from None
    return tuple(check_int(f"shape[{i}]", d, min=0) for i, d in enumerate(dims))


def _check_quant_type(quant_type: Any) -> str:
    return check_name("quant_type", quant_type, _fmt.QUANT_TYPES_4BIT)


def _check_blocksize(blocksize: Any, allowed: tuple[int, ...]) -> int:
    return check_power_of_two("blocksize", blocksize, min=allowed[0], max=allowed[-1])


def _payload(name: str, a: Any, size: int) -> np.ndarray:
    arr = as_int_array(name, a)
    if arr.dtype != np.uint8:
        raise TypeError(f"{name} must be a uint8 array, got dtype {arr.dtype}")
    if arr.size != size:
        raise ValueError(f"{name} has {arr.size} bytes; {size} are needed for this shape")
    return arr.reshape(-1)


def _scales(name: str, a: Any, size: int) -> np.ndarray:
    arr = as_float_array(name, a, dtypes=(np.float32,))
    if arr.size != size:
        raise ValueError(f"{name} has {arr.size} values; {size} blocks are needed for this shape and blocksize")
    return arr.reshape(-1)


def _vectorwise_input(name: str, x: Any) -> np.ndarray:
    """A finite 2-D float16/bfloat16/float32 array (rows, k), dtype kept."""
    arr = as_float_array(name, x, dtypes=_INPUT_DTYPES, allow_nan=False)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, columns), got shape {arr.shape}")
    return arr


def _vectorwise_codes(q: Any, row_stats: Any) -> tuple[np.ndarray, np.ndarray]:
    """2-D int8 codes and one finite float32 stat per row."""
    codes = as_int_array("q", q)
    if codes.dtype != np.int8 or codes.ndim != 2:
        raise TypeError(f"q must be a 2-D int8 array, got {codes.dtype} of shape {codes.shape}")
    stats = as_float_array("row_stats", row_stats, dtypes=(np.float32,), allow_nan=False)
    if stats.shape != (codes.shape[0],):
        raise ValueError(f"row_stats must have shape ({codes.shape[0]},) for q of shape {codes.shape}, got {stats.shape}")
    return codes, stats


def _packed_4bit(packed: Any, absmax: Any, quant_type: Any, blocksize: Any, shape: Any
                 ) -> tuple[np.ndarray, np.ndarray, str, int, tuple[int, ...]]:
    """Arguments of :func:`bnb_dequantize_4bit` checked: flat uint8 payload of ``ceil(n / 2)``
    bytes, flat float32 absmax of ``ceil(n / blocksize)`` values."""
    quant_type = _check_quant_type(quant_type)
    blocksize = _check_blocksize(blocksize, BLOCKSIZES_4BIT)
    shape = _shape(shape)
    n = math.prod(shape)
    return (_payload("packed", packed, -(-n // 2)), _scales("absmax", absmax, -(-n // blocksize)),
            quant_type, blocksize, shape)


def _absmax_vector(absmax: Any) -> np.ndarray:
    """A finite, non-empty 1-D float32 vector (the input of double quantization)."""
    arr = as_float_array("absmax", absmax, dtypes=(np.float32,), allow_nan=False)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"absmax must be a non-empty 1-D array, got shape {arr.shape}")
    return arr


# --------------------------------------------------------------- public functions


def quantize_4bit(x: Any, quant_type: str = "nf4", blocksize: int = 64, double_quant: bool = False,
                  *, mean_threads: int = 1, backend: Any = None) -> QuantState:
    """NF4 / FP4 blockwise quantization (bitsandbytes ``functional.quantize_4bit``).

    Parameters
    ----------
    x : ndarray of float32, float16 or bfloat16, any shape
        Finite values; blocks run over the C-order flattening, the last one may be partial.
    quant_type : {"nf4", "fp4"}
        bitsandbytes' own default is "fp4"; QLoRA and transformers use "nf4".
    blocksize : int
        32, 64, 128, ..., 4096.
    double_quant : bool
        Also quantize the absmax to 8 bits in blocks of 256 (bitsandbytes
        ``compress_statistics=True``).
    mean_threads : int
        torch thread count whose summation order the double-quantization offset
        reproduces; only matters above 32768 blocks. Other than 1 only in the reference.
    backend : str or Backend, optional
        Compute the codes with ops ``bnb_quantize_4bit`` / ``bnb_double_quantize`` of this
        backend (``"numba"``, ``"cupy"``, ...; ``accel.registry``) through the dispatcher;
        the same QuantState results. None or ``"reference"``: the reference.

    Returns
    -------
    QuantState

    Raises
    ------
    TypeError
        ``x`` not float16/bfloat16/float32. float64 included: bitsandbytes refuses it, and
        the state records the input dtype, which bitsandbytes cannot store as float64;
        the message says to pass ``x.astype(np.float32)`` (what ``tensor.float()`` gives
        bitsandbytes).
    ValueError
        An unknown quant_type, a blocksize that is not a power of two in [32, 4096], or
        NaN/inf in ``x``.
    """
    quant_type = _check_quant_type(quant_type)
    blocksize = _check_blocksize(blocksize, BLOCKSIZES_4BIT)
    mean_threads = check_int("mean_threads", mean_threads, min=1)
    if not isinstance(double_quant, (bool, np.bool_)):
        raise TypeError(f"double_quant must be a bool, got {double_quant!r}")
    if mean_threads != 1 and not is_reference(backend):
        raise ValueError(f"mean_threads={mean_threads} is an option of the reference only (the bnb_double_quantize "
                         f"op uses one thread's order); pass mean_threads=1 or backend=None")
    flat, dtype = _input("x", x)
    shape = tuple(int(d) for d in np.shape(x))
    packed, absmax = call_op(backend, "bnb_quantize_4bit", _fmt.quantize_4bit_blocks, flat, quant_type, blocksize,
                             fmt=quant_type)
    nested = None
    if double_quant and absmax.size:
        codes, nested_absmax, offset = call_op(backend, "bnb_double_quantize",
                                               functools.partial(_fmt.double_quantize, threads=mean_threads), absmax)
        nested = NestedAbsmax(codes, nested_absmax, float(offset))
        absmax = nested.dequantize()
    return QuantState(packed, absmax, shape, quant_type, blocksize, _fmt.code_4bit(quant_type), dtype, nested)


def dequantize_4bit(q: QuantState) -> np.ndarray:
    """The float32 tensor a 4-bit :class:`QuantState` stands for: ``code[nibble] * absmax[block]``.

    Parameters
    ----------
    q : QuantState
        A 4-bit state (quant_type "nf4" or "fp4"), consistent (:meth:`QuantState.validate`).

    Raises
    ------
    TypeError
        ``q`` is not a QuantState.
    ValueError
        ``q`` is an 8-bit state (use :func:`dequantize_blockwise`).
    refquant.errors.ValidationError
        ``q`` is inconsistent (:meth:`QuantState.validate`).
    """
    if not isinstance(q, QuantState):
        raise TypeError(f"q must be a QuantState, got {type(q).__name__}")
    if q.quant_type not in _fmt.QUANT_TYPES_4BIT:
        raise ValueError(f"q.quant_type={q.quant_type!r} is not a 4-bit type; use dequantize_blockwise")
    return q.dequantize()


def quantize_blockwise(x: Any, blocksize: int = 4096, *, backend: Any = None) -> QuantState:
    """8-bit blockwise quantization with the dynamic map (``functional.quantize_blockwise``).

    The CPU library's 65536-entry lookup table, not a nearest-code search
    (:func:`refquant.formats.bnb.quantize_blockwise_8bit`).

    Parameters
    ----------
    x : ndarray of float32, float16 or bfloat16, any shape
    blocksize : int
        64, 128, ..., 4096 (the sizes bitsandbytes documents).
    backend : str or Backend, optional
        Run op ``bnb_quantize_blockwise`` of this backend instead (see :func:`quantize_4bit`).

    Returns
    -------
    QuantState
        ``quant_type="dynamic8"``, ``packed`` one code per element (C order).
    """
    blocksize = _check_blocksize(blocksize, BLOCKSIZES_8BIT)
    flat, dtype = _input("x", x)
    shape = tuple(int(d) for d in np.shape(x))
    codes, absmax = call_op(backend, "bnb_quantize_blockwise", _fmt.quantize_blockwise_8bit, flat, blocksize,
                            fmt="dynamic8")
    return QuantState(codes, absmax, shape, "dynamic8", blocksize, dynamic_map(), dtype)


def dequantize_blockwise(q: QuantState) -> np.ndarray:
    """The float32 tensor of an 8-bit state: ``dynamic_map()[code] * absmax[block]``.

    Parameters
    ----------
    q : QuantState
        An 8-bit state (quant_type "dynamic8"), consistent (:meth:`QuantState.validate`).
    """
    if not isinstance(q, QuantState):
        raise TypeError(f"q must be a QuantState, got {type(q).__name__}")
    if q.quant_type != "dynamic8":
        raise ValueError(f"q.quant_type={q.quant_type!r} is not 'dynamic8'; use dequantize_4bit")
    return q.dequantize()


def int8_vectorwise_quant(x: Any, threshold: float = 0.0, *, out: Any = None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise absmax int8 (LLM.int8() "vector-wise quantization", bitsandbytes
    ``int8_vectorwise_quant``): ``q = round_half_even(x * 127 / max abs(row))``.

    Parameters
    ----------
    x : ndarray of float16, bfloat16 or float32, shape (rows, k)
        Finite values.
    threshold : float
        Outlier threshold (>= 0). Values with ``abs(x) >= threshold`` are left out of the
        row absmax and quantized to 0, and with more than one row their whole columns are
        0 (they go through the float path of :func:`refquant.matmul.llm_int8_matmul`).
        0 (bitsandbytes' default) disables this.
    out : tuple of ndarray or None, optional
        One array per result, in order (an entry None: allocated; the outlier columns'
        entry is None, their count depends on the data), written and returned instead of
        new arrays; checked by :func:`refquant.prepare.outputs`.

    Returns
    -------
    q : ndarray of int8, shape (rows, k)
    row_stats : ndarray of float32, shape (rows,)
        The absmax of each row (without outliers).
    outlier_cols : ndarray of int64, shape (n_outlier_cols,)
        Ascending columns holding an outlier; empty when none (bitsandbytes returns None
        for threshold 0).
    """
    arr = _vectorwise_input("x", x)
    threshold = check_float("threshold", threshold, min=0.0)
    return into(out, _fmt.vectorwise_quantize_rows(arr, threshold), (x,), fresh=(2,))


def int8_vectorwise_dequant(q: Any, row_stats: Any, *, out: Any = None) -> np.ndarray:
    """``q * row_stat / 127`` per row as bitsandbytes computes it (two float32 roundings).

    Parameters
    ----------
    q : ndarray of int8, shape (rows, k)
    row_stats : ndarray of float32, shape (rows,)
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of float32, shape (rows, k)
    """
    return into(out, _fmt.vectorwise_dequantize_rows(*_vectorwise_codes(q, row_stats)), (q, row_stats))


def save(path: str | os.PathLike[str], q: QuantState, name: str = "weight") -> None:
    """Write ``q`` to a safetensors file under bitsandbytes' state-dict keys (``.npz`` when
    ``path`` ends so); :func:`refquant.load_quantized` reads it too.

    Keys (``name`` = "weight"): ``weight`` (the packed bytes, shape (ceil(n/2), 1) as
    ``Params4bit`` stores them), ``weight.absmax``, ``weight.quant_map``, with double
    quantization ``weight.nested_absmax`` and ``weight.nested_quant_map``, and
    ``weight.quant_state.bitsandbytes__nf4`` (or ``__fp4``): the JSON of the remaining
    fields as uint8 bytes (``QuantState.as_dict(packed=True)``). See
    :mod:`refquant.layouts.bnb_state`.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced); ``.npz`` suffix for NumPy's format, anything else is safetensors.
    q : QuantState
        Any consistent state (nf4, fp4, dynamic8; nested or not).
    name : str
        The weight's key; every other key starts with ``name + "."``.
    """
    if not isinstance(q, QuantState):
        raise TypeError(f"q must be a QuantState, got {type(q).__name__}")
    q.save(path, name)


def load(path: str | os.PathLike[str], name: str = "weight") -> QuantState:
    """Read a :class:`QuantState` written by :func:`save` or by bitsandbytes
    (``Linear4bit`` state dict / ``QuantState.as_dict(packed=True)`` in safetensors), or
    the same keys in an ``.npz`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A safetensors or ``.npz`` file (told apart by its first bytes).
    name : str
        The weight's key in the file.

    Raises
    ------
    KeyError
        The file holds no tensor called ``name`` with its quant_state.
    refquant.errors.ValidationError
        The stored fields are inconsistent.
    """
    return QuantState.from_state_dict(_read(os.fspath(path))[0], name)


# ------------------------------------------------ array ops (accel/ops.py Backend ops)


def _dequantize_arrays(packed: np.ndarray, absmax: np.ndarray, quant_type: str, blocksize: int,
                       shape: tuple[int, ...]) -> np.ndarray:
    n = math.prod(shape)
    if quant_type == "dynamic8":
        return _fmt.dequantize_blockwise_8bit(packed, absmax, blocksize).reshape(shape)
    return _fmt.dequantize_4bit_blocks(packed, absmax, quant_type, blocksize, n).reshape(shape)


def bnb_quantize_4bit(x: Any, quant_type: str, blocksize: int, *, out: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """NF4/FP4 codes and absmax of ``x`` (as :func:`quantize_4bit` without double quantization).

    Parameters
    ----------
    x : ndarray of float32, float16 or bfloat16, any shape
        Finite values (ValueError for NaN/inf, TypeError for other dtypes).
    quant_type : {"nf4", "fp4"}
    blocksize : {32, 64, 128, 256, 512, 1024, 2048, 4096}
    out : tuple of ndarray or None, optional
        Arrays to write the results into, in order (:func:`refquant.prepare.into`).

    Returns
    -------
    packed : ndarray of uint8, shape (ceil(n / 2),)
    absmax : ndarray of float32, shape (ceil(n / blocksize),)
    """
    q = quantize_4bit(x, quant_type, blocksize)
    return into(out, (q.packed, q.absmax), (x,))


def bnb_dequantize_4bit(packed: Any, absmax: Any, quant_type: str, blocksize: int, shape: Any, *,
                        out: Any = None) -> np.ndarray:
    """float32 tensor of ``shape`` from packed NF4/FP4 codes and per-block absmax.

    Parameters
    ----------
    packed : ndarray of uint8, ceil(n / 2) bytes (any shape; read in C order)
    absmax : ndarray of float32, ceil(n / blocksize) values
    quant_type : {"nf4", "fp4"}
    blocksize : int
    shape : tuple of int
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of float32, shape ``shape``
    """
    return into(out, _dequantize_arrays(*_packed_4bit(packed, absmax, quant_type, blocksize, shape)),
                (packed, absmax))


def bnb_quantize_blockwise(x: Any, blocksize: int, *, out: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """8-bit dynamic-map codes and absmax of ``x`` (:func:`quantize_blockwise`).

    Parameters
    ----------
    x : ndarray of float32, float16 or bfloat16, any shape
        Finite values (ValueError for NaN/inf, TypeError for other dtypes).
    blocksize : {64, 128, 256, 512, 1024, 2048, 4096}
    out : tuple of ndarray or None, optional
        Arrays to write the results into, in order (:func:`refquant.prepare.into`).

    Returns
    -------
    codes : ndarray of uint8, shape (n,)
    absmax : ndarray of float32, shape (ceil(n / blocksize),)
    """
    q = quantize_blockwise(x, blocksize)
    return into(out, (q.packed, q.absmax), (x,))


def bnb_dequantize_blockwise(codes: Any, absmax: Any, blocksize: int, shape: Any, *, out: Any = None) -> np.ndarray:
    """float32 tensor of ``shape`` from 8-bit dynamic-map codes and per-block absmax.

    Parameters
    ----------
    codes : ndarray of uint8, prod(shape) values (any shape; read in C order)
    absmax : ndarray of float32, ceil(prod(shape) / blocksize) values
    blocksize : {64, 128, 256, 512, 1024, 2048, 4096}
    shape : tuple of int >= 0
        Shape of the result.
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).
    """
    blocksize = _check_blocksize(blocksize, BLOCKSIZES_8BIT)
    shape = _shape(shape)
    n = math.prod(shape)
    return into(out, _dequantize_arrays(_payload("codes", codes, n), _scales("absmax", absmax, -(-n // blocksize)),
                              "dynamic8", blocksize, shape), (codes, absmax))


def bnb_double_quantize(absmax: Any, *, out: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Double quantization of a float32 absmax vector (torch's one-thread mean order).

    Parameters
    ----------
    absmax : ndarray of float32, shape (n_blocks,)
        Finite, non-empty.
    out : tuple of ndarray or None, optional
        Arrays to write the results into, in order (:func:`refquant.prepare.into`).

    Returns
    -------
    codes : ndarray of uint8, shape (n_blocks,)
    nested_absmax : ndarray of float32, shape (ceil(n_blocks / 256),)
    offset : ndarray of float32, shape ()
    """
    codes, nested_absmax, offset = _fmt.double_quantize(_absmax_vector(absmax))
    return into(out, (codes, nested_absmax, np.asarray(offset, dtype=F32)), (absmax,))
