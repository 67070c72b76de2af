"""File formats: ``.gguf`` files and llama.cpp importance-matrix files.

The public names of the API contract, ``refquant.gguf.read`` / ``refquant.gguf.write``,
are :func:`read` and :func:`write` here, re-exported by ``refquant.gguf``.

Modules: :mod:`~refquant.io.gguf_file` (GGUF v3 reader for untrusted files and writer),
:mod:`~refquant.io.gguf_metadata` (typed metadata values), :mod:`~refquant.io.ggml_types`
(ggml type ids and block sizes), :mod:`~refquant.io.imatrix` (importance matrices).
"""

from __future__ import annotations

from refquant._lazy import lazy_getattr

# public name -> module that defines it. Resolved on first use, so importing one module of
# this package (refquant.gguf needs only ggml_types) does not load the file reader.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("GGMLType", "ggml_type"), "refquant.io.ggml_types"),
    **dict.fromkeys(("GGUFFile", "GGUFTensor", "parse", "read", "write"), "refquant.io.gguf_file"),
    **dict.fromkeys(("GGUFValue", "GGUFValueType"), "refquant.io.gguf_metadata"),
    **dict.fromkeys(("Imatrix", "ImatrixCollector", "ImatrixEntry", "compute_imatrix", "read_imatrix",
                     "write_imatrix"), "refquant.io.imatrix"),
}

__all__ = [
    "read", "write", "parse", "GGUFFile", "GGUFTensor", "GGUFValue", "GGUFValueType", "GGMLType", "ggml_type",
    "Imatrix", "ImatrixEntry", "ImatrixCollector", "compute_imatrix", "read_imatrix", "write_imatrix",
]


__getattr__ = lazy_getattr(globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
