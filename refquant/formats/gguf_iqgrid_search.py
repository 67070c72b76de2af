"""ggml's grid search for IQ3_XXS, vectorized over sub-blocks.

``quantize_row_iq3_xxs_impl`` and ``iq3xs_init_impl`` (``ggml-quants.c``, ggml-org/ggml @
d99724f2), as ``quantize_iq3_xxs`` (what ``ggml_quantize_chunk`` writes) calls them.

Tables (``iq3xs_init_impl(256)``), built once from the grid (:func:`iq3_tables`): each grid
point is 4 levels ``l`` in 0..7 (the quantizer's value ``2l + 1``); ``kmap[u]`` is the grid
index of the point ``u = Σ l_i << 3i`` or -1, and for a point off the grid its neighbours are
every grid point within the two smallest squared distances (``nwant = 2``), ordered by
(distance, index) as ggml's ``qsort`` with ``iq3_compare_func`` leaves them.

Per 32-element sub-block (float32 throughout, sums in index order):

1. weights ``w = x²``, or with an imatrix ``qw·sqrtf(sigma2 + x²)``, ``sigma2 = 2·Σx²/256``
   over the super-block; ``waux = sqrtf(w)``;
2. per group of 8: ``xval = |x|``; an odd number of negative signs flips the sign of the
   element with the smallest ``w·x·x`` (first on a tie), so that the 7 stored sign bits and
   an even parity describe the signs; ``max = max(xval)``; ``max < 1e-8`` gives a zero
   sub-block (scale 0, index 0, no signs);
3. for ``is = -15..15``: ``id = (15 + 0.2·is)/max``; ``l = clamp(nearest_int(0.5·(id·xval - 1)),
   0, 7)``; a group of 4 whose ``u`` is off the grid takes the neighbour minimizing
   ``Σ waux·(q/id - xval)²`` (``q = 2l + 1``, first on a tie); the candidate replaces the
   best when ``Σwq² > 0`` and ``(Σw·xval·q)² > best·Σwq²`` (``scale = Σwxq/Σwq²``,
   ``best = scale·Σwxq``), starting from ``scale = max/15``, ``best = 0``;
4. if some groups of the best candidate were off the grid and ``scale > 0``: those groups
   are re-picked with ``1/scale`` (neighbours scored with ``scale``) and ``scale`` is the
   least-squares value over the sub-block again (when ``Σwq² > 0``);
5. per super-block: ``d = max_scale/31`` stored as fp16(``d·1.0125``), sub-block scale
   ``clamp(nearest_int(0.5·(scale/d - 1)), 0, 15)`` with the float32 ``1/d``; an all-zero
   super-block is all-zero bytes.
"""

from __future__ import annotations

import functools

import numpy as np

from refquant.formats._ggml_math import F32, fp32_to_fp16, nearest_int, seq_sum
from refquant.formats._iq_grids import grid

__all__ = ["iq3_tables", "quantize_iq3_xxs"]

_KMAX = 8
_EPS_IQ3_XXS = F32(1e-8)        # GROUP_MAX_EPS_IQ3_XXS


@functools.lru_cache(maxsize=None)
def iq3_tables(name: str = "iq3xxs_grid", nwant: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(levels int32 (G, 4), kmap int32 (4096,), neighbours int32 (4096, m) padded with -1)."""
    g = grid(name).astype(np.int32)
    if name == "iq3xxs_grid":                   # stored magnitudes 4, 12, ..., 52, 62 are levels 0..7
        levels = np.searchsorted(np.array([4, 12, 20, 28, 36, 44, 52, 62]), g)
    else:                                       # iq3s_grid stores 2l + 1
        levels = (g - 1) // 2
    u = (levels << (3 * np.arange(4))).sum(axis=1)
    kmap = np.full(4096, -1, np.int32)
    kmap[u] = np.arange(len(g))
    pos = 2 * ((np.arange(4096)[:, None] >> (3 * np.arange(4))) & 7) + 1           # (4096, 4)
    d2 = (((2 * levels + 1)[None, :, :] - pos[:, None, :]) ** 2).sum(axis=-1)       # (4096, G)
    order = np.argsort(d2, axis=1, kind="stable")                                   # (distance, index)
    sd2 = np.take_along_axis(d2, order, axis=1)
    rank = np.cumsum(np.diff(sd2, axis=1, prepend=sd2[:, :1]) > 0, axis=1)          # distinct distances before
    keep = (rank < nwant) & (kmap < 0)[:, None]
    m = int(keep.sum(axis=1).max())
    neighbours = np.where(keep, order, -1)[:, :m]
    for t in (levels, kmap, neighbours):
        t.flags.writeable = False
    return levels.astype(np.int32), kmap, neighbours.astype(np.int32)


def _levels_of(xval: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """clamp(nearest_int(0.5·(inv·xval - 1)), 0, 7): xval (S, 32), inv (S,) -> int32 (S, 32)."""
    return np.clip(nearest_int(F32(0.5) * (inv[:, None] * xval - F32(1))), 0, _KMAX - 1)


def _snap(L: np.ndarray, xval: np.ndarray, waux: np.ndarray, scale: np.ndarray, todo: np.ndarray,
          tables: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Groups of 4 with ``todo`` (S, 8) whose levels are off the grid take their best neighbour.

    Returns the new levels (S, 32) and whether each group was on the grid (S, 8).
    """
    levels, kmap, neighbours = tables
    L4 = L.reshape(-1, 8, 4)
    u = (L4 << (3 * np.arange(4))).sum(axis=-1)                                     # (S, 8)
    on = kmap[u] >= 0
    s, k = np.nonzero(todo & ~on)
    if s.size:
        cand = neighbours[u[s, k]]                                                  # (m_off, m)
        q = (2 * levels[np.maximum(cand, 0)] + 1).astype(F32)                       # (m_off, m, 4)
        xv = xval.reshape(-1, 8, 4)[s, k][:, None, :]
        wa = waux.reshape(-1, 8, 4)[s, k][:, None, :]
        diff = scale[s][:, None, None] * q - xv
        d2 = seq_sum(wa * diff * diff)                                              # (m_off, m)
        d2 = np.where(cand >= 0, d2, F32(np.inf))
        best = cand[np.arange(s.size), np.argmin(d2, axis=1)]                       # first minimum
        L4 = L4.copy()
        L4[s, k] = levels[best]
    return L4.reshape(L.shape), on


def _ls_sums(w: np.ndarray, xval: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = (2 * L + 1).astype(F32)
    return seq_sum(w * xval * q), seq_sum(w * q * q)


def quantize_iq3_xxs(x: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-5 on super-blocks x float32 (n, 256), weights (n, 256) or None.

    Returns ``(d float16 (n,), grid indices uint8 (n, 64), scales_and_signs uint32 (n, 8))``.
    """
    tables = iq3_tables()
    levels, kmap, _ = tables
    n = x.shape[0]
    xs = x.reshape(n * 8, 32)                                                       # (S, 32) sub-blocks
    if weights is None:
        w = xs * xs
    else:
        sigma2 = (F32(2) * seq_sum(x * x)) / F32(256)                               # (n,)
        w = weights.reshape(n * 8, 32) * np.sqrt(np.repeat(sigma2, 8)[:, None] + xs * xs)
    waux = np.sqrt(w)

    # step 2: signs with even parity per group of 8
    neg = xs < 0
    xval = np.abs(xs)
    g8 = (w * xs * xs).reshape(-1, 4, 8)
    odd = neg.reshape(-1, 4, 8).sum(axis=-1) % 2 == 1                              # (S, 4)
    imin = np.argmin(g8, axis=-1)
    flip = np.zeros((xs.shape[0], 4, 8), bool)
    flip[np.nonzero(odd) + (imin[odd],)] = True
    xval = np.where(flip.reshape(xs.shape), -xval, xval)
    bits = (neg.reshape(-1, 4, 8) ^ flip).astype(np.uint32) << np.arange(8, dtype=np.uint32)
    signs = bits.sum(axis=-1, dtype=np.uint32) & np.uint32(127)                     # (S, 4)
    vmax = np.max(xval, axis=-1)
    live = ~(vmax < _EPS_IQ3_XXS)
    safe_max = np.where(live, vmax, F32(1))

    # step 3: 31 trial scales
    scale = safe_max / F32(2 * _KMAX - 1)
    best = np.zeros_like(scale)
    L = np.zeros(xs.shape, np.int32)
    on_grid = np.ones((xs.shape[0], 8), bool)
    for step in range(-15, 16):
        inv = (F32(2 * _KMAX - 1) + F32(step) * F32(0.2)) / safe_max
        this_scale = F32(1) / inv
        Laux, on_aux = _snap(_levels_of(xval, inv), xval, waux, this_scale, np.ones_like(on_grid), tables)
        sumqx, sumq2 = _ls_sums(w, xval, Laux)
        take = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
        scale = np.where(take, sumqx / np.where(take, sumq2, F32(1)), scale)
        best = np.where(take, scale * sumqx, best)
        L = np.where(take[:, None], Laux, L)
        on_grid = np.where(take[:, None], on_aux, on_grid)

    # step 4: re-pick the off-grid groups with the final scale
    redo = (~on_grid).any(axis=1) & (scale > 0)
    if redo.any():
        inv = F32(1) / np.where(redo, scale, F32(1))
        L_new, _ = _snap(_levels_of(xval, inv), xval, waux, scale, ~on_grid, tables)
        L = np.where(redo[:, None] & np.repeat(~on_grid, 4, axis=1), L_new, L)
        sumqx, sumq2 = _ls_sums(w, xval, L)
        scale = np.where(redo & (sumq2 > 0), sumqx / np.where(sumq2 > 0, sumq2, F32(1)), scale)

    negative = scale < 0            # "should never happen" in ggml: flip the scale and the stored signs
    scale = np.where(negative, -scale, scale)
    signs = np.where(negative[:, None], ~signs & np.uint32(127), signs)
    u = (L.reshape(-1, 8, 4) << (3 * np.arange(4))).sum(axis=-1)
    idx = kmap[u]
    if (idx < 0).any():  # pragma: no cover - ggml aborts here ("Oops: found point not on grid")
        raise AssertionError("IQ3_XXS search left a group off the grid")
    scale = np.where(live, scale, F32(0))
    idx = np.where(live[:, None], idx, 0)
    signs = np.where(live[:, None], signs, np.uint32(0))
    sas = signs[:, 0] | (signs[:, 1] << 7) | (signs[:, 2] << 14) | (signs[:, 3] << 21)   # (S,)

    # step 5: the super-block scale
    scales = scale.reshape(n, 8)
    sas = sas.reshape(n, 8)
    max_scale = np.max(scales, axis=1)
    d = max_scale / F32(31)
    dh = fp32_to_fp16(d * F32(1.0125))
    inv_d = F32(1) / np.where(max_scale > 0, d, F32(1))
    ls = np.clip(nearest_int(F32(0.5) * (inv_d[:, None] * scales - F32(1))), 0, 15).astype(np.uint32)
    sas = sas | (ls << np.uint32(28))
    zero = max_scale == 0
    dh = np.where(zero, np.float16(0), dh).astype(np.float16)
    idx = np.where(zero[:, None], 0, idx.reshape(n, 64)).astype(np.uint8)
    sas = np.where(zero[:, None], np.uint32(0), sas)
    return dh, idx, sas
