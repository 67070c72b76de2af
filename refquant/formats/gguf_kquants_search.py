"""Candidate-scale searches shared by the ggml K-quants, vectorized over sub-blocks.

Each function here is the NumPy form of one static helper in ggml's
``src/ggml-quants.c`` (ggml-org/ggml @ d99724f2): ``make_qx_quants``,
``make_q3_quants``, ``make_qkx2_quants`` / ``make_qkx3_quants`` and
``make_qp_quants``. ggml runs them on one sub-block at a time; here one call handles
every sub-block of a tensor at once, and the search iterations (the candidate
scales, the coordinate-descent passes) are a short Python loop.

Shapes: the functions take and return one sub-block per row, ``(m, n)`` (``m``
sub-blocks of ``n`` values), like the block arrays of :mod:`refquant.formats.base`.
Inside, they work on the transpose, shape ``(n, m)``: ggml accumulates its sums one
element at a time in index order, and with the elements down axis 0 each step of that
loop is a single vector add across all ``m`` sub-blocks (:func:`_accumulate`), about
20 times faster than ``np.add.accumulate`` along a short last axis.

Arithmetic follows ggml's C exactly: every value is float32,
every operation rounds to float32, no fused multiply-add, products evaluate left to
right as written in C (``w*x[i]*l`` is ``(w*x)*l``), integer codes convert to float
where C converts them, and rounding to an integer is ggml's ``nearest_int``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refquant.formats._ggml_math import F32, GROUP_MAX_EPS, nearest_int

__all__ = [
    "scan_absmax",
    "scan_max",
    "make_qx_quants",
    "make_q3_quants",
    "make_qkx_quants",
    "make_qp_quants",
]


def _accumulate(terms: np.ndarray, *, from_first: bool = False) -> np.ndarray:
    """Sum ``terms`` over axis 0 one row at a time, in float32, in index order.

    This is ggml's ``for (i...) s += term[i]`` loop run for all sub-blocks at once
    (``np.sum`` would sum pairwise and round differently).

    Parameters
    ----------
    terms : ndarray of float32, shape (n, m)
    from_first : bool
        Start from ``terms[0]`` instead of ``0.0f + terms[0]`` (C code written as
        ``float s = t[0]; for (i = 1...)``; differs only in the sign of a zero sum).

    Returns
    -------
    ndarray of float32, shape (m,)
    """
    if from_first:
        acc = terms[0].copy()
        rest = terms[1:]
    else:
        acc = np.zeros(terms.shape[1:], dtype=F32)
        rest = terms
    for row in rest:
        acc += row
    return acc


def _columns(a: np.ndarray) -> np.ndarray:
    """(m, n) → contiguous (n, m): one sub-block per column."""
    return np.ascontiguousarray(np.asarray(a, dtype=F32).T)


def _scan_absmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's ``if (fabsf(v) > amax) { amax = fabsf(v); max = v; }`` from
    ``amax = max = 0``, down axis 0 of (n, m): per column the signed element of
    largest magnitude (the first on a tie) and its magnitude.

    The scan's result in whole-column operations: ``amax`` is the largest magnitude with
    NaN skipped (``fmax`` from 0, as a NaN from overflowing sums never compares greater
    in C), ``max`` the first element of that magnitude, or +0 when ``amax`` stays 0 (the
    scan never updates it, even for -0)."""
    ax = np.abs(x)
    amax = np.fmax.reduce(ax, axis=0, initial=F32(0))
    first = np.argmax(ax == amax, axis=0)                     # the first index wins a tie
    vmax = np.take_along_axis(x, first[None], axis=0)[0]
    return np.where(amax > 0, vmax, F32(0)), amax


def scan_absmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_scan_absmax` over the last axis of (m, n): returns ``(max, amax)``,
    each (m,).

    Parameters
    ----------
    x : ndarray of float32, shape (m, n)
        Any values (NaN never wins).
    """
    return _scan_absmax(_columns(x))


def scan_max(x: np.ndarray) -> np.ndarray:
    """ggml's ``if (v > max) max = v`` from ``max = 0`` over the last axis of (m, n):
    the largest element if it is positive, else +0.0 (a NaN never wins). Shape (m,).

    Parameters
    ----------
    x : ndarray of float32, shape (m, n)
        Any values (NaN never wins).
    """
    vmax = np.zeros(x.shape[:-1], dtype=F32)
    for col in _columns(x):
        np.copyto(vmax, col, where=col > vmax)
    return vmax


def _descend(one_pass, inputs: list[np.ndarray], state: list[np.ndarray]) -> None:
    """ggml's ``for (itry = 0; itry < 5; ++itry) { ...pass...; if (!n_changed) break; }``
    for every column, updating the ``state`` arrays in place.

    ``one_pass(*inputs, *state)`` runs one pass over the elements of the columns it is
    given (last axis), updates ``state`` in place and returns which columns changed. A
    pass that changes nothing in a column leaves it as it was, so every later pass would
    change nothing either: after the first pass only the columns that the previous pass
    changed are visited. That is ggml's per-block early exit; it skips most of the work.
    """
    changed = one_pass(*inputs, *state)
    cols = np.flatnonzero(changed)
    for _ in range(4):
        if cols.size == 0:
            break
        sub = [a[..., cols] for a in state]
        changed = one_pass(*[a[..., cols] for a in inputs], *sub)
        for full, part in zip(state, sub):
            full[..., cols] = part
        cols = cols[changed]


def _clamp_code(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``MAX(lo, MIN(hi, nearest_int(values)))`` as int32."""
    codes = nearest_int(values)
    np.maximum(codes, lo, out=codes)          # ufuncs in place: np.clip costs more per call
    return np.minimum(codes, hi, out=codes)


def make_qx_quants(
    x: np.ndarray, nmax: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric signed codes with a least-squares scale: ggml ``make_qx_quants``
    with ``rmse_type = 1``.

    Codes are ``l`` in ``[-nmax, nmax - 1]``. The start is ``iscale = -nmax/max``
    (``max`` the signed element of largest magnitude, so it maps to ``-nmax``); the
    scale is ``Σw·x·l / Σw·l²``. Then 18 more ``iscale = -(nmax + 0.1f·is)/max``,
    ``is = -9..9`` without 0, are tried, and one is kept when
    ``(Σw·x·l)² > best·Σw·l²`` (strict), where ``best = scale·Σw·x·l``.

    Parameters
    ----------
    x : ndarray of float32, shape (m, n)
        One sub-block per row.
    nmax : int
    weights : ndarray of float32, shape (m, n), optional
        Importance weights; ``x²`` when None (ggml's ``rmse_type = 1`` default, the
        only ``rmse_type`` ggml's block quantizers use).

    Returns
    -------
    scale : ndarray of float32, shape (m,)
        0 for a sub-block whose largest magnitude is below ``GROUP_MAX_EPS``.
    codes : ndarray of uint8, shape (m, n)
        ``l + nmax``; all 0 (not ``nmax``) for such an all-zero sub-block.
    """
    x = _columns(x)
    w = x * x if weights is None else _columns(weights)
    wx = w * x
    vmax, amax = _scan_absmax(x)
    zero = amax < GROUP_MAX_EPS
    vmax = np.where(zero, F32(1), vmax)  # placeholder divisor; zero columns are reset below

    def candidate(iscale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        l = _clamp_code(iscale * x, -nmax, nmax - 1)
        lf = l.astype(F32)
        return l, _accumulate(wx * lf), _accumulate(w * lf * lf)

    L, sumlx, suml2 = candidate(F32(-nmax) / vmax)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 != 0, sumlx / suml2, F32(0)).astype(F32)
        best = scale * sumlx
        for step in range(-9, 10):
            if step == 0:
                continue
            l, sumlx, suml2 = candidate(-(F32(nmax) + F32(0.1) * F32(step)) / vmax)
            better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            L = np.where(better, l, L)
            scale = np.where(better, sumlx / suml2, scale)
            best = np.where(better, scale * sumlx, best)
    codes = np.where(zero, 0, L + nmax).astype(np.uint8)
    return np.where(zero, F32(0), scale), codes.T


def make_q3_quants(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Signed codes refined by coordinate descent: ggml ``make_q3_quants`` with
    ``do_rmse = true`` (used by ``quantize_row_q3_K_ref``).

    Start as :func:`make_qx_quants` (weights ``x²``), then up to 5 passes over the
    elements; element ``i`` moves to ``nearest_int(x·Σ'l² / Σ'w·x·l)`` (sums without
    ``i``) when that raises ``(Σw·x·l)² / Σw·l²``; a sub-block stops after a pass that
    changes nothing (:func:`_descend`).

    Parameters
    ----------
    x : ndarray of float32, shape (m, n)
    nmax : int

    Returns
    -------
    scale : ndarray of float32, shape (m,)
        ``Σw·x·l / Σw·l²`` (0 when ``Σw·l² = 0`` or the sub-block is all zero).
    codes : ndarray of uint8, shape (m, n)
        ``l + nmax``; all 0 for an all-zero sub-block.
    """
    x = _columns(x)
    w = x * x
    wx = w * x
    vmax, amax = _scan_absmax(x)
    zero = amax < GROUP_MAX_EPS
    vmax = np.where(zero, F32(1), vmax)
    L = _clamp_code((F32(-nmax) / vmax) * x, -nmax, nmax - 1).astype(F32)
    sumlx = _accumulate(wx * L)
    suml2 = _accumulate(w * L * L)

    def one_pass(x, w, wx, L, sumlx, suml2):
        changed = np.zeros(x.shape[1], dtype=bool)
        for i in range(x.shape[0]):
            li = L[i]
            slx = sumlx - wx[i] * li
            sl2 = suml2 - (w[i] * li) * li
            new_l = _clamp_code(x[i] * sl2 / slx, -nmax, nmax - 1).astype(F32)
            accept = slx > 0
            accept &= new_l != li
            slx += wx[i] * new_l
            sl2 += (w[i] * new_l) * new_l
            accept &= sl2 > 0
            accept &= (slx * slx) * suml2 > (sumlx * sumlx) * sl2
            np.copyto(L[i], new_l, where=accept)
            np.copyto(sumlx, slx, where=accept)
            np.copyto(suml2, sl2, where=accept)
            changed |= accept
        return changed

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        _descend(one_pass, [x, w, wx], [L, sumlx, suml2])
        scale = np.where(suml2 > 0, sumlx / suml2, F32(0)).astype(F32)
    codes = np.where(zero, 0, L.astype(np.int32) + nmax).astype(np.uint8)
    return np.where(zero, F32(0), scale), codes.T


class AffineSearch(NamedTuple):
    """Result of :func:`make_qkx_quants`, one entry per sub-block."""

    scale: np.ndarray  #: float32 (m,)
    the_min: np.ndarray  #: float32 (m,), ``-min`` (>= 0): the value subtracted
    codes: np.ndarray  #: uint8 (m, n), in ``[0, nmax]``


def make_qkx_quants(
    x: np.ndarray,
    weights: np.ndarray,
    nmax: int,
    rmin: float,
    rdelta: float,
    nstep: int,
    use_mad: bool,
) -> AffineSearch:
    """Asymmetric codes ``x ≈ scale·l + min`` with a scale search: ggml
    ``make_qkx2_quants`` (and ``make_qkx3_quants``, identical when weights are
    given, which is the only way the K-quants call it).

    ``min`` starts at ``min(x, 0)`` and ``max`` at ``max(x)``. The start is
    ``iscale = nmax/(max - min)``; then for ``is = 0..nstep`` the candidate
    ``iscale = (rmin + rdelta·is + nmax)/(max - min)`` gives codes ``l`` and a
    weighted two-parameter least-squares fit (scale, min), with ``min`` capped at 0.
    A candidate replaces the best one when its weighted error ``Σw·|e|``
    (``use_mad``) or ``Σw·e²`` is strictly lower, and then its ``min`` is the one
    the following candidates use for ``x - min`` and ``max - min`` (ggml updates
    the variable in place).

    Parameters
    ----------
    x, weights : ndarray of float32, shape (m, n)
    nmax : int
    rmin, rdelta : float
        Converted to float32, as ggml's ``-0.5f``, ``0.1f`` literals.
    nstep : int
    use_mad : bool

    Returns
    -------
    AffineSearch
        For a column with ``max == min`` (constant non-negative, or all zero):
        scale 0, codes 0 and ``the_min = -min``.
    """
    x = _columns(x)
    w = _columns(weights)
    rmin32, rdelta32 = F32(rmin), F32(rdelta)
    sum_w = _accumulate(w, from_first=True)
    sum_x = _accumulate(w * x, from_first=True)
    vmin, vmax = x[0], x[0]
    for row in x[1:]:  # if (x[i] < min) min = x[i]; if (x[i] > max) max = x[i];
        vmin = np.where(row < vmin, row, vmin)
        vmax = np.where(row > vmax, row, vmax)
    vmin = np.where(vmin > 0, F32(0), vmin)
    flat = vmax == vmin

    def weighted_error(scale: np.ndarray, lf: np.ndarray, mn: np.ndarray) -> np.ndarray:
        diff = scale * lf  # diff = scale*l + min - x, then |diff| or diff², times w
        diff += mn
        diff -= x
        if use_mad:
            np.abs(diff, out=diff)
        else:
            diff *= diff
        diff *= w
        return _accumulate(diff)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = F32(nmax) / (vmax - vmin)
        scale = F32(1) / iscale
        L = _clamp_code(iscale * (x - vmin), 0, nmax)
        best_error = weighted_error(scale, L.astype(F32), vmin)
        for step in range(nstep + 1):
            # ggml updates `min` when it accepts a candidate, so the later
            # candidates' iscale and offsets use the accepted min
            iscale = (rmin32 + rdelta32 * F32(step) + F32(nmax)) / (vmax - vmin)
            l = _clamp_code(iscale * (x - vmin), 0, nmax)
            lf = l.astype(F32)
            wl = w * lf
            sum_l = _accumulate(wl)
            sum_l2 = _accumulate(wl * lf)
            sum_xl = _accumulate(wl * x)
            D = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            capped = this_min > 0
            this_min = np.where(capped, F32(0), this_min)
            this_scale = np.where(capped, sum_xl / sum_l2, this_scale)
            cur_error = weighted_error(this_scale, lf, this_min)
            better = (D > 0) & (cur_error < best_error) & ~flat
            L = np.where(better, l, L)
            best_error = np.where(better, cur_error, best_error)
            scale = np.where(better, this_scale, scale)
            vmin = np.where(better, this_min, vmin)
    scale = np.where(flat, F32(0), scale)
    the_min = -vmin
    codes = np.where(flat, 0, L).astype(np.uint8)
    return AffineSearch(scale.astype(F32), the_min.astype(F32), codes.T)


def make_qp_quants(
    x: np.ndarray, nmax: int, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Quantize non-negative sub-block scales to ``[0, nmax]``: ggml ``make_qp_quants``.

    ``max = max(0, x)``; a column with ``max < GROUP_MAX_EPS`` gives 0. Otherwise the
    best of ``iscale = nmax/max`` and ``(0.1f·is + nmax)/max`` (``is = -4..4``) by
    weighted squared error, then the coordinate descent of :func:`make_q3_quants`
    (codes capped only from above), and the scale ``Σw·x·l / Σw·l²``, or **0 when
    ``Σw·l² = 0``** (all weights zero where codes are non-zero: the guard that keeps
    zero-importance imatrix columns from producing NaN).

    Codes are stored as uint8 as in ggml, so a negative input (never produced by
    the K-quant searches) would wrap exactly as it does there.

    Parameters
    ----------
    x, weights : ndarray of float32, shape (m, n)
    nmax : int

    Returns
    -------
    scale : ndarray of float32, shape (m,)
    codes : ndarray of uint8, shape (m, n)
    """
    x = _columns(x)
    w = _columns(weights)
    wx = w * x
    vmax = np.zeros(x.shape[1:], dtype=F32)
    for row in x:  # max = MAX(max, x[i]), i.e. max > x[i] ? max : x[i]
        vmax = np.where(vmax > row, vmax, row)
    zero = vmax < GROUP_MAX_EPS
    vmax = np.where(zero, F32(1), vmax)

    def squared_error(iscale: np.ndarray, codes: np.ndarray) -> np.ndarray:
        diff = x - (F32(1) / iscale) * codes.astype(F32)
        return _accumulate(w * diff * diff)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        best_iscale = F32(nmax) / vmax
        # the first candidate stores nearest_int in uint8 without the nmax cap
        best_mse = squared_error(best_iscale, (nearest_int(best_iscale * x) & 0xFF))
        for step in range(-4, 5):
            if step == 0:
                continue
            iscale = (F32(0.1) * F32(step) + F32(nmax)) / vmax
            mse = squared_error(iscale, np.minimum(nearest_int(iscale * x), nmax))
            better = mse < best_mse
            best_mse = np.where(better, mse, best_mse)
            best_iscale = np.where(better, iscale, best_iscale)

        l = np.minimum(nearest_int(best_iscale * x), nmax)
        lf = l.astype(F32)
        sumlx = _accumulate(wx * lf)
        suml2 = _accumulate(w * lf * lf)
        L = (l & 0xFF).astype(F32)  # what ggml's uint8_t L[] holds

        def one_pass(x, w, wx, L, sumlx, suml2):
            changed = np.zeros(x.shape[1], dtype=bool)
            for i in range(x.shape[0]):
                li = L[i]
                slx = sumlx - wx[i] * li
                sl2 = suml2 - w[i] * li * li
                new_l = np.minimum(nearest_int(x[i] * sl2 / slx), nmax)
                new_lf = new_l.astype(F32)
                accept = (slx > 0) & (sl2 > 0) & (new_lf != li)
                slx = slx + wx[i] * new_lf
                sl2 = sl2 + w[i] * new_lf * new_lf
                accept &= slx * slx * suml2 > sumlx * sumlx * sl2
                np.copyto(L[i], (new_l & 0xFF).astype(F32), where=accept)
                np.copyto(sumlx, slx, where=accept)
                np.copyto(suml2, sl2, where=accept)
                changed |= accept
            return changed

        _descend(one_pass, [x, w, wx], [L, sumlx, suml2])
        scale = np.where(suml2 > 0, sumlx / suml2, F32(0)).astype(F32)
    codes = np.where(zero, 0, L).astype(np.uint8)
    return np.where(zero, F32(0), scale), codes.T
