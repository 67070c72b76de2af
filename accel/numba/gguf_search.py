"""ggml's candidate-scale searches as serial Numba helpers, one sub-block per call.

Each function is one static helper of ``ggml-quants.c`` (ggml-org/ggml @ d99724f2) with
the same loop structure and operation order, so the float32 results are ggml's bit for
bit (the NumPy forms, vectorized over sub-blocks, are in
:mod:`refquant.formats.gguf_kquants_search`; FACTS.md 3.6):

- every sum runs one element at a time in index order (no vectorized reduction: the
  kernels are compiled without fast-math, so LLVM keeps the order);
- products evaluate left to right as C writes them (``w*x[i]*l`` is ``(w*x)*l``), and an
  integer meets a float only through ``f32(l)``, where C converts it;
- ``L`` arrays hold what ggml's ``int8_t``/``uint8_t`` arrays hold (``make_qp_quants``
  stores its codes modulo 256, as a ``uint8_t`` store does).

The caller passes ``x``, the weights ``w`` and the code arrays as views of length ``n``.
"""

from __future__ import annotations

import numpy as np

from accel.numba.gguf_math import GROUP_MAX_EPS, f32, ghelper, nearest_int

__all__ = ["make_qx_quants", "make_q3_quants", "make_qkx_quants", "make_qp_quants"]

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_TENTH = np.float32(0.1)


@ghelper
def _clamp(v, lo, hi):  # type: ignore[no-untyped-def]
    """``MAX(lo, MIN(hi, v))``."""
    if v > hi:
        v = hi
    if v < lo:
        v = lo
    return v


@ghelper
def make_qx_quants(n, nmax, x, w, L):  # type: ignore[no-untyped-def]
    """``make_qx_quants(n, nmax, x, L, rmse_type=1, qw=w)``; for ggml's ``qw = NULL``
    the caller passes ``w = x*x``. Writes ``L[i] = l + nmax`` (all 0 for an all-zero
    sub-block) and returns the scale."""
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
        l = _clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1)
        L[i] = l + nmax
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
            fl = f32(_clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1))
            sumlx += w[i] * x[i] * fl
            suml2 += w[i] * fl * fl
        if suml2 > _ZERO and sumlx * sumlx > best * suml2:
            for i in range(n):
                L[i] = nmax + _clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1)
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


@ghelper
def make_q3_quants(n, nmax, x, L):  # type: ignore[no-untyped-def]
    """``make_q3_quants(n, nmax, x, L, do_rmse=true)``: weights x², least-squares
    scale, up to 5 coordinate-descent passes. Writes ``L[i] = l + nmax`` (0 for an
    all-zero sub-block) and returns ``sumlx/suml2`` (0 if ``suml2`` is not > 0)."""
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
    iscale = -f32(nmax) / mx
    sumlx = _ZERO
    suml2 = _ZERO
    for i in range(n):
        l = _clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1)
        L[i] = l
        w = x[i] * x[i]
        fl = f32(l)
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    for _ in range(5):
        n_changed = 0
        for i in range(n):
            w = x[i] * x[i]
            li = f32(L[i])
            slx = sumlx - w * x[i] * li
            if slx > _ZERO:
                sl2 = suml2 - w * li * li
                new_l = _clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1)
                if new_l != L[i]:
                    fn = f32(new_l)
                    slx += w * x[i] * fn
                    sl2 += w * fn * fn
                    if sl2 > _ZERO and slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    for i in range(n):
        L[i] += nmax
    return sumlx / suml2 if suml2 > _ZERO else _ZERO


@ghelper
def make_qkx_quants(n, nmax, x, w, L, Laux, rmin, rdelta, nstep, use_mad):  # type: ignore[no-untyped-def]
    """``make_qkx2_quants`` (and ``make_qkx3_quants`` with weights, identical):
    asymmetric codes 0..nmax in ``L``. Returns ``(scale, the_min)`` with
    ``the_min = -min >= 0``. ``rmin``, ``rdelta`` are float32."""
    mn = x[0]
    mx = x[0]
    sum_w = w[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        if x[i] < mn:
            mn = x[i]
        if x[i] > mx:
            mx = x[i]
        sum_w += w[i]
        sum_x += w[i] * x[i]
    if mn > _ZERO:
        mn = _ZERO
    if mx == mn:
        for i in range(n):
            L[i] = 0
        return _ZERO, -mn
    fnmax = f32(nmax)
    iscale = fnmax / (mx - mn)
    scale = _ONE / iscale
    best_error = _ZERO
    for i in range(n):
        l = _clamp(nearest_int(iscale * (x[i] - mn)), 0, nmax)
        L[i] = l
        diff = scale * f32(l) + mn - x[i]
        diff = np.abs(diff) if use_mad else diff * diff
        best_error += w[i] * diff
    for step in range(nstep + 1):
        iscale = (rmin + rdelta * f32(step) + fnmax) / (mx - mn)
        sum_l = _ZERO
        sum_l2 = _ZERO
        sum_xl = _ZERO
        for i in range(n):
            l = _clamp(nearest_int(iscale * (x[i] - mn)), 0, nmax)
            Laux[i] = l
            fl = f32(l)
            wl = w[i] * fl
            sum_l += wl
            sum_l2 += wl * fl
            sum_xl += wl * x[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > _ZERO:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > _ZERO:
                this_min = _ZERO
                this_scale = sum_xl / sum_l2
            cur_error = _ZERO
            for i in range(n):
                diff = this_scale * f32(Laux[i]) + this_min - x[i]
                diff = np.abs(diff) if use_mad else diff * diff
                cur_error += w[i] * diff
            if cur_error < best_error:
                for i in range(n):
                    L[i] = Laux[i]
                best_error = cur_error
                scale = this_scale
                mn = this_min
    return scale, -mn


@ghelper
def make_qp_quants(n, nmax, x, L, w):  # type: ignore[no-untyped-def]
    """``make_qp_quants``: non-negative values to codes 0..nmax (stored in ``L`` as a
    ``uint8_t`` store would), weighted search over 9 scales, coordinate descent.
    Returns the scale, 0 when ``suml2`` is not > 0 (zero importance: FAILURES #5)."""
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
