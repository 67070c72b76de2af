"""GGUF ops: launch code for ``src/gguf.cu`` (dequantize, every type) and
``src/gguf_matmul.cu`` (fused W4A16)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from accel.cupy._launch import empty_matmul, fix_nonfinite_products, i32, i64, raise_reference_error, require, stride_grid
# ggml's IQ lattice grids and ksigns table: data (ggml-common.h's arrays as the reference
# stores them), passed to the kernels as device tables so no grid is retyped in CUDA
from refquant.formats.iq_grids import KSIGNS_IQ2XS, grid
# the grid searches' tables (levels, kmap, neighbour lists), the reference's own
from refquant.formats.gguf_iqgrid_search import SEARCH_GRIDS, grid_tables
from refquant.formats.gguf_mx import shared_exponent   # MXFP4's exponent rule, to tabulate where log2f rounds up
from refquant.gguf import get_format

__all__ = ["DEQUANT_QTYPES", "MATMUL_QTYPES", "gguf_dequantize", "gguf_dequant_matmul"]

# grid-codebook types (src/gguf_iqgrid.cuh): the grid their kernels take (with ksigns_iq2xs)
_IQ_GRIDS = {"iq2_xxs": "iq2xxs_grid", "iq2_xs": "iq2xs_grid", "iq2_s": "iq2s_grid", "iq3_xxs": "iq3xxs_grid",
             "iq3_s": "iq3s_grid", "iq1_s": "iq1s_grid", "iq1_m": "iq1s_grid"}

# src/gguf.cu + src/gguf_iqgrid.cu (dequantize) and src/gguf_matmul.cu: one entry point per type each
DEQUANT_QTYPES = frozenset({"f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "q2_k", "q3_k", "q4_k",
                            "q5_k", "q6_k", "q8_k", "tq1_0", "tq2_0", "iq4_nl", "iq4_xs", "mxfp4", "nvfp4",
                            *_IQ_GRIDS})
MATMUL_QTYPES = DEQUANT_QTYPES


def _grid_tables(dev: Any, qtype: str) -> list[Any]:
    """The device tables a grid type's kernels take: its lattice (uint8 bytes; IQ1's int8
    entries as their bytes) and ksigns_iq2xs."""
    name = _IQ_GRIDS[qtype]
    return [dev.constant(name, grid(name).view(np.uint8)), dev.constant("ksigns_iq2xs", KSIGNS_IQ2XS)]


def _elements(shape: Any, block_size: int) -> int | None:
    """Elements of ``shape`` when it is a valid GGUF tensor shape for the block size."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape) if isinstance(shape, (tuple, list)) else ()
    if not dims or any(not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0 for d in dims):
        return None
    return math.prod(int(d) for d in dims) if int(dims[-1]) % block_size == 0 else None


def gguf_dequantize(dev: Any, data: Any, qtype: Any, shape: Any) -> Any:
    """Backend op: the float32 values of :func:`refquant.gguf.dequantize` (ggml's to_float)."""
    fmt = get_format(qtype)
    n = _elements(shape, fmt.block_size)
    require(dev, fmt.name in DEQUANT_QTYPES and n is not None and hasattr(data, "dtype")
            and np.dtype(data.dtype) == np.uint8 and data.size == n // fmt.block_size * fmt.type_size,
            "gguf_dequantize", data, qtype, shape)
    dims = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    flat = dev.contiguous(data, np.uint8).reshape(-1)
    out = dev.empty(n, np.float32)
    if fmt.name in ("f16", "bf16"):
        grid_, block = stride_grid(dev, n)
        dev.launch("gguf", f"gguf_dequantize_{fmt.name}", grid_, block, [flat.view(np.uint16), i64(n), out])
    elif fmt.name in _IQ_GRIDS:
        nb = n // fmt.block_size
        grid_, block = stride_grid(dev, nb, 64)
        dev.launch("gguf_iqgrid", f"gguf_dequantize_{fmt.name}", grid_, block,
                   [flat, i64(nb), *_grid_tables(dev, fmt.name), out])
    else:
        nb = n // fmt.block_size
        grid_, block = stride_grid(dev, nb, 64)
        dev.launch("gguf", f"gguf_dequantize_{fmt.name}", grid_, block, [flat, i64(nb), out])
    return out.reshape(dims)


def gguf_dequant_matmul(dev: Any, x: Any, data: Any, qtype: Any, shape: Any) -> Any:
    """Backend op: ``x @ W.T`` for a GGUF weight ``W`` of ``shape`` (out, in), fused (Nmse);
    see :func:`refquant.formats.gguf_matmul.dequant_matmul`."""
    fmt = get_format(qtype)
    n = _elements(shape, fmt.block_size) if isinstance(shape, tuple) and len(shape) == 2 else None
    require(dev, fmt.name in MATMUL_QTYPES and n is not None and hasattr(data, "dtype") and hasattr(x, "dtype")
            and np.dtype(data.dtype) == np.uint8 and data.size == n // fmt.block_size * fmt.type_size
            and x.ndim >= 1 and x.shape[-1] == shape[1], "gguf_dequant_matmul", x, data, qtype, shape)
    out_f, in_f = int(shape[0]), int(shape[1])
    empty = empty_matmul(dev, x.shape[:-1], in_f, out_f)
    if empty is not None:
        return empty
    x2 = dev.contiguous(x, np.float32).reshape(-1, in_f)
    out = dev.empty((x2.shape[0], out_f), np.float32)
    tables = _grid_tables(dev, fmt.name) if fmt.name in _IQ_GRIDS else []
    dev.launch("gguf_matmul", f"gguf_matmul_{fmt.name}", (max(1, min(out_f, dev.max_blocks)),), (64,),
               [x2, i64(x2.shape[0]), dev.contiguous(data, np.uint8).reshape(-1), i64(out_f), i64(in_f), *tables, out])
    out = fix_nonfinite_products(dev, out, x2, lambda: gguf_dequantize(dev, data, qtype, (out_f, in_f)))
    return out.reshape(*x.shape[:-1], out_f)


# types whose kernels take (rows, n, imatrix, has_im, sigma2): the importance-matrix rules
_ROW_KERNELS = {"q4_0": "gguf_quantize", "q4_1": "gguf_quantize", "q5_0": "gguf_quantize", "q5_1": "gguf_quantize",
                "q2_k": "gguf_kquants", "q3_k": "gguf_kquants", "q4_k": "gguf_kquants", "q5_k": "gguf_kquants",
                "q6_k": "gguf_kquants", "iq4_nl": "gguf_iquants", "iq4_xs": "gguf_iquants"}
QUANTIZE_QTYPES = frozenset({"f16", "bf16", "q8_0", "q8_1", "q8_k", "tq1_0", "tq2_0", "mxfp4", "nvfp4", *_ROW_KERNELS,
                             *SEARCH_GRIDS})
# src/gguf_iqgrid_quantize.cu: 64 threads a block, one per sub-block, so a block takes 4
# super-blocks of the 16-sub-block types and 8 of the others (grid-stride beyond)
_SEARCH_THREADS, _SEARCH_MIN_PER_BLOCK = 64, 4


@functools.lru_cache(maxsize=None)
def _search_tables_host(name: str, nwant: int) -> tuple[np.ndarray, ...]:
    """The arrays src/gguf_iqgrid_quantize.cu reads for ``grid_tables(name, nwant)``: levels
    uint8 (G, group), kmap int32, the neighbour lists back to back int32, and where point
    u's list starts int32 (len(kmap) + 1)."""
    t = grid_tables(name, nwant)
    start = np.concatenate([[0], np.cumsum(t.counts)]).astype(np.int32)
    return (t.levels.astype(np.uint8), t.kmap.astype(np.int32), t.neighbours[t.neighbours >= 0].astype(np.int32),
            start)


def _search_tables(dev: Any, qtype: str) -> list[Any]:
    name, nwant = SEARCH_GRIDS[qtype]
    host = _search_tables_host(name, nwant)
    return [dev.constant(f"{name}/{nwant}/{part}", a) for part, a in zip(("levels", "kmap", "nbr", "start"), host)]


@functools.lru_cache(maxsize=None)
def log2_bump_table() -> np.ndarray:
    """uint32 (277,): for E = -149..127, the bits of the smallest float32 in [2**E, 2**(E+1))
    whose ``floor(log2f(x))`` is E + 1 (log2f rounding up to the next integer), by the
    reference's own exponent rule (:func:`refquant.formats.gguf_mx.shared_exponent`, whose
    E8M0 byte is ``floor(log2f(x)) + 125`` mod 256); 2**(E+1) when none. Only values within
    a few hundred float32 steps below 2**(E+1) can round up, so the top 4096 of each binade
    are searched (the lowest of them must not)."""
    out = np.empty(277, np.uint32)
    for k, E in enumerate(range(-149, 128)):
        lo = (E + 127) << 23 if E >= -126 else 1 << (E + 149)
        hi = (E + 128) << 23 if E >= -127 else 1 << (E + 150)
        bits = np.arange(max(lo, hi - 4096), hi, dtype=np.uint32)
        byte = shared_exponent(bits.view(np.float32))                  # floor(log2f) is E or E + 1
        if byte[0] != (E + 125) % 256:  # pragma: no cover - the window assumption failed
            raise AssertionError(f"log2f rounds up already 4096 steps below 2**{E + 1}")
        up = np.flatnonzero(byte == (E + 126) % 256)
        out[k] = bits[up[0]] if up.size else hi
    return out


def gguf_quantize(dev: Any, x: Any, qtype: Any, imatrix: Any = None) -> Any:
    """Backend op: the bytes of :func:`refquant.gguf.quantize` (ggml_quantize_chunk's) for
    :data:`QUANTIZE_QTYPES`."""
    fmt = get_format(qtype)
    require(dev, fmt.name in QUANTIZE_QTYPES and hasattr(x, "dtype") and np.dtype(x.dtype).kind == "f"
            and x.ndim >= 1 and x.shape[-1] % fmt.block_size == 0
            and (imatrix is None or (hasattr(imatrix, "shape") and tuple(imatrix.shape) == (x.shape[-1],)))
            and (imatrix is not None or not fmt.requires_imatrix),
            "gguf_quantize", x, qtype, imatrix)
    n_per_row = x.shape[-1]
    row_bytes = n_per_row // fmt.block_size * fmt.type_size
    with np.errstate(over="ignore"):
        flat = dev.contiguous(x, np.float32).reshape(-1)
    n = flat.size
    bad = dev.zeros(1, np.int32)
    if fmt.name in _ROW_KERNELS:
        rows = n // n_per_row if n_per_row else 0
        out = dev.empty(n // fmt.block_size * fmt.type_size, np.uint8)
        has_im = imatrix is not None and fmt.uses_imatrix
        qw = dev.contiguous(imatrix, np.float32) if has_im else dev.zeros(1, np.float32)
        sigma2 = dev.empty(max(rows, 1), np.float32)
        if has_im and fmt.block_size == 32:   # the legacy _impl rules weight by the row's mean square
            grid, block = stride_grid(dev, rows, 64)
            dev.launch("gguf_quantize", "row_sigma2", grid, block, [flat, i64(rows), i64(n_per_row), sigma2])
        grid, block = stride_grid(dev, n // fmt.block_size, 64)
        dev.launch(_ROW_KERNELS[fmt.name], f"gguf_quantize_{fmt.name}", grid, block,
                   [flat, i64(rows), i64(n_per_row), qw, i32(has_im), sigma2, out, bad])
    elif fmt.name in SEARCH_GRIDS:
        rows = n // n_per_row if n_per_row else 0
        total = n // fmt.block_size
        out = dev.empty(total * fmt.type_size, np.uint8)
        has_im = imatrix is not None and fmt.uses_imatrix
        qw = dev.contiguous(imatrix, np.float32) if has_im else dev.zeros(1, np.float32)
        grid = (max(1, min(-(-total // _SEARCH_MIN_PER_BLOCK), dev.max_blocks)),)
        dev.launch("gguf_iqgrid_quantize", f"gguf_quantize_{fmt.name}", grid, (_SEARCH_THREADS,),
                   [flat, i64(rows), i64(n_per_row), qw, i32(has_im), *_search_tables(dev, fmt.name), out, bad])
    elif fmt.name == "mxfp4":
        nb = n // fmt.block_size
        out = dev.empty(nb * fmt.type_size, np.uint8)
        grid, block = stride_grid(dev, nb, 64)
        dev.launch("gguf_iquants", "gguf_quantize_mxfp4", grid, block,
                   [flat, i64(nb), out, dev.constant("log2f_bump", log2_bump_table()), bad])
    elif fmt.name == "nvfp4":
        nb = n // fmt.block_size
        out = dev.empty(nb * fmt.type_size, np.uint8)
        grid, block = stride_grid(dev, nb, 64)
        dev.launch("gguf_iquants", "gguf_quantize_nvfp4", grid, block, [flat, i64(nb), out, bad])
    elif fmt.name in ("f16", "bf16"):
        out = dev.empty(n, np.uint16)
        grid, block = stride_grid(dev, n)
        dev.launch("gguf_quantize", f"gguf_quantize_{fmt.name}", grid, block, [flat, i64(n), out])
    else:
        nb = n // fmt.block_size
        out = dev.empty(nb * fmt.type_size, np.uint8)
        grid, block = stride_grid(dev, nb, 64)
        dev.launch("gguf_quantize", f"gguf_quantize_{fmt.name}", grid, block, [flat, i64(nb), out, bad])
    if int(bad[0]):
        raise_reference_error(dev, "gguf_quantize", x, qtype, imatrix)
    return out.view(np.uint8).reshape(tuple(x.shape[:-1]) + (row_bytes,))
