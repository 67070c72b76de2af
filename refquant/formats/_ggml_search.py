"""ggml's scale searches, vectorized over blocks.

Each function reproduces one ``static`` helper of ``ggml-quants.c`` (ggml-org/ggml
@ d99724f2) on a stack of blocks ``x`` of shape (n, k): the same float32 operations in
the same order (FACTS.md 3.6 and its arithmetic rules), with the per-block loops of the
C code turned into array operations and the candidate loops kept as Python loops over
candidates (a few dozen iterations, each over all blocks at once).

- :func:`make_qx_quants`: symmetric codes in [-nmax, nmax-1] (Q4_0/Q5_0 imatrix paths,
  Q3_K imatrix path, Q6_K).
- :func:`make_qkx3_quants`: asymmetric codes in [0, nmax] with a min (Q4_1/Q5_1 imatrix
  paths, Q2_K/Q4_K/Q5_K imatrix paths).
"""

from __future__ import annotations

import numpy as np

from refquant.formats._ggml_math import F32, GROUP_MAX_EPS, nearest_int, safe_divide, seq_sum, signed_absmax

__all__: list[str] = []  # internal module


def _default_weights(x: np.ndarray, rmse_type: int) -> np.ndarray:
    """The weights make_qx_quants uses without ``qw``: x², 1, |x| or sqrt(|x|)."""
    if rmse_type == 1:
        return x * x
    if rmse_type == 2:
        return np.ones_like(x)
    if rmse_type == 3:
        return np.abs(x)
    return np.sqrt(np.abs(x))


def make_qx_quants(x: np.ndarray, nmax: int, rmse_type: int,
                   qw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``make_qx_quants(n, nmax, x, L, rmse_type, qw)``: a signed scale and codes.

    The largest-magnitude element maps to -nmax (the side with one more level). With
    ``rmse_type != 0`` the scale is refined by weighted least squares over the 18 candidate
    inverse scales -(nmax + 0.1f*is)/max, is = -9..9 (is != 0), keeping a candidate when
    sumlx² > best·suml2 (strict, so the first best wins).

    Parameters
    ----------
    x : ndarray of float32, shape (n, k)
    nmax : int
    rmse_type : int
        0: no search; 1..4: default weights x², 1, |x|, sqrt|x| when ``qw`` is None;
        negative: return the average of the LS scale and 1/iscale, no search.
    qw : ndarray of float32, shape (n, k), optional
        Weights (take precedence over ``rmse_type``'s defaults).

    Returns
    -------
    scale : ndarray of float32, shape (n,)
        0 for blocks whose abs max is below 1e-15 (their codes are all 0, not nmax).
    L : ndarray of int8, shape (n, k)
        Codes plus nmax, in [0, 2*nmax - 1].
    """
    x = np.asarray(x, dtype=F32)
    mx, amax = signed_absmax(x)
    zero = amax < GROUP_MAX_EPS
    mx = np.where(zero, F32(1), mx)[:, None]  # dummy divisor for all-zero blocks
    lo, hi = -nmax, nmax - 1

    def codes(iscale: np.ndarray) -> np.ndarray:
        return np.clip(nearest_int(iscale * x), lo, hi).astype(F32)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = F32(-nmax) / mx
        l = codes(iscale)
        if rmse_type == 0:
            scale = (F32(1) / iscale)[:, 0]
        else:
            w = np.asarray(qw, dtype=F32) if qw is not None else _default_weights(x, abs(rmse_type))
            sumlx = seq_sum(w * x * l)
            suml2 = seq_sum(w * l * l)
            scale = safe_divide(sumlx, suml2)
            if rmse_type < 0:
                scale = np.where(suml2 > 0, F32(0.5) * (scale + (F32(1) / iscale)[:, 0]), (F32(1) / iscale)[:, 0])
            else:
                best = scale * sumlx
                for step in range(-9, 10):
                    if step == 0:
                        continue
                    iscale = -(F32(nmax) + F32(0.1) * F32(step)) / mx
                    cand = codes(iscale)
                    sumlx = seq_sum(w * x * cand)
                    suml2 = seq_sum(w * cand * cand)
                    take = (suml2 > 0) & (sumlx * sumlx > best * suml2)
                    l = np.where(take[:, None], cand, l)
                    scale = np.where(take, safe_divide(sumlx, suml2), scale)
                    best = np.where(take, scale * sumlx, best)
    L = (l + F32(nmax)).astype(np.int8)
    L[zero] = 0
    return np.where(zero, F32(0), scale).astype(F32), L


def make_qkx3_quants(x: np.ndarray, nmax: int, weights: np.ndarray | None, rmin: float, rdelta: float,
                     nstep: int, use_mad: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``make_qkx3_quants``: codes in [0, nmax], a scale and a min, by weighted search.

    Start from min = min(x, 0), max = max(x): iscale = nmax/(max - min). Then for
    is = 0..nstep try iscale = (rmin + rdelta*is + nmax)/(max - min), fit scale and min
    by 2-parameter weighted least squares (min clamped to <= 0), and keep the candidate
    whose weighted error (absolute if ``use_mad`` else squared) is strictly lower.
    An accepted candidate's min replaces ``min`` for the later candidates (in both
    ``max - min`` and ``x - min``), exactly as the C loop reuses its variable; a search
    that kept the initial min would pick different candidates (checked against ggml).

    Parameters
    ----------
    x : ndarray of float32, shape (n, k)
    nmax : int
    weights : ndarray of float32, shape (n, k), or None for x²
    rmin, rdelta : float
        C float literals (converted to float32 here).
    nstep : int
    use_mad : bool

    Returns
    -------
    scale : ndarray of float32, shape (n,)
    L : ndarray of uint8, shape (n, k)
    the_min : ndarray of float32, shape (n,)
        ``-min`` (>= 0 when the block has a negative element); the block decodes as
        scale*L - the_min.
    """
    x = np.asarray(x, dtype=F32)
    w = np.asarray(weights, dtype=F32) if weights is not None else x * x
    rmin, rdelta = F32(rmin), F32(rdelta)
    mn = np.take_along_axis(x, np.argmin(x, axis=-1)[:, None], axis=-1)[:, 0]
    mx = np.take_along_axis(x, np.argmax(x, axis=-1)[:, None], axis=-1)[:, 0]
    sum_w = seq_sum(w, from_zero=False)
    sum_x = seq_sum(w * x, from_zero=False)
    mn = np.where(mn > 0, F32(0), mn).astype(F32)
    flat = mx <= mn
    mx = np.where(flat, F32(1), mx)  # dummy range for flat blocks, whose result is fixed below

    def error(scale: np.ndarray, L: np.ndarray, m: np.ndarray) -> np.ndarray:
        diff = scale[:, None] * L + m[:, None] - x
        return seq_sum(w * (np.abs(diff) if use_mad else diff * diff))

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = F32(nmax) / (mx - mn)
        scale = F32(1) / iscale
        L = np.clip(nearest_int(iscale[:, None] * (x - mn[:, None])), 0, nmax).astype(F32)
        best_mad = error(scale, L, mn)
        # The C loop overwrites `min` when it accepts a candidate, and later candidates
        # use that min in (max - min) and (x - min): carry it per block.
        for step in range(nstep + 1 if nstep >= 1 else 0):
            iscale = (rmin + rdelta * F32(step) + F32(nmax)) / (mx - mn)
            laux = np.clip(nearest_int(iscale[:, None] * (x - mn[:, None])), 0, nmax).astype(F32)
            wl = w * laux
            sum_l = seq_sum(wl)
            sum_l2 = seq_sum(wl * laux)
            sum_xl = seq_sum(wl * x)
            D = sum_w * sum_l2 - sum_l * sum_l
            ok = D > 0
            Ds = np.where(ok, D, F32(1))
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / Ds
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / Ds
            pos = this_min > 0
            this_min = np.where(pos, F32(0), this_min)
            this_scale = np.where(pos, sum_xl / sum_l2, this_scale)
            mad = error(this_scale, laux, this_min)
            take = ok & (mad < best_mad) & ~flat
            L = np.where(take[:, None], laux, L)
            best_mad = np.where(take, mad, best_mad)
            scale = np.where(take, this_scale, scale)
            mn = np.where(take, this_min, mn)
    scale = np.where(flat, F32(0), scale).astype(F32)
    L = np.where(flat[:, None], F32(0), L).astype(np.uint8)
    return scale, L, (-mn).astype(F32)
