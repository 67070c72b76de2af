"""ggml's candidate-scale searches as Numba helpers, several sub-blocks ("lanes") at once.

Each function is one static helper of ``ggml-quants.c`` (ggml-org/ggml @ d99724f2):
``make_qx_quants``, ``make_q3_quants``, ``make_qkx2_quants`` / ``make_qkx3_quants`` and
``make_qp_quants`` (the NumPy forms are in :mod:`refquant.formats.gguf_kquants_search`).
ggml runs them on one sub-block at a time, and every sum in them is a
sequential float32 loop, which no compiler may vectorize without changing the rounding.
Here the ``*_lanes`` helpers run ``LANES`` independent sub-blocks side by side: the data
is laid out element-major, ``x[i, j]`` = element ``i`` of sub-block ``j``, and each loop
over the elements has an inner loop over the lanes ``j``. Every lane still adds its
terms one at a time in index order (its own C loop, bit for bit), while LLVM turns the
lane loop into SIMD instructions.

Per-lane control flow of the C code becomes per-lane selects:

- a candidate scale is computed for every lane and accepted only where C accepts it;
- early returns (an all-zero sub-block, ``max == min``) are applied as masks at the end;
- the coordinate descent's "stop after a pass that changes nothing" is per sub-block in
  C; a pass that changes nothing leaves the lane's state as it was, so running further
  passes on it changes nothing either, and the loop stops when no lane changed.

Arithmetic as in C: every value float32, products left to right (``w*x[i]*l`` is
``(w*x)*l``), an integer meets a float only through ``f32(l)``; ``L`` holds what ggml's
``int8_t``/``uint8_t`` arrays hold. Per-lane state lives on the stack (:data:`accel.numba.gguf_math.stack_f32`), so that
LLVM keeps it in SIMD registers; the lane count is the constant ``LANES`` (16, one
AVX-512 vector): callers fill unused lanes with zeros and ignore their results.
"""

from __future__ import annotations

import numba
import numpy as np

from accel.numba.gguf_math import GROUP_MAX_EPS, LANES, f32, ghelper, nearest_int, stack_f32

__all__ = ["make_qx_quants", "make_qx_lanes", "make_q3_lanes", "make_qkx_lanes", "make_qp_quants", "LANES"]

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_TENTH = np.float32(0.1)


@ghelper
def _clamp(v, lo, hi):  # type: ignore[no-untyped-def]
    """``MAX(lo, MIN(hi, v))`` in int32."""
    return max(min(v, np.int32(hi)), np.int32(lo))


@ghelper
def _signed_absmax_lanes(n, x, vmax, amax):  # type: ignore[no-untyped-def]
    """Per lane: ``if (fabsf(v) > amax) { amax = fabsf(v); max = v; }`` from 0."""
    for j in range(LANES):
        vmax[j] = _ZERO
        amax[j] = _ZERO
    for i in range(n):
        for j in range(LANES):
            v = x[i, j]
            a = np.abs(v)
            bigger = a > amax[j]
            amax[j] = a if bigger else amax[j]
            vmax[j] = v if bigger else vmax[j]


@ghelper
def _symmetric_code(v, iscale, nmax):  # type: ignore[no-untyped-def]
    """``MAX(-nmax, MIN(nmax-1, nearest_int(iscale*x)))`` (make_qx_quants)."""
    return _clamp(nearest_int(iscale * v), -nmax, nmax - 1)


@ghelper
def _symmetric_sums(n, nmax, x, w, iscale, sumlx, suml2):  # type: ignore[no-untyped-def]
    """One candidate's Σ (w·x)·l and Σ (w·l)·l per lane, in index order from 0 (codes
    recomputed, not stored: see :func:`_affine_sums`)."""
    a0 = numba.carray(stack_f32(), LANES)
    a1 = numba.carray(stack_f32(), LANES)
    for j in range(LANES):
        a0[j] = _ZERO
        a1[j] = _ZERO
    for i in range(n):
        for j in range(LANES):
            fl = f32(_symmetric_code(x[i, j], iscale[j], nmax))
            a0[j] += w[i, j] * x[i, j] * fl
            a1[j] += w[i, j] * fl * fl
    for j in range(LANES):
        sumlx[j] = a0[j]
        suml2[j] = a1[j]


@ghelper
def make_qx_lanes(n, nmax, x, w, L, scale):  # type: ignore[no-untyped-def]
    """``make_qx_quants(n, nmax, x, L, rmse_type=1, qw=w)`` on the ``LANES`` lanes.

    x, w : float32 (>= n, LANES), element-major; ggml's ``qw = NULL`` is ``w = x*x``.
    L : int32 (>= n, LANES); receives ``l + nmax`` (0 for an all-zero lane).
    scale : float32 (LANES,), the returned scale per lane.
    """
    vmax = numba.carray(stack_f32(), LANES)
    amax = numba.carray(stack_f32(), LANES)
    iscale = numba.carray(stack_f32(), LANES)
    best_iscale = numba.carray(stack_f32(), LANES)
    sumlx = numba.carray(stack_f32(), LANES)
    suml2 = numba.carray(stack_f32(), LANES)
    best = numba.carray(stack_f32(), LANES)
    sc = numba.carray(stack_f32(), LANES)
    _signed_absmax_lanes(n, x, vmax, amax)
    fnmax = f32(nmax)
    for j in range(LANES):
        iscale[j] = -fnmax / vmax[j]
        best_iscale[j] = iscale[j]  # L is the codes of best_iscale
    _symmetric_sums(n, nmax, x, w, iscale, sumlx, suml2)
    for j in range(LANES):
        sc[j] = sumlx[j] / suml2[j] if suml2[j] != _ZERO else _ZERO
        best[j] = sc[j] * sumlx[j]
    for step in range(-9, 10):
        if step == 0:
            continue
        for j in range(LANES):
            iscale[j] = -(fnmax + _TENTH * f32(step)) / vmax[j]
        _symmetric_sums(n, nmax, x, w, iscale, sumlx, suml2)
        for j in range(LANES):
            ok = (suml2[j] > _ZERO) & (sumlx[j] * sumlx[j] > best[j] * suml2[j])
            sc[j] = sumlx[j] / suml2[j] if ok else sc[j]
            best[j] = sc[j] * sumlx[j] if ok else best[j]
            best_iscale[j] = iscale[j] if ok else best_iscale[j]
    for i in range(n):
        for j in range(LANES):
            zero = amax[j] < GROUP_MAX_EPS  # ggml returns 0 with L = 0 before any search
            L[i, j] = 0 if zero else _symmetric_code(x[i, j], best_iscale[j], nmax) + np.int32(nmax)
    for j in range(LANES):
        scale[j] = _ZERO if amax[j] < GROUP_MAX_EPS else sc[j]


@ghelper
def make_q3_lanes(n, nmax, x, L, scale):  # type: ignore[no-untyped-def]
    """``make_q3_quants(n, nmax, x, L, do_rmse=true)`` on the ``LANES`` lanes: weights x²,
    least-squares scale, up to 5 coordinate-descent passes. ``L`` receives ``l + nmax``
    (0 for an all-zero lane); ``scale`` gets ``sumlx/suml2`` (0 if not ``suml2 > 0``)."""
    vmax = numba.carray(stack_f32(), LANES)
    amax = numba.carray(stack_f32(), LANES)
    iscale = numba.carray(stack_f32(), LANES)
    sumlx = numba.carray(stack_f32(), LANES)
    suml2 = numba.carray(stack_f32(), LANES)
    changed = numba.carray(stack_f32(), LANES)
    _signed_absmax_lanes(n, x, vmax, amax)
    for j in range(LANES):
        iscale[j] = -f32(nmax) / vmax[j]
        sumlx[j] = _ZERO
        suml2[j] = _ZERO
    for i in range(n):
        for j in range(LANES):
            l = _clamp(nearest_int(iscale[j] * x[i, j]), -nmax, nmax - 1)
            L[i, j] = l
            v = x[i, j]
            w = v * v
            fl = f32(l)
            sumlx[j] += w * v * fl
            suml2[j] += w * fl * fl
    for _ in range(5):
        for j in range(LANES):
            changed[j] = _ZERO
        for i in range(n):
            for j in range(LANES):
                v = x[i, j]
                w = v * v
                li = L[i, j]
                fli = f32(li)
                slx = sumlx[j] - w * v * fli
                sl2 = suml2[j] - w * fli * fli
                new_l = _clamp(nearest_int(v * sl2 / slx), -nmax, nmax - 1)
                fn = f32(new_l)
                slx2 = slx + w * v * fn
                sl22 = sl2 + w * fn * fn
                accept = (slx > _ZERO) & (new_l != li) & (sl22 > _ZERO) & (
                    slx2 * slx2 * suml2[j] > sumlx[j] * sumlx[j] * sl22)
                L[i, j] = new_l if accept else li
                sumlx[j] = slx2 if accept else sumlx[j]
                suml2[j] = sl22 if accept else suml2[j]
                changed[j] = _ONE if accept else changed[j]
        any_changed = _ZERO
        for j in range(LANES):
            any_changed += _ZERO if amax[j] < GROUP_MAX_EPS else changed[j]
        if any_changed == _ZERO:
            break
    for j in range(LANES):
        zero = amax[j] < GROUP_MAX_EPS
        scale[j] = _ZERO if zero else (sumlx[j] / suml2[j] if suml2[j] > _ZERO else _ZERO)
        for i in range(n):
            L[i, j] = 0 if zero else L[i, j] + np.int32(nmax)


@ghelper
def _affine_code(v, iscale, mn, nmax):  # type: ignore[no-untyped-def]
    """``MAX(0, MIN(nmax, nearest_int(iscale*(x - min))))`` (make_qkx2_quants)."""
    return _clamp(nearest_int(iscale * (v - mn)), 0, nmax)


@ghelper
def _affine_sums(n, nmax, x, w, iscale, mn, sl, sl2, sxl):  # type: ignore[no-untyped-def]
    """One candidate's Σ w·l, Σ (w·l)·l, Σ (w·l)·x per lane, in index order from 0.

    The codes are recomputed here (and in :func:`_affine_error`) rather than stored:
    with no stores to memory the compiler can keep the sums in SIMD registers."""
    a0 = numba.carray(stack_f32(), LANES)
    a1 = numba.carray(stack_f32(), LANES)
    a2 = numba.carray(stack_f32(), LANES)
    for j in range(LANES):
        a0[j] = _ZERO
        a1[j] = _ZERO
        a2[j] = _ZERO
    for i in range(n):
        for j in range(LANES):
            fl = f32(_affine_code(x[i, j], iscale[j], mn[j], nmax))
            wl = w[i, j] * fl
            a0[j] += wl
            a1[j] += wl * fl
            a2[j] += wl * x[i, j]
    for j in range(LANES):
        sl[j] = a0[j]
        sl2[j] = a1[j]
        sxl[j] = a2[j]


@ghelper
def _affine_error(n, nmax, x, w, iscale, mn, sc, off, use_mad, err):  # type: ignore[no-untyped-def]
    """err[j] = Σ_i w·|e| (``use_mad``) or w·e² with e = sc·l + off − x, l the codes of
    (iscale, mn), in index order from 0."""
    a = numba.carray(stack_f32(), LANES)
    for j in range(LANES):
        a[j] = _ZERO
    if use_mad:
        for i in range(n):
            for j in range(LANES):
                fl = f32(_affine_code(x[i, j], iscale[j], mn[j], nmax))
                a[j] += w[i, j] * np.abs(sc[j] * fl + off[j] - x[i, j])
    else:
        for i in range(n):
            for j in range(LANES):
                fl = f32(_affine_code(x[i, j], iscale[j], mn[j], nmax))
                diff = sc[j] * fl + off[j] - x[i, j]
                a[j] += w[i, j] * (diff * diff)
    for j in range(LANES):
        err[j] = a[j]


@ghelper
def make_qkx_lanes(n, nmax, x, w, L, rmin, rdelta, nstep, use_mad, scale, the_min):  # type: ignore[no-untyped-def]
    """``make_qkx2_quants`` (and ``make_qkx3_quants`` with weights: identical) on the
    ``LANES`` lanes: asymmetric codes 0..nmax in ``L``, ``scale`` and ``the_min = -min``
    per lane. ``rmin``, ``rdelta`` are float32; a lane with ``max == min`` gets scale 0
    and codes 0."""
    mn = numba.carray(stack_f32(), LANES)
    mx = numba.carray(stack_f32(), LANES)
    sum_w = numba.carray(stack_f32(), LANES)
    sum_x = numba.carray(stack_f32(), LANES)
    iscale = numba.carray(stack_f32(), LANES)
    best_iscale = numba.carray(stack_f32(), LANES)
    best_mn = numba.carray(stack_f32(), LANES)
    best = numba.carray(stack_f32(), LANES)
    sl = numba.carray(stack_f32(), LANES)
    sl2 = numba.carray(stack_f32(), LANES)
    sxl = numba.carray(stack_f32(), LANES)
    err = numba.carray(stack_f32(), LANES)
    tscale = numba.carray(stack_f32(), LANES)
    tmin = numba.carray(stack_f32(), LANES)
    flat = numba.carray(stack_f32(), LANES)
    sc = numba.carray(stack_f32(), LANES)
    for j in range(LANES):
        mn[j] = x[0, j]
        mx[j] = x[0, j]
        sum_w[j] = w[0, j]
        sum_x[j] = w[0, j] * x[0, j]
    for i in range(1, n):
        for j in range(LANES):
            v = x[i, j]
            mn[j] = v if v < mn[j] else mn[j]
            mx[j] = v if v > mx[j] else mx[j]
            sum_w[j] += w[i, j]
            sum_x[j] += w[i, j] * v
    fnmax = f32(nmax)
    for j in range(LANES):
        mn[j] = _ZERO if mn[j] > _ZERO else mn[j]
        flat[j] = _ONE if mx[j] == mn[j] else _ZERO
        the_min[j] = -mn[j]  # the early return's value
        iscale[j] = fnmax / (mx[j] - mn[j])
        sc[j] = _ONE / iscale[j]
        best_iscale[j] = iscale[j]  # L is the codes of (best_iscale, best_mn)
        best_mn[j] = mn[j]
    _affine_error(n, nmax, x, w, iscale, mn, sc, mn, use_mad, best)
    for step in range(nstep + 1):
        for j in range(LANES):
            iscale[j] = (rmin + rdelta * f32(step) + fnmax) / (mx[j] - mn[j])
        _affine_sums(n, nmax, x, w, iscale, mn, sl, sl2, sxl)
        for j in range(LANES):
            D = sum_w[j] * sl2[j] - sl[j] * sl[j]
            ts = (sum_w[j] * sxl[j] - sum_x[j] * sl[j]) / D
            tm = (sl2[j] * sum_x[j] - sl[j] * sxl[j]) / D
            capped = tm > _ZERO
            tmin[j] = _ZERO if capped else tm
            tscale[j] = sxl[j] / sl2[j] if capped else ts
            sl[j] = D  # kept for the acceptance test below
        _affine_error(n, nmax, x, w, iscale, mn, tscale, tmin, use_mad, err)
        for j in range(LANES):
            ok = (sl[j] > _ZERO) & (err[j] < best[j]) & (flat[j] == _ZERO)
            best[j] = err[j] if ok else best[j]
            sc[j] = tscale[j] if ok else sc[j]
            best_iscale[j] = iscale[j] if ok else best_iscale[j]
            best_mn[j] = mn[j] if ok else best_mn[j]  # the codes' offset: the min before the update
            mn[j] = tmin[j] if ok else mn[j]
    for i in range(n):
        for j in range(LANES):
            L[i, j] = 0 if flat[j] != _ZERO else _affine_code(x[i, j], best_iscale[j], best_mn[j], nmax)
    for j in range(LANES):
        is_flat = flat[j] != _ZERO
        scale[j] = _ZERO if is_flat else sc[j]
        the_min[j] = the_min[j] if is_flat else -mn[j]


@ghelper
def make_qx_quants(n, nmax, x, w, L):  # type: ignore[no-untyped-def]
    """``make_qx_quants(n, nmax, x, L, rmse_type=1, qw=w)`` on one group, as ggml's C loop
    (for the one group of sub-block scales per super-block, where lanes would idle).
    Writes ``L[i] = l + nmax`` (0 for an all-zero group) and returns the scale."""
    mx = _ZERO
    amax = _ZERO
    for i in range(n):
        ax = np.abs(x[i])
        if ax > amax:
            amax = ax
            mx = x[i]
    if amax < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return _ZERO
    fnmax = f32(nmax)
    iscale = -fnmax / mx
    sumlx = _ZERO
    suml2 = _ZERO
    for i in range(n):
        l = _symmetric_code(x[i], iscale, nmax)
        L[i] = l + np.int32(nmax)
        fl = f32(l)
        sumlx += w[i] * x[i] * fl
        suml2 += w[i] * fl * fl
    scale = sumlx / suml2 if suml2 != _ZERO else _ZERO
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(fnmax + _TENTH * f32(step)) / mx
        sumlx = _ZERO
        suml2 = _ZERO
        for i in range(n):
            fl = f32(_symmetric_code(x[i], iscale, nmax))
            sumlx += w[i] * x[i] * fl
            suml2 += w[i] * fl * fl
        if suml2 > _ZERO and sumlx * sumlx > best * suml2:
            for i in range(n):
                L[i] = _symmetric_code(x[i], iscale, nmax) + np.int32(nmax)
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


@ghelper
def make_qp_quants(n, nmax, x, L, w):  # type: ignore[no-untyped-def]
    """``make_qp_quants`` on one group (it runs twice per super-block, not per
    sub-block): non-negative values to codes 0..nmax (stored in ``L`` as a ``uint8_t``
    store would), weighted search over 9 scales, coordinate descent. Returns the scale,
    0 when ``suml2`` is not > 0 (zero importance)."""
    mx = _ZERO
    for i in range(n):
        mx = mx if mx > x[i] else x[i]  # MAX(max, x[i])
    if mx < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return _ZERO
    fnmax = f32(nmax)
    iscale = fnmax / mx
    for i in range(n):
        L[i] = nearest_int(iscale * x[i]) & 0xFF
    scale = _ONE / iscale
    best_mse = _ZERO
    for i in range(n):
        diff = x[i] - scale * f32(L[i])
        best_mse += w[i] * diff * diff
    for step in range(-4, 5):
        if step == 0:
            continue
        iscale_is = (_TENTH * f32(step) + fnmax) / mx
        scale_is = _ONE / iscale_is
        mse = _ZERO
        for i in range(n):
            l = min(nmax, nearest_int(iscale_is * x[i]))
            diff = x[i] - scale_is * f32(l)
            mse += w[i] * diff * diff
        if mse < best_mse:
            best_mse = mse
            iscale = iscale_is
    sumlx = _ZERO
    suml2 = _ZERO
    for i in range(n):
        l = min(nmax, nearest_int(iscale * x[i]))
        L[i] = l & 0xFF
        fl = f32(l)
        sumlx += w[i] * x[i] * fl
        suml2 += w[i] * fl * fl
    for _ in range(5):
        n_changed = 0
        for i in range(n):
            li = f32(L[i])
            slx = sumlx - w[i] * x[i] * li
            sl2 = suml2 - w[i] * li * li
            if slx > _ZERO and sl2 > _ZERO:
                new_l = min(nmax, nearest_int(x[i] * sl2 / slx))
                if new_l != L[i]:
                    fn = f32(new_l)
                    slx += w[i] * x[i] * fn
                    sl2 += w[i] * fn * fn
                    if slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l & 0xFF
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    return sumlx / suml2 if suml2 > _ZERO else _ZERO
