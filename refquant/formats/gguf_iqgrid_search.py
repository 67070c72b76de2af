"""ggml's grid searches for IQ3_XXS and IQ3_S, vectorized over sub-blocks.

``quantize_row_iq3_xxs_impl``, ``quantize_row_iq3_s_impl`` and ``iq3xs_init_impl``
(``ggml-quants.c``, ggml-org/ggml @ d99724f2), as ``quantize_iq3_xxs`` / ``quantize_iq3_s``
(what ``ggml_quantize_chunk`` writes) call them; IQ3_S's differences are listed at
:func:`quantize_iq3_s`.

Tables (``iq3xs_init_impl(256)`` / ``(512)``), built once from the grid (:func:`iq3_tables`): each grid
point is 4 levels ``l`` in 0..7 (the quantizer's value ``2l + 1``); ``kmap[u]`` is the grid
index of the point ``u = Σ l_i << 3i`` or -1, and for a point off the grid its neighbours are
every grid point within the two (IQ3_S: three) smallest squared distances (``nwant``), ordered by
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
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from refquant.formats._ggml_math import F32, GROUP_MAX_EPS, fp32_to_fp16, nearest_int, seq_sum
from refquant.formats.iq_grids import grid

__all__ = ["GridTables", "grid_tables", "SEARCH_GRIDS", "iq3_tables", "quantize_iq3_xxs", "quantize_iq3_s",
           "quantize_iq2_xxs", "quantize_iq2_xs", "quantize_iq2_s", "quantize_iq1_s", "quantize_iq1_m"]

_KMAX = 8
# each type's grid and how many of the smallest distances its neighbour lists span (ggml's
# iq2xs_init_impl / iq3xs_init_impl: nwant)
SEARCH_GRIDS = MappingProxyType({"iq3_xxs": ("iq3xxs_grid", 2), "iq3_s": ("iq3s_grid", 3),
                                 "iq2_xxs": ("iq2xxs_grid", 2), "iq2_xs": ("iq2xs_grid", 2),
                                 "iq2_s": ("iq2s_grid", 1), "iq1_s": ("iq1s_grid", 3), "iq1_m": ("iq1s_grid", 3)})
_EPS_IQ3_XXS = F32(1e-8)        # GROUP_MAX_EPS_IQ3_XXS


@dataclass(frozen=True, eq=False)
class GridTables:
    """A grid as ggml's quantizers see it (``iq2xs_init_impl`` / ``iq3xs_init_impl``).

    ``levels`` int32 (G, group): each point's levels ``l`` (value ``2l + 1``); ``kmap``
    int32 (2**(bits·group),): grid index of the point ``u = Σ l_i << bits·i`` or -1;
    ``neighbours`` int32 (2**(bits·group), m): for off-grid points, the grid points within
    the ``nwant`` smallest squared distances ordered by (distance, index), padded with -1.
    """

    levels: np.ndarray
    kmap: np.ndarray
    neighbours: np.ndarray
    bits: int
    group: int

    @functools.cached_property
    def counts(self) -> np.ndarray:
        """Number of neighbours of each point (0 on the grid): int (2**(bits·group),)."""
        return (self.neighbours >= 0).sum(axis=1)

    @functools.cached_property
    def nlev(self) -> int:
        """Number of levels a position can take (3 for the 2-bit grids, 8 for IQ3's)."""
        return int(self.levels.max()) + 1

    @functools.cached_property
    def _term_index(self) -> np.ndarray:
        """Per grid point, where its elements' terms sit in a row of (group, nlev) terms."""
        t = np.arange(self.group) * self.nlev + self.levels
        t.flags.writeable = False
        return t

    @functools.cached_property
    def _term_index_t(self) -> np.ndarray:
        t = np.ascontiguousarray(self._term_index.T).astype(np.int32)
        t.flags.writeable = False
        return t

    @functools.cached_property
    def _flat_neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """The neighbour lists back to back, and where each point's list starts."""
        flat = self.neighbours[self.neighbours >= 0]                  # row-major: point by point, in order
        first = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        return flat, first

    def nearest(self, u: np.ndarray, terms: np.ndarray | Callable[[int, np.ndarray, np.ndarray], np.ndarray]
                ) -> np.ndarray:
        """For off-grid points ``u`` (m,), the neighbour with the least score (the first on a
        tie, as ggml's strict ``<`` scan). A candidate's score is the in-order float32 sum
        over its elements i of one term each: ``terms`` is either float32 (m, group, nlev), the
        C expression for each element at each level (computed once per level, the same
        rounding as per candidate), or a function ``terms(i, rows, cand)`` giving element i's
        terms for the flattened (point, neighbour) pairs (cheaper where the lists are short).
        Only the real neighbours are scored (the lists are ragged, 5-73 entries on average)."""
        cnt = self.counts[u]
        rows = np.repeat(np.arange(u.size), cnt)
        starts = np.concatenate([[0], np.cumsum(cnt)[:-1]])
        flat_nb, first_nb = self._flat_neighbours
        cand = flat_nb[np.repeat(first_nb[u] - starts, cnt) + np.arange(rows.size)]
        if callable(terms):
            term = terms
        else:
            base = rows * (self.group * self.nlev)
            flat = terms.reshape(-1)
            col = self._term_index_t          # 1-D takes per element: much faster than a (pairs, group) gather

            def term(i: int, rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
                return flat[np.take(col[i], cand) + base]
        d = term(0, rows, cand)                                                     # seq_sum, term by term
        for i in range(1, self.group):
            d += term(i, rows, cand)
        d += F32(0)
        best = np.minimum.reduceat(d, starts)
        first = np.flatnonzero(d == best[rows])
        r = rows[first]                                       # sorted: keep each row's first
        keep = np.concatenate([[True], r[1:] != r[:-1]])
        return cand[first[keep]]

    @functools.cached_property
    def level_values(self) -> np.ndarray:
        """The quantizer's value ``2l + 1`` of each point's elements, float32 (group, G)."""
        v = np.ascontiguousarray((2 * self.levels + 1).astype(F32).T)
        v.flags.writeable = False
        return v

    def index(self, L: np.ndarray) -> np.ndarray:
        """u of each group: levels (S, n) -> int (S, n / group)."""
        g = L.reshape(L.shape[0], -1, self.group)
        return (g << (self.bits * np.arange(self.group))).sum(axis=-1)


_GRID_LEVELS = {  # stored grid entry -> level l
    "iq3xxs_grid": lambda g: np.searchsorted(np.array([4, 12, 20, 28, 36, 44, 52, 62]), g),
    "iq3s_grid": lambda g: (g - 1) // 2,
    "iq2xxs_grid": lambda g: np.searchsorted(np.array([8, 25, 43]), g),
    "iq2xs_grid": lambda g: np.searchsorted(np.array([8, 25, 43]), g),
    "iq2s_grid": lambda g: np.searchsorted(np.array([8, 25, 43]), g),
    "iq1s_grid": lambda g: g + 1,
}


@functools.lru_cache(maxsize=None)
def grid_tables(name: str, nwant: int) -> GridTables:
    """The tables of grid ``name`` with neighbours within ``nwant`` distances (built once)."""
    levels = _GRID_LEVELS[name](grid(name).astype(np.int32)).astype(np.int32)
    group = levels.shape[1]
    bits, nlev = (3, 8) if group == 4 else (2, 3)       # 2-bit grids use levels 0..2 only
    shifts = bits * np.arange(group)
    kmap = np.full(1 << (bits * group), -1, np.int32)
    kmap[(levels << shifts).sum(axis=1)] = np.arange(len(levels))
    # every point a quantizer can ask for: levels 0..nlev-1 in each position
    pts = np.stack(np.meshgrid(*[np.arange(nlev)] * group, indexing="ij"), -1).reshape(-1, group)
    u = (pts << shifts).sum(axis=1)
    off = kmap[u] < 0
    pts, u = pts[off], u[off]
    gv = 2 * levels + 1
    rows = []
    for start in range(0, len(pts), 512):
        p = 2 * pts[start:start + 512] + 1
        d2 = ((gv[None, :, :] - p[:, None, :]) ** 2).sum(axis=-1)                  # (chunk, G)
        order = np.argsort(d2, axis=1, kind="stable")                               # (distance, index)
        sd2 = np.take_along_axis(d2, order, axis=1)
        rank = np.cumsum(np.diff(sd2, axis=1, prepend=sd2[:, :1]) > 0, axis=1)      # distinct distances before
        rows.append(np.where(rank < nwant, order, -1))
    allrows = np.concatenate(rows)
    m = int((allrows >= 0).sum(axis=1).max())
    neighbours = np.full((len(kmap), m), -1, np.int32)
    neighbours[u] = allrows[:, :m]
    for t in (levels, kmap, neighbours):
        t.flags.writeable = False
    return GridTables(levels, kmap, neighbours, bits, group)


def iq3_tables(name: str = "iq3xxs_grid", nwant: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(levels, kmap, neighbours) of an IQ3 grid (:func:`grid_tables`).

    Parameters
    ----------
    name : {"iq3xxs_grid", "iq3s_grid", "iq2xxs_grid", "iq2xs_grid", "iq2s_grid", "iq1s_grid"}
        The grid (KeyError otherwise).
    nwant : int >= 1
        Neighbours are kept within the ``nwant`` smallest squared distances (IQ3_XXS 2, IQ3_S 3).
    """
    t = grid_tables(name, nwant)
    return t.levels, t.kmap, t.neighbours


def _levels_of(xval: np.ndarray, inv: np.ndarray, kmax: int) -> np.ndarray:
    """clamp(nearest_int(0.5·(inv·xval - 1)), 0, kmax - 1): xval (S, n), inv (S,) -> int32 (S, n)."""
    return np.clip(nearest_int(F32(0.5) * (inv[:, None] * xval - F32(1))), 0, kmax - 1)


def _snap(L: np.ndarray, xval: np.ndarray, waux: np.ndarray, scale: np.ndarray, todo: np.ndarray,
          t: GridTables) -> tuple[np.ndarray, np.ndarray]:
    """Groups with ``todo`` (S, k) whose levels are off the grid take their best neighbour
    (``iq3_find_best_neighbour`` / ``iq2_find_best_neighbour``: least ``Σ waux·(scale·q - xval)²``,
    the first on a tie). Returns the new levels (S, n) and whether each group was on the grid."""
    g = t.group
    Lg = L.reshape(L.shape[0], -1, g)
    u = t.index(L)                                                                  # (S, k)
    on = t.kmap[u] >= 0
    s, k = np.nonzero(todo & ~on)
    if s.size:
        xv = xval.reshape(xval.shape[0], -1, g)[s, k]                               # (m_off, g)
        wa = waux.reshape(waux.shape[0], -1, g)[s, k]
        sc = scale[s]
        if t.counts[u[s, k]].mean() > t.nlev:   # long lists: every level's term once per group
            diff = sc[:, None, None] * (2 * np.arange(t.nlev) + 1).astype(F32) - xv[:, :, None]
            terms: Any = wa[:, :, None] * diff * diff                                # (m_off, g, nlev)
        else:
            xv_t, wa_t = np.ascontiguousarray(xv.T), np.ascontiguousarray(wa.T)

            def terms(i: int, rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
                d = sc[rows] * np.take(t.level_values[i], cand) - xv_t[i][rows]
                return wa_t[i][rows] * d * d
        Lg = Lg.copy()
        Lg[s, k] = t.levels[t.nearest(u[s, k], terms)]
    return Lg.reshape(L.shape), on


def _ls_sums(w: np.ndarray, xval: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = (2 * L + 1).astype(F32)
    return seq_sum(w * xval * q), seq_sum(w * q * q)


def _weights(x: np.ndarray, weights: np.ndarray | None, factor: int = 2,
             sub: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Step 1 on super-blocks (n, 256): (w, waux) float32 (256 n / sub, sub); sigma2 = factor·Σx²/256."""
    n = x.shape[0]
    xs = x.reshape(-1, sub)
    if weights is None:
        w = xs * xs
    else:
        sigma2 = (F32(factor) * seq_sum(x * x)) / F32(256)                          # (n,)
        w = weights.reshape(-1, sub) * np.sqrt(np.repeat(sigma2, 256 // sub)[:, None] + xs * xs)
    return w, np.sqrt(w)


def _search(xval: np.ndarray, w: np.ndarray, waux: np.ndarray, t: GridTables, *, kmax: int, trials: range,
            step: float, denom: np.ndarray, scale: np.ndarray, L: np.ndarray, on_grid: np.ndarray,
            redo: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps 3-4 on sub-blocks (S, n): trial scales ``id = (2 kmax - 1 + step·is)/denom``, then
    the final re-pick. ``redo``: ``"off"`` re-picks the off-grid groups when there are any
    (IQ3_XXS), ``"all_if_off"`` every group when any is off (IQ3_S), ``"all"`` every group
    whenever ``scale > 0`` (IQ2). Returns (levels int32 (S, n), scale float32 (S,))."""
    best = np.zeros_like(scale)
    for i in trials:
        inv = (F32(2 * kmax - 1) + F32(i) * F32(step)) / denom
        this_scale = F32(1) / inv
        Laux, on_aux = _snap(_levels_of(xval, inv, kmax), xval, waux, this_scale, np.ones_like(on_grid), t)
        sumqx, sumq2 = _ls_sums(w, xval, Laux)
        take = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
        scale = np.where(take, sumqx / np.where(take, sumq2, F32(1)), scale)
        best = np.where(take, scale * sumqx, best)
        L = np.where(take[:, None], Laux, L)
        on_grid = np.where(take[:, None], on_aux, on_grid)

    again = scale > 0 if redo == "all" else (~on_grid).any(axis=1) & (scale > 0)
    if again.any():
        todo = ~on_grid if redo == "off" else np.ones_like(on_grid)
        inv = F32(1) / np.where(again, scale, F32(1))
        L_new, _ = _snap(_levels_of(xval, inv, kmax), xval, waux, scale, todo, t)
        L = np.where(again[:, None] & np.repeat(todo, t.group, axis=1), L_new, L)
        sumqx, sumq2 = _ls_sums(w, xval, L)
        scale = np.where(again & (sumq2 > 0), sumqx / np.where(sumq2 > 0, sumq2, F32(1)), scale)
    return L, scale


def _grid_indices(L: np.ndarray, t: GridTables) -> np.ndarray:
    idx = t.kmap[t.index(L)]                                                        # (S, groups)
    if (idx < 0).any():  # pragma: no cover - ggml aborts here ("Oops: found point not on grid")
        raise AssertionError("IQ3 search left a group off the grid")
    return idx


def _finish(scale: np.ndarray, signs: np.ndarray, L: np.ndarray, live: np.ndarray, t: GridTables,
            sign_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """After the search: ggml's "should never happen" negative scale is made positive with the
    stored sign bits flipped, and dead sub-blocks get scale 0, no signs and grid index 0.
    Returns (scale (S,), signs uint32, grid indices (S, groups))."""
    negative = scale < 0
    scale = np.where(negative, -scale, scale)
    signs = np.where(negative[:, None], ~signs & np.uint32((1 << sign_bits) - 1), signs)
    idx = np.where(live[:, None], _grid_indices(np.where(live[:, None], L, 0), t), 0)
    return np.where(live, scale, F32(0)), np.where(live[:, None], signs, np.uint32(0)), idx


def _super_scales(scale: np.ndarray, n: int, fudge: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 5: (d float16 (n,), 4-bit sub-block scales int32 (n, k), all-zero super-blocks (n,))."""
    scales = scale.reshape(n, -1)
    max_scale = np.max(scales, axis=1)
    zero = max_scale == 0
    d = max_scale / F32(31)
    dh = np.where(zero, np.float16(0), fp32_to_fp16(d * F32(fudge))).astype(np.float16)
    inv_d = F32(1) / np.where(zero, F32(1), d)
    ls = np.clip(nearest_int(F32(0.5) * (inv_d[:, None] * scales - F32(1))), 0, 15)
    return dh, ls, zero


def _even_signs(xs: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 2 (IQ3_XXS, IQ2_XXS, IQ2_XS): xval float32 (S, n) and 7-bit signs uint32 (S, n / 8).

    An odd count of negative x in a group of 8 flips the element with the smallest w·x·x."""
    k = xs.shape[1] // 8
    neg = xs < 0
    xval = np.abs(xs)
    odd = neg.reshape(-1, k, 8).sum(axis=-1) % 2 == 1                              # (S, k)
    imin = np.argmin((w * xs * xs).reshape(-1, k, 8), axis=-1)
    flip = np.zeros((xs.shape[0], k, 8), bool)
    flip[np.nonzero(odd) + (imin[odd],)] = True
    xval = np.where(flip.reshape(xs.shape), -xval, xval)
    bits = (neg.reshape(-1, k, 8) ^ flip).astype(np.uint32) << np.arange(8, dtype=np.uint32)
    return xval, bits.sum(axis=-1, dtype=np.uint32) & np.uint32(127)


def quantize_iq3_xxs(x: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-5 on super-blocks x float32 (n, 256), weights (n, 256) or None.

    Returns the block fields ``(d float16 (n,), qs uint8 (n, 96))``: the 64 grid-index bytes,
    then the 8 little-endian uint32 scales_and_signs words (signs, the 4-bit scale in bits 28-31).

    Parameters
    ----------
    x : ndarray of float32, shape (n, 256), finite (:func:`refquant.gguf.quantize` checks)
    weights : ndarray of float32, shape (n, 256), finite and >= 0; or None (ggml's default)
    """
    t = grid_tables(*SEARCH_GRIDS["iq3_xxs"])
    n = x.shape[0]
    xs = x.reshape(n * 8, 32)                                                       # (S, 32) sub-blocks
    w, waux = _weights(x, weights)

    xval, signs = _even_signs(xs, w)                                                # step 2
    vmax = np.max(xval, axis=-1)
    live = ~(vmax < _EPS_IQ3_XXS)

    vmax = np.where(live, vmax, F32(1))
    L, scale = _search(xval, w, waux, t, kmax=_KMAX, trials=range(-15, 16), step=0.2, denom=vmax,
                       scale=vmax / F32(2 * _KMAX - 1), L=np.zeros(xs.shape, np.int32),
                       on_grid=np.ones((xs.shape[0], 8), bool), redo="off")
    scale, signs, idx = _finish(scale, signs, L, live, t, 7)
    sas = (signs[:, 0] | (signs[:, 1] << 7) | (signs[:, 2] << 14) | (signs[:, 3] << 21)).reshape(n, 8)

    dh, ls, zero = _super_scales(scale, n, 1.0125)
    sas = np.where(zero[:, None], np.uint32(0), sas | (ls.astype(np.uint32) << np.uint32(28)))
    idx = np.where(zero[:, None], 0, idx.reshape(n, 64)).astype(np.uint8)
    return dh, np.concatenate([idx, sas.astype("<u4").view(np.uint8).reshape(n, 32)], axis=1)


def quantize_iq3_s(x: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """``quantize_row_iq3_s_impl`` (block size 32) on super-blocks x float32 (n, 256).

    As IQ3_XXS but on the 512-point grid (neighbours within three distances), full sign
    bytes (no parity trick), 19 trials (``is = -9..9``), a zero sub-block only when its max is
    exactly 0, every group re-picked in step 4, and ``d·1.033`` stored. ggml's writer does
    not advance ``qs`` / ``signs`` past a zero sub-block, so the following sub-blocks' bytes
    move up into its place (reproduced). Returns ``(d float16 (n,), qs uint8 (n, 64), qh
    uint8 (n, 8), signs uint8 (n, 32), scales uint8 (n, 4))``.

    Parameters
    ----------
    x : ndarray of float32, shape (n, 256), finite (:func:`refquant.gguf.quantize` checks)
    weights : ndarray of float32, shape (n, 256), finite and >= 0; or None (ggml's default)
    """
    t = grid_tables(*SEARCH_GRIDS["iq3_s"])
    n = x.shape[0]
    xs = x.reshape(n * 8, 32)
    w, waux = _weights(x, weights)
    neg = xs < 0
    xval = np.abs(xs)
    signs = (neg.reshape(-1, 4, 8).astype(np.uint32) << np.arange(8, dtype=np.uint32)).sum(-1, dtype=np.uint32)
    vmax = np.max(xval, axis=-1)
    live = vmax != 0

    vmax = np.where(live, vmax, F32(1))
    L, scale = _search(xval, w, waux, t, kmax=_KMAX, trials=range(-9, 10), step=0.2, denom=vmax,
                       scale=vmax / F32(2 * _KMAX - 1), L=np.zeros(xs.shape, np.int32),
                       on_grid=np.zeros((xs.shape[0], 8), bool), redo="all_if_off")
    scale, signs, idx = _finish(scale, signs, L, live, t, 8)                        # idx (S, 8) in 0..511

    qh = np.where(live[:, None], (idx >> 8) << np.arange(8), 0).sum(axis=-1).astype(np.uint8).reshape(n, 8)
    # ggml's write pointers move only past live sub-blocks: compact them to the front
    order = np.argsort(~live.reshape(n, 8), axis=1, kind="stable")                  # live sub-blocks first
    nlive = live.reshape(n, 8).sum(axis=1)
    slot_live = np.arange(8)[None, :] < nlive[:, None]
    qs = np.take_along_axis((idx & 255).reshape(n, 8, 8), order[..., None], axis=1)
    qs = np.where(slot_live[..., None], qs, 0).astype(np.uint8).reshape(n, 64)
    sg = np.take_along_axis(signs.reshape(n, 8, 4), order[..., None], axis=1)
    sg = np.where(slot_live[..., None], sg, 0).astype(np.uint8).reshape(n, 32)

    dh, ls, zero = _super_scales(scale, n, 1.033)
    sc = (ls[:, 0::2] | (ls[:, 1::2] << 4)).astype(np.uint8)
    sc = np.where(zero[:, None], 0, sc).astype(np.uint8)
    return dh, qs, qh, sg, sc


def quantize_iq2_xxs(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``quantize_row_iq2_xxs_impl`` on super-blocks x float32 (n, 256) with imatrix weights.

    As IQ3_XXS (parity signs, groups of 8 on the 256-point 2-bit grid, neighbours within two
    distances) except: ``sigma2 = Σx²/256``; ``max < 1e-15`` is a zero sub-block; the start is
    ``make_qp_quants(32, 4, xval, w)``, with ``eff_max = 3·scale`` (``<= 0``: zero sub-block); 13
    trials ``id = (5 + 0.1·is)/eff_max``, ``is = -6..6``, levels 0..2; every group is re-picked
    whenever ``scale > 0``; ``d = max_scale/31`` stored without a fudge factor. Returns the
    block fields ``(d float16 (n,), qs uint16 (n, 32))``: per sub-block two little-endian uint32
    words, the 4 grid-index bytes, then the signs with the 4-bit scale in bits 28-31.

    Parameters
    ----------
    x : ndarray of float32, shape (n, 256), finite (:func:`refquant.gguf.quantize` checks)
    weights : ndarray of float32, shape (n, 256), finite and >= 0; required (ggml asserts)
    """
    from refquant.formats.gguf_kquants_search import make_qp_quants

    t = grid_tables(*SEARCH_GRIDS["iq2_xxs"])
    n = x.shape[0]
    xs = x.reshape(n * 8, 32)
    w, waux = _weights(x, weights, factor=1)
    xval, signs = _even_signs(xs, w)
    vmax = np.max(xval, axis=-1)
    live = ~(vmax < GROUP_MAX_EPS)
    qp_scale, qp_codes = make_qp_quants(xval, 4, w)
    eff_max = qp_scale * F32(3)
    live &= eff_max > 0
    L, scale = _search(xval, w, waux, t, kmax=3, trials=range(-6, 7), step=0.1,
                       denom=np.where(live, eff_max, F32(1)), scale=qp_scale, L=qp_codes.astype(np.int32),
                       on_grid=np.ones((xs.shape[0], 4), bool), redo="all")
    scale, signs, idx = _finish(scale, signs, L, live, t, 7)
    idx = idx.astype(np.uint32)
    w0 = idx[:, 0] | (idx[:, 1] << 8) | (idx[:, 2] << 16) | (idx[:, 3] << 24)
    w1 = signs[:, 0] | (signs[:, 1] << 7) | (signs[:, 2] << 14) | (signs[:, 3] << 21)
    dh, ls, zero = _super_scales(scale, n, 1.0)
    w1 = w1.reshape(n, 8) | (ls.astype(np.uint32) << np.uint32(28))
    q2 = np.stack([w0.reshape(n, 8), w1], axis=-1).reshape(n, 16)
    return dh, np.where(zero[:, None], np.uint32(0), q2).astype("<u4").view("<u2").reshape(n, 32)


def quantize_iq2_xs(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``quantize_row_iq2_xs_impl`` on super-blocks x float32 (n, 256) with imatrix weights.

    Sub-blocks of 16 (two groups of 8, parity signs) on the 512-point 2-bit grid (neighbours
    within two distances); ``sigma2 = Σx²/256``; ``max < 1e-15`` is a zero sub-block; start
    ``scale = max/5``, 19 trials ``id = (5 + 0.1·is)/max``, ``is = -9..9``; the off-grid groups
    are re-picked as in IQ3_XXS; ``d = max_scale/31`` (no fudge factor), one 4-bit scale per 16.
    Returns ``(d float16 (n,), qs uint16 (n, 32) = grid index | signs << 9, scales uint8 (n, 8))``.

    Parameters
    ----------
    x : ndarray of float32, shape (n, 256), finite (:func:`refquant.gguf.quantize` checks)
    weights : ndarray of float32, shape (n, 256), finite and >= 0; required (ggml asserts)
    """
    t = grid_tables(*SEARCH_GRIDS["iq2_xs"])
    n = x.shape[0]
    xs = x.reshape(n * 16, 16)
    w, waux = _weights(x, weights, factor=1, sub=16)
    xval, signs = _even_signs(xs, w)
    vmax = np.max(xval, axis=-1)
    live = ~(vmax < GROUP_MAX_EPS)
    vmax = np.where(live, vmax, F32(1))
    L, scale = _search(xval, w, waux, t, kmax=3, trials=range(-9, 10), step=0.1, denom=vmax,
                       scale=vmax / F32(5), L=np.zeros(xs.shape, np.int32),
                       on_grid=np.ones((xs.shape[0], 2), bool), redo="off")
    scale, signs, idx = _finish(scale, signs, L, live, t, 7)
    q2 = (idx.astype(np.uint32) | (signs << np.uint32(9))).astype(np.uint16).reshape(n, 32)
    dh, ls, zero = _super_scales(scale, n, 1.0)
    sc = np.where(zero[:, None], 0, ls[:, 0::2] | (ls[:, 1::2] << 4)).astype(np.uint8)
    return dh, np.where(zero[:, None], np.uint16(0), q2), sc


def quantize_iq2_s(x: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """``quantize_row_iq2_s_impl`` on super-blocks x float32 (n, 256).

    As IQ2_XS but on the 1024-point grid (neighbours at the nearest distance only), full
    sign bytes (no parity trick), ``sigma2 = 2·Σx²/256``, weights ``0.25·sigma2 + x²`` without
    an imatrix, ``max < 1e-8`` a zero sub-block, and ``d·0.9875`` stored. Returns ``(d float16
    (n,), qs uint8 (n, 64): 32 index bytes then 32 sign bytes, qh uint8 (n, 8): index bits 8-9
    at 2·(i % 4) of qh[i / 4], scales uint8 (n, 8))``.

    Parameters
    ----------
    x : ndarray of float32, shape (n, 256), finite (:func:`refquant.gguf.quantize` checks)
    weights : ndarray of float32, shape (n, 256), finite and >= 0; or None (ggml's default)
    """
    t = grid_tables(*SEARCH_GRIDS["iq2_s"])
    n = x.shape[0]
    xs = x.reshape(n * 16, 16)
    if weights is None:
        sigma2 = (F32(2) * seq_sum(x * x)) / F32(256)
        w = F32(0.25) * np.repeat(sigma2, 16)[:, None] + xs * xs
        waux = np.sqrt(w)
    else:
        w, waux = _weights(x, weights, factor=2, sub=16)
    signs = ((xs < 0).reshape(-1, 2, 8).astype(np.uint32) << np.arange(8, dtype=np.uint32)).sum(-1, dtype=np.uint32)
    xval = np.abs(xs)
    vmax = np.max(xval, axis=-1)
    live = ~(vmax < _EPS_IQ3_XXS)                      # GROUP_MAX_EPS_IQ2_S = 1e-8 too
    vmax = np.where(live, vmax, F32(1))
    L, scale = _search(xval, w, waux, t, kmax=3, trials=range(-9, 10), step=0.1, denom=vmax,
                       scale=vmax / F32(5), L=np.zeros(xs.shape, np.int32),
                       on_grid=np.ones((xs.shape[0], 2), bool), redo="off")
    scale, signs, idx = _finish(scale, signs, L, live, t, 8)
    idx, signs = idx.reshape(n, 32), signs.reshape(n, 32)
    qs = np.concatenate([idx & 255, signs], axis=1).astype(np.uint8)
    qh = ((idx >> 8).reshape(n, 8, 4) << (2 * np.arange(4))).sum(-1).astype(np.uint8)
    dh, ls, zero = _super_scales(scale, n, 0.9875)
    sc = np.where(zero[:, None], 0, ls[:, 0::2] | (ls[:, 1::2] << 4)).astype(np.uint8)
    return dh, qs, qh, sc


_IQ1_DELTA = F32(0.125)
_X_P = np.array([-1 + 0.125, 0.125, 1 + 0.125], F32)      # x_p / x_m of quantize_row_iq1_s_impl
_X_M = np.array([-1 - 0.125, -0.125, 1 - 0.125], F32)


def _keep_better(sumqx: np.ndarray, sumq2: np.ndarray, scale: np.ndarray, best: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The IQ1 splits' acceptance, per sub-block (S,): a candidate replaces the best when
    ``Σwq² > 0`` and ``(Σwqx)² > best·Σwq²`` (strict: the first of equals stays), with
    ``scale = Σwqx/Σwq²`` and ``best = scale·Σwqx``. Returns (take, scale, best)."""
    with np.errstate(over="ignore"):                  # -FLT_MAX·Σwq² is -inf, as in C
        take = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
    if take.any():
        scale = np.where(take, sumqx / np.where(take, sumq2, F32(1)), scale)
        best = np.where(take, scale * sumqx, best)
    return take, scale, best


def _iq1_best_split(xs: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """The exhaustive 3-level split of the sorted sub-block (``quantize_row_iq1_s_impl``).

    Values sorted ascending with equal values in index order (ggml's ``qsort`` with
    ``iq1_sort_helper`` leaves ties to the C library: glibc's merge sort, with which the
    golden vectors were made, keeps them in order), prefix sums ``sumx``
    of ``w·x`` and ``sumw`` of ``w`` in that order; every ``i1 <= i2`` assigns levels 0, 1, 2
    to the sorted runs, and the shifted values ``x_p`` (+1/8) then ``x_m`` (-1/8) are tried in
    turn, a candidate replacing the best when ``Σw·q² > 0`` and ``(Σwqx)² > best·Σwq²``. The
    scan runs in ggml's order, vectorized over sub-blocks. Returns (levels int32 (S, n),
    scale (S,), shift int (S,): +1, -1 or 0 when nothing was accepted).
    """
    S, n = xs.shape
    order = np.argsort(xs, axis=1, kind="stable")
    xo = np.take_along_axis(xs, order, axis=1)
    wo = np.take_along_axis(w, order, axis=1)
    zero = np.zeros((S, 1), F32)
    sumx = np.concatenate([zero, np.add.accumulate(wo * xo, axis=1, dtype=F32)], axis=1)   # (S, n + 1)
    sumw = np.concatenate([zero, np.add.accumulate(wo, axis=1, dtype=F32)], axis=1)
    best = np.full(S, -np.finfo(F32).max, F32)
    scale = np.max(np.abs(xs), axis=1)
    b1 = np.full(S, -1)
    b2 = np.full(S, -1)
    shift = np.zeros(S, np.int32)
    for i1 in range(n + 1):
        a = sumx[:, i1] - sumx[:, 0]
        aw = sumw[:, i1] - sumw[:, 0]
        for i2 in range(i1, n + 1):
            b, c = sumx[:, i2] - sumx[:, i1], sumx[:, n] - sumx[:, i2]
            bw, cw = sumw[:, i2] - sumw[:, i1], sumw[:, n] - sumw[:, i2]
            for xx, sgn in ((_X_P, 1), (_X_M, -1)):
                sumqx = a * xx[0] + b * xx[1] + c * xx[2]
                sumq2 = aw * xx[0] * xx[0] + bw * xx[1] * xx[1] + cw * xx[2] * xx[2]
                take, scale, best = _keep_better(sumqx, sumq2, scale, best)
                if take.any():
                    b1 = np.where(take, i1, b1)
                    b2 = np.where(take, i2, b2)
                    shift = np.where(take, sgn, shift)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n)[None, :].repeat(S, 0), axis=1)      # sorted position of each x
    L = (rank >= b1[:, None]).astype(np.int32) + (rank >= b2[:, None])
    return L, scale, shift


def quantize_iq1_s(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``quantize_row_iq1_s_impl`` on super-blocks x float32 (n, 256) with imatrix weights.

    Per sub-block of 32 (``sigma2 = 2·Σx²/256``, ``w = qw·sqrtf(sigma2 + x²)``; ``max|x| < 1e-12``
    is a zero sub-block): the best 3-level split (:func:`_iq1_best_split`); a negative scale
    mirrors the levels and the shift; groups of 8 off the 2048-point grid take the neighbour
    (within three distances) minimizing ``Σ w·(scale·xx[l] - x)²`` (``iq1_find_best_neighbour2``,
    first on a tie), after which the scale is the least-squares ``Σw·q·x/Σw·q²`` over the
    sub-block if both sums are positive. ``d = max_scale/15`` is stored as fp16(``d·1.125``),
    the 3-bit scale ``clamp(nearest_int(0.5·(scale/d - 1)), 0, 7)`` goes to ``qh`` bits 12-14 and
    a -1/8 shift to bit 15. Returns ``(d float16 (n,), qs uint8 (n, 32), qh uint16 (n, 8))``.

    Parameters
    ----------
    x : ndarray of float32, shape (n, 256), finite (:func:`refquant.gguf.quantize` checks)
    weights : ndarray of float32, shape (n, 256), finite and >= 0; required (ggml asserts)
    """
    t = grid_tables(*SEARCH_GRIDS["iq1_s"])
    n = x.shape[0]
    xs = x.reshape(n * 8, 32)
    w, _ = _weights(x, weights, factor=2)
    vmax = np.max(np.abs(xs), axis=1)
    L, scale, shift = _iq1_best_split(xs, w)
    live = ~(vmax < F32(1e-12)) & (shift != 0)
    negative = scale < 0
    L = np.where(negative[:, None], 2 - L, L)
    scale = np.where(negative, -scale, scale)
    shift = np.where(negative, -shift, shift)
    xx = np.where((shift == 1)[:, None], _X_P, _X_M)                                # (S, 3)

    u = t.index(L)                                                                  # (S, 4)
    idx = t.kmap[u]
    off = (idx < 0) & live[:, None]
    idx = _iq1_snap(idx, u, xs, w, scale, np.repeat(xx[:, None, :], 4, axis=1), off, t)
    redo = off.any(axis=1)
    if redo.any():
        q_all = np.take_along_axis(xx, t.levels[np.maximum(idx, 0)].reshape(len(xs), 32), axis=1)
        sumqx, sumq2 = seq_sum(w * q_all * xs), seq_sum(w * q_all * q_all)
        ok = redo & (sumqx > 0) & (sumq2 > 0)
        scale = np.where(ok, sumqx / np.where(ok, sumq2, F32(1)), scale)

    idx = np.where(live[:, None], idx, 0).astype(np.uint32)
    scale = np.where(live, scale, F32(0))
    qs = (idx & 255).astype(np.uint8).reshape(n, 32)
    h = ((idx >> 8) << (3 * np.arange(4, dtype=np.uint32))).sum(axis=1, dtype=np.uint32)       # (S,)
    scales = scale.reshape(n, 8)
    max_scale = np.max(scales, axis=1)
    zero = max_scale == 0
    d = max_scale / F32(15)
    dh = np.where(zero, np.float16(0), fp32_to_fp16(d * F32(1.125))).astype(np.float16)
    inv_d = F32(1) / np.where(zero, F32(1), d)
    ls = np.clip(nearest_int(F32(0.5) * (inv_d[:, None] * scales - F32(1))), 0, 7).astype(np.uint32)
    ls = ls | np.where(np.where(live, shift, 1).reshape(n, 8) == -1, np.uint32(8), np.uint32(0))
    qh = (h.reshape(n, 8) | (ls << np.uint32(12))).astype(np.uint16)
    return dh, np.where(zero[:, None], 0, qs).astype(np.uint8), np.where(zero[:, None], 0, qh).astype(np.uint16)


def _iq1_snap(idx: np.ndarray, u: np.ndarray, xs: np.ndarray, w: np.ndarray, scale: np.ndarray,
              xx: np.ndarray, todo: np.ndarray, t: GridTables) -> np.ndarray:
    """``iq1_find_best_neighbour2`` for the groups of 8 with ``todo`` (S, k): the neighbour of
    ``u`` minimizing ``Σ w·(scale·xx[l] - x)²`` (first on a tie); xx (S, k, 3). Returns idx."""
    s, k = np.nonzero(todo)
    if not s.size:
        return idx
    xv = xs.reshape(xs.shape[0], -1, 8)[s, k]                                       # (m_off, 8)
    wv = w.reshape(w.shape[0], -1, 8)[s, k]
    diff = scale[s][:, None, None] * xx[s, k][:, None, :] - xv[:, :, None]          # (m_off, 8, 3)
    idx = idx.copy()
    idx[s, k] = t.nearest(u[s, k], wv[:, :, None] * diff * diff)
    return idx


_IQ1M_PAIRS = np.array([(i1, i2) for i1 in range(17) for i2 in range(i1, 17)])     # (i1, i2) in ggml's scan order


def _iq1m_split(xo: np.ndarray, wo: np.ndarray, second: np.ndarray, vmax: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQ1_M's exhaustive 3-level split with per-half prefix sums (``quantize_row_iq1_m_impl``,
    ggml-org/llama.cpp @ 0c1e57098, since PR #28706; earlier ggml, d99724f2 included, summed
    every split from scratch and writes different bytes on near-ties).

    On sub-blocks sorted ascending: ``xo``, ``wo`` float32 (S, 16), ``second`` bool (S, 16)
    whether each sorted value is in the second half. Per half h, prefix sums over the sorted
    positions ``px[h][j] = Σ w·x``, ``pw[h][j] = Σ w`` of its elements (in order, from 0);
    with ``v`` the shifted values (``x_p`` or ``x_m``), whose steps ``v0 - v1 = v1 - v2 = -1``,
    a split (i1, i2) has per half ``Σw·q·x = tx·v2 - (px[i1] + px[i2])`` and
    ``Σw·q² = tw·v2·v2 + pw[i1]·(v0² - v1²) + pw[i2]·(v1² - v2²)`` (``tx``, ``tw`` the half's
    totals, float32 left to right); shift pair k sums the halves' terms (bit 1: first half
    ``x_m``, bit 0: second half ``x_m``). The scan over (i1, i2) then k keeps a candidate
    when ``Σwq² > 0`` and ``(Σwqx)² > best·Σwq²`` (``scale = Σwqx/Σwq²``, ``best =
    scale·Σwqx``, starting from ``scale = vmax``, ``best = -FLT_MAX``). Returns (scale (S,),
    index into :data:`_IQ1M_PAIRS` (S,), k (S,); -1 for both when nothing was accepted).
    """
    S = xo.shape[0]
    halves = np.stack([~second, second])                                           # (2, S, 16)
    zero = np.zeros((2, S, 1), F32)
    px = np.concatenate([zero, np.add.accumulate(np.where(halves, wo * xo, F32(0)), axis=2, dtype=F32)], axis=2)
    pw = np.concatenate([zero, np.add.accumulate(np.where(halves, wo, F32(0)), axis=2, dtype=F32)], axis=2)
    i1, i2 = _IQ1M_PAIRS.T
    sx = px[:, :, i1] + px[:, :, i2]                                                # (2, S, P)
    qx, q2 = {}, {}
    for name, v in (("p", _X_P), ("m", _X_M)):
        c1, c2 = v[0] * v[0] - v[1] * v[1], v[1] * v[1] - v[2] * v[2]
        qx[name] = px[:, :, 16:] * v[2] - sx
        q2[name] = pw[:, :, 16:] * v[2] * v[2] + pw[:, :, i1] * c1 + pw[:, :, i2] * c2
    pairs = ("pp", "pm", "mp", "mm")                                                # k = 0..3
    sum_qx = np.stack([qx[a][0] + qx[b][1] for a, b in pairs], axis=-1)            # (S, P, 4)
    sum_q2 = np.stack([q2[a][0] + q2[b][1] for a, b in pairs], axis=-1)
    best = np.full(S, -np.finfo(F32).max, F32)
    scale = vmax.copy()
    bpair = np.full(S, -1)
    bk = np.full(S, -1)
    for p in range(len(_IQ1M_PAIRS)):
        for k in range(4):
            take, scale, best = _keep_better(sum_qx[:, p, k], sum_q2[:, p, k], scale, best)
            if take.any():
                bpair = np.where(take, p, bpair)
                bk = np.where(take, k, bk)
    return scale, bpair, bk


def quantize_iq1_m(x: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``quantize_row_iq1_m_impl`` on super-blocks x float32 (n, 256).

    Sub-blocks of 16 (``w = qw·sqrtf(sigma2 + x²)``, ``sigma2 = 2·Σx²/256``, or ``x²`` without an
    imatrix; ``max|x| < 1e-7`` is a zero sub-block), each split into two groups of 8 with their
    own ±1/8 shift: the exhaustive 3-level split over the sorted values tries the four shift
    pairs ``k`` (bit 1: first half -1/8, bit 0: second half -1/8), scored from per-half prefix
    sums (:func:`_iq1m_split`, llama.cpp @ 0c1e57098); groups off the grid as IQ1_S. Per super-block: 3-bit scales
    ``clamp(nearest_int(0.5·(scale/d - 1)), 0, 7)`` with ``d = max_scale/15``, then ``d`` is
    refit as ``Σw·q·x/Σw·q²`` over the whole super-block with ``q = xx[l]·(2·ls + 1)`` and
    stored as fp16(``d·1.1125``) in the top nibbles of the four scale words. Returns
    the block fields ``(qs uint8 (n, 32), qh uint8 (n, 16), scales uint8 (n, 8))``, the scales
    being the four little-endian uint16 scale words.

    Parameters
    ----------
    x : ndarray of float32, shape (n, 256), finite (:func:`refquant.gguf.quantize` checks)
    weights : ndarray of float32, shape (n, 256), finite and >= 0; or None (ggml's default)
    """
    t = grid_tables(*SEARCH_GRIDS["iq1_m"])
    n = x.shape[0]
    xs = x.reshape(n * 16, 16)
    S = xs.shape[0]
    w, _ = _weights(x, weights, factor=2, sub=16)
    vmax = np.max(np.abs(xs), axis=1)
    live = ~(vmax < F32(1e-7))

    order = np.argsort(xs, axis=1, kind="stable")                                   # ties: see _iq1_best_split
    scale, bpair, bk = _iq1m_split(np.take_along_axis(xs, order, axis=1), np.take_along_axis(w, order, axis=1),
                                   order >= 8, vmax)
    live &= bk >= 0
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(16)[None, :].repeat(S, 0), axis=1)
    i1, i2 = _IQ1M_PAIRS[np.maximum(bpair, 0)].T
    L = (rank >= i1[:, None]).astype(np.int32) + (rank >= i2[:, None])              # (S, 16)
    negative = scale < 0
    L = np.where(negative[:, None], 2 - L, L)
    scale = np.where(negative, -scale, scale)
    bk = np.where(negative, 3 - bk, bk)
    xx = np.stack([np.where((bk < 2)[:, None], _X_P, _X_M), np.where((bk % 2 == 0)[:, None], _X_P, _X_M)], 1)

    u = t.index(L)                                                                  # (S, 2)
    idx = t.kmap[u]
    off = (idx < 0) & live[:, None]
    idx = _iq1_snap(idx, u, xs, w, scale, xx, off, t)
    redo = off.any(axis=1)
    if redo.any():
        q = np.take_along_axis(xx, t.levels[np.maximum(idx, 0)], axis=2).reshape(S, 16)
        sumqx, sumq2 = seq_sum(w * q * xs), seq_sum(w * q * q)
        ok = redo & (sumqx > 0) & (sumq2 > 0)
        scale = np.where(ok, sumqx / np.where(ok, sumq2, F32(1)), scale)
    idx = np.where(live[:, None], idx, 0).astype(np.uint32)
    scale = np.where(live, scale, F32(0))
    shifts = np.where(live, bk, 0)

    qs = (idx & 255).astype(np.uint8).reshape(n, 32)
    masks = np.array([0x00, 0x80, 0x08, 0x88], np.uint32)
    qh = ((idx[:, 0] >> 8) | ((idx[:, 1] >> 8) << 4) | masks[shifts]).reshape(n, 16)
    scales = scale.reshape(n, 16)
    max_scale = np.max(scales, axis=1)
    zero = max_scale == 0
    d = max_scale / F32(15)
    inv_d = F32(1) / np.where(zero, F32(1), d)
    ls = np.clip(nearest_int(F32(0.5) * (inv_d[:, None] * scales - F32(1))), 0, 7)     # (n, 16)
    sc = (ls.reshape(n, 4, 4).astype(np.uint32) << (3 * np.arange(4, dtype=np.uint32))).sum(-1, dtype=np.uint32)
    # refit d over the super-block, every sub-block included (zero ones decode grid point 0)
    xxs = np.stack([np.where((shifts < 2)[:, None], _X_P, _X_M), np.where((shifts % 2 == 0)[:, None], _X_P, _X_M)], 1)
    qv = np.take_along_axis(xxs, t.levels[idx.astype(np.int64)], axis=2).reshape(n, 16, 16)
    qv = qv * (2 * ls + 1).astype(F32)[..., None]
    wr = w.reshape(n, 256)
    qv = qv.reshape(n, 256)
    sumqx, sumq2 = seq_sum(wr * qv * x), seq_sum(wr * qv * qv)
    d = np.where(sumq2 > 0, sumqx / np.where(sumq2 > 0, sumq2, F32(1)), d)
    bits = fp32_to_fp16(d * F32(1.1125)).view(np.uint16).astype(np.uint32)
    top = np.stack([(bits & 0xF) << 12, (bits & 0xF0) << 8, (bits & 0xF00) << 4, bits & 0xF000], 1)
    sc = (sc | top).astype(np.uint16)
    return (np.where(zero[:, None], 0, qs).astype(np.uint8), np.where(zero[:, None], 0, qh).astype(np.uint8),
            np.where(zero[:, None], 0, sc).astype("<u2").view(np.uint8).reshape(n, 8))
