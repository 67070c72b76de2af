"""ggml tensor types as they appear in ``.gguf`` files: id, block elements, block bytes.

A ``.gguf`` tensor info stores its ggml type as a uint32 id (``enum ggml_type`` in
``ggml/include/ggml.h``). To bounds-check a file, the reader must know the byte size of
every type a file may hold, including the ones refquant has no codec for (IQ2_XXS ...),
so this table lists all of them. The block formats that refquant implements declare
their fields in ``refquant.formats``; a test checks that their derived sizes, gguf-py's
``GGML_QUANT_SIZES`` and (when a local build is available) ggml's own type traits agree
with this table.

============  ====  ======  =====  ===================================================
name          id    block   bytes  layout of one block (``ggml-common.h``)
============  ====  ======  =====  ===================================================
f32           0     1       4
f16           1     1       2
q4_0          2     32      18     d:f16, qs[16]
q4_1          3     32      20     d:f16, m:f16, qs[16]
q5_0          6     32      22     d:f16, qh[4], qs[16]
q5_1          7     32      24     d:f16, m:f16, qh[4], qs[16]
q8_0          8     32      34     d:f16, qs[32]
q8_1          9     32      36     d:f16, s:f16, qs[32]
q2_k          10    256     84     scales[16], qs[64], d:f16, dmin:f16
q3_k          11    256     110    hmask[32], qs[64], scales[12], d:f16
q4_k          12    256     144    d:f16, dmin:f16, scales[12], qs[128]
q5_k          13    256     176    d:f16, dmin:f16, scales[12], qh[32], qs[128]
q6_k          14    256     210    ql[128], qh[64], scales[16], d:f16
q8_k          15    256     292    d:f32, qs[256], bsums:i16[16]
iq2_xxs       16    256     66     d:f16, qs:u16[32]
iq2_xs        17    256     74     d:f16, qs:u16[32], scales[8]
iq3_xxs       18    256     98     d:f16, qs[96]
iq1_s         19    256     50     d:f16, qs[32], qh:u16[8]
iq4_nl        20    32      18     d:f16, qs[16]
iq3_s         21    256     110    d:f16, qs[64], qh[8], signs[32], scales[4]
iq2_s         22    256     82     d:f16, qs[64], qh[8], scales[8]
iq4_xs        23    256     136    d:f16, scales_h:u16, scales_l[4], qs[128]
i8            24    1       1
i16           25    1       2
i32           26    1       4
i64           27    1       8
f64           28    1       8
iq1_m         29    256     56     qs[32], qh[16], scales[8]
bf16          30    1       2
tq1_0         34    256     54     qs[48], qh[4], d:f16
tq2_0         35    256     66     qs[64], d:f16
mxfp4         39    32      17     e:u8 (E8M0), qs[16]
nvfp4         40    64      36     d[4] (UE4M3), qs[32]
q1_0          41    128     18     d:f16, qs[16]
q2_0          42    64      18     d:f16, qs[16]
============  ====  ======  =====  ===================================================

Ids 4, 5 (Q4_2, Q4_3), 31-33 (Q4_0_4_4 ...) and 36-38 (IQ4_NL_4_4 ...) were removed
from ggml; a file that uses them is rejected. The table matches ggml @ d99724f2
(``GGML_TYPE_COUNT`` = 43).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np

from refquant._validate import normalize_name

__all__ = ["GGMLType", "ggml_type", "block_size", "type_size", "bits_per_weight", "row_nbytes", "tensor_nbytes"]

QK_K = 256  # elements of a k-quant / i-quant super-block


class GGMLType(IntEnum):
    """ggml tensor type ids (``enum ggml_type``). ``str(t)`` is the lowercase name, e.g. ``"q4_k"``."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41
    Q2_0 = 42

    def __str__(self) -> str:
        return self.name.lower()


# type -> (elements per block, bytes per block); the sums spell out the block struct fields.
_SIZES: dict[GGMLType, tuple[int, int]] = {
    GGMLType.F32: (1, 4),
    GGMLType.F16: (1, 2),
    GGMLType.Q4_0: (32, 2 + 16),
    GGMLType.Q4_1: (32, 2 + 2 + 16),
    GGMLType.Q5_0: (32, 2 + 4 + 16),
    GGMLType.Q5_1: (32, 2 + 2 + 4 + 16),
    GGMLType.Q8_0: (32, 2 + 32),
    GGMLType.Q8_1: (32, 2 + 2 + 32),
    GGMLType.Q2_K: (QK_K, QK_K // 16 + QK_K // 4 + 2 + 2),
    GGMLType.Q3_K: (QK_K, QK_K // 8 + QK_K // 4 + 12 + 2),
    GGMLType.Q4_K: (QK_K, 2 + 2 + 12 + QK_K // 2),
    GGMLType.Q5_K: (QK_K, 2 + 2 + 12 + QK_K // 8 + QK_K // 2),
    GGMLType.Q6_K: (QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2),
    GGMLType.Q8_K: (QK_K, 4 + QK_K + 2 * (QK_K // 16)),
    GGMLType.IQ2_XXS: (QK_K, 2 + 2 * (QK_K // 8)),
    GGMLType.IQ2_XS: (QK_K, 2 + 2 * (QK_K // 8) + QK_K // 32),
    GGMLType.IQ3_XXS: (QK_K, 2 + 3 * (QK_K // 8)),
    GGMLType.IQ1_S: (QK_K, 2 + QK_K // 8 + 2 * (QK_K // 32)),
    GGMLType.IQ4_NL: (32, 2 + 16),
    GGMLType.IQ3_S: (QK_K, 2 + QK_K // 4 + QK_K // 32 + QK_K // 8 + QK_K // 64),
    GGMLType.IQ2_S: (QK_K, 2 + QK_K // 4 + QK_K // 32 + QK_K // 32),
    GGMLType.IQ4_XS: (QK_K, 2 + 2 + QK_K // 64 + QK_K // 2),
    GGMLType.I8: (1, 1),
    GGMLType.I16: (1, 2),
    GGMLType.I32: (1, 4),
    GGMLType.I64: (1, 8),
    GGMLType.F64: (1, 8),
    GGMLType.IQ1_M: (QK_K, QK_K // 8 + QK_K // 16 + QK_K // 32),
    GGMLType.BF16: (1, 2),
    GGMLType.TQ1_0: (QK_K, (QK_K - 4 * QK_K // 64) // 5 + QK_K // 64 + 2),
    GGMLType.TQ2_0: (QK_K, QK_K // 4 + 2),
    GGMLType.MXFP4: (32, 1 + 16),
    GGMLType.NVFP4: (64, 64 // 16 + 64 // 2),
    GGMLType.Q1_0: (128, 2 + 128 // 8),
    GGMLType.Q2_0: (64, 2 + 64 // 4),
}

# Element types stored one value per element (block size 1): the NumPy dtype of a view.
PLAIN_DTYPES: dict[GGMLType, np.dtype] = {
    GGMLType.F32: np.dtype("<f4"),
    GGMLType.F16: np.dtype("<f2"),
    GGMLType.BF16: np.dtype("<u2"),  # raw bits; refquant.io.gguf_file decodes them
    GGMLType.F64: np.dtype("<f8"),
    GGMLType.I8: np.dtype("<i1"),
    GGMLType.I16: np.dtype("<i2"),
    GGMLType.I32: np.dtype("<i4"),
    GGMLType.I64: np.dtype("<i8"),
}

_BY_NAME = {normalize_name(t.name): t for t in GGMLType}


def ggml_type(qtype: Any, name: str = "qtype") -> GGMLType:
    """Resolve ``qtype`` (a :class:`GGMLType`, its integer id, or a name such as ``"q4_k"``,
    case-insensitive) to a :class:`GGMLType`.

    Parameters
    ----------
    qtype : str, int or GGMLType
        A ggml type name (any case), id, or GGMLType.
    name : str
        The parameter name the error messages use.

    Raises
    ------
    TypeError
        ``qtype`` is neither a string nor an integer.
    ValueError
        The name or id is not a ggml type (the message lists the allowed names).
    """
    if isinstance(qtype, GGMLType):
        return qtype
    if isinstance(qtype, str):
        t = _BY_NAME.get(normalize_name(qtype))
        if t is None:
            raise ValueError(f"{name}={qtype!r} is not a ggml type; allowed: {', '.join(_BY_NAME)}")
        return t
    if isinstance(qtype, (int, np.integer)) and not isinstance(qtype, (bool, np.bool_)):
        try:
            return GGMLType(int(qtype))
        except ValueError:
            raise ValueError(f"{name}={int(qtype)} is not a ggml type id; allowed ids: "
                             f"{', '.join(str(int(t)) for t in GGMLType)}") from None
    raise TypeError(f"{name} must be a ggml type name (e.g. 'q4_k') or id, got {qtype!r} ({type(qtype).__name__})")


def block_size(qtype: Any) -> int:
    """Elements per block of ``qtype`` (1 for plain element types).

    Parameters
    ----------
    qtype : str, int or GGMLType
        Any ggml type: name (any case), id or GGMLType (ValueError/TypeError otherwise, :func:`ggml_type`).
    """
    return _SIZES[ggml_type(qtype)][0]


def type_size(qtype: Any) -> int:
    """Bytes per block of ``qtype``.

    Parameters
    ----------
    qtype : str, int or GGMLType
        Any ggml type: name (any case), id or GGMLType (ValueError/TypeError otherwise, :func:`ggml_type`).
    """
    return _SIZES[ggml_type(qtype)][1]


def bits_per_weight(qtype: Any) -> float:
    """Stored bits per element of ``qtype``, block scales included: ``8 * type_size / block_size``
    (q4_0: 4.5, q4_k: 4.5, q6_k: 6.5625).

    Parameters
    ----------
    qtype : str, int or GGMLType
        Any ggml type: name (any case), id or GGMLType (ValueError/TypeError otherwise, :func:`ggml_type`).
    """
    blck, size = _SIZES[ggml_type(qtype)]
    return 8.0 * size / blck


def row_nbytes(qtype: Any, n: int) -> int:
    """Bytes of a row of ``n`` elements; ``n`` must be a multiple of the block size.

    Parameters
    ----------
    qtype : str, int or GGMLType
        Any ggml type: name (any case), id or GGMLType (ValueError/TypeError otherwise, :func:`ggml_type`).
    n : int >= 0
        A multiple of the type's block size.

    Raises
    ------
    ValueError
        ``n`` is not a multiple of the block size (the message says which size is needed).
    """
    t = ggml_type(qtype)
    blck, size = _SIZES[t]
    if n % blck:
        raise ValueError(f"a {t} row must hold a multiple of {blck} elements (one block); got {n}")
    return n // blck * size


def tensor_nbytes(qtype: Any, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of ``shape`` (NumPy order: ``shape[-1]`` is the row length).

    Parameters
    ----------
    qtype : str, int or GGMLType
        Any ggml type: name (any case), id or GGMLType (ValueError/TypeError otherwise, :func:`ggml_type`).
    shape : tuple of int >= 0
        NumPy order; ``shape[-1]`` a multiple of the block size (unchecked: the readers check).
    """
    rows = int(np.prod(shape[:-1], dtype=object)) if len(shape) > 1 else 1
    n = shape[-1] if shape else 1
    return rows * row_nbytes(qtype, n)
