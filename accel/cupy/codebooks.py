"""codebook_encode / codebook_decode: launch code for ``src/codebooks.cu``."""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.cupy._launch import i32, i64, raise_reference_error, stride_grid
from refquant.dtypes.codebooks import get_codebook

__all__ = ["codebook_encode", "codebook_decode"]

_TIES = {"lower": 0, "upper": 1, "toward_zero": 2, "away_from_zero": 3}


def codebook_encode(dev: Any, x: Any, name: str) -> Any:
    """Backend op: same contract as :func:`refquant.dtypes.codebooks.codebook_encode`."""
    cb = get_codebook(name)
    if np.dtype(x.dtype) not in (np.float32, np.float64):
        raise_reference_error(dev, "codebook_encode", x, name)
    with np.errstate(over="ignore", invalid="ignore"):
        flat = dev.contiguous(x, np.float32).reshape(-1)
    out = dev.empty(flat.size, np.uint8)
    grid, block = stride_grid(dev, flat.size)
    dev.launch("codebooks", "codebook_encode", grid, block,
               [flat, out, i64(flat.size), dev.contiguous(cb.midpoints, np.float32), i32(cb.midpoints.size),
                dev.contiguous(cb.order, np.uint8), i32(_TIES[cb.tie])])
    return out.reshape(x.shape)


def codebook_decode(dev: Any, codes: Any, name: str) -> Any:
    """Backend op: same contract as :func:`refquant.dtypes.codebooks.codebook_decode`."""
    cb = get_codebook(name)
    if np.dtype(codes.dtype).kind not in "iu":
        raise_reference_error(dev, "codebook_decode", codes, name)
    small = np.dtype(codes.dtype) == np.uint8
    flat = dev.contiguous(codes, np.uint8 if small else np.int64).reshape(-1)
    out = dev.empty(flat.size, np.float32)
    bad = dev.zeros(1, np.int32)
    grid, block = stride_grid(dev, flat.size)
    dev.launch("codebooks", "codebook_decode_u8" if small else "codebook_decode_i64", grid, block,
               [flat, out, i64(flat.size), dev.contiguous(cb.table, np.float32), i32(cb.size), bad])
    if int(bad[0]):
        raise_reference_error(dev, "codebook_decode", codes, name)
    return out.reshape(codes.shape)
