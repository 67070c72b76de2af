"""File formats: ``.gguf`` files and llama.cpp importance-matrix files.

The public names of the API contract, ``refquant.gguf.read`` / ``refquant.gguf.write``,
are :func:`read` and :func:`write` here, re-exported by ``refquant.gguf``.

Modules: :mod:`~refquant.io.gguf_file` (GGUF v3 reader for untrusted files and writer),
:mod:`~refquant.io.gguf_metadata` (typed metadata values), :mod:`~refquant.io.ggml_types`
(ggml type ids and block sizes), :mod:`~refquant.io.imatrix` (importance matrices).
"""

from __future__ import annotations

from refquant.io.ggml_types import GGMLType, ggml_type
from refquant.io.gguf_file import GGUFFile, GGUFTensor, parse, read, write
from refquant.io.gguf_metadata import GGUFValue, GGUFValueType
from refquant.io.imatrix import (
    Imatrix,
    ImatrixCollector,
    ImatrixEntry,
    compute_imatrix,
    read_imatrix,
    write_imatrix,
)

__all__ = [
    "read", "write", "parse", "GGUFFile", "GGUFTensor", "GGUFValue", "GGUFValueType", "GGMLType", "ggml_type",
    "Imatrix", "ImatrixEntry", "ImatrixCollector", "compute_imatrix", "read_imatrix", "write_imatrix",
]
