"""ggml's IQ lattice grids, loaded once from ``formats/data/ggml_iq_grids.npz``.

The tables are ggml's (``src/ggml-common.h`` @ ggml-org/ggml d99724f2, ``iq2xxs_grid`` ...
``iq1s_grid``), extracted as data by ``tools/ggml_iq_grids.py`` (which records the commit and
the header's SHA-256 in the file); each entry is stored as its bytes in memory order, the
way the C code reads it. The sign tables follow a rule and are derived here:
``kmask_iq2xs[j] = 1 << j`` and ``ksigns_iq2xs[i] = i | parity(i) << 7`` (seven stored sign
bits plus an eighth that makes the number of negative signs even).
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

__all__ = ["grid", "GRID_NAMES", "KSIGNS_IQ2XS", "KMASK_IQ2XS", "GGML_COMMIT", "signs_from_bits"]

GRID_NAMES = ("iq2xxs_grid", "iq2xs_grid", "iq2s_grid", "iq3xxs_grid", "iq3s_grid", "iq1s_grid")
GGML_COMMIT = "d99724f2b141fed9e1a9f402213506c081433465"

KMASK_IQ2XS = (1 << np.arange(8)).astype(np.uint8)
_I = np.arange(128)
# ggml's ksigns_iq2xs: the 7 sign bits of an index, and an 8th that makes the parity even
# (popcount by unpacking bits: np.bitwise_count needs NumPy 2, pyproject allows 1.24)
_PARITY = np.unpackbits(_I.astype(np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int64) & 1
KSIGNS_IQ2XS = (_I | (_PARITY << 7)).astype(np.uint8)
KSIGNS_IQ2XS.flags.writeable = False


@functools.lru_cache(maxsize=None)
def _load() -> dict[str, np.ndarray]:
    with resources.files("refquant.formats").joinpath("data/ggml_iq_grids.npz").open("rb") as f:
        with np.load(f) as z:
            if str(z["ggml_commit"]) != GGML_COMMIT:
                raise RuntimeError(f"ggml_iq_grids.npz is from ggml {z['ggml_commit']}, expected {GGML_COMMIT}")
            tables = {name: z[name] for name in GRID_NAMES}
    for t in tables.values():
        t.flags.writeable = False
    return tables


def grid(name: str) -> np.ndarray:
    """The grid ``name`` (one of :data:`GRID_NAMES`): uint8 (n, 8 or 4), int8 for ``iq1s_grid``.

    Parameters
    ----------
    name : str
        One of :data:`GRID_NAMES` (KeyError otherwise). The array is read-only.
    """
    return _load()[name]


def signs_from_bits(bits: np.ndarray, width: int = 8) -> np.ndarray:
    """±1.0 float32 (..., width) from sign bytes (...): element j is negative where bit j is set.

    Parameters
    ----------
    bits : ndarray of uint8-convertible integers in 0..255, any shape
    width : int in 1..8
        Sign bits read from each byte, lowest first.
    """
    return np.where((np.asarray(bits, np.uint8)[..., None] & KMASK_IQ2XS[:width]) != 0,
                    np.float32(-1.0), np.float32(1.0))
