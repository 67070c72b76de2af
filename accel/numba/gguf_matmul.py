"""Fused product with a GGUF weight: ``y = x @ W.T`` for every GGUF type the backend decodes.

The weight stays in its ggml blocks; each parallel task decodes a tile of ``TILE`` weight
rows into a small float32 buffer (ggml's ``dequantize_row_*`` values, bit for bit) and
multiplies every token's activations with it, four rows at a time with 16 float32
accumulator lanes per row. The tile (at most 16 x in_features floats) stays in cache, so
the weight is read from memory once, compressed: a GEMV moves the type's bits per weight.

One compiled **row decoder** per type, ``decode_row(q, w)`` (one row's bytes -> its
float32 values), is built by :func:`accel.numba.gguf_blocks.instantiate` from the type's
block decoder (:data:`accel.numba.gguf_blocks.DECODERS`, the very function its dequantize
kernel inlines; F16/BF16: the element decoders of
:data:`accel.numba.gguf_legacy.FLOAT_DECODERS`). The one parallel driver :func:`_matmul`
takes the row decoder as a first-class function argument (a Numba ``FunctionType``): it
is compiled once for all types, each type adding only its small serial row decoder, and
calls it through a pointer once per weight row. (A dispatcher argument would otherwise
specialize the driver per type; :func:`_driver` compiles the one signature and freezes it.)

Contract: Nmse against :func:`refquant.formats.gguf_matmul.dequant_matmul` (float64
product of the same dequantized weight); float32 accumulation in another order is not
bit-exact, and is not claimed to be.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numba
import numpy as np
from numba import prange, types

# the family modules fill gguf_blocks.DECODERS as they build their kernels
from accel.numba import gguf_iqgrid, gguf_iquants, gguf_kquants  # noqa: F401
from accel.numba.gguf_blocks import DECODERS, instantiate, register
from accel.numba.gguf_legacy import FLOAT_DECODERS
from accel.numba.gguf_math import LANES, gkernel, ghelper, stack_f32
from refquant.formats import FORMATS

__all__ = ["MATMUL_QTYPES", "dequant_matmul"]

TILE = 16  # weight rows decoded per task
_ZERO = np.float32(0.0)


def _block_row_template(q, w):  # type: ignore[no-untyped-def]
    """One weight row: GGUF bytes ``q`` (row_bytes,) -> float32 ``w`` (in_features,), block by block."""
    qb = q.reshape((-1, SIZE))  # noqa: F821 - bound by instantiate
    wb = w.reshape((-1, QK))  # noqa: F821 - (n_blocks, block_size) rows, as the dequantize kernels index them
    for b in range(wb.shape[0]):
        decode(qb[b], wb[b])  # noqa: F821


def _element_row_template(q, w):  # type: ignore[no-untyped-def]
    """One F16/BF16 weight row: little-endian 16-bit values ``q`` (2·in_features,) -> float32 ``w``."""
    h = q.view(np.uint16)
    for j in range(w.shape[0]):
        w[j] = decode(h[j])  # noqa: F821 - bound by instantiate


def _row_decoder(name: str) -> Any:
    """The compiled (on first use) row decoder of the type ``name``, attributed to the
    source file of its decoding rule (see :func:`accel.numba.gguf_blocks.instantiate`)."""
    if name in FLOAT_DECODERS:
        template, decode, consts = _element_row_template, FLOAT_DECODERS[name], {}
    else:
        fmt = FORMATS[name]
        template, decode, consts = _block_row_template, DECODERS[name], dict(QK=fmt.block_size, SIZE=fmt.type_size)
    origin = decode.py_func.__code__.co_filename
    return register(ghelper(instantiate(template, f"{name}_decode_row", origin, decode=decode, **consts)))


_ROW_DECODERS = {name: _row_decoder(name) for name in sorted({*DECODERS, *FLOAT_DECODERS})}
MATMUL_QTYPES = frozenset(_ROW_DECODERS)

# decode_row(q, w): one row's bytes (read-only) -> its float32 values
_ROW_SIG = types.void(types.Array(types.uint8, 1, "C", readonly=True), types.Array(types.float32, 1, "C"))
# _matmul(decode_row, x, data, k, out), x and data read-only
_MATMUL_ARGS = (types.FunctionType(_ROW_SIG), types.Array(types.float32, 2, "C", readonly=True),
                types.Array(types.uint8, 2, "C", readonly=True), types.int64, types.Array(types.float32, 2, "C"))
_LOCK = threading.Lock()


@ghelper
def _dot4(xr, wt, r, out_t, col):  # type: ignore[no-untyped-def]
    """out_t[col + k] = xr · wt[r + k] for k = 0..3, in 16 float32 lanes per row."""
    a0 = numba.carray(stack_f32(), LANES)
    a1 = numba.carray(stack_f32(), LANES)
    a2 = numba.carray(stack_f32(), LANES)
    a3 = numba.carray(stack_f32(), LANES)
    for j in range(LANES):
        a0[j] = _ZERO
        a1[j] = _ZERO
        a2[j] = _ZERO
        a3[j] = _ZERO
    # (K/16, 16) views: the lane index is then a plain loop variable (a computed index
    # such as k + j gets Numba's negative-index wraparound, which turns loads into gathers)
    xv = xr.reshape((-1, LANES))
    w0 = wt[r].reshape((-1, LANES))
    w1 = wt[r + 1].reshape((-1, LANES))
    w2 = wt[r + 2].reshape((-1, LANES))
    w3 = wt[r + 3].reshape((-1, LANES))
    for i in range(xv.shape[0]):
        for j in range(LANES):
            v = xv[i, j]
            a0[j] += v * w0[i, j]
            a1[j] += v * w1[i, j]
            a2[j] += v * w2[i, j]
            a3[j] += v * w3[i, j]
    s0 = _ZERO
    s1 = _ZERO
    s2 = _ZERO
    s3 = _ZERO
    for j in range(LANES):
        s0 += a0[j]
        s1 += a1[j]
        s2 += a2[j]
        s3 += a3[j]
    n = out_t.shape[0]
    if col < n:
        out_t[col] = s0
    if col + 1 < n:
        out_t[col + 1] = s1
    if col + 2 < n:
        out_t[col + 2] = s2
    if col + 3 < n:
        out_t[col + 3] = s3


@gkernel
def _matmul(decode_row, x, data, k, out):  # type: ignore[no-untyped-def]
    """out (T, O) = x (T, Kp) @ W.T with W's rows GGUF-encoded in data (O, row_bytes) and
    decoded by ``decode_row`` into their first ``k`` values (x's columns past k are zero)."""
    n_tok, kp = x.shape
    n_out = data.shape[0]
    for c in prange((n_out + TILE - 1) // TILE):
        wt = np.zeros((TILE, kp), np.float32)  # rows past the end and columns past k stay zero
        r0 = c * TILE
        nr = min(TILE, n_out - r0)
        for r in range(nr):
            decode_row(data[r0 + r], wt[r, :k])
        for t in range(n_tok):
            for r in range(0, nr, 4):
                _dot4(x[t], wt, r, out[t], r0 + r)


def _driver(name: str) -> tuple[Any, Any]:
    """(the driver, the row decoder of ``name``), both compiled (or loaded from Numba's cache)."""
    decode_row = _ROW_DECODERS[name]
    if not _matmul.signatures or _ROW_SIG.args not in decode_row.overloads:
        with _LOCK:
            if not _matmul.signatures:
                _matmul.compile(_MATMUL_ARGS)
                _matmul.disable_compile()  # a dispatcher argument converts to the FunctionType, never re-specializes
            decode_row.compile(_ROW_SIG.args)
    return _matmul, decode_row


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (the driver's one compiled signature takes read-only inputs)."""
    view = a.view()
    view.flags.writeable = False
    return view


def dequant_matmul(x: np.ndarray, data: np.ndarray, qtype: Any, shape: tuple[int, int]) -> np.ndarray:
    """Backend op ``gguf_dequant_matmul``: ``x @ W.T`` for a GGUF weight ``W`` of ``shape``
    (out, in), on arguments prepared by :mod:`refquant.prepare.gguf` (finite float ``x``
    (..., in), flat uint8 ``data`` of exactly ``shape``'s blocks)."""
    from accel.numba.gguf import kernel_name

    name = kernel_name(qtype, MATMUL_QTYPES)
    n_out, k = shape
    rows = np.ascontiguousarray(x.reshape(math.prod(x.shape[:-1]), k), dtype=np.float32)
    out = np.empty((rows.shape[0], n_out), np.float32)
    if out.size:
        if k == 0:
            out[:] = 0.0
        else:
            kp = -(-k // LANES) * LANES  # F16/BF16 rows of any length: x zero-padded to whole lanes
            xp = rows if kp == k else np.pad(rows, ((0, 0), (0, kp - k)))
            matmul, decode_row = _driver(name)
            matmul(decode_row, _readonly(xp), _readonly(np.ascontiguousarray(data).reshape(n_out, -1)), k, out)
            if not np.isfinite(out).all():          # float32 sums overflowed: the reference's float64 there
                from accel.numba.gguf import gguf_dequantize
                from accel.numba.matmul import exact_where_nonfinite

                w = gguf_dequantize(data, qtype, shape, out=np.empty(shape, np.float32))
                exact_where_nonfinite(rows, w, out)
    return out.reshape(x.shape[:-1] + (n_out,))
