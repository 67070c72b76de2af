"""ggml's grid searches (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M) as Numba kernels.

``quantize_row_iq3_xxs_impl``, ``quantize_row_iq3_s_impl``, ``quantize_row_iq2_xxs_impl``,
``quantize_row_iq2_xs_impl``, ``quantize_row_iq2_s_impl``, ``quantize_row_iq1_s_impl`` and
``quantize_row_iq1_m_impl`` (``ggml-quants.c``, ggml-org/ggml @ d99724f2), one super-block
of 256 per loop iteration, one sub-block at a time as the C code runs them. The steps and
their float32 rules are those written out in :mod:`refquant.formats.gguf_iqgrid_search`
(the NumPy form, vectorized over sub-blocks); here each is a scalar loop in C's order:
every sum ``s += ...`` from 0 in index order, products left to right, ``nearest_int``
ggml's bit trick, strict comparisons so the first candidate wins a tie. The grid tables
(levels, ``kmap``, neighbour lists ordered by (distance, index)) are the reference's
(:func:`refquant.formats.gguf_iqgrid_search.grid_tables`), passed in as arrays.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from accel.numba.gguf_math import GROUP_MAX_EPS, f32, fp32_to_fp16, ghelper, gkernel, nearest_int, store_fp16
from accel.numba.gguf_search import make_qp_quants
from refquant.formats.gguf_iqgrid_search import grid_tables

__all__ = ["QUANTIZE"]

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_EPS8 = np.float32(1e-8)        # GROUP_MAX_EPS_IQ3_XXS, GROUP_MAX_EPS_IQ2_S
CHUNK = 4                       # super-blocks per prange iteration
OFF, ALL_IF_OFF, ALL = range(3)  # which groups the final re-pick redoes


@ghelper
def _weights(xb, qw, has_im, factor, sub, w, waux):  # type: ignore[no-untyped-def]
    """Step 1 on a super-block: ``w = x²``, or ``qw·sqrtf(sigma2 + x²)`` with
    ``sigma2 = factor·Σx²/256``; ``waux = sqrtf(w)``. (``sub`` is unused: the imatrix is per element.)"""
    s = _ZERO
    for i in range(256):
        s += xb[i] * xb[i]
    sigma2 = (f32(factor) * s) / np.float32(256.0)
    for i in range(256):
        v = xb[i]
        w[i] = qw[i] * np.sqrt(sigma2 + v * v) if has_im else v * v
        waux[i] = np.sqrt(w[i])


@ghelper
def _even_signs(x, w, n, xval, signs):  # type: ignore[no-untyped-def]
    """Step 2 with parity: xval = |x|, the element with the least ``w·x·x`` of a group of 8
    with an odd number of negatives negated; 7 sign bits per group into ``signs``."""
    for k in range(n // 8):
        nneg = 0
        bits = 0
        imin = 0
        vmin = _ZERO
        for j in range(8):
            i = 8 * k + j
            v = x[i]
            xval[i] = np.abs(v)
            if v < 0:
                nneg += 1
                bits |= 1 << j
            e = w[i] * v * v
            if j == 0 or e < vmin:
                vmin = e
                imin = j
        if nneg % 2 == 1:
            xval[8 * k + imin] = -xval[8 * k + imin]
            bits ^= 1 << imin
        signs[k] = bits & 127


@ghelper
def _plain_signs(x, n, xval, signs):  # type: ignore[no-untyped-def]
    """Step 2 without parity (IQ3_S, IQ2_S): xval = |x|, all 8 sign bits per group."""
    for k in range(n // 8):
        bits = 0
        for j in range(8):
            v = x[8 * k + j]
            xval[8 * k + j] = np.abs(v)
            if v < 0:
                bits |= 1 << j
        signs[k] = bits


@ghelper
def _vmax(xval, n):  # type: ignore[no-untyped-def]
    m = xval[0]
    for i in range(1, n):
        m = xval[i] if xval[i] > m else m
    return m


@ghelper
def _levels_of(xval, inv, kmax, n, L):  # type: ignore[no-untyped-def]
    """``clamp(nearest_int(0.5·(inv·xval - 1)), 0, kmax - 1)``."""
    for i in range(n):
        L[i] = max(0, min(kmax - 1, nearest_int(_HALF * (inv * xval[i] - _ONE))))


@ghelper
def _point(L, k, g, bits):  # type: ignore[no-untyped-def]
    u = 0
    for i in range(g):
        u |= L[g * k + i] << (bits * i)
    return u


@ghelper
def _snap(L, xval, waux, scale, n, g, bits, levels, kmap, nbr, cnt, todo, on):  # type: ignore[no-untyped-def]
    """``iq3_find_best_neighbour`` / ``iq2_find_best_neighbour`` on the groups with ``todo``
    that are off the grid (least ``Σ waux·(scale·q - xval)²``, the first on a tie); ``on``
    receives whether each group was on the grid."""
    for k in range(n // g):
        u = _point(L, k, g, bits)
        on[k] = kmap[u] >= 0
        if on[k] or not todo[k]:
            continue
        best = -1
        bestd = _ZERO
        for c in range(cnt[u]):
            gi = nbr[u, c]
            d2 = _ZERO
            for i in range(g):
                diff = scale * f32(2 * levels[gi, i] + 1) - xval[g * k + i]
                d2 += waux[g * k + i] * diff * diff
            if best < 0 or d2 < bestd:
                best = gi
                bestd = d2
        for i in range(g):
            L[g * k + i] = levels[best, i]


@ghelper
def _ls_sums(w, xval, L, n):  # type: ignore[no-untyped-def]
    sumqx = _ZERO
    sumq2 = _ZERO
    for i in range(n):
        q = f32(2 * L[i] + 1)
        sumqx += w[i] * xval[i] * q
        sumq2 += w[i] * q * q
    return sumqx, sumq2


@ghelper
def _search(xval, w, waux, n, g, bits, levels, kmap, nbr, cnt, kmax, t0, t1, step, denom, scale, L, on, redo,
            Laux, onaux, todo):  # type: ignore[no-untyped-def]
    """Steps 3-4 on one sub-block (the reference's ``_search``): trial scales
    ``id = (2 kmax - 1 + step·is)/denom`` for ``is = t0..t1``, then the final re-pick.
    ``L``, ``on`` hold the start and receive the result; returns the scale."""
    ng = n // g
    best = _ZERO
    for k in range(ng):
        todo[k] = True
    for it in range(t0, t1 + 1):
        inv = (f32(2 * kmax - 1) + f32(it) * step) / denom
        this_scale = _ONE / inv
        _levels_of(xval, inv, kmax, n, Laux)
        _snap(Laux, xval, waux, this_scale, n, g, bits, levels, kmap, nbr, cnt, todo, onaux)
        sumqx, sumq2 = _ls_sums(w, xval, Laux, n)
        if sumq2 > _ZERO and sumqx * sumqx > best * sumq2:
            scale = sumqx / sumq2
            best = scale * sumqx
            for i in range(n):
                L[i] = Laux[i]
            for k in range(ng):
                on[k] = onaux[k]
    any_off = False
    for k in range(ng):
        any_off |= not on[k]
    again = scale > _ZERO if redo == ALL else (any_off and scale > _ZERO)
    if again:
        for k in range(ng):
            todo[k] = (not on[k]) if redo == OFF else True
        _levels_of(xval, _ONE / scale, kmax, n, Laux)
        _snap(Laux, xval, waux, scale, n, g, bits, levels, kmap, nbr, cnt, todo, onaux)
        for k in range(ng):
            if todo[k]:
                for i in range(g):
                    L[g * k + i] = Laux[g * k + i]
        sumqx, sumq2 = _ls_sums(w, xval, L, n)
        if sumq2 > _ZERO:
            scale = sumqx / sumq2
    return scale


@ghelper
def _finish(scale, live, signs, sign_mask, L, n, g, bits, kmap, idx):  # type: ignore[no-untyped-def]
    """A negative scale is made positive with the stored signs flipped; dead sub-blocks get
    scale 0, no signs and grid index 0. Writes ``idx`` (n / g,), returns the scale."""
    if not live:
        for k in range(n // 8):
            signs[k] = 0
        for k in range(n // g):
            idx[k] = 0
        return _ZERO
    if scale < _ZERO:
        scale = -scale
        for k in range(n // 8):
            signs[k] = ~signs[k] & sign_mask
    for k in range(n // g):
        idx[k] = kmap[_point(L, k, g, bits)]
    return scale


@ghelper
def _super_scale(scales, m, fudge, ls):  # type: ignore[no-untyped-def]
    """Step 5: ``d = max_scale/31``; returns (fp16 bits of ``d·fudge``, all-zero); ``ls``
    receives ``clamp(nearest_int(0.5·(scale/d - 1)), 0, 15)`` with the float32 ``1/d``."""
    max_scale = scales[0]
    for i in range(1, m):
        max_scale = scales[i] if scales[i] > max_scale else max_scale
    if max_scale == _ZERO:
        for i in range(m):
            ls[i] = 0
        return 0, True
    d = max_scale / np.float32(31.0)
    inv_d = _ONE / d
    for i in range(m):
        ls[i] = max(0, min(15, nearest_int(_HALF * (inv_d * scales[i] - _ONE))))
    return fp32_to_fp16(d * fudge), False


@ghelper
def _put_u32(ob, pos, v):  # type: ignore[no-untyped-def]
    for k in range(4):
        ob[pos + k] = np.uint8((v >> (8 * k)) & 0xFF)


@ghelper
def _put_fp16_bits(ob, pos, h):  # type: ignore[no-untyped-def]
    ob[pos] = np.uint8(h & 0xFF)
    ob[pos + 1] = np.uint8((h >> 8) & 0xFF)


IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S = range(5)


@ghelper
def _grid_super_block(kind, xb, qw, has_im, ob, levels, kmap, nbr, cnt, w, waux, xval, L, Laux, Lqp, on, onaux,
                      todo, alive, signs, idx, scales, ls):  # type: ignore[no-untyped-def]
    """One super-block of IQ3_XXS / IQ3_S / IQ2_XXS / IQ2_XS / IQ2_S into ``ob``."""
    sub = 16 if kind == IQ2_XS or kind == IQ2_S else 32
    g = 4 if kind == IQ3_XXS or kind == IQ3_S else 8
    bits = 3 if g == 4 else 2
    kmax = 8 if g == 4 else 3
    nsub = 256 // sub
    if kind == IQ2_S and not has_im:
        s = _ZERO
        for i in range(256):
            s += xb[i] * xb[i]
        sigma2 = (np.float32(2.0) * s) / np.float32(256.0)
        for i in range(256):
            w[i] = np.float32(0.25) * sigma2 + xb[i] * xb[i]
            waux[i] = np.sqrt(w[i])
    else:
        _weights(xb, qw, has_im, 1 if (kind == IQ2_XXS or kind == IQ2_XS) else 2, sub, w, waux)
    ng = sub // g
    ns = sub // 8
    for ib in range(nsub):
        a = sub * ib
        xs = xb[a:a + sub]
        ws = w[a:a + sub]
        was = waux[a:a + sub]
        xv = xval[a:a + sub]
        sg = signs[ib * ns:(ib + 1) * ns]
        if kind == IQ3_S or kind == IQ2_S:
            _plain_signs(xs, sub, xv, sg)
        else:
            _even_signs(xs, ws, sub, xv, sg)
        vmax = _vmax(xv, sub)
        if kind == IQ3_S:
            live = vmax != _ZERO
        elif kind == IQ3_XXS or kind == IQ2_S:
            live = not (vmax < _EPS8)
        else:
            live = not (vmax < GROUP_MAX_EPS)
        Ls = L[a:a + sub]
        for i in range(sub):
            Ls[i] = 0
        for k in range(ng):
            on[k] = kind != IQ3_S
        scale = _ZERO
        if kind == IQ2_XXS:
            qp_scale = make_qp_quants(sub, 4, xv, Lqp, ws)
            eff_max = qp_scale * np.float32(3.0)
            live = live and eff_max > _ZERO
            if live:
                for i in range(sub):
                    Ls[i] = np.int32(Lqp[i])
                scale = _search(xv, ws, was, sub, g, bits, levels, kmap, nbr, cnt, kmax, -6, 6, np.float32(0.1),
                                eff_max, qp_scale, Ls, on, ALL, Laux, onaux, todo)
        elif live:
            if g == 4:
                t0, t1 = (-15, 15) if kind == IQ3_XXS else (-9, 9)
                step = np.float32(0.2)
                start = vmax / np.float32(15.0)
            else:
                t0, t1 = -9, 9
                step = np.float32(0.1)
                start = vmax / np.float32(5.0)
            scale = _search(xv, ws, was, sub, g, bits, levels, kmap, nbr, cnt, kmax, t0, t1, step, vmax, start,
                            Ls, on, ALL_IF_OFF if kind == IQ3_S else OFF, Laux, onaux, todo)
        scales[ib] = _finish(scale, live, sg, 255 if (kind == IQ3_S or kind == IQ2_S) else 127, Ls, sub, g, bits,
                             kmap, idx[ib * ng:(ib + 1) * ng])
        alive[ib] = live
    fudge = np.float32(1.0)
    if kind == IQ3_XXS:
        fudge = np.float32(1.0125)
    elif kind == IQ3_S:
        fudge = np.float32(1.033)
    elif kind == IQ2_S:
        fudge = np.float32(0.9875)
    dh, zero = _super_scale(scales, nsub, fudge, ls)
    for i in range(ob.size):
        ob[i] = 0
    if zero and kind != IQ3_S and kind != IQ2_S:
        return
    _put_fp16_bits(ob, 0, dh)
    if kind == IQ3_XXS or kind == IQ2_XXS:
        for ib in range(8):
            sas = (np.uint32(signs[4 * ib]) | (np.uint32(signs[4 * ib + 1]) << 7) | (np.uint32(signs[4 * ib + 2]) << 14)
                   | (np.uint32(signs[4 * ib + 3]) << 21) | (np.uint32(ls[ib]) << 28))
            if kind == IQ3_XXS:
                for k in range(8):
                    ob[2 + 8 * ib + k] = np.uint8(idx[8 * ib + k])
                _put_u32(ob, 66 + 4 * ib, sas)
            else:
                for k in range(4):
                    ob[2 + 8 * ib + k] = np.uint8(idx[4 * ib + k])
                _put_u32(ob, 2 + 8 * ib + 4, sas)
    elif kind == IQ2_XS:
        for k in range(32):
            q2 = idx[k] | (signs[k] << 9)
            ob[2 + 2 * k] = np.uint8(q2 & 0xFF)
            ob[3 + 2 * k] = np.uint8((q2 >> 8) & 0xFF)
        for i in range(8):
            ob[66 + i] = np.uint8(ls[2 * i] | (ls[2 * i + 1] << 4))
    elif kind == IQ2_S:
        for k in range(32):
            ob[2 + k] = np.uint8(idx[k] & 255)
            ob[34 + k] = np.uint8(signs[k])
        for i in range(8):
            h = 0
            for k in range(4):
                h |= (idx[4 * i + k] >> 8) << (2 * k)
            ob[66 + i] = np.uint8(h)
            if not zero:
                ob[74 + i] = np.uint8(ls[2 * i] | (ls[2 * i + 1] << 4))
        if zero:
            ob[0] = 0
            ob[1] = 0
    else:  # IQ3_S: qs / signs of live sub-blocks moved to the front (ggml's write pointers)
        slot = 0
        for ib in range(8):
            h = 0
            for k in range(8):
                h |= (idx[8 * ib + k] >> 8) << k
            ob[66 + ib] = np.uint8(h if alive[ib] else 0)
            if alive[ib]:
                for k in range(8):
                    ob[2 + 8 * slot + k] = np.uint8(idx[8 * ib + k] & 255)
                for k in range(4):
                    ob[74 + 4 * slot + k] = np.uint8(signs[4 * ib + k])
                slot += 1
        if zero:
            ob[0] = 0
            ob[1] = 0
        else:
            for i in range(4):
                ob[106 + i] = np.uint8(ls[2 * i] | (ls[2 * i + 1] << 4))


@gkernel
def _quantize_grid(kind, x, imatrix, has_im, out, levels, kmap, nbr, cnt):  # type: ignore[no-untyped-def]
    rows, n = x.shape
    nbr_row = n // 256
    total = rows * nbr_row
    size = out.shape[1] // nbr_row
    for c in prange((total + CHUNK - 1) // CHUNK):
        w = np.empty(256, np.float32)
        waux = np.empty(256, np.float32)
        xval = np.empty(256, np.float32)
        L = np.empty(256, np.int32)
        Laux = np.empty(32, np.int32)
        Lqp = np.empty(32, np.uint8)
        on = np.empty(8, np.bool_)
        alive = np.empty(16, np.bool_)
        onaux = np.empty(8, np.bool_)
        todo = np.empty(8, np.bool_)
        signs = np.empty(32, np.int64)
        idx = np.empty(64, np.int64)
        scales = np.empty(16, np.float32)
        ls = np.empty(16, np.int64)
        for b in range(c * CHUNK, min(total, (c + 1) * CHUNK)):
            r = b // nbr_row
            j = b - r * nbr_row
            qw = imatrix[j * 256:(j + 1) * 256] if has_im else imatrix
            _grid_super_block(kind, x[r, j * 256:(j + 1) * 256], qw, has_im, out[r, j * size:(j + 1) * size],
                              levels, kmap, nbr, cnt, w, waux, xval, L, Laux, Lqp, on, onaux, todo, alive, signs, idx,
                              scales, ls)


_TABLES = {IQ2_XXS: ("iq2xxs_grid", 2), IQ2_XS: ("iq2xs_grid", 2), IQ2_S: ("iq2s_grid", 1),
           IQ3_XXS: ("iq3xxs_grid", 2), IQ3_S: ("iq3s_grid", 3)}


def _quantizer(kind: int):  # type: ignore[no-untyped-def]
    cache: list = []

    def run(x, imatrix, sigma2, has_im, out):  # type: ignore[no-untyped-def]
        if not cache:
            t = grid_tables(*_TABLES[kind])
            cache.extend(np.ascontiguousarray(a) for a in (t.levels, t.kmap, t.neighbours, t.counts.astype(np.int32)))
        _quantize_grid(kind, x, imatrix, has_im, out, *cache)
    return run


QUANTIZE = {name: _quantizer(k) for k, name in enumerate(("iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s"))}
