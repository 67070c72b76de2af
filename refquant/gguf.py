"""GGUF / ggml block quantization: the exact bytes llama.cpp writes.

``quantize(x, qtype, imatrix=None)`` returns the bytes that ggml's ``ggml_quantize_chunk``
(the function llama.cpp's quantize tool calls) writes for the same float32 rows and
importance matrix; ``dequantize(data, qtype, shape)`` returns what ggml's ``to_float``
returns for them. Both are generic: they validate and reshape once, then hand
``(n_blocks, block_size)`` arrays to the format's ``quantize_blocks`` /
``dequantize_blocks`` (``refquant/formats/``), whose byte layout is declared as a
structured dtype.

``read(path)`` / ``write(path, tensors, metadata)`` for ``.gguf`` files are re-exported from
:mod:`refquant.io` (GGUF v3, bounds-checked reader).

Supported ``qtype`` names (case-insensitive; also the ggml type id as an int) are the
keys of :data:`refquant.formats.FORMATS`: f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1,
q2_k, q3_k, q4_k, q5_k, q6_k, q8_k, tq1_0, tq2_0, iq4_nl, iq4_xs, mxfp4, nvfp4, and the
grid types iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m (iq2_xxs, iq2_xs and iq1_s
only with an imatrix, as in ggml).

Conventions
-----------
- Input is float32. float16 input is widened exactly; float64 input is rounded to float32
  first (ggml only ever quantizes float32 rows, and llama.cpp's converter casts to float32
  before quantizing), so float64 results equal those of ``x.astype(np.float32)``. (Element
  casts, :func:`refquant.encode_float`, round float64 once instead: they are IEEE conversions.)
- A row is the last axis. ``x`` of shape (..., n_per_row) gives bytes of shape
  (..., row_bytes); a 1-D ``x`` is one row and gives (row_bytes,).
- The row length must be a multiple of the type's block size (32 or 256); otherwise a
  ValueError says which block size is needed. Nothing is padded.
- Quantized types reject NaN and ±inf input (ggml's result for them is not meaningful);
  f16 and bf16 encode them as ggml does.
- The importance matrix is one float32 weight per column (n_per_row,), finite and >= 0.
  Types that ignore it in ggml (f16, bf16, q8_0, q8_1, q8_k, tq1_0, tq2_0, mxfp4) accept
  and ignore it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from refquant._backend import call_op, is_reference
from refquant._lazy import lazy_getattr
from refquant._validate import as_float_array, normalize_name
from refquant.formats import FORMATS, FORMATS_BY_ID, BlockFormat
from refquant.prepare import into

__all__ = ["quantize", "dequantize", "quantize_tensor", "block_bits", "row_bytes", "get_format", "qtypes", "read",
           "write", "dequant_matmul"]

# .gguf files live in refquant.io (reader for untrusted files, writer); re-exported lazily
# so that the codec does not load the file machinery.
_FILE_API = {"read": "refquant.io.gguf_file", "write": "refquant.io.gguf_file",
             # quantize() wrapped in the container of ggml bytes, which lives with the file layer
             "quantize_tensor": "refquant.io.gguf_file",
             # the emulated W4A16 product y = x @ W.T with W as GGUF rows
             "dequant_matmul": "refquant.formats.gguf_matmul"}


__getattr__ = lazy_getattr(globals(), _FILE_API)


def qtypes() -> tuple[str, ...]:
    """The supported qtype names, in ggml type-id order."""
    return tuple(sorted(FORMATS, key=lambda n: FORMATS[n].type_id))


def get_format(qtype: Any) -> type[BlockFormat]:
    """The :class:`~refquant.formats.base.BlockFormat` for a qtype name or ggml type id.

    Parameters
    ----------
    qtype : str, int or BlockFormat subclass
        A supported block type (:func:`qtypes`): name (any case) or ggml id; a BlockFormat is returned as is.

    Raises
    ------
    ValueError
        Unknown name or id; the message lists the supported names.
    TypeError
        ``qtype`` is neither a string nor an integer.
    """
    if isinstance(qtype, type) and issubclass(qtype, BlockFormat):
        return qtype
    if isinstance(qtype, (int, np.integer)) and not isinstance(qtype, (bool, np.bool_)):
        fmt = FORMATS_BY_ID.get(int(qtype))
        if fmt is None:
            raise ValueError(f"qtype={int(qtype)} is not a supported ggml type id; allowed: "
                             + ", ".join(f"{FORMATS[n].type_id} ({n})" for n in qtypes()))
        return fmt
    if not isinstance(qtype, str):
        raise TypeError(f"qtype must be a string such as 'q4_k' (or a ggml type id), got {qtype!r} ({type(qtype).__name__})")
    fmt = FORMATS.get(normalize_name(qtype))
    if fmt is None:
        raise ValueError(_unknown_qtype(qtype))
    return fmt


def _missing_shape(data: Any, fmt: type[BlockFormat]) -> str:
    """The message for ``dequantize`` without a shape, with the shape 2-D bytes imply."""
    msg = (f"dequantize() needs shape, the shape of the float tensor: ggml bytes do not record it. Pass the "
           f"shape that was quantized (dequantize(data, {fmt.name!r}, W.shape)), or the one refquant.gguf.read() "
           f"returns for a tensor of a .gguf file")
    arr = np.asarray(data) if isinstance(data, np.ndarray) else None
    if arr is not None and arr.ndim >= 2 and arr.shape[-1] % fmt.type_size == 0:
        n_per_row = arr.shape[-1] // fmt.type_size * fmt.block_size
        msg += (f"; bytes shaped {arr.shape} as quantize() returns them hold rows of {n_per_row} values: "
                f"shape={arr.shape[:-1] + (n_per_row,)}")
    return msg


def _unknown_qtype(qtype: str) -> str:
    """The message for a qtype name that is not a supported block type: a llama.cpp
    mixture name (``Q4_K_M``) says what it means, a ggml type refquant lacks says so."""
    from refquant.formats.gguf_mixtures import mixture_hint
    from refquant.io.ggml_types import ggml_type

    allowed = f"block types (case-insensitive): {', '.join(qtypes())}"
    hint = mixture_hint(qtype)
    if hint is not None:
        return f"qtype={hint}. Allowed {allowed}"
    try:
        known = ggml_type(qtype)
    except (ValueError, TypeError):
        return f"qtype={qtype!r} is not supported; allowed {allowed}"
    return f"qtype={qtype!r} is ggml's {known.name} block type, which refquant does not implement; allowed {allowed}"


def block_bits(qtype: Any) -> tuple[int, int]:
    """``(block_bytes, block_elems)`` of a qtype: bits per weight = 8 * bytes / elems.

    Parameters
    ----------
    qtype : str, int or GGMLType
        A supported block type (:func:`qtypes`): name (any case), ggml id or GGMLType.

    >>> block_bits("q4_0")
    (18, 32)
    """
    fmt = get_format(qtype)
    return fmt.type_size, fmt.block_size


def row_bytes(qtype: Any, n_per_row: int) -> int:
    """Bytes of one quantized row of ``n_per_row`` elements (ggml's ``ggml_row_size``).

    ``qtype`` is a supported type (:func:`qtypes`: name, id or :class:`~refquant.io.GGMLType`);
    ``n_per_row`` a non-negative multiple of its block size (ValueError otherwise).

    Parameters
    ----------
    qtype : str, int or GGMLType
        A supported block type (:func:`qtypes`): name (any case), ggml id or GGMLType.
    n_per_row : int >= 0
        A multiple of the type's block size.
    """
    fmt = get_format(qtype)
    _check_row_length(fmt, int(n_per_row), "n_per_row")
    return int(n_per_row) // fmt.block_size * fmt.type_size


def _check_row_length(fmt: type[BlockFormat], n: int, what: str) -> None:
    if n % fmt.block_size:
        lo = n // fmt.block_size * fmt.block_size
        hint = f"{lo} or {lo + fmt.block_size}" if lo else f"{fmt.block_size}"
        raise ValueError(f"{what}={n} is not a multiple of the {fmt.name} block size {fmt.block_size}; "
                         f"{fmt.name} needs rows whose length is a multiple of {fmt.block_size} (e.g. {hint})")


def _as_rows(x: Any) -> np.ndarray:
    arr = as_float_array("x", x, dtypes=(np.float32, np.float64, np.float16), min_ndim=1)
    return arr.astype(np.float32, copy=False) if arr.dtype != np.float32 else arr


def _check_imatrix(imatrix: Any, n_per_row: int) -> np.ndarray:
    im = as_float_array("imatrix", imatrix, dtypes=(np.float32, np.float64), min_ndim=1)
    if im.shape != (n_per_row,):
        raise ValueError(f"imatrix must have shape ({n_per_row},) (one weight per column of x), got {im.shape}")
    im = im.astype(np.float32, copy=False)
    if not np.isfinite(im).all():
        raise ValueError("imatrix contains NaN or inf; importance weights must be finite and >= 0")
    if (im < 0).any():
        raise ValueError(f"imatrix contains negative weights (min {float(im.min())!r}); importance weights must be >= 0")
    return im


def _check_data(data: Any, fmt: type[BlockFormat], shape: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """The checks of :func:`dequantize`'s arguments (backends reuse them for the same messages).

    Returns ``data`` as a contiguous 1-D uint8 array of exactly the bytes ``shape`` needs,
    and ``shape`` as a tuple of ints.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = np.frombuffer(data, dtype=np.uint8)
    data = np.asarray(data)
    if data.dtype != np.uint8:
        raise TypeError(f"data must be a uint8 array of ggml block bytes, got dtype {data.dtype}")
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not shape or any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 0 for s in shape):
        raise ValueError(f"shape={shape!r} must be a non-empty tuple of non-negative integers")
    shape = tuple(int(s) for s in shape)
    _check_row_length(fmt, shape[-1], "shape[-1]")
    n_elems = math.prod(shape)  # Python ints: no int64 wrap-around on hostile shapes
    expected = n_elems // fmt.block_size * fmt.type_size
    if data.size != expected:
        raise ValueError(f"data has {data.size} bytes but {fmt.name} of shape {shape} needs {expected} "
                         f"({n_elems // max(fmt.block_size, 1)} blocks of {fmt.type_size} bytes)")
    return np.ascontiguousarray(data).reshape(-1), shape


def checked_format(qtype: Any) -> type[BlockFormat]:
    """:func:`get_format`, refusing a BlockFormat whose declared sizes disagree.

    ``type_size`` must equal its block dtype's itemsize and ``block_size`` be a positive
    int: kernels compute byte offsets from these numbers, so a (sub)class that changes one
    without the other is refused with ValueError rather than read out of bounds.
    """
    fmt = get_format(qtype)
    dtype = getattr(fmt, "dtype", None)
    bs, ts = getattr(fmt, "block_size", None), getattr(fmt, "type_size", None)
    if (not isinstance(dtype, np.dtype) or isinstance(bs, bool) or not isinstance(bs, (int, np.integer))
            or not isinstance(ts, (int, np.integer)) or bs < 1 or ts != dtype.itemsize or ts < 1):
        raise ValueError(f"format {getattr(fmt, '__name__', fmt)!r} is inconsistent: block_size={bs!r}, "
                         f"type_size={ts!r}, block dtype itemsize={getattr(dtype, 'itemsize', None)!r}; "
                         "type_size must equal the dtype's itemsize and block_size be an int >= 1")
    return fmt


def _quantize_args(x: Any, qtype: Any, imatrix: Any) -> tuple[type[BlockFormat], np.ndarray, np.ndarray | None]:
    """The argument rule of :func:`quantize`: ``(format, x as float32 rows, imatrix or None)``."""
    fmt = checked_format(qtype)
    x = _as_rows(x)
    n_per_row = x.shape[-1]
    _check_row_length(fmt, n_per_row, "x.shape[-1]")
    if fmt.requires_imatrix and imatrix is None:
        raise ValueError(f"{fmt.name} needs an importance matrix (imatrix=...): ggml refuses to quantize it "
                         "without one (ggml_quantize_requires_imatrix)")
    # min and max propagate NaN, and an inf is one of them: two reductions, no bool array
    if not fmt.allows_nonfinite and x.size and not (np.isfinite(x.min()) and np.isfinite(x.max())):
        raise ValueError(f"x contains NaN or inf, which {fmt.name} cannot encode "
                         f"(only f16 and bf16 define them); clean or clamp the input first")
    im = None if imatrix is None else _check_imatrix(imatrix, n_per_row)
    return fmt, x, im


def quantize(x: Any, qtype: Any, imatrix: Any = None, *, backend: Any = None, out: Any = None) -> np.ndarray:
    """Quantize rows to ggml's block format ``qtype``.

    :func:`quantize_tensor` is the same with the result in a container that carries
    ``qtype`` and the shape (:class:`refquant.io.GGUFTensor`).

    Parameters
    ----------
    x : array_like of float32 (float16/float64 accepted, see module notes), shape (..., n_per_row)
    qtype : str or int
        GGUF type name, case-insensitive (``"q4_k"``), or ggml type id.
    imatrix : array_like of float32, shape (n_per_row,), optional
        Importance of each column (llama.cpp's imatrix for this tensor).
    backend : str or Backend, optional
        Run op ``gguf_quantize`` of this backend (``"numba"``, ``"cupy"``, ...; see
        ``accel.registry``) through the dispatcher instead of the reference; same bytes,
        same return type. None or ``"reference"``: this function.
    out : ndarray of uint8, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of uint8, shape (..., row_bytes)
        The bytes ggml writes, row by row.

    Raises
    ------
    ValueError
        Unknown qtype; row length not a multiple of the block size; non-finite x for a
        quantized type; imatrix of the wrong shape, non-finite or negative; no imatrix for
        a type ggml requires one for (IQ2_XXS, IQ2_XS, IQ1_S).
    TypeError
        Non-float x or imatrix.
    """
    if not is_reference(backend):
        return call_op(backend, "gguf_quantize", quantize, x, qtype, imatrix, fmt=checked_format(qtype).name, out=out)
    given = (x, imatrix)  # the caller's arrays, which out must not overlap
    fmt, x, im = _quantize_args(x, qtype, imatrix)
    n_per_row = x.shape[-1]
    lead = x.shape[:-1]
    n_blocks = x.size // fmt.block_size
    if n_blocks == 0:  # no rows, or rows of length 0 (reshape(-1, 0) would be ambiguous)
        return into(out, np.zeros(lead + (n_per_row // fmt.block_size * fmt.type_size,), np.uint8), given)
    rows = x.reshape(-1, n_per_row)
    # IEEE float32 results (overflow to inf, inf - inf = NaN in a search that then
    # rejects the candidate) are ggml's results too: they are computed, not warned about.
    with np.errstate(all="ignore"):
        weights = None
        if im is not None and fmt.uses_imatrix:
            weights = np.ascontiguousarray(fmt.importance_weights(rows, im), dtype=np.float32)
            weights = weights.reshape(n_blocks, fmt.block_size)
        x_blocks = rows.reshape(n_blocks, fmt.block_size)
        blocks = np.empty(n_blocks, dtype=fmt.dtype)
        # Blocks are independent; chunks only keep the searches' temporaries in cache.
        step = max(1, fmt.chunk_elems // fmt.block_size)
        for start in range(0, n_blocks, step):
            part = fmt.quantize_blocks(x_blocks[start:start + step],
                                       None if weights is None else weights[start:start + step])
            if part.dtype != fmt.dtype or part.shape != (min(step, n_blocks - start),):  # postcondition
                raise AssertionError(f"{fmt.__name__}.quantize_blocks returned {part.dtype} {part.shape}, "
                                     f"expected {fmt.dtype} ({min(step, n_blocks - start)},)")
            blocks[start:start + step] = part
    return into(out, blocks.view(np.uint8).reshape(lead + (n_per_row // fmt.block_size * fmt.type_size,)), given)


def dequantize(data: Any, qtype: Any, shape: Any = None, *, backend: Any = None, out: Any = None) -> np.ndarray:
    """Decode ggml block bytes to float32, as ggml's ``to_float`` does.

    Parameters
    ----------
    data : array_like of uint8 (or bytes), any shape with the right total size
        The quantized bytes, rows in order.
    qtype : str or int
        GGUF type name (case-insensitive) or ggml type id.
    shape : int or tuple of int
        Shape of the float tensor; its last axis is the row and must be a multiple of
        the block size. Required: ggml bytes do not record it (a ``.gguf`` file does,
        :func:`read` returns it; for ``data = quantize(W, qtype)`` it is ``W.shape``).
    backend : str or Backend, optional
        Run op ``gguf_dequantize`` of this backend instead (see :func:`quantize`).
    out : ndarray of float32, optional
        The result's array (``shape``), written and returned instead of a new one.

    Returns
    -------
    ndarray of float32, shape ``shape``

    Raises
    ------
    ValueError
        Unknown qtype, bad shape, or ``data`` size not matching ``shape``.
    TypeError
        ``data`` is not uint8, or ``shape`` is missing.
    """
    fmt = checked_format(qtype)
    if shape is None:
        raise TypeError(_missing_shape(data, fmt))
    if not is_reference(backend):
        return call_op(backend, "gguf_dequantize", dequantize, data, qtype, shape, fmt=fmt.name, out=out)
    given = data
    data, shape = _check_data(data, fmt, shape)
    if data.size == 0:
        return into(out, np.zeros(shape, np.float32), (given,))
    blocks = data.view(fmt.dtype)
    with np.errstate(all="ignore"):  # arbitrary bytes may hold inf/NaN scales: IEEE results
        y = fmt.dequantize_blocks(blocks)
    if y.dtype != np.float32 or y.shape != (blocks.size, fmt.block_size):  # postcondition
        raise AssertionError(f"{fmt.__name__}.dequantize_blocks returned {y.dtype} {y.shape}")
    return into(out, y.reshape(shape), (given,))
