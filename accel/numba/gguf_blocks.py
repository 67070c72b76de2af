"""The factory of the GGUF Numba kernels: one compiled quantize and one dequantize
function per type, built from that type's block functions and its declared layout.

A family module (:mod:`accel.numba.gguf_legacy`, ...) writes, per type, a block decoder
``decode(q, y)`` (one block's bytes ``q`` -> its ``block_size`` float32 values ``y``) and
a chunk quantizer ``quantize_chunk(x, imatrix, sigma2, has_im, out, start, stop, nbr)``
(blocks ``start .. stop`` of the rows ``x``, ``nbr`` blocks per row). :func:`gguf_kernels`
turns them into the type's two parallel kernels, with the block size and the byte
offsets of the type's fields (:func:`field_offsets`, read from the block dtype that
:class:`refquant.formats.base.BlockFormat` derives from the declared fields) as
compile-time constants. No kernel switches on a type code at run time.

How: :func:`instantiate` copies a template function with some of its global names bound
to the type's values. Numba freezes globals at compile time, so each copy is its own
compiled function calling its block functions directly (inlined), and each copy is
named after its type and attributed to its family's source file, so Numba's on-disk
cache keeps one entry per type and drops it when the family's file changes (a closure
over the block functions would miss the cache in every process: Numba keys closures on
the pickled dispatchers, which carry a per-process id). As for every Numba cache, an
edit to a helper in another file (:mod:`accel.numba.gguf_math`) is not seen: clear the
cache (``accel/numba/__pycache__``) after such an edit.

Block loops use the block's run-time length (``y.shape[0]``), not the constant: LLVM
fully unrolls a constant 32-iteration loop and then cannot vectorize it (the input and
output arrays may alias), while a run-time trip count gets the loop vectorizer, with
its alias check (measured ~3× on Q8_0 decoding).
"""

from __future__ import annotations

import collections
import types
from typing import Any, Callable

from numba import prange

from accel.numba.gguf_math import gkernel

__all__ = ["CHUNK", "COMPILED", "DECODERS", "field_offsets", "instantiate", "gguf_kernels", "dequantize_kernel",
           "register"]

CHUNK = 256  # blocks per prange iteration

#: Every kernel built here, in build order (tests inspect their machine code).
COMPILED: list[Any] = []

#: The block decoder ``decode(q, y)`` of every type whose dequantize kernel is built here,
#: by type name (the fused matmul, :mod:`accel.numba.gguf_matmul`, builds its row decoders
#: from them).
DECODERS: dict[str, Any] = {}


def register(kernel: Any) -> Any:
    """Record a factory-built kernel in :data:`COMPILED`; returns it."""
    COMPILED.append(kernel)
    return kernel


def field_offsets(fmt: Any) -> Any:
    """Byte offsets of the declared fields of the block type ``fmt`` (from its packed
    dtype), as a named tuple (``.d``, ``.qs``, ...): Numba compiles a global one in as
    constants."""
    names = fmt.dtype.names
    offsets = collections.namedtuple(f"{fmt.__name__}Offsets", names)
    return offsets(*(int(fmt.dtype.fields[name][1]) for name in names))


def instantiate(template: Callable[..., Any], name: str, origin: str | None = None,
                **bindings: Any) -> Callable[..., Any]:
    """A copy of ``template`` named ``name`` whose globals ``bindings`` are replaced
    (constants and block functions; Numba compiles them in as constants).

    ``origin``: the source file the copy is attributed to (default: the template's).
    Numba's cache keeps a function's compiled code next to that file and discards it
    when the file changes, so a kernel built from a family's block functions names the
    family's file: editing the block rules then recompiles the kernel."""
    missing = set(bindings) - set(template.__code__.co_names)
    if missing:  # a binding the template never reads is a typo, not a specialisation
        raise TypeError(f"{template.__name__} does not use {sorted(missing)}")
    code = template.__code__ if origin is None else template.__code__.replace(co_filename=origin)
    fn = types.FunctionType(code, {**template.__globals__, **bindings}, name, template.__defaults__)
    fn.__qualname__ = name
    fn.__doc__ = template.__doc__
    return fn


def _quantize_template(x, imatrix, sigma2, has_im, out):  # type: ignore[no-untyped-def]
    """Quantize float32 rows ``x`` (rows, n) into ``out`` (rows, row_bytes)."""
    rows, n = x.shape
    nbr = n // QK  # noqa: F821 - bound by instantiate
    total = rows * nbr
    for c in prange((total + CHUNK_BLOCKS - 1) // CHUNK_BLOCKS):  # noqa: F821
        start = c * CHUNK_BLOCKS  # noqa: F821
        quantize_chunk(x, imatrix, sigma2, has_im, out, start, min(total, start + CHUNK_BLOCKS), nbr)  # noqa: F821


def _dequantize_template(data, out):  # type: ignore[no-untyped-def]
    """Decode ``data`` (n_blocks, type_size) uint8 into ``out`` (n_blocks, block_size) float32."""
    nb = data.shape[0]
    for c in prange((nb + CHUNK_BLOCKS - 1) // CHUNK_BLOCKS):  # noqa: F821
        for b in range(c * CHUNK_BLOCKS, min(nb, (c + 1) * CHUNK_BLOCKS)):  # noqa: F821
            decode(data[b], out[b])  # noqa: F821


def gguf_kernels(fmt: Any, quantize_chunk: Any, decode: Any, *, chunk: int = CHUNK) -> tuple[Any, Any]:
    """``(quantize(x, imatrix, sigma2, has_im, out), dequantize(data, out))`` for the
    block type ``fmt``, compiled on first call; ``chunk`` blocks per prange iteration."""
    origin = decode.py_func.__code__.co_filename  # the family's module (see instantiate)
    quantize = gkernel(instantiate(_quantize_template, f"{fmt.name}_quantize", origin, QK=fmt.block_size,
                                   CHUNK_BLOCKS=chunk, quantize_chunk=quantize_chunk))
    return register(quantize), dequantize_kernel(fmt, decode, chunk=chunk)


def dequantize_kernel(fmt: Any, decode: Any, *, chunk: int = CHUNK) -> Any:
    """``dequantize(data, out)`` for the block type ``fmt`` from its block decoder
    ``decode(q, y)`` (recorded in :data:`DECODERS`), compiled on first call."""
    DECODERS[fmt.name] = decode
    origin = decode.py_func.__code__.co_filename
    return register(gkernel(instantiate(_dequantize_template, f"{fmt.name}_dequantize", origin, CHUNK_BLOCKS=chunk,
                                        decode=decode)))

