"""ggml's own C quantize / dequantize, called through ctypes, as a benchmark peer.

The ``llama-cpp-python`` package (the ``peers`` extra) bundles llama.cpp's ``libggml-base``;
this module loads it and calls, on the calling thread only (one core):

- ``ggml_quantize_chunk(type, src, dst, start, nrows, n_per_row, imatrix)`` (it calls
  ``ggml_quantize_init`` itself; the IQ grids are initialised once in :func:`load`);
- ``ggml_get_type_traits(type)->to_float(x, y, k)``, the reference C dequantizer.

``load()`` returns None, with the reason in :data:`REASON`, when the library is absent,
so benchmarks skip instead of failing. Nothing here is used by refquant itself.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from typing import Any

import numpy as np

REASON = ""

_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class _TypeTraits(ctypes.Structure):
    """``struct ggml_type_traits`` (ggml.h)."""

    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


class Ggml:
    """ggml's C quantize / dequantize for one process."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                            ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
        lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
        lib.ggml_quantize_init.argtypes = [ctypes.c_int]
        lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]

    def traits(self, type_id: int) -> _TypeTraits:
        return self.lib.ggml_get_type_traits(type_id).contents

    def requires_imatrix(self, type_id: int) -> bool:
        return bool(self.lib.ggml_quantize_requires_imatrix(type_id))

    def quantize(self, x: np.ndarray, type_id: int, out: np.ndarray, imatrix: np.ndarray | None = None) -> np.ndarray:
        """Rows ``x`` float32 (rows, n) C-contiguous -> ``out`` uint8 (rows, row_bytes)."""
        self.lib.ggml_quantize_init(type_id)
        im = None if imatrix is None else imatrix.ctypes.data
        self.lib.ggml_quantize_chunk(type_id, x.ctypes.data, out.ctypes.data, 0, x.shape[0], x.shape[1], im)
        return out

    def dequantize(self, data: np.ndarray, type_id: int, out: np.ndarray) -> np.ndarray:
        """Bytes ``data`` -> float32 ``out`` (its size elements) with the type's ``to_float``."""
        fn = self.traits(type_id).to_float
        if not fn:
            raise ValueError(f"ggml type {type_id} has no to_float")
        _TO_FLOAT(fn)(data.ctypes.data, out.ctypes.data, out.size)
        return out


def _candidates() -> list[str]:
    try:
        import llama_cpp
    except ImportError:
        return []
    lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    return sorted(glob.glob(os.path.join(lib, "libggml-base.so*")) + glob.glob(os.path.join(lib, "libggml-base.dylib")))


@functools.lru_cache(maxsize=None)
def load() -> Any:
    """The :class:`Ggml` of the installed llama-cpp-python, or None (see :data:`REASON`)."""
    global REASON
    paths = _candidates()
    if not paths:
        REASON = "ggml C peer: llama-cpp-python (pip install 'refquant[peers]') is not installed"
        return None
    try:
        return Ggml(ctypes.CDLL(paths[0]))
    except (OSError, AttributeError) as exc:
        REASON = f"ggml C peer: {paths[0]} not usable: {exc}"
        return None
